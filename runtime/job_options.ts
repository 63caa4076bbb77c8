/**
 * What `runJob` and `runInProcess` share: option defaults and validation, the refusals before a
 * job runs (cancelled, module too large), the job handed to `executeJob`, and the outcome built
 * from how a job ended. Kept apart from run_job.ts so that `run`'s in-process path does not load
 * the sandbox process code.
 *
 * @module
 */
import type { JobErrorKind, SandboxFiles, SandboxJob } from "./sandbox_core.ts";
import { WASM_PAGE_BYTES } from "./limit_memory.ts";
import type { FuelCache } from "./fuel.ts";
import type { JobOutcome, RunJobOptions } from "./run_job.ts";
import { concatBytes } from "../util/concat_bytes.ts";

const DEFAULTS = {
  memoryBytes: 256 * 2 ** 20,
  timeoutMs: 30_000,
  maxOutputBytes: 16 * 2 ** 20,
  maxModuleBytes: 64 * 2 ** 20,
} as const;

/** The options every job runner takes, defaults applied and validated. */
export interface JobSettings {
  /** Bytes the module reads from stdin. */
  input: Uint8Array;
  /** Arguments after `argv[0]`. */
  args: string[];
  /** `argv[0]`. */
  argv0: string;
  /** The module's whole environment. */
  env: Record<string, string>;
  /** Linear memory cap in bytes, as given (not yet rounded to pages). */
  memoryBytes: number;
  /** Wall-clock limit in milliseconds. */
  timeoutMs: number;
  /** Cap on stdout and stderr together, in bytes. */
  maxOutputBytes: number;
  /** Largest module accepted, in bytes. */
  maxModuleBytes: number;
  /** Fuel limit; absent for an unmetered job. */
  fuel: bigint | number | undefined;
  /** Where instrumented modules are cached. */
  fuelCache: FuelCache | undefined;
  /** The job's files; absent: no filesystem. */
  files: SandboxFiles | undefined;
  /** Aborting ends the job with completion `cancelled`. */
  signal: AbortSignal | undefined;
}

/** How a job ended, as the sandbox reported it or the host decided. */
export interface JobEnd {
  /** The `proc_exit` code, or `null` when the job did not end by itself. */
  exitCode: number | null;
  /** Why the job failed; `null` when it ran to its end. */
  error: { kind: JobErrorKind; message: string } | null;
}

/** What a job left behind, for {@linkcode jobOutcome}. */
export interface JobLeftovers {
  /** Chunks written to fd 1, in order. @default {[]} */
  stdout?: Uint8Array[];
  /** Chunks written to fd 2, in order. @default {[]} */
  stderr?: Uint8Array[];
  /** Linear memory size when the job ended. @default {0} */
  peakMemoryBytes?: number;
  /** Instructions executed, for a metered job. */
  fuelUsed?: bigint | undefined;
  /** The job's files when it ended. */
  files?: Uint8Array | undefined;
}

/**
 * Apply the defaults of `RunJobOptions` to `options` and validate the module and every option
 * a job runner shares (all but `sandbox`, `pool` and runner-specific hooks).
 *
 * @param module What the caller passed as the module; must be a `Uint8Array`.
 * @param options The caller's options.
 * @returns The settings, defaults applied.
 * @throws {TypeError} If the module or an option has the wrong type, or an argument or
 *   environment entry cannot be passed to WASI.
 * @throws {RangeError} If a limit or the fuel is out of range.
 *
 * @example
 * ```ts
 * import { resolveJobOptions } from "./job_options.ts";
 * import assert from "node:assert/strict";
 *
 * const settings = resolveJobOptions(new Uint8Array(8), { args: ["-v"] });
 * assert.deepEqual(settings.args, ["-v"]);
 * assert.equal(settings.timeoutMs, 30_000);
 * assert.throws(() => resolveJobOptions(new Uint8Array(8), { timeoutMs: 0 }), RangeError);
 * ```
 */
