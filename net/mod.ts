/**
 * The network part of Phase: the libp2p node, discovery and advertisement. Kept out of the
 * main `mod.ts` because js-libp2p's dependencies read environment variables when they load
 * (run with `--ignore-env` or `--allow-env`), while `mod.ts` loads with no permissions.
 *
 * @example Two nodes on loopback, one asking the other who it is
 * ```ts
 * import { startNode } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * await using a = await startNode({ mdns: false });
 * await using b = await startNode({ mdns: false });
 * const info = await b.queryInfo(a.peerId, { multiaddrs: a.multiaddrs });
 * assert.equal(info.peer_id, a.peerId);
 * ```
 *
 * @module
 */
export { PhaseNode, startNode } from "./node.ts";
export { applyNodeCompat } from "./node_compat.ts";
export type { BootstrapResult, FoundPeer, NodeLogRecord, StartNodeOptions } from "./node.ts";
export { BootstrapFailedError, discoverPeers } from "./discover_peers.ts";
export type { DiscoveredPeer, DiscoverPeersOptions } from "./discover_peers.ts";
export { advertiseProvider } from "./advertise_provider.ts";
export type { AdvertiseProviderOptions } from "./advertise_provider.ts";
export { capabilityKey, manifestKey } from "./provider_key.ts";
export { INFO_PROTOCOL, parseNodeInfo } from "./node_info.ts";
export type { NodeCapabilities, NodeInfo, WasmCapability } from "./node_info.ts";
export {
  BOOT_ATTESTATION_PREFIX,
  parseBootProvenance,
  readBootProvenance,
  signBootAttestation,
  verifyBootAttestation,
} from "./boot_attestation.ts";
export type { BootAttestation, BootProvenance, BootRequirement } from "./boot_attestation.ts";
export { defaultNodeConfig, parseNodeConfig } from "./node_config.ts";
export type { NodeConfig, NodeMode } from "./node_config.ts";
export { defaultStateDir, loadOrCreateIdentity } from "./identity.ts";
export type { KeyPair } from "../runtime/ed25519.ts";
export {
  describeReason,
  JOB_OFFER_PROTOCOL,
  MAX_OFFER_BYTES,
  NonceGuard,
  parseJobOffer,
  parseOfferResponse,
} from "./job_protocol.ts";
export type {
  JobOffer,
  JobRequirements,
  NonceGuardOptions,
  OfferResponse,
  RejectReason,
} from "./job_protocol.ts";
export { JOB_EXEC_PROTOCOL, JOB_EXEC_PROTOCOL_EAGER } from "./job_exec_protocol.ts";
export type { ExecDone, ExecRequest, ExecResponse } from "./job_exec_protocol.ts";
export { QueueFullError, WorkerPolicy } from "./worker_policy.ts";
export type { WorkerPolicyOptions } from "./worker_policy.ts";
export { Scheduler } from "./scheduler.ts";
export type { Dispatcher, JobFailureKind, JobProgress, SchedulerOptions } from "./scheduler.ts";
export type { SubmitOptions } from "./submit_options.ts";
export { JobStore } from "./job_store.ts";
export type {
  JobPatch,
  JobRecord,
  JobRequestOptions,
  JobStatus,
  JobStoreOptions,
  JobStoreStats,
} from "./job_store.ts";
export { WASM_KIND } from "../runtime/job_manifest.ts";
export type { JobManifest, JobPayload, WasmJobPayload } from "../runtime/job_manifest.ts";
export type { Receipt } from "../runtime/receipt.ts";
export type { ExecContext } from "./job_exec_protocol.ts";
export type { Completion, JobResult, ResultMetrics } from "../runtime/receipt.ts";
