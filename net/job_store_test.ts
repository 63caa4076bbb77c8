import assert from "node:assert/strict";
import { JobStore } from "./job_store.ts";
import { signJobManifest } from "../runtime/job_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";

Deno.test("JobStore keeps jobs, results and receipts across a reopen", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const manifest = await signJobManifest({
      kind: "wasm",
      module_cid: `sha256:${"a".repeat(64)}`,
      input: `sha256:${"b".repeat(64)}`,
      max_duration_ms: 1000,
      max_memory_bytes: 65536,
    }, { keyPair: await generateKeyPair() });
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
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
