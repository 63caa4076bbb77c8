/**
 * How a sandbox is started: the worker options and the `deno` process arguments that give a job
 * no permissions at all. Shared by {@linkcode runJob} (`run_job.ts`) and `SandboxPool`
 * (`sandbox_pool.ts`), so neither imports the other for it.
 *
 * @module
 */
import { confineCommand } from "./confine.ts";

/**
 * V8 heap (old space) of a sandbox process, in MiB: `--v8-flags=--max-old-space-size=128`.
 * Linear memory and compiled code live outside this heap; the heap holds the job frame, the WASI
 * host's small objects and, for the refused features (GC objects, exceptions), what a module
 * would make the engine allocate, so no module can grow the process without bound. A sandbox
 * that reaches it dies, and the job ends as `memory_limit`.
 *
 * @example
 * ```ts
 * import { SANDBOX_HEAP_MIB } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(SANDBOX_HEAP_MIB, 128);
 * ```
 */
export const SANDBOX_HEAP_MIB = 128;

/**
 * The options every sandbox worker is made with: a module worker with no permissions.
 *
 * @example
 * ```ts
 * import { SANDBOX_WORKER_OPTIONS } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(SANDBOX_WORKER_OPTIONS, { type: "module", deno: { permissions: "none" } });
 * ```
 */
export const SANDBOX_WORKER_OPTIONS: WorkerOptions = Object.freeze({
  type: "module",
  deno: { permissions: "none" },
} as WorkerOptions);

/**
 * Start a sandbox worker from `entry` with {@linkcode SANDBOX_WORKER_OPTIONS}. Tests pass another
 * entry to prove what such a worker can reach.
 *
 * @example
 * ```ts
 * import { _startSandboxWorker } from "./sandbox_spawn.ts";
 *
 * const worker = _startSandboxWorker(new URL("./sandbox_worker.ts", import.meta.url));
 * worker.terminate();
 * ```
 */
export function _startSandboxWorker(entry: URL): Worker {
  return new Worker(entry, SANDBOX_WORKER_OPTIONS);
}

/**
 * The `deno` arguments that run `entry` as a sandbox process: no `--allow-*` flag at all, no
 * prompt, no config, lock file, npm or remote modules, and a V8 heap of
 * {@linkcode SANDBOX_HEAP_MIB}. Tests pass another entry to prove what such a process can reach.
 *
 * @example
 * ```ts
 * import { sandboxProcessArgs } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * const args = sandboxProcessArgs(new URL("file:///x/sandbox_main.ts"));
 * assert.equal(args.at(-1), "/x/sandbox_main.ts");
 * assert.ok(!args.some((a) => a.startsWith("--allow") || a === "-A"));
 * ```
 */
export function sandboxProcessArgs(entry: URL): string[] {
  const local = entry.protocol === "file:";
  return [
    "run",
    "--no-prompt",
    local ? "--no-remote" : "--cached-only",
    "--no-npm",
    "--no-config",
    "--no-lock",
    "--quiet",
    `--v8-flags=--max-old-space-size=${SANDBOX_HEAP_MIB}`,
    local ? decodeURIComponent(entry.pathname) : entry.href,
  ];
}

/** Environment variables passed through to an unconfined sandbox's `deno` (its cache). */
const PASS_ENV = ["DENO_DIR", "HOME", "XDG_CACHE_HOME"];

/** Where a confined sandbox's `deno` keeps its cache: inside its own empty `/tmp`. */
const CONFINED_DENO_DIR = "/tmp/deno";

/** The bubblewrap binary (Debian's `bubblewrap`). */
const BWRAP = "/usr/bin/bwrap";

/**
 * Whether sandbox processes are confined by the OS as well as by Deno's permissions (see
 * {@linkcode sandboxCommand}): `"auto"` confines where bubblewrap works and otherwise falls back
 * to Deno's permissions alone (the caller warns once, see {@linkcode checkSandboxConfinement}),
 * `"require"` refuses to start an unconfined sandbox, `"off"` never confines.
 */
export type SandboxConfinement = "auto" | "require" | "off";

