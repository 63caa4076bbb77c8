import assert from "node:assert/strict";
import {
  advertiseAndWait,
  lookupFromFreshClient,
  startDhtNetwork,
  waitForProvided,
} from "./dht_network.ts";
import { type PhaseNode, startNode } from "../net/node.ts";
import { providerKeyCid } from "../net/provider_key.ts";
import { peerIdFromString } from "@libp2p/peer-id";

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

Deno.test("DHT: a peer that joins among the k closest after the record was stored gets it from the provider", async () => {
  const signal = AbortSignal.timeout(60_000);
  const key = "/phase/joined/x86_64/manifest";
  // Published: before this change, the provider never sent it again.
  await using network = await _providedIn(4, key, { at: 1, minPeers: 3, signal });
  const provider = network.servers[1]!;
  const again = waitForProvided(provider, key, (r) => r.reason === "closer_peer_joined", {
    signal,
  });
  await using late = await startNode({ mdns: false, bootstrap: provider.multiaddrs });
  await again;
  // Only the late peer is left: a lookup through it finds the record only if it holds a copy.
  await Promise.all(network.servers.map((s) => s.stop()));
  const { found } = await lookupFromFreshClient(late, key, { signal });
  assert.deepEqual(found, [provider.peerId]);
});

Deno.test("DHT: a lookup whose first answer names the provider asks no other peer", async () => {
  const signal = AbortSignal.timeout(60_000);
  const key = "/phase/first/x86_64/manifest";
  await using network = await _providedIn(6, key, { at: 0, minPeers: 5, signal });
  const provider = network.servers[0]!;
  // Enter at the server farthest from the key: its answer names closer peers, which kad-dht
  // would query next (it vets and dials them before it hands the answer on).
  const kadKey = await _sha256((await providerKeyCid(key)).multihash.bytes);
  const others = network.servers.filter((s) => s !== provider);
  const distances = await Promise.all(
    others.map(async (s) =>
      _xor(await _sha256(peerIdFromString(s.peerId).toMultihash().bytes), kadKey)
    ),
  );
  const entry =
    others[distances.indexOf(distances.reduce((a, b) => (_compare(a, b) > 0 ? a : b)))]!;
  await using client = await startNode({
    mdns: false,
    dhtClientMode: true,
    listen: [],
    bootstrap: entry.multiaddrs,
  });
  await client.bootstrapped({ signal });
  const asked: string[] = [];
  const found = await client.findProviders(key, {
    limit: 1,
    signal,
    onProgress: (event) => {
      if (event.type === "kad-dht:query:dial-peer") asked.push(String(event.detail.peer));
    },
  });
  assert.deepEqual(found.map((p) => p.peerId), [provider.peerId]);
  assert.deepEqual(asked, [entry.peerId]);
});

/** A DHT network of `size` servers where server `at` advertised `key` to `minPeers` peers. */
async function _providedIn(
  size: number,
  key: string,
  o: { at: number; minPeers: number; signal: AbortSignal },
) {
  const network = await startDhtNetwork(size);
  try {
    await advertiseAndWait(network.servers[o.at]!, key, o);
  } catch (error) {
    await network[Symbol.asyncDispose]();
    throw error;
  }
  return network;
}

async function _sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
}

function _xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  return a.map((x, i) => x ^ b[i]!);
}

function _compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}
