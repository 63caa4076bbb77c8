/**
 * The formats of the Phase protocol: canonical JSON, strict JSON reading, `sha256:` digests,
 * Ed25519 keys and signatures, output commitments, receipts (`phase-receipt:v1`), job manifests
 * (`phase-manifest:v1`) and boot manifests (`phase-boot-manifest:v1`), with their signing and
 * verification. Pure functions over bytes and values: no file, network or process access.
 *
 * @example Sign a receipt-like message and check it against the pinned key
 * ```ts
 * import { canonicalJson, generateKeyPair, signMessage, verifySignature } from "./formats.ts";
 * import assert from "node:assert/strict";
 *
 * const key = await generateKeyPair();
 * const bytes = new TextEncoder().encode(canonicalJson({ b: 1, a: [true, "x"] }));
 * assert.equal(new TextDecoder().decode(bytes), '{"a":[true,"x"],"b":1}');
 * const signature = await signMessage(bytes, key.secretKey);
 * assert.ok(await verifySignature(signature, bytes, key.publicKey));
 * ```
 *
 * @module
 */
export { canonicalJson } from "./runtime/canonical_json.ts";
export type { CanonicalValue } from "./runtime/canonical_json.ts";
export { parseStrictJson, StrictJsonError } from "./util/strict_json.ts";
export type { StrictJsonOptions } from "./util/strict_json.ts";
export { fromHex, isSha256Tag, sha256, sha256Tag, toHex } from "./runtime/digest.ts";
export { generateKeyPair, signMessage, verifySignature } from "./runtime/ed25519.ts";
export type { KeyPair } from "./runtime/ed25519.ts";
export { DigestMismatchError, SignatureError } from "./runtime/errors.ts";
export { commitChunks, OUTPUT_CHUNK_BYTES, stdoutChunks } from "./runtime/output_commitment.ts";
export type { OutputChunk } from "./runtime/output_commitment.ts";
export {
  MAX_RECEIPT_BYTES,
  parseReceipt,
  parseReceiptJson,
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
  WASM_KIND,
} from "./runtime/job_manifest.ts";
export type { JobManifest, JobPayload, WasmJobPayload } from "./runtime/job_manifest.ts";
export {
  BOOT_MANIFEST_PREFIX,
  bootManifestSignedBytes,
  ManifestRejectedError,
  MAX_BOOT_MANIFEST_BYTES,
  MAX_BOOT_SIGNATURES,
  parseBootManifest,
  parseBootManifestJson,
  signBootManifest,
  verifyBootManifest,
} from "./provider/boot_manifest.ts";
export type {
  BootArtifact,
  BootManifest,
  BootSignature,
  VerifyBootManifestOptions,
} from "./provider/boot_manifest.ts";
