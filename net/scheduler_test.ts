import assert from "node:assert/strict";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type Dispatcher, localDispatcher, Scheduler } from "./scheduler.ts";
import { JobStore } from "./job_store.ts";
import { JobWorker } from "./job_worker.ts";
import { WorkerPolicy } from "./worker_policy.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { toHex } from "../runtime/digest.ts";
import { signReceipt } from "../runtime/receipt.ts";
import { commitChunksAsync, stdoutChunks } from "../runtime/output_commitment.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

async function makeWorker(
  options: { tamper?: boolean } = {},
): Promise<{ peerId: string; worker: JobWorker; keyPair: KeyPair }> {
  const keyPair = await generateKeyPair();
  const peerId = peerIdFromPrivateKey(await generateKeyPairFromSeed("Ed25519", keyPair.secretKey))
    .toString();
  const worker = new JobWorker({
    keyPair,
    peerId,
    sandbox: "worker",
    policy: new WorkerPolicy({ arch: "x86_64" }),
    tamperResultsForTests: options.tamper ?? false,
  });
  return { peerId, worker, keyPair };
}

async function setup(dispatcherOf: (requesterKey: string) => Dispatcher) {
  const requester = await generateKeyPair();
  const store = JobStore.open(":memory:");
  const scheduler = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: dispatcherOf(toHex(requester.publicKey)),
  });
  return {
    scheduler,
    store,
    async [Symbol.asyncDispose]() {
      await scheduler.stop();
      store.close();
    },
  };
}

Deno.test("Scheduler retries on another worker when the first rejects the offer", async () => {
  const good = await makeWorker();
  const busy = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
  await using s = await setup((key) => {
    const local = localDispatcher({ [good.peerId]: good.worker }, key);
    return {
      candidates: () => Promise.resolve([busy, good.peerId]),
      offer: (peer, offer, signal) =>
        peer === busy
          ? Promise.resolve({ Rejected: { job_id: offer.job_id, reason: "QueueFull" } })
          : local.offer(peer, offer, signal),
      exec: local.exec,
    };
  });
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(dec(job.stdout), "cba");
  assert.equal(job.workerPeerId, good.peerId);
  assert.equal(job.attempts, 2);
  good.worker.stop();
});

Deno.test("Scheduler never returns a tampered result: the job fails with the mismatch", async () => {
  const bad = await makeWorker({ tamper: true });
  await using s = await setup((key) => localDispatcher({ [bad.peerId]: bad.worker }, key));
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /output_commitment/);
  assert.equal(job.stdout, undefined);
  assert.equal(job.receipt, undefined);
  bad.worker.stop();
});

Deno.test("Scheduler rejects a receipt signed by a key other than the worker's PeerId", async () => {
  const real = await makeWorker();
  const impostor = await makeWorker();
  // The impostor's PeerId answers, but the work (and receipt) comes from another key.
  await using s = await setup((key) => localDispatcher({ [impostor.peerId]: real.worker }, key));
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /signed for key/);
  real.worker.stop();
  impostor.worker.stop();
});

Deno.test("Scheduler with replicas: agreeing workers give one result, a consistent liar fails it", async () => {
  const one = await makeWorker();
  const two = await makeWorker();
  {
    await using s = await setup((key) =>
      localDispatcher({ [one.peerId]: one.worker, [two.peerId]: two.worker }, key)
    );
    const id = await s.scheduler.submit(HELLO, { input: enc("abc"), replicas: 2 });
    const job = await s.scheduler.wait(id);
    assert.equal(job.status, "done", job.error ?? "");
    assert.deepEqual(job.workerPeerId!.split(",").sort(), [one.peerId, two.peerId].sort());
    assert.equal(s.store.receipts(id).length, 2);
  }
  // `two` lies consistently: other output, with a receipt it signs over that output.
  await using s = await setup((key) => {
    const local = localDispatcher({ [one.peerId]: one.worker, [two.peerId]: two.worker }, key);
    return {
      ...local,
      async exec(peer, request, signal) {
        const answer = await local.exec(peer, request, signal);
        if (peer !== two.peerId || !("Done" in answer)) return answer;
        const stdout = enc("lies");
        const chunks = stdoutChunks(stdout);
        const result = structuredClone(answer.Done.receipt.result);
        result.output_commitment = Array.from(await commitChunksAsync(chunks));
        result.output_chunk_count = chunks.length;
        const receipt = await signReceipt(result, {
          jobId: answer.Done.job_id,
          keyPair: two.keyPair,
        });
        return { Done: { ...answer.Done, stdout, receipt } };
      },
    };
  });
  const id = await s.scheduler.submit(HELLO, { input: enc("xyz"), replicas: 2 });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /replicas disagree/);
  one.worker.stop();
  two.worker.stop();
});

Deno.test("Scheduler.resume() finishes a job a previous run left queued", async () => {
  const good = await makeWorker();
  const requester = await generateKeyPair();
  using store = JobStore.open(":memory:");
  const none: Dispatcher = {
    candidates: () => new Promise(() => {}),
    offer: () => Promise.reject(new Error("unused")),
    exec: () => Promise.reject(new Error("unused")),
  };
  // The first scheduler stops (as a node would) before any worker is found.
  const first = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: {
      ...none,
      candidates: (signal) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    },
  });
  const id = await first.submit(HELLO, { input: enc("later") });
  await new Promise((resolve) => setTimeout(resolve, 20));
  await first.stop();
  assert.equal(store.get(id)!.status, "running");
  const second = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: localDispatcher({ [good.peerId]: good.worker }, toHex(requester.publicKey)),
  });
  assert.deepEqual(second.resume(), [id]);
  const job = await second.wait(id);
  assert.equal(dec(job.stdout), "retal");
  await second.stop();
  good.worker.stop();
});
