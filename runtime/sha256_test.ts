import assert from "node:assert/strict";
import { sha256 } from "./sha256.ts";

const webCrypto = async (data: Uint8Array) =>
  new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));

Deno.test("sha256() equals Web Crypto's SHA-256 for every length across the padding edges", async () => {
  const data = crypto.getRandomValues(new Uint8Array(300));
  for (let n = 0; n <= data.length; n++) {
    const part = data.subarray(0, n);
    assert.deepEqual(sha256(part), await webCrypto(part), `length ${n}`);
  }
  const big = crypto.getRandomValues(new Uint8Array(65536)).map((_, i, a) => a[i]! ^ i);
  const large = new Uint8Array(3 * 2 ** 20 + 17);
  for (let at = 0; at < large.length; at += big.length) {
    large.set(big.subarray(0, large.length - at), at);
  }
  assert.deepEqual(sha256(large), await webCrypto(large));
});

Deno.test("sha256.create() gives the same digest whatever the update boundaries", async () => {
  const data = crypto.getRandomValues(new Uint8Array(1000));
  const want = await webCrypto(data);
  for (const step of [1, 3, 63, 64, 65, 127, 500]) {
    const h = sha256.create();
    for (let at = 0; at < data.length; at += step) h.update(data.subarray(at, at + step));
    assert.deepEqual(h.digest(), want, `step ${step}`);
  }
  const h = sha256.create().update(data);
  h.digest();
  assert.throws(() => h.digest(), TypeError);
  assert.throws(() => h.update(data), TypeError);
});

Deno.test("sha256Async() agrees with Web Crypto on both sides of its synchronous size limit", async () => {
  const { sha256Async } = await import("./digest.ts");
  for (const size of [0, 1, 2047, 2048, 2049, 70_000]) {
    const data = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const want = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    assert.deepEqual(await sha256Async(data), want, `size ${size}`);
  }
});
