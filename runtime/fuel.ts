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
export const FUEL_VERSION = 2;

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
  /**
   * Positions of `call`, `return_call` and `ref.func`: their function index is written again,
   * shifted when an import was added, and always in its shortest LEB128 form. Compilers pad
   * these to 5 bytes (for relocations), and V8 decides what to inline by a function's size in
   * bytes: a padded fib with its checks was not inlined any more (2.2x instead of 1.2x).
   */
  calls: number[];
  /** Whether the body calls any function (it may then take part in a recursion). */
  hasCall: boolean;
  /** Bulk memory and table operations (time grows with their size) in each segment. */
  heavy: number[];
  /**
   * Positions of the instructions before which the counter local goes back to the global:
   * calls, tail calls, `return`, `unreachable`, branches out of the function and its final
   * `end` (where control leaves the function, or may never come back).
   */
  flush: number[];
  /** Positions right after each call: the callee used fuel, so the local is read again. */
  reload: number[];
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
  s.pos.length =
    s.cost.length =
    s.check.length =
    s.calls.length =
      0;
  s.hasCall = false;
  s.heavy.length = s.flush.length = s.reload.length = 0;
  let heavy = 0;
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
        if (op === 0x10 || op === 0xd2) s.calls.push(at);
        p = b[p]! < 0x80 ? p + 1 : _skipLeb(b, p);
        if (op === 0x10) {
          s.hasCall = true;
          s.flush.push(at);
          s.reload.push(p);
        }
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
          s.flush.push(at);
          if (cost > 0 || check) {
            s.pos.push(segPos);
            s.cost.push(cost);
            s.check.push(check);
            s.heavy.push(heavy);
          }
          return;
        }
        next = true;
        break;
      case 9: // BR
      case 10: { // BR_IF
        cost += live;
        if (op === 0x0c) live = 0;
        else next = true;
        const [label, q] = _readLeb(b, p);
        p = q;
        if (label === depth - 1) s.flush.push(at); // out of the function
        break;
      }
      case 15: // TAIL
        cost += live;
        live = 0;
        s.hasCall = true;
        s.flush.push(at);
        s.calls.push(at);
        p = b[p]! < 0x80 ? p + 1 : _skipLeb(b, p);
        break;
      case 11: { // BR_TABLE
        cost += live;
        live = 0;
        const [n, q] = _readLeb(b, p);
        p = q;
        let out = false;
        for (let i = 0; i <= n; i++) {
          const [label, r] = _readLeb(b, p);
          p = r;
          if (label === depth - 1) out = true;
        }
        if (out) s.flush.push(at);
        break;
      }
      case 12: // JUMP (unreachable, return)
        cost += live;
        live = 0;
        s.flush.push(at);
        break;
      case 13: // NOP
        break;
      case 14: // LEB2 (call_indirect)
        cost += live;
        s.hasCall = true;
        s.flush.push(at);
        p = _skipLeb(b, _skipLeb(b, p));
        s.reload.push(p);
        break;
      case 16: // TAIL2
        cost += live;
        s.hasCall = true;
        s.flush.push(at);
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
      case 21: { // PREFIX
        cost += live;
        // memory.init, memory.copy, memory.fill, table.init, table.copy, table.fill
        const sub = b[at + 1];
        if (
          op === 0xfc &&
          (sub === 8 || sub === 10 || sub === 11 || sub === 12 || sub === 14 || sub === 17)
        ) {
          heavy += live;
        }
        p = _skipPrefixed(b, at);
        break;
      }
      default:
        throw _unsupported(`0x${_hex(op)}`, at);
    }
    if (next) {
      if (cost > 0 || check) {
        s.pos.push(segPos);
        s.cost.push(cost);
        s.check.push(check);
        s.heavy.push(heavy);
      }
      segPos = p;
      cost = 0;
      heavy = 0;
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
  /**
   * After the counter at a check point: `i64.const 0; i64.lt_s; if`, or with interrupts
   * `global.get stop; i64.lt_s; if`; then the counter is flushed to the global
   * (`local.get t; global.set fuel`) and {@linkcode _Snippets.checkTail} follows.
   */
  checkHead: Uint8Array;
  /** `i32.const 1; global.set flag; unreachable; end`, or with interrupts `call slow; end`. */
  checkTail: Uint8Array;
  /** Charge only check points, one unit each (interrupts without metering). */
  checksOnly: boolean;
  /** Offset of the `if` in `checkHead` (hinted unlikely). */
  ifAt: number;
  /**
   * With interrupts: `global.get stop; i64.const` (the amount follows), and how far one bulk
   * operation moves the next interrupt closer.
   */
  bumpHead: Uint8Array | null;
  heavyUnits: number;
  /** Index of the `stop` global, or -1 without interrupts. */
  stop: number;
}

