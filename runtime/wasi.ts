/**
 * A WASI preview1 (`wasi_snapshot_preview1`) host with no sockets and, unless given one, no
 * filesystem: stdin from bytes in memory, stdout and stderr through a callback, arguments and
 * environment only as given, clocks, random, `proc_exit`, `sched_yield` and clock sleeps through
 * `poll_oneoff`. With an in-memory filesystem (wasi_fs.ts), descriptors from 3 on are its
 * preopens and the files the job opens.
 *
 * @module
 */
import type { WasiFs } from "./wasi_fs.ts";

/** Errno values of WASI preview1 used here. */
const E = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  NOTDIR: 54,
  NOTSOCK: 57,
  NOTSUP: 58,
  NAMETOOLONG: 37,
  SPIPE: 70,
} as const;

/** Longest path argument copied out of memory; a longer one is `ENAMETOOLONG`. */
const PATH_MAX = 4096;

/**
 * Most iovecs one `fd_read` or `fd_write` call may pass (wasi-libc's `IOV_MAX`); more is
 * `EINVAL`, so a call's host work is bounded whatever the module asks.
 */
const IOV_MAX = 1024;

const FILETYPE_UNKNOWN = 0;
const FDFLAGS_APPEND = 1;
const RIGHTS_FD_READ = 1n << 1n;
const RIGHTS_FD_WRITE = 1n << 6n;
const RIGHTS_POLL_FD_READWRITE = 1n << 27n;
const EVENTTYPE_CLOCK = 0;
const EVENTTYPE_FD_READ = 1;
const EVENTTYPE_FD_WRITE = 2;
const SUBCLOCKFLAGS_ABSTIME = 1;
const CLOCK_REALTIME = 0;

/**
 * Thrown out of the module by `proc_exit`; carries the exit code.
 *
 * @example
 * ```ts
 * import { WasiExit } from "./wasi.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new WasiExit(3).code, 3);
 * ```
 */
export class WasiExit extends Error {
  /** The exit code the module passed to `proc_exit` (unsigned 32-bit). */
  readonly code: number;
  /** Make the signal. */
  constructor(code: number) {
    super(`Module exited with code ${code}`);
    this.name = "WasiExit";
    this.code = code;
  }
}

/**
 * Every WASI preview1 function, with its core WebAssembly type: parameters, a colon, results;
 * `i` is `i32`, `I` is `i64`. The module gate (check_module.ts) lets a module import exactly
 * these names from `wasi_snapshot_preview1`, with exactly these types; {@linkcode createWasi}
 * provides exactly these names.
 *
 * @example
 * ```ts
 * import { WASI_PREVIEW1_FUNCTIONS } from "./wasi.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(WASI_PREVIEW1_FUNCTIONS.fd_write, "iiii:i");
 * assert.equal(Object.getPrototypeOf(WASI_PREVIEW1_FUNCTIONS), null);
 * assert.equal(WASI_PREVIEW1_FUNCTIONS.constructor, undefined);
 * ```
 */
export const WASI_PREVIEW1_FUNCTIONS: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null), {
    args_get: "ii:i",
    args_sizes_get: "ii:i",
    environ_get: "ii:i",
    environ_sizes_get: "ii:i",
    clock_res_get: "ii:i",
    clock_time_get: "iIi:i",
    fd_advise: "iIIi:i",
    fd_allocate: "iII:i",
    fd_close: "i:i",
    fd_datasync: "i:i",
    fd_fdstat_get: "ii:i",
    fd_fdstat_set_flags: "ii:i",
    fd_fdstat_set_rights: "iII:i",
    fd_filestat_get: "ii:i",
    fd_filestat_set_size: "iI:i",
    fd_filestat_set_times: "iIIi:i",
    fd_pread: "iiiIi:i",
    fd_prestat_get: "ii:i",
    fd_prestat_dir_name: "iii:i",
    fd_pwrite: "iiiIi:i",
    fd_read: "iiii:i",
    fd_readdir: "iiiIi:i",
    fd_renumber: "ii:i",
    fd_seek: "iIii:i",
    fd_sync: "i:i",
    fd_tell: "ii:i",
    fd_write: "iiii:i",
    path_create_directory: "iii:i",
    path_filestat_get: "iiiii:i",
    path_filestat_set_times: "iiiiIIi:i",
    path_link: "iiiiiii:i",
    path_open: "iiiiiIIii:i",
    path_readlink: "iiiiii:i",
    path_remove_directory: "iii:i",
    path_rename: "iiiiii:i",
    path_symlink: "iiiii:i",
    path_unlink_file: "iii:i",
    poll_oneoff: "iiii:i",
    proc_exit: "i:",
    proc_raise: "i:i",
    sched_yield: ":i",
    random_get: "ii:i",
    sock_accept: "iii:i",
    sock_recv: "iiiiii:i",
    sock_send: "iiiii:i",
    sock_shutdown: "ii:i",
  }),
);

