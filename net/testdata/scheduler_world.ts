/**
 * Test worlds for the scheduler: node keys, in-process workers and a scheduler over an
 * in-memory job store (used by the scheduler and boot attestation tests).
 *
 * @module
 */
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type Dispatcher, Scheduler, type SchedulerOptions } from "../scheduler.ts";
import { JobStore } from "../job_store.ts";
import { JobWorker } from "../job_worker.ts";
import { WorkerPolicy } from "../worker_policy.ts";
import { generateKeyPair, type KeyPair } from "../../runtime/ed25519.ts";
import { toHex } from "../../runtime/digest.ts";

/** A fresh node key and the PeerId it names. */
export async function testNode(): Promise<{ keyPair: KeyPair; peerId: string }> {
  const keyPair = await generateKeyPair();
  const peerId = peerIdFromPrivateKey(await generateKeyPairFromSeed("Ed25519", keyPair.secretKey))
    .toString();
  return { keyPair, peerId };
}

/** An in-process x86_64 worker with a fresh key (stop it with `worker.stop()`). */
export async function makeWorker(
  options: { tamper?: boolean; receiptExtra?: Record<string, string> } = {},
): Promise<{ peerId: string; worker: JobWorker; keyPair: KeyPair }> {
  const { keyPair, peerId } = await testNode();
  const worker = new JobWorker({
    keyPair,
    peerId,
    sandbox: "worker",
    policy: new WorkerPolicy({ arch: "x86_64" }),
    tamperResultsForTests: options.tamper ?? false,
    ...(options.receiptExtra ? { receiptExtra: options.receiptExtra } : {}),
  });
  return { peerId, worker, keyPair };
}

/**
 * A scheduler with a fresh requester key and an in-memory store, dispatching through
 * `dispatcherOf(requester key in hex)`; disposing stops it and closes the store.
 */
export async function setupScheduler(
  dispatcherOf: (requesterKey: string) => Dispatcher,
  options: Partial<SchedulerOptions> = {},
): Promise<{ scheduler: Scheduler; store: JobStore } & AsyncDisposable> {
  const requester = await generateKeyPair();
  const store = JobStore.open(":memory:");
  const scheduler = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: dispatcherOf(toHex(requester.publicKey)),
    // Once every worker was tried, wait only briefly for another to appear.
    workerSearchTimeoutMs: 300,
    ...options,
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
