/**
 * Rewrite the memory and table limits of a WebAssembly binary so that neither linear memory nor
 * a table can grow past a cap, even when the module declares no maximum, and export both so the
 * host can measure them.
 *
 * @module
 */
import { encodeName, encodeU32, SECTION_ORDER, WasmReader } from "./wasm_binary.ts";
import { concatBytes } from "../util/concat_bytes.ts";

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

/**
 * Bytes a table entry is counted as in `peakMemoryBytes` and against the cap: V8 holds 24 bytes
 * per `funcref` entry (the entry and its dispatch-table slot; measured with Deno 2.9.6) and 8
 * per `externref` entry; every entry is counted as 24.
 *
 * @example
 * ```ts
 * import { TABLE_ENTRY_BYTES } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(TABLE_ENTRY_BYTES, 24);
 * ```
 */
export const TABLE_ENTRY_BYTES = 24;

/**
 * Tables may hold at most this fraction of the memory cap, on top of linear memory: a table's
 * maximum becomes `min(declared maximum, floor(cap * TABLE_CAP_FRACTION / TABLE_ENTRY_BYTES))`.
 *
 * @example
 * ```ts
 * import { TABLE_CAP_FRACTION } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(TABLE_CAP_FRACTION, 1 / 16);
 * ```
 */
export const TABLE_CAP_FRACTION = 1 / 16;

/**
 * Name under which {@linkcode limitMemory} exports memory 0, so the host can read its size
 * whatever the module calls it; a module may not export this name itself.
 *
 * @example
 * ```ts
 * import { MEMORY_EXPORT } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MEMORY_EXPORT, "__phase_memory");
 * ```
 */
export const MEMORY_EXPORT = "__phase_memory";

/**
 * Name under which {@linkcode limitMemory} exports table 0, so the host can read its size; a
 * module may not export this name itself.
 *
 * @example
 * ```ts
 * import { TABLE_EXPORT } from "./limit_memory.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(TABLE_EXPORT, "__phase_table");
 * ```
 */
export const TABLE_EXPORT = "__phase_table";

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const SECTION_IMPORT = 2;
const SECTION_TABLE = 4;
const SECTION_MEMORY = 5;
const SECTION_EXPORT = 7;
const PREFIX = "Cannot read module";

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

/** One table of a module, after {@linkcode limitMemory} rewrote it. */
export interface TableLimits {
  /** `{ module, name }` of the import when the table is imported (then left as declared). */
  imported: { module: string; name: string } | null;
  /** Initial size in entries. */
  initialEntries: number;
  /** Maximum size in entries, after the cap was applied; `null` for an imported table. */
  maximumEntries: number | null;
}

/** What {@linkcode limitMemory} returns. */
export interface LimitedModule {
  /** The rewritten binary (the input itself when nothing needed to change). */
  bytes: Uint8Array;
  /** Every memory the module imports or defines, in index order. */
  memories: MemoryLimits[];
  /** Every table the module imports or defines, in index order. */
  tables: TableLimits[];
}

/**
 * The module asks for more initial linear memory, or a larger initial table, than the cap
 * allows.
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

function _refType(r: WasmReader): void {
  const t = r.byte();
  // (ref null ht) / (ref ht) from the function-references and GC proposals carry a heap type.
  if (t === 0x63 || t === 0x64) r.s33();
}

interface _Limits {
  flags: number;
  min: number;
  max: number | null;
}

/** Read limits of a memory (`table` false) or a table. */
function _readLimits(r: WasmReader, table: boolean): _Limits {
  const flags = r.byte();
  if (flags & 0x04) {
    throw new SyntaxError(
      `Cannot run module: 64-bit ${table ? "tables" : "memories"} are not supported`,
    );
  }
  if (flags & ~(table ? 0x01 : 0x03)) {
    throw new SyntaxError(
      `Cannot read module: unknown ${table ? "table" : "memory"} limits flags 0x${
        flags.toString(16)
      }`,
    );
  }
  const min = r.u32();
  const max = flags & 0x01 ? r.u32() : null;
  return { flags, min, max };
}

