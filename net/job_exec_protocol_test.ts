import assert from "node:assert/strict";
import { streamPair } from "@libp2p/utils";
import {
  decodeFrame,
  encodeExecRequest,
  encodeExecResponse,
  encodeFrame,
  type ExecResponse,
  parseExecRequest,
  parseExecResponse,
  parseManifestShape,
  requestJobExec,
  serveJobExec,
} from "./job_exec_protocol.ts";
import { signJobManifest } from "../runtime/job_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";

const keyPair = await generateKeyPair();
const manifest = await signJobManifest({
  kind: "wasm",
  module_cid: `sha256:${"a".repeat(64)}`,
  input: `sha256:${"b".repeat(64)}`,
  max_duration_ms: 1000,
  max_memory_bytes: 65536,
}, { keyPair });

Deno.test("an exec request with module and input round-trips through a yamux stream pair", async () => {
  const [requester, worker] = await streamPair();
  const module = new Uint8Array(200_000).fill(7);
  const input = new Uint8Array(100_000).fill(9);
  const hello = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
  const { receipt, outcome } = await runSignedJob(hello, {
    keyPair,
    input: new Uint8Array([104, 105]),
  });
  const done: ExecResponse = {
    Done: {
      job_id: receipt.job_id,
      exit_code: 0,
      completion: "stop",
      receipt,
      stdout: outcome.stdout,
      stderr: new Uint8Array([1, 2]),
    },
  };
  let seen: Uint8Array | undefined;
  const [answer] = await Promise.all([
    requestJobExec(requester, { manifest, input, module }),
    serveJobExec(worker, (request) => {
      assert.deepEqual(request.manifest, manifest);
      assert.deepEqual(request.input, input);
      seen = request.module;
      return Promise.resolve(done);
    }),
  ]);
  assert.deepEqual(seen, module);
  assert.deepEqual(answer, done);
});

Deno.test("serveJobExec() aborts the job's signal when the requester resets the stream", async () => {
  const [requester, worker] = await streamPair();
  const cancelled = Promise.withResolvers<unknown>();
  const serving = serveJobExec(worker, (_request, { signal }) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        cancelled.resolve(signal.reason);
        reject(signal.reason);
      });
    }));
  const requesting = requestJobExec(requester, { manifest, input: new Uint8Array() });
  await new Promise((resolve) => setTimeout(resolve, 50));
  requester.abort(new Error("requester went away"));
  assert.match(String(await cancelled.promise), /went away/);
  await assert.rejects(serving);
  await assert.rejects(requesting);
});

Deno.test("serveJobExec() answers a malformed request with InvalidRequest", async () => {
  const [requester, worker] = await streamPair();
  const bad = encodeFrame({ manifest: { schema_version: 2 }, input_len: 0, module_len: 0 });
  const serving = serveJobExec(worker, () => Promise.reject(new Error("must not be called")));
  const reading = (async () => {
    requester.send(bad);
    await requester.close();
  })();
  await reading;
  const answer = await serving;
  assert.ok("Rejected" in answer);
  assert.match(JSON.stringify(answer), /InvalidRequest.*payload must be an object/);
});

Deno.test("parseExecRequest() rejects blob lengths that do not add up", () => {
  const bytes = encodeExecRequest({ manifest, input: new Uint8Array(5) });
  assert.throws(() => parseExecRequest(bytes.subarray(0, bytes.length - 1)), TypeError);
  const lying = encodeFrame({ manifest, input_len: 2 ** 40, module_len: 0 });
  assert.throws(() => parseExecRequest(lying), TypeError);
});

Deno.test("parseExecResponse() rejects a Done whose receipt is malformed", () => {
  const bytes = encodeFrame({
    Done: {
      job_id: "a".repeat(64),
      exit_code: 0,
      completion: "stop",
      receipt: {},
      stdout_len: 0,
      stderr_len: 0,
    },
  });
  assert.throws(() => parseExecResponse(bytes), TypeError);
  assert.throws(() => decodeFrame(new Uint8Array([0xff, 0xff, 0xff, 0xff])), RangeError);
  assert.deepEqual(
    parseExecResponse(encodeExecResponse({ Rejected: { job_id: "x", reason: "QueueFull" } })),
    { Rejected: { job_id: "x", reason: "QueueFull" } },
  );
});

Deno.test("parseManifestShape() keeps signed args, env, output cap and fuel, and checks them", async () => {
  const full = await signJobManifest({
    ...manifest.payload,
    args: ["a", ""],
    env: { K: "V" },
    max_output_bytes: 100,
    fuel: "5000",
  }, { keyPair });
  // Dropping a field would change the job id and break the signature.
  assert.deepEqual(parseManifestShape(JSON.parse(JSON.stringify(full))), full);
  assert.deepEqual(
    parseExecRequest(encodeExecRequest({ manifest: full, input: new Uint8Array() })).manifest,
    full,
  );
  for (
    const bad of [
      { args: "a" },
      { args: [1] },
      { env: { "A=B": "x" } },
      { env: { A: 1 } },
      { max_output_bytes: -1 },
      { fuel: 5000 },
      { fuel: "1e3" },
      { fuel: "9223372036854775808" },
    ]
  ) {
    assert.throws(
      () => parseManifestShape({ ...full, payload: { ...full.payload, ...bad } }),
      TypeError,
      JSON.stringify(bad),
    );
  }
});

Deno.test("parseExecResponse() validates a Rejected answer's reason", () => {
  for (const reason of [{ Bribe: {} }, { InvalidRequest: { details: 7 } }, 3, null]) {
    const bytes = encodeFrame({ Rejected: { job_id: "a".repeat(64), reason } });
    assert.throws(() => parseExecResponse(bytes), TypeError, JSON.stringify(reason));
  }
  const ok = {
    Rejected: {
      job_id: "a".repeat(64),
      reason: { ArchMismatch: { required: "riscv64", available: "x86_64" } },
    },
  };
  assert.deepEqual(parseExecResponse(encodeFrame(ok)), ok);
});
