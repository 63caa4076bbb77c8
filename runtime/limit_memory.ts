/**
 * Rewrite the memory limits of a WebAssembly binary so that no linear memory can grow past a
 * cap, even when the module declares no maximum.
 *
 * @module
 */

/**
 * Bytes in one WebAssembly page.
 *
 * @example
 * ```ts
 * import { WASM_PAGE_BYTES } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(WASM_PAGE_BYTES, 64 * 1024);
 * ```
 */
export const WASM_PAGE_BYTES = 65_536;

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const SECTION_IMPORT = 2;
const SECTION_MEMORY = 5;

/** One linear memory of a module, after {@linkcode limitMemory} rewrote it. */
export interface MemoryLimits {
  /** `{ module, name }` of the import when the memory is imported, else `null`. */
  imported: { module: string; name: string } | null;
  /** Initial size in pages. */
  initialPages: number;
  /** Maximum size in pages, after the cap was applied. */
  maximumPages: number;
  /** Whether the memory is shared (threads proposal). */
  shared: boolean;
}

/** What {@linkcode limitMemory} returns. */
export interface LimitedModule {
  /** The rewritten binary (the input itself when nothing needed to change). */
  bytes: Uint8Array;
  /** Every memory the module imports or defines, in index order. */
  memories: MemoryLimits[];
}

/**
 * The module asks for more initial linear memory than the cap allows.
 *
 * @example
 * ```ts
 * import { MemoryCapError } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new MemoryCapError("Cannot run module: too big").name, "MemoryCapError");
 * ```
 */
