/**
 * An in-memory filesystem with WASI preview1 semantics for one job: inodes (files, directories,
 * symbolic links) with link counts and timestamps, a descriptor table with rights and fdflags,
 * preopened directories, and path resolution relative to a directory descriptor that follows
 * links (at most 40, else `ELOOP`) and never leaves that directory (`..` above it, an absolute
 * path or an absolute link target is `EPERM`). It is built from a {@linkcode FileTree} and gives
 * its final state back as one; nothing of the host is reachable. Used by `createWasi` (wasi.ts)
 * for every descriptor above 2.
 *
 * Rights, as wasmtime treats them: a descriptor has the rights it was opened with (what it asked
 * for, within what its directory passes on) and `fd_fdstat_get` reports them; reading needs it
 * opened with `FD_READ`, writing with `FD_WRITE` (`EBADF` otherwise); other calls do not need
 * their right (test programs open with no rights at all and still stat and list). Once the job
 * shrinks a descriptor's rights with `fd_fdstat_set_rights` (they never grow: `ENOTCAPABLE`),
 * every call on it checks its right (`ENOTCAPABLE`).
 *
 * Methods take and return plain values; a failing call throws {@linkcode WasiErrno} with the
 * WASI errno, and a call that would take the filesystem over its caps throws
 * {@linkcode WasiFsLimitError}, which stops the job.
 *
 * @module
 */
import {
  decodeFileTree,
  encodeFileTree,
  type FileTree,
  FileTreeLimitError,
  makeFileTree,
  TREE_MAX_DEPTH,
  TREE_MAX_NAME_BYTES,
  TREE_MAX_PATH_BYTES,
  type TreeEntry,
} from "./file_tree.ts";
import { LimitError } from "./limit_error.ts";

/** WASI preview1 errno values used here (from the spec's `errno` enum). */
export const ERRNO = {
  SUCCESS: 0,
  ACCES: 2,
  BADF: 8,
  BUSY: 10,
  EXIST: 20,
  FBIG: 22,
  ILSEQ: 25,
  INVAL: 28,
  ISDIR: 31,
  LOOP: 32,
  MFILE: 33,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSUP: 58,
  PERM: 63,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const;

/** WASI preview1 `rights` bits (bit n of the spec's `rights` flags). */
export const RIGHTS = {
  FD_DATASYNC: 1n << 0n,
  FD_READ: 1n << 1n,
  FD_SEEK: 1n << 2n,
  FD_FDSTAT_SET_FLAGS: 1n << 3n,
  FD_SYNC: 1n << 4n,
  FD_TELL: 1n << 5n,
  FD_WRITE: 1n << 6n,
  FD_ADVISE: 1n << 7n,
  FD_ALLOCATE: 1n << 8n,
  PATH_CREATE_DIRECTORY: 1n << 9n,
  PATH_CREATE_FILE: 1n << 10n,
  PATH_LINK_SOURCE: 1n << 11n,
  PATH_LINK_TARGET: 1n << 12n,
  PATH_OPEN: 1n << 13n,
  FD_READDIR: 1n << 14n,
  PATH_READLINK: 1n << 15n,
  PATH_RENAME_SOURCE: 1n << 16n,
  PATH_RENAME_TARGET: 1n << 17n,
  PATH_FILESTAT_GET: 1n << 18n,
  PATH_FILESTAT_SET_SIZE: 1n << 19n,
  PATH_FILESTAT_SET_TIMES: 1n << 20n,
  FD_FILESTAT_GET: 1n << 21n,
  FD_FILESTAT_SET_SIZE: 1n << 22n,
  FD_FILESTAT_SET_TIMES: 1n << 23n,
  PATH_SYMLINK: 1n << 24n,
  PATH_REMOVE_DIRECTORY: 1n << 25n,
  PATH_UNLINK_FILE: 1n << 26n,
  POLL_FD_READWRITE: 1n << 27n,
} as const;

const R = RIGHTS;
/** Rights that mean something on a regular file. */
const FILE_RIGHTS = R.FD_DATASYNC | R.FD_READ | R.FD_SEEK | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC |
  R.FD_TELL | R.FD_WRITE | R.FD_ADVISE | R.FD_ALLOCATE | R.FD_FILESTAT_GET |
  R.FD_FILESTAT_SET_SIZE | R.FD_FILESTAT_SET_TIMES | R.POLL_FD_READWRITE;
/** Rights that mean something on a directory. */
const DIR_RIGHTS = R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_DATASYNC | R.PATH_CREATE_DIRECTORY |
  R.PATH_CREATE_FILE | R.PATH_LINK_SOURCE | R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR |
  R.PATH_READLINK | R.PATH_RENAME_SOURCE | R.PATH_RENAME_TARGET | R.PATH_FILESTAT_GET |
  R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES | R.FD_FILESTAT_GET |
  R.FD_FILESTAT_SET_TIMES | R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE;

/** WASI `filetype` values. */
export const FILETYPE = { UNKNOWN: 0, DIRECTORY: 3, REGULAR_FILE: 4, SYMBOLIC_LINK: 7 } as const;
const OFLAGS = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
const FDFLAGS_APPEND = 1;
const FDFLAGS_ALL = 0x1f;
const LOOKUP_FOLLOW = 1;
const FST = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8 } as const;
/** Most symbolic links one resolution follows (Linux's `MAXSYMLINKS`). */
const MAX_LINKS = 40;
/** Most open descriptors (preopens and stdio included). */
const MAX_FDS = 1024;
/** Largest file offset or size (`i64` max). */
const MAX_OFFSET = (1n << 63n) - 1n;