/** Whether sandbox processes can be confined here, and if not, why. */
export type ConfinementStatus = { confined: true } | { confined: false; reason: string };

function _env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // No env permission: deno's defaults apply.
  }
}

function _dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * The command that runs `deno` with `denoArgs` as a sandbox process: confined by the OS
 * ({@linkcode confineCommand}) when `confined`, else `deno` itself. A confined sandbox sees,
 * read-only: the `deno` binary, this `runtime/` directory and `util/` (the sandbox's module
 * graph, probes in `runtime/testdata` included), the emitted-code cache of those two
 * directories, and for a remote entry the remote-module cache; its environment is only
 * `DENO_DIR=/tmp/deno`. The tests run a `deno run -A` probe through this very function.
 *
 * @param denoArgs Arguments of `deno`, such as {@linkcode sandboxProcessArgs}'s.
 * @param confined Confine by the OS (needs bubblewrap, bash and prlimit).
 * @returns `command`, `args` and `env` for `new Deno.Command(command, { args, env, clearEnv })`.
 *
 * @example
 * ```ts
 * import { sandboxCommand, sandboxProcessArgs } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * const args = sandboxProcessArgs(new URL("./sandbox_main.ts", import.meta.url));
 * const plain = sandboxCommand(args, false);
 * assert.equal(plain.command, Deno.execPath());
 * const confined = sandboxCommand(args, true);
 * assert.ok(confined.args.includes("--unshare-all"));
 * assert.deepEqual(confined.env, {});
 * ```
 */
export function sandboxCommand(
  denoArgs: readonly string[],
  confined: boolean,
): { command: string; args: string[]; env: Record<string, string> } {
  const deno = Deno.execPath();
  if (!confined) {
    const env: Record<string, string> = {};
    for (const name of PASS_ENV) {
      const value = _env(name);
      if (value !== undefined) env[name] = value;
    }
    return { command: deno, args: [...denoArgs], env };
  }
  const runtimeDir = _dirname(decodeURIComponent(new URL(import.meta.url).pathname));
  const utilDir = `${_dirname(runtimeDir)}/util`;
  const xdgCache = _env("XDG_CACHE_HOME");
  const home = _env("HOME");
  const denoDir = _env("DENO_DIR") ??
    (xdgCache ? `${xdgCache}/deno` : home ? `${home}/.cache/deno` : undefined);
  const readOnly: (string | [string, string])[] = [deno, runtimeDir, utilDir];
  if (denoDir) {
    for (const dir of [runtimeDir, utilDir]) {
      readOnly.push([`${denoDir}/gen/file${dir}`, `${CONFINED_DENO_DIR}/gen/file${dir}`]);
    }
    if (import.meta.url.startsWith("http")) {
      readOnly.push([`${denoDir}/remote`, `${CONFINED_DENO_DIR}/remote`]);
      readOnly.push([`${denoDir}/gen/https`, `${CONFINED_DENO_DIR}/gen/https`]);
    }
  }
  const { command, args } = confineCommand([deno, ...denoArgs], {
    readOnly,
    env: { DENO_DIR: CONFINED_DENO_DIR },
  });
  return { command, args, env: {} };
}

let _checked: ConfinementStatus | undefined;

/**
 * Whether sandbox processes can be confined here: runs `deno --version` under the confinement
 * of {@linkcode sandboxCommand} once per process (synchronously, ~20 ms; later calls answer from
 * memory). Not confined when bubblewrap is not installed, the host may not run `/bin/bash` or
 * `/usr/bin/bwrap` (`--allow-run`), or the OS refuses (no user namespaces for this user and no
 * setuid bwrap); `reason` is one line naming the cause and the fix.
 *
 * @example
 * ```ts
 * import { checkSandboxConfinement } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * const status = checkSandboxConfinement();
 * assert.equal(typeof status.confined, "boolean");
 * ```
 */
