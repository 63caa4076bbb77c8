import assert from "node:assert/strict";
import { executeJob, type SandboxEvent, type SandboxJob } from "./sandbox_core.ts";
import { alternatingWrites } from "./testdata/hostile_modules.ts";

function job(module: Uint8Array, options: Partial<SandboxJob> = {}): SandboxJob {
  return {
    module,
    input: new Uint8Array(),
    args: ["module.wasm"],
    env: {},
    memoryBytes: 16 * 2 ** 20,
    maxOutputBytes: 16 * 2 ** 20,
    timeoutMs: 60_000,
    ...options,
  };
}

Deno.test("executeJob() coalesces 1-byte writes alternating stdout and stderr", async () => {
  const pairs = 500_000;
  const events: SandboxEvent[] = [];
  const started = performance.now();
  executeJob(job(await alternatingWrites(pairs)), (e) => events.push(e));
  const durationMs = performance.now() - started;
  const last = events.at(-1);
  assert.ok(last?.type === "result" && last.error === null, JSON.stringify(last));
  const out = { 1: 0, 2: 0 };
  let outputs = 0;
  for (const e of events) {
    if (e.type !== "output") continue;
    outputs++;
    out[e.fd] += e.data.length;
    assert.ok(e.data.every((b) => b === (e.fd === 1 ? 0x6f : 0x65)));
    assert.equal(e.data.byteLength, e.data.buffer.byteLength, "each event owns its buffer");
  }
  assert.deepEqual(out, { 1: pairs, 2: pairs });
  // The bound documented in sandbox_core.ts: two events per pass, a pass per 64 KiB or 5 ms.
  const bound = 2 * (2 * pairs / 65536 + durationMs / 5 + 2);
  assert.ok(outputs <= bound, `${outputs} output events for ${2 * pairs} writes (bound ${bound})`);
});

Deno.test("executeJob() keeps exactly the cap of alternating output and stops there", async () => {
  const events: SandboxEvent[] = [];
  executeJob(
    job(await alternatingWrites(100_000), { maxOutputBytes: 1001 }),
    (e) => events.push(e),
  );
  const last = events.at(-1);
  assert.ok(last?.type === "result" && last.error?.kind === "output_limit");
  const out = { 1: 0, 2: 0 };
  for (const e of events) if (e.type === "output") out[e.fd] += e.data.length;
  assert.deepEqual(out, { 1: 501, 2: 500 });
});
