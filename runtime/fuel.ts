/**
 * Deterministic fuel metering for WebAssembly jobs.
 *
 * V8 has no fuel, so this module rewrites a module before it is compiled: every straight-line
 * segment of code is charged, when it is entered, one unit per instruction it contains, on an
 * exported `i64` global; loop headers and function entries check the counter and trap once it is
 * below zero. The same module and the same input therefore use the same fuel on every run, in
 * every process, on every machine.
 *
 * The host drives it in three steps: {@linkcode instrumentFuel} (or a {@linkcode FuelCache}) before
 * compiling, {@linkcode startFuel} after instantiating and before `_start`, and
 * {@linkcode readFuel} after the job ended, however it ended.
 *
 * @module
 */
import { SECTION_ORDER, WasmReader } from "./wasm_binary.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/** Name of the exported mutable `i64` global that holds the remaining fuel. */
export const FUEL_GLOBAL_EXPORT = "__phase_fuel";
/** Name of the exported mutable `i32` global set to 1 just before a fuel trap. */
export const FUEL_EXHAUSTED_EXPORT = "__phase_fuel_exhausted";
/** Name under which the module's own start function is exported; {@linkcode startFuel} calls it. */
export const FUEL_START_EXPORT = "__phase_start";
/**
 * Version of the cost model and of the rewriting. Part of every cache key: a change to either
 * must bump it, because it changes `fuel_used`.
 */
export const FUEL_VERSION = 1;

/**
 * A job ran out of fuel.
 *
 * @example
 * ```ts
 * import { FuelExhaustedError } from "./fuel.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new FuelExhaustedError(1000n);
 * assert.equal(err.name, "FuelExhaustedError");
 * assert.equal(err.limit, 1000n);
 * assert.equal(err.message, "Cannot finish job: fuel exhausted after 1000 units");
 * ```
 */
export class FuelExhaustedError extends Error {
  /** The fuel limit the job ran under (all of it was used). */
  readonly limit: bigint;
  /** Make the error for a job limited to `limit`; `options.cause` carries the trap, if any. */
  constructor(limit: bigint, options?: ErrorOptions) {
    super(`Cannot finish job: fuel exhausted after ${limit} units`, options);
    this.name = "FuelExhaustedError";
    this.limit = limit;
  }
}

// ---------------------------------------------------------------------------------------------
// Byte reading and writing

const _ERROR_PREFIX = "Cannot instrument module";

class _Writer {
  buf: Uint8Array<ArrayBuffer>;
  len = 0;
  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b: number): void {
    if (this.len === this.buf.length) this.ensure(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.range(b, 0, b.length);
  }
  /** Append `b[from, to)`; short ranges by hand, which is faster than a view in cold code. */
  range(b: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.len + n > this.buf.length) this.ensure(n);
    if (n < 64) {
      const buf = this.buf;
      let len = this.len;
      for (let i = from; i < to; i++) buf[len++] = b[i]!;
      this.len = len;
    } else {
      this.buf.set(b.subarray(from, to), this.len);
      this.len += n;
    }
  }
  u32(value: number): void {
    this.ensure(5);
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.buf[this.len++] = b;
    } while (v !== 0);
  }
  /** Signed LEB128 of a non-negative safe integer (for `i64.const`). */
  s64(value: number): void {
    this.ensure(10);
    let v = value;
    for (;;) {
      const b = v % 128;
      v = Math.floor(v / 128);
      if (v === 0 && b < 0x40) {
        this.buf[this.len++] = b;
        return;
      }
      this.buf[this.len++] = b | 0x80;
    }
  }
  name(text: string): void {
    const b = new TextEncoder().encode(text);
    this.u32(b.length);
    this.bytes(b);
  }
  done(): Uint8Array<ArrayBuffer> {
    return this.buf.slice(0, this.len);
  }
}

function _truncated(pos: number): SyntaxError {
  return new SyntaxError(`${_ERROR_PREFIX}: unexpected end of data at byte ${pos}`);
}

function _malformed(pos: number, what: string): SyntaxError {
  return new SyntaxError(`${_ERROR_PREFIX}: ${what} at byte ${pos}`);
}

// ---------------------------------------------------------------------------------------------
// Instruction decoding and function body rewriting
//
// Written as one flat loop over a per-opcode class table, with no calls or allocations per
// instruction: instrumentation runs once per module, usually in a cold process, where V8 has not
// optimised anything yet.

