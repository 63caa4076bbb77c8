/**
 * Boot manifests (`phase-boot-manifest:v1`): the signed list of boot artifacts a provider serves.
 *
 * @module
 */
import { fromHex, isSha256Tag, toHex } from "../runtime/digest.ts";
import { signMessage, verifySignature } from "../runtime/ed25519.ts";
import { rfc3339 } from "../runtime/receipt.ts";
import { signingBytes } from "../runtime/signing_bytes.ts";
import { parseStrictJson, StrictJsonError } from "../util/strict_json.ts";

/** The ASCII domain prefix of boot manifest signatures. */
export const BOOT_MANIFEST_PREFIX = "phase-boot-manifest:v1:";

/**
 * Most signatures a boot manifest may carry; one more and it is refused before any is checked,
 * so verifying a manifest costs at most this many Ed25519 verifications.
 */
export const MAX_BOOT_SIGNATURES = 16;

/** Largest boot manifest text read, in bytes (1 MiB). */
export const MAX_BOOT_MANIFEST_BYTES = 1 << 20;

/** One artifact of a boot manifest. */
export interface BootArtifact {
  /** File name as served. */
  filename: string;
  /** Exact size in bytes. */
  size_bytes: number;
  /** `sha256:<hex>` of the file. */
  hash: string;
  /** Where to download it, relative to the provider (`/stable/x86_64/kernel`) or absolute. */
  download_url: string;
}

/** One signature of a boot manifest. */
export interface BootSignature {
  /** Always `ed25519`. */
  algorithm: "ed25519";
  /** The signer's public key, hex. */
  key_id: string;
  /** Ed25519 signature over {@linkcode bootManifestSignedBytes}, hex. */
  signature: string;
  /** RFC 3339 UTC signing time (not itself signed). */
  signed_at: string;
}

/** A boot manifest. */
export interface BootManifest {
  /** Always 1. */
  manifest_version: 1;
  /** Release version text. */
  version: string;
  /** Increases whenever content changes; clients refuse a lower one (rollback). */
  sequence: number;
  /** Channel, e.g. `stable`. */
  channel: string;
  /** Architecture, e.g. `x86_64`. */
  arch: string;
  /** RFC 3339 UTC. */
  created_at: string;
  /** RFC 3339 UTC; clients refuse the manifest from then on. */
  expires_at: string;
  /** Artifacts by name (`kernel`, `initramfs`, `rootfs`, ...). */
  artifacts: Record<string, BootArtifact>;
  /** Optional provider information (not interpreted by verification). */
  provider?: Record<string, string>;
  /** Kernel command line for the booted system, if any. */
  cmdline?: string;
  /** Signatures over the rest of the manifest. */
  signatures: BootSignature[];
}

/**
 * The exact bytes boot manifest signatures cover: `phase-boot-manifest:v1:` followed by the
 * canonical JSON of the manifest without `signatures`.
 *
 * @example
 * ```ts
 * import { bootManifestSignedBytes } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * const text = new TextDecoder().decode(bootManifestSignedBytes({ sequence: 1, signatures: [] }));
 * assert.equal(text, 'phase-boot-manifest:v1:{"sequence":1}');
 * ```
 */
export function bootManifestSignedBytes(manifest: Record<string, unknown>): Uint8Array {
  const { signatures: _, ...rest } = manifest;
  return signingBytes(BOOT_MANIFEST_PREFIX, rest);
}

/**
 * Add an Ed25519 signature to a manifest (keeping any signatures it has by other keys).
 *
 * @example
 * ```ts
 * import { signBootManifest, verifyBootManifest } from "./boot_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 *
 * const keys = await generateKeyPair();
 * const signed = await signBootManifest({
 *   manifest_version: 1, version: "1", sequence: 1, channel: "stable", arch: "x86_64",
 *   created_at: "2026-01-01T00:00:00Z", expires_at: "2099-01-01T00:00:00Z", artifacts: {},
 *   signatures: [],
 * }, keys);
 * await verifyBootManifest(signed, { trustedKeys: [keys.publicKey] });
 * ```
 */
