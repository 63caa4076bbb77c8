import assert from "node:assert/strict";
import { limitMemory, MemoryCapError, WASM_PAGE_BYTES } from "./limit_memory.ts";
import { encodeName, encodeU32 } from "./wasm_binary.ts";

const HEADER = [0, 97, 115, 109, 1, 0, 0, 0];
const PAGE = WASM_PAGE_BYTES;

function section(id: number, body: number[]): number[] {
  return [id, ...encodeU32(body.length), ...body];
}

const name = encodeName;

/** (module (memory min max?) (export "memory" (memory 0)) (func (export "grow") ...)) */
function definedMemory(min: number, max?: number): Uint8Array {
  const limits = max === undefined
    ? [0, ...encodeU32(min)]
    : [1, ...encodeU32(min), ...encodeU32(max)];
  return new Uint8Array([
    ...HEADER,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7f]), // type 0: (i32) -> i32
    ...section(3, [1, 0]), // func 0: type 0
    ...section(5, [1, ...limits]),
    ...section(7, [2, ...name("memory"), 2, 0, ...name("grow"), 0, 0]),
    ...section(10, [1, 6, 0, 0x20, 0, 0x40, 0, 0x0b]), // local.get 0; memory.grow 0; end
    ...section(0, [...name("custom"), 1, 2, 3]), // a custom section after, copied unchanged
  ]);
}

function instantiate(bytes: Uint8Array, imports: WebAssembly.Imports = {}) {
  const exports =
    new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), imports)
      .exports;
  return exports as { memory: WebAssembly.Memory; grow: (pages: number) => number };
}

Deno.test("limitMemory() gives a memory without maximum the cap, and the engine enforces it", () => {
  const limited = limitMemory(definedMemory(1), 4 * PAGE);
  assert.deepEqual(limited.memories, [
    { imported: null, initialPages: 1, maximumPages: 4, shared: false },
  ]);
  const { grow, memory } = instantiate(limited.bytes);
  assert.equal(grow(3), 1);
  assert.equal(grow(1), -1, "growing past the cap fails");
  assert.equal(memory.buffer.byteLength, 4 * PAGE);
});

Deno.test("limitMemory() lowers a larger declared maximum and keeps a smaller one", () => {
  assert.equal(limitMemory(definedMemory(2, 65536), 10 * PAGE).memories[0]?.maximumPages, 10);
  assert.equal(limitMemory(definedMemory(2, 3), 10 * PAGE).memories[0]?.maximumPages, 3);
});

Deno.test("limitMemory() rewrites multi-byte LEB128 limits and section sizes", () => {
  // 200 pages needs two LEB bytes; the 4096-page cap as maximum needs two as well.
  const limited = limitMemory(definedMemory(200), 4096 * PAGE);
  assert.ok(WebAssembly.validate(limited.bytes as Uint8Array<ArrayBuffer>));
  const { grow } = instantiate(limited.bytes);
  assert.equal(grow(4096 - 200), 200);
  assert.equal(grow(1), -1);
  // The trailing custom section was copied unchanged.
  assert.deepEqual([...limited.bytes.slice(-3)], [1, 2, 3]);
});

Deno.test("limitMemory() caps an imported memory and reports its import name", () => {
  const module = new Uint8Array([
    ...HEADER,
    ...section(2, [
      2,
      ...name("wasi_snapshot_preview1"),
      ...name("sched_yield"),
      0,
      0,
      ...name("env"),
      ...name("memory"),
      2,
      0,
      ...encodeU32(1),
    ]),
  ]);
  const withType = new Uint8Array([
    ...HEADER,
    ...section(1, [1, 0x60, 0, 1, 0x7f]),
    ...module.slice(8),
  ]);
  const limited = limitMemory(withType, 2 * PAGE);
  assert.deepEqual(limited.memories, [
    {
      imported: { module: "env", name: "memory" },
      initialPages: 1,
      maximumPages: 2,
      shared: false,
    },
  ]);
  assert.ok(WebAssembly.validate(limited.bytes as Uint8Array<ArrayBuffer>));
  const tooBig = new WebAssembly.Memory({ initial: 1, maximum: 3 });
  assert.throws(
    () =>
      new WebAssembly.Instance(new WebAssembly.Module(limited.bytes as Uint8Array<ArrayBuffer>), {
        wasi_snapshot_preview1: { sched_yield: () => 0 },
        env: { memory: tooBig },
      }),
    WebAssembly.LinkError,
    "the rewritten import demands a maximum within the cap",
  );
});

Deno.test("limitMemory() returns a module without memory unchanged", () => {
  const module = new Uint8Array([...HEADER, ...section(1, [1, 0x60, 0, 0])]);
  const limited = limitMemory(module, PAGE);
  assert.equal(limited.bytes, module);
  assert.deepEqual(limited.memories, []);
});

Deno.test("limitMemory() throws MemoryCapError when the initial memory exceeds the cap", () => {
  assert.throws(
    () => limitMemory(definedMemory(5), 4 * PAGE),
    (e: unknown) =>
      e instanceof MemoryCapError &&
      e.message ===
        "Cannot run module: its initial memory of 327680 bytes exceeds the 262144 byte memory cap",
  );
});

Deno.test("limitMemory() throws SyntaxError for non-WASM and truncated bytes", () => {
  assert.throws(() => limitMemory(new TextEncoder().encode("hello world"), PAGE), /bad magic/);
  assert.throws(() => limitMemory(new Uint8Array(HEADER.slice(0, 6)), PAGE), SyntaxError);
  const full = definedMemory(1);
  assert.throws(() => limitMemory(full.slice(0, full.length - 2), PAGE), /truncated binary/);
  const version2 = new Uint8Array([0, 97, 115, 109, 2, 0, 0, 0]);
  assert.throws(() => limitMemory(version2, PAGE), /unsupported WebAssembly binary version/);
  const memory64 = new Uint8Array([...HEADER, ...section(5, [1, 4, 1])]);
  assert.throws(() => limitMemory(memory64, PAGE), /64-bit memories are not supported/);
  const overlong = new Uint8Array([...HEADER, 5, 0x80, 0x80, 0x80, 0x80, 0x80, 0]);
  assert.throws(() => limitMemory(overlong, PAGE), SyntaxError);
});

Deno.test("limitMemory() throws RangeError for a cap under one page or over 4 GiB", () => {
  assert.throws(() => limitMemory(definedMemory(1), 100), RangeError);
  assert.throws(() => limitMemory(definedMemory(1), 2 ** 32 + PAGE), RangeError);
});