const _VALTYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);

// Opcode classes.
const _BAD = 0; // unknown or unsupported
const _PLAIN = 1; // no immediates, costs 1
const _LEB = 2; // one LEB128 immediate, costs 1
const _MEMARG = 3; // memarg, costs 1
const _BLOCK = 4;
const _LOOP = 5;
const _IF = 6;
const _ELSE = 7;
const _END = 8;
const _BR = 9; // br: LEB, then dead code
const _BR_IF = 10;
const _BR_TABLE = 11;
const _JUMP = 12; // unreachable, return: then dead code
const _NOP = 13;
const _LEB2 = 14; // two LEB128 immediates (call_indirect)
const _TAIL = 15; // return_call: LEB, then dead code
const _TAIL2 = 16; // return_call_indirect: two LEBs, then dead code
const _F32 = 17;
const _F64 = 18;
const _SELECT_T = 19;
const _REF_NULL = 20;
const _PREFIX = 21; // 0xfc, 0xfd, 0xfe

const _CLASS = /* @__PURE__ */ (() => {
  const c = new Uint8Array(256);
  for (let op = 0x45; op <= 0xc4; op++) c[op] = _PLAIN; // numeric, sign extension
  for (let op = 0x28; op <= 0x3e; op++) c[op] = _MEMARG; // loads and stores
  for (const op of [0x1a, 0x1b, 0xd1]) c[op] = _PLAIN; // drop, select, ref.is_null
  // call, local.*, global.*, table.get/set, memory.size/grow, i32/i64.const, ref.func
  for (const op of [0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3f, 0x40, 0x41, 0x42, 0xd2]) {
    c[op] = _LEB;
  }
  c[0x00] = _JUMP;
  c[0x01] = _NOP;
  c[0x02] = _BLOCK;
  c[0x03] = _LOOP;
  c[0x04] = _IF;
  c[0x05] = _ELSE;
  c[0x0b] = _END;
  c[0x0c] = _BR;
  c[0x0d] = _BR_IF;
  c[0x0e] = _BR_TABLE;
  c[0x0f] = _JUMP;
  c[0x11] = _LEB2;
  c[0x12] = _TAIL;
  c[0x13] = _TAIL2;
  c[0x43] = _F32;
  c[0x44] = _F64;
  c[0x1c] = _SELECT_T;
  c[0xd0] = _REF_NULL;
  c[0xfc] = c[0xfd] = c[0xfe] = _PREFIX;
  return c;
})();

function _hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function _unsupported(op: string, at: number): SyntaxError {
  return new SyntaxError(`Cannot instrument module: unsupported opcode ${op} at byte ${at}`);
}

/** Skip a LEB128 number starting at `p`; returns the position after it. */
function _skipLeb(b: Uint8Array, p: number): number {
  while (b[p++]! & 0x80);
  return p;
}

/** Read a LEB128 u32 at `p`; returns it and the position after it. */
function _readLeb(b: Uint8Array, p: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = b[p++];
    if (byte === undefined) throw _truncated(p - 1);
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 28) throw _malformed(p, "LEB128 u32 too long");
  }
  return [result, p];
}

function _skipMemarg(b: Uint8Array, p: number): number {
  const align = b[p];
  p = _skipLeb(b, p);
  if (align !== undefined && align & 0x40) p = _skipLeb(b, p); // multi-memory: memory index
  return _skipLeb(b, p); // offset (u64 for memory64)
}

function _skipBlockType(b: Uint8Array, p: number): number {
  const t = b[p];
  if (t === undefined) throw _truncated(p);
  if (t === 0x40 || _VALTYPES.has(t)) return p + 1;
  if (t & 0x40) throw _malformed(p, `unsupported block type 0x${_hex(t)}`);
  return _skipLeb(b, p); // type index as s33
}

