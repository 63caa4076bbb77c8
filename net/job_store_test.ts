import assert from "node:assert/strict";
import { JobStore } from "./job_store.ts";
import { testJobManifest } from "../runtime/testdata/job_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { withTempDir } from "../tests/_temp_dir.ts";
import { killAtOutput } from "../tests/_kill_at_output.ts";

Deno.test("JobStore keeps jobs, results and receipts across a reopen", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const manifest = await testJobManifest(await generateKeyPair());
    const receipt = { job_id: "c".repeat(64) } as never;
    {
      using store = JobStore.open(`${dir}/jobs.db`);
      store.insert({
        jobId: "1".repeat(64),
        manifest,
        input: new Uint8Array([1]),
        options: { cpu: 1, replicas: 1 },
      });
      store.insert({
        jobId: "2".repeat(64),
        manifest,
        input: new Uint8Array([2]),
        options: { cpu: 2, replicas: 2, worker: "w" },
      });
      store.update("1".repeat(64), {
        status: "done",
        exitCode: null,
        completion: "error",
        stdout: new Uint8Array([104, 105]),
        stderr: new Uint8Array(),
        receipt,
        workerPeerId: "peer",
      });
      store.addReceipt("1".repeat(64), "peer", "requester", receipt);
    }
    using store = JobStore.open(`${dir}/jobs.db`);
    const job = store.get("1".repeat(64))!;
    assert.equal(job.status, "done");
    assert.equal(job.exitCode, null);
    assert.equal(job.completion, "error");
    assert.deepEqual(job.stdout, new Uint8Array([104, 105]));
    assert.deepEqual(job.receipt, receipt);
    assert.deepEqual(job.manifest, manifest);
    assert.deepEqual(store.input("2".repeat(64)), new Uint8Array([2]));
    assert.deepEqual(store.get("2".repeat(64))!.options, { cpu: 2, replicas: 2, worker: "w" });
    assert.deepEqual(store.unfinished(), ["2".repeat(64)]);
    assert.deepEqual(store.receipts("1".repeat(64)), [{
      peerId: "peer",
      role: "requester",
      receipt,
    }]);
    assert.equal(store.get("3".repeat(64)), undefined);
  });
});

Deno.test("JobStore keeps why a job failed, and adds the column to an older database", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const { DatabaseSync } = await import("node:sqlite");
    // A database as the first version made it: no error_kind column.
    const old = new DatabaseSync(`${dir}/jobs.db`);
    old.exec(`CREATE TABLE jobs (
      job_id TEXT PRIMARY KEY, status TEXT NOT NULL, manifest TEXT NOT NULL, options TEXT NOT NULL,
      input BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0, worker_peer_id TEXT, error TEXT, exit_code INTEGER,
      completion TEXT, stdout BLOB, stderr BLOB, receipt TEXT)`);
    old.close();
    using store = JobStore.open(`${dir}/jobs.db`);
    store.insert({
      jobId: "1".repeat(64),
      manifest: {} as never,
      input: new Uint8Array(),
      options: { cpu: 1, replicas: 1, searchTimeoutMs: 500 },
    });
    store.update("1".repeat(64), {
      status: "failed",
      error: "Cannot run job: no worker found",
      errorKind: "no_worker_found",
    });
    const failed = store.get("1".repeat(64))!;
    assert.equal(failed.errorKind, "no_worker_found");
    assert.equal(failed.options.searchTimeoutMs, 500);
    store.update("1".repeat(64), { status: "queued", error: null, errorKind: null });
    const again = store.get("1".repeat(64))!;
    assert.equal(again.errorKind, undefined);
    assert.equal(again.error, undefined);
    store.addReceipt("1".repeat(64), "p", "requester", { job_id: "1".repeat(64) } as never);
    store.addReceipt("1".repeat(64), "p", "worker", { job_id: "1".repeat(64) } as never);
    store.deleteReceipts("1".repeat(64), "requester");
    assert.deepEqual(store.receipts("1".repeat(64)).map((r) => r.role), ["worker"]);
  });
});

Deno.test("JobStore.open() makes jobs.db and its WAL 0600, and narrows an existing 0644 one", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const path = `${dir}/jobs.db`;
    {
      using store = JobStore.open(path);
      store.putModule(`sha256:${"a".repeat(64)}`, new Uint8Array([0, 97, 115, 109]));
      for (const file of [path, `${path}-wal`]) {
        assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, file);
      }
    }
    await Deno.chmod(path, 0o644);
    {
      using store = JobStore.open(path);
      assert.deepEqual(
        store.getModule(`sha256:${"a".repeat(64)}`),
        new Uint8Array([0, 97, 115, 109]),
      );
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    }
  });
});

Deno.test("JobStore commits the writes of one tick in one transaction and one WAL fsync; durable() waits for both", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const { DatabaseSync } = await import("node:sqlite");
    using store = JobStore.open(`${dir}/jobs.db`, { commitDelayMs: 1000 });
    const manifest = await testJobManifest(await generateKeyPair());
    for (let i = 0; i < 20; i++) {
      store.insert({
        jobId: String(i).padStart(64, "0"),
        manifest,
        input: new Uint8Array([i]),
        options: { cpu: 1, replicas: 1 },
      });
    }
    store.update("0".repeat(64), { status: "running" });
    const other = new DatabaseSync(`${dir}/jobs.db`, { readOnly: true });
    const count = () => (other.prepare("SELECT count(*) AS n FROM jobs").get() as { n: number }).n;
    try {
      // Not committed yet: another connection sees none of them.
      assert.equal(count(), 0);
      assert.deepEqual(store.stats, { commits: 0, syncs: 0 });
      // Awaiting durability commits now, not after commitDelayMs.
      await store.durable();
      assert.deepEqual(store.stats, { commits: 1, syncs: 1 });
      assert.equal(count(), 20);
      // Nothing pending: resolves without another commit.
      await store.durable();
      assert.deepEqual(store.stats, { commits: 1, syncs: 1 });
      // Writes of two ticks, each awaited: two commits.
      const one = "1".padStart(64, "0");
      store.update(one, { attempts: 1 });
      await store.durable();
      store.update(one, { attempts: 2 });
      await store.durable();
      assert.equal(store.stats.commits, 3);
      assert.equal(store.get(one)?.attempts, 2);
    } finally {
      other.close();
    }
  });
});

Deno.test("JobStore loses no write acknowledged by durable() when its process is killed (kill -9)", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const text = await killAtOutput([
      "run",
      "--allow-read",
      "--allow-write",
      new URL("./testdata/job_store_crash.ts", import.meta.url).pathname,
      `${dir}/jobs.db`,
      "50",
    ], (t) => t.includes("acked\n"));
    assert.equal(text, "acked\n");
    using store = JobStore.open(`${dir}/jobs.db`);
    for (let i = 0; i < 50; i++) assert.ok(store.get(i.toString(16).padStart(64, "0")), `job ${i}`);
  });
});
