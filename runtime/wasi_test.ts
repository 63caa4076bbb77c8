import assert from "node:assert/strict";
import { createWasi, WASI_PREVIEW1_FUNCTIONS, WasiExit } from "./wasi.ts";

type Call = (...args: Array<number | bigint>) => number;

function host(stdin = new Uint8Array()) {
  const writes: Array<[number, string]> = [];
  const wasi = createWasi({
    args: ["m.wasm", "a"],
    env: { K: "v" },
    stdin,
    write: (fd, chunks) => {
      for (const data of chunks) writes.push([fd, new TextDecoder().decode(data)]);
    },
  });
  const memory = new WebAssembly.Memory({ initial: 1 });
  wasi.bindMemory(memory);
  const call = (name: string) => wasi.imports[name] as unknown as Call;
  return { call, memory, view: new DataView(memory.buffer), writes };
}

Deno.test("createWasi() fails every filesystem call with EBADF or ENOTDIR, no preopens", () => {
  const { call } = host();
  assert.equal(call("fd_prestat_get")(3, 0), 8);
  assert.equal(call("path_open")(3, 0, 0, 5, 0, 0n, 0n, 0, 100), 8);
  assert.equal(call("path_open")(0, 0, 0, 5, 0, 0n, 0n, 0, 100), 54);
  assert.equal(call("fd_read")(5, 0, 0, 100), 8);
  assert.equal(call("fd_write")(4, 0, 0, 100), 8);
  assert.equal(call("sock_accept")(3, 0, 100), 8);
});

Deno.test("createWasi() writes each iovec to the callback, in order", () => {
  const { call, memory, view, writes } = host();
  new Uint8Array(memory.buffer).set(new TextEncoder().encode("hello world"), 100);
  view.setUint32(0, 100, true);
  view.setUint32(4, 5, true);
  view.setUint32(8, 105, true);
  view.setUint32(12, 6, true);
  assert.equal(call("fd_write")(2, 0, 2, 50), 0);
  assert.equal(view.getUint32(50, true), 11);
  assert.deepEqual(writes, [[2, "hello"], [2, " world"]]);
});

Deno.test("createWasi() reads stdin in order, then returns 0 bytes at its end", () => {
  const { call, memory, view } = host(new TextEncoder().encode("abcde"));
  view.setUint32(0, 100, true);
  view.setUint32(4, 3, true);
  assert.equal(call("fd_read")(0, 0, 1, 50), 0);
  assert.equal(view.getUint32(50, true), 3);
  assert.equal(call("fd_read")(0, 0, 1, 50), 0);
  assert.equal(view.getUint32(50, true), 2);
  assert.equal(new TextDecoder().decode(new Uint8Array(memory.buffer, 100, 2)), "de");
  assert.equal(call("fd_read")(0, 0, 1, 50), 0);
  assert.equal(view.getUint32(50, true), 0);
});

Deno.test("createWasi() returns EFAULT for pointers outside memory", () => {
  const { call } = host();
  assert.equal(call("args_sizes_get")(65534, 0), 21);
  assert.equal(call("random_get")(65530, 100), 21);
});

Deno.test("createWasi() gives environ exactly as configured", () => {
  const { call, memory, view } = host();
  assert.equal(call("environ_sizes_get")(0, 4), 0);
  assert.deepEqual([view.getUint32(0, true), view.getUint32(4, true)], [1, 4]);
  assert.equal(call("environ_get")(8, 100), 0);
  assert.equal(view.getUint32(8, true), 100);
  assert.equal(new TextDecoder().decode(new Uint8Array(memory.buffer, 100, 4)), "K=v\0");
});

Deno.test("createWasi() proc_exit throws WasiExit with the unsigned code", () => {
  const { call } = host();
  assert.throws(
    () => call("proc_exit")(-1),
    (e: unknown) => e instanceof WasiExit && e.code === 2 ** 32 - 1,
  );
});

