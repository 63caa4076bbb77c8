/**
 * Strict JSON for signed data and peer messages: one text, one reading.
 *
 * `JSON.parse` keeps the last of two equal keys, turns `1.0` into `1`, passes lone surrogates
 * through and parses any depth; a signature checked over a re-serialised `JSON.parse` result then
 * covers something other parsers (which may keep the first key) read differently. This parser
 * accepts exactly RFC 8259 JSON and on top of it refuses, naming where:
 *
 * - a key twice in one object (at any depth);
 * - a string or key that is not well-formed UTF-16 (a lone surrogate, raw or as `\u` escape);
 * - with `numbers: "integers"` (the default, as signed data holds integers only) any number
 *   written with a fraction or exponent (`1.0`, `1e3`), `-0`, and integers outside the safe
 *   range (±2^53-1);
 * - nesting deeper than `maxDepth`, input larger than `maxBytes`;
 * - anything that is not JSON: a byte order mark, trailing data, bytes that are not UTF-8.
 *
 * Written by hand: the npm parsers at hand check one of these rules at most (lossless-json
 * refuses some duplicate keys but recurses without a bound and lets lone surrogates through).
 *
 * @module
 */

/** Options of {@linkcode parseStrictJson}. */
export interface StrictJsonOptions {
  /** What is parsed, for messages: `Cannot parse <what>: ...`. @default {"JSON"} */
  what?: string;
  /** Largest input in bytes (UTF-8). @default {16777216} */
  maxBytes?: number;
  /** Deepest nesting of objects and arrays (the top-level container is depth 1). @default {64} */
  maxDepth?: number;
  /**
   * `"integers"`: every number must be a safe integer written without fraction or exponent
   * (signed data). `"finite"`: any JSON number whose value is finite.
   * @default {"integers"}
   */
  numbers?: "integers" | "finite";
}

/**
 * Input refused by {@linkcode parseStrictJson}. `notJson` tells text that is not JSON at all
 * (syntax, encoding) from JSON that breaks a rule of strict reading (duplicate key, number,
 * lone surrogate, depth, size).
 *
 * @example
 * ```ts
 * import { parseStrictJson, StrictJsonError } from "./strict_json.ts";
 * import assert from "node:assert/strict";
 *
 * try {
 *   parseStrictJson('{"a":1,"a":2}', { what: "receipt" });
 * } catch (error) {
 *   assert.ok(error instanceof StrictJsonError);
 *   assert.equal(error.reason, "duplicate key 'a' at top level");
 *   assert.equal(error.notJson, false);
 * }
 * ```
 */
export class StrictJsonError extends SyntaxError {
  /** The message without its `Cannot parse <what>: ` prefix. */
  readonly reason: string;
  /** True when the input is not JSON at all (as opposed to JSON refused by a strict rule). */
  readonly notJson: boolean;
  /** Make the error. */
  constructor(what: string, reason: string, notJson: boolean, options?: ErrorOptions) {
    super(`Cannot parse ${what}: ${reason}`, options);
    this.name = "StrictJsonError";
    this.reason = reason;
    this.notJson = notJson;
  }
}

/** The hard ceiling of `maxDepth` (the parser recurses once per level). */
const DEPTH_CEILING = 1000;

/**
 * Parse JSON strictly (see the module doc for the rules). Objects are plain objects; a
 * `__proto__` key becomes an own property, as with `JSON.parse`, never a prototype.
 *
 * @param input JSON text, or its UTF-8 bytes (decoded fatally; a byte order mark is refused).
 * @param options Limits, the number rule and the name used in messages.
 * @returns The parsed value.
 * @throws {StrictJsonError} A `SyntaxError` whose one-line message names the rule broken and
 * where: `Cannot parse receipt: duplicate key 'completion' at result`.
 * @throws {RangeError} If `maxBytes` or `maxDepth` are out of range.
 *
 * @example Refuses what JSON.parse would quietly read one way
 * ```ts
 * import { parseStrictJson } from "./strict_json.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseStrictJson('{"a":[1,"x",null]}'), { a: [1, "x", null] });
 * assert.throws(() => parseStrictJson('{"r":{"c":"error","c":"stop"}}', { what: "receipt" }), {
 *   name: "StrictJsonError",
 *   message: "Cannot parse receipt: duplicate key 'c' at r",
 * });
 * assert.throws(() => parseStrictJson('{"n":1.0}'), /non-integer number 1\.0 at n/);
 * assert.throws(() => parseStrictJson('"\\ud800"'), /lone surrogate/);
 * assert.equal(parseStrictJson("0.5", { numbers: "finite" }), 0.5);
 * ```
 */
