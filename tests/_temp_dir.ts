/**
 * Test helper: run a function with a fresh temporary directory, removed afterwards.
 *
 * @module
 */

/**
 * Run `fn` with the path of a fresh temporary directory named `<prefix>…`; the directory and all
 * in it are removed when `fn` settles, and `fn`'s result is returned.
 *
 * @example
 * ```ts
 * import { withTempDir } from "./_temp_dir.ts";
 * import assert from "node:assert/strict";
 *
 * const kept = await withTempDir("plasm-doc-", async (dir) => {
 *   await Deno.writeTextFile(`${dir}/a`, "x");
 *   return dir;
 * });
 * await assert.rejects(Deno.stat(kept), Deno.errors.NotFound);
 * ```
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
