/**
 * Ed25519 verification (issue 16): `verifySignature` (the native Ed25519 behind noble-strict's
 * checks, runtime/ed25519.ts) against `@noble/ed25519`'s `verifyAsync` with `{ zip215: false }`,
 * which it replaced, on a receipt-sized message (600 bytes); and a signature of another message,
 * which the native check refuses and noble then checks again (the only path that still pays
 * noble). Run with `deno task bench` (or `deno bench bench/verify_bench.ts`).
 *
 * @module
 */
import * as ed from "@noble/ed25519";
import { generateKeyPair, signMessage, verifySignature } from "../runtime/ed25519.ts";

const keys = await generateKeyPair(new Uint8Array(32).fill(3));
const message = new Uint8Array(600).fill(7);
const signature = await signMessage(message, keys.secretKey);
// A changed message: both points decode, so every check runs before the refusal.
const other = message.slice();
other[0]! ^= 1;

Deno.bench("noble strict verifyAsync, valid", { group: "valid", baseline: true }, async () => {
  if (!await ed.verifyAsync(signature, message, keys.publicKey, { zip215: false })) {
    throw new Error("rejected");
  }
});

Deno.bench("verifySignature, valid", { group: "valid" }, async () => {
  if (!await verifySignature(signature, message, keys.publicKey)) throw new Error("rejected");
});

Deno.bench("noble strict verifyAsync, bad", { group: "bad", baseline: true }, async () => {
  if (await ed.verifyAsync(signature, other, keys.publicKey, { zip215: false })) {
    throw new Error("accepted");
  }
});

Deno.bench("verifySignature, bad (native, then noble)", { group: "bad" }, async () => {
  if (await verifySignature(signature, other, keys.publicKey)) throw new Error("accepted");
});
