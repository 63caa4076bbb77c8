/**
 * Find Phase nodes and boot providers by mDNS and in the DHT, and ask each for its info.
 *
 * @module
 */
import { type FoundPeer, startNode } from "./node.ts";
import type { NodeInfo } from "./node_info.ts";
import { capabilityKey, manifestKey } from "./provider_key.ts";
import { DEFAULT_JOB_KIND, jobKind } from "../runtime/job_kinds.ts";
import { sleep } from "../util/sleep.ts";
import { errorMessage } from "../util/error_message.ts";

/**
 * Thrown by {@linkcode discoverPeers} when the DHT is the only source and none of the bootstrap
 * peers could be dialled.
 *
 * @example
 * ```ts
 * import { BootstrapFailedError } from "./discover_peers.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new BootstrapFailedError([{ multiaddr: "/ip4/127.0.0.1/tcp/1", error: "connection refused" }]);
 * assert.equal(error.message, "Cannot discover in the DHT: no bootstrap peer answered (1 tried)");
 * ```
 */
export class BootstrapFailedError extends Error {
  /** Each bootstrap multiaddr tried, with why it failed. */
  readonly failed: { multiaddr: string; error: string }[];

  /**
   * Make the error from the failed dials.
   *
   * @example
   * ```ts
   * import { BootstrapFailedError } from "./discover_peers.ts";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new BootstrapFailedError([]).failed.length, 0);
   * ```
   */
  constructor(failed: { multiaddr: string; error: string }[], options?: ErrorOptions) {
    super(
      `Cannot discover in the DHT: no bootstrap peer answered (${failed.length} tried)`,
      options,
    );
    this.name = "BootstrapFailedError";
    this.failed = failed;
  }
}

/** A node found, with what it said about itself. */
export interface DiscoveredPeer {
  /** Its PeerId. */
  peer_id: string;
  /** The addresses it was found with. */
  multiaddrs: string[];
  /** How it was found. */
  via: ("mdns" | "dht")[];
  /** Its info, from `/phase/info/1.0.0`. */
  info: NodeInfo;
}

/** Options of {@linkcode discoverPeers}. */
export interface DiscoverPeersOptions {
  /** Ask on the LAN with mDNS. @default true unless `dht` is set */
  mdns?: boolean;
  /** Look up provider records in the DHT (client mode). @default true when bootstrap peers are given */
  dht?: boolean;
  /** Multiaddrs of DHT peers to start from. @default [] */
  bootstrap?: string[];
  /** Find boot providers of this channel (key `/phase/<channel>/<arch>/manifest`). @default none */
  channel?: string;
  /** Architecture to look for. @default Deno.build.arch */
  arch?: string;
  /**
   * Find nodes with this capability, a job kind's name (key `/phase/capability/<arch>/<capability>`).
   * @default the default job kind (`wasm`) in the DHT when no channel is given; no filter on mDNS
   */
  capability?: string;
  /** Give up after this long, in ms; the search ends sooner once it has its answer. @default 10000 */
  timeoutMs?: number;
  /**
   * mDNS asks at once (and again every second) and ends once this long passed without a new
   * peer after the first answer, in ms. @default 200
   */
  mdnsQuietMs?: number;
  /** mDNS ends after this long without any answer, in ms. @default 2000 */
  mdnsWaitMs?: number;
  /** Receives structured log records. @default none */
  onLog?: (record: Record<string, unknown>) => void;
  /** Aborts the search; what was found so far is returned. */
  signal?: AbortSignal;
}

