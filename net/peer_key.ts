/**
 * The raw Ed25519 public key inside a PeerId: receipts bind to the PeerId this way.
 *
 * @module
 */
import { peerIdFromString } from "@libp2p/peer-id";

/**
 * The raw 32-byte Ed25519 public key of a PeerId.
 *
 * @throws {TypeError} If the PeerId does not parse or does not embed an Ed25519 key.
 *
 * @example
 * ```ts
 * import { peerPublicKey } from "./peer_key.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(peerPublicKey("12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq").length, 32);
 * assert.throws(() => peerPublicKey("nonsense"), TypeError);
 * ```
 */
export function peerPublicKey(peerId: string): Uint8Array {
  let id;
  try {
    id = peerIdFromString(peerId);
  } catch (cause) {
    throw new TypeError(`Cannot parse PeerId '${peerId}'`, { cause });
  }
  if (id.type !== "Ed25519" || !id.publicKey) {
    throw new TypeError(`Cannot use peer ${peerId}: it has no Ed25519 key`);
  }
  return id.publicKey.raw;
}