/** Skip the rest of a 0xfc, 0xfd or 0xfe instruction whose prefix is at `at`. */
function _skipPrefixed(b: Uint8Array, at: number): number {
  const prefix = b[at]!;
  const [sub, p] = _readLeb(b, at + 1);
  if (prefix === 0xfc) {
    if (sub <= 7) return p; // saturating truncations
    // memory.init, memory.copy, table.init, table.copy: two indexes
    if (sub === 8 || sub === 10 || sub === 12 || sub === 14) return _skipLeb(b, _skipLeb(b, p));
    if (sub <= 17) return _skipLeb(b, p); // data.drop, memory.fill, elem.drop, table.*
    throw _unsupported(`0xfc ${sub}`, at);
  }
  if (prefix === 0xfd) {
    if (sub <= 11 || sub === 92 || sub === 93) return _skipMemarg(b, p); // loads, store
    if (sub === 12 || sub === 13) return p + 16; // v128.const, i8x16.shuffle
    if (sub >= 21 && sub <= 34) return p + 1; // extract_lane, replace_lane
    if (sub >= 84 && sub <= 91) return _skipMemarg(b, p) + 1; // load_lane, store_lane
    if (sub <= 0x113) return p; // everything else, relaxed SIMD included, has no immediates
    throw _unsupported(`0xfd ${sub}`, at);
  }
  if (sub === 3) return p + 1; // atomic.fence
  if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) return _skipMemarg(b, p);
  throw _unsupported(`0xfe ${sub}`, at);
}

/** Reused between function bodies: segment start positions, costs and check flags. */
interface _Segments {
  pos: number[];
  cost: number[];
  check: boolean[];
}

/**
 * Find the segments of one function body's code, `b[p, end)` (locals already skipped).
 *
 * A segment is straight-line code between the places where control can arrive from elsewhere
 * or leave early: it starts at the function entry and after `loop`, `if`, `else`, `end` and
 * `br_if`. Its cost (one per instruction, zero for `nop`, `block`, `loop`, `else`, `end` and for
 * dead code after `br`, `br_table`, `return`, `unreachable` and tail calls) is charged before
 * its first instruction; at the function entry and loop headers the counter is then checked.
 */
function _segments(b: Uint8Array, p: number, end: number, s: _Segments): void {
  s.pos.length = s.cost.length = s.check.length = 0;
  let segPos = p;
  let cost = 0;
  let check = true;
  let live = 1; // 0 after an unconditional jump, until the next segment
  let depth = 1;
  for (;;) {
    if (p >= end) throw _truncated(p);
    const at = p;
    const op = b[p++]!;
    let next = false; // does a new segment start after this instruction?
    let nextCheck = false;
    // Literal cases: a jump table even before V8 optimises this loop.
    switch (_CLASS[op]) {
      case 1: // PLAIN
        cost += live;
        break;
      case 2: // LEB
        cost += live;
        p = b[p]! < 0x80 ? p + 1 : _skipLeb(b, p);
        break;
      case 3: // MEMARG
        cost += live;
        p = _skipMemarg(b, p);
        break;
      case 4: // BLOCK
        depth++;
        p = _skipBlockType(b, p);
        break;
      case 5: // LOOP
        depth++;
        p = _skipBlockType(b, p);
        next = nextCheck = true;
        break;
      case 6: // IF
        cost += live;
        depth++;
        p = _skipBlockType(b, p);
        next = true;
        break;
      case 7: // ELSE
        next = true;
        break;
      case 8: // END
        if (--depth === 0) {
          if (p !== end) throw _malformed(p, "code after the end of a function body");
          if (cost > 0 || check) {
            s.pos.push(segPos);
            s.cost.push(cost);
            s.check.push(check);
          }
          return;
        }
        next = true;
        break;
      case 9: // BR
      case 15: // TAIL
        cost += live;
        live = 0;
        p = b[p]! < 0x80 ? p + 1 : _skipLeb(b, p);
        break;
      case 10: // BR_IF
        cost += live;
        p = _skipLeb(b, p);
        next = true;
        break;
      case 11: { // BR_TABLE
        cost += live;
        live = 0;
        const [n, q] = _readLeb(b, p);
        p = q;
        for (let i = 0; i <= n; i++) p = _skipLeb(b, p);
        break;
      }
      case 12: // JUMP
        cost += live;
        live = 0;
        break;
      case 13: // NOP
        break;
      case 14: // LEB2
        cost += live;
        p = _skipLeb(b, _skipLeb(b, p));
        break;
      case 16: // TAIL2
        cost += live;
        live = 0;
        p = _skipLeb(b, _skipLeb(b, p));
        break;
      case 17: // F32
        cost += live;
        p += 4;
        break;
      case 18: // F64
        cost += live;
        p += 8;
        break;
      case 19: { // SELECT_T
        cost += live;
        const [n, q] = _readLeb(b, p);
        p = q;
        for (let i = 0; i < n; i++) {
          const t = b[p++];
          if (t === undefined || !_VALTYPES.has(t)) {
            throw _malformed(p - 1, `unsupported value type 0x${_hex(t ?? 0)}`);
          }
        }
        break;
      }
      case 20: { // REF_NULL
        cost += live;
        const t = b[p++];
        if (t !== 0x70 && t !== 0x6f) {
          throw _malformed(p - 1, `unsupported heap type 0x${_hex(t ?? 0)}`);
        }
        break;
      }
      case 21: // PREFIX
        cost += live;
        p = _skipPrefixed(b, at);
        break;
      default:
        throw _unsupported(`0x${_hex(op)}`, at);
    }
    if (next) {
      if (cost > 0 || check) {
        s.pos.push(segPos);
        s.cost.push(cost);
        s.check.push(check);
      }
      segPos = p;
      cost = 0;
      check = nextCheck;
      live = 1;
    }
  }
}