export class MemoryCapError extends Error {
  /** Make the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MemoryCapError";
  }
}

class _Reader {
  pos: number;
  constructor(readonly bytes: Uint8Array, pos: number, readonly end: number) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) {
      throw new SyntaxError("Cannot read module: unexpected end of section");
    }
    return this.bytes[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      if (i === 4 && (b & 0x70) !== 0) {
        throw new SyntaxError("Cannot read module: integer too large for u32");
      }
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    throw new SyntaxError("Cannot read module: integer representation too long");
  }
  s33(): void {
    for (let i = 0; i < 5; i++) {
      if ((this.byte() & 0x80) === 0) return;
    }
    throw new SyntaxError("Cannot read module: integer representation too long");
  }
  name(): string {
    const length = this.u32();
    if (this.pos + length > this.end) {
      throw new SyntaxError("Cannot read module: name runs past the end of its section");
    }
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      this.bytes.subarray(this.pos, this.pos + length),
    );
    this.pos += length;
    return text;
  }
}

function _encodeU32(value: number): number[] {
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

function _valType(r: _Reader): void {
  const t = r.byte();
  // (ref null ht) / (ref ht) from the function-references and GC proposals carry a heap type.
  if (t === 0x63 || t === 0x64) r.s33();
}

/** Read limits; return them and their encoded span. */
function _readLimits(r: _Reader): { flags: number; min: number; max: number | null } {
  const flags = r.byte();
  if (flags & 0x04) throw new SyntaxError("Cannot run module: 64-bit memories are not supported");
  if (flags & ~0x03) {
    throw new SyntaxError(
      `Cannot read module: unknown memory limits flags 0x${flags.toString(16)}`,
    );
  }
  const min = r.u32();
  const max = flags & 0x01 ? r.u32() : null;
  return { flags, min, max };
}

function _capLimits(
  limits: { flags: number; min: number; max: number | null },
  capPages: number,
  capBytes: number,
): { encoded: number[]; max: number } {
  if (limits.min > capPages) {
    throw new MemoryCapError(
      `Cannot run module: its initial memory of ${limits.min * WASM_PAGE_BYTES} bytes exceeds ` +
        `the ${capBytes} byte memory cap`,
    );
  }
  const max = limits.max === null ? capPages : Math.min(limits.max, capPages);
  const flags = limits.flags | 0x01;
  return { encoded: [flags, ..._encodeU32(limits.min), ..._encodeU32(max)], max };
}

/**
 * Rewrite every memory a module defines or imports so that its maximum is
 * `min(declared maximum, cap)`; a memory without a declared maximum gets the cap as maximum. An
 * engine then refuses `memory.grow` past the cap (it returns -1), so the cap is enforced by the
 * engine, not only recorded.
 *
 * Only the import and memory sections are rewritten; every other byte is copied unchanged.
 *
 * @param module The WebAssembly binary.
 * @param capBytes The cap in bytes, rounded down to whole 64 KiB pages.
 * @returns The rewritten binary and the memories it declares.
 * @throws {SyntaxError} If the bytes are not a well-formed WebAssembly binary (as far as the
 *   sections this function reads go; the engine validates the rest).
 * @throws {MemoryCapError} If a memory's initial size already exceeds the cap.
 * @throws {RangeError} If `capBytes` is under one page or over 4 GiB.
 *
 * @example
 * ```ts
 * import { limitMemory } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * // (module (memory 1)): one page, no maximum.
 * const wasm = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
 * const limited = limitMemory(wasm, 4 * 65536);
 * assert.deepEqual(limited.memories, [
 *   { imported: null, initialPages: 1, maximumPages: 4, shared: false },
 * ]);
 * assert.ok(WebAssembly.validate(limited.bytes as Uint8Array<ArrayBuffer>));
 * ```
 */
export function limitMemory(module: Uint8Array, capBytes: number): LimitedModule {
  if (!Number.isInteger(capBytes) || capBytes < WASM_PAGE_BYTES || capBytes > 2 ** 32) {
    throw new RangeError(
      `Cannot limit memory: cap must be an integer from ${WASM_PAGE_BYTES} to ${2 ** 32} bytes, ` +
        `got ${capBytes}`,
    );
  }
  const capPages = Math.floor(capBytes / WASM_PAGE_BYTES);
  if (module.length < 8 || MAGIC.some((b, i) => module[i] !== b)) {
    throw new SyntaxError("Cannot run module: not a WebAssembly binary (bad magic number)");
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) {
    throw new SyntaxError("Cannot run module: unsupported WebAssembly binary version");
  }
  const memories: MemoryLimits[] = [];
  const pieces: Uint8Array[] = [module.subarray(0, 8)];
  let changed = false;
  const top = new _Reader(module, 8, module.length);
  while (top.pos < module.length) {
    const sectionStart = top.pos;
    const id = top.byte();
    const size = top.u32();
    const bodyStart = top.pos;
    const bodyEnd = bodyStart + size;
    if (bodyEnd > module.length) {
      throw new SyntaxError(
        `Cannot run module: truncated binary (section ${id} needs ${size} bytes, ` +
          `${module.length - bodyStart} remain)`,
      );
    }
    top.pos = bodyEnd;
    if (id !== SECTION_IMPORT && id !== SECTION_MEMORY) {
      pieces.push(module.subarray(sectionStart, bodyEnd));
      continue;
    }
    const r = new _Reader(module, bodyStart, bodyEnd);
    const body: number[] = [];
    let copyFrom = bodyStart;
    const flush = (until: number) => {
      for (let i = copyFrom; i < until; i++) body.push(module[i]!);
    };
    const count = r.u32();
    for (let i = 0; i < count; i++) {
      let imported: MemoryLimits["imported"] = null;
      if (id === SECTION_IMPORT) {
        const moduleName = r.name();
        const fieldName = r.name();
        const kind = r.byte();
        if (kind === 0x00) {
          r.u32();
          continue;
        } else if (kind === 0x01) {
          _valType(r);
          _readLimits(r);
          continue;
        } else if (kind === 0x03) {
          _valType(r);
          r.byte();
          continue;
        } else if (kind === 0x04) {
          r.byte();
          r.u32();
          continue;
        } else if (kind !== 0x02) {
          throw new SyntaxError(`Cannot read module: unknown import kind 0x${kind.toString(16)}`);
        }
        imported = { module: moduleName, name: fieldName };
      }
      const limitsStart = r.pos;
      const limits = _readLimits(r);
      const capped = _capLimits(limits, capPages, capPages * WASM_PAGE_BYTES);
      flush(limitsStart);
      body.push(...capped.encoded);
      copyFrom = r.pos;
      changed = true;
      memories.push({
        imported,
        initialPages: limits.min,
        maximumPages: capped.max,
        shared: (limits.flags & 0x02) !== 0,
      });
    }
    if (r.pos !== bodyEnd) {
      throw new SyntaxError(`Cannot read module: section ${id} has trailing bytes`);
    }
    flush(bodyEnd);
    pieces.push(new Uint8Array([id, ..._encodeU32(body.length), ...body]));
  }
  if (!changed) return { bytes: module, memories };
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const p of pieces) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, memories };
}
