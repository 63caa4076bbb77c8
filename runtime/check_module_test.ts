import assert from "node:assert/strict";
import { checkModule } from "./check_module.ts";
import { UnsupportedModuleError } from "./errors.ts";
import { instrumentFuel } from "./fuel.ts";
import { gcBomb, multiMemory, wat } from "./testdata/hostile_modules.ts";

const here = (path: string) => new URL(path, import.meta.url);

function assertRefused(bytes: Uint8Array, pattern: RegExp): void {
  assert.ok(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>), "V8 itself would accept it");
  assert.throws(() => checkModule(bytes), (e: unknown) => {
    assert.ok(e instanceof UnsupportedModuleError, String(e));
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
}

const start = `(func (export "_start"))`;

Deno.test("checkModule() accepts the examples, the fixtures and their fuel-instrumented forms", async () => {
  const files = [
    "../examples/hello.wasm",
    "../examples/sha256.wasm",
    "testdata/wasi_probe.wasm",
    "testdata/memory_bomb.wasm",
    "testdata/huge_output.wasm",
    "testdata/grow.wasm",
    "testdata/fuel/simd.wasm",
    "testdata/fuel/words.wasm",
  ];
  for (const file of files) {
    const bytes = await Deno.readFile(here(file));
    checkModule(bytes);
    checkModule(instrumentFuel(bytes));
  }
});

Deno.test("checkModule() accepts every allowed feature", async () => {
  checkModule(
    await wat(`(module
    (type $pair (func (param i32) (result i32 i32)))
    (memory 1 2)
    (table $t 4 8 funcref)
    (global $g (mut i32) (i32.const 5))
    (global (export "g64") (mut i64) (i64.const 5))
    (data $d "\\01\\02")
    (elem $e func $f)
    (func $f (param i32) (result i32) (local.get 0))
    (func (export "_start") (local $v v128) (local $r funcref)
      (memory.init $d (i32.const 0) (i32.const 0) (i32.const 2))
      (data.drop $d)
      (memory.copy (i32.const 32) (i32.const 0) (i32.const 2))
      (memory.fill (i32.const 64) (i32.const 9) (i32.const 8))
      (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1))
      (elem.drop $e)
      (table.copy (i32.const 2) (i32.const 0) (i32.const 1))
      (drop (table.grow $t (ref.null func) (i32.const 1)))
      (table.fill $t (i32.const 4) (ref.func $f) (i32.const 1))
      (local.set $r (table.get $t (i32.const 4)))
      (table.set $t (i32.const 3) (local.get $r))
      (drop (ref.is_null (local.get $r)))
      (drop (call_indirect (type 1) (i32.const 7) (i32.const 3)))
      i32.const 3 block (type $pair) i32.const 4 end drop drop
      (drop (select (result i32) (i32.const 1) (i32.const 0) (i32.const 1)))
      (drop (i32.trunc_sat_f32_s (f32.const 1e20)))
      (drop (i32.extend8_s (i32.const 0xff)))
      (local.set $v (v128.const i32x4 1 2 3 4))
      (local.set $v (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $v) (local.get $v)))
      (local.set $v (v128.load32_lane 1 (i32.const 0) (local.get $v)))
      (v128.store64_lane 0 (i32.const 96) (local.get $v))
      (drop (i32x4.extract_lane 0 (local.get $v)))
      (global.set $g (i32.add (global.get $g) (memory.size)))
      (drop (memory.grow (i32.const 0)))))`),
  );
});

Deno.test("checkModule() refuses a WasmGC module (52 bytes that would exhaust the JS heap)", () => {
  assertRefused(
    gcBomb(),
    /^Cannot run module: it uses GC types \(type form 0x5e\), which jobs may not use \(byte \d+\)$/,
  );
});

Deno.test("checkModule() refuses multiple memories, memory64, shared memory and multiple tables", async () => {
  assertRefused(multiMemory(32), /multiple memories/);
  assertRefused(await wat(`(module (memory i64 1) ${start})`), /64-bit memories/);
  assertRefused(await wat(`(module (memory 1 1 shared) ${start})`), /threads \(shared memory\)/);
  const tables = Array.from({ length: 8 }, () => "(table 1000 funcref)").join(" ");
  assertRefused(await wat(`(module ${tables} ${start})`), /multiple tables/);
});

Deno.test("checkModule() refuses exceptions, tail calls, atomics, relaxed SIMD and extended constants", async () => {
  assertRefused(
    await wat(`(module (tag $e) (func (export "_start") (throw $e)))`),
    /exception handling \(tag section\)/,
  );
  assertRefused(
    await wat(`(module (func $f) (func (export "_start") (return_call $f)))`),
    /tail calls \(return_call\)/,
  );
  assertRefused(
    await wat(`(module (memory 1) (func (export "_start") (atomic.fence)))`),
    /threads \(atomic instructions\)/,
  );
  assertRefused(
    await wat(`(module (func (export "_start") (drop (f32x4.relaxed_madd
      (v128.const i32x4 0 0 0 0) (v128.const i32x4 0 0 0 0) (v128.const i32x4 0 0 0 0)))))`),
    /relaxed SIMD/,
  );
  assertRefused(
    await wat(`(module (global i32 (i32.add (i32.const 1) (i32.const 2))) ${start})`),
    /extended constant expressions/,
  );
});

Deno.test("checkModule() refuses env imports, unknown imports and non-WASI names", async () => {
  const imp = (module: string, name: string, type = "(func)") =>
    wat(`(module (import "${module}" "${name}" ${type}) ${start})`);
  assertRefused(await imp("env", "abort"), /import 'env\.abort' \(function\) is not allowed/);
  assertRefused(await imp("env", "table", "(table 1 funcref)"), /'env\.table' \(table\)/);
  assertRefused(await imp("env", "g", "(global i32)"), /'env\.g' \(global\)/);
  assertRefused(await imp("wasi_unstable", "fd_write"), /'wasi_unstable\.fd_write'/);
  assertRefused(await imp("constructor", "constructor"), /'constructor\.constructor'/);
  for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
    assertRefused(
      await imp("wasi_snapshot_preview1", name, "(func (param i32) (result i32))"),
      new RegExp(`'wasi_snapshot_preview1\\.${name}' is not a WASI preview1 function`),
    );
  }
  assertRefused(
    await imp("wasi_snapshot_preview1", "fd_write", "(func (param i64) (result i64))"),
    /fd_write' has type \(i64\) -> \(i64\), WASI preview1 defines \(i32, i32, i32, i32\) -> \(i32\)/,
  );
  assertRefused(
    await imp("env", "memory", "(memory 1 1 shared)"),
    /threads \(shared memory\)/,
  );
});

Deno.test("checkModule() quotes hostile import names on one line", async () => {
  const bytes = await wat(`(module (import "env" "a\\0ab\\u{2028}c" (func)) ${start})`);
  assertRefused(bytes, /import 'env\.a\\nb\?c' \(function\)/);
});

Deno.test("checkModule() throws SyntaxError for bytes that are not WebAssembly", () => {
  assert.throws(() => checkModule(new TextEncoder().encode("#!/bin/sh")), SyntaxError);
  assert.throws(() => checkModule(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 9])), {
    name: "SyntaxError",
    message: /truncated binary/,
  });
});
