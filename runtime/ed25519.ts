/**
 * Ed25519 (RFC 8032) over raw 32-byte secret keys. Key derivation and signing use the runtime's
 * native Web Crypto Ed25519 (a few ms in a cold process, where `@noble/ed25519` spends ~80 ms
 * building its tables); verification uses the same native Ed25519 through `node:crypto`'s
 * synchronous `verify` (~0.04 ms against 0.7-2.9 ms for noble, and no thread hop). What is
 * accepted is exactly what `@noble/ed25519`'s strict mode (`zip215: false`) accepts: the native
 * check alone would accept small-order public keys, so those (and non-canonical key encodings)
 * are refused first, and a signature the native check refuses is checked again by noble, whose
 * cofactored equation accepts some signatures with torsion components that the native
 * cofactorless one refuses. Ed25519 signatures are deterministic, so signing gives noble's bytes.
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
 * key or a signature of the wrong length. Accepts exactly what `@noble/ed25519`'s `verifyAsync`
 * with `{ zip215: false }` accepts (checked by a differential test), at native speed for every
 * signature it accepts.
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
  // Refused by noble's strict mode, accepted natively (small-order keys) or cheap to refuse.
  if (!_strictKey(publicKey) || !_canonicalScalar(signature)) return false;
  // The runtime's native Ed25519 through `node:crypto`, synchronous: Web Crypto's `verify` is
  // the same check but a thread hop per call (~0.05-0.08 ms of CPU against ~0.04 ms, and a wait
  // behind every other thread on a busy machine). Loaded on first use, never at import time.
  const native = _nodeCrypto ?? (_nodeCrypto = await import("node:crypto"));
  let accepted = false;
  try {
    const spki = new Uint8Array(SPKI_PREFIX.length + 32);
    spki.set(SPKI_PREFIX);
    spki.set(publicKey, SPKI_PREFIX.length);
    // `node:crypto` takes any Uint8Array where its types say Buffer.
    const key = native.createPublicKey({
      key: spki as unknown as Buffer,
      format: "der",
      type: "spki",
    });
    accepted = native.verify(null, message, key, signature);
  } catch {
    accepted = false;
  }
  // The native acceptance implies noble's: `[S]B = R + [k]A` with a canonical `R`, `S < L` and
  // the key checks above. Its refusal does not: noble checks `[8][S]B = [8]R + [8][k]A`, which a
  // crafted signature with a torsion component in `R` or `A` passes. Only bad signatures pay this.
  return accepted || await _nobleStrict(signature, message, publicKey);
}

let _nodeCrypto: typeof import("node:crypto") | undefined;

/** SubjectPublicKeyInfo of a raw Ed25519 key (RFC 8410): a fixed 12-byte prefix, then the key. */
const SPKI_PREFIX = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

async function _nobleStrict(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): Promise<boolean> {
  // Loaded on first use: signing (all `run` does) and good signatures never need it.
  const ed = await import("@noble/ed25519");
  try {
    return await ed.verifyAsync(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * The `y` coordinates (little-endian hex, sign bit clear) of the 8 points of small order: the
 * neutral point (y = 1), the order-2 point (y = p - 1), the two order-4 points (y = 0, both signs
 * of x) and the four order-8 points (two values of y, each with both signs of x).
 */
const SMALL_ORDER_Y = [
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
];

/** The group order L = 2^252 + 27742317777372353535851937790883648493, big-endian hex. */
const L_HEX = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

/**
 * Whether noble's strict decoding accepts `publicKey` as far as cheap checks can tell: `y < p`
 * (with the sign bit masked), and not of small order (which also covers `x = 0` with the sign
 * bit set: only `y = 1` and `y = p - 1` have `x = 0`). Points not on the curve are left to the
 * verifiers, which both refuse them.
 */
function _strictKey(publicKey: Uint8Array): boolean {
  const top = publicKey[31]! & 0x7f;
  // y >= p = 2^255 - 19: bytes 1..30 all 0xff, top 0x7f, byte 0 >= 0xed.
  if (top === 0x7f && publicKey[0]! >= 0xed) {
    let high = true;
    for (let i = 1; i < 31 && high; i++) high = publicKey[i] === 0xff;
    if (high) return false;
  }
  const y = publicKey.slice();
  y[31] = top;
  return !SMALL_ORDER_Y.includes(y.toHex());
}

/** Whether the signature's `S` (its last 32 bytes, little-endian) is below L. */
function _canonicalScalar(signature: Uint8Array): boolean {
  // Equal-length lowercase hex compares like the numbers it spells (big-endian: reversed).
  return signature.slice(32).reverse().toHex() < L_HEX;
}
