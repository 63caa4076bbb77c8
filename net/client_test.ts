import assert from "node:assert/strict";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { Client } from "./client.ts";
import { createLocalApiHandler } from "./local_api.ts";
import { localDispatcher, Scheduler } from "./scheduler.ts";
import { JobStore } from "./job_store.ts";
import { JobWorker } from "./job_worker.ts";
import { WorkerPolicy } from "./worker_policy.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { toHex } from "../runtime/digest.ts";
import { decodeFileTree, encodeFileTree, makeFileTree } from "../runtime/file_tree.ts";
import { ReceiptMismatchError } from "../runtime/receipt.ts";

Deno.test("Client.result() gives the output tree its receipts name, and refuses a tampered one", async () => {
  const workerKey = await generateKeyPair();
  const peerId = peerIdFromPrivateKey(await generateKeyPairFromSeed("Ed25519", workerKey.secretKey))
    .toString();
  const worker = new JobWorker({
    keyPair: workerKey,
    peerId,
    sandbox: "worker",
    policy: new WorkerPolicy({ arch: "x86_64" }),
  });
  const requester = await generateKeyPair();
  using store = JobStore.open(":memory:");
  const scheduler = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: localDispatcher({ [peerId]: worker }, toHex(requester.publicKey)),
  });
  const token = "t".repeat(32);
  const api = createLocalApiHandler({ token, jobs: scheduler });
  let tamper = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const response = await api(request);
    if (!tamper || !new URL(request.url).pathname.endsWith("/result")) return response;
    const json = await response.json();
    const files = Uint8Array.fromBase64(json.files);
    files[files.length - 1]! ^= 1;
    return Response.json({ ...json, files: files.toBase64() });
  });
  try {
    const client = new Client({ url: `http://127.0.0.1:${server.addr.port}/`, token });
    const copy = await Deno.readFile(
      new URL("../runtime/testdata/copy_file.wasm", import.meta.url),
    );
    const data = new TextEncoder().encode("x");
    const inputs = encodeFileTree(
      makeFileTree([{ path: "in.txt", type: "file", executable: false, data }]),
    );
    const id = await client.submit(copy, { inputs, worker: peerId });
    const result = await client.result(id, { waitMs: 30_000 });
    assert.deepEqual(decodeFileTree(result.files!).entries.map((e) => e.path), [
      "in.txt",
      "out.txt",
    ]);
    tamper = true;
    await assert.rejects(
      client.result(id),
      (e) => e instanceof ReceiptMismatchError && e.field === "outputs_hash",
    );
  } finally {
    await server.shutdown();
    await scheduler.stop();
    await worker.stop();
  }
});
