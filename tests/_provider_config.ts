/**
 * Test and benchmark helper: the `start --config` file of a node that advertises a riscv64
 * `wasm` capability on the DHT.
 *
 * @module
 */

/** The `wasm` limits the provider config advertises (and `discover` reports back). */
export const PROVIDER_WASM_LIMITS: { max_memory_bytes: number; max_duration_ms: number } = {
  max_memory_bytes: 1048576,
  max_duration_ms: 5000,
};

/**
 * Write `<dir>/provider.json`: arch riscv64 with the capability `wasm` and
 * {@linkcode PROVIDER_WASM_LIMITS}; returns its path, for `start --config`.
 *
 * @example
 * ```ts
 * import { writeProviderConfig } from "./_provider_config.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = await writeProviderConfig(dir);
 * assert.equal(JSON.parse(await Deno.readTextFile(path)).arch, "riscv64");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeProviderConfig(dir: string): Promise<string> {
  const path = `${dir}/provider.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({ arch: "riscv64", capabilities: { wasm: PROVIDER_WASM_LIMITS } }),
  );
  return path;
}
