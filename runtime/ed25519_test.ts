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

// --- Differential tests: verifySignature() against @noble/ed25519 strict mode (the reference) ---

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const P = 2n ** 255n - 19n;

function _le(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

function _num(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

function _sig(r: Uint8Array, s: bigint): Uint8Array {
  const out = new Uint8Array(64);
  out.set(r);
  out.set(_le(s), 32);
  return out;
}

function _withSign(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[31]! |= 0x80;
  return out;
}

async function _k(r: Uint8Array, a: Uint8Array, message: Uint8Array): Promise<bigint> {
  const all = new Uint8Array(64 + message.length);
  all.set(r);
  all.set(a, 32);
  all.set(message, 64);
  return _num(new Uint8Array(await crypto.subtle.digest("SHA-512", all))) % L;
}

async function _nobleStrict(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array): Promise<boolean> {
  const ed = await import("@noble/ed25519");
  try {
    return await ed.verifyAsync(sig, msg, pub, { zip215: false });
  } catch {
    return false;
  }
}

async function _rawWebCrypto(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array) {
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      pub as Uint8Array<ArrayBuffer>,
      { name: "Ed25519" },
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      "Ed25519",
      key,
      sig as Uint8Array<ArrayBuffer>,
      msg as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}

async function _rawNodeCrypto(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array) {
  const { createPublicKey, verify } = await import("node:crypto");
  try {
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: pub.toBase64({ alphabet: "base64url" }) },
      format: "jwk",
    });
    return verify(null, msg, key, sig);
  } catch {
    return false;
  }
}

/**
 * Runs every case through both; returns how many noble accepted and how many the raw native
 * check (what verifySignature() calls; Web Crypto and `node:crypto` must agree) got wrong.
 */
async function _differential(
  cases: { name: string; sig: Uint8Array; msg: Uint8Array; pub: Uint8Array }[],
): Promise<{ accepted: number; webCryptoDiffers: number }> {
  let accepted = 0;
  let webCryptoDiffers = 0;
  for (const { name, sig, msg, pub } of cases) {
    const expected = await _nobleStrict(sig, msg, pub);
    assert.equal(await verifySignature(sig, msg, pub), expected, name);
    if (expected) accepted++;
    const raw = await _rawWebCrypto(sig, msg, pub);
    if (pub.length === 32 && sig.length === 64) {
      assert.equal(await _rawNodeCrypto(sig, msg, pub), raw, `${name}: node:crypto vs Web Crypto`);
    }
    if (raw !== expected) webCryptoDiffers++;
  }
  return { accepted, webCryptoDiffers };
}

/** The 8 points of small order, from an order-8 point's multiples (computed, not listed). */
async function _smallOrderPoints() {
  const { Point } = await import("@noble/ed25519");
  const t8 = Point.fromHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a");
  const points = [Point.ZERO];
  for (let i = 1; i < 8; i++) points.push(points[i - 1]!.add(t8));
  assert.equal(points[7]!.add(t8).is0(), true);
  assert.equal(new Set(points.map((p) => p.toHex())).size, 8);
  return { Point, points, t8 };
}

Deno.test("verifySignature() agrees with noble strict on 1,500 random valid and corrupted signatures", async () => {
  const cases = [];
  for (let i = 0; i < 250; i++) {
    const keys = await generateKeyPair();
    const msg = crypto.getRandomValues(new Uint8Array(i % 97));
    const sig = await signMessage(msg, keys.secretKey);
    cases.push({ name: `valid ${i}`, sig, msg, pub: keys.publicKey });
    const bit = (n: number) => 1 << (n % 8);
    const badSig = sig.slice();
    badSig[i % 64]! ^= bit(i);
    cases.push({ name: `sig bit ${i}`, sig: badSig, msg, pub: keys.publicKey });
    const badPub = keys.publicKey.slice();
    badPub[i % 32]! ^= bit(i + 3);
    cases.push({ name: `key bit ${i}`, sig, msg, pub: badPub });
    const badMsg = new Uint8Array(msg.length + 1);
    badMsg.set(msg);
    cases.push({ name: `message longer ${i}`, sig, msg: badMsg, pub: keys.publicKey });
    const s = _num(sig.subarray(32));
    cases.push({
      name: `S + L ${i}`,
      sig: _sig(sig.subarray(0, 32), s + L),
      msg,
      pub: keys.publicKey,
    });
    cases.push({
      name: `random ${i}`,
      sig: crypto.getRandomValues(new Uint8Array(64)),
      msg,
      pub: crypto.getRandomValues(new Uint8Array(32)),
    });
  }
  const { accepted } = await _differential(cases);
  assert.equal(accepted, 250);
});

