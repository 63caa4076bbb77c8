/**
 * What the node dashboard shows (`GET /dashboard/data`): this node, its peers, its recent jobs
 * with each receipt checked again here, its worker and its provider status.
 *
 * @module
 */
import type { NodeInfo } from "./node_info.ts";
import type { JobRecord } from "./job_store.ts";
import type { JobProgress } from "./scheduler.ts";
import { type ConnectionLike, type PeerConnection, peerConnections } from "./metrics_peers.ts";
import { peerPublicKey } from "./peer_key.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { errorMessage } from "../util/error_message.ts";

/** This node, as the dashboard shows it. */
export interface DashboardNode {
  /** PeerId. */
  peer_id: string;
  /** Ed25519 public key, hex. */
  public_key: string;
  /** `internet`, `local` or `private`. */
  mode: string;
  /** Listen addresses. */
  multiaddrs: string[];
  /** Architecture. */
  arch: string;
  /** Software version. */
  version: string;
  /** When the node started, RFC 3339. */
  started_at: string;
  /** Job kinds it runs, with their limits. */
  capabilities: NodeInfo["capabilities"];
  /** How Phase Boot booted this machine (manifest, provider, hashes), when it did. */
  boot?: Record<string, string>;
}

/** One job this node submitted. */
export interface DashboardJob {
  /** Job id, hex. */
  job_id: string;
  /** `queued`, `running`, `done` or `failed`. */
  status: string;
  /** Why a running job waits, or the status. */
  state: string;
  /** The worker whose result was kept (or the one it is offered to). */
  worker_peer_id: string | null;
  /** Submitted at, RFC 3339. */
  created_at: string;
  /** Run time on the worker from its signed receipt, in ms; null without one. */
  duration_ms: number | null;
  /** The job's exit code, when it ran. */
  exit_code: number | null;
  /** `stop`, `length`, `cancelled` or `error`, when it ran. */
  completion: string | null;
  /** Why it failed. */
  error: string | null;
  /** `verified` (signature by the worker's PeerId key, job id and hashes), `invalid`, or `none`. */
  receipt: "verified" | "invalid" | "none";
  /** Why the receipt did not verify. */
  receipt_error?: string;
}

/** The whole dashboard state. */
export interface DashboardSnapshot {
  /** When this snapshot was made, RFC 3339. */
  generated_at: string;
  /** This node. */
  node: DashboardNode;
  /** Connected peers. */
  peers: PeerConnection[];
  /** Recent jobs, newest first. */
  jobs: DashboardJob[];
  /** The worker's slots, or null when this node runs no jobs. */
  worker: { running: number; queued: number } | null;
  /** The boot-artifact provider this node serves, or null. */
  provider:
    | { http_url: string | null; channel: string | null; manifest_sequence: number | null }
    | null;
}

/** What {@linkcode dashboardSnapshot} reads. */
export interface DashboardSources {
  /** This node: fixed fields (`capabilities` and `arch` come from `info`). */
  node: Omit<DashboardNode, "capabilities" | "arch" | "multiaddrs">;
  /** The node's current info. */
  info: () => NodeInfo;
  /** Its listen addresses now. */
  multiaddrs: () => string[];
  /** Its open connections. */
  connections: () => Iterable<ConnectionLike>;
  /** Recent jobs (a `JobStore`). */
  jobs?: { recent(limit: number): JobRecord[] };
  /** Where an unfinished job stands. */
  progress?: (jobId: string) => JobProgress | undefined;
  /** The worker's slots, when it runs jobs. */
  worker?: () => { running: number; queued: number } | undefined;
  /** Receipt checks already made, by signature (kept between calls). */
  verified?: Map<string, string>;
}

/**
 * Collect the dashboard state; `limit` caps the jobs listed (default 50).
 *
 * @example
 * ```ts
 * import { dashboardSnapshot } from "./dashboard_data.ts";
 * import assert from "node:assert/strict";
 *
 * const snapshot = await dashboardSnapshot({
 *   node: { peer_id: "P", public_key: "ab", mode: "local", version: "0.1.0", started_at: "" },
 *   info: () => ({ peer_id: "P", arch: "x86_64", capabilities: {} }),
 *   multiaddrs: () => ["/ip4/127.0.0.1/tcp/1/p2p/P"],
 *   connections: () => [{ remotePeer: "Q", remoteAddr: "/ip4/127.0.0.1/tcp/2/p2p/Q" }],
 * });
 * assert.equal(snapshot.peers[0]!.peer_id, "Q");
 * assert.equal(snapshot.provider, null);
 * ```
 */
export async function dashboardSnapshot(
  sources: DashboardSources,
  limit = 50,
): Promise<DashboardSnapshot> {
  const info = sources.info();
  const verified = sources.verified ?? new Map<string, string>();
  const jobs: DashboardJob[] = [];
  for (const job of sources.jobs?.recent(limit) ?? []) {
    jobs.push(await _job(job, sources.progress?.(job.jobId), verified));
  }
  if (verified.size > 4 * limit) {
    for (const key of [...verified.keys()].slice(0, verified.size - 2 * limit)) {
      verified.delete(key);
    }
  }
  const worker = sources.worker?.();
  return {
    generated_at: new Date().toISOString(),
    node: {
      ...sources.node,
      arch: info.arch,
      multiaddrs: sources.multiaddrs(),
      capabilities: info.capabilities,
    },
    peers: peerConnections(sources.connections()),
    jobs,
    worker: worker ? { running: worker.running, queued: worker.queued } : null,
    provider: info.http_url || info.channel || info.manifest_sequence !== undefined
      ? {
        http_url: info.http_url ?? null,
        channel: info.channel ?? null,
        manifest_sequence: info.manifest_sequence ?? null,
      }
      : null,
  };
}

async function _job(
  job: JobRecord,
  progress: JobProgress | undefined,
  verified: Map<string, string>,
): Promise<DashboardJob> {
  const finished = job.status === "done" || job.status === "failed";
  const worker = job.workerPeerId?.split(",")[0] ?? progress?.peerId ?? null;
  const out: DashboardJob = {
    job_id: job.jobId,
    status: job.status,
    state: finished ? job.status : progress?.state ?? job.status,
    worker_peer_id: worker,
    created_at: new Date(job.createdAt).toISOString(),
    duration_ms: job.receipt?.result.metrics.total_duration_ms ?? null,
    exit_code: job.exitCode ?? null,
    completion: job.completion ?? null,
    error: job.error ?? null,
    receipt: "none",
  };
  if (job.receipt && worker) {
    const key = `${job.jobId}:${worker}:${job.receipt.signature}`;
    let verdict = verified.get(key);
    if (verdict === undefined) {
      verdict = await _check(job, worker);
      verified.set(key, verdict);
    }
    if (verdict === "") out.receipt = "verified";
    else {
      out.receipt = "invalid";
      out.receipt_error = verdict;
    }
  }
  return out;
}

/** "" when the job's receipt verifies against its worker's PeerId key, else why not. */
async function _check(job: JobRecord, worker: string): Promise<string> {
  try {
    const receipt = await verifyReceipt(job.receipt, {
      publicKey: peerPublicKey(worker),
      jobId: job.jobId,
    });
    const extra = receipt.result.metrics.extra;
    const payload = job.manifest.payload as { module_cid?: string; input?: string };
    if (extra.module_hash !== payload.module_cid) return "module hash differs from the manifest";
    if (extra.input_hash !== payload.input) return "input hash differs from the manifest";
    return "";
  } catch (error) {
    return errorMessage(error);
  }
}