/** Pieces of the code inserted into function bodies. */
interface _Snippets {
  /** `global.get fuel; i64.const` (the cost follows as signed LEB128). */
  chargeHead: Uint8Array;
  /** `global.set fuel`. */
  setFuel: Uint8Array;
  /** `i64.const 0; i64.lt_s; if; i32.const 1; global.set flag; unreachable; end`. */
  check: Uint8Array;
}

function _snippets(fuel: number, flag: number): _Snippets {
  const head = new _Writer();
  head.byte(0x23);
  head.u32(fuel);
  head.byte(0x42);
  const set = new _Writer();
  set.byte(0x24);
  set.u32(fuel);
  const check = new _Writer();
  check.bytes(new Uint8Array([0x42, 0x00, 0x53, 0x04, 0x40, 0x41, 0x01, 0x24]));
  check.u32(flag);
  check.bytes(new Uint8Array([0x00, 0x0b]));
  return { chargeHead: head.done(), setFuel: set.done(), check: check.done() };
}

/**
 * Rewrite one function body, `b[start, end)` with its locals, into `w`. The function has
 * `params` parameters; it gets one more `i64` local, to check the counter without reading the
 * global again.
 */
function _rewriteBody(
  b: Uint8Array,
  start: number,
  end: number,
  params: number,
  snippets: _Snippets,
  segments: _Segments,
  w: _Writer,
): void {
  let [groups, p] = _readLeb(b, start);
  let locals = params;
  w.u32(groups + 1);
  for (let i = 0; i < groups; i++) {
    const [n, q] = _readLeb(b, p);
    locals += n;
    p = q;
    const t = b[p++];
    if (t === undefined || !_VALTYPES.has(t)) {
      throw _malformed(p - 1, `unsupported value type 0x${_hex(t ?? 0)}`);
    }
  }
  w.range(b, _readLeb(b, start)[1], p);
  w.byte(0x01);
  w.byte(0x7e); // (local $t i64)
  _segments(b, p, end, segments);
  let copied = p;
  const { pos, cost, check } = segments;
  for (let i = 0; i < pos.length; i++) {
    w.range(b, copied, pos[i]!);
    copied = pos[i]!;
    const c = cost[i]!;
    if (check[i]) {
      // global.get fuel; i64.const cost; i64.sub; local.tee t; global.set fuel; local.get t;
      // i64.const 0; i64.lt_s; if; i32.const 1; global.set flag; unreachable; end
      w.bytes(snippets.chargeHead);
      w.s64(c);
      w.byte(0x7d);
      w.byte(0x22);
      w.u32(locals);
      w.bytes(snippets.setFuel);
      w.byte(0x20);
      w.u32(locals);
      w.bytes(snippets.check);
    } else if (c > 0) {
      // global.get fuel; i64.const cost; i64.sub; global.set fuel
      w.bytes(snippets.chargeHead);
      w.s64(c);
      w.byte(0x7d);
      w.bytes(snippets.setFuel);
    }
  }
  w.range(b, copied, end);
}

// ---------------------------------------------------------------------------------------------
// Module rewriting

interface _Section {
  id: number;
  start: number;
  end: number;
}

const _GLOBAL = 6;
const _EXPORT = 7;
const _START = 8;
const _CODE = 10;

