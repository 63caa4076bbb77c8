/**
 * File trees and the host: read host directories into one {@linkcode FileTree} (under caps,
 * never following a link) and write a tree out to a new directory, atomically.
 *
 * @module
 */
import {
  type FileTree,
  FileTreeLimitError,
  makeFileTree,
  type TreeEntry,
  type TreeLimits,
  treePathProblem,
} from "./file_tree.ts";
import { fsErrorReason } from "../util/fs_error.ts";

/** One host directory and where the job sees it. */
export interface TreeMount {
  /** The host directory. */
  host: string;
  /**
   * Where it appears in the tree, relative and `/`-separated; `""` for the root. Every
   * directory on the way is made.
   */
  at: string;
}

/**
 * Parse a `HOST[::GUEST]` mount spec (as `run --dir` takes it): GUEST defaults to the host
 * directory's name; `::/` mounts at the root. `name` is GUEST as given (what the job's
 * `fd_prestat_dir_name` reports), `at` its place in the tree.
 *
 * @throws {TypeError} If HOST is empty or GUEST cannot be a place in a tree (`..`, empty).
 *
 * @example
 * ```ts
 * import { parseTreeMount } from "./host_tree.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseTreeMount("in::/"), { host: "in", at: "", name: "/" });
 * assert.deepEqual(parseTreeMount("a/data/"), { host: "a/data/", at: "data", name: "data" });
 * ```
 */
