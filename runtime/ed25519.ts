/**
 * Ed25519 (RFC 8032) over raw 32-byte secret keys. Key derivation and signing use the runtime's
 * native Web Crypto Ed25519 (a few ms in a cold process, where `@noble/ed25519` spends ~80 ms
 * building its tables); verification uses `@noble/ed25519` in its strict mode, because Web
 * Crypto accepts small-order public keys. Ed25519 signatures are deterministic, so both give
 * the same bytes.
 *
 * @module
 */

/** A node or publisher key pair: raw 32-byte secret seed and 32-byte public key. */
export interface KeyPair {
  /** Raw 32-byte Ed25519 secret seed. */
  secretKey: Uint8Array;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
}

/**
 * Make a key pair, from a given 32-byte seed or from fresh randomness.
 *
 * @example
 * ```ts
 * import { generateKeyPair } from "./ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const { secretKey, publicKey } = await generateKeyPair();
 * assert.equal(secretKey.length, 32);
 * assert.equal(publicKey.length, 32);
 * ```
 */
export async function generateKeyPair(seed?: Uint8Array): Promise<KeyPair> {
  const secretKey = seed ?? crypto.getRandomValues(new Uint8Array(32));
  if (secretKey.length !== 32) {
    throw new RangeError(`Cannot use Ed25519 seed: expected 32 bytes, got ${secretKey.length}`);
  }
  const jwk = await crypto.subtle.exportKey("jwk", await _importSecret(secretKey, true));
  return { secretKey, publicKey: Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" }) };
}

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix, then the seed. */
const PKCS8_PREFIX = [
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
];

function _importSecret(secretKey: Uint8Array, extractable: boolean): Promise<CryptoKey> {
  if (secretKey.length !== 32) {
    throw new RangeError(
      `Cannot use Ed25519 secret key: expected 32 bytes, got ${secretKey.length}`,
    );
  }
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(PKCS8_PREFIX);
  pkcs8.set(secretKey, 16);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, extractable, ["sign"]);
}

/**
 * Imported signing keys, by the secret key array they came from, with a copy of its bytes: a
 * node signs every receipt with one key, and importing it costs more than the signature. An
 * array whose bytes changed since is imported again; nothing outlives the array.
 */
const _imported = new WeakMap<Uint8Array, { bytes: Uint8Array; key: Promise<CryptoKey> }>();

function _signingKey(secretKey: Uint8Array): Promise<CryptoKey> {
  const hit = _imported.get(secretKey);
  if (
    hit && hit.bytes.length === secretKey.length && hit.bytes.every((b, i) => b === secretKey[i])
  ) {
    return hit.key;
  }
  const key = _importSecret(secretKey, false);
  _imported.set(secretKey, { bytes: secretKey.slice(), key });
  key.catch(() => _imported.delete(secretKey));
  return key;
}

/**
 * Sign a message with a raw 32-byte secret key (no pre-hash).
 *
 * @example
 * ```ts
 * import { generateKeyPair, signMessage, verifySignature } from "./ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = await generateKeyPair();
 * const msg = new TextEncoder().encode("hi");
 * const sig = await signMessage(msg, keys.secretKey);
 * assert.equal(await verifySignature(sig, msg, keys.publicKey), true);
 * ```
 */
export async function signMessage(
  message: Uint8Array,
  secretKey: Uint8Array,
): Promise<Uint8Array> {
  const key = await _signingKey(secretKey);
  return new Uint8Array(
    await crypto.subtle.sign("Ed25519", key, message as Uint8Array<ArrayBuffer>),
  );
}

/**
 * Verify an Ed25519 signature. Returns `false` (never throws) for a bad signature, a malformed
 * key or a signature of the wrong length.
 *
 * @example
 * ```ts
 * import { verifySignature } from "./ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await verifySignature(new Uint8Array(64), new Uint8Array(), new Uint8Array(32)), false);
 * ```
 */
export async function verifySignature(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  // Loaded on first use: signing (all `run` does) never needs it.
  const ed = await import("@noble/ed25519");
  try {
    return await ed.verifyAsync(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
