/**
 * What the local API's `GET /status` answers for a running node: its addresses, whether it is
 * reachable (AutoNAT) and the relay it runs, and per peer whether it is connected directly or
 * through a relay; and, when it signed a boot attestation, how it booted.
 *
 * @module
 */
import type { NodeStatus } from "./local_api.ts";
import type { RelayLimits } from "./nat_services.ts";
import { peerConnections } from "./metrics_peers.ts";
import type { PhaseNode } from "./node.ts";
import type { BootAttestation } from "./boot_attestation.ts";

/**
 * The `GET /status` document of `node`; `relayLimits` when it runs a relay server
 * (`natServices({ relay })`).
 *
 * @example
 * ```ts
 * import { nodeStatus } from "./node_status.ts";
 * import { startNode } from "./node.ts";
 * import assert from "node:assert/strict";
 *
 * await using node = await startNode({ mdns: false, dht: false });
 * const status = nodeStatus(node);
 * assert.equal(status.peer_id, node.peerId);
 * assert.equal(status.relay, null);
 * assert.deepEqual(status.peers, []);
 * assert.equal(status.boot, undefined);
 * ```
 */
export function nodeStatus(node: PhaseNode, relayLimits?: RelayLimits): NodeStatus {
  const services = node.libp2p.services as Record<string, unknown>;
  const reachability = (services.reachability as { state?: NodeStatus["reachability"] })?.state ??
    "unknown";
  const relay = services.relay as { reservations?: { size: number } } | undefined;
  const attestation = node.info().boot_attestation;
  return {
    peer_id: node.peerId,
    multiaddrs: node.multiaddrs,
    reachability,
    relay: relayLimits
      ? {
        max_reservations: relayLimits.maxReservations,
        reservations: relay?.reservations?.size ?? 0,
        data_limit_bytes: relayLimits.dataLimitBytes,
        duration_limit_ms: relayLimits.durationLimitMs,
      }
      : null,
    peers: peerConnections(node.libp2p.getConnections()),
    ...(attestation ? { boot: _bootSummary(attestation) } : {}),
  };
}

/** The readable part of a boot attestation: what the stub verified and when the node signed. */
function _bootSummary(attestation: BootAttestation): NonNullable<NodeStatus["boot"]> {
  const { boot_manifest_hash, boot_sequence, version, channel, arch, signer_key_ids } =
    attestation.provenance;
  return {
    boot_manifest_hash,
    boot_sequence,
    version,
    channel,
    arch,
    signer_key_ids,
    signed_at: attestation.signed_at,
  };
}
