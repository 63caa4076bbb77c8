/**
 * Reading the WebAssembly binary format: the one byte reader shared by the module gate
 * (check_module.ts), the memory limiter (limit_memory.ts) and the fuel instrumenter (fuel.ts).
 *
 * @module
 */

/**
 * Each known section id's rank in the order the binary format requires (the data count
 * section, 12, sits between import-related and code sections); custom sections (id 0) may go
 * anywhere and are not listed.
 *
 * @example
 * ```ts
 * import { SECTION_ORDER } from "./wasm_binary.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(SECTION_ORDER[12]! < SECTION_ORDER[10]!); // data count before code
 * assert.equal(SECTION_ORDER[0], undefined);
 * ```
 */
export const SECTION_ORDER: Readonly<Record<number, number>> = {
  1: 1,
  2: 2,
  3: 3,
  4: 4,
  5: 5,
  13: 6,
  6: 7,
  7: 8,
  8: 9,
  9: 10,
  12: 11,
  10: 12,
  11: 13,
};

/** Made on first use: nothing happens at import time. */
let _utf8: TextDecoder | undefined;

/**
 * A bounded cursor over `bytes[pos, end)` that reads the binary format's primitives (bytes,
 * LEB128 integers, names) and throws a `SyntaxError` whose message starts with `prefix` when the
 * data is truncated or malformed: `<prefix>: unexpected end of data at byte 12`.
 *
 * @example
 * ```ts
 * import { WasmReader } from "./wasm_binary.ts";
 * import assert from "node:assert/strict";
 *
 * const r = new WasmReader(new Uint8Array([0xe5, 0x8e, 0x26, 3, 97, 98, 99]), "Cannot read");
 * assert.equal(r.u32(), 624485);
 * assert.equal(r.name(), "abc");
 * assert.throws(() => r.byte(), { message: "Cannot read: unexpected end of data at byte 7" });
 * ```
 */
export class WasmReader {
  /** The bytes read. */
  readonly bytes: Uint8Array;
  /** Position of the next byte to read. */
  pos: number;
  /** Position after the last byte this reader may read. */
  readonly end: number;
  /** Start of every error message, e.g. `Cannot read module`. */
  readonly prefix: string;

  /** Read `bytes[pos, end)`; `end` defaults to the end of `bytes`. */
  constructor(bytes: Uint8Array, prefix: string, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.prefix = prefix;
    this.pos = pos;
    this.end = end;
  }

  /** A `SyntaxError` for data that ends early, at byte `pos`. */
  truncated(pos: number = this.pos): SyntaxError {
    return new SyntaxError(`${this.prefix}: unexpected end of data at byte ${pos}`);
  }

  /** A `SyntaxError` saying `what` is wrong at byte `pos`. */
  malformed(what: string, pos: number = this.pos): SyntaxError {
    return new SyntaxError(`${this.prefix}: ${what} at byte ${pos}`);
  }

  /** Whether every byte up to `end` was read. */
  get done(): boolean {
    return this.pos >= this.end;
  }

  /** One byte. */
  byte(): number {
    if (this.pos >= this.end) throw this.truncated();
    return this.bytes[this.pos++]!;
  }

  /** An unsigned LEB128 integer of at most 32 bits (at most 5 bytes, unused bits zero). */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      if (i === 4 && (b & 0x70) !== 0) throw this.malformed("u32 out of range");
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    throw this.malformed("LEB128 u32 too long");
  }

  /** Skip a LEB128 number of at most `maxBytes` bytes (5 for 32 bits, 10 for 64). */
  skipLeb(maxBytes: number): void {
    for (let i = 0; i < maxBytes; i++) {
      if ((this.byte() & 0x80) === 0) return;
    }
    throw this.malformed("LEB128 number too long");
  }

  /**
   * A signed LEB128 integer of at most 33 bits, as block types encode a type index; small
   * enough to be exact.
   */
  s33(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) return b & 0x40 ? result - 2 ** shift : result;
    }
    throw this.malformed("LEB128 s33 too long");
  }

  /** Skip `n` bytes. */
  skip(n: number): void {
    if (this.pos + n > this.end) throw this.truncated();
    this.pos += n;
  }

  /** A name: a u32 length, then that many bytes of UTF-8. */
  name(): string {
    const length = this.u32();
    const start = this.pos;
    this.skip(length);
    try {
      _utf8 ??= new TextDecoder("utf-8", { fatal: true });
      return _utf8.decode(this.bytes.subarray(start, start + length));
    } catch {
      throw this.malformed("name is not UTF-8", start);
    }
  }
}

/**
 * Encode an unsigned 32-bit integer as LEB128 bytes.
 *
 * @example
 * ```ts
 * import { encodeU32 } from "./wasm_binary.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(encodeU32(624485), [0xe5, 0x8e, 0x26]);
 * assert.deepEqual(encodeU32(0), [0]);
 * ```
 */
export function encodeU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/**
 * Encode a name as the binary format does: its UTF-8 length as LEB128, then the bytes.
 *
 * @example
 * ```ts
 * import { encodeName } from "./wasm_binary.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(encodeName("abc"), [3, 97, 98, 99]);
 * ```
 */
export function encodeName(text: string): number[] {
  const bytes = new TextEncoder().encode(text);
  return [...encodeU32(bytes.length), ...bytes];
}
