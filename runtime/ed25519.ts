/**
 * Ed25519 (RFC 8032) over raw 32-byte secret keys, via `@noble/ed25519`.
 *
 * @module
 */
import * as ed from "@noble/ed25519";

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
  return { secretKey, publicKey: await ed.getPublicKeyAsync(secretKey) };
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
export function signMessage(message: Uint8Array, secretKey: Uint8Array): Promise<Uint8Array> {
  return ed.signAsync(message, secretKey);
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
  try {
    return await ed.verifyAsync(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