/** Options of {@linkcode createWasi}. */
export interface WasiOptions {
  /** The complete argv, `argv[0]` included. */
  args: string[];
  /** The complete environment. */
  env: Record<string, string>;
  /** Everything the module reads from fd 0. */
  stdin: Uint8Array;
  /**
   * Receives every write to fd 1 (stdout) and fd 2 (stderr): one call per `fd_write`, with its
   * non-empty iovecs in order (at most 1024). They are views of the module's memory, valid only
   * during the call: copy what you keep. It may throw to stop the module (the error propagates
   * out of the module's call).
   */
  write(fd: 1 | 2, chunks: readonly Uint8Array[]): void;
  /**
   * Called at the start of every call and while `poll_oneoff` sleeps; it may throw to stop the
   * module (used for the wall-clock deadline).
   */
  check?: () => void;
  /**
   * The job's in-memory filesystem (see wasi_fs.ts): every `fd_*` call on a descriptor above 2
   * and every `path_*` call goes to it. Without it there is no filesystem at all.
   */
  fs?: WasiFs;
}

/** What {@linkcode createWasi} returns. */
export interface Wasi {
  /**
   * The import object for `wasi_snapshot_preview1`: a frozen object without prototype that
   * holds exactly the functions of {@linkcode WASI_PREVIEW1_FUNCTIONS}, so no other name
   * (`constructor`, `toString`, `__proto__`) resolves to anything.
   */
  imports: Record<string, (...args: never[]) => unknown>;
  /** Bind the module's memory; call after instantiation, before `_start`. */
  bindMemory(memory: WebAssembly.Memory): void;
}

/**
 * Make a WASI preview1 host. Without `fs`, every filesystem and socket call fails with a WASI
 * errno (`EBADF` for descriptors above 2, which is every directory: there are no preopens); with
 * it, descriptors above 2 are its preopens and files. Either way nothing of the host is
 * reachable from the module.
 *
 * Every `i32` argument is read as unsigned, as WASI defines them, so a "negative" length is a
 * huge one and fails its bounds check (`EFAULT`); `fd_read` and `fd_write` take at most 1024
 * iovecs (`EINVAL` beyond); no call allocates in proportion to what the module asks for.
 *
 * @example
 * ```ts
 * import { createWasi } from "./wasi.ts";
 * import assert from "node:assert/strict";
 *
 * const wasi = createWasi({ args: ["m.wasm"], env: {}, stdin: new Uint8Array(), write() {} });
 * const memory = new WebAssembly.Memory({ initial: 1 });
 * wasi.bindMemory(memory);
 * const sizes = wasi.imports.args_sizes_get as (a: number, b: number) => number;
 * assert.equal(sizes(0, 4), 0);
 * assert.deepEqual(new Uint32Array(memory.buffer, 0, 2), new Uint32Array([1, 7]));
 * ```
 */
