import assert from "node:assert/strict";
import { createWasi, WasiExit } from "./wasi.ts";

type Call = (...args: Array<number | bigint>) => number;

function host(stdin = new Uint8Array()) {
  const writes: Array<[number, string]> = [];
  const wasi = createWasi({
    args: ["m.wasm", "a"],
    env: { K: "v" },
    stdin,
    write: (fd, data) => writes.push([fd, new TextDecoder().decode(data)]),
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

Deno.test("createWasi() writes gathered iovecs to the callback", () => {
  const { call, memory, view, writes } = host();
  new Uint8Array(memory.buffer).set(new TextEncoder().encode("hello world"), 100);
  view.setUint32(0, 100, true);
  view.setUint32(4, 5, true);
  view.setUint32(8, 105, true);
  view.setUint32(12, 6, true);
  assert.equal(call("fd_write")(2, 0, 2, 50), 0);
  assert.equal(view.getUint32(50, true), 11);
  assert.deepEqual(writes, [[2, "hello world"]]);
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
