import assert from "node:assert/strict";
import { ERRNO, RIGHTS, WasiErrno, WasiFs, WasiFsLimitError } from "./wasi_fs.ts";
import { makeFileTree, type TreeEntry } from "./file_tree.ts";

const ALL = (1n << 28n) - 1n; // every right a file or directory can have
/** What wasi-libc asks for when it opens a directory read-only: no write rights. */
const DIR = ALL & ~(RIGHTS.FD_WRITE | RIGHTS.FD_ALLOCATE | RIGHTS.FD_FILESTAT_SET_SIZE);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function fs(entries: TreeEntry[] = [], caps = { maxBytes: 1 << 20, maxFiles: 100 }) {
  return new WasiFs({
    tree: makeFileTree(entries),
    preopens: [{ name: "/", path: "" }],
    ...caps,
    now: () => 42n,
  });
}

function errno(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    if (error instanceof WasiErrno) return error.wasiErrno;
    throw error;
  }
  return 0;
}

const file = (path: string, text: string): TreeEntry => ({
  path,
  type: "file",
  executable: false,
  data: enc(text),
});

Deno.test("WasiFs opens, reads and writes files of its tree; the tree comes back changed", () => {
  const f = fs([{ path: "d", type: "dir" }, file("d/a", "abc")]);
  const fd = f.open(3, 1, "d/a", 0, ALL, ALL, 0);
  const buf = new Uint8Array(5);
  assert.equal(f.read(fd, [buf]), 3);
  assert.equal(dec(buf.subarray(0, 3)), "abc");
  assert.equal(f.write(fd, [enc("de")]), 2);
  assert.equal(f.seek(fd, -5n, 2), 0n);
  assert.equal(f.read(fd, [buf]), 5);
  assert.equal(dec(buf), "abcde");
  const out = f.tree().entries;
  assert.deepEqual(out.map((e) => e.path), ["d", "d/a"]);
  assert.equal(dec((out[1] as { data: Uint8Array }).data), "abcde");
});

Deno.test("WasiFs path errors: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, trailing slashes", () => {
  const f = fs([{ path: "d", type: "dir" }, file("d/a", "x"), file("b", "")]);
  assert.equal(errno(() => f.open(3, 1, "nope", 0, ALL, ALL, 0)), ERRNO.NOENT);
  assert.equal(errno(() => f.open(3, 1, "b", 1 | 4, ALL, ALL, 0)), ERRNO.EXIST);
  assert.equal(errno(() => f.open(3, 1, "b/", 0, 0n, 0n, 0)), ERRNO.NOTDIR);
  assert.equal(errno(() => f.open(3, 1, "b/x", 0, 0n, 0n, 0)), ERRNO.NOTDIR);
  assert.equal(errno(() => f.open(3, 1, "d", 0, RIGHTS.FD_WRITE, 0n, 0)), ERRNO.ISDIR);
  assert.equal(errno(() => f.open(3, 1, "new/", 1, 0n, 0n, 0)), ERRNO.ISDIR);
  assert.equal(errno(() => f.open(3, 1, "", 0, 0n, 0n, 0)), ERRNO.NOENT);
  assert.equal(errno(() => f.mkdir(3, "d")), ERRNO.EXIST);
  assert.equal(errno(() => f.rmdir(3, "d")), ERRNO.NOTEMPTY);
  assert.equal(errno(() => f.rmdir(3, "b")), ERRNO.NOTDIR);
  assert.equal(errno(() => f.unlink(3, "d")), ERRNO.ISDIR);
  assert.equal(errno(() => f.unlink(3, "b/")), ERRNO.NOTDIR);
  assert.equal(errno(() => f.open(3, 1, new Uint8Array([0xff]), 0, 0n, 0n, 0)), ERRNO.ILSEQ);
  f.unlink(3, "d/a");
  f.rmdir(3, "d/");
  assert.deepEqual(f.tree().entries.map((e) => e.path), ["b"]);
});