/**
 * Add fuel metering to a WebAssembly module. Pure and deterministic: the same bytes in give the
 * same bytes out.
 *
 * The result exports a mutable `i64` global {@linkcode FUEL_GLOBAL_EXPORT} (initially 0: set it
 * with {@linkcode startFuel}), a mutable `i32` global {@linkcode FUEL_EXHAUSTED_EXPORT} that
 * becomes 1 just before the module traps (`unreachable`) for lack of fuel, and, if the module had
 * a start section, its start function as {@linkcode FUEL_START_EXPORT} instead (so that it runs
 * metered, after the fuel is set). No imports are added and no index changes.
 *
 * Supported: MVP, sign extension, saturating conversions, bulk memory, reference types,
 * multi-value, tail calls, SIMD (with relaxed SIMD), threads, multi-memory and memory64
 * immediates. Exception handling and GC are refused.
 *
 * @param module The module's bytes (not modified).
 * @returns The instrumented module, checked with `WebAssembly.validate`.
 * @throws {SyntaxError} If the module is not valid WebAssembly, uses an unsupported feature, or
 * already exports one of the names above.
 *
 * @example
 * ```ts
 * import { instrumentFuel, readFuel, startFuel } from "./fuel.ts";
 * import assert from "node:assert/strict";
 *
 * // (module (func (export "spin") (loop (br 0))))
 * const spin = new Uint8Array([
 *   0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
 *   0x03, 0x02, 0x01, 0x00, 0x07, 0x08, 0x01, 0x04, 0x73, 0x70, 0x69, 0x6e, 0x00, 0x00,
 *   0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b,
 * ]);
 * const { instance } = await WebAssembly.instantiate(instrumentFuel(spin));
 * startFuel(instance, 1000n);
 * assert.throws(() => (instance.exports.spin as () => void)(), WebAssembly.RuntimeError);
 * assert.deepEqual(readFuel(instance, 1000n), { used: 1000n, remaining: -1n, exhausted: true });
 * ```
 */