function _snippets(fuel: number, flag: number, interrupt: _Interrupt | null): _Snippets {
  const head = new _Writer();
  head.byte(0x23);
  head.u32(fuel);
  head.byte(0x42);
  const set = new _Writer();
  set.byte(0x24);
  set.u32(fuel);
  const check = new _Writer();
  const tail = new _Writer();
  const bump = new _Writer();
  if (interrupt !== null) {
    bump.byte(0x23);
    bump.u32(interrupt.stop);
    bump.byte(0x42);
  }
  let ifAt: number;
  if (interrupt === null) {
    ifAt = 3;
    check.bytes(new Uint8Array([0x42, 0x00, 0x53, 0x04, 0x40]));
    tail.bytes(new Uint8Array([0x41, 0x01, 0x24]));
    tail.u32(flag);
    tail.bytes(new Uint8Array([0x00, 0x0b]));
  } else {
    check.byte(0x23);
    check.u32(interrupt.stop);
    check.byte(0x53);
    ifAt = check.len;
    check.bytes(new Uint8Array([0x04, 0x40]));
    tail.byte(0x10);
    tail.u32(interrupt.slowFunc);
    tail.byte(0x0b);
  }
  return {
    chargeHead: head.done(),
    setFuel: set.done(),
    checkHead: check.done(),
    checkTail: tail.done(),
    checksOnly: interrupt !== null && !interrupt.meter,
    ifAt,
    bumpHead: interrupt === null ? null : bump.done(),
    heavyUnits: interrupt === null ? 0 : _interval(interrupt.meter) >> 4,
    stop: interrupt === null ? -1 : interrupt.stop,
  };
}

/**
 * Rewrite one function body, `b[start, end)` with its locals, into `w`. The function has
 * `params` parameters; it gets one more `i64` local, `t`, that holds the counter while the
 * function runs: read from the global at the entry and after each call, charged and checked in
 * the local (a register, where the global is a memory round trip: ~2.4x on tiny recursive
 * functions before), and written back before every call, tail call, `return`, `unreachable`,
 * branch out of the function, slow path of a check and the final `end`. Function indexes from
 * `shiftFrom` on grow by one (an import was added).
 */
