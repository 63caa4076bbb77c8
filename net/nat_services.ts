/**
 * NAT traversal with js-libp2p's own services: AutoNAT (`/libp2p/autonat/1.0.0`), the circuit
 * relay v2 transport (dial and be reached through a relay), a bounded relay server on public
 * nodes, DCUtR hole punching and identify push. {@linkcode natServices} returns the transports,
 * services and listen addresses to hand to `startNode`.
 *
 * @module
 */
import { circuitRelayServer, circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { autoNAT } from "@libp2p/autonat";
import { dcutr } from "@libp2p/dcutr";
import { identifyPush } from "@libp2p/identify";
import { tcpPunch } from "./tcp_punch.ts";
import { multiaddr } from "@multiformats/multiaddr";
import { checkIntegers } from "../util/check_integers.ts";
import { errorMessage } from "../util/error_message.ts";

/** How this node finds out whether peers can dial it. */
export type Reachability = "auto" | "public" | "private";

/** The relay server's bounds; see {@linkcode DEFAULT_RELAY_LIMITS}. */
export interface RelayLimits {
  /** Most reservations held at once. */
  maxReservations: number;
  /** How long a reservation lasts, in ms (the private node renews it). */
  reservationTtlMs: number;
  /** Most bytes one relayed connection may carry (both directions together). */
  dataLimitBytes: number;
  /** Longest a relayed connection stays open, in ms. */
  durationLimitMs: number;
}

/**
 * The relay server's default bounds: 32 reservations of 1 h each; a relayed connection carries at
 * most 1 MiB and lasts at most 2 minutes (then the relay resets it).
 */
export const DEFAULT_RELAY_LIMITS: Readonly<RelayLimits> = Object.freeze({
  maxReservations: 32,
  reservationTtlMs: 3600_000,
  dataLimitBytes: 1 << 20,
  durationLimitMs: 120_000,
});

/** Options of {@linkcode natServices}. */
export interface NatServicesOptions {
  /** Run a relay server for private peers, with these bounds. @default false */
  relay?: boolean | Partial<RelayLimits>;
  /**
   * `private`: reserve a slot on a relay at once and advertise `/p2p-circuit` addresses;
   * `public`: never; `auto`: reserve once AutoNAT has confirmed no public address of this node
   * within `autoGraceMs`. @default "auto"
   */
  reachability?: Reachability;
  /** How long `auto` waits for AutoNAT to confirm a public address, in ms. @default 30000 */
  autoGraceMs?: number;
  /**
   * Make every outgoing TCP connection from this local port, so DCUtR can punch a direct TCP
   * connection through two NATs with endpoint-independent mapping (`net/tcp_punch.ts`). Not a
   * port the node listens on. @default none (ephemeral ports: no punch between two NATs)
   */
  punchPort?: number;
  /**
   * Receives one record when `auto` decides, when a reservation cannot be made, and when the
   * punch address changes.
   */
  onLog?: (record: { level: "info" | "warn"; event: string; [field: string]: unknown }) => void;
}

/** What {@linkcode natServices} gives to `startNode`. */
export interface NatServices {
  /** Transports to add (the circuit relay transport; first the punch transport, if any). */
  transports: ((components: never) => unknown)[];
  /**
   * Services to add, by name: `dcutr`, `identifyPush`, `reachability`, `autonat` (auto), `relay`,
   * `punch` (with `punchPort`).
   */
  services: Record<string, (components: never) => unknown>;
  /** Listen addresses to add (`/p2p-circuit` for a private node). */
  listen: string[];
  /** The relay server's bounds, when it runs. */
  relayLimits: RelayLimits | undefined;
}

/**
 * The transports, services and listen addresses for NAT traversal.
 *
 * @example
 * ```ts
 * import { natServices } from "./nat_services.ts";
 * import { startNode } from "./node.ts";
 * import assert from "node:assert/strict";
 *
 * const nat = natServices({ relay: { maxReservations: 4 }, reachability: "public" });
 * assert.equal(nat.relayLimits?.maxReservations, 4);
 * await using node = await startNode({
 *   mdns: false,
 *   dht: false,
 *   transports: nat.transports,
 *   services: nat.services,
 * });
 * assert.ok(node.libp2p.getProtocols().includes("/libp2p/circuit/relay/0.2.0/hop"));
 * ```
 */
export function natServices(options: NatServicesOptions = {}): NatServices {
  const {
    relay = false,
    reachability = "auto",
    autoGraceMs = 30_000,
    punchPort,
    onLog = () => {},
  } = options;
  if (!["auto", "public", "private"].includes(reachability)) {
    throw new TypeError(
      `Cannot use reachability '${reachability}': expected auto, public or private`,
    );
  }
  checkIntegers({ autoGraceMs });
  let relayLimits: RelayLimits | undefined;
  if (relay !== false) {
    relayLimits = { ...DEFAULT_RELAY_LIMITS, ...(relay === true ? {} : relay) };
    checkIntegers({ ...relayLimits });
  }
  const punch = punchPort === undefined ? undefined : tcpPunch({ port: punchPort, onLog });
  const services: Record<string, (components: never) => unknown> = {
    dcutr: punch ? punch.forDcutr(dcutr() as never) : dcutr() as never,
    // identify-push debounces pushes with a timer that stop() leaves running: its default 1 s
    // kept every stopped `start` process alive a second longer (measured).
    identifyPush: identifyPush({ debounce: 100 }) as never,
    reachability:
      ((components: _ReachabilityComponents) =>
        new ReachabilityService(components, { reachability, autoGraceMs, onLog })) as never,
  };
  // Only `auto` asks AutoNAT. Its v1 server (3.0.28) dials the asker back with
  // openConnection(), which returns the connection already open to that peer, then closes it:
  // a node with a fixed answer would only drop its peers' connections (a relay's reservations).
  if (reachability === "auto") services.autonat = autoNAT() as never;
  if (punch) services.punch = punch.service;
  if (relayLimits) {
    services.relay = circuitRelayServer({
      reservations: {
        maxReservations: relayLimits.maxReservations,
        reservationTtl: relayLimits.reservationTtlMs,
        applyDefaultLimit: true,
        defaultDataLimit: BigInt(relayLimits.dataLimitBytes),
        defaultDurationLimit: relayLimits.durationLimitMs,
      },
    }) as never;
  }
  return {
    transports: [
      ...(punch ? [punch.transport] : []),
      circuitRelayTransport({ reservationCompletionTimeout: 10_000 }) as never,
    ],
    services,
    listen: reachability === "private" ? ["/p2p-circuit"] : [],
    relayLimits,
  };
}

interface _ReachabilityComponents {
  addressManager: {
    getAddressesWithMetadata(): {
      multiaddr: ReturnType<typeof multiaddr>;
      verified: boolean;
      type?: string;
    }[];
    confirmObservedAddr?(
      addr: ReturnType<typeof multiaddr>,
      options: { type: "transport"; ttl: number },
    ): void;
  };
  transportManager: { listen(addrs: ReturnType<typeof multiaddr>[]): Promise<void> };
  events?: Pick<EventTarget, "addEventListener" | "removeEventListener">;
}

/**
 * Decides whether this node is `public` or `private` and, once private, listens on
 * `/p2p-circuit` (the relay transport then reserves a slot on a relay it is connected to and the
 * node advertises the relayed address; identify push tells its peers).
 */
class ReachabilityService {
  #components: _ReachabilityComponents;
  #o: Required<Omit<NatServicesOptions, "relay" | "punchPort">>;
  #state: "unknown" | "public" | "private";
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    components: _ReachabilityComponents,
    o: Required<Omit<NatServicesOptions, "relay" | "punchPort">>,
  ) {
    this.#components = components;
    this.#o = o;
    this.#state = o.reachability === "auto" ? "unknown" : o.reachability;
  }

  /** `public`, `private`, or `unknown` while `auto` has not decided. */
  get state(): "unknown" | "public" | "private" {
    return this.#state;
  }

  start(): void {
    if (this.#o.reachability !== "auto" || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#decide();
    }, this.#o.autoGraceMs);
  }

  /**
   * A node declared public vouches for its own public listen addresses: libp2p advertises a
   * public address only once something confirmed it (AutoNAT, which this node does not run), and
   * DCUtR on a NATed peer dials only the addresses advertised.
   */
  afterStart(): void {
    if (this.#o.reachability !== "public") return;
    // Listeners start in parallel with this hook: vouch for each one's addresses as it listens.
    this.#components.events?.addEventListener("transport:listening", this.#vouch);
    this.#vouch();
  }

  #vouch = (): void => {
    for (const address of this.#components.addressManager.getAddressesWithMetadata()) {
      if (address.verified || address.type !== "transport") continue;
      if (!_isPublicIp(address.multiaddr.toString())) continue;
      this.#components.addressManager.confirmObservedAddr?.(address.multiaddr, {
        type: "transport",
        ttl: _PUBLIC_TTL_MS,
      });
    }
  };

  stop(): void {
    this.#components.events?.removeEventListener("transport:listening", this.#vouch);
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #decide(): Promise<void> {
    const confirmed = this.#components.addressManager.getAddressesWithMetadata().filter((a) =>
      a.verified && _isPublicIp(a.multiaddr.toString())
    );
    this.#state = confirmed.length > 0 ? "public" : "private";
    this.#o.onLog({
      level: "info",
      event: "reachability",
      reachability: this.#state,
      ...(confirmed.length > 0 ? { confirmed: confirmed.map((a) => a.multiaddr.toString()) } : {}),
    });
    if (this.#state !== "private") return;
    try {
      await this.#components.transportManager.listen([multiaddr("/p2p-circuit")]);
    } catch (error) {
      this.#o.onLog({ level: "warn", event: "relay_listen_failed", error: errorMessage(error) });
    }
  }
}

/** How long a declared-public address counts as confirmed: a year (the node's word for it). */
const _PUBLIC_TTL_MS = 365 * 24 * 3600_000;

/** True for an IPv4 address outside the private, loopback, link-local and shared ranges. */
function _isPublicIp(addr: string): boolean {
  if (addr.includes("/p2p-circuit")) return false;
  const ip = /^\/ip4\/(\d+)\.(\d+)\.\d+\.\d+\//.exec(addr);
  if (!ip) return false;
  const [a, b] = [Number(ip[1]), Number(ip[2])];
  return !(a === 10 || a === 127 || a === 0 || (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
    (a === 100 && b >= 64 && b <= 127));
}