export function instrumentFuel(module: Uint8Array): Uint8Array<ArrayBuffer> {
  if (!(module instanceof Uint8Array)) {
    throw new TypeError("Cannot instrument module: expected a Uint8Array");
  }
  const bytes = module;
  if (
    bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 ||
    bytes[3] !== 0x6d
  ) {
    throw new SyntaxError("Cannot instrument module: not a WebAssembly binary (bad magic)");
  }
  if (bytes[4] !== 0x01 || bytes[5] !== 0x00 || bytes[6] !== 0x00 || bytes[7] !== 0x00) {
    throw new SyntaxError(
      "Cannot instrument module: unsupported binary version (only core modules, version 1)",
    );
  }
  const sections: _Section[] = [];
  const r = new WasmReader(bytes, _ERROR_PREFIX, 8, bytes.length);
  let last = 0;
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    if (id !== 0) {
      const rank = SECTION_ORDER[id];
      if (rank === undefined) throw _malformed(start, `unknown section id ${id}`);
      if (rank <= last) throw _malformed(start, `section ${id} out of order`);
      last = rank;
    }
    sections.push({ id, start, end: r.pos });
  }

  // Count imported and defined globals: the new ones go at the end of the index space.
  let globals = 0;
  let startFunc: number | undefined;
  let types: number[] = [];
  let funcTypes: number[] = [];
  const exportNames = new Set<string>();
  for (const s of sections) {
    const sr = new WasmReader(bytes, _ERROR_PREFIX, s.start, s.end);
    if (s.id === 1) types = _readParamCounts(sr);
    else if (s.id === 3) funcTypes = _readFuncTypes(sr);
    else if (s.id === 2) globals += _countImportedGlobals(sr);
    else if (s.id === _GLOBAL) globals += sr.u32();
    else if (s.id === _EXPORT) _readExportNames(sr, exportNames);
    else if (s.id === _START) startFunc = sr.u32();
  }
  for (const name of [FUEL_GLOBAL_EXPORT, FUEL_EXHAUSTED_EXPORT, FUEL_START_EXPORT]) {
    if (exportNames.has(name)) {
      throw new SyntaxError(
        `Cannot instrument module: it already exports '${name}' (instrumented twice?)`,
      );
    }
  }
  const fuel = globals;
  const flag = globals + 1;

  const out = new _Writer(bytes.length + (bytes.length >> 2) + 1024);
  out.bytes(bytes.subarray(0, 8));
  let wroteGlobals = false;
  let wroteExports = false;
  const section = (id: number, body: Uint8Array) => {
    out.byte(id);
    out.u32(body.length);
    out.bytes(body);
  };
  const newGlobals = (count: number, rest: Uint8Array) => {
    const w = new _Writer();
    w.u32(count + 2);
    w.bytes(rest);
    w.bytes(new Uint8Array([0x7e, 0x01, 0x42, 0x00, 0x0b])); // (mut i64) (i64.const 0)
    w.bytes(new Uint8Array([0x7f, 0x01, 0x41, 0x00, 0x0b])); // (mut i32) (i32.const 0)
    section(_GLOBAL, w.done());
    wroteGlobals = true;
  };
  const newExports = (count: number, rest: Uint8Array) => {
    const w = new _Writer();
    w.u32(count + (startFunc === undefined ? 2 : 3));
    w.bytes(rest);
    w.name(FUEL_GLOBAL_EXPORT);
    w.byte(0x03);
    w.u32(fuel);
    w.name(FUEL_EXHAUSTED_EXPORT);
    w.byte(0x03);
    w.u32(flag);
    if (startFunc !== undefined) {
      w.name(FUEL_START_EXPORT);
      w.byte(0x00);
      w.u32(startFunc);
    }
    section(_EXPORT, w.done());
    wroteExports = true;
  };
  for (const s of sections) {
    const rank = SECTION_ORDER[s.id];
    if (rank !== undefined) {
      if (!wroteGlobals && rank > SECTION_ORDER[_GLOBAL]!) newGlobals(0, new Uint8Array());
      if (!wroteExports && rank > SECTION_ORDER[_EXPORT]!) newExports(0, new Uint8Array());
    }
    const sr = new WasmReader(bytes, _ERROR_PREFIX, s.start, s.end);
    if (s.id === _GLOBAL) {
      const count = sr.u32();
      newGlobals(count, bytes.subarray(sr.pos, s.end));
    } else if (s.id === _EXPORT) {
      const count = sr.u32();
      newExports(count, bytes.subarray(sr.pos, s.end));
    } else if (s.id === _START) {
      // Dropped: exported as FUEL_START_EXPORT, called by startFuel() once the fuel is set.
    } else if (s.id === _CODE) {
      const params = funcTypes.map((t) => {
        const n = types[t];
        if (n === undefined) throw _malformed(s.start, `unknown type index ${t}`);
        return n;
      });
      section(_CODE, _rewriteCode(sr, params, fuel, flag));
    } else {
      out.byte(s.id);
      out.u32(s.end - s.start);
      out.bytes(bytes.subarray(s.start, s.end));
    }
  }
  if (!wroteGlobals) newGlobals(0, new Uint8Array());
  if (!wroteExports) newExports(0, new Uint8Array());
  const result = out.done();
  if (!WebAssembly.validate(result)) {
    if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
      throw new SyntaxError("Cannot instrument module: it is not valid WebAssembly");
    }
    throw new Error("Cannot instrument module: the instrumented module does not validate (a bug)");
  }
  return result;
}

function _rewriteCode(r: WasmReader, params: number[], fuel: number, flag: number): Uint8Array {
  const w = new _Writer(r.end - r.pos + ((r.end - r.pos) >> 2) + 1024);
  const count = r.u32();
  if (count !== params.length) {
    throw _malformed(r.pos, "function and code section counts differ");
  }
  w.u32(count);
  const body = new _Writer();
  const snippets = _snippets(fuel, flag);
  const segments: _Segments = { pos: [], cost: [], check: [] };
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    body.len = 0;
    _rewriteBody(r.bytes, start, start + size, params[i]!, snippets, segments, body);
    w.u32(body.len);
    w.range(body.buf, 0, body.len);
  }
  if (r.pos !== r.end) throw _malformed(r.pos, "trailing bytes in the code section");
  return w.done();
}

/** Number of parameters of each type in the type section. */
function _readParamCounts(r: WasmReader): number[] {
  const n = r.u32();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const form = r.byte();
    if (form !== 0x60) throw _malformed(r.pos - 1, `unsupported type form 0x${_hex(form)}`);
    const params = r.u32();
    r.skip(params);
    r.skip(r.u32());
    out.push(params);
  }
  return out;
}

/** Type index of each function defined by the module. */
function _readFuncTypes(r: WasmReader): number[] {
  const n = r.u32();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.u32());
  return out;
}

