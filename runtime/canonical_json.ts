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
 * Only plain data is accepted, so that what is signed is what any JSON reader reads back:
 * objects whose prototype is `Object.prototype` or `null`, plain arrays without holes, strings
 * that are well-formed UTF-16, safe integers, booleans and `null`.
 *
 * @param value The value to serialise.
 * @returns The canonical JSON text.
 * @throws {TypeError} Naming the path (`$.a[2].b`) of the first value that is not plain data: a
 * float, a non-finite number or unsafe integer, a bigint, a function, a symbol, `undefined` in an
 * array or a hole, a string or key with a lone surrogate, an object with symbol keys or a
 * `toJSON` method, a boxed primitive, a `Date`, `Map`, `Set`, typed array or other class
 * instance.
 *
 * @example Sorted keys, compact output
 * ```ts
 * import { canonicalJson } from "./canonical_json.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(canonicalJson({ b: [2, 1], a: { d: null, c: "x" } }), '{"a":{"c":"x","d":null},"b":[2,1]}');
 * assert.throws(() => canonicalJson({ at: new Date(0) }), {
 *   name: "TypeError",
 *   message: "Cannot canonicalise $.at: not a plain object (Date)",
 * });
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
      if (!value.isWellFormed()) {
        throw new TypeError(`Cannot canonicalise ${path}: string with a lone surrogate`);
      }
      return JSON.stringify(value);
    case "number":
      if (!Number.isSafeInteger(value)) {
        throw new TypeError(`Cannot canonicalise ${path}: not a safe integer: ${value}`);
      }
      return String(value);
    case "object": {
      const proto = Object.getPrototypeOf(value);
      if (Array.isArray(value)) {
        if (proto !== Array.prototype) {
          throw new TypeError(`Cannot canonicalise ${path}: not a plain array`);
        }
        const items: string[] = [];
        for (let i = 0; i < value.length; i++) {
          const itemPath = `${path}[${i}]`;
          if (!Object.hasOwn(value, i)) {
            throw new TypeError(`Cannot canonicalise ${itemPath}: a hole in an array`);
          }
          if (value[i] === undefined) {
            throw new TypeError(`Cannot canonicalise ${itemPath}: undefined in an array`);
          }
          items.push(_encode(value[i], itemPath));
        }
        return `[${items.join(",")}]`;
      }
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(`Cannot canonicalise ${path}: not a plain object (${_kind(value)})`);
      }
      if (Object.getOwnPropertySymbols(value).length > 0) {
        throw new TypeError(`Cannot canonicalise ${path}: an object with symbol keys`);
      }
      const record = value as Record<string, unknown>;
      if (typeof record.toJSON === "function") {
        throw new TypeError(`Cannot canonicalise ${path}: an object with a toJSON method`);
      }
      const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort();
      const members = keys.map((key) => {
        if (!key.isWellFormed()) {
          throw new TypeError(`Cannot canonicalise ${path}: a key with a lone surrogate`);
        }
        return `${JSON.stringify(key)}:${_encode(record[key], `${path}.${key}`)}`;
      });
      return `{${members.join(",")}}`;
    }
    default:
      throw new TypeError(`Cannot canonicalise ${path}: unsupported type ${typeof value}`);
  }
}

/** The class name of a non-plain object, for messages (`Date`, `Map`, `Uint8Array`). */
function _kind(value: object): string {
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof name === "string" && /^[A-Za-z_$][\w$]{0,39}$/.test(name)) return name;
  return tag;
}
