/**
 * Whether a libp2p connection goes through a relay. Its own module, so the node (and
 * `discover`, which loads the node) need not load the NAT services' libraries to ask.
 *
 * @module
 */

/**
 * Whether a libp2p connection goes through a relay: its address has `/p2p-circuit` or it carries
 * limits (the relay's data and duration bounds).
 *
 * @example
 * ```ts
 * import { isRelayed } from "./is_relayed.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isRelayed({ remoteAddr: "/ip4/1.2.3.4/tcp/1/p2p/R/p2p-circuit/p2p/B" }), true);
 * assert.equal(isRelayed({ remoteAddr: "/ip4/1.2.3.4/tcp/1" }), false);
 * ```
 */
export function isRelayed(
  connection: { remoteAddr: { toString(): string }; limits?: unknown },
): boolean {
  return connection.remoteAddr.toString().includes("/p2p-circuit") || connection.limits != null;
}
