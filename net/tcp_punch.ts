/**
 * TCP hole punching for DCUtR between two NATs. js-libp2p's TCP transport dials from ephemeral
 * ports, so the address a peer observes for this node (its NAT's mapping of that one connection)
 * says nothing about where the next connection will come from, and DCUtR's simultaneous dials
 * cannot meet. {@linkcode tcpPunch} makes every outgoing TCP connection from ONE fixed local port
 * instead (`node:net` `connect({ localPort })`; Linux lets several connected sockets share a port
 * that nobody listens on): a NAT with endpoint-independent mapping then maps that port to one
 * public port, which every peer observes. That observed address goes into DCUtR's CONNECT message;
 * when both peers dial each other's at once, the SYNs cross and TCP's simultaneous open makes one
 * connection, with no listener involved.
 *
 * The gaps of js-libp2p (libp2p 3.3.11, `@libp2p/dcutr` 3.0.28, `@libp2p/identify` 4.1.14,
 * `@chainsafe/libp2p-yamux` 8.0.1) this closes, all around DCUtR only (seen in the simulator):
 * - identify drops observed TCP addresses, so DCUtR had none to send: the punch service records
 *   them for connections made from the fixed port, and DCUtR's address manager lists the one
 *   address all those peers agree on;
 * - the dial queue joins a hole punch to any dial of the same peer still pending (one to its
 *   private address can hang for seconds, and the punch then starts too late) and drops DCUtR's
 *   `initiator: false`: DCUtR's forced dials go straight to the transport manager instead, with
 *   a signal of their own (a connection keeps listening to the signal it was dialled with, and
 *   DCUtR's 5 s timeout then closed the punched connection 5 s after it opened);
 * - the side that must answer (`initiator: false`: Noise and multistream-select respond) still
 *   ran Yamux as a client, because Yamux reads the raw connection's direction (both `outbound`
 *   after a simultaneous open; "Both endpoints are clients"): the transport marks it `inbound`;
 * - DCUtR closes the relayed connection the moment the direct one is up, cutting the streams
 *   still running on it (a job offer): it now closes once only DCUtR's own stream is left.
 *
 * @module
 */
import { tcp } from "@libp2p/tcp";
import { isPrivate } from "@libp2p/utils";
import { multiaddr } from "@multiformats/multiaddr";
import { serviceCapabilities, transportSymbol } from "@libp2p/interface";

/** Options of {@linkcode tcpPunch}. */
export interface TcpPunchOptions {
  /** The local port every outgoing TCP connection is made from; not a port the node listens on. */
  port: number;
  /** The local address outgoing TCP connections are made from. @default "0.0.0.0" */
  host?: string;
  /** Receives a `punch_address` record whenever the punch address changes. @default none */
  onLog?: (record: { level: "info" | "warn"; event: string; [field: string]: unknown }) => void;
}

/** What {@linkcode tcpPunch} gives to `startNode` (through `natServices({ punchPort })`). */
export interface TcpPunch {
  /**
   * A dial-only TCP transport for IPv4 (it never listens) that dials from the fixed port, or from an
   * ephemeral one when the fixed port cannot be bound for that destination (the same 4-tuple is
   * still open or in TIME_WAIT). It must come before the default TCP transport.
   */
  transport: (components: never) => unknown;
  /** A service that learns the punch address from what peers observe (identify). */
  service: (components: never) => unknown;
  /**
   * Wraps DCUtR's service factory: its address manager also lists the punch address, and its
   * forced dials bypass the dial queue.
   */
  forDcutr(factory: (components: never) => unknown): (components: never) => unknown;
  /**
   * `/ip4/<ip>/tcp/<port>` as the peers connected from the fixed port see this node, when they
   * all agree and it is public; `undefined` before, or when they disagree (a NAT that maps each
   * destination to another port: no punch is possible through it).
   */
  readonly address: string | undefined;
}

