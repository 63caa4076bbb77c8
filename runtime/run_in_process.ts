/**
 * Run one WASI job in the calling thread, for a process that gives up its own permissions first
 * (`run`): no worker and no child process to start, so a cold job costs little more than the
 * process itself. See docs/runtime.md, "Why in-process `run` is isolated".
 *
 * @module
 */
import { checkModule, GATE_VERSION } from "./check_module.ts";
import { type FuelCache, instrumentFuel } from "./fuel.ts";
import { CANCELLED, jobOutcome, refuseJob, resolveJobOptions, sandboxJob } from "./job_options.ts";
import { executeJob, type SandboxEvent } from "./sandbox_core.ts";
import type { JobOutcome, RunJobOptions } from "./run_job.ts";

/** Options of {@linkcode runInProcess}: those of `runJob` without a sandbox kind or pool. */
export interface RunInProcessOptions extends Omit<RunJobOptions, "sandbox" | "pool"> {
  /**
   * Called once everything the job needs is in memory (module checked and instrumented, fuel
   * cache read or written, file code loaded), right before the module is compiled and run: the
   * place to revoke the process's permissions (see {@linkcode revokeAllPermissions}).
   */
  beforeRun?: () => void | Promise<void>;
}

/**
 * Permissions {@linkcode revokeAllPermissions} revokes: every kind Deno has.
 *
 * @example
 * ```ts
 * import { REVOKED_PERMISSIONS } from "./run_in_process.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(REVOKED_PERMISSIONS.includes("read"));
 * ```
 */
export const REVOKED_PERMISSIONS: readonly Deno.PermissionName[] = Object.freeze([
  "read",
  "write",
  "net",
  "env",
  "run",
  "ffi",
  "sys",
  // Not in Deno 2.9's type of permission names, but a permission all the same (--allow-import).
  "import" as Deno.PermissionName,
]);

/**
 * Revoke every permission of this process, for good: after it, no file, socket, environment
 * variable, subprocess, library, system information or module can be reached, whatever the
 * process was started with.
 *
 * @throws {Error} If a permission is still granted afterwards (never expected).
 *
 * @example
 * ```ts ignore
 * import { revokeAllPermissions } from "./run_in_process.ts";
 *
 * revokeAllPermissions();
 * await Deno.readTextFile("/etc/hostname"); // throws Deno.errors.NotCapable
 * ```
 */
export function revokeAllPermissions(): void {
  for (const name of REVOKED_PERMISSIONS) {
    if (Deno.permissions.revokeSync({ name }).state === "granted") {
      throw new Error(`Cannot revoke permission '${name}': still granted`);
    }
  }
}

/**
 * Run a WASI preview1 command module in this thread under the same limits as `runJob`, and
 * report how it ended. The module is gated (`checkModule`) and instrumented before it runs:
 * with `fuel`, metered with interrupts; without, with interrupt checks only (function entries
 * and loop headers). Every few milliseconds of its code the module calls `sched_yield`, where the
 * wall-clock deadline is checked, so `timeoutMs` stops even a loop that never calls the host.
 * Memory and output caps are enforced exactly as in a sandbox (same kinds, same messages).
 *
 * Isolation comes from the caller: run it in a process that revoked all its permissions in
 * `beforeRun` (as `run` does), since the module runs in this process's engine.
 *
 * @param module The WebAssembly binary.
 * @param options Input, arguments, environment, limits, fuel and the `beforeRun` hook.
 * @returns The outcome; its `error` says what went wrong, if anything.
 * @throws {TypeError} If an option has the wrong type.
 * @throws {RangeError} If a limit is out of range.
 *
 * @example
 * ```ts
 * import { runInProcess } from "./run_in_process.ts";
 * import assert from "node:assert/strict";
 *
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const outcome = await runInProcess(module, { input: new TextEncoder().encode("Hello, World") });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "dlroW ,olleH");
 * assert.equal(outcome.completion, "stop");
 * ```
 */
export async function runInProcess(
  module: Uint8Array,
  options: RunInProcessOptions = {},
): Promise<JobOutcome> {
  const started = performance.now();
  const settings = resolveJobOptions(module, options);
  const { fuel, fuelCache, files, signal } = settings;
  const { beforeRun } = options;
  const elapsed = () => Math.round(performance.now() - started);
  const refused = refuseJob(module, settings, elapsed());
  if (refused) return refused;
  // A module the gate refuses goes to executeJob as it is, which refuses it with the same
  // outcome as a sandbox would; any other is instrumented. With a cache, the gate runs only
  // for a module not in it: the cache keeps only modules the gate passed (under its version).
  let bytes = module;
  let gated = true;
  try {
    bytes = await _instrument(module, fuel !== undefined, fuelCache, signal);
  } catch (error) {
    if (signal?.aborted) return jobOutcome(CANCELLED, elapsed());
    if (error instanceof _GateRefused) {
      bytes = module;
      gated = false;
    } else {
      return jobOutcome({
        exitCode: null,
        error: { kind: "invalid_module", message: (error as Error).message },
      }, elapsed());
    }
  }
  const openFiles = files === undefined ? undefined : (await import("./wasi_fs.ts")).openJobFiles;
  await beforeRun?.();
  if (signal?.aborted) return jobOutcome(CANCELLED, elapsed());
  const job = { ...sandboxJob(bytes, settings), ...(gated ? { gated } : {}) };
  const events: SandboxEvent[] = [];
  executeJob(job, (event) => events.push(event), undefined, openFiles);
  const result = events.at(-1);
  if (result?.type !== "result") throw new Error("Cannot run job: it ended without a result");
  return _outcome(events, result, elapsed(), fuel !== undefined);
}

/** `checkModule` refused the module (its error is the cause). */
class _GateRefused extends Error {}

/** `checkModule`, its refusal thrown as a {@linkcode _GateRefused}. */
function _gate(module: Uint8Array): void {
  try {
    checkModule(module);
  } catch (cause) {
    throw new _GateRefused("the gate refused the module", { cause });
  }
}

/** The gate, as the cache keeps its verdicts: `checkModule` under {@linkcode GATE_VERSION}. */
const _GATE = { check: _gate, version: GATE_VERSION };

/**
 * The module, gated and instrumented: metered with interrupts, or with interrupt checks only.
 * From a cache, the gate ran when the entry was made.
 */
async function _instrument(
  module: Uint8Array,
  metered: boolean,
  fuelCache: FuelCache | undefined,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const how = metered ? { interrupts: true } : { meter: false };
  if (fuelCache) {
    return await fuelCache.instrument(module, {
      ...how,
      gate: _GATE,
      ...(signal ? { signal } : {}),
    });
  }
  _gate(module);
  return instrumentFuel(module, how);
}

/** The outcome of a job from the events `executeJob` emitted, ending with its `result`. */
function _outcome(
  events: SandboxEvent[],
  result: Extract<SandboxEvent, { type: "result" }>,
  durationMs: number,
  metered: boolean,
): JobOutcome {
  const out: { 1: Uint8Array[]; 2: Uint8Array[] } = { 1: [], 2: [] };
  for (const event of events) if (event.type === "output") out[event.fd].push(event.data);
  return jobOutcome(result, durationMs, {
    stdout: out[1],
    stderr: out[2],
    peakMemoryBytes: result.memoryBytes,
    fuelUsed: metered && result.fuelUsed !== undefined ? BigInt(result.fuelUsed) : undefined,
    files: result.files,
  });
}
