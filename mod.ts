/**
 * Phase: an open protocol for distributed computation, and Plasm, its node.
 *
 * This module is the small front door of the library: the `Client` of a node's local API,
 * running a job locally with a signed receipt, and verifying receipts, job manifests, boot
 * manifests and artifacts. The rest lives in subpath modules, each with its own `@module` doc:
 *
 * - `./runtime`: sandboxes, limits, fuel, the sandbox pool (`runtime/mod.ts`);
 * - `./formats`: canonical JSON, digests, keys, receipts, job and boot manifests (`formats.ts`);
 * - `./provider`: the boot-artifact store, HTTP handler and fetch client (`provider/mod.ts`);
 * - `./boot`: kexec planning and initramfs images (`boot/mod.ts`);
 * - `./net`: the libp2p node, discovery and job protocols (`net/mod.ts`).
 *
 * The subcommands (`run`, `verify`, `serve`, `fetch`, `discover`, `start`, ...) are separate
 * entrypoints under `cli/`, each run with its own narrow permissions.
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
export { ApiUnreachableError, Client, JobFailedError } from "./net/client.ts";
export type {
  ClientOptions,
  ClientSubmitOptions,
  JobResultInfo,
  JobStatusInfo,
  JobWorkerResult,
} from "./net/client.ts";
export type { SubmitOptions } from "./net/submit_options.ts";
export { defaultStateDir, loadOrCreateIdentity, NODE_KEY_FILE } from "./net/identity.ts";
export { runJob, runSignedJob } from "./runtime/mod.ts";
export type { FuelCache, JobErrorKind, JobOutcome, RunJobOptions } from "./runtime/mod.ts";
export type { InstrumentFuelOptions } from "./runtime/mod.ts";
export type { SandboxFiles, WasiPreopen } from "./runtime/mod.ts";
export type { RunSignedJobOptions, SandboxPool, SignedJob } from "./runtime/mod.ts";
export type { ConfinementStatus, SandboxConfinement } from "./runtime/mod.ts";
export { DigestMismatchError, generateKeyPair, SignatureError } from "./formats.ts";
export { parseReceipt, ReceiptMismatchError, verifyReceipt } from "./formats.ts";
export { parseReceiptJson, StrictJsonError } from "./formats.ts";
export type { Completion, JobResult, KeyPair, Receipt, ResultMetrics } from "./formats.ts";
export type { VerifyReceiptOptions } from "./formats.ts";
export { verifyJobManifest, WASM_KIND } from "./formats.ts";
export type { JobManifest, JobPayload, WasmJobPayload } from "./formats.ts";
export { ManifestRejectedError, parseBootManifest, verifyBootManifest } from "./formats.ts";
export { MAX_BOOT_SIGNATURES, parseBootManifestJson } from "./formats.ts";
export type { BootArtifact, BootManifest, BootSignature } from "./formats.ts";
export type { VerifyBootManifestOptions } from "./formats.ts";
export { ArtifactSizeError, verifyArtifactFile } from "./provider/verify_artifacts.ts";
