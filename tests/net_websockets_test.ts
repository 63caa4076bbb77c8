/**
 * The WebSockets transport next to TCP: a `start` that listens on `/ws` is bootstrapped to over
 * WebSockets, runs a job for its peer over it, and `GET /status` names the transport.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, spawnLocalNode } from "./net_spawn.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";

const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));

Deno.test("a node listening on /ws is reached over WebSockets, runs a job there, and /status says websockets", async () => {
  const root = await Deno.makeTempDir({ prefix: "plasm-ws-" });
  try {
    await using worker = await spawnLocalNode(`${root}/worker`, [
      ...["--listen", "/ip4/127.0.0.1/tcp/0/ws", "--reachability", "public"],
    ]);
    const ws = worker.multiaddrs.find((a) => a.includes("/ws/"));
    assert.ok(ws, `a /ws address in ${worker.multiaddrs}`);
    await using requester = await spawnLocalNode(`${root}/requester`, [
      ...["--no-worker", "--reachability", "public", "--bootstrap", ws],
    ]);
    await requester.waitForLog((l) => l.event === "peer_connected" && l.peer_id === worker.peerId);
    await requester.waitForLog((l) => l.event === "api_listening");
    const endpoint = await readApiEndpoint(`${root}/requester`);
    const client = new Client(endpoint);
    const id = await client.submit(HELLO, {
      input: new TextEncoder().encode("over websockets"),
      worker: worker.peerId,
    });
    const result = await client.result(id, { waitMs: 30_000 });
    assert.equal(new TextDecoder().decode(result.output), "stekcosbew revo");
    assert.equal(result.verified, true);
    const response = await fetch(new URL("status", endpoint.url), {
      headers: { authorization: `Bearer ${endpoint.token}` },
    });
    const status = await response.json();
    const peer = status.peers.find((p: { peer_id: string }) => p.peer_id === worker.peerId);
    assert.deepEqual([peer.transport, peer.connection], ["websockets", "direct"]);
    assert.equal(status.reachability, "public");
    assert.equal(status.relay, null);
    // Both stop cleanly: the WebSockets listener does not keep the process alive.
    assert.equal((await requester.stop()).code, 0);
    assert.equal((await worker.stop()).code, 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
