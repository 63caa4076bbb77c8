import assert from "node:assert/strict";
import { streamPair } from "@libp2p/utils";
import {
  decodeFrame,
  encodeExecRequest,
  encodeExecResponse,
  encodeFrame,
  type ExecDone,
  type ExecResponse,
  MAX_EAGER_INPUT_BYTES,
  MAX_EXEC_TREE_BYTES,
  parseExecRequest,
  parseExecResponse,
  parseManifestShape,
  requestJobExec,
  serveJobExec,
} from "./job_exec_protocol.ts";
import { signJobManifest } from "../runtime/job_manifest.ts";
import { testJobManifest } from "../runtime/testdata/job_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";
import { sha256Tag } from "../runtime/digest.ts";

const keyPair = await generateKeyPair();
const manifest = await testJobManifest(keyPair);

/** The Done answer of a real signed run of hello.wasm over `input`, with `fields` set over it. */
async function helloDone(input: Uint8Array, fields: Partial<ExecDone>): Promise<ExecResponse> {
  const hello = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
  const { receipt, outcome } = await runSignedJob(hello, { keyPair, input });
  return {
    Done: {
      job_id: receipt.job_id,
      exit_code: 0,
      completion: "stop",
      receipt,
      stdout: outcome.stdout,
      stderr: new Uint8Array(),
      ...fields,
    },
  };
}

Deno.test("an exec request with module and input round-trips through a yamux stream pair", async () => {
  const [requester, worker] = await streamPair();
  const module = new Uint8Array(200_000).fill(7);
  const input = new Uint8Array(100_000).fill(9);
  const signed = await signJobManifest({
    ...manifest.payload,
    module_cid: sha256Tag(module),
    input: sha256Tag(input),
  }, { keyPair });
  const done = await helloDone(new Uint8Array([104, 105]), { stderr: new Uint8Array([1, 2]) });
  let seen: Uint8Array | undefined;
  const [answer] = await Promise.all([
    requestJobExec(requester, { manifest: signed, input, module }),
    serveJobExec(worker, {
      admit: (header) => {
        assert.deepEqual(header, { manifest: signed, input_len: 100_000, module_len: 200_000 });
        return Promise.resolve({ send: { job_id: "e".repeat(64), module: true } });
      },
      run: (request) => {
        assert.deepEqual(request.manifest, signed);
        assert.deepEqual(request.input, input);
        seen = request.module;
        return Promise.resolve(done);
      },
    }),
  ]);
  assert.deepEqual(seen, module);
  assert.deepEqual(answer, done);
});

const sendAll = (header: { job_id?: string; module?: boolean } = {}) => ({
  admit: () =>
    Promise.resolve({
      send: { job_id: header.job_id ?? "e".repeat(64), module: header.module ?? false },
    }),
});

Deno.test("serveJobExec() aborts the job's signal when the requester resets the stream", async () => {
  const [requester, worker] = await streamPair();
  const cancelled = Promise.withResolvers<unknown>();
  const empty = await signJobManifest({ ...manifest.payload, input: sha256Tag(new Uint8Array()) }, {
    keyPair,
  });
  const serving = serveJobExec(worker, {
    ...sendAll(),
    run: (_request, { signal }) =>
      new Promise((_, reject) => {
        signal.addEventListener("abort", () => {
          cancelled.resolve(signal.reason);
          reject(signal.reason);
        });
      }),
  });
  const requesting = requestJobExec(requester, { manifest: empty, input: new Uint8Array() });
  await new Promise((resolve) => setTimeout(resolve, 50));
  requester.abort(new Error("requester went away"));
  assert.match(String(await cancelled.promise), /went away/);
  await assert.rejects(serving);
  await assert.rejects(requesting);
});

/** `serveJobExec()`'s answer to a request of exactly `bytes`, which it must refuse unrun. */
async function answerRequest(bytes: Uint8Array) {
  const [requester, worker] = await streamPair();
  const serving = serveJobExec(worker, {
    admit: () => Promise.reject(new Error("must not be called")),
    run: () => Promise.reject(new Error("must not be called")),
  });
  requester.send(bytes);
  await requester.close();
  return await serving;
}

Deno.test("serveJobExec() answers a malformed request with InvalidRequest", async () => {
  const answer = await answerRequest(
    encodeFrame({ manifest: { schema_version: 2 }, input_len: 0, module_len: 0 }),
  );
  assert.ok("Rejected" in answer);
  assert.match(JSON.stringify(answer), /InvalidRequest.*payload must be an object/);
});

Deno.test("serveJobExec() refuses a header with a duplicate key or a fractional length", async () => {
  for (
    const text of [
      `{"manifest":${JSON.stringify(manifest)},"input_len":0,"input_len":5,"module_len":0}`,
      `{"manifest":${JSON.stringify(manifest)},"input_len":1.0,"module_len":0}`,
    ]
  ) {
    const json = new TextEncoder().encode(text);
    const frame = new Uint8Array(4 + json.length);
    new DataView(frame.buffer).setUint32(0, json.length);
    frame.set(json, 4);
    const answer = await answerRequest(frame);
    assert.match(JSON.stringify(answer), /InvalidRequest.*(duplicate key|non-integer)/, text);
  }
});

