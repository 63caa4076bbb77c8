/**
 * The module gate: before a job's module is compiled, read all of it and refuse every
 * WebAssembly feature, import and declaration a job may not use.
 *
 * @module
 */
import { UnsupportedModuleError } from "./errors.ts";
import { WASI_PREVIEW1_FUNCTIONS } from "./wasi.ts";
import { SECTION_ORDER, WasmReader } from "./wasm_binary.ts";

/**
 * The WebAssembly features a job may use. Everything else is refused by
 * {@linkcode checkModule} before the engine sees the module.
 *
 * @example
 * ```ts
 * import { ALLOWED_WASM_FEATURES } from "./check_module.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(ALLOWED_WASM_FEATURES.includes("simd128"));
 * assert.ok(!ALLOWED_WASM_FEATURES.includes("gc"));
 * ```
 */
export const ALLOWED_WASM_FEATURES: readonly string[] = Object.freeze([
  "mvp",
  "mutable-globals",
  "sign-ext",
  "nontrapping-fptoint",
  "bulk-memory",
  "multivalue",
  "simd128",
  "reference-types",
]);

/**
 * The version of the gate's rules. Verdicts are cached under it (`run` keeps each module it
 * instrumented only after the gate passed it, and skips the gate when it finds it again: see
 * `FuelCache.instrument`'s `gate`), so it must change with every change to what
 * {@linkcode checkModule} refuses or accepts, including the WASI functions it lets a module import
 * (a module importing one that is no longer served would fail to link anyway).
 *
 * @example
 * ```ts
 * import { GATE_VERSION } from "./check_module.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(GATE_VERSION, /^\d+$/);
 * ```
 */
export const GATE_VERSION = "1";

const PREFIX = "Cannot read module";
const WASI = "wasi_snapshot_preview1";

const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;
const VALTYPES = new Set([I32, I64, F32, F64, V128, FUNCREF, EXTERNREF]);

/** What a refused opcode belongs to. */
const REFUSED_OPCODES: Record<number, string> = {
  0x06: "exception handling (try)",
  0x07: "exception handling (catch)",
  0x08: "exception handling (throw)",
  0x09: "exception handling (rethrow)",
  0x0a: "exception handling (throw_ref)",
  0x12: "tail calls (return_call)",
  0x13: "tail calls (return_call_indirect)",
  0x14: "typed function references (call_ref)",
  0x15: "typed function references (return_call_ref)",
  0x18: "exception handling (delegate)",
  0x19: "exception handling (catch_all)",
  0x1f: "exception handling (try_table)",
  0xd3: "GC (ref.eq)",
  0xd4: "typed function references (ref.as_non_null)",
  0xd5: "typed function references (br_on_null)",
  0xd6: "typed function references (br_on_non_null)",
  0xfb: "GC instructions",
  0xfe: "threads (atomic instructions)",
};

/** Opcode classes of the allowed instructions, by their immediates; 0 is not allowed. */
const _CLASS = /* @__PURE__ */ (() => {
  const c = new Uint8Array(256);
  for (let op = 0x45; op <= 0xc4; op++) c[op] = 1; // numeric, sign extension
  for (const op of [0x00, 0x01, 0x05, 0x0b, 0x0f, 0x1a, 0x1b, 0xd1]) c[op] = 1;
  // br, br_if, call, local.*, global.*, table.get/set, ref.func
  for (const op of [0x0c, 0x0d, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xd2]) c[op] = 2;
  for (let op = 0x28; op <= 0x3e; op++) c[op] = 3; // loads and stores
  c[0x02] = c[0x03] = c[0x04] = 4;
  c[0x0e] = 5;
  c[0x11] = 6;
  c[0x1c] = 7;
  c[0x3f] = c[0x40] = 8;
  c[0x41] = 9;
  c[0x42] = 10;
  c[0x43] = 11;
  c[0x44] = 12;
  c[0xd0] = 13;
  c[0xfc] = 14;
  c[0xfd] = 15;
  return c;
})();

/** A name from the module, quoted for a one-line message: escaped, at most 64 characters. */
function _quote(name: string): string {
  const short = name.length > 64 ? `${name.slice(0, 64)}...` : name;
  return `'${JSON.stringify(short).slice(1, -1).replace(/[\u007f-\u009f\u2028\u2029]/g, "?")}'`;
}

