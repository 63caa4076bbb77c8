import assert from "node:assert/strict";
import { runJob } from "./run_job.ts";
import { SandboxPool } from "./sandbox_pool.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const LOOP = await Deno.readFile(new URL("./testdata/infinite_loop.wasm", import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("SandboxPool runs jobs one per process, concurrently, and refills itself", async () => {
  await using pool = new SandboxPool({ size: 2 });
  const outcomes = await Promise.all(
    ["one", "two", "three", "four", "five"].map((word) =>
      runJob(HELLO, { input: enc(word), sandbox: "process", pool })
    ),
  );
  assert.deepEqual(outcomes.map((o) => dec(o.stdout)), ["eno", "owt", "eerht", "ruof", "evif"]);
  assert.ok(outcomes.every((o) => o.completion === "stop" && o.exitCode === 0));
  assert.equal(pool.idle, 2);
});

Deno.test("SandboxPool: a pooled sandbox is still killed on timeout", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const outcome = await runJob(LOOP, { sandbox: "process", pool, timeoutMs: 300 });
  assert.equal(outcome.error?.kind, "timeout");
  const next = await runJob(HELLO, { input: enc("ok"), sandbox: "process", pool });
  assert.equal(dec(next.stdout), "ko");
});

Deno.test("SandboxPool keeps serving after a sandbox it handed out was killed", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const victim = pool.take(); // the caller owns it now: kill it like a crash would
  victim.kill("SIGKILL");
  await victim.status;
  await Promise.all([victim.stdout.cancel(), victim.stderr.cancel(), victim.stdin.close()]);
  const outcome = await runJob(HELLO, { input: enc("abc"), sandbox: "process", pool });
  assert.equal(dec(outcome.stdout), "cba");
});

Deno.test("SandboxPool.close() ends its idle processes, and take() after close refuses", async () => {
  const pool = new SandboxPool({ size: 3 });
  assert.equal(pool.idle, 3);
  await pool.close();
  await pool.close();
  assert.equal(pool.idle, 0);
  assert.throws(() => pool.take(), /pool is closed/);
  assert.throws(() => new SandboxPool({ size: -1 }), RangeError);
});
