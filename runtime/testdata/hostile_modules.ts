/**
 * Hostile WebAssembly modules for the engine-bounds tests, built from WAT with the `wabt` npm
 * package (or, where wabt has no text syntax, from bytes). Each one is valid WebAssembly that
 * V8 would compile and run; the tests show what the runtime does with it.
 *
 * @module
 */
import wabtInit from "wabt";

let _wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** Compile WAT text with every wabt feature on. */
export async function wat(text: string): Promise<Uint8Array<ArrayBuffer>> {
  _wabt ??= await wabtInit();
  // multi_memory is missing from wabt's types; validate() needs the features again.
  const features: Record<string, boolean> = {
    multi_value: true,
    bulk_memory: true,
    reference_types: true,
    simd: true,
    threads: true,
    tail_call: true,
    exceptions: true,
    memory64: true,
    multi_memory: true,
    extended_const: true,
    relaxed_simd: true,
  };
  const module = _wabt.parseWat("hostile.wat", text, features);
  try {
    (module.validate as (features: Record<string, boolean>) => void).call(module, features);
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/**
 * A 52-byte WasmGC module whose `_start` allocates 1 MB GC arrays forever: in V8 they live on
 * the JavaScript heap, so without the gate it brings down the host with "Fatal JavaScript out
 * of memory" whatever `--memory` says.
 */
export function gcBomb(): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, body.length, ...body];
  // loop: (drop (array.new_default 0 (i32.const 1000000))) (br 0)
  const body = [0x00, 0x03, 0x40, 0x41, 0xc0, 0x84, 0x3d, 0xfb, 0x07, 0x00, 0x1a, 0x0c, 0x00];
  return new Uint8Array([
    ...HEADER,
    ...section(1, [0x02, 0x5e, 0x78, 0x01, 0x60, 0x00, 0x00]), // (array (mut i8)), () -> ()
    ...section(3, [0x01, 0x01]), // func 0: type 1
    ...section(7, [0x01, 0x06, ...new TextEncoder().encode("_start"), 0x00, 0x00]),
    ...section(10, [0x01, body.length + 2, ...body, 0x0b, 0x0b]),
  ]);
}

/**
 * A module with `count` memories of one page each and an empty `_start` (wabt cannot write
 * multi-memory text): V8 accepts it, and each memory reserves its own address space.
 */
export function multiMemory(count: number): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, body.length, ...body];
  return new Uint8Array([
    ...HEADER,
    ...section(1, [0x01, 0x60, 0x00, 0x00]),
    ...section(3, [0x01, 0x00]),
    ...section(5, [count, ...Array.from({ length: count }, () => [0x00, 0x01]).flat()]),
    ...section(7, [0x01, 0x06, ...new TextEncoder().encode("_start"), 0x00, 0x00]),
    ...section(10, [0x01, 0x02, 0x00, 0x0b]),
  ]);
}

/** WAT of a `_start` that ends with `proc_exit(<expr>)`, with a 1-page exported memory. */
export function exitWith(expr: string, extra = "", pages = 1): Promise<Uint8Array<ArrayBuffer>> {
  return wat(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") ${pages})
    ${extra}
    (func (export "_start") (call $exit ${expr})))`);
}

/**
 * `_start` makes `count` iovecs of one byte each at address 0 and passes them all to one
 * `fd_write` on stdout; exits with the errno. Needs `8 * count` bytes of memory.
 */
export function manyIovecs(count: number): Promise<Uint8Array<ArrayBuffer>> {
  const pages = Math.ceil((count * 8 + 65536) / 65536);
  return exitWith(
    `(call $fd_write (i32.const 1) (i32.const 0) (i32.const ${count}) (i32.const 16))`,
    `(start $fill)
    (func $fill (local $i i32)
      (loop $more
        (i32.store (i32.mul (local.get $i) (i32.const 8)) (i32.const 16))
        (i32.store offset=4 (i32.mul (local.get $i) (i32.const 8)) (i32.const 1))
        (br_if $more (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
          (i32.const ${count})))))`,
    pages,
  );
}

/**
 * `_start` writes `pairs` times one byte to stdout (`o`) and then one byte to stderr (`e`),
 * one `fd_write` each, then returns.
 */
export function alternatingWrites(pairs: number): Promise<Uint8Array<ArrayBuffer>> {
  return wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "\\10\\00\\00\\00\\01\\00\\00\\00\\11\\00\\00\\00\\01\\00\\00\\00oe")
    (func (export "_start") (local $i i32)
      (loop $more
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
        (drop (call $fd_write (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 32)))
        (br_if $more (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
          (i32.const ${pairs}))))))`);
}

/**
 * `_start` grows its one `funcref` table by 1000 entries at a time until `table.grow` refuses,
 * prints the final size as 4 little-endian bytes on stdout, then traps (`unreachable`), as a
 * program that cannot get more table would.
 */
export function tableGrower(): Promise<Uint8Array<ArrayBuffer>> {
  return wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (table $t 1 funcref)
    (data (i32.const 0) "\\10\\00\\00\\00\\04\\00\\00\\00")
    (func (export "_start")
      (loop $more
        (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))
      (i32.store (i32.const 16) (table.size $t))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
      unreachable))`);
}
