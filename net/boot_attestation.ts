/**
 * Boot attestations: a node's own signed statement of how it booted. The boot stub records
 * what it verified before kexec (a `BootProvenance`, `/booted/provenance.json`, see
 * docs/boot.md); `start --boot-provenance FILE` signs it with the node key (the key its PeerId
 * names) and shows the attestation in its node info, so a requester can offer jobs only to
 * nodes that say they booted a release signed by a given publisher key.
 *
 * Signed bytes: the ASCII prefix {@linkcode BOOT_ATTESTATION_PREFIX} followed by the canonical
 * JSON of `{attestation_version, peer_id, provenance, signed_at}` (docs/protocol.md). It proves
 * only that the holder of the node key says so: without a TPM quote there is no hardware root of
 * trust, and a modified system can sign any provenance.
 *
 * @module
 */
import type { BootProvenance } from "../boot/kexec_plan.ts";
import { signingBytes } from "../runtime/signing_bytes.ts";
import { fromHex, toHex } from "../runtime/digest.ts";
import { type KeyPair, signMessage, verifySignature } from "../runtime/ed25519.ts";
import { SignatureError } from "../runtime/errors.ts";
import { rfc3339 } from "../runtime/receipt.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { jsonChecks } from "../util/json_checks.ts";
import { parseStrictJson, StrictJsonError } from "../util/strict_json.ts";
import { peerPublicKey } from "./peer_key.ts";
import { readUpTo } from "../util/read_up_to.ts";

export type { BootProvenance };

/** The prefix of an attestation's signed bytes. */
export const BOOT_ATTESTATION_PREFIX = "phase-boot-attestation:v1:";

/** The largest provenance accepted, in bytes of JSON (a file or inside an attestation). */
export const MAX_PROVENANCE_BYTES = 4096;

/** A node's signed statement of the provenance it booted with; see the module doc. */
export interface BootAttestation {
  /** Always 1. */
  attestation_version: 1;
  /** The PeerId of the node that signs; its Ed25519 key verifies the signature. */
  peer_id: string;
  /** What the boot stub verified before kexec. */
  provenance: BootProvenance;
  /** When the node signed it, RFC 3339 UTC. */
  signed_at: string;
  /** Ed25519 signature (hex) over the signed bytes, by the PeerId's key. */
  signature: string;
}

/** What a requester demands of a worker's attestation. */
export interface BootRequirement {
  /** A publisher key id (hex public key) that must be among `provenance.signer_key_ids`. */
  signer: string;
  /** The lowest acceptable `provenance.boot_sequence`. */
  minSequence: number;
}

const _HASH = /^sha256:[0-9a-f]{64}$/;
const _KEY_ID = /^[0-9a-f]{64}$/;
const _NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const _PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/;
const _TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const _PROVENANCE_KEYS = new Set([
  "provenance_version",
  "boot_manifest_hash",
  "boot_sequence",
  "version",
  "channel",
  "arch",
  "signer_key_ids",
  "artifacts",
  "providers",
]);
const _ATTESTATION_KEYS = new Set([
  "attestation_version",
  "peer_id",
  "provenance",
  "signed_at",
  "signature",
]);

/**
 * Check a provenance record field by field: every field present with its type and range, no
 * other field, at most {@linkcode MAX_PROVENANCE_BYTES} as JSON. Returns a copy.
 *
 * @throws {TypeError} If a field is missing, unknown or malformed, or the record is too large.
 *
 * @example
 * ```ts
 * import { parseBootProvenance } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * const provenance = parseBootProvenance({
 *   provenance_version: 1, boot_manifest_hash: `sha256:${"a".repeat(64)}`, boot_sequence: 7,
 *   version: "7", channel: "stable", arch: "x86_64", signer_key_ids: ["b".repeat(64)],
 *   artifacts: { kernel: `sha256:${"c".repeat(64)}` }, providers: ["http://10.0.2.2:8080"],
 * });
 * assert.equal(provenance.boot_sequence, 7);
 * assert.throws(() => parseBootProvenance({ ...provenance, boot_sequence: -1 }), TypeError);
 * ```
 */
