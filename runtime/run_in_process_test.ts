import assert from "node:assert/strict";
import { FuelCache } from "./fuel.ts";
import { runInProcess } from "./run_in_process.ts";
import { runJob } from "./run_job.ts";
import { wat } from "./testdata/hostile_modules.ts";

const HELLO = new URL("../examples/hello.wasm", import.meta.url);
const TESTDATA = new URL("./testdata/", import.meta.url);

Deno.test("runInProcess() calls beforeRun once, with the module instrumented and cached, before it runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-inproc-" });
  try {
    const module = await Deno.readFile(HELLO);
    const seen: string[][] = [];
    const outcome = await runInProcess(module, {
      input: new TextEncoder().encode("Hello"),
      fuelCache: new FuelCache({ dir }),
      beforeRun: () => {
        seen.push([...Deno.readDirSync(dir)].map((e) => e.name));
      },
    });
    assert.equal(new TextDecoder().decode(outcome.stdout), "olleH");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.length, 1);
    assert.match(seen[0]![0]!, /^checks-gate\d+-v\d+\.\d+-[0-9a-f]{64}\.wasm$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runInProcess() ends each breach as the worker sandbox does: kind, message, output", async () => {
  const cases: [string, { [k: string]: number | bigint }][] = [
    ["trap.wasm", {}],
    ["stack_overflow.wasm", {}],
    ["memory_bomb.wasm", { memoryBytes: 4 * 2 ** 20 }],
    ["huge_output.wasm", { maxOutputBytes: 1024 }],
    ["no_start.wasm", {}],
    ["infinite_loop.wasm", { fuel: 100_000n }],
  ];
  for (const [file, limits] of cases) {
    const module = await Deno.readFile(new URL(file, TESTDATA));
    const here = await runInProcess(module, limits);
    const there = await runJob(module, { ...limits, sandbox: "worker" });
    assert.equal(here.completion, there.completion, file);
    assert.deepEqual(here.error, there.error, file);
    assert.deepEqual(here.stdout, there.stdout, file);
    assert.equal(here.exitCode, there.exitCode, file);
    assert.equal(here.fuelUsed, there.fuelUsed, file);
  }
});

Deno.test("runInProcess() refuses a module with the gate's own message, before instrumenting it", async () => {
  const module = await wat(`(module (import "env" "f" (func)) (func (export "_start")))`);
  let called = 0;
  const here = await runInProcess(module, { beforeRun: () => void called++ });
  const there = await runJob(module, { sandbox: "worker" });
  assert.equal(here.error?.kind, "invalid_module");
  assert.deepEqual(here.error, there.error);
  assert.equal(called, 1);
});

Deno.test("runInProcess() with a cache refuses a module the gate refuses, as without one, and keeps nothing of it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-inproc-" });
  try {
    const module = await wat(`(module (import "env" "f" (func)) (func (export "_start")))`);
    for (const fuel of [undefined, 1000n]) {
      const options = fuel === undefined ? {} : { fuel };
      const here = await runInProcess(module, { ...options, fuelCache: new FuelCache({ dir }) });
      const there = await runJob(module, { ...options, sandbox: "worker" });
      assert.equal(here.error?.kind, "invalid_module");
      assert.deepEqual(here.error, there.error);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runInProcess() stops an endless loop at timeoutMs without fuel", async () => {
  const module = await Deno.readFile(new URL("infinite_loop.wasm", TESTDATA));
  const outcome = await runInProcess(module, { timeoutMs: 100 });
  assert.equal(outcome.completion, "error");
  assert.deepEqual(outcome.error, {
    kind: "timeout",
    message: "Cannot finish job: timed out after 100 ms",
  });
  assert.equal(outcome.fuelUsed, undefined);
});

Deno.test("revokeAllPermissions() leaves a process no permission of any kind", async () => {
  const probe = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      probe,
      `import { REVOKED_PERMISSIONS, revokeAllPermissions } from ${
        JSON.stringify(new URL("./run_in_process.ts", import.meta.url).href)
      };
revokeAllPermissions();
console.log(REVOKED_PERMISSIONS.map((name) => Deno.permissions.querySync({ name }).state).join(" "));
try { Deno.readTextFileSync(${JSON.stringify(probe)}); } catch (e) { console.log(e.name); }`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-prompt", probe],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "prompt prompt prompt prompt prompt prompt prompt prompt\nNotCapable\n",
      new TextDecoder().decode(out.stderr),
    );
  } finally {
    await Deno.remove(probe);
  }
});
