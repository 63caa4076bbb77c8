import assert from "node:assert/strict";
import { advertiseAndWait, lookupFromFreshClient, startDhtNetwork } from "./dht_network.ts";
import { type PhaseNode, startNode } from "../net/node.ts";

Deno.test("DHT: on 30 loopback nodes, 20 of 20 lookups from fresh clients find the provider", async () => {
  await using network = await startDhtNetwork(30);
  const { servers } = network;
  const keys = Array.from({ length: 10 }, (_, i) => `/phase/lookup${i}/x86_64/manifest`);
  const providers = new Map<string, string>();
  for (const [i, key] of keys.entries()) {
    // Spread the providers over the network, the first nodes (sparsest tables at start) included.
    const node = servers[(i * 7) % servers.length]!;
    const { peers } = await advertiseAndWait(node, key, { signal: AbortSignal.timeout(120_000) });
    assert.ok(peers >= 1, `${key}: stored on no peer`);
    providers.set(key, node.peerId);
  }
  const misses: string[] = [];
  for (let i = 0; i < 20; i++) {
    const entry = servers[(i * 11 + 3) % servers.length]!;
    const key = keys[i % keys.length]!;
    const { found } = await lookupFromFreshClient(entry, key);
    if (found[0] !== providers.get(key)) misses.push(`${key} via ${entry.peerId}: ${found}`);
  }
  assert.deepEqual(misses, []);
});

Deno.test("24 nodes that start together all reach their bootstrap peer in the first round of dials", async () => {
  // libp2p's defaults refused all but 10 handshakes in progress and 5 connections per second
  // from one address: most of these dials failed, and the network formed separate DHTs.
  await using seed = await startNode({ mdns: false });
  const nodes: PhaseNode[] = [];
  try {
    const started = await Promise.all(
      Array.from({ length: 24 }, () => startNode({ mdns: false, bootstrap: seed.multiaddrs })),
    );
    nodes.push(...started);
    const rounds = await Promise.all(nodes.map((n) => n.bootstrapped()));
    const failed = rounds.flatMap((r) => r.failed.map((f) => f.error));
    assert.deepEqual(failed, []);
    assert.deepEqual(rounds.map((r) => r.connected.length), Array(24).fill(1));
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
