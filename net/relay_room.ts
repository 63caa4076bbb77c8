/**
 * Before a job goes to a peer reached only through a relay: does it fit in what the relay still
 * lets that connection carry? If not, wait briefly for a direct connection (DCUtR upgrades a
 * relayed one on its own), else fail with one clear line.
 *
 * @module
 */
import { sleep } from "../util/sleep.ts";
import { isRelayed } from "./is_relayed.ts";

/** Bytes added to a job's module and input for its manifest, framing and receipt. */
export const JOB_OVERHEAD_BYTES = 16 * 1024;

/** The part of a libp2p connection read here. */
export interface RoutedConnection {
  /** Its address; a relayed one has `/p2p-circuit`. */
  remoteAddr: { toString(): string };
  /** Set on limited (relayed) connections: bytes still allowed. */
  limits?: { bytes?: bigint; seconds?: number } | undefined;
  /** `open` while usable. */
  status?: string;
}

/** Options of {@linkcode ensureRelayRoom}. */
export interface RelayRoomOptions {
  /** Longest wait for a direct connection, in ms. @default 5000 */
  waitMs?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/**
 * Resolve when `bytes` (plus {@linkcode JOB_OVERHEAD_BYTES}) can go to the peer: it has a direct
 * connection, no connection yet (the dial decides), or a relayed one with room enough. Otherwise
 * poll `connections()` until a direct connection appears or `waitMs` passes, then throw
 * `Cannot send job: job too large for a relayed connection (N bytes > relay limit M); no direct
 * connection`.
 *
 * @example
 * ```ts
 * import { ensureRelayRoom } from "./relay_room.ts";
 * import assert from "node:assert/strict";
 *
 * const relayed = [{ remoteAddr: "/ip4/1.2.3.4/tcp/1/p2p/R/p2p-circuit", limits: { bytes: 1000n } }];
 * await assert.rejects(ensureRelayRoom(() => relayed, 5000, { waitMs: 0 }), {
 *   message: /job too large for a relayed connection \(21384 bytes > relay limit 1000\)/,
 * });
 * await ensureRelayRoom(() => [{ remoteAddr: "/ip4/1.2.3.4/tcp/1" }], 5000);
 * ```
 */
export async function ensureRelayRoom(
  connections: () => RoutedConnection[],
  bytes: number,
  options: RelayRoomOptions = {},
): Promise<void> {
  const { waitMs = 5000, signal } = options;
  const needed = bytes + JOB_OVERHEAD_BYTES;
  const deadline = Date.now() + waitMs;
  while (true) {
    signal?.throwIfAborted();
    const open = connections().filter((c) => c.status === undefined || c.status === "open");
    if (open.length === 0 || open.some((c) => !isRelayed(c))) return;
    const room = open.reduce<bigint | undefined>((best, c) => {
      const left = c.limits?.bytes;
      if (left === undefined) return best ?? -1n; // relayed, limit unknown: duration only
      return best === undefined || left > best ? left : best;
    }, undefined);
    if (room === -1n || (room !== undefined && BigInt(needed) <= room)) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `Cannot send job: job too large for a relayed connection (${needed} bytes > relay limit ${room}); no direct connection`,
      );
    }
    await sleep(Math.min(250, Math.max(1, deadline - Date.now())), signal);
  }
}
