/**
 * The seam for job kinds: what a node must know about each kind of job it sends or runs. A kind
 * names itself (the payload's `kind`, also the capability name in provider keys such as
 * `/phase/capability/x86_64/wasm`, in node info and in the `start` config), parses a payload a
 * peer sent, says what an offer of it requires, and runs it. Only `wasm` exists today; a new
 * kind is one more {@linkcode JobKind} in {@linkcode JOB_KINDS} (and its payload type in
 * `job_manifest.ts`), not an edit of the protocol, scheduler and worker code.
 *
 * @module
 */
import { jsonChecks } from "../util/json_checks.ts";
import type { JobPayload, WasmJobPayload } from "./job_manifest.ts";
import { WASM_KIND } from "./job_manifest.ts";
import { runSignedJob, type RunSignedJobOptions, type SignedJob } from "./run_signed_job.ts";

/** Most arguments (and most environment entries) a job manifest may carry. */
export const MAX_JOB_ARGS = 1024;

/** What a job offer of a kind requires of a worker, besides CPU cores and architecture. */
export interface JobKindRequirements {
  /** Memory in MiB. */
  memory_mb: number;
  /** Wall-clock limit in seconds. */
  timeout_seconds: number;
  /** The runtime asked for, such as `wasi-preview1`. */
  wasm_runtime: string;
}

/** The limits a worker runs a job under (the payload's, clamped to its own ceilings). */
export interface JobKindLimits {
  /** Linear memory limit in bytes. */
  memoryBytes: number;
  /** Wall-clock limit in ms. */
  timeoutMs: number;
  /** Cap on stdout and stderr together, in bytes. */
  maxOutputBytes: number;
}

/** How a worker runs a job of a kind; see {@linkcode JobKind.run}. */
export type JobKindRunOptions =
  & Pick<
    RunSignedJobOptions,
    "keyPair" | "input" | "sandbox" | "pool" | "signal" | "files" | "receiptExtra"
  >
  & Required<Pick<RunSignedJobOptions, "manifest">>
  & JobKindLimits;

/** One kind of job: its name, payload parser, offer requirements and runner. */
export interface JobKind<P extends JobPayload = JobPayload> {
  /** The payload's `kind`; also the capability name advertised for it. */
  readonly name: P["kind"];
  /** The `wasm_runtime` values a worker of this kind accepts in offers. */
  readonly runtimes: readonly string[];
  /**
   * Check the kind-specific fields of a payload a peer sent (its `kind` already matched).
   *
   * @throws {TypeError} If a field is missing or malformed.
   */
  parsePayload(payload: Record<string, unknown>): P;
  /** What an offer of this payload asks of a worker. */
  requirements(payload: P): JobKindRequirements;
  /** Run the job a signed manifest names and sign a receipt of the run. */
  run(module: Uint8Array, options: JobKindRunOptions): Promise<SignedJob>;
}

const _check = jsonChecks("Cannot accept job manifest");
const _SHA256 = /^sha256:[0-9a-f]{64}$/;

/**
 * WASM modules under WASI preview 1, run in the sandbox with memory, time, output and
 * (optionally) fuel limits.
 *
 * @example
 * ```ts
 * import { WASM_JOB } from "./job_kinds.ts";
 * import assert from "node:assert/strict";
 *
 * const payload = WASM_JOB.parsePayload({ kind: "wasm", module_cid: `sha256:${"a".repeat(64)}`,
 *   input: `sha256:${"b".repeat(64)}`, max_duration_ms: 1500, max_memory_bytes: 3 << 20 });
 * assert.deepEqual(WASM_JOB.requirements(payload),
 *   { memory_mb: 3, timeout_seconds: 2, wasm_runtime: "wasi-preview1" });
 * assert.throws(() => WASM_JOB.parsePayload({ ...payload, fuel: "-1" }), TypeError);
 * ```
 */
export const WASM_JOB: JobKind<WasmJobPayload> = {
  name: WASM_KIND,
  runtimes: ["wasi-preview1", "wasi_snapshot_preview1", "wasm"],
  parsePayload(p) {
    const payload: WasmJobPayload = {
      kind: WASM_KIND,
      module_cid: _check.match(p.module_cid, _SHA256, "module_cid"),
      input: _check.match(p.input, _SHA256, "input"),
      max_duration_ms: _check.count(p.max_duration_ms, "max_duration_ms"),
      max_memory_bytes: _check.count(p.max_memory_bytes, "max_memory_bytes"),
    };
    if (p.args !== undefined) payload.args = _check.strings(p.args, "args", MAX_JOB_ARGS);
    if (p.env !== undefined) payload.env = _check.env(p.env, "env", MAX_JOB_ARGS);
    if (p.max_output_bytes !== undefined) {
      payload.max_output_bytes = _check.count(p.max_output_bytes, "max_output_bytes");
    }
    if (p.fuel !== undefined) {
      if (typeof p.fuel !== "string" || !/^\d{1,19}$/.test(p.fuel) || BigInt(p.fuel) >= 2n ** 63n) {
        _check.fail("fuel must be a decimal string from 0 to 2^63-1");
      }
      payload.fuel = p.fuel as string;
    }
    if (p.inputs !== undefined) payload.inputs = _check.match(p.inputs, _SHA256, "inputs");
    return payload;
  },
  requirements(payload) {
    return {
      memory_mb: Math.ceil(payload.max_memory_bytes / 2 ** 20),
      timeout_seconds: Math.ceil(payload.max_duration_ms / 1000),
      wasm_runtime: "wasi-preview1",
    };
  },
  run(module, options) {
    const payload = options.manifest.payload;
    return runSignedJob(module, {
      ...options,
      args: payload.args ?? [],
      env: payload.env ?? {},
      ...(payload.fuel !== undefined ? { fuel: BigInt(payload.fuel) } : {}),
    });
  },
};

/** Every job kind a node knows, by name. */
export const JOB_KINDS: Readonly<Record<JobPayload["kind"], JobKind>> = { [WASM_KIND]: WASM_JOB };

/** The kind asked for when none is named (in `discover`, provider keys and submissions). */
export const DEFAULT_JOB_KIND: JobKind = WASM_JOB;

/**
 * The job kind named `name`.
 *
 * @throws {TypeError} If no kind has that name: `Cannot use job kind 'gpu': only wasm is known`.
 *
 * @example
 * ```ts
 * import { jobKind } from "./job_kinds.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(jobKind("wasm").name, "wasm");
 * assert.throws(() => jobKind("gpu"), { message: "Cannot use job kind 'gpu': only wasm is known" });
 * ```
 */
export function jobKind(name: unknown, what = "job kind"): JobKind {
  const kind = typeof name === "string" && Object.hasOwn(JOB_KINDS, name)
    ? JOB_KINDS[name as JobPayload["kind"]]
    : undefined;
  if (!kind) {
    const known = Object.keys(JOB_KINDS);
    throw new TypeError(
      `Cannot use ${what} '${name}': only ${known.join(", ")} ${
        known.length === 1 ? "is" : "are"
      } known`,
    );
  }
  return kind;
}