export function parseBootProvenance(value: unknown): BootProvenance {
  const check = _checkProvenance;
  const obj = _versionOne(check, value, "provenance", _PROVENANCE_KEYS);
  const signers = check.strings(obj.signer_key_ids, "signer_key_ids", 16);
  if (signers.length === 0 || !signers.every((id) => _KEY_ID.test(id))) {
    check.fail("signer_key_ids must list 1 to 16 hex public keys");
  }
  const artifacts: Record<string, string> = {};
  const entries = Object.entries(check.object(obj.artifacts, "artifacts"));
  if (entries.length > 8) check.fail("artifacts must have at most 8 entries");
  for (const [name, hash] of entries) {
    if (!_NAME.test(name)) check.fail(`artifact name '${name.slice(0, 64)}' is malformed`);
    artifacts[name] = check.match(hash, _HASH, `artifacts.${name}`);
  }
  const providers = check.strings(obj.providers, "providers", 8);
  if (!providers.every((url) => url.length <= 512)) {
    check.fail("providers must be strings of at most 512 characters");
  }
  const provenance: BootProvenance = {
    provenance_version: 1,
    boot_manifest_hash: check.match(obj.boot_manifest_hash, _HASH, "boot_manifest_hash"),
    boot_sequence: check.count(obj.boot_sequence, "boot_sequence"),
    version: check.string(obj.version, "version", 128),
    channel: check.match(obj.channel, _NAME, "channel"),
    arch: check.match(obj.arch, _NAME, "arch"),
    signer_key_ids: signers,
    artifacts,
    providers,
  };
  const size = new TextEncoder().encode(JSON.stringify(provenance)).length;
  if (size > MAX_PROVENANCE_BYTES) {
    check.fail(`it is ${size} bytes, over the ${MAX_PROVENANCE_BYTES} byte cap`);
  }
  return provenance;
}

/**
 * Read a provenance file (such as `/booted/provenance.json`): at most
 * {@linkcode MAX_PROVENANCE_BYTES}, strict JSON (no duplicate key, integers only), checked by
 * {@linkcode parseBootProvenance}.
 *
 * @throws {TypeError} One line, `Cannot use boot provenance '<path>': <why>`, for a file that
 * cannot be read, is too large, is not JSON or has a bad field.
 *
 * @example
 * ```ts
 * import { readBootProvenance } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, '{"provenance_version":1}');
 * await assert.rejects(readBootProvenance(path), TypeError);
 * await Deno.remove(path);
 * ```
 */
