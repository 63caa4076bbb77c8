/**
 * The Phase libp2p node: TCP + Noise + Yamux, identify, ping, Kademlia DHT and mDNS, the
 * `/phase/info/1.0.0` protocol and provider-record advertisement (kad-dht re-provides).
 *
 * It extends the libp2p way: more transports (QUIC, WebSockets, a relay) and more services
 * (such as the job worker, `jobWorker()`) are options of {@linkcode startNode}, not edits here.
 * Under `deno run`, call `applyNodeCompat()` (`node_compat.ts`) once before starting a node.
 *
 * @module
 */
import { createLibp2p, type Libp2p } from "libp2p";
import { tcp } from "@libp2p/tcp";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { identify } from "@libp2p/identify";
import { ping } from "@libp2p/ping";
import { type KadDHT, kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import { mdns } from "@libp2p/mdns";
import { generateKeyPair, generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import {
  type Connection,
  KEEP_ALIVE,
  type PeerId,
  type PeerInfo,
  type Stream,
} from "@libp2p/interface";
import { isRelayed } from "./is_relayed.ts";
import {
  encodeNodeInfo,
  INFO_PROTOCOL,
  type NodeInfo,
  parseNodeInfo,
  requestInfo,
  serveInfo,
} from "./node_info.ts";
import { capabilityKey, providerKeyCid } from "./provider_key.ts";
import { sleep } from "../util/sleep.ts";
import { errorMessage } from "../util/error_message.ts";
import { checkIntegers } from "../util/check_integers.ts";

/** One structured log record; the CLI prints each as a JSON line. */
export interface NodeLogRecord {
  /** `info`, `warn` or `error`. */
  level: "info" | "warn" | "error";
  /** What happened, snake_case, such as `peer_discovered` or `provided`. */
  event: string;
  /** Further fields. */
  [field: string]: unknown;
}

/** Options of {@linkcode startNode}. */
export interface StartNodeOptions {
  /** Raw 32-byte Ed25519 seed of the node key; the PeerId derives from it. @default a fresh ephemeral key */
  secretKey?: Uint8Array;
  /** Multiaddrs to listen on. @default ["/ip4/127.0.0.1/tcp/0"] */
  listen?: string[];
  /**
   * Multiaddrs of peers to dial at start; each one reached is tagged keep-alive, so libp2p
   * redials it whenever it drops, and one not reached yet is dialled again every 5 s. @default []
   */
  bootstrap?: string[];
  /** Find and be found by peers on the LAN with mDNS. @default true */
  mdns?: boolean;
  /** Answer mDNS queries (false: only ask). @default true */
  mdnsBroadcast?: boolean;
  /** Interval between mDNS queries, in ms. @default 10000 */
  mdnsIntervalMs?: number;
  /** Run the Kademlia DHT (`/ipfs/kad/1.0.0`). @default true */
  dht?: boolean;
  /** Run the DHT in client mode (ask, never store records for others). @default false */
  dhtClientMode?: boolean;
  /** Most open connections. @default 100 */
  maxConnections?: number;
  /** Time limit for one protocol stream and for one dial, in ms. @default 10000 */
  streamTimeoutMs?: number;
  /**
   * Re-provide interval for advertised keys, in ms (records live 48 h); kad-dht's reprovider
   * publishes a record again once it is this old. @default 43200000
   */
  reprovideIntervalMs?: number;
  /**
   * Transports besides TCP, as libp2p transport factories (such as `webSockets()` from
   * `@libp2p/websockets` or a QUIC or circuit-relay transport); listen on their addresses
   * with `listen`. They are asked before TCP for each address they can dial. @default []
   */
  transports?: ((components: never) => unknown)[];
  /**
   * More libp2p services, by name (such as `{ jobs: jobWorker(...) }`); each is started and
   * stopped with the node and reachable as `node.libp2p.services[name]`. A name the node uses
   * itself (`identify`, `ping`, `dht`) replaces that default. @default {}
   */
  services?: Record<string, (components: never) => unknown>;
  /**
   * libp2p's metrics implementation, such as `prometheusMetrics({ registry })` from
   * `@libp2p/prometheus-metrics` (see `net/metrics.ts`). @default none
   */
  metrics?: (components: never) => unknown;
  /** Architecture this node reports. @default Deno.build.arch */
  arch?: string;
  /** Capabilities the node offers; each is advertised in the DHT when it runs as a server. @default {} */
  capabilities?: NodeInfo["capabilities"];
  /** Called for each peer mDNS finds (not for peers found otherwise). @default none */
  onMdnsPeer?: (peer: FoundPeer) => void;
  /** Receives structured log records. @default none */
  onLog?: (record: NodeLogRecord) => void;
  /** Aborts a start in progress. */
  signal?: AbortSignal;
}

/** The first round of bootstrap dials; see {@linkcode PhaseNode.bootstrapped}. */
export interface BootstrapResult {
  /** Bootstrap multiaddrs connected to. */
  connected: string[];
  /** Bootstrap multiaddrs that could not be dialled, with a one-line reason. */
  failed: { multiaddr: string; error: string }[];
}

/** A peer found in the DHT or by mDNS: its PeerId and the addresses it was found with. */
export interface FoundPeer {
  /** The PeerId, base58. */
  peerId: string;
  /** Its multiaddrs, without the `/p2p/` suffix. */
  multiaddrs: string[];
}

/**
 * Create and start a node.
 *
 * @example
 * ```ts
 * import { startNode } from "./node.ts";
 * import assert from "node:assert/strict";
 *
 * await using a = await startNode({ mdns: false });
 * await using b = await startNode({ mdns: false });
 * const info = await b.queryInfo(a.peerId, { multiaddrs: a.multiaddrs });
 * assert.equal(info.peer_id, a.peerId);
 * ```
 */
export async function startNode(options: StartNodeOptions = {}): Promise<PhaseNode> {
  const node = new PhaseNode(options);
  await node.start(options.signal);
  return node;
}

/** A running Phase node; see {@linkcode startNode}. */
export class PhaseNode {
  #options: Required<
    Omit<
      StartNodeOptions,
      | "secretKey"
      | "onLog"
      | "onMdnsPeer"
      | "signal"
      | "capabilities"
      | "transports"
      | "services"
      | "metrics"
    >
  >;
  #secretKey: Uint8Array | undefined;
  #onLog: (record: NodeLogRecord) => void;
  #onMdnsPeer: ((peer: FoundPeer) => void) | undefined;
  #transports: NonNullable<StartNodeOptions["transports"]>;
  #services: NonNullable<StartNodeOptions["services"]>;
  #metrics: StartNodeOptions["metrics"];
  #info: NodeInfo | undefined;
  #libp2p: Libp2p<{ dht?: KadDHT }> | undefined;
  #controller = new AbortController();
  #loops = new Set<Promise<void>>();
  #advertised = new Set<string>();
  #mdnsSeen = new Map<string, string>();
  #bootstrapRound = Promise.withResolvers<BootstrapResult>();
  #state: "new" | "starting" | "started" | "stopping" | "stopped" = "new";
  #transition: Promise<void> | undefined;

  /**
   * Make a node without starting it; prefer {@linkcode startNode}.
   *
   * @example
   * ```ts
   * import { PhaseNode } from "./node.ts";
   *
   * const node = new PhaseNode({ mdns: false, dht: false });
   * await node.start();
   * await node.stop();
   * ```
   */
  constructor(options: StartNodeOptions = {}) {
    const {
      secretKey,
      listen = ["/ip4/127.0.0.1/tcp/0"],
      bootstrap = [],
      mdns = true,
      mdnsBroadcast = true,
      mdnsIntervalMs = 10_000,
      dht = true,
      dhtClientMode = false,
      maxConnections = 100,
      streamTimeoutMs = 10_000,
      reprovideIntervalMs = 12 * 3600_000,
      arch = Deno.build.arch,
      capabilities = {},
      onLog = () => {},
      onMdnsPeer,
      transports = [],
      services = {},
    } = options;
    if (secretKey !== undefined && secretKey.length !== 32) {
      throw new RangeError(`Cannot use node key: expected 32 bytes, got ${secretKey.length}`);
    }
    for (const addr of [...listen, ...bootstrap]) _multiaddr(addr);
    checkIntegers({ maxConnections, streamTimeoutMs });
    if (!(reprovideIntervalMs >= 1000)) {
      throw new RangeError(`Cannot use reprovideIntervalMs ${reprovideIntervalMs}: minimum 1000`);
    }
    capabilityKey(arch); // validates arch
    this.#secretKey = secretKey;
    this.#onLog = onLog;
    this.#onMdnsPeer = onMdnsPeer;
    this.#transports = [...transports];
    this.#services = { ...services };
    this.#metrics = options.metrics;
    this.#options = {
      listen,
      bootstrap,
      mdns,
      mdnsBroadcast,
      mdnsIntervalMs,
      dht,
      dhtClientMode,
      maxConnections,
      streamTimeoutMs,
      reprovideIntervalMs,
      arch,
    };
    this.#info = { peer_id: "", arch, capabilities: structuredClone(capabilities) };
  }

  /**
   * The underlying libp2p node (for advanced use and tests); throws before the first start.
   *
   * @ignore
   */
  get libp2p(): Libp2p<{ dht?: KadDHT }> {
    if (!this.#libp2p) throw new TypeError("Cannot use the node: call start() first");
    return this.#libp2p;
  }

  /** The node's PeerId (base58). */
  get peerId(): string {
    return this.libp2p.peerId.toString();
  }

  /** The multiaddrs the node listens on, each ending in `/p2p/<PeerId>`. */
  get multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map(String);
  }

  /** What the node answers on `/phase/info/1.0.0`. */
  info(): NodeInfo {
    return structuredClone({ ...this.#info!, peer_id: this.peerId });
  }

  /**
   * Change fields of the node's info (HTTP URL, channel, manifest sequence, capabilities).
   * A field set to `undefined` is removed.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   * import assert from "node:assert/strict";
   *
   * await using node = await startNode({ mdns: false, dht: false });
   * node.updateInfo({ http_url: "http://127.0.0.1:8080/" });
   * assert.equal(node.info().http_url, "http://127.0.0.1:8080/");
   * ```
   */
  updateInfo(patch: { [K in keyof Omit<NodeInfo, "peer_id">]?: NodeInfo[K] | undefined }): void {
    const next = { ...this.#info!, ...patch } as Record<string, unknown>;
    for (const [key, value] of Object.entries(next)) if (value === undefined) delete next[key];
    // Validate by round trip, so a node never serves what its peers would reject.
    parseNodeInfo(encodeNodeInfo({ ...(next as unknown as NodeInfo), peer_id: this.peerId }));
    this.#info = next as unknown as NodeInfo;
  }

  /**
   * Advertise `key` (such as `/phase/stable/x86_64/manifest`) with a DHT provider record. The
   * first publication is retried with backoff until at least 3 peers stored the record (a node
   * that starts alone is heard once peers join); each try first refreshes the routing table
   * with a walk towards the node's own id. From then on kad-dht's reprovider publishes it
   * again before it expires (see `reprovideIntervalMs`), and it is published again whenever a
   * peer that has no copy enters the routing table among the k closest to the key (at least 1 s
   * after it, and 5 s after the last publication, doubling to 5 min), so the peers a lookup
   * asks first hold it. Returns at once; advertising stops
   * with the node. A key already advertised is not advertised twice.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   *
   * await using node = await startNode({ mdns: false });
   * await node.advertise("/phase/stable/x86_64/manifest");
   * ```
   */
  async advertise(key: string): Promise<void> {
    const dht = this.libp2p.services.dht;
    if (!dht || this.#options.dhtClientMode) {
      throw new TypeError("Cannot advertise: the node runs no DHT server");
    }
    const cid = await providerKeyCid(key);
    if (this.#advertised.has(key)) return;
    this.#advertised.add(key);
    this.#loop(async (signal) => {
      // Peers that accepted the record since the last full publication.
      const stored = new Set<string>();
      const kadKey = new Uint8Array(await crypto.subtle.digest("SHA-256", cid.multihash.bytes));
      let backoff = 1000;
      let spacing = 5000;
      let published = false;
      while (!signal.aborted) {
        let peers = 0;
        try {
          if (!published) {
            // Refresh the routing table first (a walk towards our own id, as kad-dht's
            // self-query does): one filled before most peers joined sends the record to the
            // wrong peers.
            const self = this.libp2p.peerId.toMultihash().bytes;
            for await (const _ of dht.getClosestPeers(self, { signal })) { /* drain */ }
          }
          for await (const event of dht.provide(cid, { signal })) {
            if (event.name === "PEER_RESPONSE" && event.messageName === "ADD_PROVIDER") {
              peers++;
              stored.add(event.from.toString());
            }
          }
        } catch (error) {
          if (signal.aborted) return;
          this.#log("warn", "provide_failed", { key, error: errorMessage(error) });
        }
        if (signal.aborted) return;
        this.#log("info", "provided", {
          key,
          cid: cid.toString(),
          peers,
          ...(published ? { reason: "closer_peer_joined" } : {}),
        });
        if (peers >= 3 || published) {
          // Published (kad-dht's reprovider takes over). A peer that joins later among the k
          // closest to the key gets the record too (Kademlia's rule for joining nodes; a peer
          // cannot store someone else's provider record, so the provider sends it again): else
          // a lookup that asks it first finds nothing there and pays a walk over new connections.
          published = true;
          const last = performance.now();
          await _closerPeerJoined(dht, kadKey, stored, signal);
          // Let a burst of joins settle into one publication, and space publications out (5 s,
          // doubling to 5 min): a network that is still forming adds close peers all the time.
          await sleep(Math.max(1000, spacing - (performance.now() - last)), signal);
          spacing = Math.min(spacing * 2, 300_000);
          continue;
        }
        // Too few copies (peers still joining, or answers lost): try again soon, then less often.
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, peers > 0 ? 60_000 : 30_000);
      }
    });
  }

  /**
   * Ask a peer for its info over `/phase/info/1.0.0`. The answer is capped, timed out and
   * validated, and its `peer_id` must be the peer asked.
   *
   * @throws {RangeError} If the answer is over the 8 KiB cap.
   * @throws {SyntaxError} If it is not JSON.
   * @throws {TypeError} If a field is malformed or the `peer_id` is another peer's.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   * import assert from "node:assert/strict";
   *
   * await using a = await startNode({ mdns: false, dht: false, arch: "riscv64" });
   * await using b = await startNode({ mdns: false, dht: false });
   * const info = await b.queryInfo(a.peerId, { multiaddrs: a.multiaddrs });
   * assert.equal(info.arch, "riscv64");
   * ```
   */
  async queryInfo(
    peer: string,
    options: { multiaddrs?: string[]; signal?: AbortSignal } = {},
  ): Promise<NodeInfo> {
    const { multiaddrs = [], signal } = options;
    const peerId = peerIdFromString(peer);
    const limit = AbortSignal.any([
      AbortSignal.timeout(this.#options.streamTimeoutMs),
      this.#controller.signal,
      ...(signal ? [signal] : []),
    ]);
    if (multiaddrs.length > 0) {
      await this.libp2p.peerStore.merge(peerId, { multiaddrs: multiaddrs.map(_multiaddr) });
    }
    const stream = await this.libp2p.dialProtocol(peerId, INFO_PROTOCOL, { signal: limit });
    const info = await requestInfo(stream, { signal: limit });
    if (info.peer_id !== peer) {
      throw new TypeError(`Cannot accept node info from ${peer}: it claims to be ${info.peer_id}`);
    }
    return info;
  }

  /**
   * Find providers of `key` in the DHT, at most `limit` of them: the walk ends as soon as the
   * answers read so far name `limit` providers (the first answer from a peer that holds the
   * record, often the bootstrap peer itself), else when it is drained. Returns `[]` at once
   * while the node has no connection (nobody to ask). A lookup that finds nothing is walked
   * once more after a walk towards the node's own id has filled its routing table.
   * `onProgress` receives kad-dht's query events (`kad-dht:query:dial-peer`, `send-query`,
   * `peer-response`, ...) and libp2p's dial events, for tracing.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   * import assert from "node:assert/strict";
   *
   * await using node = await startNode({ mdns: false });
   * const found = await node.findProviders("/phase/stable/x86_64/manifest");
   * assert.deepEqual(found, []);
   * ```
   */
  async findProviders(
    key: string,
    options: {
      limit?: number;
      signal?: AbortSignal;
      onProgress?: (event: CustomEvent) => void;
    } = {},
  ): Promise<FoundPeer[]> {
    const { limit = 20, signal, onProgress } = options;
    const dht = this.libp2p.services.dht;
    if (!dht) throw new TypeError("Cannot find providers: the node runs no DHT");
    const cid = await providerKeyCid(key);
    const found = new Map<string, FoundPeer>();
    // With nobody to ask, kad-dht's lookup waits for a peer to join the routing table (until
    // its signal, maybe never): answer at once.
    if (this.libp2p.getConnections().length === 0) return [];
    const lookup = AbortSignal.any([this.#controller.signal, ...(signal ? [signal] : [])]);
    // A client asks without waiting for kad-dht's first self-query, but it needs one DHT peer
    // in its routing table (identify runs after the connection opens): wait for that.
    await _routingTablePeer(
      dht,
      AbortSignal.any([lookup, AbortSignal.timeout(this.#options.streamTimeoutMs)]),
    );
    const add = (providers: { id: PeerId; multiaddrs: { toString(): string }[] }[]) => {
      for (const provider of providers) {
        const id = provider.id.toString();
        if (id === this.peerId) continue;
        const entry = found.get(id) ?? { peerId: id, multiaddrs: [] };
        for (const ma of provider.multiaddrs) {
          const text = ma.toString();
          if (!entry.multiaddrs.includes(text)) entry.multiaddrs.push(text);
        }
        found.set(id, entry);
      }
    };
    // A walk that found nothing ran into a dead end of a sparse routing table (records stored
    // while the network was forming miss some of the closest peers): learn more of the network
    // with a walk towards our own id, as kad-dht's self-query does, then walk once more from
    // many more starting peers.
    for (let walk = 0; walk < 2 && found.size === 0 && !lookup.aborted; walk++) {
      // kad-dht passes a GET_PROVIDERS answer on only after vetting each closer peer it names
      // (a hash and a dialability check apiece, ~50 ms for 9 peers on a busy machine, more than
      // a LAN round trip): take the providers from the answer as it arrives, and end the walk
      // once there are enough.
      const enough = new AbortController();
      const walkSignal = AbortSignal.any([lookup, enough.signal]);
      try {
        if (walk > 0) {
          const self = this.libp2p.peerId.toMultihash().bytes;
          for await (const _ of dht.getClosestPeers(self, { signal: walkSignal })) { /* drain */ }
        }
        const onAnswer = (event: CustomEvent) => {
          try {
            onProgress?.(event);
          } catch {
            // A failing callback must not break the lookup (kad-dht would count a failed query).
          }
          const detail = event.detail as
            | { messageName?: unknown; providers?: Parameters<typeof add>[0] }
            | undefined;
          if (
            event.type === "kad-dht:query:peer-response" &&
            detail?.messageName === "GET_PROVIDERS" && (detail.providers?.length ?? 0) > 0
          ) {
            add(detail.providers!);
            if (found.size >= limit) enough.abort();
          }
        };
        for await (
          const event of dht.findProviders(cid, { signal: walkSignal, onProgress: onAnswer })
        ) {
          if (event.name === "PROVIDER") add(event.providers);
          if (found.size >= limit) break;
        }
      } catch (error) {
        // An empty routing table or an aborted lookup ends the search with what was found.
        if (!lookup.aborted && found.size === 0) {
          this.#log("warn", "find_providers_failed", { key, error: errorMessage(error) });
        }
      }
    }
    return [...found.values()].slice(0, limit);
  }

  /**
   * The outcome of the first round of bootstrap dials: which `bootstrap` addresses are connected
   * and which failed, with why. Resolves at once without bootstrap peers; rejects when `signal`
   * aborts or the node stops first. Later rounds (redials while unconnected) only log.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   * import assert from "node:assert/strict";
   *
   * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const port = listener.addr.port;
   * listener.close(); // nothing listens there now
   * await using node = await startNode({ mdns: false, bootstrap: [`/ip4/127.0.0.1/tcp/${port}`] });
   * const { connected, failed } = await node.bootstrapped();
   * assert.deepEqual(connected, []);
   * assert.equal(failed[0]!.multiaddr, `/ip4/127.0.0.1/tcp/${port}`);
   * ```
   */
  async bootstrapped(options: { signal?: AbortSignal } = {}): Promise<BootstrapResult> {
    const { signal } = options;
    const stop = AbortSignal.any([this.#controller.signal, ...(signal ? [signal] : [])]);
    const round = this.#bootstrapRound.promise;
    stop.throwIfAborted();
    let onAbort = () => {};
    try {
      return await Promise.race([
        round,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(stop.reason);
          stop.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } finally {
      stop.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Start the node; a second call while started does nothing.
   *
   * @example
   * ```ts
   * import { PhaseNode } from "./node.ts";
   *
   * await using node = new PhaseNode({ mdns: false, dht: false });
   * await node.start();
   * await node.start();
   * ```
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.#state === "started" || this.#state === "starting") return await this.#transition;
    if (this.#state === "stopping") await this.#transition;
    this.#state = "starting";
    this.#transition = this.#start(signal);
    try {
      await this.#transition;
      this.#state = "started";
    } catch (error) {
      this.#state = "stopped";
      await Promise.resolve(this.#libp2p?.stop()).catch(() => {});
      throw error;
    }
  }

  /**
   * Stop the node: end advertising and bootstrap loops, close listeners and connections.
   * Calling it again, or before start, does nothing.
   *
   * @example
   * ```ts
   * import { startNode } from "./node.ts";
   *
   * const node = await startNode({ mdns: false, dht: false });
   * await node.stop();
   * await node.stop();
   * ```
   */
  async stop(): Promise<void> {
    if (this.#state === "starting") await this.#transition?.catch(() => {});
    if (this.#state === "stopping") return await this.#transition;
    if (this.#state !== "started") return;
    this.#state = "stopping";
    this.#transition = (async () => {
      this.#controller.abort(new DOMException("The node stopped", "AbortError"));
      await Promise.allSettled(this.#loops);
      await this.#libp2p?.stop();
      this.#log("info", "stopped", {});
    })();
    try {
      await this.#transition;
    } finally {
      this.#state = "stopped";
    }
  }

  /** Stop the node; see {@linkcode PhaseNode.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #start(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.#controller = new AbortController();
    this.#advertised.clear();
    this.#mdnsSeen.clear();
    this.#bootstrapRound = Promise.withResolvers<BootstrapResult>();
    if (this.#options.bootstrap.length === 0) {
      this.#bootstrapRound.resolve({ connected: [], failed: [] });
    }
    const o = this.#options;
    if (!this.#libp2p) {
      const privateKey = this.#secretKey
        ? await generateKeyPairFromSeed("Ed25519", this.#secretKey)
        : await generateKeyPair("Ed25519");
      this.#libp2p = await createLibp2p({
        privateKey,
        start: false,
        addresses: { listen: o.listen },
        // Given transports come first: libp2p dials with the first one that accepts an address,
        // so one may take over TCP dials (the dial-only punch transport, net/tcp_punch.ts).
        transports: [
          ...this.#transports as never[],
          tcp({ inboundSocketInactivityTimeout: 5 * 60_000 }),
        ],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        connectionManager: {
          maxConnections: o.maxConnections,
          // libp2p's defaults (10 handshakes in progress, 5 new connections per second from one
          // IP address) refuse most dials of nodes that start together, or of a LAN behind one
          // NAT address, so a bootstrap peer gets only some of them and the rest can form a
          // separate DHT. maxConnections still bounds what a flood of connections can cost.
          maxIncomingPendingConnections: Math.min(32, o.maxConnections),
          inboundConnectionThreshold: Math.min(50, o.maxConnections),
          inboundUpgradeTimeout: o.streamTimeoutMs,
          dialTimeout: o.streamTimeoutMs,
          // Keep-alive peers (the bootstrap peers) are redialled every 5 s while they are gone.
          reconnectRetries: Infinity,
          reconnectRetryInterval: 5_000,
          reconnectBackoffFactor: 1,
        },
        peerDiscovery: o.mdns ? [this.#mdns()] : [],
        services: { ...this.#defaultServices(), ...this.#services } as never,
        ...(this.#metrics ? { metrics: this.#metrics as never } : {}),
      }) as Libp2p<{ dht?: KadDHT }>;
      this.#libp2p.addEventListener("peer:discovery", (event: CustomEvent<PeerInfo>) => {
        this.#log("info", "peer_discovered", {
          peer_id: event.detail.id.toString(),
          multiaddrs: event.detail.multiaddrs.map(String),
        });
      });
      this.#libp2p.addEventListener("peer:connect", (event: CustomEvent<PeerId>) => {
        const connections = this.#libp2p?.getConnections(event.detail) ?? [];
        this.#log("info", "peer_connected", {
          peer_id: event.detail.toString(),
          connection: connections.some((c) => !isRelayed(c)) ? "direct" : "relayed",
        });
      });
      // Addresses change at run time: a relay reservation adds `/p2p-circuit` ones.
      let announced = "";
      this.#libp2p.addEventListener("self:peer:update", () => {
        const multiaddrs = this.#libp2p?.getMultiaddrs().map(String) ?? [];
        const key = [...multiaddrs].sort().join(" ");
        if (key === announced) return;
        announced = key;
        this.#log("info", "addresses_changed", { multiaddrs });
      });
      // A peer first reached through a relay and then directly (DCUtR, or a dial) says so.
      this.#libp2p.addEventListener("connection:open", (event: CustomEvent<Connection>) => {
        const peer = event.detail.remotePeer;
        const others = this.#libp2p?.getConnections(peer).filter((c) => c !== event.detail) ?? [];
        if (!isRelayed(event.detail) && others.length > 0 && others.every(isRelayed)) {
          this.#log("info", "peer_connection_direct", {
            peer_id: peer.toString(),
            connection: "direct",
            multiaddr: event.detail.remoteAddr.toString(),
          });
        }
      });
      this.#libp2p.addEventListener("peer:disconnect", (event: CustomEvent<PeerId>) => {
        this.#log("info", "peer_disconnected", { peer_id: event.detail.toString() });
      });
    }
    const libp2p = this.#libp2p;
    // Node's net module reports a denied listen as an uncaught error on a later tick (a stack
    // trace and a crash); ask first, and fail like any other listen failure.
    await _checkListenPermission(o.listen);
    if (o.mdns || o.listen.some((a) => /^\/ip[46]\/(0\.0\.0\.0|::)\//.test(a))) {
      const sys = await Deno.permissions.query({ name: "sys", kind: "networkInterfaces" });
      if (sys.state !== "granted") {
        throw new Error(
          `Cannot ${
            o.mdns ? "use mDNS" : "list the addresses of a wildcard listener"
          }: requires --allow-sys=networkInterfaces`,
        );
      }
    }
    if (o.mdns) {
      for (const host of ["0.0.0.0:5353", "224.0.0.251:5353"]) {
        const net = await Deno.permissions.query({ name: "net", host });
        if (net.state !== "granted") {
          throw new Error(`Cannot use mDNS: requires net access to ${host} (--allow-net)`);
        }
      }
    }
    try {
      await libp2p.start();
    } catch (error) {
      throw _listenError(error);
    }
    signal?.throwIfAborted();
    await libp2p.handle(INFO_PROTOCOL, (stream) => this.#serveInfo(stream), {
      maxInboundStreams: 32,
      maxOutboundStreams: 16,
    });
    if (o.bootstrap.length > 0) this.#loop((loopSignal) => this.#bootstrap(loopSignal));
    if (o.dht && !o.dhtClientMode) {
      for (const name of Object.keys(this.#info!.capabilities)) {
        await this.advertise(capabilityKey(o.arch, name));
      }
    }
  }

  #defaultServices(): Record<string, unknown> {
    const o = this.#options;
    const services: Record<string, unknown> = { identify: identify(), ping: ping() };
    if (o.dht) {
      services.dht = kadDHT({
        protocol: "/ipfs/kad/1.0.0",
        clientMode: o.dhtClientMode,
        peerInfoMapper: passthroughMapper,
        // Lookups wait for the first self-query (it fills the routing table, so they start from
        // many peers, not just the bootstrap peer); run it as soon as a peer joins, not after
        // kad-dht's default of 1 s, which every first lookup waited for (docs/network.md).
        initialQuerySelfInterval: 0,
        // A client (discover) skips that wait: its lookup starts from the bootstrap peer, and
        // servers store each record on the k closest peers (advertise refreshes first).
        allowQueryWithZeroPeers: o.dhtClientMode,
        // kad-dht re-provides our records once they are reprovideIntervalMs old.
        reprovide: {
          interval: Math.min(o.reprovideIntervalMs, 3600_000),
          threshold: Math.max(0, _RECORD_VALIDITY_MS - o.reprovideIntervalMs),
          validity: _RECORD_VALIDITY_MS,
        },
      });
    }
    return services;
  }

  #mdns() {
    const factory = mdns({
      broadcast: this.#options.mdnsBroadcast,
      interval: this.#options.mdnsIntervalMs,
    });
    return (components: Parameters<typeof factory>[0]) => {
      const discovery = factory(components);
      discovery.addEventListener("peer", (event: CustomEvent<PeerInfo>) => {
        const peer = {
          peerId: event.detail.id.toString(),
          multiaddrs: event.detail.multiaddrs.map(String),
        };
        // mDNS answers every query again: log a peer on first sight and when its addresses change.
        const seen = [...peer.multiaddrs].sort().join(" ");
        const before = this.#mdnsSeen.get(peer.peerId);
        if (before !== seen) {
          this.#mdnsSeen.delete(peer.peerId);
          this.#mdnsSeen.set(peer.peerId, seen);
          if (this.#mdnsSeen.size > _MDNS_SEEN_MAX) {
            this.#mdnsSeen.delete(this.#mdnsSeen.keys().next().value!);
          }
          this.#log("info", "mdns_peer", {
            peer_id: peer.peerId,
            multiaddrs: peer.multiaddrs,
            ...(before !== undefined ? { changed: true } : {}),
          });
        }
        try {
          this.#onMdnsPeer?.(peer);
        } catch {
          // A failing callback must not break discovery.
        }
      });
      return discovery;
    };
  }

  async #serveInfo(stream: Stream): Promise<void> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(this.#options.streamTimeoutMs),
      this.#controller.signal,
    ]);
    await serveInfo(stream, this.info(), { signal }).catch((error) => {
      this.#log("warn", "info_request_failed", { error: errorMessage(error) });
    });
  }

  /**
   * Dial every bootstrap address; tag each peer reached keep-alive, so libp2p itself redials it
   * when it drops. Addresses not reached are dialled again every 5 s until they are.
   */
  async #bootstrap(signal: AbortSignal): Promise<void> {
    let pending = this.#options.bootstrap.map(_multiaddr);
    let first = true;
    let retryMs = 500;
    while (!signal.aborted && pending.length > 0) {
      const round: BootstrapResult = { connected: [], failed: [] };
      const missed: typeof pending = [];
      await Promise.all(pending.map(async (addr) => {
        try {
          const limit = AbortSignal.any([
            signal,
            AbortSignal.timeout(this.#options.streamTimeoutMs),
          ]);
          const connection = await this.libp2p.dial(addr, { signal: limit });
          await this.libp2p.peerStore.merge(connection.remotePeer, {
            tags: { [KEEP_ALIVE]: { value: 1 } },
          });
          round.connected.push(String(addr));
        } catch (error) {
          missed.push(addr);
          if (!signal.aborted) {
            const reason = _dialError(error);
            round.failed.push({ multiaddr: String(addr), error: reason });
            this.#log("warn", "bootstrap_dial_failed", { multiaddr: String(addr), error: reason });
          }
        }
      }));
      if (first && !signal.aborted) this.#bootstrapRound.resolve(round);
      first = false;
      pending = missed;
      // Soon at first (a peer busy with other handshakes refuses a dial now and takes it a moment
      // later), then every 5 s; jittered, so nodes that start together do not retry together.
      if (pending.length > 0) await sleep(retryMs * (0.75 + Math.random() / 2), signal);
      retryMs = Math.min(retryMs * 2, 5_000);
    }
  }

  #loop(body: (signal: AbortSignal) => Promise<void>): void {
    const run = body(this.#controller.signal).catch((error) => {
      this.#log("error", "loop_failed", { error: errorMessage(error) });
    }).finally(() => this.#loops.delete(run));
    this.#loops.add(run);
  }

  #log(level: NodeLogRecord["level"], event: string, fields: Record<string, unknown>): void {
    try {
      this.#onLog({ level, event, ...fields });
    } catch {
      // A failing log sink must not break the node.
    }
  }
}

/**
 * Resolve once a peer that is not in `stored` enters kad-dht's routing table among the k peers
 * closest to `kadKey` (the SHA-256 of the key's multihash, as kad-dht measures distance); never
 * resolves before `signal` aborts otherwise (then it resolves).
 */
async function _closerPeerJoined(
  dht: KadDHT,
  kadKey: Uint8Array,
  stored: Set<string>,
  signal: AbortSignal,
): Promise<void> {
  const table = (dht as unknown as {
    routingTable?: EventTarget & {
      kBucketSize: number;
      closestPeers(id: Uint8Array, options: { count: number }): PeerId[];
    };
  }).routingTable;
  if (signal.aborted) return;
  await new Promise<void>((resolve) => {
    if (!table) return signal.addEventListener("abort", () => resolve(), { once: true });
    const check = (event: Event) => {
      const peer = String((event as CustomEvent<PeerId>).detail);
      if (!peer) return;
      if (stored.has(peer)) return;
      const closest = table.closestPeers(kadKey, { count: table.kBucketSize ?? 20 });
      if (closest.some((id) => id.toString() === peer)) done();
    };
    const done = () => {
      table.removeEventListener("peer:add", check as EventListener);
      signal.removeEventListener("abort", done);
      resolve();
    };
    table.addEventListener("peer:add", check as EventListener);
    signal.addEventListener("abort", done);
  });
}

/** Resolve once kad-dht's routing table holds a peer, or when `signal` aborts. */
async function _routingTablePeer(dht: KadDHT, signal: AbortSignal): Promise<void> {
  const table = (dht as unknown as { routingTable?: EventTarget & { size: number } }).routingTable;
  if (!table || table.size > 0 || signal.aborted) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      table.removeEventListener("peer:add", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    table.addEventListener("peer:add", done);
    signal.addEventListener("abort", done);
  });
}

function _multiaddr(text: string) {
  try {
    return multiaddr(text);
  } catch (cause) {
    throw new TypeError(`Cannot parse multiaddr '${text}': ${errorMessage(cause)}`, { cause });
  }
}

const _MDNS_SEEN_MAX = 1024;

/** How long a provider record lives in the DHT: 48 h. */
const _RECORD_VALIDITY_MS = 48 * 3600_000;

const _OS_ERRORS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this host",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ECONNREFUSED: "connection refused",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "timed out",
};

/** One line for an OS-level reason: `listen EADDRINUSE: ...` becomes `address already in use`. */
function _oneLine(text: string): string {
  const code = /\b(E[A-Z]{3,})\b/.exec(text)?.[1];
  if (code && _OS_ERRORS[code]) return _OS_ERRORS[code];
  const line = text.split("\n").map((l) => l.trim()).find((l) => l && !l.startsWith("at ")) ?? "";
  return line.replace(/^Error: /, "");
}

/**
 * libp2p reports listen failures as one multi-line message with a stack per address; keep one
 * line: `Cannot listen on /ip4/127.0.0.1/tcp/4001: address already in use`.
 */
function _listenError(error: unknown): unknown {
  if (!(error instanceof Error) || error.name !== "UnsupportedListenAddressesError") return error;
  const failures = [...error.message.matchAll(/^ {2}(\/\S+): (.*)$/gm)].map((m) =>
    `${m[1]}: ${_oneLine(m[2]!)}`
  );
  return new Error(`Cannot listen on ${failures.join("; ") || "the listen addresses"}`, {
    cause: error,
  });
}

async function _checkListenPermission(listen: string[]): Promise<void> {
  for (const text of listen) {
    const parts = _multiaddr(text).getComponents();
    const host = parts.find((c) => ["ip4", "ip6", "dns", "dns4", "dns6"].includes(c.name))?.value;
    const port = parts.find((c) => c.name === "tcp")?.value;
    if (host === undefined || port === undefined) continue;
    const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    const status = await Deno.permissions.query({ name: "net", host: target });
    if (status.state !== "granted") {
      throw new Error(`Cannot listen on ${text}: requires net access to ${target} (--allow-net)`);
    }
  }
}

/** A dial failure in one line (libp2p aggregates one error per address tried). */
function _dialError(error: unknown): string {
  const errors = (error as { errors?: unknown[] })?.errors;
  const first = Array.isArray(errors) && errors.length > 0 ? errors[0] : error;
  if (first instanceof Error && first.name === "AbortError") return "no answer before the timeout";
  return _oneLine(errorMessage(first)) || _oneLine(errorMessage(error)) || "dial failed";
}
