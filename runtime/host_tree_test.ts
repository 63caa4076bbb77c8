import assert from "node:assert/strict";
import { parseTreeMount, readHostTree, writeHostTree } from "./host_tree.ts";
import { encodeFileTree, FileTreeLimitError, makeFileTree } from "./file_tree.ts";

const LIMITS = { maxFiles: 100, maxBytes: 1 << 20 };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plasm-tree-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readHostTree() keeps links as links, the executable bit only, and never follows", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/in/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir}/in/run.sh`, "#!/bin/sh\n", { mode: 0o751 });
    await Deno.chmod(`${dir}/in/run.sh`, 0o751);
    await Deno.writeTextFile(`${dir}/in/sub/a.txt`, "a", { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/secret`, "outside");
    await Deno.symlink("../../secret", `${dir}/in/sub/out`);
    const tree = await readHostTree([{ host: `${dir}/in`, at: "" }], LIMITS);
    assert.deepEqual(tree.entries, [
      {
        path: "run.sh",
        type: "file",
        executable: true,
        data: new TextEncoder().encode("#!/bin/sh\n"),
      },
      { path: "sub", type: "dir" },
      { path: "sub/a.txt", type: "file", executable: false, data: new TextEncoder().encode("a") },
      { path: "sub/out", type: "symlink", target: "../../secret" },
    ]);
    // Mounted at a guest path, the same files sit under it.
    const at = await readHostTree([{ host: `${dir}/in/sub`, at: "x/y" }], LIMITS);
    assert.deepEqual(at.entries.map((e) => e.path), ["x", "x/y", "x/y/a.txt", "x/y/out"]);
  });
});

Deno.test("readHostTree() stops at the caps and refuses overlapping mounts", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a`, "12345");
    await Deno.writeTextFile(`${dir}/b`, "6");
    await assert.rejects(
      readHostTree([{ host: dir, at: "" }], { maxFiles: 1, maxBytes: 100 }),
      (e) => e instanceof FileTreeLimitError && e.kind === "files",
    );
    await assert.rejects(
      readHostTree([{ host: dir, at: "" }], { maxFiles: 10, maxBytes: 5 }),
      (e) => e instanceof FileTreeLimitError && e.kind === "bytes",
    );
    await assert.rejects(
      readHostTree([{ host: dir, at: "a" }, { host: dir, at: "a/b" }], LIMITS),
      /overlaps/,
    );
    await assert.rejects(readHostTree([{ host: `${dir}/a`, at: "" }], LIMITS), /not a directory/);
    await assert.rejects(readHostTree([{ host: `${dir}/no`, at: "" }], LIMITS), /no such file/);
  });
});

Deno.test("writeHostTree() writes a tree that reads back to the same hash, and only into a new dir", async () => {
  await withDir(async (dir) => {
    const tree = makeFileTree([
      { path: "d", type: "dir" },
      { path: "d/x", type: "file", executable: true, data: new Uint8Array([1, 2]) },
      { path: "d/l", type: "symlink", target: "/etc/passwd" },
      { path: "e", type: "dir" },
    ]);
    await writeHostTree(tree, `${dir}/out`);
    const back = await readHostTree([{ host: `${dir}/out`, at: "" }], LIMITS);
    assert.deepEqual(encodeFileTree(back), encodeFileTree(tree));
    assert.equal((await Deno.stat(`${dir}/out/d/x`)).mode! & 0o777, 0o755);
    await assert.rejects(writeHostTree(tree, `${dir}/out`), /it exists and is not empty/);
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(writeHostTree(tree, `${dir}/file`), /not a directory/);
    await Deno.mkdir(`${dir}/empty`);
    await writeHostTree(tree, `${dir}/empty`);
    assert.equal(await Deno.readLink(`${dir}/empty/d/l`), "/etc/passwd");
    // Nothing temporary is left beside the outputs.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["empty", "file", "out"]);
  });
});

Deno.test("parseTreeMount() reads HOST[::GUEST] and refuses a GUEST above the root", () => {
  assert.deepEqual(parseTreeMount("a::/x/./y/"), { host: "a", at: "x/y", name: "/x/./y/" });
  assert.deepEqual(parseTreeMount("/tmp/in"), { host: "/tmp/in", at: "in", name: "in" });
  assert.throws(() => parseTreeMount("a::../b"), TypeError);
  assert.throws(() => parseTreeMount("::/"), /no host directory/);
  assert.throws(() => parseTreeMount("/"), /give where the job sees it/);
});
