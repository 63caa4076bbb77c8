// deno bench bench/codec_bench.ts
/**
 * Hex and base64: the native `Uint8Array.prototype.toHex/toBase64` and
 * `Uint8Array.fromHex/fromBase64` that `runtime/digest.ts`, the local API and the CLIs use,
 * against the hand-written loops (and `node:buffer`) they replaced. 1 MiB of hex, 16 MiB of
 * base64.
 *
 * @module
 */
import { Buffer } from "node:buffer";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const ONE_MIB = new Uint8Array(1 << 20).map((_, i) => (i * 2654435761) >>> 24);
const SIXTEEN_MIB = new Uint8Array(16 << 20).map((_, i) => (i * 2654435761) >>> 24);
const HEX_TEXT = ONE_MIB.toHex();
const BASE64_TEXT = SIXTEEN_MIB.toBase64();

Deno.bench("toHex 1 MiB: loop", { group: "toHex" }, () => {
  let out = "";
  for (const byte of ONE_MIB) out += HEX[byte];
});
Deno.bench("toHex 1 MiB: native", { group: "toHex", baseline: true }, () => {
  ONE_MIB.toHex();
});

Deno.bench("fromHex 1 MiB: loop", { group: "fromHex" }, () => {
  const out = new Uint8Array(HEX_TEXT.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(HEX_TEXT.slice(i * 2, i * 2 + 2), 16);
});
Deno.bench("fromHex 1 MiB: native", { group: "fromHex", baseline: true }, () => {
  Uint8Array.fromHex(HEX_TEXT);
});

Deno.bench("toBase64 16 MiB: String.fromCharCode + btoa", { group: "toBase64" }, () => {
  let binary = "";
  for (let i = 0; i < SIXTEEN_MIB.length; i += 0x8000) {
    binary += String.fromCharCode(...SIXTEEN_MIB.subarray(i, i + 0x8000));
  }
  btoa(binary);
});
Deno.bench("toBase64 16 MiB: node:buffer", { group: "toBase64" }, () => {
  Buffer.from(SIXTEEN_MIB).toString("base64");
});
Deno.bench("toBase64 16 MiB: native", { group: "toBase64", baseline: true }, () => {
  SIXTEEN_MIB.toBase64();
});

Deno.bench("fromBase64 16 MiB: node:buffer", { group: "fromBase64" }, () => {
  new Uint8Array(Buffer.from(BASE64_TEXT, "base64"));
});
Deno.bench("fromBase64 16 MiB: native", { group: "fromBase64", baseline: true }, () => {
  Uint8Array.fromBase64(BASE64_TEXT);
});