export async function signBootManifest(
  manifest: BootManifest,
  keyPair: { secretKey: Uint8Array; publicKey: Uint8Array },
  options: {
    /** Signing time. @default {new Date(manifest.created_at)} */
    signedAt?: Date;
  } = {},
): Promise<BootManifest> {
  const { signedAt = new Date(manifest.created_at) } = options;
  const keyId = toHex(keyPair.publicKey);
  const others = manifest.signatures.filter((s) => s.key_id !== keyId);
  if (others.length + 1 > MAX_BOOT_SIGNATURES) {
    throw new RangeError(
      `Cannot sign manifest: it would carry more than ${MAX_BOOT_SIGNATURES} signatures`,
    );
  }
  const signature = await signMessage(
    bootManifestSignedBytes(manifest as unknown as Record<string, unknown>),
    keyPair.secretKey,
  );
  return {
    ...manifest,
    signatures: [
      ...others,
      {
        algorithm: "ed25519",
        key_id: keyId,
        signature: toHex(signature),
        signed_at: rfc3339(signedAt),
      },
    ],
  };
}

/** What {@linkcode verifyBootManifest} checks against. */
export interface VerifyBootManifestOptions {
  /** Raw 32-byte public keys the client trusts. */
  trustedKeys: Uint8Array[];
  /** How many distinct trusted keys must have signed. @default {1} */
  threshold?: number;
  /** The time to check expiry against. @default {new Date()} */
  now?: Date;
  /** The last sequence accepted; a lower one is a rollback. @default {undefined} */
  minSequence?: number;
}

/**
 * A boot manifest that must not be used: bad shape, too few trusted signatures, expired, or
 * rolled back. `reason` says which, for scripts.
 *
 * @example
 * ```ts
 * import { ManifestRejectedError } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new ManifestRejectedError("expired", "Cannot accept manifest: expired").reason, "expired");
 * ```
 */
