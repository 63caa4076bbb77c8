import assert from "node:assert/strict";
import { createWasi, WASI_PREVIEW1_FUNCTIONS, WasiExit } from "./wasi.ts";
import { WasiFs } from "./wasi_fs.ts";

type Call = (...args: Array<number | bigint>) => number;

/** A WASI host over one page of memory, its writes kept; with `fs`, its files too. */
function host(stdin = new Uint8Array(), fs?: WasiFs) {
  const writes: Array<[number, string]> = [];
  const wasi = createWasi({
    args: ["m.wasm", "a"],
    env: { K: "v" },
    stdin,
    write: (fd, chunks) => {
      for (const data of chunks) writes.push([fd, new TextDecoder().decode(data)]);
    },
    ...(fs ? { fs } : {}),
  });
  const memory = new WebAssembly.Memory({ initial: 1 });
  wasi.bindMemory(memory);
  const call = (name: string) => wasi.imports[name] as unknown as Call;
  return { call, memory, view: new DataView(memory.buffer), writes };
}

/** An empty filesystem preopened as `/`, capped at 1 KiB and 10 entries. */
function emptyFs(): WasiFs {
  return new WasiFs({
    tree: { entries: [] },
    preopens: [{ name: "/", path: "" }],
    maxBytes: 1024,
    maxFiles: 10,
  });
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

Deno.test("createWasi() with a filesystem: preopen, path_open, write, seek, read, EFAULT paths", () => {
  const fs = emptyFs();
  const { call, memory, view } = host(new Uint8Array(), fs);
  const mem = new Uint8Array(memory.buffer);
  assert.equal(call("fd_prestat_get")(3, 0), 0);
  assert.equal(view.getUint32(4, true), 1);
  assert.equal(call("fd_prestat_dir_name")(3, 8, 1), 0);
  assert.equal(mem[8], 0x2f);
  mem.set(new TextEncoder().encode("f.txt"), 100);
  const rights = (1n << 1n) | (1n << 2n) | (1n << 6n);
  assert.equal(call("path_open")(3, 0, 100, 5, 1, rights, 0n, 0, 200), 0);
  const fd = view.getUint32(200, true);
  assert.equal(fd, 4);
  mem.set(new TextEncoder().encode("data"), 300);
  view.setUint32(16, 300, true);
  view.setUint32(20, 4, true);
  assert.equal(call("fd_write")(fd, 16, 1, 24), 0);
  assert.equal(view.getUint32(24, true), 4);
  assert.equal(call("fd_seek")(fd, -3n, 1, 32), 0);
  assert.equal(view.getBigUint64(32, true), 1n);
  view.setUint32(16, 400, true);
  assert.equal(call("fd_read")(fd, 16, 1, 24), 0);
  assert.equal(new TextDecoder().decode(mem.subarray(400, 403)), "ata");
  // A path past the end of memory is EFAULT, a missing file ENOENT, an unknown fd EBADF.
  assert.equal(call("path_open")(3, 0, 65_530, 10, 0, 0n, 0n, 0, 200), 21);
  assert.equal(call("path_open")(3, 0, 100, 4, 0, 0n, 0n, 0, 200), 44);
  assert.equal(call("fd_read")(9, 16, 1, 24), 8);
  assert.deepEqual(fs.tree().entries.map((e) => e.path), ["f.txt"]);
});

Deno.test("createWasi() poll_oneoff on a descriptor that is not open fails with EBADF", () => {
  const { call, view } = host();
  view.setBigUint64(0, 7n, true); // userdata
  view.setUint8(8, 1); // FD_READ
  view.setUint32(16, 0xffffffff, true);
  assert.equal(call("poll_oneoff")(0, 100, 1, 200), 8);
  view.setUint32(16, 0, true); // stdin: ready at once
  assert.equal(call("poll_oneoff")(0, 100, 1, 200), 0);
  assert.equal(view.getUint32(200, true), 1);
  assert.equal(view.getUint16(108, true), 0);
});

Deno.test("createWasi() fd_renumber moves stdio: stdout onto a file, a file onto stdout; fd_close closes stdio", () => {
  const fs = emptyFs();
  const { call, memory, view, writes } = host(new Uint8Array(), fs);
  const mem = new Uint8Array(memory.buffer);
  const open = (name: string) => {
    mem.set(new TextEncoder().encode(name), 100);
    const rights = (1n << 1n) | (1n << 6n); // FD_READ | FD_WRITE
    assert.equal(call("path_open")(3, 0, 100, name.length, 1, rights, 0n, 0, 200), 0);
    return view.getUint32(200, true);
  };
  const put = (fd: number, text: string) => {
    mem.set(new TextEncoder().encode(text), 300);
    view.setUint32(16, 300, true);
    view.setUint32(16 + 4, text.length, true);
    return call("fd_write")(fd, 16, 1, 24);
  };
  // stdout (1) takes fd a's number: writes to a reach stdout, fd 1 is closed.
  const a = open("a");
  assert.equal(call("fd_renumber")(1, a), 0);
  assert.equal(put(a, "to stdout"), 0);
  assert.equal(put(1, "x"), 8);
  assert.equal(call("fd_fdstat_get")(1, 400), 8);
  assert.equal(call("fd_fdstat_get")(a, 400), 0);
  // A file takes stdout's old number 1 (dup2(file, 1)); a new open never reuses a stdio number.
  const b = open("b");
  assert.equal(call("fd_renumber")(b, 1), 8, "1 is closed now: EBADF, as for any closed fd");
  assert.equal(call("fd_renumber")(b, 2), 0);
  assert.equal(put(2, "into b"), 0);
  assert.notEqual(open("c"), a);
  // Closing stdin closes it.
  assert.equal(call("fd_close")(0), 0);
  assert.equal(call("fd_read")(0, 16, 1, 24), 8);
  assert.equal(call("fd_close")(0), 8);
  assert.deepEqual(writes, [[1, "to stdout"]]);
  const files = fs.tree().entries as readonly { path: string; data?: Uint8Array }[];
  assert.equal(new TextDecoder().decode(files.find((e) => e.path === "b")!.data), "into b");
});
