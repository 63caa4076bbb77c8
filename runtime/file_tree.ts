/**
 * File trees: the files a job is given and the files it leaves, as plain values. A tree is a
 * list of entries (directories, files with an executable bit, symbolic links with their target)
 * under relative `/`-separated paths; it has one compact, deterministic, length-prefixed binary
 * encoding (docs/protocol.md, "File trees"); its hash (`fileTreeHash`, file_tree_hash.ts) is
 * what receipts commit to. Pure code: no I/O, no hashing, loadable with no permissions (the
 * sandbox decodes the job's tree with it).
 *
 * @module
 */
import { LimitError } from "./limit_error.ts";

/** One entry of a {@linkcode FileTree}; `path` is relative, `/`-separated, never empty. */
export type TreeEntry =
  | { path: string; type: "dir" }
  | { path: string; type: "file"; executable: boolean; data: Uint8Array }
  | { path: string; type: "symlink"; target: string };

/** A file tree: entries sorted by the UTF-8 bytes of their paths, each parent a `dir` entry. */
export interface FileTree {
  /** The entries, sorted, unique; the root itself is implicit. */
  readonly entries: readonly TreeEntry[];
}

/** Caps of a tree: entries (of any type) and bytes of file contents. */
export interface TreeLimits {
  /** Most entries (files, directories and links together). */
  maxFiles: number;
  /** Most bytes of file contents, summed. */
  maxBytes: number;
}

/** Longest path (UTF-8 bytes) of an entry, and longest symbolic link target. */
export const TREE_MAX_PATH_BYTES = 4096;
/** Deepest path, in components. */
export const TREE_MAX_DEPTH = 64;
/** Longest path component (a file name), in UTF-8 bytes. */
export const TREE_MAX_NAME_BYTES = 255;

const MAGIC = new TextEncoder().encode("phase-tree:v1\n");
const TYPE_CODES = { dir: 1, file: 2, executable: 3, symlink: 4 } as const;

/**
 * A tree over its caps: `kind` says which (`files`: too many entries, `bytes`: too many bytes
 * of contents).
 *
 * @example
 * ```ts
 * import { FileTreeLimitError } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new FileTreeLimitError("files", "too many");
 * assert.equal(error.kind, "files");
 * assert.equal(error.name, "FileTreeLimitError");
 * assert.ok(error instanceof FileTreeLimitError && error instanceof Error);
 * ```
 */
export class FileTreeLimitError extends LimitError<"files" | "bytes"> {
  /** The error's name. */
  override name = "FileTreeLimitError";
}

/**
 * Check a relative tree path: non-empty `/`-separated components, none `.`, `..` or empty, no
 * NUL, at most {@linkcode TREE_MAX_NAME_BYTES} per component, {@linkcode TREE_MAX_PATH_BYTES}
 * in all and {@linkcode TREE_MAX_DEPTH} deep. Returns the reason it is not one, or null.
 *
 * @example
 * ```ts
 * import { treePathProblem } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(treePathProblem("a/b.txt"), null);
 * assert.equal(treePathProblem("a/../b"), "'..' component");
 * ```
 */
export function treePathProblem(path: string): string | null {
  if (path === "") return "empty path";
  if (path.includes("\0")) return "NUL character";
  const bytes = _utf8(path);
  if (bytes === null) return "not valid Unicode";
  if (bytes.length > TREE_MAX_PATH_BYTES) return `longer than ${TREE_MAX_PATH_BYTES} bytes`;
  const parts = path.split("/");
  if (parts.length > TREE_MAX_DEPTH) return `deeper than ${TREE_MAX_DEPTH} components`;
  for (const part of parts) {
    if (part === "") return "empty component";
    if (part === ".") return "'.' component";
    if (part === "..") return "'..' component";
    if (_utf8(part)!.length > TREE_MAX_NAME_BYTES) {
      return `a name longer than ${TREE_MAX_NAME_BYTES} bytes`;
    }
  }
  return null;
}

/**
 * Make a tree from entries in any order: sorts them, and checks every path, that no path
 * repeats, that every parent is a directory entry, and the caps when given.
 *
 * @throws {TypeError} If a path or link target is not valid, a path repeats or a parent is missing.
 * @throws {FileTreeLimitError} If the entries exceed `limits`.
 *
 * @example
 * ```ts
 * import { makeFileTree } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const tree = makeFileTree([
 *   { path: "d/x", type: "file", executable: false, data: new Uint8Array([1]) },
 *   { path: "d", type: "dir" },
 * ]);
 * assert.deepEqual(tree.entries.map((e) => e.path), ["d", "d/x"]);
 * ```
 */
