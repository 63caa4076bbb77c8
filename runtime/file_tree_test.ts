import assert from "node:assert/strict";
import {
  changedFileTree,
  decodeFileTree,
  encodeFileTree,
  FileTreeLimitError,
  makeFileTree,
  type TreeEntry,
} from "./file_tree.ts";
import { fileTreeHash } from "./file_tree_hash.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const sample: TreeEntry[] = [
  { path: "z", type: "file", executable: true, data: enc("#!") },
  { path: "d", type: "dir" },
  { path: "d/l", type: "symlink", target: "../z" },
  { path: "d-x", type: "file", executable: false, data: enc("") },
];

Deno.test("encodeFileTree() is the documented byte layout, and the hash is its SHA-256", async () => {
  const tree = makeFileTree([{ path: "a", type: "file", executable: false, data: enc("hi") }]);
  const bytes = encodeFileTree(tree);
  assert.equal(
    new TextDecoder().decode(bytes.subarray(0, 14)),
    "phase-tree:v1\n",
  );
  assert.deepEqual([...bytes.subarray(14)], [0, 0, 0, 1, 2, 0, 0, 0, 1, 97, 0, 0, 0, 2, 104, 105]);
  const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.slice())))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(fileTreeHash(tree), `sha256:${hex}`);
});

Deno.test("makeFileTree() sorts by UTF-8 bytes; decodeFileTree() round-trips the encoding", () => {
  const tree = makeFileTree(sample);
  assert.deepEqual(tree.entries.map((e) => e.path), ["d", "d-x", "d/l", "z"]);
  assert.deepEqual(decodeFileTree(encodeFileTree(tree)), tree);
  // The same entries in any order give the same hash; one changed bit gives another.
  assert.equal(fileTreeHash(makeFileTree([...sample].reverse())), fileTreeHash(tree));
  const flipped = sample.map((e) => e.path === "z" ? { ...e, executable: false } : e);
  assert.notEqual(fileTreeHash(makeFileTree(flipped)), fileTreeHash(tree));
});

Deno.test("makeFileTree() refuses bad paths, repeats and missing parents", () => {
  const file = (path: string): TreeEntry => ({
    path,
    type: "file",
    executable: false,
    data: enc(""),
  });
  for (const path of ["", "/a", "a/", "a//b", "./a", "a/..", "a\0b", "x".repeat(256)]) {
    assert.throws(() => makeFileTree([file(path)]), TypeError, path);
  }
  assert.throws(() => makeFileTree([file("a"), file("a")]), /out of order or repeated/);
  assert.throws(() => makeFileTree([file("d/a")]), /no directory entry for its parent/);
  assert.throws(() => makeFileTree([file("f"), file("f/a")]), /no directory entry/);
  assert.throws(
    () => makeFileTree([{ path: "l", type: "symlink", target: "" }]),
    /empty, too long or NUL-holding target/,
  );
});

Deno.test("decodeFileTree() refuses hostile bytes and checks caps before copying", () => {
  const good = encodeFileTree(makeFileTree(sample));
  assert.throws(() => decodeFileTree(good.subarray(0, good.length - 1)), SyntaxError);
  assert.throws(() => decodeFileTree(new Uint8Array([...good, 0])), /trailing bytes/);
  assert.throws(() => decodeFileTree(enc("phase-tree:v2\n\0\0\0\0")), /bad magic/);
  const huge = new Uint8Array(good);
  new DataView(huge.buffer).setUint32(14, 0xffffffff);
  assert.throws(() => decodeFileTree(huge, { maxFiles: 10, maxBytes: 10 }), FileTreeLimitError);
  assert.throws(
    () => decodeFileTree(good, { maxFiles: 3, maxBytes: 100 }),
    /4 entries, over the 3 cap/,
  );
  assert.throws(
    () => decodeFileTree(good, { maxFiles: 10, maxBytes: 1 }),
    (e) => e instanceof FileTreeLimitError && e.kind === "bytes",
  );
  // Entries out of order are refused, not sorted: one tree, one encoding.
  const swapped = encodeFileTree({ entries: [sample[1]!, { path: "a", type: "dir" }] });
  assert.throws(() => decodeFileTree(swapped), /out of order/);
  const escape = encodeFileTree({ entries: [{ path: "../x", type: "dir" }] });
  assert.throws(() => decodeFileTree(escape), /'\.\.' component/);
});

Deno.test("changedFileTree() keeps new and changed entries with their directories", () => {
  const before = makeFileTree(sample);
  const after = makeFileTree([
    ...sample.filter((e) => e.path !== "d-x"),
    { path: "d/new", type: "file", executable: false, data: enc("n") },
    { path: "e", type: "dir" },
  ]);
  assert.deepEqual(changedFileTree(before, after).entries.map((e) => e.path), ["d", "d/new", "e"]);
  assert.deepEqual(changedFileTree(after, after).entries, []);
});