export function parseTreeMount(spec: string): TreeMount & { name: string } {
  const cut = spec.indexOf("::");
  const host = cut < 0 ? spec : spec.slice(0, cut);
  const name = cut < 0 ? host.replace(/\/+$/, "").split("/").at(-1) ?? "" : spec.slice(cut + 2);
  if (host === "") throw new TypeError(`Cannot use '${spec}': no host directory`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (name === "" || parts.includes("..")) {
    throw new TypeError(`Cannot use '${spec}': give where the job sees it, as HOST::GUEST`);
  }
  return { host, at: parts.join("/"), name };
}

/**
 * Read host directories into one tree: each mount's contents appear under its `at`. Regular
 * files keep their bytes and only their owner-executable bit; symbolic links are kept as links
 * with their target, never followed; directories recurse; anything else (a socket, a FIFO, a
 * device) is refused. The caps are checked while reading, before a file is read whole.
 *
 * @throws {FileTreeLimitError} If the files exceed `limits`.
 * @throws {TypeError} If mounts overlap or a name cannot be part of a tree.
 * @throws {Error} If a host path cannot be read (`Cannot read '<path>': <reason>`).
 *
 * @example
 * ```ts
 * import { readHostTree } from "./host_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "hi");
 * const tree = await readHostTree([{ host: dir, at: "data" }], { maxFiles: 10, maxBytes: 10 });
 * assert.deepEqual(tree.entries.map((e) => e.path), ["data", "data/a.txt"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readHostTree(
  mounts: readonly TreeMount[],
  limits: TreeLimits,
  signal?: AbortSignal,
): Promise<FileTree> {
  const ats = mounts.map((m) => m.at);
  for (const [i, a] of ats.entries()) {
    for (const b of ats.slice(i + 1)) {
      if (a === b || a === "" || b === "" || b.startsWith(a + "/") || a.startsWith(b + "/")) {
        throw new TypeError(`Cannot mount '${mounts[i]!.host}' at '/${a}': it overlaps '/${b}'`);
      }
    }
  }
  const entries = new Map<string, TreeEntry>();
  let bytes = 0;
  const add = (entry: TreeEntry, host: string) => {
    if (entries.has(entry.path)) return;
    const problem = treePathProblem(entry.path);
    if (problem) throw new TypeError(`Cannot put '${entry.path}' in a file tree: ${problem}`);
    if (entries.size >= limits.maxFiles) {
      throw new FileTreeLimitError(
        "files",
        `Cannot read '${host}': more than ${limits.maxFiles} files, directories and links (--fs-max-files)`,
      );
    }
    entries.set(entry.path, entry);
  };
  const walk = async (host: string, at: string): Promise<void> => {
    signal?.throwIfAborted();
    const names: string[] = [];
    await _io(host, async () => {
      for await (const item of Deno.readDir(host)) {
        names.push(item.name);
        if (names.length > limits.maxFiles) break; // the cap refuses it below
      }
    });
    names.sort();
    for (const name of names) {
      const path = `${host}/${name}`;
      const inTree = at === "" ? name : `${at}/${name}`;
      const info = await _io(path, () => Deno.lstat(path));
      if (info.isSymlink) {
        const target = await _io(path, () => Deno.readLink(path));
        add({ path: inTree, type: "symlink", target }, path);
      } else if (info.isDirectory) {
        add({ path: inTree, type: "dir" }, path);
        await walk(path, inTree);
      } else if (info.isFile) {
        add({ path: inTree, type: "file", executable: false, data: new Uint8Array() }, path);
        const data = await _readCapped(path, info, limits.maxBytes - bytes, limits.maxBytes);
        bytes += data.length;
        const executable = ((info.mode ?? 0) & 0o100) !== 0;
        entries.set(inTree, { path: inTree, type: "file", executable, data });
      } else {
        throw new Error(`Cannot read '${path}': not a file, directory or symbolic link`);
      }
    }
  };
  for (const mount of mounts) {
    const info = await _io(mount.host, () => Deno.stat(mount.host));
    if (!info.isDirectory) throw new Error(`Cannot read '${mount.host}': not a directory`);
    const parts = mount.at === "" ? [] : mount.at.split("/");
    for (let n = 1; n <= parts.length; n++) {
      add({ path: parts.slice(0, n).join("/"), type: "dir" }, mount.host);
    }
    await walk(mount.host, mount.at);
  }
  return makeFileTree(entries.values(), limits);
}

/**
 * Write a tree to `dir`, which must not exist or be an empty directory: everything is made in a
 * new temporary directory beside it (files created exclusively, so nothing is followed), then
 * renamed into place; on failure nothing is left. Files get mode 0755 when executable, else
 * 0644; links are made with their target as is.
 *
 * @throws {Error} If `dir` exists and is not an empty directory, or cannot be written.
 *
 * @example
 * ```ts
 * import { writeHostTree } from "./host_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const base = await Deno.makeTempDir();
 * await writeHostTree({ entries: [{ path: "l", type: "symlink", target: "x" }] }, `${base}/out`);
 * assert.equal(await Deno.readLink(`${base}/out/l`), "x");
 * await Deno.remove(base, { recursive: true });
 * ```
 */
export async function writeHostTree(tree: FileTree, dir: string): Promise<void> {
  let existing: Deno.FileInfo | null = null;
  try {
    existing = await Deno.lstat(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw _named(dir, error, "write files to");
  }
  if (existing) {
    if (!existing.isDirectory) throw new Error(`Cannot write files to '${dir}': not a directory`);
    for await (const _ of Deno.readDir(dir)) {
      throw new Error(`Cannot write files to '${dir}': it exists and is not empty`);
    }
  }
  const slash = dir.replace(/\/+$/, "").lastIndexOf("/");
  const parent = slash < 0 ? "." : dir.slice(0, slash) || "/";
  let temp: string;
  try {
    temp = await Deno.makeTempDir({ dir: parent, prefix: ".plasm-out-" });
  } catch (error) {
    throw _named(dir, error, "write files to");
  }
  try {
    for (const entry of tree.entries) {
      const path = `${temp}/${entry.path}`;
      if (entry.type === "dir") await Deno.mkdir(path, { mode: 0o755 });
      else if (entry.type === "symlink") await Deno.symlink(entry.target, path);
      else {
        const mode = entry.executable ? 0o755 : 0o644;
        await Deno.writeFile(path, entry.data, { createNew: true, mode });
        await Deno.chmod(path, mode); // the umask does not decide
      }
    }
    await Deno.chmod(temp, 0o755);
    await Deno.rename(temp, dir);
  } catch (error) {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    throw _named(dir, error, "write files to");
  }
}

/** Read a regular file whole, refusing it when it has more than `room` bytes. */
async function _readCapped(
  path: string,
  seen: Deno.FileInfo,
  room: number,
  cap: number,
): Promise<Uint8Array> {
  const file = await _io(path, () => Deno.open(path, { read: true }));
  try {
    const info = await file.stat();
    // Not the file lstat saw (a link swapped in, say): refuse rather than follow.
    if (!info.isFile || info.ino !== seen.ino || info.dev !== seen.dev) {
      throw new Error(`Cannot read '${path}': it changed while being read`);
    }
    const over = () =>
      new FileTreeLimitError(
        "bytes",
        `Cannot read '${path}': the files would pass the ${cap} byte cap (--fs-max-bytes)`,
      );
    if (info.size > room) throw over();
    const out = new Uint8Array(info.size + 1);
    let at = 0;
    for (;;) {
      const n = await _io(path, () => file.read(out.subarray(at)));
      if (n === null) break;
      at += n;
      if (at > info.size) throw over(); // it grew after the stat
    }
    return out.slice(0, at);
  } finally {
    file.close();
  }
}

async function _io<T>(path: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    throw _named(path, error);
  }
}

function _named(path: string, error: unknown, what = "read"): Error {
  if (error instanceof FileTreeLimitError || error instanceof TypeError) return error;
  if (error instanceof Error && error.message.startsWith("Cannot ")) return error;
  return new Error(`Cannot ${what} '${path}': ${fsErrorReason(error)}`, { cause: error });
}