export function createWasi(options: WasiOptions): Wasi {
  const encoder = new TextEncoder();
  const args = options.args.map((a) => encoder.encode(a + "\0"));
  const env = Object.entries(options.env).map(([k, v]) => encoder.encode(`${k}=${v}\0`));
  const stdin = options.stdin;
  const check = options.check ?? (() => {});
  const fs = options.fs;
  let stdinPos = 0;
  let memory: WebAssembly.Memory | null = null;
  const startNs = _nowNs();

  const view = (): DataView => {
    if (memory === null) throw new RangeError("no memory");
    return new DataView(memory.buffer);
  };
  const bytes = (): Uint8Array => {
    if (memory === null) throw new RangeError("no memory");
    return new Uint8Array(memory.buffer);
  };
  /**
   * Which descriptors are stdin (0), stdout (1) and stderr (2): `fd_renumber` can move them and
   * `fd_close` closes them, as in wasmtime (a job may redirect stdout into a file, or stdin).
   */
  const stdioAt = new Map<number, 0 | 1 | 2>([[0, 0], [1, 1], [2, 2]]);
  const stdio = (fd: number) => stdioAt.has(fd);
  fs?.reserveFds(stdio);
  /**
   * Run a call with its arguments as WASI types (`i32` as u32, `i64` as u64); out-of-bounds
   * memory access becomes EFAULT, other errors propagate.
   */
  const guard = <A extends (number | bigint)[]>(fn: (...a: A) => number) => (...a: A): number => {
    check();
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      a[i] = (typeof v === "bigint" ? BigInt.asUintN(64, v) : (v as number) >>> 0) as A[number];
    }
    try {
      return fn(...a);
    } catch (error) {
      // A failing filesystem call (wasi_fs.ts) carries its errno.
      const errno = (error as { wasiErrno?: unknown } | null)?.wasiErrno;
      if (typeof errno === "number") return errno;
      // Out-of-bounds pointers surface as RangeError from DataView and TypedArray; a stack
      // overflow is a RangeError too, and must propagate.
      if (error instanceof RangeError && !/call stack/i.test(error.message)) return E.FAULT;
      throw error;
    }
  };
  const writeStrings = (list: Uint8Array[], ptrs: number, buf: number): number => {
    const v = view();
    const m = bytes();
    let at = buf;
    for (const [i, item] of list.entries()) {
      v.setUint32(ptrs + i * 4, at, true);
      if (at + item.length > m.length) return E.FAULT;
      m.set(item, at);
      at += item.length;
    }
    return E.SUCCESS;
  };
  const sizes = (list: Uint8Array[], countPtr: number, sizePtr: number): number => {
    const v = view();
    v.setUint32(countPtr, list.length, true);
    v.setUint32(sizePtr, list.reduce((n, a) => n + a.length, 0), true);
    return E.SUCCESS;
  };
  /** Check an iovec array: null when it is fine, else the errno. */
  const badIovecs = (ptr: number, len: number): number | null => {
    if (len > IOV_MAX) return E.INVAL;
    const v = view();
    if (ptr + len * 8 > v.byteLength) return E.FAULT;
    for (let i = 0; i < len; i++) {
      const base = v.getUint32(ptr + i * 8, true);
      const size = v.getUint32(ptr + i * 8 + 4, true);
      if (base + size > v.byteLength) return E.FAULT;
    }
    return null;
  };
  const clockNs = (id: number): bigint | null => {
    if (id === CLOCK_REALTIME) return BigInt(Date.now()) * 1_000_000n;
    if (id === 1) return _nowNs();
    if (id === 2 || id === 3) return _nowNs() - startNs;
    return null;
  };
  const badfOrNotsup = (fd: number) => (stdio(fd) ? E.NOTSUP : E.BADF);
  const pathCall = (fd: number) => (stdio(fd) ? E.NOTDIR : E.BADF);
  /** The filesystem when it holds `fd`. */
  const fsFd = (fd: number): WasiFs | null => (fs !== undefined && fs.has(fd) ? fs : null);
  /** A path argument, copied out of memory; throws RangeError (EFAULT) when out of bounds. */
  const pathArg = (ptr: number, len: number): Uint8Array => {
    if (len > PATH_MAX) return new Uint8Array(PATH_MAX + 1); // ENAMETOOLONG from the filesystem
    if (ptr + len > bytes().length) throw new RangeError("path out of bounds");
    return bytes().slice(ptr, ptr + len);
  };
  /** The iovecs as views of memory (already checked by `badIovecs`). */
  const iovecs = (ptr: number, len: number): Uint8Array[] => {
    const v = view();
    const m = bytes();
    const out: Uint8Array[] = [];
    for (let i = 0; i < len; i++) {
      const base = v.getUint32(ptr + i * 8, true);
      const size = v.getUint32(ptr + i * 8 + 4, true);
      out.push(m.subarray(base, base + size));
    }
    return out;
  };
  /**
   * A read or write through the module's iovecs: checks them and the count's address before
   * `move` has any effect, then stores at `countAt` the count `move` returns.
   */
  const transfer = (
    iovs: number,
    iovsLen: number,
    countAt: number,
    move: (buffers: Uint8Array[]) => number,
  ): number => {
    const bad = badIovecs(iovs, iovsLen);
    if (bad !== null) return bad;
    view().getUint32(countAt, true); // bounds check before the side effect
    view().setUint32(countAt, move(iovecs(iovs, iovsLen)), true);
    return E.SUCCESS;
  };
  /** Filesystem calls for `path_*` functions: without a filesystem, the old answers. */
  const withFs = <A extends (number | bigint)[]>(
    fn: (fs: WasiFs, ...a: A) => number,
    fdAt = 0,
  ) =>
  (...a: A): number => (fs === undefined ? pathCall(a[fdAt] as number) : fn(fs, ...a));
  const writeFilestat = (out: number, st: ReturnType<WasiFs["filestat"]>) => {
    const v = view();
    v.getBigUint64(out + 56, true); // bounds check
    v.setBigUint64(out, st.dev, true);
    v.setBigUint64(out + 8, st.ino, true);
    v.setBigUint64(out + 16, 0n, true);
    v.setUint8(out + 16, st.filetype);
    v.setBigUint64(out + 24, st.nlink, true);
    v.setBigUint64(out + 32, st.size, true);
    v.setBigUint64(out + 40, st.atim, true);
    v.setBigUint64(out + 48, st.mtim, true);
    v.setBigUint64(out + 56, st.ctim, true);
    return E.SUCCESS;
  };

  const imports = {
    args_get: guard((argv: number, buf: number) => writeStrings(args, argv, buf)),
    args_sizes_get: guard((c: number, s: number) => sizes(args, c, s)),
    environ_get: guard((envp: number, buf: number) => writeStrings(env, envp, buf)),
    environ_sizes_get: guard((c: number, s: number) => sizes(env, c, s)),
    clock_res_get: guard((id: number, out: number) => {
      if (clockNs(id) === null) return E.INVAL;
      view().setBigUint64(out, id === CLOCK_REALTIME ? 1_000_000n : 1_000n, true);
      return E.SUCCESS;
    }),
    clock_time_get: guard((id: number, _precision: bigint, out: number) => {
      const ns = clockNs(id);
      if (ns === null) return E.INVAL;
      view().setBigUint64(out, ns, true);
      return E.SUCCESS;
    }),
    fd_advise: guard((fd: number, offset: bigint, len: bigint, advice: number) => {
      if (fsFd(fd)) return (fs!.advise(fd, offset, len, advice), E.SUCCESS);
      return stdio(fd) ? E.SPIPE : E.BADF;
    }),
    fd_allocate: guard((fd: number, offset: bigint, len: bigint) => {
      if (fsFd(fd)) return (fs!.allocate(fd, offset, len), E.SUCCESS);
      return badfOrNotsup(fd);
    }),
    fd_close: guard((fd: number) => {
      if (fsFd(fd)) return (fs!.close(fd), E.SUCCESS);
      return stdioAt.delete(fd) ? E.SUCCESS : E.BADF;
    }),
    fd_datasync: guard((fd: number) => {
      if (fsFd(fd)) return (fs!.sync(fd, true), E.SUCCESS);
      return stdio(fd) ? E.INVAL : E.BADF;
    }),
    fd_fdstat_get: guard((fd: number, out: number) => {
      if (fsFd(fd)) {
        const st = fs!.fdstat(fd);
        const v = view();
        v.getBigUint64(out + 16, true); // bounds check
        v.setBigUint64(out, 0n, true);
        v.setUint8(out, st.filetype);
        v.setUint16(out + 2, st.flags, true);
        v.setBigUint64(out + 8, st.base, true);
        v.setBigUint64(out + 16, st.inheriting, true);
        return E.SUCCESS;
      }
      if (!stdio(fd)) return E.BADF;
      const v = view();
      v.setUint8(out, FILETYPE_UNKNOWN);
      const isStdin = stdioAt.get(fd) === 0;
      v.setUint16(out + 2, isStdin ? 0 : FDFLAGS_APPEND, true);
      const rights = (isStdin ? RIGHTS_FD_READ : RIGHTS_FD_WRITE) | RIGHTS_POLL_FD_READWRITE;
      v.setBigUint64(out + 8, rights, true);
      v.setBigUint64(out + 16, 0n, true);
      return E.SUCCESS;
    }),
    fd_fdstat_set_flags: guard((fd: number, flags: number) => {
      if (fsFd(fd)) return (fs!.setFlags(fd, flags), E.SUCCESS);
      return badfOrNotsup(fd);
    }),
    fd_fdstat_set_rights: guard((fd: number, base: bigint, inheriting: bigint) => {
      if (fsFd(fd)) return (fs!.setRights(fd, base, inheriting), E.SUCCESS);
      return badfOrNotsup(fd);
    }),
    fd_filestat_get: guard((fd: number, out: number) => {
      if (fsFd(fd)) return writeFilestat(out, fs!.filestat(fd));
      if (!stdio(fd)) return E.BADF;
      const m = bytes();
      if (out + 64 > m.length) return E.FAULT;
      m.fill(0, out, out + 64);
      m[out + 16] = FILETYPE_UNKNOWN;
      return E.SUCCESS;
    }),
    fd_filestat_set_size: guard((fd: number, size: bigint) => {
      if (fsFd(fd)) return (fs!.setSize(fd, size), E.SUCCESS);
      return badfOrNotsup(fd);
    }),
    fd_filestat_set_times: guard((fd: number, atim: bigint, mtim: bigint, fst: number) => {
      if (fsFd(fd)) return (fs!.setTimes(fd, atim, mtim, fst), E.SUCCESS);
      return badfOrNotsup(fd);
    }),
    fd_pread: guard((fd: number, iovs: number, iovsLen: number, offset: bigint, nread: number) => {
      if (!fsFd(fd)) return stdio(fd) ? E.SPIPE : E.BADF;
      return transfer(iovs, iovsLen, nread, (buffers) => fs!.read(fd, buffers, offset));
    }),
    fd_prestat_get: guard((fd: number, out: number) => {
      if (!fsFd(fd)) return E.BADF;
      const name = encoder.encode(fs!.prestat(fd));
      const v = view();
      v.getUint32(out + 4, true); // bounds check
      v.setUint32(out, 0, true); // tag 0: a directory
      v.setUint32(out + 4, name.length, true);
      return E.SUCCESS;
    }),
    fd_prestat_dir_name: guard((fd: number, ptr: number, len: number) => {
      if (!fsFd(fd)) return E.BADF;
      const name = encoder.encode(fs!.prestat(fd));
      if (len < name.length) return E.NAMETOOLONG;
      if (ptr + name.length > bytes().length) return E.FAULT;
      bytes().set(name, ptr);
      return E.SUCCESS;
    }),
    fd_pwrite: guard((fd: number, iovs: number, iovsLen: number, offset: bigint, nw: number) => {
      if (!fsFd(fd)) return stdio(fd) ? E.SPIPE : E.BADF;
      return transfer(iovs, iovsLen, nw, (buffers) => fs!.write(fd, buffers, offset));
    }),
    fd_read: guard((fd: number, iovs: number, iovsLen: number, nread: number) => {
      if (fsFd(fd)) return transfer(iovs, iovsLen, nread, (buffers) => fs!.read(fd, buffers));
      if (stdioAt.get(fd) !== 0) return E.BADF;
      return transfer(iovs, iovsLen, nread, (buffers) => {
        let total = 0;
        for (const buffer of buffers) {
          const n = Math.min(buffer.length, stdin.length - stdinPos);
          buffer.set(stdin.subarray(stdinPos, stdinPos + n));
          stdinPos += n;
          total += n;
          if (n < buffer.length) break;
        }
        return total;
      });
    }),
    fd_readdir: guard((fd: number, buf: number, len: number, cookie: bigint, used: number) => {
      if (!fsFd(fd)) return pathCall(fd);
      if (buf + len > bytes().length) return E.FAULT;
      view().getUint32(used, true); // bounds check
      const out = fs!.readdir(fd, cookie, len);
      bytes().set(out, buf);
      view().setUint32(used, out.length, true);
      return E.SUCCESS;
    }),
    fd_renumber: guard((from: number, to: number) => {
      if (fsFd(from) && fsFd(to)) return (fs!.renumber(from, to), E.SUCCESS);
      const kind = stdioAt.get(from);
      if ((kind === undefined && !fsFd(from)) || (!stdio(to) && !fsFd(to))) return E.BADF;
      if (from === to) return E.SUCCESS;
      // `to` is closed, then `from` takes its number.
      if (fsFd(to)) fs!.close(to);
      stdioAt.delete(to);
      if (kind === undefined) fs!.moveTo(from, to);
      else (stdioAt.set(to, kind), stdioAt.delete(from));
      return E.SUCCESS;
    }),
    fd_seek: guard((fd: number, offset: bigint, whence: number, out: number) => {
      if (!fsFd(fd)) return stdio(fd) ? E.SPIPE : E.BADF;
      view().getBigUint64(out, true); // bounds check before the side effect
      view().setBigUint64(out, fs!.seek(fd, BigInt.asIntN(64, offset), whence), true);
      return E.SUCCESS;
    }),
    fd_sync: guard((fd: number) => {
      if (fsFd(fd)) return (fs!.sync(fd, false), E.SUCCESS);
      return stdio(fd) ? E.INVAL : E.BADF;
    }),
    fd_tell: guard((fd: number, out: number) => {
      if (!fsFd(fd)) return stdio(fd) ? E.SPIPE : E.BADF;
      view().setBigUint64(out, fs!.tell(fd), true);
      return E.SUCCESS;
    }),
    fd_write: guard((fd: number, iovs: number, iovsLen: number, nwritten: number) => {
      if (fsFd(fd)) {
        return transfer(iovs, iovsLen, nwritten, (buffers) => fs!.write(fd, buffers));
      }
      const stream = stdioAt.get(fd);
      if (stream !== 1 && stream !== 2) return E.BADF;
      return transfer(iovs, iovsLen, nwritten, (buffers) => {
        const chunks = buffers.filter((buffer) => buffer.length > 0);
        let total = 0;
        for (const chunk of chunks) total += chunk.length;
        if (chunks.length > 0) options.write(stream, chunks);
        // A sum over 4 GiB cannot be reported; the output cap stops such a job long before.
        return Math.min(total, 0xffffffff);
      });
    }),
    path_create_directory: guard(withFs((fs, fd: number, p: number, n: number) => {
      fs.mkdir(fd, pathArg(p, n));
      return E.SUCCESS;
    })),
    path_filestat_get: guard(
      withFs((fs, fd: number, flags: number, p: number, n: number, out: number) => {
        view().getBigUint64(out + 56, true); // bounds check
        return writeFilestat(out, fs.pathFilestat(fd, flags, pathArg(p, n)));
      }),
    ),
    path_filestat_set_times: guard(withFs((
      fs,
      fd: number,
      flags: number,
      p: number,
      n: number,
      at: bigint,
      mt: bigint,
      fst: number,
    ) => {
      fs.pathSetTimes(fd, flags, pathArg(p, n), at, mt, fst);
      return E.SUCCESS;
    })),
    path_link: guard(withFs((
      fs,
      oldFd: number,
      flags: number,
      op: number,
      on: number,
      newFd: number,
      np: number,
      nn: number,
    ) => {
      fs.link(oldFd, flags, pathArg(op, on), newFd, pathArg(np, nn));
      return E.SUCCESS;
    })),
    path_open: guard(withFs((
      fs,
      fd: number,
      flags: number,
      p: number,
      n: number,
      oflags: number,
      base: bigint,
      inheriting: bigint,
      fdflags: number,
      out: number,
    ) => {
      view().getUint32(out, true); // bounds check before the side effect
      const opened = fs.open(fd, flags, pathArg(p, n), oflags, base, inheriting, fdflags);
      view().setUint32(out, opened, true);
      return E.SUCCESS;
    })),
    path_readlink: guard(
      withFs((fs, fd: number, p: number, n: number, buf: number, len: number, used: number) => {
        if (buf + len > bytes().length) return E.FAULT;
        view().getUint32(used, true); // bounds check
        const target = fs.readlink(fd, pathArg(p, n));
        const take = target.subarray(0, len);
        bytes().set(take, buf);
        view().setUint32(used, take.length, true);
        return E.SUCCESS;
      }),
    ),
    path_remove_directory: guard(withFs((fs, fd: number, p: number, n: number) => {
      fs.rmdir(fd, pathArg(p, n));
      return E.SUCCESS;
    })),
    path_rename: guard(
      withFs((fs, fd: number, op: number, on: number, newFd: number, np: number, nn: number) => {
        fs.rename(fd, pathArg(op, on), newFd, pathArg(np, nn));
        return E.SUCCESS;
      }),
    ),
    path_symlink: guard(withFs(
      (fs, op: number, on: number, fd: number, np: number, nn: number) => {
        fs.symlink(pathArg(op, on), fd, pathArg(np, nn));
        return E.SUCCESS;
      },
      2,
    )),
    path_unlink_file: guard(withFs((fs, fd: number, p: number, n: number) => {
      fs.unlink(fd, pathArg(p, n));
      return E.SUCCESS;
    })),
    poll_oneoff: guard((inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) => {
      if (nsubs === 0) return E.INVAL;
      const v = view();
      if (inPtr + nsubs * 48 > v.byteLength || outPtr + nsubs * 32 > v.byteLength) return E.FAULT;
      v.getUint32(neventsPtr, true); // bounds check before the side effects
      // Two passes over the subscriptions and nothing allocated per subscription: first find
      // whether any event is ready at once and the earliest clock deadline, then (after the
      // sleep, if nothing was ready) write the events that are due.
      const now0 = _nowNs();
      let immediate = 0;
      let sleepUntil: bigint | null = null;
      const deadline = (at: number, now: bigint): bigint => {
        const timeout = v.getBigUint64(at + 24, true);
        const flags = v.getUint16(at + 40, true);
        return now0 +
          (flags & SUBCLOCKFLAGS_ABSTIME ? (timeout > now ? timeout - now : 0n) : timeout);
      };
      for (let i = 0; i < nsubs; i++) {
        const at = inPtr + i * 48;
        const type = v.getUint8(at + 8);
        if (type !== EVENTTYPE_CLOCK) {
          // A descriptor that is not open fails the whole call, as in wasmtime.
          const fd = v.getUint32(at + 16, true);
          const fdEvent = type === EVENTTYPE_FD_READ || type === EVENTTYPE_FD_WRITE;
          if (fdEvent && !stdio(fd) && fsFd(fd) === null) return E.BADF;
          immediate++;
          continue;
        }
        const now = clockNs(v.getUint32(at + 16, true));
        if (now === null) {
          immediate++;
          continue;
        }
        const d = deadline(at, now);
        if (sleepUntil === null || d < sleepUntil) sleepUntil = d;
      }
      if (immediate === 0 && sleepUntil !== null) _sleepUntil(sleepUntil, check);
      let events = 0;
      const event = (userdata: bigint, error: number, type: number) => {
        const at = outPtr + events++ * 32;
        v.setBigUint64(at, userdata, true);
        v.setUint16(at + 8, error, true);
        v.setUint8(at + 10, type);
        v.setBigUint64(at + 16, 0n, true);
        v.setUint16(at + 24, 0, true);
      };
      for (let i = 0; i < nsubs; i++) {
        const at = inPtr + i * 48;
        const userdata = v.getBigUint64(at, true);
        const type = v.getUint8(at + 8);
        if (type === EVENTTYPE_FD_READ || type === EVENTTYPE_FD_WRITE) {
          const fd = v.getUint32(at + 16, true);
          const stream = stdioAt.get(fd);
          const ok = (type === EVENTTYPE_FD_READ ? stream === 0 : stream === 1 || stream === 2) ||
            fsFd(fd) !== null; // files are always ready
          event(userdata, ok ? E.SUCCESS : E.BADF, type);
        } else if (type !== EVENTTYPE_CLOCK) {
          event(userdata, E.INVAL, type);
        } else {
          const id = v.getUint32(at + 16, true);
          const clock = clockNs(id);
          if (clock === null) event(userdata, E.INVAL, type);
          else if (immediate === 0) {
            const flags = v.getUint16(at + 40, true);
            const timeout = v.getBigUint64(at + 24, true);
            const due = flags & SUBCLOCKFLAGS_ABSTIME
              ? clock >= timeout
              : _nowNs() >= now0 + timeout;
            if (due) event(userdata, E.SUCCESS, type);
          }
        }
      }
      v.setUint32(neventsPtr, events, true);
      return E.SUCCESS;
    }),
    proc_exit: (code: number): never => {
      check();
      throw new WasiExit(code >>> 0);
    },
    proc_raise: guard(() => E.NOSYS),
    random_get: guard((buf: number, len: number) => {
      const m = bytes();
      if (buf + len > m.length) return E.FAULT;
      for (let at = 0; at < len; at += 65_536) {
        if (at % (1 << 24) === 0) check(); // a 4 GiB request still honours the deadline
        crypto.getRandomValues(m.subarray(buf + at, buf + Math.min(len, at + 65_536)));
      }
      return E.SUCCESS;
    }),
    sched_yield: guard(() => E.SUCCESS),
    sock_accept: guard((fd: number) => (stdio(fd) ? E.NOTSOCK : E.BADF)),
    sock_recv: guard((fd: number) => (stdio(fd) ? E.NOTSOCK : E.BADF)),
    sock_send: guard((fd: number) => (stdio(fd) ? E.NOTSOCK : E.BADF)),
    sock_shutdown: guard((fd: number) => (stdio(fd) ? E.NOTSOCK : E.BADF)),
  };
  const frozen = Object.freeze(Object.assign(Object.create(null), imports));
  return {
    imports: frozen as Wasi["imports"],
    bindMemory(m: WebAssembly.Memory) {
      memory = m;
    },
  };
}

/** Monotonic nanoseconds since the process started. */
function _nowNs(): bigint {
  return BigInt(Math.round(performance.now() * 1_000_000));
}

/** Block the thread until the monotonic clock passes `deadline`. */
function _sleepUntil(deadline: bigint, check: () => void): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    check();
    const left = Number(deadline - _nowNs()) / 1_000_000;
    if (left <= 0) return;
    Atomics.wait(cell, 0, 0, Math.min(left, 50));
  }
}
