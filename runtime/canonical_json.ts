/**
 * Canonical JSON, as Phase signs it: object keys sorted recursively, compact, integers only.
 *
 * @module
 */

/** A JSON value that can be canonicalised: no floats, no `undefined`, no functions. */
export type CanonicalValue =
  | null
  | boolean
  | number
  | string
  | CanonicalValue[]
  | { [key: string]: CanonicalValue };

/**
 * Serialise a value as canonical JSON: keys sorted by UTF-16 code unit order at every depth,
 * no insignificant whitespace, strings as `JSON.stringify` writes them. Object properties whose
 * value is `undefined` are left out (so optional fields can be absent).
 *
 * @param value The value to serialise.
 * @returns The canonical JSON text.
 * @throws {TypeError} If the value holds a float, a non-finite number, a bigint, a function or a
 * symbol: signed data allows integers only.
 *
 * @example Sorted keys, compact output
 * ```ts
 * import { canonicalJson } from "./canonical_json.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(canonicalJson({ b: [2, 1], a: { d: null, c: "x" } }), '{"a":{"c":"x","d":null},"b":[2,1]}');
 * ```
 */
export function canonicalJson(value: unknown): string {
  return _encode(value, "$");
}

function _encode(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isSafeInteger(value)) {
        throw new TypeError(`Cannot canonicalise ${path}: not a safe integer: ${value}`);
      }
      return String(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((item, i) => _encode(item, `${path}[${i}]`)).join(",")}]`;
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort();
      const members = keys.map((key) =>
        `${JSON.stringify(key)}:${_encode(record[key], `${path}.${key}`)}`
      );
      return `{${members.join(",")}}`;
    }
    default:
      throw new TypeError(`Cannot canonicalise ${path}: unsupported type ${typeof value}`);
  }
}