export function makeFileTree(entries: Iterable<TreeEntry>, limits?: TreeLimits): FileTree {
  const keyed = [...entries].map((entry) => ({
    entry,
    key: _utf8(entry.path) ?? new Uint8Array(),
  }));
  keyed.sort((a, b) => _compareBytes(a.key, b.key));
  const sorted = keyed.map((k) => k.entry);
  _check(sorted, limits);
  return { entries: sorted };
}

/**
 * The most bytes an encoded tree of at most `maxFiles` entries and `maxBytes` of file contents
 * can take: the header, then per entry its type, path and body (a symlink's target at most a
 * path long), plus the contents.
 *
 * @example
 * ```ts
 * import { encodeFileTree, maxEncodedTreeBytes } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const data = new Uint8Array(3);
 * const bytes = encodeFileTree({ entries: [{ path: "a", type: "file", executable: false, data }] });
 * assert.ok(bytes.length <= maxEncodedTreeBytes({ maxFiles: 1, maxBytes: 3 }));
 * ```
 */
export function maxEncodedTreeBytes(limits: { maxFiles: number; maxBytes: number }): number {
  return MAGIC.length + 4 + limits.maxFiles * (1 + 2 * (4 + TREE_MAX_PATH_BYTES)) +
    limits.maxBytes;
}

/**
 * Encode a tree: the magic `phase-tree:v1\n`, a u32 (big-endian) entry count, then per entry a
 * type byte (1 dir, 2 file, 3 executable file, 4 symlink), u32 path length and path, and for a
 * file u32 length and contents, for a link u32 length and target.
 *
 * @example
 * ```ts
 * import { encodeFileTree } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeFileTree({ entries: [{ path: "d", type: "dir" }] });
 * assert.equal(bytes.length, 14 + 4 + 1 + 4 + 1);
 * ```
 */
export function encodeFileTree(tree: FileTree): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let size = MAGIC.length + 4;
  for (const entry of tree.entries) {
    const path = enc.encode(entry.path);
    const body = entry.type === "file"
      ? entry.data
      : entry.type === "symlink"
      ? enc.encode(entry.target)
      : null;
    parts.push(path);
    if (body) parts.push(body);
    size += 1 + 4 + path.length + (body ? 4 + body.length : 0);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  let at = MAGIC.length;
  view.setUint32(at, tree.entries.length);
  at += 4;
  let part = 0;
  for (const entry of tree.entries) {
    out[at++] = entry.type === "file"
      ? (entry.executable ? TYPE_CODES.executable : TYPE_CODES.file)
      : TYPE_CODES[entry.type];
    for (let i = 0; i < (entry.type === "dir" ? 1 : 2); i++) {
      const bytes = parts[part++]!;
      view.setUint32(at, bytes.length);
      out.set(bytes, at + 4);
      at += 4 + bytes.length;
    }
  }
  return out;
}

/**
 * Decode and check an encoded tree (every byte is hostile): entries in strictly increasing
 * order, valid paths and targets, parents present, nothing trailing, and the caps checked before
 * anything is copied.
 *
 * @throws {SyntaxError} If the bytes are not a valid encoding.
 * @throws {FileTreeLimitError} If the tree exceeds `limits`.
 *
 * @example
 * ```ts
 * import { decodeFileTree, encodeFileTree } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const tree = { entries: [{ path: "l", type: "symlink" as const, target: "../x" }] };
 * assert.deepEqual(decodeFileTree(encodeFileTree(tree)), tree);
 * ```
 */
