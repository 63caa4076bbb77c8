import assert from "node:assert/strict";
import { generateKeyPair, signMessage, verifySignature } from "./ed25519.ts";

Deno.test("verifySignature() refuses small-order keys that ZIP-215 semantics would accept", async () => {
  const identity = new Uint8Array(32);
  identity[0] = 1; // the encoding of the neutral point
  const signature = new Uint8Array(64);
  signature[0] = 1;
  assert.equal(await verifySignature(signature, new Uint8Array([1, 2]), identity), false);
  assert.equal(
    await verifySignature(new Uint8Array(64), new Uint8Array(), new Uint8Array(32)),
    false,
  );
});

Deno.test("verifySignature() rejects wrong lengths and a changed message without throwing", async () => {
  const keys = await generateKeyPair();
  const message = new TextEncoder().encode("phase");
  const signature = await signMessage(message, keys.secretKey);
  assert.equal(await verifySignature(signature, message, keys.publicKey), true);
  assert.equal(await verifySignature(signature.subarray(1), message, keys.publicKey), false);
  assert.equal(await verifySignature(signature, message, keys.publicKey.subarray(1)), false);
  assert.equal(
    await verifySignature(signature, new TextEncoder().encode("phasE"), keys.publicKey),
    false,
  );
});

Deno.test("generateKeyPair() refuses a seed that is not 32 bytes", async () => {
  await assert.rejects(() => generateKeyPair(new Uint8Array(16)), RangeError);
});

Deno.test("signMessage() reuses the imported key, but not once the key array's bytes changed", async () => {
  const a = await generateKeyPair();
  const b = await generateKeyPair();
  const secret = a.secretKey.slice();
  const msg = new TextEncoder().encode("m");
  assert.equal(await verifySignature(await signMessage(msg, secret), msg, a.publicKey), true);
  assert.equal(await verifySignature(await signMessage(msg, secret), msg, a.publicKey), true);
  secret.set(b.secretKey);
  assert.equal(await verifySignature(await signMessage(msg, secret), msg, b.publicKey), true);
});