/**
 * Find nodes: by mDNS (peers on the LAN), and in the DHT (providers of a capability or boot
 * manifest key, from the given bootstrap peers). Runs an ephemeral client node that writes
 * nothing and answers no mDNS queries. Each candidate is asked for its info (capped, timed out,
 * validated); those that fail or do not match the filters are left out.
 *
 * mDNS asks at once and ends as soon as its answers stop changing: `mdnsQuietMs` (200 ms) without
 * a new peer after the first answer, or `mdnsWaitMs` (2 s) without any answer; `timeoutMs` bounds
 * the whole search.
 *
 * Bootstrap peers that cannot be dialled are logged (`bootstrap_dial_failed`, level `warn`).
 * When every one of them failed, the DHT search ends there; without mDNS that ends the whole
 * search with an error, rather than waiting for the timeout.
 *
 * @throws {BootstrapFailedError} If the DHT is the only source and no bootstrap peer answered.
 *
 * @example
 * ```ts
 * import { discoverPeers } from "./discover_peers.ts";
 * import { startNode } from "./node.ts";
 * import assert from "node:assert/strict";
 *
 * await using node = await startNode({ mdns: false, arch: "riscv64",
 *   capabilities: { wasm: { max_memory_bytes: 1 << 20, max_duration_ms: 1000 } } });
 * await using helper = await startNode({ mdns: false, bootstrap: node.multiaddrs });
 * const found = await discoverPeers({ mdns: false, bootstrap: helper.multiaddrs,
 *   arch: "riscv64", capability: "wasm", timeoutMs: 8000 });
 * assert.deepEqual(found.map((p) => p.peer_id), [node.peerId]);
 * ```
 */