export class ManifestRejectedError extends Error {
  /** Why: `shape`, `version`, `signature`, `threshold`, `expired` or `rollback`. */
  readonly reason: "shape" | "version" | "signature" | "threshold" | "expired" | "rollback";
  /** Make the error. */
  constructor(reason: ManifestRejectedError["reason"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ManifestRejectedError";
    this.reason = reason;
  }
}

/**
 * Verify a boot manifest: shape, at least `threshold` valid signatures by distinct trusted keys,
 * not expired, not older than `minSequence`. Signatures by unknown keys are ignored, never
 * counted; a trusted key's bad signature fails the manifest. A manifest with more than
 * {@linkcode MAX_BOOT_SIGNATURES} signatures, or two by one key, is refused as malformed before
 * any signature is checked: each key is verified at most once.
 *
 * Given a parsed value, this checks what that value says; read manifest text with
 * {@linkcode parseBootManifestJson}, which refuses duplicate keys, floats and lone surrogates, so
 * that the manifest verified is the one every reader reads.
 *
 * @returns The manifest, typed.
 * @throws {ManifestRejectedError} Saying exactly what failed.
 *
 * @example
 * ```ts
 * import { verifyBootManifest, ManifestRejectedError } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(() => verifyBootManifest({ manifest_version: 2 }, { trustedKeys: [] }),
 *   ManifestRejectedError);
 * ```
 */
export async function verifyBootManifest(
  manifest: unknown,
  options: VerifyBootManifestOptions,
): Promise<BootManifest> {
  const { trustedKeys, threshold = 1, now = new Date(), minSequence } = options;
  if (!Number.isSafeInteger(threshold) || threshold < 1) {
    throw new RangeError(
      `Cannot verify manifest: threshold must be a whole number >= 1, got ${threshold}`,
    );
  }
  const m = parseBootManifest(manifest);
  const trusted = new Set(trustedKeys.map(toHex));
  const message = bootManifestSignedBytes(m as unknown as Record<string, unknown>);
  const good = new Set<string>();
  for (const sig of m.signatures) {
    if (!trusted.has(sig.key_id)) continue;
    if (!await verifySignature(fromHex(sig.signature), message, fromHex(sig.key_id))) {
      throw new ManifestRejectedError(
        "signature",
        `Cannot accept manifest: bad signature by trusted key ${sig.key_id}`,
      );
    }
    good.add(sig.key_id);
  }
  if (good.size < threshold) {
    throw new ManifestRejectedError(
      "threshold",
      good.size === 0 && m.signatures.length > 0
        ? `Cannot accept manifest: signed by no trusted key (signers: ${
          m.signatures.map((s) => s.key_id.slice(0, 16)).join(", ")
        })`
        : `Cannot accept manifest: ${good.size} valid signature(s) by trusted keys, need ${threshold}`,
    );
  }
  if (Date.parse(m.expires_at) <= now.getTime()) {
    throw new ManifestRejectedError(
      "expired",
      `Cannot accept manifest: expired at ${m.expires_at}`,
    );
  }
  if (minSequence !== undefined && m.sequence < minSequence) {
    throw new ManifestRejectedError(
      "rollback",
      `Cannot accept manifest: sequence ${m.sequence} is lower than the last accepted ${minSequence} (rollback)`,
    );
  }
  return m;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$/;

/** An RFC 3339 UTC time that names a real instant (no month 13, no February 30). */
function _isUtcTime(value: unknown): boolean {
  const match = typeof value === "string" ? RFC3339.exec(value) : null;
  if (!match) return false;
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
  const t = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo! - 1 && t.getUTCDate() === d &&
    t.getUTCHours() === h && t.getUTCMinutes() === mi && t.getUTCSeconds() === s;
}

/** A path (`/stable/x86_64/kernel`, `kernel`) or an absolute http(s) URL; nothing else. */
function _isDownloadUrl(value: string): boolean {
  if (value === "" || /[\s\\]/.test(value)) return false;
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(value)) return /^https?:\/\/[^/]/.test(value);
  return !value.startsWith("//");
}

/**
 * Check that a value has the shape of a boot manifest (version 1), and return it typed.
 *
 * @throws {ManifestRejectedError} With reason `version` or `shape`, naming the field.
 *
 * @example
 * ```ts
 * import { parseBootManifest } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseBootManifest({ manifest_version: 1 }), /sequence/);
 * ```
 */
export function parseBootManifest(value: unknown): BootManifest {
  const bad = (what: string) =>
    new ManifestRejectedError("shape", `Cannot accept manifest: malformed: ${what}`);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("not an object");
  }
  const m = value as Record<string, unknown>;
  if (m.manifest_version !== 1) {
    throw new ManifestRejectedError(
      "version",
      `Cannot accept manifest: unknown manifest_version ${JSON.stringify(m.manifest_version)}`,
    );
  }
  if (!Number.isSafeInteger(m.sequence) || (m.sequence as number) < 0) {
    throw bad("sequence is not a whole number");
  }
  for (const key of ["version", "channel", "arch"]) {
    if (typeof m[key] !== "string" || m[key] === "") throw bad(`${key} is not a non-empty string`);
  }
  for (const key of ["created_at", "expires_at"]) {
    if (typeof m[key] !== "string" || !RFC3339.test(m[key] as string)) {
      throw bad(`${key} is not an RFC 3339 UTC time`);
    }
    if (!_isUtcTime(m[key])) throw bad(`${key} '${m[key]}' is not a real date and time`);
  }
  if (m.cmdline !== undefined && typeof m.cmdline !== "string") {
    throw bad("cmdline is not a string");
  }
  const artifacts = m.artifacts;
  if (typeof artifacts !== "object" || artifacts === null || Array.isArray(artifacts)) {
    throw bad("artifacts is not an object");
  }
  const filenames = new Map<string, string>();
  for (const [name, a] of Object.entries(artifacts as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw bad(`artifact name '${name}'`);
    if (typeof a !== "object" || a === null) throw bad(`artifacts.${name} is not an object`);
    const art = a as Record<string, unknown>;
    if (typeof art.filename !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(art.filename)) {
      throw bad(`artifacts.${name}.filename is not a plain file name`);
    }
    if (!Number.isSafeInteger(art.size_bytes) || (art.size_bytes as number) < 0) {
      throw bad(`artifacts.${name}.size_bytes is not a size`);
    }
    if (!isSha256Tag(art.hash)) throw bad(`artifacts.${name}.hash is not sha256:<64 hex>`);
    if (typeof art.download_url !== "string" || art.download_url === "") {
      throw bad(`artifacts.${name}.download_url is not a string`);
    }
    if (!_isDownloadUrl(art.download_url)) {
      throw bad(`artifacts.${name}.download_url '${art.download_url}' is not http(s)`);
    }
    const other = filenames.get(art.filename);
    if (other !== undefined) {
      throw bad(`artifacts ${other} and ${name} share the filename '${art.filename}'`);
    }
    filenames.set(art.filename, name);
  }
  if (!Array.isArray(m.signatures)) throw bad("signatures is not an array");
  if (m.signatures.length > MAX_BOOT_SIGNATURES) {
    throw bad(`${m.signatures.length} signatures, at most ${MAX_BOOT_SIGNATURES} allowed`);
  }
  const signers = new Map<string, number>();
  for (const [i, s] of m.signatures.entries()) {
    const sig = s as Record<string, unknown>;
    if (typeof s !== "object" || s === null || sig.algorithm !== "ed25519") {
      throw bad(`signatures[${i}].algorithm is not ed25519`);
    }
    if (typeof sig.key_id !== "string" || !/^[0-9a-f]{64}$/.test(sig.key_id)) {
      throw bad(`signatures[${i}].key_id is not a 32-byte hex key`);
    }
    if (typeof sig.signature !== "string" || !/^[0-9a-f]{128}$/.test(sig.signature)) {
      throw bad(`signatures[${i}].signature is not 64 bytes of hex`);
    }
    const first = signers.get(sig.key_id);
    if (first !== undefined) {
      throw bad(`signatures[${i}] repeats the key of signatures[${first}]`);
    }
    signers.set(sig.key_id, i);
  }
  return value as BootManifest;
}

/**
 * Read a boot manifest from its JSON text or bytes, strictly (see `util/strict_json.ts`: no
 * duplicate keys at any depth, integers only, no lone surrogates, no byte order mark, at most
 * {@linkcode MAX_BOOT_MANIFEST_BYTES}), then check its shape as {@linkcode parseBootManifest}
 * does. Signatures are not checked: pass the result to {@linkcode verifyBootManifest}.
 *
 * @throws {ManifestRejectedError} With reason `shape` (or `version`), in one line:
 * `Cannot accept manifest: malformed: duplicate key 'sequence' at top level`.
 *
 * @example
 * ```ts
 * import { parseBootManifestJson } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseBootManifestJson('{"manifest_version":1,"sequence":9,"sequence":1}'), {
 *   name: "ManifestRejectedError",
 *   message: "Cannot accept manifest: malformed: duplicate key 'sequence' at top level",
 * });
 * ```
 */
export function parseBootManifestJson(input: string | Uint8Array): BootManifest {
  return parseBootManifest(_readJson(input));
}

function _readJson(input: string | Uint8Array): unknown {
  try {
    return parseStrictJson(input, { what: "manifest", maxBytes: MAX_BOOT_MANIFEST_BYTES });
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    throw new ManifestRejectedError(
      "shape",
      `Cannot accept manifest: malformed: ${
        error.notJson ? `not JSON (${error.reason})` : error.reason
      }`,
      { cause: error },
    );
  }
}