export function decodeFileTree(bytes: Uint8Array, limits?: TreeLimits): FileTree {
  const bad = (why: string): never => {
    throw new SyntaxError(`Cannot decode file tree: ${why}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < MAGIC.length + 4 || MAGIC.some((b, i) => bytes[i] !== b)) bad("bad magic");
  const count = view.getUint32(MAGIC.length);
  if (limits && count > limits.maxFiles) {
    throw new FileTreeLimitError(
      "files",
      `Cannot decode file tree: ${count} entries, over the ${limits.maxFiles} cap`,
    );
  }
  const dec = new TextDecoder("utf-8", { fatal: true });
  let at = MAGIC.length + 4;
  const field = (max: number, what: string): Uint8Array => {
    if (at + 4 > bytes.length) bad("truncated");
    const n = view.getUint32(at);
    if (n > max) bad(`${what} of ${n} bytes is too long`);
    if (at + 4 + n > bytes.length) bad("truncated");
    const out = bytes.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return out;
  };
  const text = (b: Uint8Array, what: string): string => {
    try {
      return dec.decode(b);
    } catch {
      return bad(`${what} is not UTF-8`);
    }
  };
  const entries: TreeEntry[] = [];
  let bytesLeft = limits?.maxBytes ?? Infinity;
  for (let i = 0; i < count; i++) {
    if (at >= bytes.length) bad("truncated");
    const code = bytes[at++];
    const path = text(field(TREE_MAX_PATH_BYTES, "path"), "a path");
    if (code === TYPE_CODES.dir) entries.push({ path, type: "dir" });
    else if (code === TYPE_CODES.file || code === TYPE_CODES.executable) {
      const data = field(0xffffffff, "file");
      if (data.length > bytesLeft) {
        throw new FileTreeLimitError(
          "bytes",
          `Cannot decode file tree: file contents over the ${limits!.maxBytes} byte cap`,
        );
      }
      bytesLeft -= data.length;
      entries.push({
        path,
        type: "file",
        executable: code === TYPE_CODES.executable,
        data: data.slice(),
      });
    } else if (code === TYPE_CODES.symlink) {
      entries.push({
        path,
        type: "symlink",
        target: text(field(TREE_MAX_PATH_BYTES, "target"), "a target"),
      });
    } else bad(`unknown entry type ${code}`);
  }
  if (at !== bytes.length) bad("trailing bytes");
  try {
    _check(entries, limits, true);
  } catch (error) {
    if (error instanceof TypeError) bad(error.message.replace(/^Cannot make file tree: /, ""));
    throw error;
  }
  return { entries };
}

/**
 * The entries of `after` that are not in `before` or differ from it (type, contents,
 * executable bit, target), with the directories that hold them: what `--out-changed` writes.
 * Removed entries do not appear.
 *
 * @example
 * ```ts
 * import { changedFileTree, makeFileTree } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const a = makeFileTree([{ path: "d", type: "dir" }, { path: "x", type: "symlink", target: "d" }]);
 * const b = makeFileTree([...a.entries, { path: "d/new", type: "symlink", target: "." }]);
 * assert.deepEqual(changedFileTree(a, b).entries.map((e) => e.path), ["d", "d/new"]);
 * ```
 */
export function changedFileTree(before: FileTree, after: FileTree): FileTree {
  const old = new Map(before.entries.map((e) => [e.path, e]));
  const keep = new Set<string>();
  for (const entry of after.entries) {
    const was = old.get(entry.path);
    if (was && _sameEntry(was, entry)) continue;
    keep.add(entry.path);
    const parts = entry.path.split("/");
    for (let n = 1; n < parts.length; n++) keep.add(parts.slice(0, n).join("/"));
  }
  return { entries: after.entries.filter((e) => keep.has(e.path)) };
}

function _sameEntry(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type === "dir" || b.type === "dir") return a.type === b.type;
  if (a.type === "symlink" || b.type === "symlink") {
    return a.type === "symlink" && b.type === "symlink" && a.target === b.target;
  }
  return a.executable === b.executable && a.data.length === b.data.length &&
    a.data.every((x, i) => x === b.data[i]);
}

/** Check sorted entries; `strict` also requires them strictly increasing (decoding). */
function _check(
  entries: readonly TreeEntry[],
  limits: TreeLimits | undefined,
  strict = true,
): void {
  const bad = (why: string): never => {
    throw new TypeError(`Cannot make file tree: ${why}`);
  };
  if (limits && entries.length > limits.maxFiles) {
    throw new FileTreeLimitError(
      "files",
      `Cannot make file tree: ${entries.length} entries, over the ${limits.maxFiles} cap`,
    );
  }
  const dirs = new Set<string>();
  let bytes = 0;
  let previous: Uint8Array | null = null;
  for (const entry of entries) {
    const problem = treePathProblem(entry.path);
    if (problem) bad(`path '${entry.path}': ${problem}`);
    const key = _utf8(entry.path)!;
    if (strict && previous && _compareBytes(previous, key) >= 0) {
      bad(`path '${entry.path}' is out of order or repeated`);
    }
    previous = key;
    const slash = entry.path.lastIndexOf("/");
    if (slash > 0 && !dirs.has(entry.path.slice(0, slash))) {
      bad(`path '${entry.path}' has no directory entry for its parent`);
    }
    if (entry.type === "dir") dirs.add(entry.path);
    else if (entry.type === "symlink") {
      const t = entry.target;
      if (t === "" || t.includes("\0") || (_utf8(t)?.length ?? Infinity) > TREE_MAX_PATH_BYTES) {
        bad(`link '${entry.path}' has an empty, too long or NUL-holding target`);
      }
    } else if (entry.type === "file") {
      if (!(entry.data instanceof Uint8Array)) bad(`file '${entry.path}' has no bytes`);
      bytes += entry.data.length;
    } else bad(`entry '${(entry as TreeEntry).path}' has an unknown type`);
  }
  if (limits && bytes > limits.maxBytes) {
    throw new FileTreeLimitError(
      "bytes",
      `Cannot make file tree: ${bytes} bytes of files, over the ${limits.maxBytes} byte cap`,
    );
  }
}

function _utf8(text: string): Uint8Array | null {
  if (!text.isWellFormed()) return null;
  return new TextEncoder().encode(text);
}

function _compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