function _hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0")}`;
}

class _Gate {
  readonly r: WasmReader;
  /** Signature of each type, as in WASI_PREVIEW1_FUNCTIONS (`x` for a non-number type). */
  readonly types: string[] = [];
  memories = 0;
  tables = 0;

  constructor(readonly bytes: Uint8Array) {
    this.r = new WasmReader(bytes, PREFIX, 8, bytes.length);
  }

  refuse(what: string, pos: number): UnsupportedModuleError {
    return new UnsupportedModuleError(
      `Cannot run module: it uses ${what}, which jobs may not use (byte ${pos})`,
      what,
    );
  }

  valType(r: WasmReader): number {
    const at = r.pos;
    const t = r.byte();
    if (VALTYPES.has(t)) return t;
    if (t === 0x69) throw this.refuse("exception handling (exnref)", at);
    if (t === 0x63 || t === 0x64) throw this.refuse("typed function references (ref types)", at);
    if (t >= 0x65 && t <= 0x6e || t >= 0x71 && t <= 0x74) {
      throw this.refuse(`GC reference types (value type ${_hex(t)})`, at);
    }
    throw r.malformed(`unknown value type ${_hex(t)}`, at);
  }

  refType(r: WasmReader): void {
    const at = r.pos;
    const t = this.valType(r);
    if (t !== FUNCREF && t !== EXTERNREF) {
      throw r.malformed(`${_hex(t)} is not a reference type`, at);
    }
  }

  limits(r: WasmReader, what: "memory" | "table"): void {
    const at = r.pos;
    const flags = r.byte();
    if (flags & 0x04) throw this.refuse(`64-bit ${what === "memory" ? "memories" : "tables"}`, at);
    if (what === "memory" && flags & 0x02) throw this.refuse("threads (shared memory)", at);
    if (what === "memory" && flags & 0x08) throw this.refuse("custom page sizes", at);
    if (flags > 1) throw r.malformed(`unknown ${what} limits flags ${_hex(flags)}`, at);
    r.u32();
    if (flags & 1) r.u32();
  }

  memory(r: WasmReader, at: number): void {
    if (++this.memories > 1) throw this.refuse("multiple memories", at);
    this.limits(r, "memory");
  }

  table(r: WasmReader, at: number): void {
    if (++this.tables > 1) throw this.refuse("multiple tables", at);
    if (this.bytes[r.pos] === 0x40) {
      throw this.refuse("typed function references (table initializer)", r.pos);
    }
    this.refType(r);
    this.limits(r, "table");
  }

