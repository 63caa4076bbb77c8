/**
 * Synchronous SHA-256 (FIPS 180-4) in plain TypeScript: small enough to load in well under a
 * millisecond in a cold process, for the short messages (manifests, job specs, commitment
 * frames) that are hashed synchronously. Large data should go through Web Crypto
 * (`sha256Async` in digest.ts).
 *
 * @module
 */

const _K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

const _H0 = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

/** An incremental SHA-256: `update()` any number of times, then `digest()` once. */
export interface Sha256Hash {
  /** Add bytes to the message; returns the same hash, for chaining. */
  update(data: Uint8Array): Sha256Hash;
  /** The 32-byte digest of everything added; the hash cannot be updated afterwards. */
  digest(): Uint8Array;
}

/**
 * The message schedule, shared by every hash: {@linkcode _compress} fills and uses it within one
 * synchronous call, so no two hashes can see each other's words.
 */
const _W = new Int32Array(64);

/** Compress the 64-byte block of `b` at `at` into the state `h`. */
function _compress(h: Int32Array, b: Uint8Array, at: number): void {
  const w = _W;
  for (let i = 0; i < 16; i++) {
    const p = at + i * 4;
    w[i] = (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + _K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & bb) ^ (a & c) ^ (bb & c);
    const t2 = (S0 + maj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + bb) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
  h[5] = (h[5]! + f) | 0;
  h[6] = (h[6]! + g) | 0;
  h[7] = (h[7]! + hh) | 0;
}

/**
 * Pad the last `filled` bytes of `block` (a 64-byte buffer holding the message's tail) for a
 * message of `length` bytes, compress, and return the digest of state `h`.
 */
function _finish(h: Int32Array, block: Uint8Array, filled: number, length: number): Uint8Array {
  block.fill(0, filled);
  block[filled] = 0x80;
  if (filled >= 56) {
    _compress(h, block, 0);
    block.fill(0);
  }
  const bits = length * 8;
  const hi = Math.floor(bits / 2 ** 32);
  const lo = bits >>> 0;
  block[56] = hi >>> 24;
  block[57] = hi >>> 16;
  block[58] = hi >>> 8;
  block[59] = hi;
  block[60] = lo >>> 24;
  block[61] = lo >>> 16;
  block[62] = lo >>> 8;
  block[63] = lo;
  _compress(h, block, 0);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const v = h[i]!;
    out[i * 4] = v >>> 24;
    out[i * 4 + 1] = v >>> 16;
    out[i * 4 + 2] = v >>> 8;
    out[i * 4 + 3] = v;
  }
  return out;
}

/** The tail block of one-shot hashes (see {@linkcode _W} for why sharing it is safe). */
const _TAIL = new Uint8Array(64);

/** SHA-256 of `data` in one call: no object, no allocation but the digest and the state. */
function _sha256(data: Uint8Array): Uint8Array {
  const h = new Int32Array(_H0);
  const full = data.length - (data.length % 64);
  for (let at = 0; at < full; at += 64) _compress(h, data, at);
  _TAIL.set(data.subarray(full));
  return _finish(h, _TAIL, data.length - full, data.length);
}

class _Sha256 implements Sha256Hash {
  readonly #h = new Int32Array(_H0);
  readonly #block = new Uint8Array(64);
  #filled = 0;
  #length = 0;
  #done = false;

  update(data: Uint8Array): this {
    if (this.#done) throw new TypeError("Cannot update a SHA-256 hash after digest()");
    this.#length += data.length;
    let at = 0;
    if (this.#filled > 0) {
      const take = Math.min(64 - this.#filled, data.length);
      this.#block.set(data.subarray(0, take), this.#filled);
      this.#filled += take;
      at = take;
      if (this.#filled < 64) return this;
      _compress(this.#h, this.#block, 0);
      this.#filled = 0;
    }
    for (; at + 64 <= data.length; at += 64) _compress(this.#h, data, at);
    if (at < data.length) {
      this.#block.set(data.subarray(at));
      this.#filled = data.length - at;
    }
    return this;
  }

  digest(): Uint8Array {
    if (this.#done) throw new TypeError("Cannot digest a SHA-256 hash twice");
    this.#done = true;
    return _finish(this.#h, this.#block, this.#filled, this.#length);
  }
}

/**
 * SHA-256 of `data`, synchronously. `sha256.create()` gives an incremental hash.
 *
 * @example
 * ```ts
 * import { sha256 } from "./sha256.ts";
 * import assert from "node:assert/strict";
 *
 * const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
 * assert.equal(
 *   hex(sha256(new TextEncoder().encode("abc"))),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * const h = sha256.create().update(new TextEncoder().encode("a")).update(new TextEncoder().encode("bc"));
 * assert.equal(hex(h.digest()), hex(sha256(new TextEncoder().encode("abc"))));
 * ```
 */
export const sha256: ((data: Uint8Array) => Uint8Array) & { create(): Sha256Hash } = Object
  .assign(_sha256, {
    create: (): Sha256Hash => new _Sha256(),
  });