Deno.test("WasiFs never leaves the directory a path starts from (EPERM)", () => {
  const f = fs([
    { path: "d", type: "dir" },
    { path: "d/up", type: "symlink", target: "../.." },
    { path: "abs", type: "symlink", target: "/etc" },
  ]);
  assert.equal(errno(() => f.open(3, 1, "..", 0, 0n, 0n, 0)), ERRNO.PERM);
  assert.equal(errno(() => f.open(3, 1, "/etc/passwd", 0, 0n, 0n, 0)), ERRNO.PERM);
  assert.equal(errno(() => f.open(3, 1, "d/up/x", 0, 0n, 0n, 0)), ERRNO.PERM);
  assert.equal(errno(() => f.open(3, 1, "abs", 0, 0n, 0n, 0)), ERRNO.PERM);
  // A directory opened from the preopen is a root of its own: `..` stops there too.
  const d = f.open(3, 1, "d", 2, DIR, ALL, 0);
  assert.equal(errno(() => f.open(d, 1, "../abs", 0, 0n, 0n, 0)), ERRNO.PERM);
  assert.equal(f.open(3, 1, "d/..", 2, 0n, 0n, 0) > 3, true);
});

Deno.test("WasiFs follows at most 40 links (ELOOP) and honours no-follow", () => {
  const f = fs([
    { path: "a", type: "symlink", target: "b" },
    { path: "b", type: "symlink", target: "a" },
    { path: "l", type: "symlink", target: "t" },
    file("t", "T"),
  ]);
  assert.equal(errno(() => f.open(3, 1, "a", 0, 0n, 0n, 0)), ERRNO.LOOP);
  assert.equal(errno(() => f.open(3, 0, "l", 0, 0n, 0n, 0)), ERRNO.LOOP);
  assert.equal(errno(() => f.open(3, 0, "l", 2, 0n, 0n, 0)), ERRNO.NOTDIR);
  assert.equal(f.pathFilestat(3, 0, "l").filetype, 7);
  assert.equal(f.pathFilestat(3, 1, "l").filetype, 4);
  assert.equal(dec(f.readlink(3, "l")), "t");
  assert.equal(errno(() => f.readlink(3, "t")), ERRNO.INVAL);
  // A chain of exactly 40 links resolves; 41 do not.
  const chain: TreeEntry[] = [file("end", "")];
  for (let i = 0; i < 41; i++) {
    chain.push({ path: `c${i}`, type: "symlink", target: i === 0 ? "end" : `c${i - 1}` });
  }
  const g = fs(chain);
  assert.equal(g.pathFilestat(3, 1, "c39").filetype, 4);
  assert.equal(errno(() => g.pathFilestat(3, 1, "c40")), ERRNO.LOOP);
});

Deno.test("WasiFs hard links share contents and count; rename replaces and moves", () => {
  const f = fs([file("a", "1"), { path: "d", type: "dir" }, { path: "e", type: "dir" }]);
  f.link(3, 0, "a", 3, "b");
  assert.equal(f.pathFilestat(3, 0, "a").nlink, 2n);
  assert.equal(f.pathFilestat(3, 0, "a").ino, f.pathFilestat(3, 0, "b").ino);
  assert.equal(errno(() => f.link(3, 0, "d", 3, "d2")), ERRNO.PERM);
  f.rename(3, "a", 3, "d/x");
  assert.equal(f.pathFilestat(3, 0, "b").nlink, 2n);
  assert.equal(errno(() => f.rename(3, "d", 3, "d/in")), ERRNO.INVAL);
  assert.equal(errno(() => f.rename(3, "e", 3, "d")), ERRNO.NOTEMPTY);
  assert.equal(errno(() => f.rename(3, "b", 3, "e")), ERRNO.ISDIR);
  f.rename(3, "d", 3, "e");
  assert.deepEqual(f.tree().entries.map((e) => e.path), ["b", "e", "e/x"]);
});

Deno.test("WasiFs rights: read/write follow the open mode; shrunk rights are enforced", () => {
  const f = fs([file("a", "xyz")]);
  const fd = f.open(3, 1, "a", 0, RIGHTS.FD_READ | RIGHTS.FD_SEEK, 0n, 0);
  assert.equal(f.fdstat(fd).base, RIGHTS.FD_READ | RIGHTS.FD_SEEK);
  assert.equal(errno(() => f.write(fd, [enc("q")])), ERRNO.BADF); // not opened for writing
  // Rights it did not ask for do not stop metadata calls (as in wasmtime)...
  const bare = f.open(3, 1, "a", 0, 0n, 0n, 0);
  assert.equal(f.filestat(bare).size, 3n);
  assert.equal(errno(() => f.read(bare, [new Uint8Array(1)])), ERRNO.BADF);
  assert.equal(errno(() => f.setRights(fd, RIGHTS.FD_WRITE, 0n)), ERRNO.NOTCAPABLE);
  // ...but once shrunk, every call checks them.
  f.setRights(fd, RIGHTS.FD_SEEK, 0n);
  assert.equal(errno(() => f.filestat(fd)), ERRNO.NOTCAPABLE);
  assert.equal(errno(() => f.read(fd, [new Uint8Array(1)])), ERRNO.NOTCAPABLE);
  f.setRights(3, RIGHTS.PATH_OPEN, RIGHTS.FD_READ);
  assert.equal(errno(() => f.mkdir(3, "x")), ERRNO.NOTCAPABLE);
  assert.equal(errno(() => f.open(3, 1, "a", 0, RIGHTS.FD_WRITE, 0n, 0)), ERRNO.NOTCAPABLE);
});

