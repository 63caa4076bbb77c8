/**
 * Benchmarks of local execution (issue 2), each against a named reference in the same run:
 * - cold `run` of hello.wasm, whole process, vs a bare `deno run` of an empty script (and the
 *   same with `--fuel`, and `run` bundled into one file and run with its header's flags, as the
 *   Debian package's `/usr/bin/plasm run` does, next to a bare `deno run --no-config`);
 * - the SHA-256 CPU example under `run` vs the same C compiled natively (clang -O2);
 * - sandbox start cost per job: worker with `permissions: "none"` vs a separate deno process,
 *   spawned per job or taken from a `SandboxPool`, vs in process (`runInProcess`, what `run`
 *   uses after revoking its permissions);
 * - 200 back-to-back hello jobs.
 *
 * Run with `deno task bench` (it builds the native binaries first).
 *
 * @module
 */
import { runJob } from "../runtime/run_job.ts";
import { runInProcess } from "../runtime/run_in_process.ts";
import { SandboxPool } from "../runtime/sandbox_pool.ts";
import { taskCommand } from "../tests/_task.ts";
import { bundleEntrypoint, headerFlags } from "../boot/build.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
const HOME = await Deno.makeTempDir({ prefix: "plasm-bench-" });
const { flags } = await taskCommand("run");
const RUN = ["run", "--no-prompt", ...flags, `${ROOT}cli/run.ts`];
await bundleEntrypoint("cli/run.ts", `${HOME}/run.js`, { projectDir: ROOT });
const RUN_BUNDLE = [
  "run",
  "--no-config",
  "--cached-only",
  ...await headerFlags(`${ROOT}cli/run.ts`),
  `${HOME}/run.js`,
];
const hello = await Deno.readFile(`${ROOT}examples/hello.wasm`);
const input = new TextEncoder().encode("Hello, World");
await Deno.writeFile(`${HOME}/hello.txt`, input);

async function exec(cmd: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(cmd, {
    args,
    env: { PLASM_HOME: HOME },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${code}: ${new TextDecoder().decode(stderr)}`);
  }
}

// Make the node key once, so every measured run is a steady-state cold process.
await exec(DENO, [...RUN, `${ROOT}examples/hello.wasm`, "--input", `${HOME}/hello.txt`]);
await exec(DENO, [...RUN_BUNDLE, `${ROOT}examples/hello.wasm`, "--input", `${HOME}/hello.txt`]);

Deno.bench("bare deno run (empty script)", { group: "cold start", baseline: true }, async () => {
  await exec(DENO, ["run", `${ROOT}bench/empty.ts`]);
});

Deno.bench("run examples/hello.wasm (whole process)", { group: "cold start" }, async () => {
  await exec(DENO, [...RUN, `${ROOT}examples/hello.wasm`, "--input", `${HOME}/hello.txt`]);
});

Deno.bench("bare deno run --no-config (empty script)", { group: "cold start" }, async () => {
  await exec(DENO, ["run", "--no-config", `${ROOT}bench/empty.ts`]);
});

Deno.bench("run examples/hello.wasm, bundled as the Debian package runs it", {
  group: "cold start",
}, async () => {
  await exec(DENO, [...RUN_BUNDLE, `${ROOT}examples/hello.wasm`, "--input", `${HOME}/hello.txt`]);
});

Deno.bench("run examples/hello.wasm --fuel 10000000 (whole process)", {
  group: "cold start",
}, async () => {
  await exec(DENO, [
    ...RUN,
    `${ROOT}examples/hello.wasm`,
    "--input",
    `${HOME}/hello.txt`,
    "--fuel",
    "10000000",
  ]);
});

const CPU_ARGS = ["16", "8"];
Deno.bench("native sha256 (clang -O2)", {
  group: "cpu: sha256 16 MiB x 8",
  baseline: true,
  n: 5,
  warmup: 1,
}, async () => {
  await exec(`${ROOT}examples/build/sha256`, CPU_ARGS);
});

Deno.bench("run examples/sha256.wasm (whole process)", {
  group: "cpu: sha256 16 MiB x 8",
  n: 5,
  warmup: 1,
}, async () => {
  await exec(DENO, [
    ...RUN,
    `${ROOT}examples/sha256.wasm`,
    ...CPU_ARGS.flatMap((a) => ["--arg", a]),
  ]);
});

Deno.bench(
  "runJob hello, worker sandbox",
  { group: "sandbox start per job", baseline: true },
  async () => {
    await runJob(hello, { input, sandbox: "worker" });
  },
);

Deno.bench("runInProcess hello (no sandbox to start)", {
  group: "sandbox start per job",
}, async () => {
  await runInProcess(hello, { input });
});

Deno.bench("runJob hello, process sandbox", { group: "sandbox start per job" }, async () => {
  await runJob(hello, { input, sandbox: "process" });
});

const pool = new SandboxPool({ size: 1 });
Deno.bench("runJob hello, process sandbox from a SandboxPool", {
  group: "sandbox start per job",
}, async () => {
  await runJob(hello, { input, sandbox: "process", pool });
});

Deno.bench("200 back-to-back hello jobs, process sandbox from a SandboxPool", {
  group: "200 jobs",
  n: 3,
  warmup: 1,
}, async () => {
  for (let i = 0; i < 200; i++) await runJob(hello, { input, sandbox: "process", pool });
});

Deno.bench("200 back-to-back hello jobs, worker sandbox", {
  group: "200 jobs",
  baseline: true,
  n: 3,
  warmup: 1,
}, async () => {
  for (let i = 0; i < 200; i++) await runJob(hello, { input, sandbox: "worker" });
});

Deno.bench(
  "200 back-to-back hello jobs, process sandbox",
  { group: "200 jobs", n: 3, warmup: 1 },
  async () => {
    for (let i = 0; i < 200; i++) await runJob(hello, { input, sandbox: "process" });
  },
);

globalThis.addEventListener("unload", () => {
  pool.close();
  Deno.removeSync(HOME, { recursive: true });
});
