// deno run --allow-read --allow-write net/testdata/job_store_crash.ts <jobs.db> <count>
/**
 * Fixture of job_store_test.ts: inserts `count` jobs in one tick, awaits `durable()`, prints
 * `acked`, then keeps a transaction open with more writes until it is killed.
 *
 * @module
 */
import { JobStore } from "../job_store.ts";

const [path, count] = Deno.args;
const store = JobStore.open(path!, { commitDelayMs: 1000 });
const job = (i: number) => ({
  jobId: i.toString(16).padStart(64, "0"),
  manifest: {} as never,
  input: new Uint8Array([i & 255]),
  options: { cpu: 1, replicas: 1 },
});
for (let i = 0; i < Number(count); i++) store.insert(job(i));
await store.durable();
// Written after the acknowledgement, never committed: lost on a kill, as they may be.
for (let i = Number(count); i < Number(count) + 10; i++) store.insert(job(i));
console.log("acked");
setInterval(() => store.update(job(0).jobId, { attempts: 1 }), 10);
