/**
 * Test and benchmark helper: an N-node Kademlia network in this process (real TCP + Noise +
 * Yamux over loopback), keys advertised the way `start` does, lookups from fresh client nodes
 * the way `discover --dht` does.
 *
 * @module
 */
import { type PhaseNode, startNode } from "../net/node.ts";

/** A running in-process DHT network; disposing stops every node. */
export interface DhtNetwork extends AsyncDisposable {
  /** The server nodes, in start order. */
  servers: PhaseNode[];
  /** How long starting all servers took, in ms. */
  startMs: number;
}

/**
 * Start `count` DHT servers on 127.0.0.1, without mDNS; each bootstraps from the first one and
 * from one random earlier one.
 */
export async function startDhtNetwork(count: number): Promise<DhtNetwork> {
  const servers: PhaseNode[] = [];
  const t0 = performance.now();
  const stopAll = () => Promise.all(servers.map((s) => s.stop())).then(() => {});
  const start = async (bootstrap: string[]) => {
    const listeners = new Set<(record: Record<string, unknown>) => void>();
    const node = await startNode({
      mdns: false,
      bootstrap,
      onLog: (record) => {
        for (const listener of listeners) listener(record);
      },
    });
    _listeners.set(node, listeners);
    servers.push(node);
  };
  try {
    await start([]);
    for (let i = 1; i < count; i++) {
      const peers = [servers[0]!, servers[Math.floor(Math.random() * i)]!];
      await start([...new Set(peers.flatMap((p) => p.multiaddrs))]);
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  return { servers, startMs: performance.now() - t0, [Symbol.asyncDispose]: stopAll };
}

/**
 * Advertise `key` from `node` (`PhaseNode.advertise`, as `start` does for its capabilities) and
 * wait for its first `provided` record (with at least `minPeers` peers holding it, default any);
 * resolves with the peers that stored it and the time.
 */
export async function advertiseAndWait(
  node: PhaseNode,
  key: string,
  options: { signal?: AbortSignal; minPeers?: number } = {},
): Promise<{ peers: number; ms: number }> {
  const t0 = performance.now();
  const done = Promise.withResolvers<number>();
  const onAbort = () => done.reject(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const unlisten = _onProvided(node, key, (peers) => {
    if (peers >= (options.minPeers ?? 0)) done.resolve(peers);
  });
  try {
    await node.advertise(key);
    const peers = await done.promise;
    return { peers, ms: performance.now() - t0 };
  } finally {
    unlisten();
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Look `key` up from a fresh client-mode node bootstrapped from `entry` (as `discover --dht`
 * does); resolves with the providers found (at most one), the time to join (a routing table
 * entry) and the lookup time.
 */
export async function lookupFromFreshClient(
  entry: PhaseNode,
  key: string,
  options: { signal?: AbortSignal } = {},
): Promise<{ found: string[]; joinMs: number; lookupMs: number }> {
  const signal = options.signal ?? AbortSignal.timeout(60_000);
  const tj = performance.now();
  await using client = await startNode({
    mdns: false,
    dhtClientMode: true,
    listen: [],
    bootstrap: entry.multiaddrs,
  });
  const dht = client.libp2p.services.dht as unknown as { routingTable: { size: number } };
  while (dht.routingTable.size === 0 && !signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const joinMs = performance.now() - tj;
  const tl = performance.now();
  const found = await client.findProviders(key, { limit: 1, signal });
  return { found: found.map((p) => p.peerId), joinMs, lookupMs: performance.now() - tl };
}

/**
 * Wait for a `provided` log record of `node` (started by {@linkcode startDhtNetwork}) for `key`
 * that satisfies `accept`; resolves with that record.
 */
export async function waitForProvided(
  node: PhaseNode,
  key: string,
  accept: (record: Record<string, unknown>) => boolean,
  options: { signal?: AbortSignal } = {},
): Promise<Record<string, unknown>> {
  const set = _listeners.get(node);
  if (!set) throw new TypeError("Cannot watch the node: start it with startDhtNetwork()");
  const done = Promise.withResolvers<Record<string, unknown>>();
  const listener = (record: Record<string, unknown>) => {
    if (record.event === "provided" && record.key === key && accept(record)) done.resolve(record);
  };
  const onAbort = () => done.reject(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  set.add(listener);
  try {
    return await done.promise;
  } finally {
    set.delete(listener);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

const _listeners = new WeakMap<PhaseNode, Set<(record: Record<string, unknown>) => void>>();

/** Call `onPeers` on the node's `provided` log records for `key`; returns the unsubscribe. */
function _onProvided(node: PhaseNode, key: string, onPeers: (peers: number) => void): () => void {
  const set = _listeners.get(node);
  if (!set) throw new TypeError("Cannot watch the node: start it with startDhtNetwork()");
  const listener = (record: Record<string, unknown>) => {
    if (record.event === "provided" && record.key === key) onPeers(Number(record.peers));
  };
  set.add(listener);
  return () => set.delete(listener);
}
