/**
 * Hex and SHA-256 helpers shared by every format of Phase.
 *
 * @module
 */
import { sha256 as _sha256 } from "./sha256.ts";

/**
 * Encode bytes as lowercase hex.
 *
 * @example
 * ```ts
 * import { toHex } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toHex(new Uint8Array([0, 171, 255])), "00abff");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  return bytes.toHex();
}

/**
 * Decode lowercase (or uppercase) hex into bytes.
 *
 * @param hex The hex text.
 * @param length When given, the exact number of bytes expected.
 * @throws {SyntaxError} If the text is not hex, or not `length` bytes long.
 *
 * @example
 * ```ts
 * import { fromHex } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(fromHex("00abff"), new Uint8Array([0, 171, 255]));
 * ```
 */
export function fromHex(hex: string, length?: number): Uint8Array {
  let bytes: Uint8Array;
  try {
    // Uint8Array.fromHex takes either case; an odd length or a non-hex digit throws.
    bytes = Uint8Array.fromHex(hex);
  } catch {
    throw new SyntaxError(`Cannot decode hex: not an even-length hex string: '${_clip(hex)}'`);
  }
  if (length !== undefined && bytes.length !== length) {
    throw new SyntaxError(
      `Cannot decode hex: expected ${length} bytes, got ${bytes.length}: '${_clip(hex)}'`,
    );
  }
  return bytes;
}

/**
 * SHA-256 of bytes (or UTF-8 text), as raw bytes, synchronously (runtime/sha256.ts: no
 * `node:crypto`, which costs a cold process ~25 ms to load). For large data prefer
 * {@linkcode sha256Async}, which uses the native Web Crypto digest.
 *
 * @example
 * ```ts
 * import { sha256, toHex } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toHex(sha256("abc")).slice(0, 8), "ba7816bf");
 * ```
 */
export function sha256(data: Uint8Array | string): Uint8Array {
  return _sha256(typeof data === "string" ? new TextEncoder().encode(data) : data);
}

/**
 * SHA-256 of bytes (or UTF-8 text) with the native Web Crypto digest; several times faster
 * than {@linkcode sha256} for large data.
 *
 * @example
 * ```ts
 * import { sha256Async, toHex } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toHex(await sha256Async("abc")).slice(0, 8), "ba7816bf");
 * ```
 */
export async function sha256Async(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // Below a few KiB the round trip to the native digest costs more than hashing here.
  if (bytes.length <= _SYNC_MAX_BYTES) return _sha256(bytes);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/**
 * {@linkcode sha256Tag} with the native Web Crypto digest.
 *
 * @example
 * ```ts
 * import { sha256TagAsync } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   await sha256TagAsync(new Uint8Array()),
 *   "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 * );
 * ```
 */
export async function sha256TagAsync(data: Uint8Array | string): Promise<string> {
  return `sha256:${toHex(await sha256Async(data))}`;
}

/**
 * SHA-256 of bytes in Phase's text form, `sha256:<64 lowercase hex>`.
 *
 * @example
 * ```ts
 * import { sha256Tag } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   sha256Tag(new Uint8Array()),
 *   "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 * );
 * ```
 */
export function sha256Tag(data: Uint8Array | string): string {
  return `sha256:${toHex(sha256(data))}`;
}

/**
 * Check that a text is a `sha256:<64 lowercase hex>` hash.
 *
 * @example
 * ```ts
 * import { isSha256Tag } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isSha256Tag("sha256:" + "ab".repeat(32)), true);
 * assert.equal(isSha256Tag("sha256:AB"), false);
 * ```
 */
export function isSha256Tag(value: unknown): value is string {
  return typeof value === "string" && /^sha256:[0-9a-f]{64}$/.test(value);
}

/** Inputs up to this size are hashed synchronously by {@linkcode sha256Async} (measured). */
const _SYNC_MAX_BYTES = 2048;

function _clip(text: unknown): string {
  const s = String(text);
  return s.length > 20 ? `${s.slice(0, 17)}...` : s;
}