export async function discoverPeers(options: DiscoverPeersOptions = {}): Promise<DiscoveredPeer[]> {
  const {
    bootstrap = [],
    dht = bootstrap.length > 0,
    mdns = !options.dht,
    channel,
    arch,
    capability,
    timeoutMs = 10_000,
    mdnsQuietMs = 200,
    mdnsWaitMs = 2000,
    onLog = () => {},
    signal,
  } = options;
  if (!mdns && !dht) throw new TypeError("Cannot discover: enable mDNS or the DHT");
  if (dht && bootstrap.length === 0) {
    throw new TypeError("Cannot discover in the DHT: give at least one bootstrap peer");
  }
  if (!(timeoutMs > 0)) throw new RangeError(`Cannot use timeout ${timeoutMs} ms`);
  if (!(mdnsQuietMs > 0)) throw new RangeError(`Cannot use mDNS quiet time ${mdnsQuietMs} ms`);
  if (!(mdnsWaitMs > 0)) throw new RangeError(`Cannot use mDNS wait ${mdnsWaitMs} ms`);
  if (capability !== undefined) jobKind(capability, "capability");
  const lookArch = arch ?? Deno.build.arch;
  const key = channel !== undefined
    ? manifestKey(channel, lookArch)
    : capabilityKey(lookArch, capability ?? DEFAULT_JOB_KIND.name);
  const t0 = performance.now();
  // A timer of our own (not AbortSignal.timeout) keeps the process alive until the deadline.
  const timeout = new AbortController();
  const deadlineTimer = setTimeout(() => timeout.abort(), timeoutMs);
  const deadline = AbortSignal.any([timeout.signal, ...(signal ? [signal] : [])]);
  const found = new Map<string, DiscoveredPeer>();
  const asked = new Map<string, Promise<void>>();
  const candidates = new Map<string, { multiaddrs: string[]; via: Set<"mdns" | "dht"> }>();
  let lastNewPeer = Date.now();
  let mdnsHeard = false;
  let wakeMdns = () => {};
  // mDNS answers can arrive while the node is still starting: keep them until it has started.
  let early: FoundPeer[] | undefined = [];

  const node = await startNode({
    listen: [],
    bootstrap,
    mdns,
    mdnsBroadcast: false,
    mdnsIntervalMs: 1000,
    dht,
    dhtClientMode: true,
    capabilities: {},
    // A dial plus info query may take half the search, at least 5 s: a slow machine (a Phase Boot
    // stub under TCG) needs seconds for the Noise handshake alone.
    streamTimeoutMs: Math.min(Math.max(5000, Math.floor(timeoutMs / 2)), timeoutMs),
    onLog,
    onMdnsPeer: (peer) => {
      if (early) {
        if (early.length < 256) early.push(peer);
        return;
      }
      mdnsHeard = true;
      consider(peer.peerId, peer.multiaddrs, "mdns");
    },
  }).catch((error) => {
    clearTimeout(deadlineTimer);
    throw error;
  });
  // The mDNS window counts from here, not from the call: starting the node can take seconds on a
  // slow machine (a Phase Boot stub under TCG), which would leave no time to hear an answer.
  const started = Date.now();
  onLog({
    level: "info",
    event: "search_started",
    node_start_ms: Math.round(performance.now() - t0),
  });
  if (candidates.size === 0) lastNewPeer = started;
  const heardEarly = early;
  early = undefined;
  for (const peer of heardEarly) {
    mdnsHeard = true;
    consider(peer.peerId, peer.multiaddrs, "mdns");
  }

  function consider(peerId: string, multiaddrs: string[], via: "mdns" | "dht") {
    const entry = candidates.get(peerId) ?? { multiaddrs: [], via: new Set() };
    for (const ma of multiaddrs) if (!entry.multiaddrs.includes(ma)) entry.multiaddrs.push(ma);
    entry.via.add(via);
    candidates.set(peerId, entry);
    const existing = found.get(peerId);
    if (existing) {
      existing.via = [...entry.via].sort();
      existing.multiaddrs = entry.multiaddrs;
    }
    if (asked.has(peerId) || deadline.aborted) return;
    lastNewPeer = Date.now();
    wakeMdns();
    asked.set(
      peerId,
      node.queryInfo(peerId, { multiaddrs: entry.multiaddrs, signal: deadline }).then((info) => {
        if (!_matches(info, { channel, arch, capability })) {
          onLog({ level: "info", event: "peer_filtered", peer_id: peerId });
          return;
        }
        found.set(peerId, {
          peer_id: peerId,
          multiaddrs: entry.multiaddrs,
          via: [...entry.via].sort(),
          info,
        });
      }, (error) => {
        onLog({ level: "warn", event: "info_failed", peer_id: peerId, error: errorMessage(error) });
      }),
    );
  }

  try {
    const searches: Promise<void>[] = [];
    if (dht) searches.push(_searchDht());
    if (mdns) searches.push(_waitMdnsQuiet());
    await Promise.all(searches);
    while (true) {
      const pending = [...asked.values()];
      await Promise.all(pending);
      if (asked.size === pending.length) break;
    }
    onLog({
      level: "info",
      event: "search_done",
      ms: Math.round(performance.now() - t0),
      found: found.size,
    });
  } finally {
    clearTimeout(deadlineTimer);
    // Every answer is in: drop the connections rather than close them one handshake at a time
    // (libp2p's stop waits for each peer to confirm; a busy peer makes `discover` wait).
    for (const connection of node.libp2p.getConnections()) {
      connection.abort(new DOMException("The search ended", "AbortError"));
    }
    await node.stop();
  }
  return [...found.values()].sort((a, b) => a.peer_id.localeCompare(b.peer_id));

  async function _searchDht(): Promise<void> {
    let boot;
    try {
      boot = await node.bootstrapped({ signal: deadline });
    } catch {
      return; // the deadline passed first
    }
    if (boot.connected.length === 0) {
      // Nobody to ask: end the DHT search now. With mDNS as well, that search goes on.
      if (!mdns) throw new BootstrapFailedError(boot.failed);
      onLog({ level: "warn", event: "dht_search_skipped", reason: "no bootstrap peer answered" });
      return;
    }
    while (!deadline.aborted) {
      const providers = await node.findProviders(key, { signal: deadline });
      for (const p of providers) consider(p.peerId, p.multiaddrs, "dht");
      if (providers.length > 0) return;
      // Nobody yet: the client may still be joining, or the record not yet stored; try again.
      await sleep(500, deadline);
    }
  }

  /**
   * Wait until mDNS answers stop changing: `mdnsQuietMs` without a new peer after the first
   * answer, or `mdnsWaitMs` without any answer.
   */
  async function _waitMdnsQuiet(): Promise<void> {
    while (!deadline.aborted) {
      const now = Date.now();
      const wait = mdnsHeard ? mdnsQuietMs - (now - lastNewPeer) : mdnsWaitMs - (now - started);
      if (wait <= 0) return;
      const nap = new AbortController();
      wakeMdns = () => nap.abort();
      await sleep(wait, AbortSignal.any([deadline, nap.signal]));
    }
  }
}

function _matches(
  info: NodeInfo,
  filter: {
    channel?: string | undefined;
    arch?: string | undefined;
    capability?: string | undefined;
  },
): boolean {
  if (filter.channel !== undefined && info.channel !== filter.channel) return false;
  if (filter.arch !== undefined && info.arch !== filter.arch && filter.channel === undefined) {
    return false;
  }
  if (filter.capability !== undefined && !Object.hasOwn(info.capabilities, filter.capability)) {
    return false;
  }
  return true;
}
