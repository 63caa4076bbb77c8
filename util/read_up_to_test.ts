import assert from "node:assert/strict";
import { readUpTo } from "./read_up_to.ts";

/** A reader that hands out `data` at most `chunk` bytes per read. */
function chunked(data: Uint8Array, chunk: number) {
  let at = 0;
  return {
    reads: 0,
    read(p: Uint8Array): Promise<number | null> {
      this.reads++;
      if (at >= data.length) return Promise.resolve(null);
      const n = Math.min(chunk, p.length, data.length - at);
      p.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("readUpTo() gathers short reads up to the end, and stops at the limit", async () => {
  const data = new Uint8Array(10).map((_, i) => i);
  assert.deepEqual(await readUpTo(chunked(data, 3), 64), data);
  const capped = chunked(data, 3);
  assert.deepEqual(await readUpTo(capped, 7), data.subarray(0, 7));
  assert.equal(capped.reads, 3, "no read past the limit");
  assert.deepEqual(await readUpTo(chunked(new Uint8Array(), 3), 8), new Uint8Array());
});

Deno.test("readUpTo() throws the signal's reason before reading on", async () => {
  const stop = new AbortController();
  stop.abort(new Error("stopped"));
  await assert.rejects(readUpTo(chunked(new Uint8Array(4), 1), 4, stop.signal), /stopped/);
});
