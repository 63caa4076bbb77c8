/**
 * Job manifests (`phase-manifest:v1`): a signed request to run a job, and its job id.
 *
 * @module
 */
import { canonicalJson } from "./canonical_json.ts";
import { fromHex, sha256, toHex } from "./digest.ts";
import { signMessage, verifySignature } from "./ed25519.ts";
import { SignatureError } from "./errors.ts";
import { rfc3339 } from "./receipt.ts";
import { signingBytes } from "./signing_bytes.ts";

/** The ASCII domain prefix of job manifest signatures. */
export const JOB_MANIFEST_PREFIX = "phase-manifest:v1:";

/**
 * The `kind` of a WASM job's payload: the one place the name is spelled. The kinds a node
 * knows, with their parsers and runners, are in `job_kinds.ts`.
 */
export const WASM_KIND = "wasm";

/** The payload of a WASM job. */
export interface WasmJobPayload {
  /** Always {@linkcode WASM_KIND}. */
  kind: typeof WASM_KIND;
  /** The module's content address, `sha256:<hex>` of its bytes. */
  module_cid: string;
  /** The input's content address, `sha256:<hex>` of the stdin bytes. */
  input: string;
  /** Wall-clock limit in milliseconds. */
  max_duration_ms: number;
  /** Linear memory limit in bytes. */
  max_memory_bytes: number;
  /**
   * Arguments after `argv[0]`. Optional, like the fields below: an absent field is left out of
   * the signed bytes, so manifests without it sign exactly as before. @default {[]}
   */
  args?: string[];
  /** The job's whole environment (nothing is inherited). @default {{}} */
  env?: Record<string, string>;
  /** Cap on stdout and stderr together, in bytes. @default {the worker's own cap (16 MiB)} */
  max_output_bytes?: number;
  /**
   * Fuel limit: instructions the job may execute, a decimal string (it may pass 2^53, and
   * signed data holds safe integers only). @default {unmetered}
   */
  fuel?: string;
  /**
   * The hash of the job's input files (`sha256:<hex>` of their encoded tree, see
   * file_tree.ts). @default {no files}
   */
  inputs?: string;
}

/** The payload of a job of any kind a node knows (only {@linkcode WasmJobPayload} today). */
export type JobPayload = WasmJobPayload;

/** A signed job manifest. */
export interface JobManifest {
  /** Always 1. */
  schema_version: 1;
  /** What to run. */
  payload: JobPayload;
  /** The requester's Ed25519 public key, hex. */
  signer_pubkey: string;
  /** Ed25519 signature over {@linkcode jobManifestSignedBytes}, hex. */
  signature: string;
  /** RFC 3339 UTC creation time. */
  created_at: string;
  /** Optional RFC 3339 UTC expiry. */
  expires_at?: string;
}

/**
 * The exact bytes a job manifest's signature covers: `phase-manifest:v1:` followed by the
 * canonical JSON of `{schema_version, payload, created_at, expires_at?}`.
 *
 * @example
 * ```ts
 * import { jobManifestSignedBytes } from "./job_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = jobManifestSignedBytes({
 *   schema_version: 1, created_at: "2026-01-01T00:00:00Z",
 *   payload: { kind: "wasm", module_cid: "m", input: "i", max_duration_ms: 1, max_memory_bytes: 2 },
 * });
 * assert.ok(new TextDecoder().decode(bytes).startsWith('phase-manifest:v1:{"created_at"'));
 * ```
 */
export function jobManifestSignedBytes(
  manifest: Pick<JobManifest, "schema_version" | "payload" | "created_at" | "expires_at">,
): Uint8Array {
  const { schema_version, payload, created_at, expires_at } = manifest;
  return signingBytes(JOB_MANIFEST_PREFIX, { schema_version, payload, created_at, expires_at });
}

/**
 * The job id of a manifest: hex SHA-256 of its signed bytes.
 *
 * @example
 * ```ts
 * import { jobIdOf } from "./job_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * const id = jobIdOf({
 *   schema_version: 1, created_at: "2026-01-01T00:00:00Z",
 *   payload: { kind: "wasm", module_cid: "m", input: "i", max_duration_ms: 1, max_memory_bytes: 2 },
 * });
 * assert.match(id, /^[0-9a-f]{64}$/);
 * ```
 */
export function jobIdOf(
  manifest: Pick<JobManifest, "schema_version" | "payload" | "created_at" | "expires_at">,
): string {
  return toHex(sha256(jobManifestSignedBytes(manifest)));
}