export function parseStrictJson(
  input: string | Uint8Array,
  options: StrictJsonOptions = {},
): unknown {
  const { what = "JSON", maxBytes = 1 << 24, maxDepth = 64, numbers = "integers" } = options;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`Cannot parse ${what}: maxBytes must be a whole number >= 0`);
  }
  if (!Number.isSafeInteger(maxDepth) || maxDepth < 0 || maxDepth > DEPTH_CEILING) {
    throw new RangeError(
      `Cannot parse ${what}: maxDepth must be a whole number from 0 to ${DEPTH_CEILING}`,
    );
  }
  let text: string;
  if (typeof input === "string") {
    if (input.length > maxBytes || (input.length * 3 > maxBytes && _utf8Length(input) > maxBytes)) {
      throw new StrictJsonError(what, `larger than ${maxBytes} bytes`, false);
    }
    text = input;
  } else {
    if (input.byteLength > maxBytes) {
      throw new StrictJsonError(what, `larger than ${maxBytes} bytes`, false);
    }
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(input);
    } catch (error) {
      throw new StrictJsonError(what, "not UTF-8", true, { cause: error });
    }
  }
  return new _Parser(text, what, maxDepth, numbers === "integers").parse();
}

/** UTF-8 length of a string (a lone surrogate counts as the 3 bytes of U+FFFD). */
function _utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

const SIMPLE_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]{0,39}$/;

class _Parser {
  #s: string;
  #i = 0;
  #what: string;
  #maxDepth: number;
  #integers: boolean;
  #path: (string | number)[] = [];

  constructor(text: string, what: string, maxDepth: number, integers: boolean) {
    this.#s = text;
    this.#what = what;
    this.#maxDepth = maxDepth;
    this.#integers = integers;
  }

  parse(): unknown {
    if (this.#s.charCodeAt(0) === 0xfeff) this.#syntax("starts with a byte order mark");
    this.#ws();
    const value = this.#value(0);
    this.#ws();
    if (this.#i < this.#s.length) this.#syntax(`trailing data at offset ${this.#i}`);
    return value;
  }

  /** Where the parser is, as `result.metrics.extra`, `signatures[3]` or `top level`. */
  #where(): string {
    if (this.#path.length === 0) return "top level";
    let out = "";
    for (const part of this.#path) {
      if (typeof part === "number") out += `[${part}]`;
      else if (SIMPLE_KEY.test(part)) out += out === "" ? part : `.${part}`;
      else out += `[${_quote(part)}]`;
    }
    return out;
  }

  #syntax(reason: string): never {
    throw new StrictJsonError(this.#what, reason, true);
  }

  #refuse(reason: string): never {
    throw new StrictJsonError(this.#what, reason, false);
  }

  #unexpected(): never {
    if (this.#i >= this.#s.length) this.#syntax("unexpected end of input");
    const c = this.#s.codePointAt(this.#i)!;
    const shown = c >= 0x21 && c <= 0x7e
      ? `'${String.fromCharCode(c)}'`
      : `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
    this.#syntax(`unexpected ${shown} at offset ${this.#i}`);
  }

  #ws(): void {
    const s = this.#s;
    let i = this.#i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.#i = i;
  }

  #value(depth: number): unknown {
    const c = this.#s.charCodeAt(this.#i);
    switch (c) {
      case 0x7b: // {
        return this.#object(depth + 1);
      case 0x5b: // [
        return this.#array(depth + 1);
      case 0x22: // "
        return this.#string("a string");
      case 0x74: // t
        return this.#literal("true", true);
      case 0x66: // f
        return this.#literal("false", false);
      case 0x6e: // n
        return this.#literal("null", null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#number();
        return this.#unexpected();
    }
  }

  #literal<T>(word: string, value: T): T {
    if (!this.#s.startsWith(word, this.#i)) this.#unexpected();
    this.#i += word.length;
    return value;
  }

  #enter(depth: number): void {
    if (depth > this.#maxDepth) {
      this.#refuse(`nesting deeper than ${this.#maxDepth} at ${this.#where()}`);
    }
    this.#i++; // the opening bracket
    this.#ws();
  }