  /** A constant expression: one or more of the MVP constant instructions, then `end`. */
  constExpr(r: WasmReader): void {
    for (;;) {
      const at = r.pos;
      const op = r.byte();
      if (op === 0x0b) return;
      if (op === 0x41) r.skipLeb(5);
      else if (op === 0x42) r.skipLeb(10);
      else if (op === 0x43) r.skip(4);
      else if (op === 0x44) r.skip(8);
      else if (op === 0x23 || op === 0xd2) r.u32();
      else if (op === 0xd0) this.heapType(r);
      else if (op === 0xfd && r.u32() === 12) r.skip(16);
      else if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d) {
        throw this.refuse("extended constant expressions", at);
      } else if (op === 0x7e) throw this.refuse("extended constant expressions", at);
      else if (op === 0xfb) throw this.refuse("GC instructions", at);
      else throw r.malformed(`${_hex(op)} is not allowed in a constant expression`, at);
    }
  }

  heapType(r: WasmReader): void {
    const at = r.pos;
    const t = r.byte();
    if (t !== FUNCREF && t !== EXTERNREF) throw this.refuse(`GC heap types (${_hex(t)})`, at);
  }

  blockType(r: WasmReader): void {
    const t = this.bytes[r.pos];
    if (t === 0x40) r.pos++;
    else if (t !== undefined && (t & 0xc0) === 0x40) this.valType(r); // one byte, negative
    else {
      const at = r.pos;
      const index = r.s33();
      if (index < 0 || index >= this.types.length) {
        throw r.malformed(`block type index ${index} out of range`, at);
      }
    }
  }

  memarg(r: WasmReader): void {
    const at = r.pos;
    const align = r.u32();
    if (align & 0x40) throw this.refuse("multiple memories (memory index)", at);
    r.u32(); // offset: 32 bits, memory64 is refused
  }

  zeroByte(r: WasmReader, what: string): void {
    const at = r.pos;
    if (r.byte() !== 0) throw this.refuse(what, at);
  }

  /**
   * The instructions of one function body, `r.pos` to `r.end`: one flat loop over a class
   * table, with no call per plain instruction, since the gate runs on every job, usually in a
   * cold process where V8 has optimised nothing yet.
   */
  code(r: WasmReader): void {
    const b = this.bytes;
    const end = r.end;
    let p = r.pos;
    const leb = (max: number): void => {
      for (let i = 0; i < max; i++) {
        if (p >= end) throw r.truncated(p);
        if ((b[p++]! & 0x80) === 0) return;
      }
      throw r.malformed("LEB128 number too long", p);
    };
    const u32 = (): number => {
      r.pos = p;
      const v = r.u32();
      p = r.pos;
      return v;
    };
    while (p < end) {
      const at = p;
      const op = b[p++]!;
      switch (_CLASS[op]) {
        case 1: // no immediates
          break;
        case 2: // one LEB128 index
          if (b[p]! < 0x80) p++;
          else leb(5);
          break;
        case 3: // memarg: align (bit 6 would be multi-memory), offset
          if (b[p]! & 0x40) throw this.refuse("multiple memories (memory index)", p);
          if (b[p]! < 0x80 && b[p + 1]! < 0x80) p += 2;
          else {
            leb(5);
            leb(5);
          }
          break;
        case 4: // block type
          if (b[p] === 0x40) p++;
          else {
            r.pos = p;
            this.blockType(r);
            p = r.pos;
          }
          break;
        case 5: { // br_table
          const n = u32();
          for (let i = 0; i <= n; i++) leb(5);
          break;
        }
        case 6: // call_indirect: type, table
          leb(5);
          leb(5);
          break;
        case 7: { // select t
          const n = u32();
          r.pos = p;
          for (let i = 0; i < n; i++) this.valType(r);
          p = r.pos;
          break;
        }
        case 8: // memory.size, memory.grow: memory 0
          if (b[p] !== 0) throw this.refuse("multiple memories (memory index)", p);
          p++;
          break;
        case 9: // i32.const
          if (b[p]! < 0x80) p++;
          else leb(5);
          break;
        case 10: // i64.const
          leb(10);
          break;
        case 11: // f32.const
          p += 4;
          break;
        case 12: // f64.const
          p += 8;
          break;
        case 13: // ref.null
          r.pos = p;
          this.heapType(r);
          p = r.pos;
          break;
        case 14: // 0xfc
        case 15: // 0xfd
          r.pos = p;
          if (op === 0xfc) this.prefixedFc(r, at);
          else this.prefixedFd(r, at);
          p = r.pos;
          break;
        default:
          if (REFUSED_OPCODES[op]) throw this.refuse(REFUSED_OPCODES[op], at);
          throw r.malformed(`unknown opcode ${_hex(op)}`, at);
      }
    }
    if (p > end) throw r.truncated(end);
    r.pos = p;
  }

  prefixedFc(r: WasmReader, at: number): void {
    const sub = r.u32();
    if (sub <= 7) return; // saturating float-to-int
    switch (sub) {
      case 8: // memory.init data 0
        r.u32();
        this.zeroByte(r, "multiple memories (memory index)");
        return;
      case 9: // data.drop
      case 13: // elem.drop
      case 15: // table.grow
      case 16: // table.size
      case 17: // table.fill
        r.u32();
        return;
      case 10: // memory.copy 0 0
        this.zeroByte(r, "multiple memories (memory index)");
        this.zeroByte(r, "multiple memories (memory index)");
        return;
      case 11: // memory.fill 0
        this.zeroByte(r, "multiple memories (memory index)");
        return;
      case 12: // table.init elem table
      case 14: // table.copy table table
        r.u32();
        r.u32();
        return;
    }
    throw this.refuse(`an instruction outside the allowed proposals (0xfc ${sub})`, at);
  }

  prefixedFd(r: WasmReader, at: number): void {
    const sub = r.u32();
    if (sub > 0xff) throw this.refuse(`relaxed SIMD (0xfd ${sub})`, at);
    if (sub <= 11 || sub === 92 || sub === 93) this.memarg(r); // loads, store, load zero
    else if (sub === 12 || sub === 13) r.skip(16); // v128.const, i8x16.shuffle
    else if (sub >= 21 && sub <= 34) r.skip(1); // extract_lane, replace_lane
    else if (sub >= 84 && sub <= 91) {
      this.memarg(r); // load_lane, store_lane
      r.skip(1);
    }
  }

  type(r: WasmReader): void {
    const at = r.pos;
    const form = r.byte();
    if (form === 0x4e || form === 0x50 || form === 0x4f || form === 0x5f || form === 0x5e) {
      throw this.refuse(`GC types (type form ${_hex(form)})`, at);
    }
    if (form !== 0x60) throw r.malformed(`unknown type form ${_hex(form)}`, at);
    const sig = (n: number) => {
      let s = "";
      for (let i = 0; i < n; i++) {
        const t = this.valType(r);
        s += t === I32 ? "i" : t === I64 ? "I" : "x";
      }
      return s;
    };
    const params = sig(r.u32());
    this.types.push(`${params}:${sig(r.u32())}`);
  }

  import(r: WasmReader): void {
    const at = r.pos;
    const module = r.name();
    const name = r.name();
    const kind = r.byte();
    const label = `'${_quote(module).slice(1, -1)}.${_quote(name).slice(1, -1)}'`;
    if (kind === 0x00 && module === WASI) {
      const index = r.u32();
      const want = Object.hasOwn(WASI_PREVIEW1_FUNCTIONS, name)
        ? WASI_PREVIEW1_FUNCTIONS[name]
        : undefined;
      if (want === undefined) {
        throw new UnsupportedModuleError(
          `Cannot run module: its import ${label} is not a WASI preview1 function`,
          "import",
        );
      }
      const got = this.types[index];
      if (got === undefined) throw r.malformed(`type index ${index} out of range`, at);
      if (got !== want) {
        throw new UnsupportedModuleError(
          `Cannot run module: its import ${label} has type ${_sig(got)}, WASI preview1 ` +
            `defines ${_sig(want)}`,
          "import",
        );
      }
      return;
    }
    if (kind === 0x02 && module === "env" && name === "memory") return this.memory(r, at);
    const kinds = ["function", "table", "memory", "global", "tag"];
    throw new UnsupportedModuleError(
      `Cannot run module: its import ${label} (${kinds[kind] ?? `kind ${kind}`}) is not allowed: ` +
        `a job may import only WASI preview1 functions and env.memory`,
      "import",
    );
  }

  element(r: WasmReader): void {
    const at = r.pos;
    const flags = r.u32();
    if (flags > 7) throw r.malformed(`unknown element segment flags ${flags}`, at);
    const active = (flags & 1) === 0;
    if (active && flags & 2) r.u32(); // table index
    if (active) this.constExpr(r);
    const exprs = (flags & 4) !== 0;
    if (flags & 3) {
      if (exprs) this.refType(r);
      else if (r.byte() !== 0) throw r.malformed("unknown element kind", r.pos - 1);
    }
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      if (exprs) this.constExpr(r);
      else r.u32();
    }
  }

  data(r: WasmReader): void {
    const at = r.pos;
    const flags = r.u32();
    if (flags === 2) {
      if (r.u32() !== 0) throw this.refuse("multiple memories (data segment)", at);
    } else if (flags > 2) throw r.malformed(`unknown data segment flags ${flags}`, at);
    if (flags !== 1) this.constExpr(r);
    r.skip(r.u32());
  }

  /** Read `count` items of a section with `item`, then require its end. */
  vector(r: WasmReader, item: (r: WasmReader, at: number) => void): void {
    const count = r.u32();
    for (let i = 0; i < count; i++) item(r, r.pos);
    if (!r.done) throw r.malformed("trailing bytes in a section");
  }

  run(): void {
    const { bytes } = this;
    let last = 0;
    while (!this.r.done) {
      const at = this.r.pos;
      const id = this.r.byte();
      const size = this.r.u32();
      const start = this.r.pos;
      if (start + size > bytes.length) {
        throw new SyntaxError(
          `Cannot run module: truncated binary (section ${id} needs ${size} bytes, ` +
            `${bytes.length - start} remain)`,
        );
      }
      this.r.skip(size);
      if (id === 0) continue; // custom sections are not executed
      if (id === 13) throw this.refuse("exception handling (tag section)", at);
      const rank = SECTION_ORDER[id];
      if (rank === undefined) throw this.refuse(`an unknown section (id ${id})`, at);
      if (rank <= last) throw this.r.malformed(`section ${id} out of order`, at);
      last = rank;
      const r = new WasmReader(bytes, PREFIX, start, start + size);
      switch (id) {
        case 1:
          this.vector(r, (r) => this.type(r));
          break;
        case 2:
          this.vector(r, (r) => this.import(r));
          break;
        case 3:
          this.vector(r, (r) => void r.u32());
          break;
        case 4:
          this.vector(r, (r, at) => this.table(r, at));
          break;
        case 5:
          this.vector(r, (r, at) => this.memory(r, at));
          break;
        case 6:
          this.vector(r, (r) => {
            this.valType(r);
            const at = r.pos;
            if (r.byte() > 1) throw r.malformed("unknown global mutability", at);
            this.constExpr(r);
          });
          break;
        case 7:
          this.vector(r, (r) => {
            r.name();
            const at = r.pos;
            const kind = r.byte();
            if (kind === 4) throw this.refuse("exception handling (tag export)", at);
            if (kind > 4) throw r.malformed(`unknown export kind ${kind}`, at);
            r.u32();
          });
          break;
        case 8: // start: one function index
        case 12: // data count: one count
          r.u32();
          if (!r.done) throw r.malformed("trailing bytes in a section");
          break;
        case 9:
          this.vector(r, (r) => this.element(r));
          break;
        case 10:
          this.vector(r, (r) => {
            const size = r.u32();
            const body = new WasmReader(bytes, PREFIX, r.pos, r.pos + size);
            r.skip(size);
            const groups = body.u32();
            for (let i = 0; i < groups; i++) {
              body.u32();
              this.valType(body);
            }
            this.code(body);
          });
          break;
        case 11:
          this.vector(r, (r) => this.data(r));
          break;
      }
    }
  }
}