function _rewriteBody(
  b: Uint8Array,
  start: number,
  end: number,
  params: number,
  snippets: _Snippets,
  segments: _Segments,
  w: _Writer,
  shiftFrom: number,
  hints: number[],
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
  const { pos, cost, check, calls, flush, reload, heavy } = segments;
  const { checksOnly } = snippets;
  const t = locals;
  /** Whether segment `i` is charged and whether it is checked. */
  const charged = (i: number) => !checksOnly && cost[i]! > 0;
  // Interrupt checks only: a function that calls nothing needs no entry check (its loops have
  // their own); any endless run passes a loop header or the entry of a function that calls.
  const checked = (i: number) => check[i]! && !(checksOnly && i === 0 && !segments.hasCall);
  // The counter lives in local t from the entry on, and goes back to the global where control
  // may leave the function (see `flush`); a function that neither charges nor checks has none.
  let counted = false;
  for (let i = 0; i < pos.length && !counted; i++) counted = charged(i) || checked(i);
  let copied = p;
  let iSeg = 0, iCall = 0, iFlush = 0, iReload = 0;
  for (;;) {
    const nSeg = iSeg < pos.length ? pos[iSeg]! : Infinity;
    const nCall = iCall < calls.length ? calls[iCall]! : Infinity;
    const nFlush = counted && iFlush < flush.length ? flush[iFlush]! : Infinity;
    const nReload = counted && iReload < reload.length ? reload[iReload]! : Infinity;
    const at = Math.min(nSeg, nCall, nFlush, nReload);
    if (at === Infinity) break;
    w.range(b, copied, at);
    copied = at;
    // At one position: read the counter again (after a call), charge the segment starting
    // there, flush (before the instruction), then the instruction itself (a shifted call).
    if (nReload === at) {
      // global.get fuel; local.set t
      w.bytes(snippets.chargeHead.subarray(0, snippets.chargeHead.length - 1));
      w.byte(0x21);
      w.u32(t);
      iReload++;
    } else if (nSeg === at) {
      const i = iSeg++;
      const c = checksOnly ? 1 : cost[i]!;
      if (counted && (checked(i) || charged(i) || i === 0)) {
        // Entry: global.get fuel; others: local.get t. Then i64.const c; i64.sub when charged.
        if (i === 0) w.bytes(snippets.chargeHead.subarray(0, snippets.chargeHead.length - 1));
        else {
          w.byte(0x20);
          w.u32(t);
        }
        if (checked(i) || charged(i)) {
          w.byte(0x42);
          w.s64(c);
          w.byte(0x7d);
        }
        if (checked(i)) {
          // local.tee t; the check, flushing the counter before its slow path
          w.byte(0x22);
          w.u32(t);
          hints.push(w.len + snippets.ifAt);
          w.bytes(snippets.checkHead);
          w.byte(0x20);
          w.u32(t);
          w.bytes(snippets.setFuel);
          w.bytes(snippets.checkTail);
        } else {
          w.byte(0x21);
          w.u32(t);
        }
      }
      if (heavy[i]! > 0 && snippets.bumpHead !== null) {
        // A bulk operation can take milliseconds: bring the next interrupt closer, by 1/16 of
        // the interval each, so the deadline is checked at most 16 of them later. Fuel is
        // untouched. global.get stop; i64.const units; i64.add; global.set stop
        w.bytes(snippets.bumpHead);
        w.s64(heavy[i]! * snippets.heavyUnits);
        w.byte(0x7c);
        w.byte(0x24);
        w.u32(snippets.stop);
      }
    } else if (nFlush === at) {
      // local.get t; global.set fuel
      w.byte(0x20);
      w.u32(t);
      w.bytes(snippets.setFuel);
      iFlush++;
    } else {
      // A call, return_call or ref.func whose function index shifts.
      w.range(b, copied, at + 1);
      const [index, next] = _readLeb(b, at + 1);
      w.u32(index >= shiftFrom ? index + 1 : index);
      copied = next;
      iCall++;
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

const _TYPE = 1;
const _IMPORT = 2;
const _FUNCTION = 3;
const _GLOBAL = 6;
const _EXPORT = 7;
const _START = 8;
const _ELEMENT = 9;
const _CODE = 10;

/** The import that serves as the interrupt hook. */
const _YIELD_MODULE = "wasi_snapshot_preview1";
const _YIELD_NAME = "sched_yield";

/**
 * Fuel units between two interrupt calls of a metered module (about a few milliseconds of
 * code), and check points between two calls of a module instrumented with `meter: false`.
 */
const _INTERRUPT_FUEL = 1 << 22;
const _INTERRUPT_CHECKS = 1 << 16;

function _interval(meter: boolean): number {
  return meter ? _INTERRUPT_FUEL : _INTERRUPT_CHECKS;
}

/**
 * Version of the interrupt rewriting, in the cache keys of modules instrumented with interrupts
 * (which FUEL_VERSION alone does not cover: it changes no fuel count). 2: branch hints; 3: bulk
 * operations bring the next interrupt closer.
 */
const _INTERRUPT_VERSION = 3;

/** Where the interrupt machinery sits in the instrumented module. */
interface _Interrupt {
  meter: boolean;
  /** Index of the `stop` global: the fuel level of the next interrupt. */
  stop: number;
  /** Index of the added function that checks exhaustion and calls the hook. */
  slowFunc: number;
  /** Function index of the `sched_yield` import. */
  yieldFunc: number;
  /** Type indexes of () -> i32 and () -> (). */
  yieldType: number;
  voidType: number;
}

/** Options of {@linkcode instrumentFuel}. */
export interface InstrumentFuelOptions {
  /**
   * Meter fuel. With `false`, only the check points remain (function entries and loop headers,
   * one unit each, no limit): a module that can be interrupted, at a lower cost than metering;
   * `interrupts` is then implied, no start function is moved and {@linkcode startFuel} is not
   * needed. @default {true}
   */
  meter?: boolean;
  /**
   * Make the module call its host regularly, so a host running it on its own thread can stop it
   * at a deadline: every few million fuel units (every 65536 check points with `meter: false`),
   * at a check point, the module calls its import `wasi_snapshot_preview1.sched_yield` (added
   * when the module does not import it; function indexes then shift by one and a `name` section
   * is dropped). A host's `sched_yield` that throws stops the module there. Fuel used is the
   * same with or without interrupts. @default {false}, `true` when `meter` is `false`
   */
  interrupts?: boolean;
}

/**
 * Add fuel metering to a WebAssembly module. Pure and deterministic: the same bytes in give the
 * same bytes out.
 *
 * The result exports a mutable `i64` global {@linkcode FUEL_GLOBAL_EXPORT} (initially 0: set it
 * with {@linkcode startFuel}), a mutable `i32` global {@linkcode FUEL_EXHAUSTED_EXPORT} that
 * becomes 1 just before the module traps (`unreachable`) for lack of fuel, and, if the module had
 * a start section, its start function as {@linkcode FUEL_START_EXPORT} instead (so that it runs
 * metered, after the fuel is set). Without `interrupts`, no imports are added and no index
 * changes.
 *
 * Supported: MVP, sign extension, saturating conversions, bulk memory, reference types,
 * multi-value, tail calls, SIMD (with relaxed SIMD), threads, multi-memory and memory64
 * immediates. Exception handling and GC are refused.
 *
 * @param module The module's bytes (not modified).
 * @param options Metering and interrupts; see {@linkcode InstrumentFuelOptions}.
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
 *
 * // Interrupts only: the host's sched_yield stops the endless loop.
 * let calls = 0;
 * const hook = () => {
 *   if (++calls === 3) throw new Error("deadline");
 *   return 0;
 * };
 * const checked = await WebAssembly.instantiate(instrumentFuel(spin, { meter: false }), {
 *   wasi_snapshot_preview1: { sched_yield: hook },
 * });
 * assert.throws(() => (checked.instance.exports.spin as () => void)(), /deadline/);
 * ```
 */
export function instrumentFuel(
  module: Uint8Array,
  options: InstrumentFuelOptions = {},
): Uint8Array<ArrayBuffer> {
  if (!(module instanceof Uint8Array)) {
    throw new TypeError("Cannot instrument module: expected a Uint8Array");
  }
  const { meter = true, interrupts = !meter } = options;
  if (!meter && !interrupts) {
    throw new TypeError("Cannot instrument module: neither metering nor interrupts asked for");
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
  let types: _Types = { params: [], yieldType: undefined, voidType: undefined };
  let imports: _Imports = { globals: 0, funcs: 0, yieldFunc: undefined };
  let funcTypes: number[] = [];
  const exportNames = new Set<string>();
  for (const s of sections) {
    const sr = new WasmReader(bytes, _ERROR_PREFIX, s.start, s.end);
    if (s.id === _TYPE) types = _readTypes(sr);
    else if (s.id === _FUNCTION) funcTypes = _readFuncTypes(sr);
    else if (s.id === _IMPORT) {
      imports = _readImports(sr);
      globals += imports.globals;
    } else if (s.id === _GLOBAL) globals += sr.u32();
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

  // The interrupt machinery: types () -> i32 and () -> (), the sched_yield import, a `stop`
  // global and a `slow` function (the last one).
  const newTypes: number[][] = [];
  let interrupt: _Interrupt | null = null;
  let shiftFrom = Infinity;
  let addImport = false;
  if (interrupts) {
    const typeOf = (found: number | undefined, shape: number[]) => {
      if (found !== undefined) return found;
      newTypes.push(shape);
      return types.params.length + newTypes.length - 1;
    };
    const yieldType = typeOf(types.yieldType, [0x60, 0x00, 0x01, 0x7f]);
    const voidType = typeOf(types.voidType, [0x60, 0x00, 0x00]);
    let yieldFunc = imports.yieldFunc?.index;
    if (imports.yieldFunc !== undefined && imports.yieldFunc.type !== types.yieldType) {
      throw new SyntaxError(
        `Cannot instrument module: its import ${_YIELD_MODULE}.${_YIELD_NAME} is not () -> i32`,
      );
    }
    if (yieldFunc === undefined) {
      addImport = true;
      yieldFunc = imports.funcs;
      shiftFrom = imports.funcs;
    }
    const shift = addImport ? 1 : 0;
    if (startFunc !== undefined && startFunc >= shiftFrom) startFunc += 1;
    interrupt = {
      meter,
      stop: globals + 2,
      slowFunc: imports.funcs + shift + funcTypes.length,
      yieldFunc,
      yieldType,
      voidType,
    };
  }
  const shifted = (index: number) => (index >= shiftFrom ? index + 1 : index);

  const out = new _Writer(bytes.length + (bytes.length >> 2) + 1024);
  out.bytes(bytes.subarray(0, 8));
  const section = (id: number, body: Uint8Array) => {
    out.byte(id);
    out.u32(body.length);
    out.bytes(body);
  };
  const written = new Set<number>();
  // Sections that gain entries; an absent one is made at its place in the order.
  const grows = interrupt === null
    ? [_GLOBAL, _EXPORT]
    : [_TYPE, ...(addImport ? [_IMPORT] : []), _FUNCTION, _GLOBAL, _EXPORT, _CODE];
  const startExported = meter && startFunc !== undefined;
  const emit = (id: number, sr: WasmReader | null) => {
    written.add(id);
    if (id === _CODE) {
      const params = funcTypes.map((t) => {
        const n = types.params[t];
        if (n === undefined) throw _malformed(sr?.pos ?? 0, `unknown type index ${t}`);
        return n;
      });
      const firstFunc = imports.funcs + (addImport ? 1 : 0);
      const code = _rewriteCode(sr, params, fuel, flag, interrupt, shiftFrom, firstFunc);
      // The checks' slow paths (the interrupt call, the fuel trap) are marked unlikely, so
      // engines keep them off the hot path: a call the optimizer must plan for in every loop
      // costs ~20% on tight code (measured). A module without interrupts gets the section too.
      if (code.hints !== null) section(0, code.hints);
      return section(_CODE, code.bytes);
    }
    const w = new _Writer();
    const count = sr === null ? 0 : sr.u32();
    const rest = sr === null ? new Uint8Array() : bytes.subarray(sr.pos, sr.end);
    if (id === _TYPE) {
      w.u32(count + newTypes.length);
      w.bytes(rest);
      for (const t of newTypes) w.bytes(new Uint8Array(t));
    } else if (id === _IMPORT) {
      w.u32(count + 1);
      w.bytes(rest);
      w.name(_YIELD_MODULE);
      w.name(_YIELD_NAME);
      w.byte(0x00);
      w.u32(interrupt!.yieldType);
    } else if (id === _FUNCTION) {
      w.u32(count + 1);
      w.bytes(rest);
      w.u32(interrupt!.voidType);
    } else if (id === _GLOBAL) {
      w.u32(count + (interrupt === null ? 2 : 3));
      if (sr !== null && addImport) {
        for (let i = 0; i < count; i++) {
          const t = sr.byte();
          if (!_VALTYPES.has(t)) throw _malformed(sr.pos - 1, `unsupported global type ${t}`);
          w.byte(t);
          w.byte(sr.byte());
          _constExpr(sr, w, shifted);
        }
      } else w.bytes(rest);
      const initial = interrupt !== null && !meter ? 2n ** 62n : 0n;
      w.bytes(new Uint8Array([0x7e, 0x01, 0x42])); // (mut i64) (i64.const initial)
      _s64(w, initial);
      w.byte(0x0b);
      w.bytes(new Uint8Array([0x7f, 0x01, 0x41, 0x00, 0x0b])); // (mut i32) (i32.const 0)
      if (interrupt !== null) {
        w.bytes(new Uint8Array([0x7e, 0x01, 0x42])); // stop: (mut i64) above any fuel
        _s64(w, 2n ** 62n + 1n);
        w.byte(0x0b);
      }
    } else if (id === _EXPORT) {
      w.u32(count + (startExported ? 3 : 2));
      if (sr !== null && addImport) {
        for (let i = 0; i < count; i++) {
          const len = sr.u32();
          w.u32(len);
          w.range(bytes, sr.pos, sr.pos + len);
          sr.skip(len);
          const kind = sr.byte();
          w.byte(kind);
          const index = sr.u32();
          w.u32(kind === 0x00 ? shifted(index) : index);
        }
      } else w.bytes(rest);
      w.name(FUEL_GLOBAL_EXPORT);
      w.byte(0x03);
      w.u32(fuel);
      w.name(FUEL_EXHAUSTED_EXPORT);
      w.byte(0x03);
      w.u32(flag);
      if (startExported) {
        w.name(FUEL_START_EXPORT);
        w.byte(0x00);
        w.u32(startFunc!);
      }
    }
    section(id, w.done());
  };
  for (const s of sections) {
    const rank = SECTION_ORDER[s.id];
    if (rank !== undefined) {
      for (const id of grows) {
        if (!written.has(id) && rank > SECTION_ORDER[id]!) emit(id, null);
      }
    }
    const sr = new WasmReader(bytes, _ERROR_PREFIX, s.start, s.end);
    if (grows.includes(s.id) || s.id === _CODE) {
      emit(s.id, sr);
    } else if (s.id === _START) {
      // Metered: dropped, exported as FUEL_START_EXPORT and called by startFuel() once the
      // fuel is set. Interrupts only: kept, with its index shifted.
      if (!startExported) {
        const w = new _Writer();
        w.u32(startFunc!);
        section(_START, w.done());
      }
    } else if (s.id === _ELEMENT && addImport) {
      section(_ELEMENT, _rewriteElements(sr, shifted));
    } else if (s.id === 0 && addImport && _customName(sr) === "name") {
      // Dropped: its function names would be off by one.
    } else {
      out.byte(s.id);
      out.u32(s.end - s.start);
      out.bytes(bytes.subarray(s.start, s.end));
    }
  }
  for (const id of grows) if (!written.has(id)) emit(id, null);
  const result = out.done();
  if (!WebAssembly.validate(result)) {
    if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
      throw new SyntaxError("Cannot instrument module: it is not valid WebAssembly");
    }
    throw new Error("Cannot instrument module: the instrumented module does not validate (a bug)");
  }
  return result;
}

function _rewriteCode(
  r: WasmReader | null,
  params: number[],
  fuel: number,
  flag: number,
  interrupt: _Interrupt | null,
  shiftFrom: number,
  firstFunc: number,
): { bytes: Uint8Array; hints: Uint8Array | null } {
  const size = r === null ? 0 : r.end - r.pos;
  const w = new _Writer(size + (size >> 2) + 1024);
  const count = r === null ? 0 : r.u32();
  if (count !== params.length) {
    throw _malformed(r?.pos ?? 0, "function and code section counts differ");
  }
  w.u32(count + (interrupt === null ? 0 : 1));
  const body = new _Writer();
  const snippets = _snippets(fuel, flag, interrupt);
  const segments: _Segments = {
    pos: [],
    cost: [],
    check: [],
    calls: [],
    hasCall: false,
    heavy: [],
    flush: [],
    reload: [],
  };
  // The `metadata.code.branch_hint` custom section: per function, the body offset of each
  // interrupt `if`, hinted unlikely.
  const hints = new _Writer();
  let hinted = 0;
  const offsets: number[] = [];
  for (let i = 0; r !== null && i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    body.len = 0;
    offsets.length = 0;
    _rewriteBody(
      r.bytes,
      start,
      start + size,
      params[i]!,
      snippets,
      segments,
      body,
      shiftFrom,
      offsets,
    );
    w.u32(body.len);
    w.range(body.buf, 0, body.len);
    if (offsets.length > 0) {
      hinted++;
      hints.u32(firstFunc + i);
      hints.u32(offsets.length);
      for (const at of offsets) {
        hints.u32(at);
        hints.byte(0x01);
        hints.byte(0x00); // unlikely
      }
    }
  }
  if (r !== null && r.pos !== r.end) throw _malformed(r.pos, "trailing bytes in the code section");
  if (interrupt !== null) {
    // (func $slow (local $n i64)
    //   (if (i64.lt_s (global.get $fuel) (i64.const 0))
    //     (then (global.set $flag (i32.const 1)) unreachable))
    //   (global.set $stop (select (local.tee $n (i64.sub (global.get $fuel) (i64.const K)))
    //     (i64.const 0) (i64.gt_s (local.get $n) (i64.const 0))))
    //   (drop (call $sched_yield)))
    body.len = 0;
    body.bytes(new Uint8Array([0x01, 0x01, 0x7e, 0x23]));
    body.u32(fuel);
    body.bytes(new Uint8Array([0x42, 0x00, 0x53, 0x04, 0x40, 0x41, 0x01, 0x24]));
    body.u32(flag);
    body.bytes(new Uint8Array([0x00, 0x0b, 0x23]));
    body.u32(fuel);
    body.byte(0x42);
    body.s64(_interval(interrupt.meter));
    body.bytes(new Uint8Array([0x7d, 0x22, 0x00, 0x42, 0x00, 0x20, 0x00, 0x42, 0x00, 0x55, 0x1b]));
    body.byte(0x24);
    body.u32(interrupt.stop);
    body.byte(0x10);
    body.u32(interrupt.yieldFunc);
    body.bytes(new Uint8Array([0x1a, 0x0b]));
    w.u32(body.len);
    w.range(body.buf, 0, body.len);
  }
  if (hinted === 0) return { bytes: w.done(), hints: null };
  const section = new _Writer();
  section.name("metadata.code.branch_hint");
  section.u32(hinted);
  section.bytes(hints.done());
  return { bytes: w.done(), hints: section.done() };
}

/** The type section: parameter counts, and the first () -> i32 and () -> () types. */
interface _Types {
  params: number[];
  yieldType: number | undefined;
  voidType: number | undefined;
}

function _readTypes(r: WasmReader): _Types {
  const n = r.u32();
  const out: _Types = { params: [], yieldType: undefined, voidType: undefined };
  for (let i = 0; i < n; i++) {
    const form = r.byte();
    if (form !== 0x60) throw _malformed(r.pos - 1, `unsupported type form 0x${_hex(form)}`);
    const params = r.u32();
    r.skip(params);
    const results = r.u32();
    const first = r.bytes[r.pos];
    r.skip(results);
    if (params === 0 && results === 1 && first === 0x7f) out.yieldType ??= i;
    if (params === 0 && results === 0) out.voidType ??= i;
    out.params.push(params);
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

/** What the import section declares: globals, functions, and the `sched_yield` import. */
interface _Imports {
  globals: number;
  funcs: number;
  yieldFunc: { index: number; type: number } | undefined;
}

function _readImports(r: WasmReader): _Imports {
  const n = r.u32();
  const out: _Imports = { globals: 0, funcs: 0, yieldFunc: undefined };
  const decoder = new TextDecoder();
  const text = () => {
    const len = r.u32();
    const start = r.pos;
    r.skip(len);
    return decoder.decode(r.bytes.subarray(start, start + len));
  };
  for (let i = 0; i < n; i++) {
    const module = text();
    const name = text();
    const kind = r.byte();
    if (kind === 0x00) {
      const type = r.u32();
      if (module === _YIELD_MODULE && name === _YIELD_NAME) {
        out.yieldFunc ??= { index: out.funcs, type };
      }
      out.funcs++;
    } else if (kind === 0x01) {
      r.byte();
      _skipLimits(r);
    } else if (kind === 0x02) _skipLimits(r);
    else if (kind === 0x03) {
      r.byte();
      r.byte();
      out.globals++;
    } else if (kind === 0x04) {
      r.byte();
      r.u32();
    } else throw _malformed(r.pos - 1, `unknown import kind ${kind}`);
  }
  return out;
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

/** The name of a custom section. */
function _customName(r: WasmReader): string {
  const len = r.u32();
  const start = r.pos;
  r.skip(len);
  return new TextDecoder().decode(r.bytes.subarray(start, start + len));
}

/** Signed LEB128 of a 64-bit value. */
function _s64(w: _Writer, value: bigint): void {
  let v = BigInt.asIntN(64, value);
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
      w.byte(b);
      return;
    }
    w.byte(b | 0x80);
  }
}

/** Copy one constant expression, shifting the index of each `ref.func`. */
function _constExpr(r: WasmReader, w: _Writer, shifted: (index: number) => number): void {
  for (;;) {
    const at = r.pos;
    const op = r.byte();
    w.byte(op);
    if (op === 0x0b) return;
    const from = r.pos;
    if (op === 0xd2) {
      w.u32(shifted(r.u32()));
      continue;
    }
    if (op === 0x41) r.skipLeb(5);
    else if (op === 0x42) r.skipLeb(10);
    else if (op === 0x43) r.skip(4);
    else if (op === 0x44) r.skip(8);
    else if (op === 0x23) r.u32();
    else if (op === 0xd0) r.byte();
    else if (op === 0xfd && r.u32() === 12) r.skip(16);
    else if (!(op >= 0x6a && op <= 0x6c) && !(op >= 0x7c && op <= 0x7e)) {
      throw _unsupported(`0x${_hex(op)} in a constant expression`, at);
    }
    w.range(r.bytes, from, r.pos);
  }
}

/** The element section with every function index shifted. */
function _rewriteElements(r: WasmReader, shifted: (index: number) => number): Uint8Array {
  const w = new _Writer(r.end - r.pos + 64);
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const flags = r.u32();
    if (flags > 7) throw _malformed(at, `unknown element segment flags ${flags}`);
    w.u32(flags);
    const active = (flags & 1) === 0;
    if (active && flags & 2) w.u32(r.u32()); // table index
    if (active) _constExpr(r, w, shifted);
    const exprs = (flags & 4) !== 0;
    if (flags & 3) w.byte(r.byte()); // element kind or reference type
    const count = r.u32();
    w.u32(count);
    for (let j = 0; j < count; j++) {
      if (exprs) _constExpr(r, w, shifted);
      else w.u32(shifted(r.u32()));
    }
  }
  if (r.pos !== r.end) throw _malformed(r.pos, "trailing bytes in the element section");
  return w.done();
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
   * `fuel-v<version>-<sha256 of the input>.wasm` (`fuel-interrupts-v<version>.<interrupt
   * version>-...` with interrupts, `checks-v<version>.<interrupt version>-...` with
   * `meter: false`; `<kind>-gate<gate version>-v...` for modules instrumented with a `gate`).
   * Without it the cache is in memory only.
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
   * @param options `meter` and `interrupts` as {@linkcode instrumentFuel} takes them (each
   *   combination is cached on its own), an abort signal, and a `gate`: a check run on the
   *   module before it is instrumented (`check` throws for a module that must not run). Its
   *   entries are kept apart, under the gate's `version`, and made only for modules `check`
   *   passed: an entry found is that check's verdict, so a hit does not run it again. `version`
   *   must change whenever what `check` refuses changes.
   *
   * @throws {SyntaxError} As {@linkcode instrumentFuel}.
   * @throws What `gate.check` throws, for a module not yet in the cache.
   */
  async instrument(
    module: Uint8Array,
    options: InstrumentFuelOptions & {
      signal?: AbortSignal;
      gate?: { check: (module: Uint8Array) => void; version: string };
    } = {},
  ): Promise<Uint8Array<ArrayBuffer>> {
    const { signal, gate, meter = true, interrupts = !meter } = options;
    signal?.throwIfAborted();
    if (!(module instanceof Uint8Array)) {
      throw new TypeError("Cannot instrument module: expected a Uint8Array");
    }
    const digest = await crypto.subtle.digest("SHA-256", module as Uint8Array<ArrayBuffer>);
    const kind = !meter ? "checks" : interrupts ? "fuel-interrupts" : "fuel";
    const version = interrupts ? `${FUEL_VERSION}.${_INTERRUPT_VERSION}` : `${FUEL_VERSION}`;
    if (gate && !/^[\w.]{1,32}$/.test(gate.version)) {
      throw new TypeError(`Cannot use gate version '${gate.version}': not 1-32 word characters`);
    }
    const gated = gate ? `-gate${gate.version}` : "";
    const key = `${kind}${gated}-v${version}-${new Uint8Array(digest).toHex()}`;
    let entry = this.#memory.get(key);
    if (entry) {
      this.#memory.delete(key);
    } else {
      entry = this.#load(key, module, { meter, interrupts }, signal, gate?.check);
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
    how: InstrumentFuelOptions,
    signal: AbortSignal | undefined,
    check: ((module: Uint8Array) => void) | undefined,
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
    check?.(module);
    const out = instrumentFuel(module, how);
    this.#instrumented++;
    if (dir !== undefined && file !== undefined) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, out, { mode: 0o600, signal });
    }
    return out;
  }
}