/**
 * The job spec hash of a payload: SHA-256 of its canonical JSON, the value receipts carry in
 * `result.job_spec_hash`.
 *
 * @example
 * ```ts
 * import { jobSpecHash } from "./job_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = jobSpecHash({ kind: "wasm", module_cid: "m", input: "i", max_duration_ms: 1, max_memory_bytes: 2 });
 * assert.equal(hash.length, 32);
 * ```
 */
export function jobSpecHash(payload: JobPayload): Uint8Array {
  return sha256(canonicalJson(payload));
}

/**
 * Sign a job payload as a `phase-manifest:v1` manifest.
 *
 * @example
 * ```ts
 * import { signJobManifest, verifyJobManifest } from "./job_manifest.ts";
 * import { generateKeyPair } from "./ed25519.ts";
 *
 * const keys = await generateKeyPair();
 * const manifest = await signJobManifest(
 *   { kind: "wasm", module_cid: "m", input: "i", max_duration_ms: 1, max_memory_bytes: 2 },
 *   { keyPair: keys },
 * );
 * await verifyJobManifest(manifest, { publicKey: keys.publicKey });
 * ```
 */
export async function signJobManifest(
  payload: JobPayload,
  options: {
    /** The requester's key pair. */
    keyPair: { secretKey: Uint8Array; publicKey: Uint8Array };
    /** Creation time. @default {new Date()} */
    createdAt?: Date;
    /** Optional expiry. */
    expiresAt?: Date;
    /**
     * Signs the bytes with `keyPair`'s secret key in place of `signMessage` (a warm pool signs
     * natively, without a round trip to another thread); Ed25519 gives the same signature.
     * @default {signMessage}
     */
    sign?: (message: Uint8Array) => Uint8Array | Promise<Uint8Array>;
  },
): Promise<JobManifest> {
  const { keyPair, createdAt = new Date(), expiresAt, sign } = options;
  const unsigned = {
    schema_version: 1 as const,
    payload,
    created_at: rfc3339(createdAt),
    ...(expiresAt ? { expires_at: rfc3339(expiresAt) } : {}),
  };
  const bytes = jobManifestSignedBytes(unsigned);
  const signature = await (sign ? sign(bytes) : signMessage(bytes, keyPair.secretKey));
  return {
    ...unsigned,
    signer_pubkey: toHex(keyPair.publicKey),
    signature: toHex(signature),
  };
}

/**
 * Verify a job manifest's signature, against a pinned key when one is given, else against its
 * own `signer_pubkey` (the requester's identity), and refuse it once expired.
 *
 * @returns The manifest's job id.
 * @throws {SignatureError} If the signature does not verify or the manifest has expired.
 *
 * @example
 * ```ts
 * import { verifyJobManifest } from "./job_manifest.ts";
 * import { SignatureError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(() => verifyJobManifest({
 *   schema_version: 1, created_at: "2026-01-01T00:00:00Z", signer_pubkey: "00".repeat(32),
 *   signature: "00".repeat(64),
 *   payload: { kind: "wasm", module_cid: "m", input: "i", max_duration_ms: 1, max_memory_bytes: 2 },
 * }), SignatureError);
 * ```
 */
export async function verifyJobManifest(
  manifest: JobManifest,
  options: {
    /** The key the manifest must be signed by. @default {the manifest's own signer_pubkey} */
    publicKey?: Uint8Array;
    /** The time to check expiry against. @default {new Date()} */
    now?: Date;
  } = {},
): Promise<string> {
  const { publicKey = fromHex(manifest.signer_pubkey, 32), now = new Date() } = options;
  if (toHex(publicKey) !== manifest.signer_pubkey) {
    throw new SignatureError(
      `Cannot verify job manifest: signed for key ${manifest.signer_pubkey}, expected ${
        toHex(publicKey)
      }`,
    );
  }
  const bytes = jobManifestSignedBytes(manifest);
  if (!await verifySignature(fromHex(manifest.signature), bytes, publicKey)) {
    throw new SignatureError("Cannot verify job manifest: bad signature");
  }
  if (manifest.expires_at !== undefined && Date.parse(manifest.expires_at) <= now.getTime()) {
    throw new SignatureError(`Cannot accept job manifest: expired at ${manifest.expires_at}`);
  }
  return toHex(sha256(bytes));
}
