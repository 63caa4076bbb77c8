/**
 * Worker selection through the DHT: the requester knows only a seed node (no worker), finds the
 * worker by its `/phase/capability/<arch>/wasm` provider record, and runs the job there.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeProcess, ROOT, START_FLAGS } from "./net_spawn.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";

const FLAGS = [...START_FLAGS, `--allow-run=${Deno.execPath()}`];
const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));

Deno.test("a requester that knows only a seed finds a worker through the DHT and runs the job there", async () => {
  const root = await Deno.makeTempDir({ prefix: "plasm-exec-dht-" });
  const spawn = (name: string, args: string[]) =>
    NodeProcess.spawn([
      ...["--state-dir", `${root}/${name}`, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"],
      ...args,
    ], { flags: FLAGS });
  const seed = await spawn("seed", ["--no-worker", "--no-api"]);
  const worker = await spawn("worker", ["--bootstrap", seed.multiaddrs[0]!]);
  let requester: NodeProcess | undefined;
  try {
    // The worker's capability record has reached the seed before the requester asks.
    await worker.waitForLog((l) =>
      l.event === "provided" && String(l.key).startsWith("/phase/capability/") &&
      Number(l.peers) > 0
    );
    requester = await spawn("requester", ["--no-worker", "--bootstrap", seed.multiaddrs[0]!]);
    await requester.waitForLog((l) => l.event === "api_listening");
    await requester.waitForLog((l) => l.event === "peer_connected" && l.peer_id === seed.peerId);
    const client = new Client(await readApiEndpoint(`${root}/requester`));
    const input = new TextEncoder().encode("found by the DHT");
    const id = await client.submit(HELLO, { input });
    const result = await client.result(id, { waitMs: 60_000 });
    assert.equal(new TextDecoder().decode(result.output), "THD eht yb dnuof");
    assert.equal(result.verified, true);
    assert.equal(result.workerPeerId, worker.peerId);
    await verifyReceipt(result.receipt, {
      publicKey: peerPublicKey(worker.peerId),
      module: HELLO,
      input,
      output: result.output,
      jobId: id,
    });
  } finally {
    await requester?.stop();
    await worker.stop();
    await seed.stop();
    await Deno.remove(root, { recursive: true });
  }
});
