import assert from "node:assert/strict";
import { gcBomb, tableGrower, wat } from "../runtime/testdata/hostile_modules.ts";
import { runTask } from "./_task.ts";

/** Run `run` on `module` with a receipt file; return its exit, stderr and the receipt. */
async function runModule(module: Uint8Array, args: string[] = []) {
  const home = await Deno.makeTempDir({ prefix: "plasm-hostile-" });
  try {
    await Deno.writeFile(`${home}/m.wasm`, module);
    const result = await runTask("run", [
      `${home}/m.wasm`,
      "--receipt",
      `${home}/receipt.json`,
      ...args,
    ], { stdin: "", env: { PLASM_HOME: `${home}/state` } });
    const receipt = JSON.parse(await Deno.readTextFile(`${home}/receipt.json`));
    return { ...result, receipt };
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

function assertOneErrorLine(err: string, pattern: RegExp): void {
  const errors = err.split("\n").filter((l) => l.startsWith("run: error:"));
  assert.equal(errors.length, 1, err);
  assert.match(errors[0]!, pattern);
  assert.doesNotMatch(err, /^\s+at |Fatal|C stack trace|Uncaught/m, "no stack trace");
}

Deno.test("run refuses a WasmGC module under --memory 16MiB: exit 120, one line, a receipt", async () => {
  const { code, err, receipt } = await runModule(gcBomb(), ["--memory", "16MiB"]);
  assert.equal(code, 120, err);
  assertOneErrorLine(err, /^run: error: Cannot run module: it uses GC types \(type form 0x5e\)/);
  assert.equal(receipt.result.completion, "error");
  assert.equal(receipt.result.metrics.extra.error, "invalid_module");
});

Deno.test("run refuses an env.* import: exit 120, never a trap", async () => {
  const module = await wat(`(module (import "env" "abort" (func $a))
    (func (export "_start") (call $a)))`);
  const { code, err, receipt } = await runModule(module);
  assert.equal(code, 120, err);
  assertOneErrorLine(err, /^run: error: Cannot run module: its import 'env\.abort' \(function\)/);
  assert.equal(receipt.result.metrics.extra.error, "invalid_module");
});

Deno.test("run stops a table that grows to its cap: exit 123, one line, tables in peak_memory_bytes", async () => {
  const { code, err, stdout, receipt } = await runModule(await tableGrower(), [
    "--memory",
    "16MiB",
  ]);
  assert.equal(code, 123, err);
  assertOneErrorLine(err, /^run: error: Cannot finish job: its table reached the 43690 entry cap/);
  const size = new DataView(stdout.buffer, stdout.byteOffset).getUint32(0, true);
  assert.ok(size > 42_000 && size <= 43_690, `table grew to ${size}`);
  assert.equal(receipt.result.metrics.extra.error, "memory_limit");
  assert.equal(receipt.result.metrics.extra.peak_memory_bytes, String(65536 + size * 24));
});