export function checkSandboxConfinement(): ConfinementStatus {
  if (_checked) return _checked;
  const { command, args, env } = sandboxCommand(["--version"], true);
  try {
    Deno.statSync(BWRAP);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return _checked = {
        confined: false,
        reason: `${BWRAP} not found: apt-get install bubblewrap`,
      };
    }
    // No read permission: let the run below tell.
  }
  try {
    const out = new Deno.Command(command, {
      args,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const said = new TextDecoder().decode(out.stdout);
    if (out.success && said.startsWith("deno ")) _checked = { confined: true };
    else {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0] ||
        `exit code ${out.code}`;
      _checked = { confined: false, reason: `bwrap failed: ${err}` };
    }
  } catch (error) {
    const why = error instanceof Deno.errors.NotCapable
      ? `no permission to run ${command} and ${BWRAP}: add them to --allow-run`
      : `cannot run ${command}: ${(error as Error).message.split("\n")[0]}`;
    _checked = { confined: false, reason: why };
  }
  return _checked;
}

/**
 * Spawn `entry` as a sandbox process (see {@linkcode sandboxProcessArgs}) with a cleared
 * environment and piped stdio, confined by the OS unless `confinement` is `"off"` or (with
 * `"auto"`) {@linkcode checkSandboxConfinement} says it cannot be. Without an `entry`, the job
 * sandbox `sandbox_main.ts`.
 *
 * @throws {Error} With `confinement: "require"` where the sandbox cannot be confined.
 *
 * @example
 * ```ts
 * import { _spawnSandboxProcess } from "./sandbox_spawn.ts";
 *
 * const child = _spawnSandboxProcess(new URL("./sandbox_main.ts", import.meta.url));
 * await child.stdin.close();
 * await child.stdout.cancel();
 * await child.stderr.cancel();
 * await child.status;
 * ```
 */
export function _spawnSandboxProcess(
  entry: URL = new URL("./sandbox_main.ts", import.meta.url),
  options: { confinement?: SandboxConfinement } = {},
): Deno.ChildProcess {
  const { confinement = "auto" } = options;
  let confined = false;
  if (confinement !== "off") {
    const status = checkSandboxConfinement();
    if (!status.confined && confinement === "require") {
      throw new Error(`Cannot confine the job sandbox: ${status.reason}`);
    }
    confined = status.confined;
  }
  const { command, args, env } = sandboxCommand(sandboxProcessArgs(entry), confined);
  return new Deno.Command(command, {
    args,
    clearEnv: true,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Why a sandbox process ended without a result, as one line for the job's error: V8 prints
 * "Fatal JavaScript out of memory: ..." (and a C stack trace) when the heap limit is reached, so
 * that line (kind `memory_limit`) rather than the trace; otherwise the exit code or signal and
 * the last lines of what the sandbox wrote on stderr (kind `trap`).
 *
 * @param status How the process ended.
 * @param diagnostics What it wrote on stderr (the caller caps it).
 *
 * @example
 * ```ts
 * import { describeSandboxExit } from "./sandbox_spawn.ts";
 * import assert from "node:assert/strict";
 *
 * const status = { success: false, code: 133, signal: null };
 * const said = "\n#\n# Fatal JavaScript out of memory: Ineffective mark-compacts\n#\n";
 * assert.deepEqual(describeSandboxExit(status, said), {
 *   kind: "memory_limit",
 *   message: "Fatal JavaScript out of memory: Ineffective mark-compacts; exit code 133",
 * });
 * assert.equal(describeSandboxExit(status, "").message, "it ended with exit code 133");
 * ```
 */
export function describeSandboxExit(
  status: Deno.CommandStatus,
  diagnostics: string,
): { kind: "memory_limit" | "trap"; message: string } {
  const why = status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
  const oom = /Fatal JavaScript out of memory[^\n]*|JavaScript heap out of memory[^\n]*/
    .exec(diagnostics);
  if (oom) {
    return { kind: "memory_limit", message: `${oom[0].replace(/^#\s*/, "").trim()}; ${why}` };
  }
  const tail = diagnostics.trim().split("\n").slice(-3).join(" | ");
  return { kind: "trap", message: `it ended with ${why}${tail ? `: ${tail}` : ""}` };
}
