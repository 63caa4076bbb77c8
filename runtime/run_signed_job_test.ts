import assert from "node:assert/strict";
import wabtInit from "wabt";
import { runSignedJob } from "./run_signed_job.ts";
import { SandboxPool } from "./sandbox_pool.ts";
import { generateKeyPair } from "./ed25519.ts";
import { sha256Tag } from "./digest.ts";
import { jobIdOf, verifyJobManifest } from "./job_manifest.ts";
import { verifyReceipt } from "./receipt.ts";
import type { JobOutcome } from "./run_job.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const keyPair = await generateKeyPair();

/** A module that writes `other` to stdout, padded with a custom section to `length` bytes. */
async function otherModule(length: number): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const parsed = wabt.parseWat(
    "other.wat",
    `(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "other")
      (func (export "_start")
        (i32.store (i32.const 16) (i32.const 64))
        (i32.store (i32.const 20) (i32.const 5))
        (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))))`,
  );
  const bytes = parsed.toBinary({}).buffer;
  parsed.destroy();
  // A custom section: id 0, its size as a 3-byte LEB128 (a redundant continuation is valid),
  // then its name ("p") and zeros.
  const content = length - bytes.length - 4;
  assert.ok(content >= 2 && content < 2 ** 21);
  const section = new Uint8Array(4 + content);
  section.set([0, 0x80 | (content & 0x7f), 0x80 | ((content >> 7) & 0x7f), content >> 14, 1, 0x70]);
  const out = new Uint8Array(length);
  out.set(bytes);
  out.set(section, bytes.length);
  return out;
}

Deno.test("runSignedJob() through a warm pool runs the bytes it hashed, whatever the caller does to its array", async () => {
  await using pool = new SandboxPool({ size: 1, confinement: "off" });
  const other = await otherModule(HELLO.length);
  const input = enc("abc");
  const run = (module: Uint8Array) =>
    runSignedJob(module, { input, keyPair, sandbox: "process", pool });
  const bytes = HELLO.slice();
  const first = run(bytes);
  // The caller reuses its array for another module while the first job is on its way.
  bytes.set(other);
  const a = await first;
  assert.equal(dec(a.outcome.stdout), "cba");
  assert.equal(a.receipt.result.metrics.extra.module_hash, sha256Tag(HELLO));
  await verifyReceipt(a.receipt, { publicKey: keyPair.publicKey, module: HELLO, input });
  assert.equal(await verifyJobManifest(a.manifest, { publicKey: keyPair.publicKey }), a.jobId);
  assert.equal(a.receipt.job_id, a.jobId);
  // The same array, now the other module: never mistaken for the module compiled before.
  const b = await run(bytes);
  assert.equal(dec(b.outcome.stdout), "other");
  assert.equal(b.receipt.result.metrics.extra.module_hash, sha256Tag(other));
  // And hello again comes from the sandbox's cache: sent once, run three times.
  const c = await run(HELLO);
  assert.equal(dec(c.outcome.stdout), "cba");
  assert.equal(pool.moduleBytesSent, HELLO.length + other.length);
});

Deno.test("runSignedJob() signs a manifest whose job id is the receipt's", async () => {
  const before = Date.now();
  const { manifest, jobId, receipt } = await runSignedJob(HELLO, { input: enc("ab"), keyPair });
  assert.equal(await verifyJobManifest(manifest, { publicKey: keyPair.publicKey }), jobId);
  assert.equal(jobIdOf(manifest), jobId);
  assert.equal(receipt.job_id, jobId);
  assert.equal(manifest.payload.module_cid, sha256Tag(HELLO));
  assert.equal(manifest.payload.input, sha256Tag(enc("ab")));
  const created = Date.parse(manifest.created_at);
  assert.ok(
    created >= Math.floor(before / 1000) * 1000 && created <= Date.now(),
    manifest.created_at,
  );
  await verifyReceipt(receipt, { publicKey: keyPair.publicKey, jobId });
});

Deno.test("runSignedJob() refuses a key of the wrong size before the job runs", async () => {
  let ran = 0;
  const runner = (): Promise<JobOutcome> => {
    ran++;
    return Promise.reject(new Error("must not run"));
  };
  for (
    const bad of [
      { secretKey: new Uint8Array(31), publicKey: keyPair.publicKey },
      { secretKey: keyPair.secretKey, publicKey: new Uint8Array(33) },
    ]
  ) {
    await assert.rejects(() => runSignedJob(HELLO, { keyPair: bad, runner }), {
      name: "TypeError",
      message: /^Cannot run signed job: keyPair\.(secret|public)Key must be 32 bytes$/,
    });
  }
  assert.equal(ran, 0);
});

Deno.test("runSignedJob() runs the job with the manifest's job id and fails as its runner fails", async () => {
  const seen: string[] = [];
  await assert.rejects(
    () =>
      runSignedJob(HELLO, {
        keyPair,
        runner: (_module, _options, jobId) => {
          seen.push(jobId);
          return Promise.reject(new RangeError("runner broke"));
        },
      }),
    { name: "RangeError", message: "runner broke" },
  );
  assert.match(seen[0] ?? "", /^[0-9a-f]{64}$/);
});

Deno.test("runSignedJob() signs the node's receiptExtra into the receipt, never over the runtime's own facts", async () => {
  const signed = await runSignedJob(HELLO, {
    keyPair,
    input: enc("abc"),
    sandbox: "worker",
    receiptExtra: { boot_sequence: "7", module_hash: "sha256:forged" },
  });
  const { extra } = signed.receipt.result.metrics;
  assert.equal(extra.boot_sequence, "7");
  assert.equal(extra.module_hash, sha256Tag(HELLO));
  await verifyReceipt(signed.receipt, { publicKey: keyPair.publicKey });
});
