import assert from "node:assert/strict";
import { startNode } from "./node.ts";
import { startExecService } from "./exec_service.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import { capabilityKey } from "./provider_key.ts";
import { receiptPath } from "../runtime/receipt_store.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "./peer_key.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const WASM = { max_memory_bytes: 64 * 2 ** 20, max_duration_ms: 10_000 };

/** Fails if `promise` has not settled after `ms` (a hang guard, far above the expected time). */
async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} still hangs after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("findProviders() on a node alone (empty routing table) answers at once, even after it advertised", async () => {
  await using node = await startNode({ mdns: false, dht: true, capabilities: { wasm: WASM } });
  const arch = node.info().arch;
  // The node advertised its own capability; nobody else is there to ask.
  const found = await settlesWithin(
    node.findProviders(capabilityKey(arch)),
    15_000,
    "findProviders",
  );
  assert.deepEqual(found, []);
});

/** Run `body` with a node of a fresh identity whose state dir is removed afterwards. */
async function withNode(
  dht: boolean,
  body: (
    node: Awaited<ReturnType<typeof startNode>>,
    keyPair: Awaited<ReturnType<typeof loadOrCreateIdentity>>,
    dir: string,
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const keyPair = await loadOrCreateIdentity(dir);
    await using node = await startNode({
      secretKey: keyPair.secretKey,
      mdns: false,
      dht,
      capabilities: { wasm: WASM },
    });
    await body(node, keyPair, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a job pinned to the node's own PeerId runs on its own worker; both roles keep the receipt", async () => {
  await withNode(false, async (node, keyPair, dir) => {
    await using exec = await startExecService(node, { keyPair, stateDir: dir });
    const id = await exec.scheduler.submit(HELLO, {
      input: new TextEncoder().encode("self"),
      worker: node.peerId,
    });
    const job = await exec.scheduler.wait(id);
    assert.equal(job.status, "done", job.error ?? "");
    assert.equal(new TextDecoder().decode(job.stdout), "fles");
    assert.equal(job.workerPeerId, node.peerId);
    // Receipt files are written after the result is durable, off the answer path; stop()
    // waits for them.
    await exec.stop();
    const path = receiptPath(dir, job.receipt!);
    const kept = JSON.parse(await Deno.readTextFile(path));
    await verifyReceipt(kept, { publicKey: peerPublicKey(node.peerId), jobId: id });
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  });
});

Deno.test("a node that runs no jobs refuses a job pinned to itself, and one alone finds no worker", async () => {
  await withNode(true, async (node, keyPair) => {
    await using exec = await startExecService(node, {
      keyPair,
      worker: false,
      workerSearchTimeoutMs: 500,
    });
    await assert.rejects(
      exec.scheduler.submit(HELLO, { worker: node.peerId }),
      /is this node, which runs no jobs/,
    );
    const id = await exec.scheduler.submit(HELLO);
    const job = await settlesWithin(exec.scheduler.wait(id), 15_000, "the job");
    assert.equal(job.status, "failed");
    assert.equal(job.errorKind, "no_worker_found");
    assert.match(job.error!, /no worker found within 500 ms/);
    await exec.stop();
  });
});
