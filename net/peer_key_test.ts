import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { base58btc } from "multiformats/bases/base58";
import { peerPublicKey } from "./peer_key.ts";

Deno.test("peerPublicKey() gives the key libp2p puts in an Ed25519 PeerId, base58 and CID forms", async () => {
  for (let i = 0; i < 20; i++) {
    const key = await generateKeyPair("Ed25519");
    const id = peerIdFromPrivateKey(key);
    assert.deepEqual(peerPublicKey(id.toString()), key.publicKey.raw);
    assert.deepEqual(peerPublicKey(id.toCID().toString()), key.publicKey.raw);
  }
});

Deno.test("peerPublicKey() refuses PeerIds without an Ed25519 key and text that is no PeerId", async () => {
  const secp = peerIdFromPrivateKey(await generateKeyPair("secp256k1")).toString();
  assert.throws(
    () => peerPublicKey(secp),
    /^TypeError: Cannot use peer .*: it has no Ed25519 key$/,
  );
  const hashed = base58btc.encode(Uint8Array.from([0x12, 0x20, ...new Uint8Array(32).fill(9)]))
    .slice(1); // a `Qm...` PeerId: only the sha256 of its key
  assert.match(hashed, /^Qm/);
  assert.throws(() => peerPublicKey(hashed), /it has no Ed25519 key \(it holds only a hash/);
  const good = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
  for (const bad of ["", "nonsense", good.slice(0, -1), `${good}1`, good.replace(/.$/, "0")]) {
    assert.throws(() => peerPublicKey(bad), TypeError, bad);
  }
});