function _skipLimits(r: WasmReader): void {
  const flags = r.byte();
  if (flags > 7) throw _malformed(r.pos - 1, `unsupported limits flags 0x${_hex(flags)}`);
  r.skipLeb(10);
  if (flags & 1) r.skipLeb(10);
}

function _countImportedGlobals(r: WasmReader): number {
  const n = r.u32();
  let globals = 0;
  for (let i = 0; i < n; i++) {
    r.skip(r.u32()); // module
    r.skip(r.u32()); // name
    const kind = r.byte();
    if (kind === 0x00) r.u32();
    else if (kind === 0x01) {
      r.byte();
      _skipLimits(r);
    } else if (kind === 0x02) _skipLimits(r);
    else if (kind === 0x03) {
      r.byte();
      r.byte();
      globals++;
    } else if (kind === 0x04) {
      r.byte();
      r.u32();
    } else throw _malformed(r.pos - 1, `unknown import kind ${kind}`);
  }
  return globals;
}

function _readExportNames(r: WasmReader, names: Set<string>): void {
  const n = r.u32();
  const decoder = new TextDecoder();
  for (let i = 0; i < n; i++) {
    const len = r.u32();
    const start = r.pos;
    r.skip(len);
    names.add(decoder.decode(r.bytes.subarray(start, start + len)));
    r.byte();
    r.u32();
  }
}

// ---------------------------------------------------------------------------------------------
// Host side

/** Fuel left and used after a job ran, as {@linkcode readFuel} reports it. */
export interface FuelReading {
  /**
   * Fuel used: `limit - remaining`, capped at `limit`. Equal to `limit` when exhausted.
   */
  used: bigint;
  /** The raw counter; below zero when the job ran out. */
  remaining: bigint;
  /**
   * True when the job ran out of fuel: it trapped at a fuel check, or it ended (normally or by
   * another trap) with the counter below zero, i.e. after using more than its limit.
   */
  exhausted: boolean;
}

function _global(instance: WebAssembly.Instance, name: string): WebAssembly.Global {
  const g = instance.exports[name];
  if (!(g instanceof WebAssembly.Global)) {
    throw new TypeError(`Cannot meter instance: it does not export '${name}' (not instrumented?)`);
  }
  return g;
}

/**
 * Give an instance of an instrumented module its fuel, then run the module's own start function,
 * if it had one. Call it right after instantiation, before `_start` or any other export.
 *
 * @param instance An instance of a module made by {@linkcode instrumentFuel}.
 * @param limit The fuel the job may use, `0n` to `2n ** 62n`.
 * @throws {TypeError} If the instance is not instrumented.
 * @throws {RangeError} If `limit` is out of range.
 * @throws {WebAssembly.RuntimeError} If the start function traps (check {@linkcode readFuel}).
 *
 * @example
 * ```ts
 * import { FUEL_GLOBAL_EXPORT, instrumentFuel, startFuel } from "./fuel.ts";
 * import assert from "node:assert/strict";
 *
 * const empty = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
 * const { instance } = await WebAssembly.instantiate(instrumentFuel(empty));
 * startFuel(instance, 500n);
 * assert.equal((instance.exports[FUEL_GLOBAL_EXPORT] as WebAssembly.Global).value, 500n);
 * ```
 */
export function startFuel(instance: WebAssembly.Instance, limit: bigint): void {
  if (typeof limit !== "bigint" || limit < 0n || limit > 2n ** 62n) {
    throw new RangeError(`Cannot meter instance: fuel limit must be 0 to 2^62, got ${limit}`);
  }
  _global(instance, FUEL_GLOBAL_EXPORT).value = limit;
  _global(instance, FUEL_EXHAUSTED_EXPORT).value = 0;
  const start = instance.exports[FUEL_START_EXPORT];
  if (typeof start === "function") start();
}

