import assert from "node:assert/strict";
import { JobWorker } from "./job_worker.ts";
import { WorkerPolicy } from "./worker_policy.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { signJobManifest } from "../runtime/job_manifest.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import type { JobOffer } from "./job_protocol.ts";
import { testOffer } from "./testdata/job_offer.ts";

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
