/**
 * Run a WASM job and sign a `phase-receipt:v1` for what ran.
 *
 * @module
 */
import { canonicalJson } from "./canonical_json.ts";
import { sha256Tag, sha256TagAsync } from "./digest.ts";
import type { KeyPair } from "./ed25519.ts";
import {
  jobIdOf,
  type JobManifest,
  jobSpecHash,
  signJobManifest,
  WASM_KIND,
} from "./job_manifest.ts";
import { commitChunksAsync, stdoutChunks } from "./output_commitment.ts";
import { type Receipt, rfc3339, signReceipt } from "./receipt.ts";
// Types only: runJob (and its sandboxes) is loaded when no other runner is given.
import type { JobOutcome, RunJobOptions } from "./run_job.ts";

/** Defaults of the limits, shared by `run` and the node. */
export const DEFAULT_LIMITS = {
  /** 256 MiB of linear memory. */
  memoryBytes: 256 * 1024 * 1024,
  /** 30 s of wall-clock time. */
  timeoutMs: 30_000,
  /** 16 MiB of stdout and stderr together. */
  maxOutputBytes: 16 * 1024 * 1024,
  /** 64 MiB of module. */
  maxModuleBytes: 64 * 1024 * 1024,
} as const;

/** Options of {@linkcode runSignedJob}: those of `runJob` plus the signing key. */
export interface RunSignedJobOptions extends RunJobOptions {
  /** The worker's key pair: signs the receipt (and, for a local run, the job manifest). */
  keyPair: KeyPair;
  /** A job manifest signed by the requester; when absent, the worker signs one itself. */
  manifest?: JobManifest;
  /**
   * Runs the job in place of `runJob` (`run` passes `runInProcess`); it also gets the job id,
   * to prepare what depends on it before the job starts. @default {runJob}
   */
  runner?: (module: Uint8Array, options: RunJobOptions, jobId: string) => Promise<JobOutcome>;
  /**
   * More facts for the receipt's `metrics.extra`, from the node about itself (such as
   * `boot_manifest_hash`); the runtime's own keys take precedence. @default {{}}
   */
  receiptExtra?: Record<string, string>;
}

/** What a signed run gives back. */
export interface SignedJob {
  /** The job manifest the receipt's job id refers to. */
  manifest: JobManifest;
  /** Hex job id (SHA-256 of the manifest's signed bytes). */
  jobId: string;
  /** Output, exit code, completion and error of the run. */
  outcome: JobOutcome;
  /** The signed receipt. */
  receipt: Receipt;
}

/**
 * Run a module under limits in the sandbox and sign a receipt of the run. The receipt's
 * `metrics.extra` records `module_hash`, `input_hash`, `output_hash`, `stderr_hash`,
 * `args_hash`, `env_hash`, `exit_code` (when the job exited), `peak_memory_bytes`, the limits,
 * `fuel_limit` and `fuel_used` for a metered job and, for a failed job, `error` (its kind). The output commitment covers stdout in 64 KiB
 * chunks. Failures of the module (trap, timeout, memory, output cap) still give a signed receipt
 * with `completion` `error` or `length`.
 *
 * With a warm `pool`, the module is hashed once: a copy of `module` is hashed and run, and its
 * hash is the pool's cache key, so changing `module` while the job runs changes nothing. A
 * manifest the worker signs itself is signed while the job runs; a `keyPair` that is not two
 * 32-byte arrays is refused (`TypeError`) before it starts.
 *
 * @example
 * ```ts
 * import { runSignedJob } from "./run_signed_job.ts";
 * import { generateKeyPair } from "./ed25519.ts";
 * import { verifyReceipt } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const input = new TextEncoder().encode("Hello, World");
 * const keyPair = await generateKeyPair();
 * const { outcome, receipt } = await runSignedJob(module, { input, keyPair });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "dlroW ,olleH");
 * await verifyReceipt(receipt, { publicKey: keyPair.publicKey, module, input, output: outcome.stdout });
 * ```
 */