/**
 * Read how much fuel a job used. Call it after the job ended, whether it returned, exited or
 * trapped; when `exhausted` is true report {@linkcode FuelExhaustedError}, not the trap.
 *
 * @param instance The instance {@linkcode startFuel} was called on.
 * @param limit The limit given to {@linkcode startFuel}.
 * @throws {TypeError} If the instance is not instrumented.
 *
 * @example
 * ```ts
 * import { instrumentFuel, readFuel, startFuel } from "./fuel.ts";
 * import assert from "node:assert/strict";
 *
 * // (module (func (export "f") (drop (i32.const 1))))
 * const f = new Uint8Array([
 *   0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
 *   0x03, 0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00,
 *   0x0a, 0x07, 0x01, 0x05, 0x00, 0x41, 0x01, 0x1a, 0x0b,
 * ]);
 * const { instance } = await WebAssembly.instantiate(instrumentFuel(f));
 * startFuel(instance, 10n);
 * (instance.exports.f as () => void)();
 * assert.deepEqual(readFuel(instance, 10n), { used: 2n, remaining: 8n, exhausted: false });
 * ```
 */
export function readFuel(instance: WebAssembly.Instance, limit: bigint): FuelReading {
  const remaining = _global(instance, FUEL_GLOBAL_EXPORT).value as bigint;
  const flagged = _global(instance, FUEL_EXHAUSTED_EXPORT).value !== 0;
  const exhausted = flagged || remaining < 0n;
  const used = exhausted ? limit : limit - remaining;
  return { used, remaining, exhausted };
}

// ---------------------------------------------------------------------------------------------
// Cache

/** Options for {@linkcode FuelCache}. */
export interface FuelCacheOptions {
  /**
   * Directory for instrumented modules, created when needed; files are named
   * `fuel-v<version>-<sha256 of the input>.wasm`. Without it the cache is in memory only.
   * @default undefined
   */
  dir?: string;
  /**
   * How many instrumented modules to keep in memory (least recently used go first).
   * @default 16
   */
  maxEntries?: number;
}

/**
 * Instruments each module (by its SHA-256) once: kept in memory and, with `dir`, on disk.
 *
 * @example
 * ```ts
 * import { FuelCache } from "./fuel.ts";
 * import assert from "node:assert/strict";
 *
 * const cache = new FuelCache({ maxEntries: 4 });
 * const empty = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
 * const a = await cache.instrument(empty);
 * const b = await cache.instrument(empty.slice());
 * assert.equal(a, b);
 * assert.equal(cache.instrumented, 1);
 * ```
 */
export class FuelCache {
  readonly #dir: string | undefined;
  readonly #max: number;
  readonly #memory = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  #instrumented = 0;

  /** Make an empty cache. */
  constructor(options: FuelCacheOptions = {}) {
    const { dir, maxEntries = 16 } = options;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`Cannot make fuel cache: maxEntries must be >= 1, got ${maxEntries}`);
    }
    if (dir !== undefined && (typeof dir !== "string" || dir === "")) {
      throw new TypeError("Cannot make fuel cache: dir must be a non-empty string");
    }
    this.#dir = dir;
    this.#max = maxEntries;
  }

  /** How many times this cache actually ran {@linkcode instrumentFuel}. */
  get instrumented(): number {
    return this.#instrumented;
  }

  /**
   * The instrumented form of `module`, from memory, from disk, or made now. Do not modify the
   * returned bytes: they are shared.
   *
   * @throws {SyntaxError} As {@linkcode instrumentFuel}.
   */
  async instrument(
    module: Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Uint8Array<ArrayBuffer>> {
    const { signal } = options;
    signal?.throwIfAborted();
    if (!(module instanceof Uint8Array)) {
      throw new TypeError("Cannot instrument module: expected a Uint8Array");
    }
    const digest = await crypto.subtle.digest("SHA-256", module as Uint8Array<ArrayBuffer>);
    const key = `fuel-v${FUEL_VERSION}-${new Uint8Array(digest).toHex()}`;
    let entry = this.#memory.get(key);
    if (entry) {
      this.#memory.delete(key);
    } else {
      entry = this.#load(key, module, signal);
      entry.catch(() => this.#memory.delete(key));
    }
    this.#memory.set(key, entry);
    while (this.#memory.size > this.#max) {
      this.#memory.delete(this.#memory.keys().next().value!);
    }
    return await entry;
  }

  async #load(
    key: string,
    module: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const dir = this.#dir;
    const file = dir === undefined ? undefined : `${dir}/${key}.wasm`;
    if (file !== undefined) {
      try {
        const cached = await Deno.readFile(file, signal ? { signal } : {});
        if (WebAssembly.validate(cached)) return cached;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    const out = instrumentFuel(module);
    this.#instrumented++;
    if (dir !== undefined && file !== undefined) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, out, { mode: 0o600, signal });
    }
    return out;
  }
}
