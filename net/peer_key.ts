/**
 * The raw Ed25519 public key inside a PeerId: receipts bind to the PeerId this way.
 *
 * Decoded with `multiformats` alone (base58btc or a CID, identity multihash, protobuf key), not
 * `@libp2p/peer-id`, whose import costs ~45 ms: `verify` takes a PeerId with `--allow-read` only.
 *
 * @module
 */
import { base58btc } from "multiformats/bases/base58";
import { CID } from "multiformats/cid";

/** The multicodec of a CID that names a libp2p key. */
const LIBP2P_KEY = 0x72;
/** Identity multihash (0x00) of 36 bytes: protobuf `PublicKey { Type: Ed25519, Data: 32 bytes }`. */
const ED25519_PREFIX = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/**
 * The raw 32-byte Ed25519 public key of a PeerId, in its usual base58btc form (`12D3KooW...`)
 * or as a CIDv1 (`bafz...`, codec `libp2p-key`).
 *
 * @throws {TypeError} If the PeerId does not parse or does not embed an Ed25519 key (an RSA or
 * secp256k1 PeerId, or a `Qm...` one that holds only a hash of its key).
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
  const shown = peerId.length > 80 ? `${peerId.slice(0, 80)}...` : peerId;
  let multihash: Uint8Array | undefined;
  try {
    if (/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(peerId)) {
      multihash = base58btc.baseDecode(peerId);
    } else if (/^b[a-z2-7]{40,100}$/.test(peerId)) {
      const cid = CID.parse(peerId);
      if (cid.version === 1 && cid.code === LIBP2P_KEY) multihash = cid.multihash.bytes;
    }
  } catch {
    multihash = undefined;
  }
  if (!multihash) throw new TypeError(`Cannot parse PeerId '${shown}'`);
  if (multihash[0] === 0x12 && multihash[1] === 0x20 && multihash.length === 34) {
    throw new TypeError(
      `Cannot use peer ${shown}: it has no Ed25519 key (it holds only a hash of its key)`,
    );
  }
  if (multihash[0] !== 0x00 || multihash[1] !== multihash.length - 2) {
    throw new TypeError(`Cannot parse PeerId '${shown}'`);
  }
  if (
    multihash.length !== ED25519_PREFIX.length + 32 ||
    ED25519_PREFIX.some((byte, i) => multihash[i] !== byte)
  ) {
    throw new TypeError(`Cannot use peer ${shown}: it has no Ed25519 key`);
  }
  return multihash.slice(ED25519_PREFIX.length);
}
