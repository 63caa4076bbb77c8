import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { capabilityKey, manifestKey, providerKeyCid } from "./provider_key.ts";

/** RFC 4648 base32, lowercase, no padding: the multibase `b` alphabet. */
function base32(bytes: Uint8Array): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

Deno.test("providerKeyCid() is CIDv1 raw over sha256 of the key, byte for byte", async () => {
  for (const key of [capabilityKey("x86_64"), manifestKey("stable", "aarch64")]) {
    const digest = createHash("sha256").update(key).digest();
    // version 1, codec raw (0x55), multihash sha2-256 (0x12) of 32 bytes (0x20)
    const expected = "b" + base32(new Uint8Array([0x01, 0x55, 0x12, 0x20, ...digest]));
    assert.equal((await providerKeyCid(key)).toString(), expected);
  }
});

Deno.test("capabilityKey() and manifestKey() refuse names that could change the key's shape", async () => {
  assert.throws(() => capabilityKey("x86_64/evil"), TypeError);
  assert.throws(() => capabilityKey("x86_64", ""), TypeError);
  assert.throws(() => manifestKey("..", "x86_64"), TypeError);
  assert.throws(() => manifestKey("a".repeat(65), "x86_64"), TypeError);
  await assert.rejects(providerKeyCid("/ipfs/whatever"), TypeError);
});
