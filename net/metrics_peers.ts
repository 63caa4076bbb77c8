/**
 * How a node is connected to its peers: per peer, direct or relayed and over which transport,
 * as `/metrics` counts them and the dashboard lists them.
 *
 * @module
 */

/** The part of a libp2p connection read here. */
export interface ConnectionLike {
  /** The peer at the other end. */
  remotePeer: { toString(): string };
  /** The address it was reached at (a relayed one contains `/p2p-circuit`). */
  remoteAddr: { toString(): string };
  /** `inbound` or `outbound`. */
  direction?: string;
  /** Set on limited (relayed) connections. */
  limits?: unknown;
}

/** One connected peer. */
export interface PeerConnection {
  /** The PeerId. */
  peer_id: string;
  /** `direct`, or `relayed` when every connection to it goes through a relay. */
  connection: "direct" | "relayed";
  /** `tcp`, `quic`, `websockets`, `webrtc`, `webtransport` or `other` (of its first connection). */
  transport: string;
  /** The address of its first connection. */
  multiaddr: string;
  /** `inbound` or `outbound` (of its first connection). */
  direction: string;
  /** Open connections to it. */
  connections: number;
}

/**
 * Group connections by peer: a peer with at least one direct connection is `direct`.
 *
 * @example
 * ```ts
 * import { peerConnections } from "./metrics_peers.ts";
 * import assert from "node:assert/strict";
 *
 * const peers = peerConnections([
 *   { remotePeer: "A", remoteAddr: "/ip4/127.0.0.1/tcp/4001/p2p/A", direction: "outbound" },
 *   { remotePeer: "B", remoteAddr: "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/R/p2p-circuit/p2p/B" },
 * ]);
 * assert.deepEqual(peers.map((p) => [p.peer_id, p.connection, p.transport]), [
 *   ["A", "direct", "tcp"],
 *   ["B", "relayed", "quic"],
 * ]);
 * ```
 */
export function peerConnections(connections: Iterable<ConnectionLike>): PeerConnection[] {
  const peers = new Map<string, PeerConnection>();
  for (const connection of connections) {
    const id = connection.remotePeer.toString();
    const addr = connection.remoteAddr.toString();
    const relayed = addr.includes("/p2p-circuit") || connection.limits != null;
    const known = peers.get(id);
    if (known) {
      known.connections++;
      if (!relayed && known.connection === "relayed") {
        Object.assign(known, {
          connection: "direct",
          transport: transportOf(addr),
          multiaddr: addr,
          direction: connection.direction ?? "unknown",
        });
      }
      continue;
    }
    peers.set(id, {
      peer_id: id,
      connection: relayed ? "relayed" : "direct",
      transport: transportOf(addr),
      multiaddr: addr,
      direction: connection.direction ?? "unknown",
      connections: 1,
    });
  }
  return [...peers.values()];
}

/**
 * The transport of a multiaddr, by its first transport component (for a relayed address: the
 * transport to the relay).
 *
 * @example
 * ```ts
 * import { transportOf } from "./metrics_peers.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(transportOf("/ip4/127.0.0.1/tcp/4001/ws"), "websockets");
 * assert.equal(transportOf("/ip6/::1/udp/4001/quic-v1"), "quic");
 * ```
 */
export function transportOf(multiaddr: string): string {
  const parts = multiaddr.split("/p2p-circuit")[0]!.split("/");
  if (parts.includes("webtransport")) return "webtransport";
  if (parts.includes("webrtc") || parts.includes("webrtc-direct")) return "webrtc";
  if (parts.includes("quic-v1") || parts.includes("quic")) return "quic";
  if (parts.includes("ws") || parts.includes("wss")) return "websockets";
  if (parts.includes("tcp")) return "tcp";
  return "other";
}