Deno.test("WasiFs descriptor calls on a directory are EBADF; readdir on a file ENOTDIR", () => {
  const f = fs([file("a", "x")]);
  const fd = f.open(3, 1, "a", 0, ALL, ALL, 0);
  assert.equal(errno(() => f.read(3, [new Uint8Array(1)])), ERRNO.BADF);
  assert.equal(errno(() => f.write(3, [enc("x")])), ERRNO.BADF);
  assert.equal(errno(() => f.seek(3, 0n, 1)), ERRNO.BADF);
  assert.equal(errno(() => f.setSize(3, 0n)), ERRNO.BADF);
  assert.equal(errno(() => f.readdir(fd, 0n, 100)), ERRNO.NOTDIR);
  assert.equal(errno(() => f.open(fd, 1, "x", 0, 0n, 0n, 0)), ERRNO.NOTDIR);
  assert.equal(errno(() => f.prestat(fd)), ERRNO.BADF);
  assert.equal(errno(() => f.close(99)), ERRNO.BADF);
});

Deno.test("WasiFs readdir gives . .. and sorted names from a cookie, cut at the buffer", () => {
  const f = fs([file("b", ""), file("a", ""), { path: "c", type: "dir" }]);
  const names = (bytes: Uint8Array) => {
    const out: string[] = [];
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 24 <= bytes.length;) {
      const len = v.getUint32(at + 16, true);
      out.push(
        `${dec(bytes.subarray(at + 24, at + 24 + len))}:${bytes[at + 20]}:${
          v.getBigUint64(at, true)
        }`,
      );
      at += 24 + len;
    }
    return out;
  };
  assert.deepEqual(names(f.readdir(3, 0n, 4096)), [".:3:1", "..:3:2", "a:4:3", "b:4:4", "c:3:5"]);
  assert.deepEqual(names(f.readdir(3, 3n, 4096)), ["b:4:4", "c:3:5"]);
  assert.equal(f.readdir(3, 9n, 4096).length, 0);
  assert.equal(f.readdir(3, 0n, 30).length, 30); // a full buffer: the caller reads on
  assert.equal(f.readdir(3, 0n, 2 ** 32 - 1).length, 5 * 24 + 1 + 2 + 3);
});

Deno.test("WasiFs renumber replaces the target; a replaced or closed preopen is gone", () => {
  const f = fs([file("a", "A")]);
  const fd = f.open(3, 1, "a", 0, ALL, ALL, 0);
  assert.equal(f.prestat(3), "/");
  const dir = f.open(3, 1, ".", 2, DIR, ALL, 0);
  f.renumber(dir, 3);
  assert.equal(errno(() => f.prestat(3)), ERRNO.BADF);
  assert.equal(f.has(dir), false);
  assert.equal(errno(() => f.renumber(fd, 100)), ERRNO.BADF);
  f.close(3);
  assert.equal(errno(() => f.open(3, 1, "a", 0, 0n, 0n, 0)), ERRNO.BADF);
});

Deno.test("WasiFs caps: bytes and entries stop the job with their own kind", () => {
  const f = fs([], { maxBytes: 10, maxFiles: 2 });
  const fd = f.open(3, 1, "a", 1, ALL, ALL, 0);
  f.write(fd, [new Uint8Array(10)]);
  assert.throws(
    () => f.write(fd, [new Uint8Array(1)]),
    (e) => e instanceof WasiFsLimitError && e.kind === "fs_bytes_limit",
  );
  assert.throws(
    () => f.setSize(fd, 2n ** 62n),
    (e) => e instanceof WasiFsLimitError && e.kind === "fs_bytes_limit",
  );
  f.mkdir(3, "d");
  assert.throws(
    () => f.mkdir(3, "e"),
    (e) => e instanceof WasiFsLimitError && e.kind === "fs_files_limit",
  );
  // Freed space and entries can be used again; a file unlinked while open counts until closed.
  f.unlink(3, "a");
  assert.throws(() => f.mkdir(3, "e"), WasiFsLimitError);
  f.close(fd);
  f.mkdir(3, "e");
  const g = f.open(3, 1, "d/..", 2, DIR, ALL, 0);
  assert.ok(g > 3);
});