function _sig(s: string): string {
  const [params = "", results = ""] = s.split(":");
  const names = (t: string) =>
    [...t].map((c) => (c === "i" ? "i32" : c === "I" ? "i64" : "other")).join(", ");
  return `(${names(params)}) -> (${names(results)})`;
}

/**
 * Check that a module uses only what a job may use, before anything compiles it: the
 * features of {@linkcode ALLOWED_WASM_FEATURES} (reference types as far as one table of
 * `funcref` or `externref` needs: `call_indirect`, `ref.func`, `ref.null`, `table.*`), at most
 * one memory and one table, and imports of WASI preview1 functions (exact names and types) and
 * `env.memory` only. Refused: GC, exception handling, threads and shared memory, memory64,
 * multiple memories, tail calls, typed function references, relaxed SIMD, extended constant
 * expressions, stringref and any section, type or opcode not listed.
 *
 * The whole binary is read, every function body included, so an instruction the gate does not
 * know is refused rather than skipped; the engine validates everything else afterwards.
 *
 * @param module The WebAssembly binary.
 * @throws {UnsupportedModuleError} Naming what was refused and where.
 * @throws {SyntaxError} If the bytes are not well-formed as far as the gate reads them.
 *
 * @example
 * ```ts
 * import { checkModule } from "./check_module.ts";
 * import { UnsupportedModuleError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
 * checkModule(new Uint8Array(header));
 * // (type (struct)): a GC type
 * const gc = new Uint8Array([...header, 0x01, 0x03, 0x01, 0x5f, 0x00]);
 * assert.throws(() => checkModule(gc), UnsupportedModuleError);
 * ```
 */
export function checkModule(module: Uint8Array): void {
  if (!(module instanceof Uint8Array)) {
    throw new TypeError("Cannot check module: expected a Uint8Array");
  }
  if (
    module.length < 8 || module[0] !== 0x00 || module[1] !== 0x61 || module[2] !== 0x73 ||
    module[3] !== 0x6d
  ) {
    throw new SyntaxError("Cannot run module: not a WebAssembly binary (bad magic number)");
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) {
    throw new SyntaxError("Cannot run module: unsupported WebAssembly binary version");
  }
  new _Gate(module).run();
}