export async function readBootProvenance(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<BootProvenance> {
  const fail = (why: string, cause?: unknown): never => {
    throw new TypeError(`Cannot use boot provenance '${path}': ${why}`, { cause });
  };
  let bytes: Uint8Array | undefined;
  try {
    // Checked before opening too: opening a FIFO would block.
    if (!(await Deno.stat(path)).isFile) fail("it is not a regular file");
    using file = await Deno.open(path, { read: true });
    if (!(await file.stat()).isFile) fail("it is not a regular file");
    bytes = await readUpTo(file, MAX_PROVENANCE_BYTES + 1, options.signal);
  } catch (cause) {
    if (cause instanceof TypeError) throw cause;
    options.signal?.throwIfAborted();
    fail(fsErrorReason(cause), cause);
  }
  if (bytes!.length > MAX_PROVENANCE_BYTES) {
    fail(`it is over the ${MAX_PROVENANCE_BYTES} byte cap`);
  }
  let value: unknown;
  try {
    value = parseStrictJson(bytes!, { what: "boot provenance", maxBytes: MAX_PROVENANCE_BYTES });
  } catch (cause) {
    fail(cause instanceof StrictJsonError ? cause.reason : String(cause), cause);
  }
  try {
    return parseBootProvenance(value);
  } catch (cause) {
    return fail((cause as Error).message.replace(/^Cannot accept boot provenance: /, ""), cause);
  }
}

/**
 * Sign a boot attestation of `provenance` with the node key; `peerId` must be the PeerId of
 * that key.
 *
 * @throws {TypeError} If the provenance is malformed or `peerId` is not the key's PeerId.
 *
 * @example
 * ```ts
 * import { signBootAttestation, verifyBootAttestation } from "./boot_attestation.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
 * import { peerIdFromPrivateKey } from "@libp2p/peer-id";
 * import assert from "node:assert/strict";
 *
 * const keyPair = await generateKeyPair();
 * const peerId = peerIdFromPrivateKey(
 *   await generateKeyPairFromSeed("Ed25519", keyPair.secretKey),
 * ).toString();
 * const attestation = await signBootAttestation({
 *   provenance_version: 1, boot_manifest_hash: `sha256:${"a".repeat(64)}`, boot_sequence: 7,
 *   version: "7", channel: "stable", arch: "x86_64", signer_key_ids: ["b".repeat(64)],
 *   artifacts: {}, providers: [],
 * }, { keyPair, peerId });
 * const checked = await verifyBootAttestation(attestation, { peerId });
 * assert.equal(checked.provenance.boot_sequence, 7);
 * ```
 */
export async function signBootAttestation(
  provenance: BootProvenance,
  options: { keyPair: KeyPair; peerId: string; signedAt?: Date },
): Promise<BootAttestation> {
  const { keyPair, peerId, signedAt = new Date() } = options;
  const checked = parseBootProvenance(provenance);
  if (toHex(peerPublicKey(peerId)) !== toHex(keyPair.publicKey)) {
    throw new TypeError(`Cannot sign boot attestation: ${peerId} is not the PeerId of this key`);
  }
  const unsigned = {
    attestation_version: 1 as const,
    peer_id: peerId,
    provenance: checked,
    signed_at: rfc3339(signedAt),
  };
  const signature = await signMessage(_signedBytes(unsigned), keyPair.secretKey);
  return { ...unsigned, signature: toHex(signature) };
}

/**
 * Check an attestation's shape (from a peer: hostile), without its signature; see
 * {@linkcode verifyBootAttestation}.
 *
 * @throws {TypeError} If a field is missing, unknown or malformed.
 *
 * @example
 * ```ts
 * import { parseBootAttestation } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseBootAttestation({ attestation_version: 2 }), TypeError);
 * ```
 */
export function parseBootAttestation(value: unknown): BootAttestation {
  const check = _checkAttestation;
  const obj = _versionOne(check, value, "attestation", _ATTESTATION_KEYS);
  let provenance: BootProvenance;
  try {
    provenance = parseBootProvenance(obj.provenance);
  } catch (cause) {
    throw new TypeError(
      (cause as Error).message.replace(
        /^Cannot accept boot provenance/,
        "Cannot accept boot attestation",
      ),
      { cause },
    );
  }
  return {
    attestation_version: 1,
    peer_id: check.match(obj.peer_id, _PEER_ID, "peer_id"),
    provenance,
    signed_at: check.match(obj.signed_at, _TIME, "signed_at"),
    signature: check.match(obj.signature, /^[0-9a-f]{128}$/, "signature"),
  };
}

/**
 * Check an attestation a peer shows: its shape, that it names `peerId`, and its signature by
 * the Ed25519 key that PeerId embeds. Returns the checked attestation.
 *
 * @throws {TypeError} If it is malformed or names another peer.
 * @throws {SignatureError} If the signature does not verify with `peerId`'s key.
 *
 * @example
 * ```ts
 * import { verifyBootAttestation } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(
 *   verifyBootAttestation({}, { peerId: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq" }),
 *   TypeError,
 * );
 * ```
 */
export async function verifyBootAttestation(
  value: unknown,
  options: { peerId: string },
): Promise<BootAttestation> {
  const { peerId } = options;
  const attestation = parseBootAttestation(value);
  if (attestation.peer_id !== peerId) {
    throw new TypeError(
      `Cannot accept boot attestation of ${peerId}: it names ${attestation.peer_id}`,
    );
  }
  const { signature, ...unsigned } = attestation;
  const ok = await verifySignature(
    fromHex(signature, 64),
    _signedBytes(unsigned),
    peerPublicKey(peerId),
  );
  if (!ok) {
    throw new SignatureError(
      `Cannot accept boot attestation of ${peerId}: the signature does not verify with its key`,
    );
  }
  return attestation;
}

/**
 * Why an attestation does not meet a requirement, or `undefined` when it does (it names the
 * signer among `signer_key_ids` and its `boot_sequence` is at least `minSequence`). Check the
 * signature first ({@linkcode verifyBootAttestation}).
 *
 * @example
 * ```ts
 * import { bootRequirementProblem } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * const req = { signer: "b".repeat(64), minSequence: 8 };
 * assert.equal(bootRequirementProblem(undefined, req), "it shows no boot attestation");
 * ```
 */
export function bootRequirementProblem(
  attestation: BootAttestation | undefined,
  requirement: BootRequirement,
): string | undefined {
  if (!attestation) return "it shows no boot attestation";
  const { signer_key_ids, boot_sequence } = attestation.provenance;
  if (!signer_key_ids.includes(requirement.signer)) {
    return `its boot attestation names signers ${
      signer_key_ids.map((id) => id.slice(0, 16)).join(", ")
    }, not ${requirement.signer.slice(0, 16)}`;
  }
  if (boot_sequence < requirement.minSequence) {
    return `its boot sequence is ${boot_sequence}, below ${requirement.minSequence}`;
  }
  return undefined;
}

/**
 * The requirement in words: `a boot attestation signed by <key> with sequence >= N`.
 *
 * @example
 * ```ts
 * import { describeBootRequirement } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   describeBootRequirement({ signer: "ab", minSequence: 3 }),
 *   "a boot attestation signed by ab with sequence >= 3",
 * );
 * ```
 */
export function describeBootRequirement(requirement: BootRequirement): string {
  return `a boot attestation signed by ${requirement.signer} with sequence >= ${requirement.minSequence}`;
}

/**
 * The fields a worker with this attestation adds to every receipt's `metrics.extra`:
 * `boot_manifest_hash` and `boot_sequence` (a decimal string).
 *
 * @example
 * ```ts
 * import { bootReceiptExtra } from "./boot_attestation.ts";
 * import assert from "node:assert/strict";
 *
 * const extra = bootReceiptExtra({ provenance: { boot_manifest_hash: "sha256:aa", boot_sequence: 9 } });
 * assert.deepEqual(extra, { boot_manifest_hash: "sha256:aa", boot_sequence: "9" });
 * ```
 */
export function bootReceiptExtra(
  attestation: { provenance: Pick<BootProvenance, "boot_manifest_hash" | "boot_sequence"> },
): { boot_manifest_hash: string; boot_sequence: string } {
  return {
    boot_manifest_hash: attestation.provenance.boot_manifest_hash,
    boot_sequence: String(attestation.provenance.boot_sequence),
  };
}

function _signedBytes(unsigned: Omit<BootAttestation, "signature">): Uint8Array {
  return signingBytes(BOOT_ATTESTATION_PREFIX, unsigned);
}

/**
 * `value` as an object of only the `keys` known, whose `<what>_version` is 1 (`what` is
 * `provenance` or `attestation`).
 */
function _versionOne(
  check: ReturnType<typeof jsonChecks>,
  value: unknown,
  what: string,
  keys: Set<string>,
): Record<string, unknown> {
  const obj = check.object(value, what === "attestation" ? "boot_attestation" : what);
  for (const key of Object.keys(obj)) {
    if (!keys.has(key)) {
      check.fail(`'${key}' is not ${/^[aeiou]/.test(what) ? "an" : "a"} ${what} field`);
    }
  }
  if (obj[`${what}_version`] !== 1) check.fail(`${what}_version must be 1`);
  return obj;
}

const _checkProvenance = jsonChecks("Cannot accept boot provenance");
const _checkAttestation = jsonChecks("Cannot accept boot attestation");