/**
 * A WASI call failed with `errno`; `createWasi` returns it to the module.
 *
 * @example
 * ```ts
 * import { ERRNO, WasiErrno } from "./wasi_fs.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new WasiErrno(ERRNO.NOENT).wasiErrno, 44);
 * ```
 */
export class WasiErrno extends Error {
  /** The WASI errno. */
  readonly wasiErrno: number;
  /** Make the error. */
  constructor(errno: number) {
    super(`WASI errno ${errno}`);
    this.name = "WasiErrno";
    this.wasiErrno = errno;
  }
}

/**
 * The job's files went over a cap: `kind` is `fs_bytes_limit` (contents) or `fs_files_limit`
 * (entries). Thrown out of the module's call; the job ends with that error kind.
 *
 * @example
 * ```ts
 * import { WasiFsLimitError } from "./wasi_fs.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new WasiFsLimitError("fs_files_limit", "m");
 * assert.equal(error.kind, "fs_files_limit");
 * assert.equal(error.name, "WasiFsLimitError");
 * assert.ok(error instanceof WasiFsLimitError && error instanceof Error);
 * ```
 */
export class WasiFsLimitError extends LimitError<"fs_bytes_limit" | "fs_files_limit"> {
  /** The error's name. */
  override name = "WasiFsLimitError";
}

/** A preopened directory: the name the module sees and the tree path it opens. */
export interface WasiPreopen {
  /** What `fd_prestat_dir_name` reports, e.g. `/` or `data`. */
  name: string;
  /** The directory in the tree, relative; `""` for the root. */
  path: string;
}

/** Options of {@linkcode WasiFs}. */
export interface WasiFsOptions {
  /** The files the job starts with. */
  tree: FileTree;
  /** Directories to preopen, as fds 3, 4, ... in this order. */
  preopens: readonly WasiPreopen[];
  /** Cap on the bytes of all files together. */
  maxBytes: number;
  /** Cap on the number of entries (files, directories, links). */
  maxFiles: number;
  /** Realtime clock in nanoseconds, for timestamps. @default {Date.now() in ns} */
  now?: () => bigint;
}

/** What `fd_filestat_get` and `path_filestat_get` report. */
export interface WasiFilestat {
  /** Device id (always 1). */
  dev: bigint;
  /** Inode number. */
  ino: bigint;
  /** {@linkcode FILETYPE} value. */
  filetype: number;
  /** Hard link count. */
  nlink: bigint;
  /** Size in bytes. */
  size: bigint;
  /** Access time (ns). */
  atim: bigint;
  /** Modification time (ns). */
  mtim: bigint;
  /** Status change time (ns). */
  ctim: bigint;
}

/** What `fd_fdstat_get` reports. */
export interface WasiFdstat {
  /** {@linkcode FILETYPE} value. */
  filetype: number;
  /** fdflags. */
  flags: number;
  /** Base rights. */
  base: bigint;
  /** Inheriting rights. */
  inheriting: bigint;
}

class _Node {
  nlink = 1;
  open = 0;
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
  data = new Uint8Array(0);
  size = 0;
  executable = false;
  readonly entries = new Map<string, _Node>();
  parent: _Node | null = null;
  name = "";
  target = "";
  constructor(readonly type: number, readonly ino: bigint, now: bigint) {
    this.atim = this.mtim = this.ctim = now;
  }
  get isDir(): boolean {
    return this.type === FILETYPE.DIRECTORY;
  }
}

interface _Fd {
  node: _Node;
  base: bigint;
  inheriting: bigint;
  flags: number;
  offset: bigint;
  readable: boolean;
  writable: boolean;
  /** The job shrank the rights (`fd_fdstat_set_rights`): every call now checks them. */
  restricted: boolean;
  preopen: string | null;
}

interface _Found {
  /** The directory that holds the final name; null when the path ends in `.` or `..`. */
  dir: _Node | null;
  name: string | null;
  node: _Node | undefined;
  /** The path ended with `/`. */
  slash: boolean;
}

/**
 * The in-memory filesystem of one job. See the module doc for the rules.
 *
 * @example
 * ```ts
 * import { RIGHTS, WasiFs } from "./wasi_fs.ts";
 * import assert from "node:assert/strict";
 *
 * const fs = new WasiFs({
 *   tree: { entries: [] },
 *   preopens: [{ name: "/", path: "" }],
 *   maxBytes: 1024,
 *   maxFiles: 10,
 * });
 * const fd = fs.open(3, 0, "out.txt", 1 | 8, RIGHTS.FD_WRITE, 0n, 0); // O_CREAT | O_TRUNC
 * fs.write(fd, [new TextEncoder().encode("hi")]);
 * assert.deepEqual(fs.tree().entries.map((e) => e.path), ["out.txt"]);
 * ```
 */
export class WasiFs {
  readonly #fds = new Map<number, _Fd>();
  readonly #root: _Node;
  readonly #now: () => bigint;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  #nextIno = 1n;
  #taken: (fd: number) => boolean = () => false;
  #bytes = 0;
  #count = 0;