export function resolveJobOptions(module: unknown, options: RunJobOptions): JobSettings {
  if (!(module instanceof Uint8Array)) {
    throw new TypeError("Cannot run job: module must be a Uint8Array");
  }
  const {
    input = new Uint8Array(),
    args = [],
    argv0 = "module.wasm",
    env = {},
    memoryBytes = DEFAULTS.memoryBytes,
    timeoutMs = DEFAULTS.timeoutMs,
    maxOutputBytes = DEFAULTS.maxOutputBytes,
    maxModuleBytes = DEFAULTS.maxModuleBytes,
    fuel,
    fuelCache,
    files,
    signal,
  } = options;
  if (!(input instanceof Uint8Array)) {
    throw new TypeError("Cannot run job: input must be a Uint8Array");
  }
  const wasiString = (what: string, s: unknown) => {
    if (typeof s !== "string") throw new TypeError(`Cannot run job: ${what} must be a string`);
    if (s.includes("\0")) throw new TypeError(`Cannot run job: ${what} contains a NUL character`);
  };
  if (!Array.isArray(args)) throw new TypeError("Cannot run job: args must be an array");
  for (const a of args) wasiString("each argument", a);
  wasiString("argv0", argv0);
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError("Cannot run job: env must be an object of strings");
  }
  for (const [k, v] of Object.entries(env)) {
    wasiString(`env name '${k}'`, k);
    if (k === "" || k.includes("=")) {
      throw new TypeError(`Cannot run job: env name '${k}' must be non-empty and without '='`);
    }
    wasiString(`env value of '${k}'`, v);
  }
  const int = (name: string, v: unknown, min: number, max: number) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(
        `Cannot run job: ${name} must be an integer from ${min} to ${max}, got ${String(v)}`,
      );
    }
  };
  int("memoryBytes", memoryBytes, WASM_PAGE_BYTES, 2 ** 32);
  int("timeoutMs", timeoutMs, 1, 2 ** 31 - 1);
  int("maxOutputBytes", maxOutputBytes, 0, 2 ** 31 - 1);
  int("maxModuleBytes", maxModuleBytes, 8, 2 ** 31 - 1);
  if (
    fuel !== undefined &&
    !((typeof fuel === "bigint" || Number.isSafeInteger(fuel)) && BigInt(fuel) >= 0n &&
      BigInt(fuel) < 2n ** 63n)
  ) {
    throw new RangeError(
      `Cannot run job: fuel must be a whole number from 0 to 2^63-1, got ${fuel}`,
    );
  }
  return {
    input,
    args,
    argv0,
    env,
    memoryBytes,
    timeoutMs,
    maxOutputBytes,
    maxModuleBytes,
    fuel,
    fuelCache,
    files,
    signal,
  };
}

/**
 * The outcome of a job that must not run at all: cancelled before it started, or a module
 * over `maxModuleBytes`; `undefined` when it may run.
 *
 * @param module The WebAssembly binary.
 * @param settings The job's settings (see {@linkcode resolveJobOptions}).
 * @param durationMs Milliseconds since the call, for the outcome.
 * @returns The refusal, or `undefined`.
 *
 * @example
 * ```ts
 * import { refuseJob, resolveJobOptions } from "./job_options.ts";
 * import assert from "node:assert/strict";
 *
 * const module = new Uint8Array(100);
 * const settings = resolveJobOptions(module, { maxModuleBytes: 10 });
 * assert.equal(refuseJob(module, settings, 0)?.error?.kind, "module_too_large");
 * assert.equal(refuseJob(module.subarray(0, 10), settings, 0), undefined);
 * ```
 */
