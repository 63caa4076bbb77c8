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
 * CPU per job, which the load of a shared machine distorts less than wall time: `deno run
 * --allow-read --allow-env --allow-run bench/warm_bench.ts --cpu [JOBS]` runs JOBS (default
 * 3000) jobs 2 at a time through an unconfined warm pool of 2, `runJob` and `runSignedJob`, and
 * the engine loop as the reference, and prints per job: the parent's CPU (its main thread, and
 * all its threads: Web Crypto and the garbage collector work off the main thread), the sandbox
 * processes' CPU (`/proc/<pid>/stat`, all their threads) and the wall time.
 *
 * @module
 */
import { runJob } from "../runtime/run_job.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";
import { SandboxPool } from "../runtime/sandbox_pool.ts";
import { createWasi, WasiExit } from "../runtime/wasi.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import process from "node:process";

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

/** A file under /proc, read by `cat`: Deno asks for --allow-all to read /proc itself. */
function readProc(path: string): string {
  return new TextDecoder().decode(new Deno.Command("cat", { args: [path] }).outputSync().stdout);
}

/** CPU milliseconds (user + system) of another process, all its threads. */
function cpuMs(pid: number): number {
  const stat = readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU milliseconds of this process: its main thread, and all its threads. */
function selfMs(): [number, number] {
  const ms = (u: { user: number; system: number }) => (u.user + u.system) / 1000;
  return [ms(process.threadCpuUsage()), ms(process.cpuUsage())];
}

/** Run `jobs` jobs 2 at a time and measure CPU and wall time per job, in microseconds. */
async function measureCpu(
  jobs: number,
  job: () => Promise<unknown>,
  sandboxes: number[],
): Promise<Record<string, number>> {
  const before = [...selfMs(), ...sandboxes.map((pid) => cpuMs(pid))];
  const started = performance.now();
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next++ < jobs) await job();
    }),
  );
  const wall = performance.now() - started;
  const after = [...selfMs(), ...sandboxes.map((pid) => cpuMs(pid))];
  const d = after.map((v, i) => (v - before[i]!) * 1000 / jobs);
  const sandbox = d.slice(2).reduce((a, b) => a + b, 0);
  return {
    "jobs/s": Math.round(jobs / wall * 1000),
    "wall us/job": Math.round(wall * 1000 / jobs),
    "parent main thread us/job": Math.round(d[0]!),
    "parent all threads us/job": Math.round(d[1]!),
    "sandboxes us/job": Math.round(sandbox),
    "total CPU us/job": Math.round(d[1]! + sandbox),
  };
}

async function cpuMain(jobs: number): Promise<void> {
  if (!Number.isSafeInteger(jobs) || jobs < 1) {
    throw new RangeError(`Cannot run warm_bench --cpu: JOBS must be a whole number >= 1`);
  }
  // No process is replaced during the run: its CPU time is read from /proc at the end.
  await using pool = new SandboxPool({ size: 2, confinement: "off", jobsPerSandbox: 2 ** 30 });
  const plain = () => runJob(hello, { input, sandbox: "process", pool });
  const signedJob = () => runSignedJob(hello, { input, keyPair, sandbox: "process", pool });
  // Warm up both sandboxes, the module cache and the JIT.
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next++ < 500) await (next % 2 ? plain() : signedJob());
  }));
  const pids = pool.pids;
  const rows: Record<string, Record<string, number>> = {
    "in-process engine loop (reference)": await measureCpu(
      jobs,
      () => Promise.resolve(engineJob()),
      [],
    ),
    "runJob, warm pool of 2": await measureCpu(jobs, plain, pids),
    "runSignedJob, warm pool of 2": await measureCpu(jobs, signedJob, pids),
  };
  if (pool.started !== 2) throw new Error("Cannot measure: a sandbox was replaced during the run");
  console.log(
    `${jobs} hello jobs each, 2 in flight, unconfined; load average ${
      readProc("/proc/loadavg").split(" ").slice(0, 3).join(" ")
    }`,
  );
  console.table(rows);
}

if (Deno.args[0] === "--cpu") {
  await cpuMain(Number(Deno.args[1] ?? 3000));
} else {
  _registerBenches();
}

function _registerBenches(): void {
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
}