  /**
   * Build the filesystem from a tree (already checked, e.g. by `makeFileTree` or
   * `decodeFileTree`) and open the preopens.
   *
   * @throws {WasiFsLimitError} If the tree is over the caps.
   * @throws {TypeError} If a preopen path is not a directory of the tree.
   */
  constructor(options: WasiFsOptions) {
    this.#now = options.now ?? (() => BigInt(Date.now()) * 1_000_000n);
    this.#maxBytes = options.maxBytes;
    this.#maxFiles = options.maxFiles;
    this.#root = this.#node(FILETYPE.DIRECTORY, true);
    for (const entry of options.tree.entries) {
      const slash = entry.path.lastIndexOf("/");
      const dir = slash < 0 ? this.#root : this.#walkTree(entry.path.slice(0, slash));
      const name = entry.path.slice(slash + 1);
      let node: _Node;
      if (entry.type === "dir") node = this.#node(FILETYPE.DIRECTORY);
      else if (entry.type === "symlink") {
        node = this.#node(FILETYPE.SYMBOLIC_LINK);
        node.target = entry.target;
      } else {
        node = this.#node(FILETYPE.REGULAR_FILE);
        this.#grow(node, entry.data.length);
        node.data.set(entry.data);
        node.executable = entry.executable;
      }
      this.#link(dir, name, node);
    }
    for (const [i, p] of options.preopens.entries()) {
      const node = p.path === "" ? this.#root : this.#walkTree(p.path);
      this.#fds.set(3 + i, {
        node,
        base: DIR_RIGHTS,
        inheriting: DIR_RIGHTS | FILE_RIGHTS,
        flags: 0,
        offset: 0n,
        readable: true,
        writable: false,
        restricted: false,
        preopen: p.name,
      });
      node.open++;
    }
  }

  /** Whether `fd` is open here. */
  has(fd: number): boolean {
    return this.#fds.has(fd);
  }

  /** The final state of the files, from the root. Hard links appear as separate files. */
  tree(): FileTree {
    const entries: TreeEntry[] = [];
    const walk = (dir: _Node, prefix: string) => {
      for (const [name, node] of dir.entries) {
        const path = prefix + name;
        if (node.isDir) {
          entries.push({ path, type: "dir" });
          walk(node, path + "/");
        } else if (node.type === FILETYPE.SYMBOLIC_LINK) {
          entries.push({ path, type: "symlink", target: node.target });
        } else {
          entries.push({
            path,
            type: "file",
            executable: node.executable,
            data: node.data.slice(0, node.size),
          });
        }
      }
    };
    walk(this.#root, "");
    return makeFileTree(entries);
  }

  // --- descriptors -------------------------------------------------------------------------

  /** `fd_prestat_get` / `fd_prestat_dir_name`: the preopen's name. */
  prestat(fd: number): string {
    const name = this.#fd(fd).preopen;
    if (name === null) throw new WasiErrno(ERRNO.BADF);
    return name;
  }

  /** `fd_fdstat_get`. */
  fdstat(fd: number): WasiFdstat {
    const f = this.#fd(fd);
    return { filetype: f.node.type, flags: f.flags, base: f.base, inheriting: f.inheriting };
  }

  /** `fd_fdstat_set_flags`. */
  setFlags(fd: number, flags: number): void {
    // On a directory descriptor EBADF, as in wasmtime (Linux would accept it).
    const f = this.#file(fd, R.FD_FDSTAT_SET_FLAGS);
    if (flags & ~FDFLAGS_ALL) throw new WasiErrno(ERRNO.INVAL);
    f.flags = flags;
  }

  /** `fd_fdstat_set_rights`: rights can only shrink. */
  setRights(fd: number, base: bigint, inheriting: bigint): void {
    const f = this.#fd(fd);
    if ((base & ~f.base) !== 0n || (inheriting & ~f.inheriting) !== 0n) {
      throw new WasiErrno(ERRNO.NOTCAPABLE);
    }
    f.base = base;
    f.inheriting = inheriting;
    f.restricted = true;
  }

  /** `fd_filestat_get`. */
  filestat(fd: number): WasiFilestat {
    return this.#stat(this.#fd(fd, R.FD_FILESTAT_GET).node);
  }

  /** `fd_filestat_set_size`. */
  setSize(fd: number, size: bigint): void {
    const f = this.#file(fd, R.FD_FILESTAT_SET_SIZE);
    if (size > MAX_OFFSET) throw new WasiErrno(ERRNO.INVAL);
    if (!f.writable) throw new WasiErrno(ERRNO.BADF);
    this.#resize(f.node, size);
    f.node.mtim = f.node.ctim = this.#now();
  }

  /** `fd_filestat_set_times`. */
  setTimes(fd: number, atim: bigint, mtim: bigint, fst: number): void {
    this.#times(this.#fd(fd, R.FD_FILESTAT_SET_TIMES).node, atim, mtim, fst);
  }

  /** `fd_read` (at the offset, which moves) or `fd_pread` (at `at`): bytes read into `into`. */
  read(fd: number, into: readonly Uint8Array[], at?: bigint): number {
    if (!this.#file(fd, 0n).readable) throw new WasiErrno(ERRNO.BADF);
    const f = this.#file(fd, R.FD_READ | (at === undefined ? 0n : R.FD_SEEK));
    const node = f.node;
    let pos = at ?? f.offset;
    let total = 0;
    for (const buf of into) {
      const start = pos > BigInt(node.size) ? node.size : Number(pos);
      const n = Math.min(buf.length, node.size - start);
      buf.set(node.data.subarray(start, start + n));
      pos += BigInt(n);
      total += n;
      if (n < buf.length) break;
    }
    if (at === undefined) f.offset = pos;
    return total;
  }

  /**
   * `fd_write` (at the offset, or the end in append mode) or `fd_pwrite` (at `at`): every
   * byte of `chunks` is written.
   */
  write(fd: number, chunks: readonly Uint8Array[], at?: bigint): number {
    if (!this.#file(fd, 0n).writable) throw new WasiErrno(ERRNO.BADF);
    const f = this.#file(fd, R.FD_WRITE | (at === undefined ? 0n : R.FD_SEEK));
    const node = f.node;
    let pos = at ?? (f.flags & FDFLAGS_APPEND ? BigInt(node.size) : f.offset);
    let total = 0;
    for (const chunk of chunks) total += chunk.length;
    if (total === 0) return 0;
    const end = pos + BigInt(total);
    if (end > BigInt(node.size)) this.#resize(node, end);
    for (const chunk of chunks) {
      node.data.set(chunk, Number(pos));
      pos += BigInt(chunk.length);
    }
    if (at === undefined) f.offset = pos;
    node.mtim = node.ctim = this.#now();
    return total;
  }

  /** `fd_seek`: `offset` is signed; the new offset. */
  seek(fd: number, offset: bigint, whence: number): bigint {
    const f = this.#file(fd, offset === 0n && whence === 1 ? R.FD_TELL : R.FD_SEEK);
    const base = whence === 0
      ? 0n
      : whence === 1
      ? f.offset
      : whence === 2
      ? BigInt(f.node.size)
      : null;
    if (base === null) throw new WasiErrno(ERRNO.INVAL);
    const next = base + offset;
    if (next < 0n || next > MAX_OFFSET) throw new WasiErrno(ERRNO.INVAL);
    f.offset = next;
    return next;
  }

  /** `fd_tell`. */
  tell(fd: number): bigint {
    return this.#file(fd, R.FD_TELL).offset;
  }

  /** `fd_advise`. */
  advise(fd: number, _offset: bigint, _len: bigint, advice: number): void {
    this.#file(fd, R.FD_ADVISE);
    if (advice > 5) throw new WasiErrno(ERRNO.INVAL);
  }

  /** `fd_allocate`: the file grows to `offset + len` if shorter. */
  allocate(fd: number, offset: bigint, len: bigint): void {
    const f = this.#file(fd, R.FD_ALLOCATE);
    if (offset + len > MAX_OFFSET) throw new WasiErrno(ERRNO.FBIG);
    if (!f.writable) throw new WasiErrno(ERRNO.BADF);
    if (offset + len > BigInt(f.node.size)) this.#resize(f.node, offset + len);
  }

  /**
   * `fd_sync` / `fd_datasync`: nothing to do, beyond checking the descriptor (a directory's is
   * EBADF, as in wasmtime).
   */
  sync(fd: number, data: boolean): void {
    this.#file(fd, data ? R.FD_DATASYNC : R.FD_SYNC);
  }

  /** `fd_close`. */
  close(fd: number): void {
    const f = this.#fd(fd);
    this.#fds.delete(fd);
    f.node.open--;
    this.#release(f.node);
  }

  /**
   * Numbers the filesystem must not hand out (the WASI host's stdio, wherever `fd_renumber`
   * moved it): `path_open` skips them.
   */
  reserveFds(taken: (fd: number) => boolean): void {
    this.#taken = taken;
  }

  /** `fd_renumber` onto a number the filesystem does not hold (a closed stdio number). */
  moveTo(from: number, to: number): void {
    const f = this.#fd(from);
    if (this.#fds.has(to)) throw new WasiErrno(ERRNO.BADF);
    this.#fds.set(to, f);
    this.#fds.delete(from);
  }

  /** `fd_renumber`: `from` replaces `to` (both open), and `from` is closed. */
  renumber(from: number, to: number): void {
    const f = this.#fd(from);
    this.#fd(to);
    if (from === to) return;
    this.close(to);
    this.#fds.set(to, f);
    this.#fds.delete(from);
  }

  /** `fd_readdir`: at most `length` bytes of dirents from `cookie` on. */
  readdir(fd: number, cookie: bigint, length: number): Uint8Array {
    const f = this.#fd(fd);
    if (!f.node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
    this.#fd(fd, R.FD_READDIR);
    const dir = f.node;
    const list: [string, _Node][] = [[".", dir], ["..", dir.parent ?? dir]];
    for (const name of [...dir.entries.keys()].sort()) list.push([name, dir.entries.get(name)!]);
    // Never more than the entries need, whatever `length` the module passes.
    const parts: Uint8Array[] = [];
    let at = 0;
    const enc = new TextEncoder();
    for (let i = cookie; i < BigInt(list.length) && at < length; i++) {
      const [name, node] = list[Number(i)]!;
      const bytes = enc.encode(name);
      const entry = new Uint8Array(24 + bytes.length);
      const view = new DataView(entry.buffer);
      view.setBigUint64(0, i + 1n, true);
      view.setBigUint64(8, node.ino, true);
      view.setUint32(16, bytes.length, true);
      entry[20] = node.type;
      entry.set(bytes, 24);
      const take = Math.min(entry.length, length - at);
      parts.push(entry.subarray(0, take));
      at += take;
    }
    const out = new Uint8Array(at);
    let pos = 0;
    for (const part of parts) {
      out.set(part, pos);
      pos += part.length;
    }
    return out;
  }

  // --- paths -------------------------------------------------------------------------------

  /** `path_open`: the new descriptor. */
  open(
    dirFd: number,
    lookup: number,
    path: string | Uint8Array,
    oflags: number,
    base: bigint,
    inheriting: bigint,
    fdflags: number,
  ): number {
    const d = this.#dirFd(dirFd, R.PATH_OPEN);
    if (fdflags & ~FDFLAGS_ALL || oflags & ~0xf) throw new WasiErrno(ERRNO.INVAL);
    if (d.restricted && ((base | inheriting) & ~d.inheriting) !== 0n) {
      throw new WasiErrno(ERRNO.NOTCAPABLE);
    }
    // With CREAT|EXCL a link at the last component is never followed (POSIX): it exists.
    const exclusive = (oflags & OFLAGS.CREAT) !== 0 && (oflags & OFLAGS.EXCL) !== 0;
    const found = this.#resolve(d, path, (lookup & LOOKUP_FOLLOW) !== 0 && !exclusive);
    let node = found.node;
    const write = (base & R.FD_WRITE) !== 0n;
    if (node === undefined) {
      if (!(oflags & OFLAGS.CREAT)) throw new WasiErrno(ERRNO.NOENT);
      if (oflags & OFLAGS.DIRECTORY) throw new WasiErrno(ERRNO.INVAL);
      if (found.slash) throw new WasiErrno(ERRNO.ISDIR);
      this.#dirFd(dirFd, R.PATH_CREATE_FILE);
      node = this.#create(found, FILETYPE.REGULAR_FILE);
    } else {
      if (exclusive) throw new WasiErrno(ERRNO.EXIST);
      if (node.type === FILETYPE.SYMBOLIC_LINK) {
        throw new WasiErrno(oflags & OFLAGS.DIRECTORY ? ERRNO.NOTDIR : ERRNO.LOOP);
      }
      if (oflags & OFLAGS.DIRECTORY && !node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
      if (found.slash && !node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
      if (node.isDir && (write || oflags & OFLAGS.TRUNC)) throw new WasiErrno(ERRNO.ISDIR);
      if (oflags & OFLAGS.TRUNC) {
        this.#dirFd(dirFd, R.PATH_FILESTAT_SET_SIZE);
        if (node.size > 0) {
          this.#resize(node, 0n);
          node.mtim = node.ctim = this.#now();
        }
      }
    }
    const fd = this.#freeFd();
    const mask = node.isDir ? DIR_RIGHTS : FILE_RIGHTS;
    this.#fds.set(fd, {
      node,
      base: base & mask,
      inheriting,
      flags: fdflags,
      offset: 0n,
      readable: (base & (R.FD_READ | R.FD_READDIR)) !== 0n,
      writable: write && !node.isDir,
      restricted: false,
      preopen: null,
    });
    node.open++;
    return fd;
  }

  /** `path_create_directory`. */
  mkdir(dirFd: number, path: string | Uint8Array): void {
    const found = this.#resolve(this.#dirFd(dirFd, R.PATH_CREATE_DIRECTORY), path, false);
    if (found.node !== undefined || found.name === null) throw new WasiErrno(ERRNO.EXIST);
    this.#create(found, FILETYPE.DIRECTORY);
  }

  /** `path_remove_directory`. */
  rmdir(dirFd: number, path: string | Uint8Array): void {
    const found = this.#resolve(this.#dirFd(dirFd, R.PATH_REMOVE_DIRECTORY), path, false);
    const node = found.node;
    if (found.name === null) throw new WasiErrno(ERRNO.INVAL);
    if (node === undefined) throw new WasiErrno(ERRNO.NOENT);
    if (!node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
    if (node.entries.size > 0) throw new WasiErrno(ERRNO.NOTEMPTY);
    this.#unlink(found.dir!, found.name);
  }

  /** `path_unlink_file`. */
  unlink(dirFd: number, path: string | Uint8Array): void {
    const found = this.#resolve(this.#dirFd(dirFd, R.PATH_UNLINK_FILE), path, false);
    const node = found.node;
    if (node === undefined) throw new WasiErrno(ERRNO.NOENT);
    if (node.isDir || found.name === null) throw new WasiErrno(ERRNO.ISDIR);
    if (found.slash) throw new WasiErrno(ERRNO.NOTDIR);
    this.#unlink(found.dir!, found.name);
  }

  /** `path_filestat_get`. */
  pathFilestat(dirFd: number, lookup: number, path: string | Uint8Array): WasiFilestat {
    const d = this.#dirFd(dirFd, R.PATH_FILESTAT_GET);
    return this.#stat(this.#existing(this.#resolve(d, path, (lookup & LOOKUP_FOLLOW) !== 0)));
  }

  /** `path_filestat_set_times`. */
  pathSetTimes(
    dirFd: number,
    lookup: number,
    path: string | Uint8Array,
    atim: bigint,
    mtim: bigint,
    fst: number,
  ): void {
    const d = this.#dirFd(dirFd, R.PATH_FILESTAT_SET_TIMES);
    const node = this.#existing(this.#resolve(d, path, (lookup & LOOKUP_FOLLOW) !== 0));
    this.#times(node, atim, mtim, fst);
  }

  /** `path_link`: a new hard link to an existing file or link (`lookup` must not follow). */
  link(
    oldFd: number,
    lookup: number,
    oldPath: string | Uint8Array,
    newFd: number,
    newPath: string | Uint8Array,
  ): void {
    // Following a link to link its target is refused (EINVAL), as in wasmtime: a link to a
    // link is a link to the link itself.
    const source = this.#dirFd(oldFd, R.PATH_LINK_SOURCE);
    if (lookup & LOOKUP_FOLLOW) throw new WasiErrno(ERRNO.INVAL);
    const from = this.#resolve(source, oldPath, false);
    const to = this.#resolve(this.#dirFd(newFd, R.PATH_LINK_TARGET), newPath, false);
    const node = this.#existing(from);
    if (node.isDir) throw new WasiErrno(ERRNO.PERM);
    if (to.node !== undefined || to.name === null) throw new WasiErrno(ERRNO.EXIST);
    if (to.slash) throw new WasiErrno(ERRNO.NOENT);
    this.#canCreate(to);
    this.#link(to.dir!, to.name, node);
    node.nlink++;
    node.ctim = this.#now();
  }

  /** `path_symlink`: a link at `path` with `target` as is (a relative target only). */
  symlink(target: string | Uint8Array, dirFd: number, path: string | Uint8Array): void {
    const text = _text(target);
    if (text === "") throw new WasiErrno(ERRNO.NOENT);
    if (new TextEncoder().encode(text).length > TREE_MAX_PATH_BYTES) {
      throw new WasiErrno(ERRNO.NAMETOOLONG);
    }
    if (text.includes("\0")) throw new WasiErrno(ERRNO.INVAL);
    // A link could only ever point outside the preopen with an absolute target: refused at
    // creation (as wasmtime does), and such a link from the input tree resolves to EPERM.
    if (text.startsWith("/")) throw new WasiErrno(ERRNO.PERM);
    const found = this.#resolve(this.#dirFd(dirFd, R.PATH_SYMLINK), path, false);
    if (found.node !== undefined || found.name === null) throw new WasiErrno(ERRNO.EXIST);
    if (found.slash) throw new WasiErrno(ERRNO.NOENT);
    this.#create(found, FILETYPE.SYMBOLIC_LINK).target = text;
  }

  /** `path_readlink`: the target's bytes (the caller truncates to its buffer). */
  readlink(dirFd: number, path: string | Uint8Array): Uint8Array {
    const found = this.#resolve(this.#dirFd(dirFd, R.PATH_READLINK), path, false);
    const node = this.#existing(found);
    if (node.type !== FILETYPE.SYMBOLIC_LINK) throw new WasiErrno(ERRNO.INVAL);
    return new TextEncoder().encode(node.target);
  }

  /** `path_rename`. */
  rename(
    oldFd: number,
    oldPath: string | Uint8Array,
    newFd: number,
    newPath: string | Uint8Array,
  ): void {
    const from = this.#resolve(this.#dirFd(oldFd, R.PATH_RENAME_SOURCE), oldPath, false);
    const to = this.#resolve(this.#dirFd(newFd, R.PATH_RENAME_TARGET), newPath, false);
    const node = from.node;
    if (node === undefined) throw new WasiErrno(ERRNO.NOENT);
    if (from.name === null || to.name === null) throw new WasiErrno(ERRNO.BUSY);
    if ((from.slash || to.slash) && !node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
    const old = to.node;
    if (old === node) return;
    if (node.isDir) {
      for (let d: _Node | null = to.dir; d; d = d.parent) {
        if (d === node) throw new WasiErrno(ERRNO.INVAL);
      }
      if (old && !old.isDir) throw new WasiErrno(ERRNO.NOTDIR);
      if (old && old.entries.size > 0) throw new WasiErrno(ERRNO.NOTEMPTY);
    } else if (old?.isDir) throw new WasiErrno(ERRNO.ISDIR);
    this.#canCreate(to, node);
    if (old) this.#unlink(to.dir!, to.name);
    from.dir!.entries.delete(from.name);
    this.#link(to.dir!, to.name, node);
    const now = this.#now();
    node.ctim = from.dir!.mtim = to.dir!.mtim = now;
  }

  // --- internals ---------------------------------------------------------------------------

  #fd(fd: number, right = 0n): _Fd {
    const f = this.#fds.get(fd);
    if (f === undefined) throw new WasiErrno(ERRNO.BADF);
    if (f.restricted && (f.base & right) !== right) throw new WasiErrno(ERRNO.NOTCAPABLE);
    return f;
  }

  /** A descriptor of a regular file (a directory's is `EBADF` for file calls). */
  #file(fd: number, right: bigint): _Fd {
    const f = this.#fds.get(fd);
    if (f === undefined || f.node.isDir) throw new WasiErrno(ERRNO.BADF);
    if (f.restricted && (f.base & right) !== right) throw new WasiErrno(ERRNO.NOTCAPABLE);
    return f;
  }

  #dirFd(fd: number, right: bigint): _Fd {
    const f = this.#fds.get(fd);
    if (f === undefined) throw new WasiErrno(ERRNO.BADF);
    if (!f.node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
    if (f.restricted && (f.base & right) !== right) throw new WasiErrno(ERRNO.NOTCAPABLE);
    return f;
  }

  #freeFd(): number {
    for (let fd = 3; fd < MAX_FDS; fd++) if (!this.#fds.has(fd) && !this.#taken(fd)) return fd;
    throw new WasiErrno(ERRNO.MFILE);
  }

  #existing(found: _Found): _Node {
    const node = found.node;
    if (node === undefined) throw new WasiErrno(ERRNO.NOENT);
    if (found.slash && !node.isDir) throw new WasiErrno(ERRNO.NOTDIR);
    return node;
  }

  /**
   * Resolve `path` from a directory descriptor: every link before the last component is
   * followed, the last one too when `follow` is set or the path ends with `/`.
   */
  #resolve(from: _Fd, path: string | Uint8Array, follow: boolean): _Found {
    if (typeof path !== "string" && path.length > TREE_MAX_PATH_BYTES) {
      throw new WasiErrno(ERRNO.NAMETOOLONG);
    }
    const text = _text(path);
    if (text === "") throw new WasiErrno(ERRNO.NOENT);
    if (text.includes("\0")) throw new WasiErrno(ERRNO.INVAL);
    if (text.startsWith("/")) throw new WasiErrno(ERRNO.PERM);
    const slash = text.endsWith("/");
    const stack: _Node[] = [from.node];
    let queue = text.split("/").filter((c) => c !== "");
    let links = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      const last = queue.length === 0;
      const cur = stack.at(-1)!;
      if (c === ".") {
        if (last) return { dir: null, name: null, node: cur, slash };
        continue;
      }
      if (c === "..") {
        if (stack.length === 1) throw new WasiErrno(ERRNO.PERM);
        stack.pop();
        if (last) return { dir: null, name: null, node: stack.at(-1)!, slash };
        continue;
      }
      if (new TextEncoder().encode(c).length > TREE_MAX_NAME_BYTES) {
        throw new WasiErrno(ERRNO.NAMETOOLONG);
      }
      const child = cur.entries.get(c);
      if (child?.type === FILETYPE.SYMBOLIC_LINK && (!last || follow || slash)) {
        if (++links > MAX_LINKS) throw new WasiErrno(ERRNO.LOOP);
        if (child.target.startsWith("/")) throw new WasiErrno(ERRNO.PERM);
        queue = [...child.target.split("/").filter((x) => x !== ""), ...queue];
        if (queue.length === 0) return { dir: null, name: null, node: cur, slash };
        continue;
      }
      if (last) return { dir: cur, name: c, node: child, slash };
      if (child === undefined) throw new WasiErrno(ERRNO.NOENT);
      if (!child.isDir) throw new WasiErrno(ERRNO.NOTDIR);
      stack.push(child);
    }
    return { dir: null, name: null, node: stack.at(-1)!, slash };
  }

  /**
   * Refuse to put `node` (or a new entry) at `name` in `found.dir` when the directory was
   * removed, or when a path in the tree would get too long or too deep.
   */
  #canCreate(found: _Found, node?: _Node): void {
    const dir = found.dir!;
    if (dir.nlink === 0) throw new WasiErrno(ERRNO.NOENT); // removed while open
    const [levels, longest] = node?.isDir ? _extent(node) : [1, 0];
    let bytes = _bytes(found.name!) + longest;
    for (let d: _Node | null = dir; d?.parent; d = d.parent) bytes += 1 + _bytes(d.name);
    if (_depth(dir) + levels > TREE_MAX_DEPTH || bytes > TREE_MAX_PATH_BYTES) {
      throw new WasiErrno(ERRNO.NAMETOOLONG);
    }
  }

  #create(found: _Found, type: number): _Node {
    this.#canCreate(found);
    const node = this.#node(type);
    this.#link(found.dir!, found.name!, node);
    found.dir!.mtim = found.dir!.ctim = node.mtim;
    return node;
  }

  #node(type: number, root = false): _Node {
    if (!root) {
      if (this.#count >= this.#maxFiles) {
        throw new WasiFsLimitError(
          "fs_files_limit",
          `Cannot finish job: its files exceeded the ${this.#maxFiles} entry cap`,
        );
      }
      this.#count++;
    }
    return new _Node(type, this.#nextIno++, this.#now());
  }

  #link(dir: _Node, name: string, node: _Node): void {
    dir.entries.set(name, node);
    if (node.isDir) {
      node.parent = dir;
      node.name = name;
    }
  }

  #unlink(dir: _Node, name: string): void {
    const node = dir.entries.get(name)!;
    dir.entries.delete(name);
    node.nlink--;
    dir.mtim = dir.ctim = node.ctim = this.#now();
    this.#release(node);
  }

  /** Forget a node nothing links or holds open any more. */
  #release(node: _Node): void {
    if (node.nlink > 0 || node.open > 0 || node === this.#root) return;
    this.#count--;
    this.#bytes -= node.size;
    node.data = new Uint8Array(0);
    node.size = 0;
  }

  #walkTree(path: string): _Node {
    let node = this.#root;
    for (const part of path.split("/")) {
      const next = node.entries.get(part);
      if (!next?.isDir) throw new TypeError(`Cannot open '${path}': not a directory of the tree`);
      node = next;
    }
    return node;
  }

  #resize(node: _Node, size: bigint): void {
    if (size > BigInt(node.size)) {
      this.#grow(node, Number(size > 2n ** 53n ? 2n ** 53n : size) - node.size);
    } else {
      const n = Number(size);
      node.data.fill(0, n, node.size);
      this.#bytes -= node.size - n;
      node.size = n;
    }
  }

  #grow(node: _Node, more: number): void {
    if (this.#bytes + more > this.#maxBytes) {
      throw new WasiFsLimitError(
        "fs_bytes_limit",
        `Cannot finish job: its files exceeded the ${this.#maxBytes} byte cap`,
      );
    }
    const size = node.size + more;
    if (size > node.data.length) {
      // Doubling, but never past what the cap leaves: a file holds at most twice its size.
      const headroom = this.#maxBytes - this.#bytes - more;
      const next = new Uint8Array(
        Math.min(Math.max(size, node.data.length * 2, 64), size + headroom),
      );
      next.set(node.data.subarray(0, node.size));
      node.data = next;
    }
    this.#bytes += more;
    node.size = size;
  }

  #stat(node: _Node): WasiFilestat {
    let nlink = BigInt(node.nlink);
    if (node.isDir) {
      nlink = 2n;
      for (const child of node.entries.values()) if (child.isDir) nlink++;
    }
    const size = node.type === FILETYPE.SYMBOLIC_LINK
      ? BigInt(new TextEncoder().encode(node.target).length)
      : BigInt(node.size);
    return {
      dev: 1n,
      ino: node.ino,
      filetype: node.type,
      nlink,
      size,
      atim: node.atim,
      mtim: node.mtim,
      ctim: node.ctim,
    };
  }

  #times(node: _Node, atim: bigint, mtim: bigint, fst: number): void {
    if (
      fst & ~0xf || (fst & FST.ATIM && fst & FST.ATIM_NOW) || (fst & FST.MTIM && fst & FST.MTIM_NOW)
    ) {
      throw new WasiErrno(ERRNO.INVAL);
    }
    const now = this.#now();
    if (fst & FST.ATIM) node.atim = atim;
    if (fst & FST.ATIM_NOW) node.atim = now;
    if (fst & FST.MTIM) node.mtim = mtim;
    if (fst & FST.MTIM_NOW) node.mtim = now;
    node.ctim = now;
  }
}