Deno.test("WasiFs truncate, pwrite past the end and append fill and place bytes as POSIX does", () => {
  const f = fs([file("a", "abcdef")]);
  const fd = f.open(3, 1, "a", 0, ALL, ALL, 0);
  f.setSize(fd, 2n);
  f.setSize(fd, 4n);
  f.write(fd, [enc("Z")], 6n);
  const buf = new Uint8Array(8);
  assert.equal(f.read(fd, [buf], 0n), 7);
  assert.deepEqual([...buf.subarray(0, 7)], [97, 98, 0, 0, 0, 0, 90]);
  const app = f.open(3, 1, "a", 0, ALL, ALL, 1);
  f.write(app, [enc("!")]);
  assert.equal(f.filestat(app).size, 8n);
  assert.equal(f.tell(app), 8n);
  assert.equal(errno(() => f.seek(fd, -1n, 0)), ERRNO.INVAL);
  assert.equal(errno(() => f.setTimes(fd, 0n, 0n, 1 | 2)), ERRNO.INVAL);
  f.setTimes(fd, 5n, 6n, 1 | 4);
  assert.equal(f.filestat(fd).atim, 5n);
  assert.equal(f.filestat(fd).mtim, 6n);
});

Deno.test("the sandbox reaches wasi_fs.ts only by a dynamic import: a job without files loads none of it", async () => {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("./sandbox_worker.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(success);
  const graph = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { specifier: string; code?: unknown; isDynamic?: boolean }[];
    }[];
  };
  const loads = graph.modules.flatMap((m) =>
    (m.dependencies ?? [])
      .filter((d) => d.specifier === "./wasi_fs.ts" && d.code !== undefined)
      .map((d) => `${m.specifier.split("/").at(-1)}${d.isDynamic ? " (dynamic)" : ""}`)
  );
  assert.deepEqual(loads, ["sandbox_worker.ts (dynamic)"]);
});

Deno.test("WasiFs preopens several directories of one tree as fds 3, 4, ... by name", () => {
  const f = new WasiFs({
    tree: makeFileTree([
      { path: "in", type: "dir" },
      file("in/x", "X"),
      { path: "work", type: "dir" },
      { path: "work/deep", type: "dir" },
    ]),
    preopens: [{ name: "/in", path: "in" }, { name: "scratch", path: "work/deep" }],
    maxBytes: 100,
    maxFiles: 10,
  });
  assert.equal(f.prestat(3), "/in");
  assert.equal(f.prestat(4), "scratch");
  assert.equal(errno(() => f.prestat(5)), ERRNO.BADF);
  assert.equal(errno(() => f.open(4, 1, "../../in/x", 0, 0n, 0n, 0)), ERRNO.PERM);
  f.link(3, 0, "x", 4, "y");
  assert.deepEqual(f.tree().entries.map((e) => e.path), [
    "in",
    "in/x",
    "work",
    "work/deep",
    "work/deep/y",
  ]);
});

Deno.test("WasiFs O_CREAT|O_EXCL never follows a last link, even a dangling one", () => {
  const f = fs([{ path: "l", type: "symlink", target: "missing" }]);
  assert.equal(errno(() => f.open(3, 1, "l", 1 | 4, RIGHTS.FD_WRITE, 0n, 0)), ERRNO.EXIST);
  assert.deepEqual(f.tree().entries.map((e) => e.path), ["l"]);
  f.open(3, 1, "l", 1, RIGHTS.FD_WRITE, 0n, 0); // without EXCL it creates the target
  assert.deepEqual(f.tree().entries.map((e) => e.path), ["l", "missing"]);
});

Deno.test("WasiFs refuses a symlink with an absolute target (EPERM): it could only point outside", () => {
  const f = fs();
  assert.equal(errno(() => f.symlink("/", 3, "l")), ERRNO.PERM);
  assert.equal(errno(() => f.symlink("/etc/passwd", 3, "l")), ERRNO.PERM);
  assert.equal(errno(() => f.symlink("a/../b", 3, "l")), 0);
});
