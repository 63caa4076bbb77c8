import assert from "node:assert/strict";
import { CANCELLED, jobOutcome, refuseJob, resolveJobOptions } from "./job_options.ts";
import { runInProcess } from "./run_in_process.ts";
import { runJob } from "./run_job.ts";

const MODULE = new Uint8Array(8);

Deno.test("resolveJobOptions() names the argument or env entry WASI cannot take", () => {
  const cases: [Parameters<typeof resolveJobOptions>[1], string][] = [
    [{ args: ["a\0b"] }, "Cannot run job: each argument contains a NUL character"],
    [{ args: [1 as unknown as string] }, "Cannot run job: each argument must be a string"],
    [{ argv0: "x\0" }, "Cannot run job: argv0 contains a NUL character"],
    [{ env: { A: "1\0" } }, "Cannot run job: env value of 'A' contains a NUL character"],
    [{ env: { "A=B": "1" } }, "Cannot run job: env name 'A=B' must be non-empty and without '='"],
    [{ args: "a" as unknown as string[] }, "Cannot run job: args must be an array"],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => resolveJobOptions(MODULE, options), { name: "TypeError", message });
  }
});

Deno.test("resolveJobOptions() refuses fuel and limits out of range", () => {
  assert.throws(() => resolveJobOptions(MODULE, { fuel: -1 }), {
    name: "RangeError",
    message: "Cannot run job: fuel must be a whole number from 0 to 2^63-1, got -1",
  });
  assert.throws(() => resolveJobOptions(MODULE, { fuel: 2n ** 63n }), RangeError);
  assert.throws(() => resolveJobOptions(MODULE, { maxModuleBytes: 7 }), {
    name: "RangeError",
    message: "Cannot run job: maxModuleBytes must be an integer from 8 to 2147483647, got 7",
  });
  assert.throws(() => resolveJobOptions("x", {}), TypeError);
});

Deno.test("runJob() and runInProcess() give the same messages for the same bad options", async () => {
  for (
    const options of [{ args: ["a\0b"] }, { env: { K: 1 as unknown as string } }, { fuel: 0.5 }]
  ) {
    const viaJob = await runJob(MODULE, options).then(() => null, (e: Error) => e);
    const viaProcess = await runInProcess(MODULE, options).then(() => null, (e: Error) => e);
    assert.ok(viaJob instanceof Error);
    assert.deepEqual([viaProcess?.name, viaProcess?.message], [viaJob.name, viaJob.message]);
  }
});

Deno.test("refuseJob() refuses an aborted job before a too large module", () => {
  const settings = resolveJobOptions(MODULE, {
    maxModuleBytes: 8,
    signal: AbortSignal.abort(),
  });
  const outcome = refuseJob(new Uint8Array(9), settings, 7);
  assert.deepEqual(outcome, jobOutcome(CANCELLED, 7));
  assert.equal(outcome?.completion, "cancelled");
  assert.equal(outcome?.exitCode, null);
});

Deno.test("jobOutcome() maps each error kind to its completion", () => {
  const completion = (kind: "output_limit" | "cancelled" | "timeout") =>
    jobOutcome({ exitCode: null, error: { kind, message: "m" } }, 0).completion;
  assert.equal(completion("output_limit"), "length");
  assert.equal(completion("cancelled"), "cancelled");
  assert.equal(completion("timeout"), "error");
  const outcome = jobOutcome({ exitCode: 3, error: null }, 5, {
    stderr: [new Uint8Array([1]), new Uint8Array([2])],
    peakMemoryBytes: 65536,
    fuelUsed: 9n,
  });
  assert.deepEqual(outcome, {
    stdout: new Uint8Array(),
    stderr: new Uint8Array([1, 2]),
    exitCode: 3,
    completion: "stop",
    durationMs: 5,
    peakMemoryBytes: 65536,
    fuelUsed: 9n,
  });
});