export function refuseJob(
  module: Uint8Array,
  settings: Pick<JobSettings, "maxModuleBytes" | "signal">,
  durationMs: number,
): JobOutcome | undefined {
  if (settings.signal?.aborted) return jobOutcome(CANCELLED, durationMs);
  if (module.length > settings.maxModuleBytes) {
    return jobOutcome({
      exitCode: null,
      error: {
        kind: "module_too_large",
        message: `Cannot run module: its ${module.length} bytes exceed the ` +
          `${settings.maxModuleBytes} byte cap`,
      },
    }, durationMs);
  }
  return undefined;
}

/**
 * How a job ends when its caller aborts it before it runs.
 *
 * @example
 * ```ts
 * import { CANCELLED, jobOutcome } from "./job_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(jobOutcome(CANCELLED, 0).completion, "cancelled");
 * ```
 */
export const CANCELLED: Readonly<JobEnd> = Object.freeze({
  exitCode: null,
  error: Object.freeze({ kind: "cancelled" as const, message: "Cannot run job: cancelled" }),
});

/**
 * The job for `executeJob` or a sandbox: `module` (already instrumented where needed) with the
 * settings' input, argv, environment and limits; memory rounded down to whole pages.
 *
 * @param module The module to run.
 * @param settings The job's settings (see {@linkcode resolveJobOptions}).
 * @returns The job.
 *
 * @example
 * ```ts
 * import { resolveJobOptions, sandboxJob } from "./job_options.ts";
 * import assert from "node:assert/strict";
 *
 * const module = new Uint8Array(8);
 * const job = sandboxJob(module, resolveJobOptions(module, { memoryBytes: 100_000, fuel: 5 }));
 * assert.equal(job.memoryBytes, 65_536);
 * assert.deepEqual(job.args, ["module.wasm"]);
 * assert.equal(job.fuel, "5");
 * ```
 */
export function sandboxJob(module: Uint8Array, settings: JobSettings): SandboxJob {
  const { input, argv0, args, env, memoryBytes, maxOutputBytes, timeoutMs, fuel, files } = settings;
  return {
    module,
    input,
    args: [argv0, ...args],
    env: { ...env },
    memoryBytes: Math.floor(memoryBytes / WASM_PAGE_BYTES) * WASM_PAGE_BYTES,
    maxOutputBytes,
    timeoutMs,
    ...(fuel !== undefined ? { fuel: String(fuel) } : {}),
    ...(files !== undefined ? { files } : {}),
  };
}

/**
 * The outcome of a job from how it ended and what it left: completion `stop` without an error,
 * `length` at the output cap, `cancelled` when aborted, `error` otherwise.
 *
 * @param end The exit code and error.
 * @param durationMs Milliseconds from the call to the outcome.
 * @param leftovers Output chunks, memory, fuel and files; none for a job that never ran.
 * @returns The outcome.
 *
 * @example
 * ```ts
 * import { jobOutcome } from "./job_options.ts";
 * import assert from "node:assert/strict";
 *
 * const outcome = jobOutcome({ exitCode: 0, error: null }, 3, {
 *   stdout: [new Uint8Array([104]), new Uint8Array([105])],
 * });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "hi");
 * assert.equal(outcome.completion, "stop");
 * ```
 */
export function jobOutcome(
  end: JobEnd,
  durationMs: number,
  leftovers: JobLeftovers = {},
): JobOutcome {
  const { stdout = [], stderr = [], peakMemoryBytes = 0, fuelUsed, files } = leftovers;
  const { error } = end;
  const outcome: JobOutcome = {
    stdout: concatBytes(stdout),
    stderr: concatBytes(stderr),
    exitCode: end.exitCode,
    completion: error === null
      ? "stop"
      : error.kind === "output_limit"
      ? "length"
      : error.kind === "cancelled"
      ? "cancelled"
      : "error",
    durationMs,
    peakMemoryBytes,
  };
  if (error !== null) outcome.error = { ...error };
  if (fuelUsed !== undefined) outcome.fuelUsed = fuelUsed;
  if (files !== undefined) outcome.files = files;
  return outcome;
}
