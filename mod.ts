/**
 * Phase: an open protocol for distributed computation, and Plasm, its node.
 *
 * This module is the library: running WASM jobs under limits with signed receipts, verifying
 * receipts and boot manifests, and the formats of the protocol. The subcommands (`run`,
 * `verify`, `serve`, `fetch`, `discover`, `start`) are separate entrypoints under `cli/`, each
 * run with its own narrow permissions.
 *
 * @example Run a job, then verify its receipt against the worker's pinned key
 * ```ts
 * import { generateKeyPair, runSignedJob, verifyReceipt } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const module = await Deno.readFile(new URL("./examples/hello.wasm", import.meta.url));
 * const input = new TextEncoder().encode("Hello, World");
 * const worker = await generateKeyPair();
 * const { outcome, receipt } = await runSignedJob(module, { input, keyPair: worker });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "dlroW ,olleH");
 * await verifyReceipt(receipt, { publicKey: worker.publicKey, module, input, output: outcome.stdout });
 * ```
 *
 * @module
 */
export { canonicalJson } from "./runtime/canonical_json.ts";
export type { CanonicalValue } from "./runtime/canonical_json.ts";
export { fromHex, isSha256Tag, sha256, sha256Tag, toHex } from "./runtime/digest.ts";
export { generateKeyPair, signMessage, verifySignature } from "./runtime/ed25519.ts";
export type { KeyPair } from "./runtime/ed25519.ts";
export { DigestMismatchError, SignatureError } from "./runtime/errors.ts";
export { commitChunks, OUTPUT_CHUNK_BYTES, stdoutChunks } from "./runtime/output_commitment.ts";
export type { OutputChunk } from "./runtime/output_commitment.ts";
export {
  parseReceipt,
  RECEIPT_PREFIX,
  ReceiptMismatchError,
  receiptSignedBytes,
  rfc3339,
  signReceipt,
  verifyReceipt,
} from "./runtime/receipt.ts";
export type {
  Completion,
  JobResult,
  Receipt,
  ResultMetrics,
  VerifyReceiptOptions,
} from "./runtime/receipt.ts";
export {
  JOB_MANIFEST_PREFIX,
  jobIdOf,
  jobManifestSignedBytes,
  jobSpecHash,
  signJobManifest,
  verifyJobManifest,
} from "./runtime/job_manifest.ts";
export type { JobManifest, WasmJobPayload } from "./runtime/job_manifest.ts";
export { MEMORY_LIMIT_FRACTION, runJob } from "./runtime/run_job.ts";
export type { JobErrorKind, JobOutcome, RunJobOptions } from "./runtime/run_job.ts";
export { DEFAULT_LIMITS, runSignedJob } from "./runtime/run_signed_job.ts";
export { SandboxPool } from "./runtime/sandbox_pool.ts";
export type { SandboxPoolOptions } from "./runtime/sandbox_pool.ts";
export type { RunSignedJobOptions, SignedJob } from "./runtime/run_signed_job.ts";
export { defaultStateDir, loadOrCreateIdentity, NODE_KEY_FILE } from "./net/identity.ts";
export {
  BOOT_MANIFEST_PREFIX,
  bootManifestSignedBytes,
  ManifestRejectedError,
  parseBootManifest,
  signBootManifest,
  verifyBootManifest,
} from "./provider/boot_manifest.ts";
export type {
  BootArtifact,
  BootManifest,
  BootSignature,
  VerifyBootManifestOptions,
} from "./provider/boot_manifest.ts";
export {
  parseTrustedKeys,
  readPublicKeyFile,
  readSecretKeyFile,
  readTrustedKeysFile,
  writeKeyPairFiles,
} from "./provider/key_files.ts";
export type { TrustedKey } from "./provider/key_files.ts";
export { limitMemory, MemoryCapError, WASM_PAGE_BYTES } from "./runtime/limit_memory.ts";
export type { LimitedModule, MemoryLimits, TableLimits } from "./runtime/limit_memory.ts";
export {
  FUEL_EXHAUSTED_EXPORT,
  FUEL_GLOBAL_EXPORT,
  FUEL_START_EXPORT,
  FUEL_VERSION,
  FuelCache,
  FuelExhaustedError,
  instrumentFuel,
  readFuel,
  startFuel,
} from "./runtime/fuel.ts";
export type { FuelCacheOptions, FuelReading } from "./runtime/fuel.ts";
export {
  ARTIFACT_FILE_NAMES,
  ArtifactStore,
  PROVIDER_STATE_FILE,
  SAFE_NAME,
} from "./provider/artifact_store.ts";
export type {
  ArtifactEntry,
  ArtifactSet,
  ArtifactStoreMetrics,
  ArtifactStoreOptions,
  FileVersion,
  OpenArtifact,
} from "./provider/artifact_store.ts";
export { createProviderHandler } from "./provider/provider_handler.ts";
export type {
  DiskSpace,
  ProviderHandler,
  ProviderHandlerOptions,
  ProviderMetrics,
} from "./provider/provider_handler.ts";
export { fetchArtifacts } from "./provider/fetch_artifacts.ts";
export type {
  FetchArtifactsOptions,
  FetchArtifactsResult,
  FetchedArtifact,
} from "./provider/fetch_artifacts.ts";
export { fetchBootManifest } from "./provider/fetch_boot_manifest.ts";
export type {
  FetchBootManifestOptions,
  FetchedBootManifest,
} from "./provider/fetch_boot_manifest.ts";
export { ArtifactFetchError, downloadArtifact } from "./provider/download_artifact.ts";
export type { DownloadArtifactOptions, DownloadResult } from "./provider/download_artifact.ts";
export { acceptBootManifest } from "./provider/accept_boot_manifest.ts";
export type { AcceptBootManifestOptions } from "./provider/accept_boot_manifest.ts";
export {
  ArtifactSizeError,
  hashFile,
  verifyArtifactFile,
  verifyArtifacts,
} from "./provider/verify_artifacts.ts";
export type { ArtifactCheck } from "./provider/verify_artifacts.ts";
export {
  lastAcceptedSequence,
  readManifestState,
  recordAcceptedManifest,
} from "./provider/manifest_state.ts";
export type { ManifestState, ManifestStateEntry } from "./provider/manifest_state.ts";
export { ApiUnreachableError, Client, JobFailedError } from "./net/client.ts";
export type {
  ClientOptions,
  ClientSubmitOptions,
  JobResultInfo,
  JobStatusInfo,
  JobWorkerResult,
} from "./net/client.ts";
export type { SubmitOptions } from "./net/scheduler.ts";
export { planKexec } from "./boot/kexec_plan.ts";
export type { KexecPlan, PlanKexecOptions } from "./boot/kexec_plan.ts";
export { writeInitrdOverlay } from "./boot/initrd_overlay.ts";
export type { OverlayFile } from "./boot/initrd_overlay.ts";
export { cpioArchive } from "./boot/cpio.ts";
export type { CpioEntry } from "./boot/cpio.ts";
