import assert from "node:assert/strict";
import { JobWorker } from "./job_worker.ts";
import { WorkerPolicy } from "./worker_policy.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { signJobManifest } from "../runtime/job_manifest.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import type { JobOffer } from "./job_protocol.ts";
import { testOffer } from "./testdata/job_offer.ts";
import { streamPair } from "@libp2p/utils";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { JOB_EXEC_PROTOCOL, requestJobExec } from "./job_exec_protocol.ts";
import { decodeFileTree, encodeFileTree, makeFileTree } from "../runtime/file_tree.ts";
import { verifyReceipt } from "../runtime/receipt.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const input = new TextEncoder().encode("abc");

async function job(keyPair: KeyPair) {
  const manifest = await signJobManifest({
    kind: "wasm",
    module_cid: sha256Tag(HELLO),
    input: sha256Tag(input),
    max_duration_ms: 5000,
    max_memory_bytes: 16 * 2 ** 20,
  }, { keyPair });
  return manifest;
}

const offer = (jobId: string): JobOffer =>
  testOffer({ job_id: jobId, module_hash: sha256Tag(HELLO) });

/** A worker of a fresh key that runs jobs in a Web Worker. */
async function newWorker(): Promise<JobWorker> {
  return new JobWorker({
    keyPair: await generateKeyPair(),
    peerId: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
    policy: new WorkerPolicy(),
    sandbox: "worker",
  });
}

Deno.test("a cached module runs only for a requester that sent those bytes itself", async () => {
  const worker = await newWorker();
  try {
    const alice = await generateKeyPair();
    const mallory = await generateKeyPair();
    const signal = new AbortController().signal;
    const run = async (keyPair: KeyPair, module?: Uint8Array, offered = false) => {
      const manifest = await job(keyPair);
      if (!offered) {
        const answer = worker.decideOffer(offer(await jobIdOf(manifest)), toHex(keyPair.publicKey));
        assert.ok("Accepted" in answer, JSON.stringify(answer));
      }
      return await worker.execute({ manifest, input, module }, toHex(keyPair.publicKey), {
        signal,
      });
    };
    const first = await run(alice, HELLO);
    assert.ok("Done" in first && new TextDecoder().decode(first.Done.stdout) === "cba");
    // Alice sent the bytes: her next job runs from the cache.
    assert.ok("Done" in await run(alice));
    // Mallory knows the hash but never sent the bytes: she must send them.
    const stolen = await run(mallory);
    assert.ok("NeedModule" in stolen, JSON.stringify(stolen));
    // Asked for it, she sends it on a new stream, under the same accepted offer.
    assert.ok("Done" in await run(mallory, HELLO, true));
  } finally {
    await worker.stop();
  }
});

Deno.test("execute() refuses a job whose offer was never accepted from that requester", async () => {
  const worker = await newWorker();
  try {
    const alice = await generateKeyPair();
    const manifest = await job(alice);
    const answer = await worker.execute(
      { manifest, input, module: HELLO },
      toHex(alice.publicKey),
      { signal: new AbortController().signal },
    );
    assert.match(JSON.stringify(answer), /no accepted offer from this peer for this job/);
  } finally {
    await worker.stop();
  }
});

async function jobIdOf(manifest: Awaited<ReturnType<typeof job>>): Promise<string> {
  const { verifyJobManifest } = await import("../runtime/job_manifest.ts");
  return await verifyJobManifest(manifest);
}

Deno.test("a job with an input tree runs with its files, the tree sent once per requester; the answer carries the output tree", async () => {
  const COPY = await Deno.readFile(new URL("../runtime/testdata/copy_file.wasm", import.meta.url));
  type Handler = (stream: unknown, connection: unknown) => Promise<void>;
  let exec: Handler | undefined;
  const registrar = {
    handle: (protocol: string, handler: unknown) => {
      if (protocol === JOB_EXEC_PROTOCOL) exec = handler as Handler;
      return Promise.resolve();
    },
    unhandle: () => Promise.resolve(),
  };
  const workerKey = await generateKeyPair();
  const worker = new JobWorker({
    keyPair: workerKey,
    policy: new WorkerPolicy(),
    sandbox: "worker",
  }, {
    registrar,
    peerId: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
  });
  await worker.start();
  try {
    const data = new TextEncoder().encode("file contents");
    const tree = encodeFileTree(
      makeFileTree([{ path: "in.txt", type: "file", executable: false, data }]),
    );
    const empty = new Uint8Array();
    const run = async (keyPair: KeyPair, inputs: Uint8Array, n: number) => {
      const manifest = await signJobManifest({
        kind: "wasm",
        module_cid: sha256Tag(COPY),
        input: sha256Tag(empty),
        inputs: sha256Tag(tree),
        max_duration_ms: 5000,
        max_memory_bytes: 16 * 2 ** 20,
        args: [String(n)],
      }, { keyPair });
      const jobId = await jobIdOf(manifest);
      const key = toHex(keyPair.publicKey);
      const accepted = worker.decideOffer(
        testOffer({ job_id: jobId, module_hash: sha256Tag(COPY) }),
        key,
      );
      assert.ok("Accepted" in accepted, JSON.stringify(accepted));
      const peer = peerIdFromPrivateKey(
        await generateKeyPairFromSeed("Ed25519", keyPair.secretKey),
      );
      const [requester, server] = await streamPair();
      const [answer] = await Promise.all([
        requestJobExec(requester, { manifest, input: empty, module: COPY, inputs }),
        exec!(server, { remotePeer: peer }),
      ]);
      return answer;
    };
    const alice = await generateKeyPair();
    const first = await run(alice, tree, 1);
    assert.ok("Done" in first, JSON.stringify(first));
    assert.deepEqual(decodeFileTree(first.Done.files!).entries, [
      { path: "in.txt", type: "file", executable: false, data },
      { path: "out.txt", type: "file", executable: false, data },
    ]);
    const { receipt } = first.Done;
    await verifyReceipt(receipt, { publicKey: workerKey.publicKey });
    assert.equal(receipt.result.metrics.extra.inputs_hash, sha256Tag(tree));
    assert.equal(receipt.result.metrics.extra.outputs_hash, sha256Tag(first.Done.files!));
    // Alice sent the tree: her next job runs from the cache (the worker does not ask for the
    // bytes, so these stand-ins of the same length are never read).
    const standIn = new Uint8Array(tree.length);
    const second = await run(alice, standIn, 2);
    assert.ok("Done" in second, JSON.stringify(second));
    assert.deepEqual(second.Done.files, first.Done.files);
    // Mallory knows the hash but never sent the tree: she is asked, and her bytes are checked.
    const stolen = await run(await generateKeyPair(), standIn, 3);
    assert.match(JSON.stringify(stolen), /input tree: its bytes do not hash to sha256:/);
  } finally {
    await worker.stop();
  }
});