Deno.test("verifySignature() agrees with noble strict on small-order and non-canonical keys and R", async () => {
  const { Point, points } = await _smallOrderPoints();
  const msg = new TextEncoder().encode("phase");
  const keys = await generateKeyPair(new Uint8Array(32).fill(7));
  const ed = await import("@noble/ed25519");
  const { scalar: a } = await ed.utils.getExtendedPublicKeyAsync(keys.secretKey);
  // Every encoding of every small-order point: canonical, with the other sign bit, and y + p
  // where y + p still fits (y = 0 and y = 1).
  const encodings: { name: string; bytes: Uint8Array }[] = [];
  for (const [i, point] of points.entries()) {
    const bytes = point.toBytes();
    encodings.push({ name: `T${i}`, bytes }, { name: `T${i} other sign`, bytes: bytes.slice() });
    encodings.at(-1)!.bytes[31]! ^= 0x80;
    const y = _num(bytes) & ((1n << 255n) - 1n);
    if (y + P < 1n << 255n) {
      encodings.push({ name: `T${i} y+p`, bytes: _le(y + P) });
      encodings.push({ name: `T${i} y+p signed`, bytes: _withSign(_le(y + P)) });
    }
  }
  const cases = [];
  for (const { name, bytes } of encodings) {
    // As the key: R = sB, S = s passes `[S]B = R + [k]A` whenever [k]A is the neutral point.
    for (const s of [1n, 12345n, L - 1n]) {
      const r = Point.BASE.multiply(s).toBytes();
      cases.push({ name: `A = ${name}, s = ${s}`, sig: _sig(r, s), msg, pub: bytes });
    }
    cases.push({ name: `A = ${name}, zero signature`, sig: new Uint8Array(64), msg, pub: bytes });
    // As R, with an honest key: S = r + ka where r = 0, so [S]B - [k]A = 0, and [8]R = 0.
    const k = await _k(bytes, keys.publicKey, msg);
    cases.push({ name: `R = ${name}`, sig: _sig(bytes, (k * a) % L), msg, pub: keys.publicKey });
  }
  // Non-canonical encodings (y + p) of points that are on the curve and not of small order, as
  // the key and as R (with the S an honest signer of such an R would compute for the real point).
  for (let y = 2n; y < 19n; y++) {
    for (const bytes of [_le(y + P), _withSign(_le(y + P))]) {
      let point;
      try {
        point = Point.fromBytes(_le(y | (bytes[31]! & 0x80 ? 1n << 255n : 0n)));
      } catch {
        cases.push({ name: `A off the curve y=${y}+p`, sig: _sig(bytes, 1n), msg, pub: bytes });
        continue;
      }
      assert.equal(point.isSmallOrder(), false);
      cases.push({ name: `A = y=${y}+p`, sig: _sig(Point.BASE.toBytes(), 1n), msg, pub: bytes });
      const k = await _k(bytes, keys.publicKey, msg);
      cases.push({ name: `R = y=${y}+p`, sig: _sig(bytes, (k * a) % L), msg, pub: keys.publicKey });
    }
  }
  const { accepted, webCryptoDiffers } = await _differential(cases);
  // Noble accepts R of small order (cofactored equation); Web Crypto accepts small-order keys:
  // both kinds must be in the set, or this test would not test the checks.
  assert.ok(accepted >= 8, `noble accepted only ${accepted}`);
  assert.ok(webCryptoDiffers >= 8, `raw Web Crypto differed only ${webCryptoDiffers} times`);
});

Deno.test("verifySignature() agrees with noble strict on mixed-order keys, torsion in R and edge S", async () => {
  const { Point, points, t8 } = await _smallOrderPoints();
  const keys = await generateKeyPair(new Uint8Array(32).fill(9));
  const ed = await import("@noble/ed25519");
  const { scalar: a } = await ed.utils.getExtendedPublicKeyAsync(keys.secretKey);
  const cases = [];
  for (let i = 0; i < 48; i++) {
    const msg = new TextEncoder().encode(`job ${i}`);
    const torsion = points[i % 8]!;
    // Key a*B + T: noble's cofactored check passes, the cofactorless one only when [k]T = 0.
    const mixed = Point.BASE.multiply(a).add(torsion).toBytes();
    const r = 1000n + BigInt(i);
    const rBytes = Point.BASE.multiply(r).toBytes();
    const k = await _k(rBytes, mixed, msg);
    cases.push({ name: `mixed key ${i}`, sig: _sig(rBytes, (r + k * a) % L), msg, pub: mixed });
    // R = r*B + T with an honest key.
    const rMixed = Point.BASE.multiply(r).add(torsion).toBytes();
    const k2 = await _k(rMixed, keys.publicKey, msg);
    cases.push({
      name: `torsion in R ${i}`,
      sig: _sig(rMixed, (r + k2 * a) % L),
      msg,
      pub: keys.publicKey,
    });
    cases.push({
      name: `torsion in R, x sign flipped ${i}`,
      sig: _sig(_withSign(rMixed), (r + k2 * a) % L),
      msg,
      pub: keys.publicKey,
    });
  }
  // S at and around L, and the largest 32-byte value, on a valid signature's R.
  const msg = new TextEncoder().encode("edge");
  const good = await signMessage(msg, keys.secretKey);
  const s = _num(good.subarray(32));
  for (
    const [name, value] of [
      ["S", s],
      ["S + L", s + L],
      ["S + 2L", s + 2n * L],
      ["L", L],
      ["L + 1", L + 1n],
      ["L - 1", L - 1n],
      ["0", 0n],
      ["2^256 - 1", (1n << 256n) - 1n],
    ] as const
  ) {
    cases.push({
      name: `S = ${name}`,
      sig: _sig(good.subarray(0, 32), value),
      msg,
      pub: keys.publicKey,
    });
  }
  // R = neutral point with S = 0 under a key whose [k]A is neutral only with torsion: covered
  // above; here a valid signature under t8 as R with S from the honest key.
  const kT = await _k(t8.toBytes(), keys.publicKey, msg);
  cases.push({
    name: "R = T8, S = ka",
    sig: _sig(t8.toBytes(), (kT * a) % L),
    msg,
    pub: keys.publicKey,
  });
  // Wrong lengths.
  for (const n of [0, 31, 33, 63, 65]) {
    cases.push({ name: `key of ${n}`, sig: good, msg, pub: new Uint8Array(n).fill(1) });
    cases.push({ name: `signature of ${n}`, sig: new Uint8Array(n), msg, pub: keys.publicKey });
  }
  const { accepted, webCryptoDiffers } = await _differential(cases);
  assert.ok(accepted >= 96, `noble accepted only ${accepted}`);
  assert.ok(webCryptoDiffers >= 48, `raw Web Crypto differed only ${webCryptoDiffers} times`);
});
