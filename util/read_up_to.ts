/**
 * A bounded read of an open file: never more than a given number of bytes is buffered.
 *
 * @module
 */

/**
 * Read `file` from its position until its end or `limit` bytes, whichever comes first; the bytes
 * read. Read `limit + 1` bytes to tell a file over `limit` from one of exactly `limit`. With a
 * `signal`, each read first throws its reason once it aborted.
 *
 * @example
 * ```ts
 * import { readUpTo } from "./read_up_to.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "hello");
 * using file = await Deno.open(path);
 * assert.equal(new TextDecoder().decode(await readUpTo(file, 3)), "hel");
 * await Deno.remove(path);
 * ```
 */
export async function readUpTo(
  file: { read(p: Uint8Array): Promise<number | null> },
  limit: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const buffer = new Uint8Array(limit);
  let total = 0;
  while (total < limit) {
    signal?.throwIfAborted();
    const n = await file.read(buffer.subarray(total));
    if (n === null) break;
    total += n;
  }
  return buffer.subarray(0, total);
}