export async function runSignedJob(
  module: Uint8Array,
  options: RunSignedJobOptions,
): Promise<SignedJob> {
  const {
    keyPair,
    manifest: given,
    runner,
    input = new Uint8Array(),
    args = [],
    env = {},
    memoryBytes = DEFAULT_LIMITS.memoryBytes,
    timeoutMs = DEFAULT_LIMITS.timeoutMs,
    maxOutputBytes = DEFAULT_LIMITS.maxOutputBytes,
    receiptExtra = {},
    ...rest
  } = options;
  // The key is checked before the job runs: the manifest is signed while it runs.
  for (
    const [name, key] of [["secretKey", keyPair?.secretKey], ["publicKey", keyPair?.publicKey]]
  ) {
    if (!(key instanceof Uint8Array) || key.length !== 32) {
      throw new TypeError(`Cannot run signed job: keyPair.${name} must be 32 bytes`);
    }
  }
  // With a warm pool (which loads `node:crypto` anyway) the module is hashed once, natively, and
  // the pool is given that hash as its cache key. It is the hash of a copy that only the pool
  // holds (see `SandboxPool._own`), so the bytes the pool sends are the bytes hashed, whatever
  // the caller does to `module` meanwhile.
  const pool = rest.pool && typeof rest.pool._own === "function" &&
      typeof rest.pool._sign === "function"
    ? rest.pool
    : undefined;
  const owned = pool && !runner ? pool._own(module) : undefined;
  const bytes = owned?.bytes ?? module;
  const runJobModule = runner ? undefined : await (_runJobModule ??= import("./run_job.ts"));
  const hashTag = (data: Uint8Array): string | Promise<string> =>
    pool && data.length > _NATIVE_MIN_BYTES ? `sha256:${pool._sha256(data)}` : sha256TagAsync(data);
  const [moduleHash, inputHash] = await Promise.all([
    owned ? `sha256:${owned.hash}` : hashTag(bytes),
    hashTag(input),
  ]);
  // `fileTreeHash` of the input files (sha256 of their encoded tree), only for a job with files.
  const inputsHash = rest.files ? sha256Tag(rest.files.tree) : undefined;
  const createdAt = new Date();
  const payload = given?.payload ?? {
    kind: WASM_KIND,
    module_cid: moduleHash,
    input: inputHash,
    max_duration_ms: timeoutMs,
    max_memory_bytes: memoryBytes,
    ...(inputsHash ? { inputs: inputsHash } : {}),
  };
  if (payload.inputs !== inputsHash) {
    throw new TypeError(
      `Cannot run job: its manifest names input files ${payload.inputs ?? "none"}, got ${
        inputsHash ?? "none"
      }`,
    );
  }
  if (payload.module_cid !== moduleHash || payload.input !== inputHash) {
    throw new TypeError(
      `Cannot run job: its manifest names module ${payload.module_cid} and input ${payload.input}, got ${moduleHash} and ${inputHash}`,
    );
  }
  // The job id covers the manifest's signed bytes, not its signature: a manifest this worker
  // signs itself is signed while the job runs.
  const jobId = jobIdOf(given ?? { schema_version: 1, payload, created_at: rfc3339(createdAt) });
  const run = runner ??
    ((m: Uint8Array, o: RunJobOptions) => runJobModule!._runJob(m, o, owned?.hash));
  // Started before the manifest is signed, so the sandbox works while this thread signs.
  const running = (async () =>
    await run(bytes, {
      ...rest,
      input,
      args,
      env,
      memoryBytes,
      timeoutMs,
      maxOutputBytes,
    }, jobId))();
  // With a warm pool (`node:crypto` loaded), signed natively on this thread: no round trip.
  const sign = pool ? (bytes: Uint8Array) => pool._sign(bytes, keyPair.secretKey) : undefined;
  const signing = given
    ? Promise.resolve(given)
    : signJobManifest(payload, { keyPair, createdAt, ...(sign ? { sign } : {}) });
  const [ran, signed] = await Promise.allSettled([running, signing]);
  if (ran.status === "rejected") throw ran.reason;
  if (signed.status === "rejected") throw signed.reason;
  const outcome = ran.value;
  const manifest = signed.value;
  const chunks = stdoutChunks(outcome.stdout);
  const [outputHash, stderrHash] = await Promise.all([
    hashTag(outcome.stdout),
    hashTag(outcome.stderr),
  ]);
  const extra: Record<string, string> = {
    ...receiptExtra,
    module_hash: moduleHash,
    input_hash: inputHash,
    output_hash: outputHash,
    stderr_hash: stderrHash,
    args_hash: sha256Tag(canonicalJson(args)),
    env_hash: sha256Tag(canonicalJson(env)),
    peak_memory_bytes: String(outcome.peakMemoryBytes),
    memory_limit_bytes: String(memoryBytes),
    timeout_ms: String(timeoutMs),
    max_output_bytes: String(maxOutputBytes),
  };
  if (outcome.exitCode !== null) extra.exit_code = String(outcome.exitCode);
  if (outcome.error) extra.error = outcome.error.kind;
  if (inputsHash) extra.inputs_hash = inputsHash;
  if (outcome.files) extra.outputs_hash = sha256Tag(outcome.files);
  if (rest.fuel !== undefined) {
    extra.fuel_limit = String(rest.fuel);
    if (outcome.fuelUsed !== undefined) extra.fuel_used = String(outcome.fuelUsed);
  }
  const receipt = await signReceipt({
    job_spec_hash: Array.from(jobSpecHash(payload)),
    output_commitment: Array.from(await commitChunksAsync(chunks)),
    output_chunk_count: chunks.length,
    completion: outcome.completion,
    resumption: null,
    metrics: {
      total_duration_ms: Math.round(outcome.durationMs),
      prompt_tokens: 0,
      completion_tokens: 0,
      extra,
    },
  }, { jobId, keyPair, ...(sign ? { sign } : {}) });
  return { manifest, jobId, outcome, receipt };
}

/** run_job.ts, loaded by the first job that needs it (see the type-only import above). */
let _runJobModule: Promise<typeof import("./run_job.ts")> | undefined;

/** Data over this size is hashed with the pool's native SHA-256; smaller data in place. */
const _NATIVE_MIN_BYTES = 2048;