Deno.test("serveJobExec() checks the header before any module byte: an eager sender is reset", async () => {
  const [requester, worker] = await streamPair();
  let admitted = 0;
  let ran = false;
  const serving = serveJobExec(worker, {
    admit: () => {
      admitted++;
      return new Promise(() => {}); // Still deciding while the hostile requester pushes bytes.
    },
    run: () => {
      ran = true;
      return Promise.reject(new Error("must not be called"));
    },
  });
  const refused = assert.rejects(serving, /more than the 65540 bytes allowed/);
  // A hostile requester: the header, then 8 MiB of "module" without waiting to be asked.
  const header = encodeFrame({ manifest, input_len: 0, module_len: 8 << 20 });
  requester.send(header);
  for (let i = 0; i < 128; i++) {
    if (requester.status !== "open") break;
    if (!requester.send(new Uint8Array(64 * 1024))) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  await refused;
  assert.equal(admitted, 1);
  assert.equal(ran, false);
  requester.abort(new Error("done"));
});

Deno.test("serveJobExec() refuses module bytes that do not hash to the manifest's module_cid", async () => {
  const [requester, worker] = await streamPair();
  const input = new Uint8Array([1, 2, 3]);
  const signed = await signJobManifest({
    ...manifest.payload,
    module_cid: sha256Tag(new Uint8Array([9])),
    input: sha256Tag(input),
  }, { keyPair });
  const [answer] = await Promise.all([
    requestJobExec(requester, { manifest: signed, input, module: new Uint8Array([8]) }),
    serveJobExec(worker, {
      ...sendAll({ module: true }),
      run: () => Promise.reject(new Error("must not be called")),
    }),
  ]);
  assert.match(JSON.stringify(answer), /InvalidRequest.*module: its bytes do not hash to/);
});

Deno.test("requestJobExec() fails with 'the worker connection was lost' when the worker dies mid-job", async () => {
  const [requester, worker] = await streamPair();
  const empty = await signJobManifest({ ...manifest.payload, input: sha256Tag(new Uint8Array()) }, {
    keyPair,
  });
  const running = Promise.withResolvers<void>();
  const serving = serveJobExec(worker, {
    ...sendAll(),
    run: (_request, { signal }) => {
      running.resolve();
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      );
    },
  });
  serving.catch(() => {});
  const requesting = requestJobExec(requester, { manifest: empty, input: new Uint8Array() });
  await running.promise;
  worker.abort(new Error("killed"));
  await assert.rejects(requesting, /Cannot run job: the worker connection was lost/);
  await assert.rejects(serving);
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

Deno.test("a Done answer carries the job's output tree to the requester; its length is capped", async () => {
  const [requester, worker] = await streamPair();
  const done = await helloDone(new Uint8Array(), {
    stdout: new Uint8Array([1]),
    stderr: new Uint8Array([2, 3]),
    files: new Uint8Array([4, 5, 6]),
  });
  const input = new Uint8Array();
  const signed = await signJobManifest({ ...manifest.payload, input: sha256Tag(input) }, {
    keyPair,
  });
  const [answer] = await Promise.all([
    requestJobExec(requester, { manifest: signed, input }),
    serveJobExec(worker, {
      admit: () => Promise.resolve({ send: { job_id: "e".repeat(64), module: false } }),
      run: () => Promise.resolve(done),
    }),
  ]);
  assert.deepEqual(answer, done);
  // Without files, no files_len and no `files`: the answer is as before.
  const { files: _, ...plain } = (done as { Done: ExecDone }).Done;
  const bare = parseExecResponse(encodeExecResponse({ Done: plain }));
  assert.ok("Done" in bare && !("files" in bare.Done));
  // A files_len over the cap is refused from the JSON, before any tree byte.
  const { json } = decodeFrame(encodeExecResponse(done));
  (json as { Done: { files_len: number } }).Done.files_len = MAX_EXEC_TREE_BYTES + 1;
  assert.throws(() => parseExecResponse(encodeFrame(json)), /files_len/);
});

Deno.test("serveJobExec() refuses an input tree length over the cap, or one the manifest does not name", async () => {
  const over = await answerRequest(
    encodeFrame({ manifest, input_len: 0, module_len: 0, inputs_len: MAX_EXEC_TREE_BYTES + 1 }),
  );
  assert.match(JSON.stringify(over), /InvalidRequest.*inputs_len/);
  const unnamed = await answerRequest(
    encodeFrame({ manifest, input_len: 0, module_len: 0, inputs_len: 5 }),
  );
  assert.match(JSON.stringify(unnamed), /InvalidRequest.*the manifest names no inputs/);
});

/** Everything `stream` sends, recorded. */
function recordSends(stream: { send(bytes: Uint8Array): boolean }): Uint8Array[] {
  const sent: Uint8Array[] = [];
  const send = stream.send.bind(stream);
  stream.send = (bytes) => {
    sent.push(bytes.slice());
    return send(bytes);
  };
  return sent;
}

Deno.test("eager exec: the input comes with the header and the worker answers without a Send frame", async () => {
  const [requester, worker] = await streamPair();
  const input = new Uint8Array(1000).fill(3);
  const signed = await signJobManifest({ ...manifest.payload, input: sha256Tag(input) }, {
    keyPair,
  });
  const done = await helloDone(new Uint8Array([1]), {});
  const fromRequester = recordSends(requester);
  const fromWorker = recordSends(worker);
  let ran: { input: Uint8Array; input_sent?: boolean } | undefined;
  const [answer] = await Promise.all([
    requestJobExec(requester, { manifest: signed, input }, { eager: true }),
    serveJobExec(worker, {
      admit: (header) => {
        assert.deepEqual(header, {
          manifest: signed,
          input_len: 1000,
          module_len: 0,
          input_sent: true,
        });
        return Promise.resolve({ send: { job_id: "e".repeat(64), module: false } });
      },
      run: (request) => {
        ran = request;
        return Promise.resolve(done);
      },
    }, { eager: true }),
  ]);
  assert.deepEqual(answer, done);
  assert.deepEqual(ran?.input, input);
  assert.equal(ran?.input_sent, true);
  // One write from the requester (header + input), and the worker's first frame is the answer.
  assert.equal(fromRequester.length, 1);
  assert.equal(decodeFrame(fromRequester[0]!).rest.length, 1000);
  assert.ok("Done" in (decodeFrame(fromWorker[0]!).json as object));
});

Deno.test("eager exec: a worker that needs the module answers NeedModule; a plain requester still gets Send", async () => {
  const input = new Uint8Array([5, 6]);
  const signed = await signJobManifest({ ...manifest.payload, input: sha256Tag(input) }, {
    keyPair,
  });
  {
    const [requester, worker] = await streamPair();
    const [answer] = await Promise.all([
      requestJobExec(requester, { manifest: signed, input }, { eager: true }),
      serveJobExec(worker, {
        ...sendAll({ module: true }),
        run: () => Promise.reject(new Error("must not be called")),
      }, { eager: true }),
    ]);
    assert.deepEqual(answer, { NeedModule: { job_id: "e".repeat(64) } });
  }
  {
    const [requester, worker] = await streamPair();
    const done = await helloDone(new Uint8Array([2]), {});
    const fromWorker = recordSends(worker);
    const [answer] = await Promise.all([
      requestJobExec(requester, { manifest: signed, input }),
      serveJobExec(worker, { ...sendAll(), run: () => Promise.resolve(done) }, { eager: true }),
    ]);
    assert.deepEqual(answer, done);
    assert.ok("Send" in (decodeFrame(fromWorker[0]!).json as object));
  }
});

Deno.test("eager exec: input_sent is refused on 2.0.0, with a module, over the cap, or with extra bytes", async () => {
  const small = new Uint8Array([1, 2, 3]);
  const signed = await signJobManifest({ ...manifest.payload, input: sha256Tag(small) }, {
    keyPair,
  });
  const refuse = async (
    header: Record<string, unknown>,
    blob: Uint8Array,
    eager: boolean,
    pattern: RegExp,
  ) => {
    const [requester, worker] = await streamPair();
    const serving = serveJobExec(worker, {
      ...sendAll(),
      run: () => Promise.reject(new Error("must not be called")),
    }, { eager });
    requester.send(encodeFrame({ manifest: signed, module_len: 0, ...header }, [blob]));
    await requester.close();
    assert.match(JSON.stringify(await serving), pattern);
  };
  // A 2.0.0 worker: the requester must wait to be asked.
  await refuse(
    { input_len: 3, input_sent: true },
    small,
    false,
    /InvalidRequest.*needs \/phase\/job-exec\/2\.1\.0/,
  );
  await refuse(
    { input_len: 3, module_len: 5, input_sent: true },
    small,
    true,
    /InvalidRequest.*input_sent only without a module/,
  );
  const big = MAX_EAGER_INPUT_BYTES + 1;
  await refuse(
    { input_len: big, input_sent: true },
    new Uint8Array(big),
    true,
    /InvalidRequest.*at most 65536/,
  );
  await refuse(
    { input_len: 3, input_sent: "yes" },
    small,
    true,
    /InvalidRequest.*must be a boolean/,
  );
  await refuse(
    { input_len: 3, input_sent: true },
    new Uint8Array([1, 2, 3, 9]),
    true,
    /InvalidRequest.*more bytes than declared/,
  );
  await refuse(
    { input_len: 3, input_sent: true },
    new Uint8Array(3),
    true,
    /InvalidRequest.*do not hash/,
  );
});