function _text(path: string | Uint8Array): string {
  if (typeof path === "string") return path;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(path);
  } catch {
    throw new WasiErrno(ERRNO.ILSEQ);
  }
}

/** Components from the root to `dir` (the root is 0). */
function _depth(dir: _Node): number {
  let n = 0;
  for (let d = dir; d.parent; d = d.parent) n++;
  return n;
}

/**
 * Of a directory's subtree: its levels (itself included) and the longest path below it in
 * UTF-8 bytes (`/` included).
 */
function _extent(dir: _Node): [number, number] {
  let levels = 0;
  let longest = 0;
  for (const [name, child] of dir.entries) {
    const [l, b] = child.isDir ? _extent(child) : [1, 0];
    levels = Math.max(levels, l);
    longest = Math.max(longest, 1 + _bytes(name) + b);
  }
  return [levels + 1, longest];
}

function _bytes(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** A job's filesystem as the sandbox uses it: see {@linkcode openJobFiles}. */
export interface JobFiles {
  /** The filesystem, for `createWasi`. */
  fs: WasiFs;
  /** The files now, encoded (`encodeFileTree`). */
  encode(): Uint8Array;
}

/**
 * Build a job's filesystem from its encoded tree, preopens and caps (a `SandboxFiles`). The
 * sandbox imports this module, and calls this, only for a job that has files.
 *
 * @throws {WasiFsLimitError} If the tree is over the caps (kind of the cap).
 * @throws {SyntaxError} If the tree is not a valid encoding.
 *
 * @example
 * ```ts
 * import { openJobFiles } from "./wasi_fs.ts";
 * import { decodeFileTree, encodeFileTree } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const files = openJobFiles({
 *   tree: encodeFileTree({ entries: [{ path: "d", type: "dir" }] }),
 *   preopens: [{ name: "/", path: "" }],
 *   maxBytes: 10,
 *   maxFiles: 10,
 * });
 * files.fs.mkdir(3, "d/e");
 * assert.deepEqual(decodeFileTree(files.encode()).entries.map((e) => e.path), ["d", "d/e"]);
 * ```
 */
export function openJobFiles(files: {
  tree: Uint8Array;
  preopens: readonly WasiPreopen[];
  maxBytes: number;
  maxFiles: number;
}): JobFiles {
  const { tree, preopens, maxBytes, maxFiles } = files;
  let decoded: FileTree;
  try {
    decoded = decodeFileTree(tree, { maxBytes, maxFiles });
  } catch (error) {
    if (error instanceof FileTreeLimitError) {
      const kind = error.kind === "bytes" ? "fs_bytes_limit" : "fs_files_limit";
      throw new WasiFsLimitError(kind, error.message);
    }
    throw error;
  }
  const fs = new WasiFs({ tree: decoded, preopens, maxBytes, maxFiles });
  return { fs, encode: () => encodeFileTree(fs.tree()) };
}
