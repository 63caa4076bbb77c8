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
import { type Receipt, signReceipt } from "./receipt.ts";
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
    ...rest
  } = options;
  const [moduleHash, inputHash] = await Promise.all([
    sha256TagAsync(module),
    sha256TagAsync(input),
  ]);
  // `fileTreeHash` of the input files (sha256 of their encoded tree), only for a job with files.
  const inputsHash = rest.files ? sha256Tag(rest.files.tree) : undefined;
  const manifest = given ?? await signJobManifest({
    kind: WASM_KIND,
    module_cid: moduleHash,
    input: inputHash,
    max_duration_ms: timeoutMs,
    max_memory_bytes: memoryBytes,
    ...(inputsHash ? { inputs: inputsHash } : {}),
  }, { keyPair });
  if (manifest.payload.inputs !== inputsHash) {
    throw new TypeError(
      `Cannot run job: its manifest names input files ${manifest.payload.inputs ?? "none"}, got ${
        inputsHash ?? "none"
      }`,
    );
  }
  if (manifest.payload.module_cid !== moduleHash || manifest.payload.input !== inputHash) {
    throw new TypeError(
      `Cannot run job: its manifest names module ${manifest.payload.module_cid} and input ${manifest.payload.input}, got ${moduleHash} and ${inputHash}`,
    );
  }
  const jobId = jobIdOf(manifest);
  const run = runner ?? (await import("./run_job.ts")).runJob;
  const outcome = await run(module, {
    ...rest,
    input,
    args,
    env,
    memoryBytes,
    timeoutMs,
    maxOutputBytes,
  }, jobId);
  const chunks = stdoutChunks(outcome.stdout);
  const extra: Record<string, string> = {
    module_hash: moduleHash,
    input_hash: inputHash,
    output_hash: await sha256TagAsync(outcome.stdout),
    stderr_hash: await sha256TagAsync(outcome.stderr),
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
    job_spec_hash: Array.from(jobSpecHash(manifest.payload)),
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
  }, { jobId, keyPair });
  return { manifest, jobId, outcome, receipt };
}
