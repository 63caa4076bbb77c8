/**
 * Warm sandboxes (issue 16): hello.wasm jobs through a warm `SandboxPool`, against the engine
 * alone in one process as the reference.
 *
 * - group "hello jobs, 2 in flight": 200 signed jobs (`runSignedJob`: sandbox, output
 *   commitment, Ed25519 receipt) two at a time through a warm pool of 2, confined (bubblewrap,
 *   where it works) and unconfined; reference: the in-process engine loop (hello.wasm compiled
 *   once, a fresh instance and a fresh project WASI host per job, one thread, no signing);
 * - group "200 back-to-back hello jobs": `runJob` one after another through a warm pool, against
 *   the one-shot pool (`jobsPerSandbox: 1`: a pre-started process per job, as before issue 16).
 *
 * Jobs/s = 200 / the time of one iteration. Run with `deno task bench` (or just this file:
 * `deno bench --unstable-worker-options --allow-read --allow-write --allow-env --allow-run
 * bench/warm_bench.ts`).
 *
 * @module
 */
import { runJob } from "../runtime/run_job.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";
import { SandboxPool } from "../runtime/sandbox_pool.ts";
import { createWasi, WasiExit } from "../runtime/wasi.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";

const JOBS = 200;
const hello = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const input = new TextEncoder().encode("Hello, World");
const keyPair = await generateKeyPair();

/** Run `job` JOBS times, `inFlight` at a time. */
async function batch(inFlight: number, job: () => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next++ < JOBS) await job();
    }),
  );
}

const compiled = new WebAssembly.Module(hello);
/** One job of the engine alone: fresh instance, fresh WASI host, output kept. */
function engineJob(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const wasi = createWasi({
    args: ["hello.wasm"],
    env: {},
    stdin: input,
    write: (_fd, chunks) => chunks.forEach((c) => out.push(c.slice())),
  });
  const instance = new WebAssembly.Instance(compiled, { wasi_snapshot_preview1: wasi.imports });
  wasi.bindMemory(instance.exports.memory as WebAssembly.Memory);
  try {
    (instance.exports._start as () => void)();
  } catch (error) {
    if (!(error instanceof WasiExit)) throw error;
  }
  return out;
}

const unconfined = new SandboxPool({ size: 2, confinement: "off" });
const confined = new SandboxPool({ size: 2 });
const oneShot = new SandboxPool({ size: 1, confinement: "off", jobsPerSandbox: 1 });
const warm = new SandboxPool({ size: 1, confinement: "off" });
const signed = (pool: SandboxPool) => () =>
  runSignedJob(hello, { input, keyPair, sandbox: "process", pool });

Deno.bench("in-process engine loop (reference)", {
  group: "hello jobs, 2 in flight",
  baseline: true,
  n: 10,
  warmup: 2,
}, async () => {
  await batch(1, () => Promise.resolve(engineJob()));
});

Deno.bench("runSignedJob, warm pool of 2, unconfined", {
  group: "hello jobs, 2 in flight",
  n: 10,
  warmup: 2,
}, async () => {
  await batch(2, signed(unconfined));
});

Deno.bench(
  `runSignedJob, warm pool of 2, ${confined.confinement.confined ? "confined" : "NOT confined"}`,
  {
    group: "hello jobs, 2 in flight",
  },
  async () => {
    await batch(2, signed(confined));
  },
);

Deno.bench("runJob, one-shot pool (one process per job; reference)", {
  group: "200 back-to-back hello jobs",
  baseline: true,
  n: 3,
  warmup: 1,
}, async () => {
  await batch(1, () => runJob(hello, { input, sandbox: "process", pool: oneShot }));
});

Deno.bench("runJob, warm pool", {
  group: "200 back-to-back hello jobs",
  n: 10,
  warmup: 2,
}, async () => {
  await batch(1, () => runJob(hello, { input, sandbox: "process", pool: warm }));
});

globalThis.addEventListener("unload", () => {
  for (const pool of [unconfined, confined, oneShot, warm]) void pool.close();
});