Deno.test("createWasi() poll_oneoff sleeps for a relative clock subscription", () => {
  const { call, view } = host();
  view.setBigUint64(0, 77n, true); // userdata
  view.setUint8(8, 0); // clock
  view.setUint32(16, 1, true); // monotonic
  view.setBigUint64(24, 20_000_000n, true); // 20 ms
  const t = performance.now();
  assert.equal(call("poll_oneoff")(0, 100, 1, 200), 0);
  assert.ok(performance.now() - t >= 19);
  assert.equal(view.getUint32(200, true), 1);
  assert.equal(view.getBigUint64(100, true), 77n);
  assert.equal(view.getUint16(108, true), 0);
});

Deno.test("createWasi() imports have no prototype: 'constructor' and 'toString' cannot link", () => {
  const { imports } = createWasi({ args: [], env: {}, stdin: new Uint8Array(), write() {} });
  assert.equal(Object.getPrototypeOf(imports), null);
  assert.ok(Object.isFrozen(imports));
  for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
    assert.equal((imports as Record<string, unknown>)[name], undefined, name);
    // (module (import "wasi_snapshot_preview1" "<name>" (func)))
    const field = new TextEncoder().encode(name);
    const body = [
      1,
      22,
      ...new TextEncoder().encode("wasi_snapshot_preview1"),
      field.length,
      ...field,
      0,
      0,
    ];
    const module = new WebAssembly.Module(
      new Uint8Array([
        ...[0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0],
        ...[2, body.length, ...body],
      ]),
    );
    assert.throws(
      () => new WebAssembly.Instance(module, { wasi_snapshot_preview1: imports }),
      WebAssembly.LinkError,
      name,
    );
  }
  assert.deepEqual(Object.keys(imports).sort(), Object.keys(WASI_PREVIEW1_FUNCTIONS).sort());
});

Deno.test("createWasi() refuses more than 1024 iovecs with EINVAL, before touching them", () => {
  const { call, view, writes } = host(new TextEncoder().encode("abc"));
  for (let i = 0; i < 1025; i++) {
    view.setUint32(1000 + i * 8, 0, true);
    view.setUint32(1000 + i * 8 + 4, 1, true);
  }
  assert.equal(call("fd_write")(1, 1000, 1025, 50), 28);
  assert.equal(call("fd_read")(0, 1000, 1025, 50), 28);
  assert.equal(call("fd_write")(1, 1000, -1, 50), 28, "-1 is 4294967295 iovecs");
  assert.equal(call("fd_read")(0, 1000, -1, 50), 28);
  assert.deepEqual(writes, []);
  assert.equal(call("fd_write")(1, 1000, 1024, 50), 0);
  assert.equal(view.getUint32(50, true), 1024);
  assert.equal(writes.length, 1024);
});

Deno.test("createWasi() returns EFAULT for lengths that are negative as i32", () => {
  const { call, view } = host();
  assert.equal(call("random_get")(0, -1), 21);
  assert.equal(call("random_get")(100, -100), 21);
  assert.equal(call("poll_oneoff")(0, 100, -1, 200), 21);
  assert.equal(call("poll_oneoff")(0, 100, 2 ** 30, 200), 21);
  assert.equal(call("fd_write")(1, -8, 1, 50), 21);
  assert.equal(call("args_sizes_get")(-4, 0), 21);
  assert.equal(view.getUint32(200, true), 0, "no event count written");
});

Deno.test("createWasi() fd_write hands on views, never a copy the size of the request", () => {
  const seen: number[] = [];
  const wasi = createWasi({
    args: [],
    env: {},
    stdin: new Uint8Array(),
    write: (_fd, chunks) => {
      for (const c of chunks) seen.push(c.byteLength, c.buffer.byteLength);
      throw new Error("stop");
    },
  });
  const memory = new WebAssembly.Memory({ initial: 16 });
  wasi.bindMemory(memory);
  const view = new DataView(memory.buffer);
  // 1024 iovecs, each the whole 1 MiB memory: a gathered copy would be 1 GiB.
  for (let i = 0; i < 1024; i++) {
    view.setUint32(i * 8, 0, true);
    view.setUint32(i * 8 + 4, 1 << 20, true);
  }
  const fdWrite = wasi.imports.fd_write as unknown as Call;
  assert.throws(() => fdWrite(1, 0, 1024, 9000), /stop/);
  assert.equal(seen.length, 2048);
  assert.ok(seen.every((n) => n === 1 << 20), "each chunk is a view of the module's memory");
});
