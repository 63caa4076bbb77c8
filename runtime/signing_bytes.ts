/**
 * The bytes a Phase signature covers.
 *
 * @module
 */
import { canonicalJson } from "./canonical_json.ts";

/**
 * The signed bytes of an envelope: its ASCII domain prefix (`phase-receipt:v1:`,
 * `phase-manifest:v1:`, ...), then the canonical JSON of the signed fields, UTF-8 encoded. The
 * prefix keeps a signature over one kind of envelope from passing as another.
 *
 * @throws {TypeError} When `fields` is not plain data (see `canonicalJson`).
 *
 * @example
 * ```ts
 * import { signingBytes } from "./signing_bytes.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = signingBytes("phase-example:v1:", { b: 1, a: "x" });
 * assert.equal(new TextDecoder().decode(bytes), 'phase-example:v1:{"a":"x","b":1}');
 * ```
 */
export function signingBytes(prefix: string, fields: unknown): Uint8Array {
  return new TextEncoder().encode(prefix + canonicalJson(fields));
}
