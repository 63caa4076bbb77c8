import assert from "node:assert/strict";
import { writeFileAtomic } from "./write_file_atomic.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

Deno.test("writeFileAtomic() replaces the file whole and leaves no temporary file", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "old content that is longer");
    await writeFileAtomic(`${dir}/f`, new TextEncoder().encode("new"));
    assert.equal(await Deno.readTextFile(`${dir}/f`), "new");
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["f"]);
    await assert.rejects(
      () => writeFileAtomic(`${dir}/missing/f`, new Uint8Array(1)),
      Deno.errors.NotFound,
    );
  });
});

Deno.test("writeFileAtomic() keeps the old file when the stream fails or the signal aborts", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "old");
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array([1, 2, 3]));
        controller.error(new Error("Cannot compress: broken"));
      },
    });
    await assert.rejects(() => writeFileAtomic(`${dir}/f`, failing), /Cannot compress: broken/);
    const stop = new AbortController();
    stop.abort(new Error("stopped"));
    await assert.rejects(
      () => writeFileAtomic(`${dir}/f`, "new", { signal: stop.signal }),
      /stopped/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/f`), "old");
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["f"]);
  });
});