  #object(depth: number): Record<string, unknown> {
    this.#enter(depth);
    const out: Record<string, unknown> = {};
    const s = this.#s;
    if (s.charCodeAt(this.#i) === 0x7d) {
      this.#i++;
      return out;
    }
    for (;;) {
      if (s.charCodeAt(this.#i) !== 0x22) this.#unexpected();
      const key = this.#string("a key");
      if (Object.hasOwn(out, key)) this.#refuse(`duplicate key ${_quote(key)} at ${this.#where()}`);
      this.#ws();
      if (s.charCodeAt(this.#i) !== 0x3a) this.#unexpected();
      this.#i++;
      this.#ws();
      this.#path.push(key);
      const value = this.#value(depth);
      this.#path.pop();
      if (key === "__proto__") {
        Object.defineProperty(out, key, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else {
        out[key] = value;
      }
      if (this.#closes(0x7d)) return out;
    }
  }

  /** After a member: skip space, then `close` ends the container (true) or a comma goes on. */
  #closes(close: number): boolean {
    this.#ws();
    const next = this.#s.charCodeAt(this.#i);
    this.#i++;
    if (next === close) return true;
    if (next !== 0x2c) {
      this.#i--;
      this.#unexpected();
    }
    this.#ws();
    return false;
  }

  #array(depth: number): unknown[] {
    this.#enter(depth);
    const out: unknown[] = [];
    const s = this.#s;
    if (s.charCodeAt(this.#i) === 0x5d) {
      this.#i++;
      return out;
    }
    for (;;) {
      this.#path.push(out.length);
      out.push(this.#value(depth));
      this.#path.pop();
      if (this.#closes(0x5d)) return out;
    }
  }

  #string(kind: "a string" | "a key"): string {
    const s = this.#s;
    let i = this.#i + 1; // after the opening quote
    let start = i;
    let out = "";
    for (;;) {
      if (i >= s.length) {
        this.#i = i;
        this.#syntax("unterminated string");
      }
      const c = s.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) {
        this.#i = i;
        this.#syntax(`control character in ${kind} at offset ${i}`);
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(start, i);
      const e = s.charCodeAt(i + 1);
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += "\\";
          break;
        case 0x2f:
          out += "/";
          break;
        case 0x62:
          out += "\b";
          break;
        case 0x66:
          out += "\f";
          break;
        case 0x6e:
          out += "\n";
          break;
        case 0x72:
          out += "\r";
          break;
        case 0x74:
          out += "\t";
          break;
        case 0x75: {
          const hex = s.slice(i + 2, i + 6);
          if (!/^[0-9A-Fa-f]{4}$/.test(hex)) {
            this.#i = i;
            this.#syntax(`bad \\u escape at offset ${i}`);
          }
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          this.#i = i;
          this.#syntax(`bad escape at offset ${i}`);
      }
      i += 2;
      start = i;
    }
    out += s.slice(start, i);
    this.#i = i + 1;
    if (!out.isWellFormed()) {
      const where = this.#where();
      this.#refuse(
        kind === "a key"
          ? `lone surrogate in a key in ${where}`
          : `lone surrogate in a string at ${where}`,
      );
    }
    return out;
  }

  #number(): number {
    const s = this.#s;
    const start = this.#i;
    let i = start;
    const digits = () => {
      const from = i;
      while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
      return i - from;
    };
    if (s.charCodeAt(i) === 0x2d) i++;
    if (s.charCodeAt(i) === 0x30) {
      i++;
    } else if (digits() === 0) {
      this.#i = i;
      this.#unexpected();
    }
    let integer = true;
    if (s.charCodeAt(i) === 0x2e) {
      i++;
      integer = false;
      if (digits() === 0) {
        this.#i = i;
        this.#unexpected();
      }
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      integer = false;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (digits() === 0) {
        this.#i = i;
        this.#unexpected();
      }
    }
    this.#i = i;
    const lexeme = s.slice(start, i);
    const value = Number(lexeme);
    const shown = lexeme.length > 40 ? `${lexeme.slice(0, 40)}...` : lexeme;
    if (this.#integers) {
      if (!integer) this.#refuse(`non-integer number ${shown} at ${this.#where()}`);
      if (lexeme === "-0") this.#refuse(`negative zero at ${this.#where()}`);
      if (!Number.isSafeInteger(value)) {
        this.#refuse(`integer ${shown} at ${this.#where()} is outside the safe range`);
      }
    } else if (!Number.isFinite(value)) {
      this.#refuse(`number ${shown} at ${this.#where()} is out of range`);
    }
    return value;
  }
}

/** A key for a message: quoted, escaped to one line, at most 40 characters. */
function _quote(key: string): string {
  const short = key.length > 40 ? `${key.slice(0, 40)}...` : key;
  const escaped = JSON.stringify(short).slice(1, -1);
  return `'${escaped}'`;
}