/** The limits with the maximum capped at `cap`, encoded. */
function _cap(limits: _Limits, cap: number): { encoded: number[]; max: number } {
  const max = limits.max === null ? cap : Math.min(limits.max, cap);
  return { encoded: [limits.flags | 0x01, ...encodeU32(limits.min), ...encodeU32(max)], max };
}

/**
 * Rewrite every memory a module defines or imports so that its maximum is
 * `min(declared maximum, cap)`; a memory without a declared maximum gets the cap as maximum.
 * Every table the module defines gets at most `floor(cap * TABLE_CAP_FRACTION /
 * TABLE_ENTRY_BYTES)` entries the same way. An engine then refuses `memory.grow` and
 * `table.grow` past the cap (they return -1), so the cap is enforced by the engine, not only
 * recorded. Memory 0 and table 0 are also exported as {@linkcode MEMORY_EXPORT} and
 * {@linkcode TABLE_EXPORT}, so the host can measure them.
 *
 * Only the import, table, memory and export sections are rewritten (an export section is added
 * when there is none); every other byte is copied unchanged.
 *
 * @param module The WebAssembly binary.
 * @param capBytes The cap in bytes, rounded down to whole 64 KiB pages.
 * @returns The rewritten binary, and the memories and tables it declares.
 * @throws {SyntaxError} If the bytes are not a well-formed WebAssembly binary (as far as the
 *   sections this function reads go; the engine validates the rest), or already export one of
 *   the reserved names.
 * @throws {MemoryCapError} If a memory's initial size, or a table's, already exceeds the cap.
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
  const capEntries = Math.floor(
    capPages * WASM_PAGE_BYTES * TABLE_CAP_FRACTION / TABLE_ENTRY_BYTES,
  );
  if (module.length < 8 || MAGIC.some((b, i) => module[i] !== b)) {
    throw new SyntaxError("Cannot run module: not a WebAssembly binary (bad magic number)");
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) {
    throw new SyntaxError("Cannot run module: unsupported WebAssembly binary version");
  }
  const memories: MemoryLimits[] = [];
  const tables: TableLimits[] = [];
  const sections: Array<{ id: number; start: number; bodyStart: number; end: number }> = [];
  const top = new WasmReader(module, PREFIX, 8, module.length);
  while (!top.done) {
    const start = top.pos;
    const id = top.byte();
    const size = top.u32();
    const bodyStart = top.pos;
    if (bodyStart + size > module.length) {
      throw new SyntaxError(
        `Cannot run module: truncated binary (section ${id} needs ${size} bytes, ` +
          `${module.length - bodyStart} remain)`,
      );
    }
    top.pos = bodyStart + size;
    sections.push({ id, start, bodyStart, end: top.pos });
  }

  const pieces: Uint8Array[] = [module.subarray(0, 8)];
  let changed = false;
  let exported = false;
  const reserved = () => [
    ...(memories.length > 0 ? [[MEMORY_EXPORT, 0x02] as const] : []),
    ...(tables.length > 0 ? [[TABLE_EXPORT, 0x01] as const] : []),
  ];
  const exportSection = (count: number, rest: Uint8Array) => {
    const extra = reserved();
    const body = [...encodeU32(count + extra.length), ...rest];
    for (const [name, kind] of extra) body.push(...encodeName(name), kind, 0);
    pieces.push(new Uint8Array([SECTION_EXPORT, ...encodeU32(body.length), ...body]));
    exported = true;
    if (extra.length > 0) changed = true;
  };
  for (const s of sections) {
    const rank = SECTION_ORDER[s.id];
    if (!exported && rank !== undefined && rank > SECTION_ORDER[SECTION_EXPORT]!) {
      exportSection(0, new Uint8Array());
    }
    if (s.id === SECTION_EXPORT) {
      const r = new WasmReader(module, PREFIX, s.bodyStart, s.end);
      const count = r.u32();
      const restStart = r.pos;
      for (let i = 0; i < count; i++) {
        const name = r.name();
        if (name === MEMORY_EXPORT || name === TABLE_EXPORT) {
          throw new SyntaxError(`Cannot run module: the export name '${name}' is reserved`);
        }
        r.byte();
        r.u32();
      }
      exportSection(count, module.subarray(restStart, s.end));
      continue;
    }
    if (s.id !== SECTION_IMPORT && s.id !== SECTION_MEMORY && s.id !== SECTION_TABLE) {
      pieces.push(module.subarray(s.start, s.end));
      continue;
    }
    const r = new WasmReader(module, PREFIX, s.bodyStart, s.end);
    const body: number[] = [];
    let copyFrom = s.bodyStart;
    const flush = (until: number) => {
      for (let i = copyFrom; i < until; i++) body.push(module[i]!);
    };
    const count = r.u32();
    for (let i = 0; i < count; i++) {
      let imported: MemoryLimits["imported"] = null;
      let kind = s.id === SECTION_TABLE ? 0x01 : 0x02;
      if (s.id === SECTION_IMPORT) {
        const moduleName = r.name();
        const fieldName = r.name();
        kind = r.byte();
        imported = { module: moduleName, name: fieldName };
        if (kind === 0x00) {
          r.u32();
          continue;
        } else if (kind === 0x01) {
          _refType(r);
          const limits = _readLimits(r, true);
          tables.push({ imported, initialEntries: limits.min, maximumEntries: null });
          continue;
        } else if (kind === 0x03) {
          _refType(r);
          r.byte();
          continue;
        } else if (kind === 0x04) {
          r.byte();
          r.u32();
          continue;
        } else if (kind !== 0x02) {
          throw new SyntaxError(`Cannot read module: unknown import kind 0x${kind.toString(16)}`);
        }
      } else if (kind === 0x01) {
        if (module[r.pos] === 0x40) {
          throw new SyntaxError(
            "Cannot run module: tables with an initializer expression are not supported",
          );
        }
        _refType(r);
      }
      const limitsStart = r.pos;
      const limits = _readLimits(r, kind === 0x01);
      let encoded: number[];
      if (kind === 0x01) {
        if (limits.min > capEntries) {
          throw new MemoryCapError(
            `Cannot run module: its initial table of ${limits.min} entries exceeds the ` +
              `${capEntries} entry table cap (${TABLE_CAP_FRACTION * 100}% of the ` +
              `${capPages * WASM_PAGE_BYTES} byte memory cap)`,
          );
        }
        const capped = _cap(limits, capEntries);
        encoded = capped.encoded;
        tables.push({ imported: null, initialEntries: limits.min, maximumEntries: capped.max });
      } else {
        if (limits.min > capPages) {
          throw new MemoryCapError(
            `Cannot run module: its initial memory of ${limits.min * WASM_PAGE_BYTES} bytes ` +
              `exceeds the ${capPages * WASM_PAGE_BYTES} byte memory cap`,
          );
        }
        const capped = _cap(limits, capPages);
        encoded = capped.encoded;
        memories.push({
          imported,
          initialPages: limits.min,
          maximumPages: capped.max,
          shared: (limits.flags & 0x02) !== 0,
        });
      }
      flush(limitsStart);
      body.push(...encoded);
      copyFrom = r.pos;
      changed = true;
    }
    if (r.pos !== s.end) {
      throw new SyntaxError(`Cannot read module: section ${s.id} has trailing bytes`);
    }
    flush(s.end);
    pieces.push(new Uint8Array([s.id, ...encodeU32(body.length), ...body]));
  }
  if (!exported) exportSection(0, new Uint8Array());
  if (!changed) return { bytes: module, memories, tables };
  return { bytes: concatBytes(pieces), memories, tables };
}