/**
 * TCP hole punching for DCUtR: a transport dialling from one fixed port, and the address peers
 * observe for it.
 *
 * @example
 * ```ts
 * import { tcpPunch } from "./tcp_punch.ts";
 * import { startNode } from "./node.ts";
 * import assert from "node:assert/strict";
 *
 * const punch = tcpPunch({ port: 41873 });
 * await using node = await startNode({
 *   mdns: false,
 *   dht: false,
 *   transports: [punch.transport],
 *   services: { punch: punch.service },
 * });
 * assert.equal(punch.address, undefined); // no peer has told it yet
 * assert.ok(node.peerId);
 * ```
 */
export function tcpPunch(options: TcpPunchOptions): TcpPunch {
  const { port, host = "0.0.0.0", onLog = () => {} } = options;
  if (!Number.isSafeInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot use punch port ${port}: expected 1 to 65535`);
  }
  const state = new _PunchState(onLog);
  return {
    transport:
      ((components: Parameters<ReturnType<typeof tcp>>[0]) =>
        new _PunchTransport(components, { localPort: port, localAddress: host }, state)) as never,
    service: ((components: _ObserverComponents) => new _PunchObserver(components, state)) as never,
    forDcutr: (factory) =>
      ((components: Record<string, unknown>) =>
        factory(_dcutrComponents(components, state) as never)) as never,
    get address() {
      return state.address;
    },
  };
}

/**
 * Errors of binding the fixed port for one destination (the 4-tuple is taken): dial again from an
 * ephemeral port. Node says `EADDRNOTAVAIL`; Deno 2.9.6's `node:net` says `EINVAL` (measured).
 */
const _BIND_ERRORS = new Set(["EADDRINUSE", "EADDRNOTAVAIL", "EINVAL"]);

/** Peers whose observation is kept; more only replace the oldest. */
const _MAX_OBSERVERS = 64;

class _PunchState {
  /** Connections this node made from the fixed port. */
  readonly fromFixedPort = new WeakSet<object>();
  /** What each peer connected from the fixed port observed, by PeerId (insertion = age). */
  readonly #observed = new Map<string, string>();
  #address: string | undefined;
  readonly #onLog: NonNullable<TcpPunchOptions["onLog"]>;

  constructor(onLog: NonNullable<TcpPunchOptions["onLog"]>) {
    this.#onLog = onLog;
  }

  get address(): string | undefined {
    return this.#address;
  }

  /** Record what `peer` observes (`undefined`: forget it), then decide the punch address. */
  observe(peer: string, address: string | undefined): void {
    this.#observed.delete(peer);
    if (address !== undefined) this.#observed.set(peer, address);
    while (this.#observed.size > _MAX_OBSERVERS) {
      this.#observed.delete(this.#observed.keys().next().value!);
    }
    const distinct = new Set(this.#observed.values());
    const next = distinct.size === 1 ? [...distinct][0] : undefined;
    // A peer that leaves takes its observation along; the address stays until peers disagree.
    if (next === this.#address || (address === undefined && distinct.size === 0)) return;
    this.#address = next;
    this.#onLog({
      level: "info",
      event: "punch_address",
      address: next ?? null,
      ...(distinct.size > 1 ? { reason: "peers observe different ports" } : {}),
    });
  }
}

interface _Upgrader {
  upgradeOutbound(maConn: { direction: string }, options: unknown): Promise<object>;
}

interface _Transport {
  dial(ma: unknown, options: unknown): Promise<object>;
  dialFilter(addrs: unknown[]): unknown[];
}

/** Dials TCP from the fixed port (see {@linkcode TcpPunch.transport}); never listens. */
class _PunchTransport {
  readonly [transportSymbol] = true;
  readonly [Symbol.toStringTag] = "@phase/tcp-punch";
  readonly [serviceCapabilities] = ["@libp2p/transport"];
  readonly #fixed: _Transport;
  readonly #ephemeral: _Transport;
  readonly #state: _PunchState;

  constructor(
    components: Parameters<ReturnType<typeof tcp>>[0],
    local: { localPort: number; localAddress: string },
    state: _PunchState,
  ) {
    // `@libp2p/tcp` hands its dialOpts to net.connect() as they are.
    this.#fixed = tcp({ dialOpts: local as never })(components) as never;
    this.#ephemeral = tcp()(components) as never;
    this.#state = state;
  }

  async dial(ma: unknown, options: { initiator?: boolean; upgrader: _Upgrader }): Promise<object> {
    if (options.initiator === false) options.upgrader = _asResponder(options.upgrader);
    try {
      const connection = await this.#fixed.dial(ma, options);
      this.#state.fromFixedPort.add(connection);
      return connection;
    } catch (error) {
      if (!_BIND_ERRORS.has((error as { code?: string }).code ?? "")) throw error;
      return await this.#ephemeral.dial(ma, options);
    }
  }

  createListener(): never {
    throw new TypeError("Cannot listen with the punch transport: it only dials");
  }

  listenFilter(): [] {
    return [];
  }

  /** IPv4 TCP addresses: the others (IPv6, DNS, unix sockets) are left to the TCP transport. */
  dialFilter(addrs: unknown[]): unknown[] {
    return this.#fixed.dialFilter(addrs).filter((a) => String(a).startsWith("/ip4/"));
  }
}

/**
 * An upgrader that upgrades a connection this node dialled as if it had accepted it: Yamux picks
 * its stream ids from the raw connection's direction, and with both ends `outbound` both open odd
 * streams and the connection fails at once ("Both endpoints are clients").
 */
function _asResponder(upgrader: _Upgrader): _Upgrader {
  return _override(upgrader, "upgradeOutbound", (maConn, options) => {
    maConn.direction = "inbound";
    return upgrader.upgradeOutbound(maConn, options);
  });
}

interface _ObserverComponents {
  events: {
    addEventListener(type: string, listener: (event: CustomEvent) => void): void;
    removeEventListener(type: string, listener: (event: CustomEvent) => void): void;
  };
}

/** Records, from identify, the address each peer connected from the fixed port sees. */
class _PunchObserver {
  readonly #events: _ObserverComponents["events"];
  readonly #state: _PunchState;

  constructor(components: _ObserverComponents, state: _PunchState) {
    this.#events = components.events;
    this.#state = state;
  }

  start(): void {
    this.#events.addEventListener("peer:identify", this.#onIdentify);
    this.#events.addEventListener("peer:disconnect", this.#onDisconnect);
  }

  stop(): void {
    this.#events.removeEventListener("peer:identify", this.#onIdentify);
    this.#events.removeEventListener("peer:disconnect", this.#onDisconnect);
  }

  #onIdentify = (event: CustomEvent): void => {
    const { peerId, observedAddr, connection } = event.detail as {
      peerId: { toString(): string };
      observedAddr?: { toString(): string };
      connection: object;
    };
    if (!this.#state.fromFixedPort.has(connection)) return;
    // `/ip4/<ip>/tcp/<port>`, with our PeerId after it; identify push carries none: keep the last.
    const match = /^\/ip4\/(\d+\.\d+\.\d+\.\d+)\/tcp\/(\d+)(\/p2p\/\w+)?$/.exec(
      String(observedAddr ?? ""),
    );
    if (!match) return;
    const address = `/ip4/${match[1]}/tcp/${match[2]}`;
    if (isPrivate(multiaddr(address))) return;
    this.#state.observe(peerId.toString(), address);
  };

  #onDisconnect = (event: CustomEvent): void => {
    this.#state.observe(String(event.detail), undefined);
  };
}

type _Multiaddr = ReturnType<typeof multiaddr>;

interface _DialManagers {
  addressManager: { getAddresses(): _Multiaddr[] };
  connectionManager: {
    openConnection(target: unknown, options?: { force?: boolean; signal?: AbortSignal }): Promise<
      unknown
    >;
  };
  transportManager: { dial(ma: unknown, options: unknown): Promise<unknown> };
  registrar: {
    register(
      protocol: string,
      topology: { onConnect?(peer: unknown, c: _Closable): void },
    ): unknown;
    handle(
      protocol: string,
      handler: (stream: unknown, connection: _Closable) => unknown,
      options?: unknown,
    ): unknown;
  };
  peerId: { toString(): string };
}

interface _Closable {
  status: string;
  streams: { protocol?: string }[];
  close(options?: unknown): Promise<void>;
}

/** Longest a relayed connection stays open after a hole punch while its streams finish, in ms. */
const _RELAY_GRACE_MS = 30_000;

/**
 * `connection` whose `close()` waits until it carries no stream but DCUtR's own (checked every
 * 250 ms, at most {@linkcode _RELAY_GRACE_MS}): DCUtR closes the relayed connection as soon as
 * the direct one is up, which cut the job offers still running on it (the spec asks for a grace
 * period). New streams already prefer the direct connection.
 */
function _closeWhenIdle(connection: _Closable): _Closable {
  return _override(connection, "close", () => {
    const deadline = Date.now() + _RELAY_GRACE_MS;
    const check = () => {
      if (connection.status !== "open") return;
      const busy = connection.streams.some((s) => s.protocol !== _DCUTR_PROTOCOL);
      if (busy && Date.now() < deadline) {
        Deno.unrefTimer(setTimeout(check, 250));
        return;
      }
      connection.close().catch(() => {});
    };
    check();
    return Promise.resolve();
  });
}

const _DCUTR_PROTOCOL = "/libp2p/dcutr";

/**
 * DCUtR's view of the node: its address manager ends the address list with the punch address,
 * its forced dials (the hole punch, the unilateral upgrade) go to the transport manager directly,
 * with DCUtR's own options (`initiator`) and timing, and the relayed connections it is handed
 * close only once idle.
 */
function _dcutrComponents(components: Record<string, unknown>, state: _PunchState): unknown {
  return new Proxy(components, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      const c = target as unknown as _DialManagers;
      if (prop === "addressManager") {
        return _override(c.addressManager, "getAddresses", () => {
          const addresses = c.addressManager.getAddresses();
          if (state.address === undefined) return addresses;
          const punch = multiaddr(`${state.address}/p2p/${c.peerId}`);
          return addresses.some((a) => a.equals(punch)) ? addresses : [...addresses, punch];
        });
      }
      if (prop === "registrar") {
        const registrar = _override(
          c.registrar,
          "register",
          (protocol, topology) =>
            c.registrar.register(protocol, {
              ...topology,
              onConnect: (peer, connection) =>
                topology.onConnect?.(peer, _closeWhenIdle(connection)),
            }),
        );
        return _override(registrar, "handle", (protocol, handler, options) =>
          c.registrar.handle(
            protocol,
            (stream, connection) => handler(stream, _closeWhenIdle(connection)),
            options,
          ));
      }
      if (prop === "connectionManager") {
        return _override(c.connectionManager, "openConnection", async (target, options = {}) => {
          if (options.force !== true || !Array.isArray(target) || target.length === 0) {
            return await c.connectionManager.openConnection(target, options);
          }
          let last: unknown;
          for (const ma of target) {
            // The connection keeps listening to the signal it was dialled with, and DCUtR's is
            // a 5 s timeout: hand the dial one that follows DCUtR's only until the dial ends.
            const dial = new AbortController();
            const abort = () => dial.abort(options.signal?.reason);
            options.signal?.addEventListener("abort", abort, { once: true });
            if (options.signal?.aborted) abort();
            try {
              return await c.transportManager.dial(ma, { ...options, signal: dial.signal });
            } catch (error) {
              last = error;
              if (options.signal?.aborted) break;
            } finally {
              options.signal?.removeEventListener("abort", abort);
            }
          }
          throw last;
        });
      }
      return value;
    },
  });
}

/** `object` with `name` replaced by `method` (other members bound to `object`). */
function _override<T extends object, K extends keyof T>(object: T, name: K, method: T[K]): T {
  return new Proxy(object, {
    get(target, prop) {
      if (prop === name) return method;
      const member = Reflect.get(target, prop);
      return typeof member === "function" ? member.bind(target) : member;
    },
  });
}
