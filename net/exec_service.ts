/**
 * Remote execution on a running {@linkcode PhaseNode}: the job worker service (unless disabled), the scheduler that sends this node's jobs to peers, the job store and
 * the local API handler. `cli/start.ts` starts it after the node; `Deno.serve` stays in the CLI.
 *
 * @module
 */
import { join } from "node:path";
import { peerIdFromString } from "@libp2p/peer-id";
import type { PeerId, Stream } from "@libp2p/interface";
import type { KeyPair } from "../runtime/ed25519.ts";
import type { PhaseNode } from "./node.ts";
import { capabilityKey } from "./provider_key.ts";
import { JOB_OFFER_PROTOCOL, sendJobOffer } from "./job_protocol.ts";
import { JOB_EXEC_PROTOCOL, JOB_EXEC_PROTOCOL_EAGER, requestJobExec } from "./job_exec_protocol.ts";
import { JobStore } from "./job_store.ts";
import { jobIdOf } from "../runtime/job_manifest.ts";
import { type JobWorker, jobWorker } from "./job_worker.ts";
import { type Dispatcher, Scheduler } from "./scheduler.ts";
import { WorkerPolicy, type WorkerPolicyOptions } from "./worker_policy.ts";
import { createLocalApiHandler, type LocalApiOptions } from "./local_api.ts";
import { ensureRelayRoom } from "./relay_room.ts";
import { isRelayed } from "./is_relayed.ts";
import { SandboxPool, type SandboxPoolOptions } from "../runtime/sandbox_pool.ts";
import type { SandboxConfinement } from "../runtime/sandbox_spawn.ts";
import { storeReceipt } from "../runtime/receipt_store.ts";
import { toHex } from "../runtime/digest.ts";
import type { Receipt } from "../runtime/receipt.ts";
import {
  type BootAttestation,
  bootReceiptExtra,
  verifyBootAttestation,
} from "./boot_attestation.ts";

/** File name of the job database in the state dir. */
export const JOB_DB_FILE = "jobs.db";

/** Options of {@linkcode startExecService}. */
export interface ExecServiceOptions {
  /** The node's key pair (its PeerId's key): signs manifests and receipts. */
  keyPair: KeyPair;
  /** State dir holding `jobs.db`; without it jobs live in memory only. @default none */
  stateDir?: string;
  /** Run jobs for peers under this policy, or `false` to only submit. @default {{}} */
  worker?: WorkerPolicyOptions | false;
  /** API bearer token; without it no API handler is made. @default none */
  apiToken?: string;
  /** More routes of the local API: `/metrics` and `/dashboard` (net/metrics.ts, net/dashboard.ts). @default {{}} */
  api?: Pick<LocalApiOptions, "metrics" | "dashboard" | "status">;
  /** Scheduler retries per replica. @default {5} */
  maxAttempts?: number;
  /**
   * How long a job looks for a usable worker before it fails with `no worker found`, in ms.
   * @default {30000}
   */
  workerSearchTimeoutMs?: number;
  /** Test only: the worker corrupts the output it returns. @default {false} */
  tamperResultsForTests?: boolean;
  /** Per-stream time limit, in ms. @default {10000} */
  streamTimeoutMs?: number;
  /**
   * OS confinement of the job sandboxes (runtime/sandbox_spawn.ts): `"auto"` falls back to
   * Deno's permissions alone with one `sandbox_unconfined` warning where bubblewrap cannot run,
   * `"require"` makes this function throw there instead.
   * @default {"auto"}
   */
  sandboxConfinement?: SandboxConfinement;
  /**
   * Size and recycling of the warm sandbox processes (runtime/sandbox_pool.ts).
   * @default {{}} (one per core, recycled after 1000 jobs or 256 MiB of compiled module)
   */
  sandboxPool?: Omit<SandboxPoolOptions, "confinement" | "_entry">;
  /**
   * This node's signed boot attestation (`start --boot-provenance`): every receipt its worker
   * signs carries its `boot_manifest_hash` and `boot_sequence`. Show it in the node info too
   * (`node.updateInfo({ boot_attestation })`). @default none
   */
  bootAttestation?: BootAttestation;
  /** Receives structured log records. */
  onLog?: (record: Record<string, unknown>) => void;
}

/** A running execution service; see {@linkcode startExecService}. */
export interface ExecService {
  /** Sends this node's jobs to workers. */
  scheduler: Scheduler;
  /** The job database. */
  store: JobStore;
  /** Runs peers' jobs, when this node is a worker. */
  worker: JobWorker | undefined;
  /** The worker's admission policy and slots, when this node is a worker. */
  policy: WorkerPolicy | undefined;
  /** The local API handler, when a token was given. */
  handler: ((request: Request) => Promise<Response>) | undefined;
  /** Stop scheduling and working, close the database; idempotent. */
  stop(): Promise<void>;
  /** Same as `stop`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Add remote execution to a started node.
 *
 * @example
 * ```ts
 * import { startNode } from "./node.ts";
 * import { startExecService } from "./exec_service.ts";
 * import { loadOrCreateIdentity } from "./identity.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const keyPair = await loadOrCreateIdentity(dir);
 * await using node = await startNode({ secretKey: keyPair.secretKey, mdns: false, dht: false });
 * await using exec = await startExecService(node, { keyPair, worker: false });
 * assert.equal(exec.worker, undefined);
 * await exec.stop();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function startExecService(
  node: PhaseNode,
  options: ExecServiceOptions,
): Promise<ExecService> {
  const {
    keyPair,
    stateDir,
    worker: policyOptions = {},
    apiToken,
    api = {},
    maxAttempts = 5,
    workerSearchTimeoutMs = 30_000,
    tamperResultsForTests = false,
    streamTimeoutMs = 10_000,
    sandboxConfinement = "auto",
    sandboxPool = {},
    bootAttestation,
    onLog,
  } = options;
  const libp2p = node.libp2p;
  const arch = node.info().arch;
  const store = JobStore.open(stateDir ? join(stateDir, JOB_DB_FILE) : ":memory:");
  // Every receipt this node signs (as a worker) or accepts (as a requester) is kept as a file.
  const keepReceipt = stateDir ? (receipt: Receipt) => storeReceipt(stateDir, receipt) : undefined;
  let worker: JobWorker | undefined;
  let policy: WorkerPolicy | undefined;
  // Warm sandbox processes (one per core by default), so a job waits for no deno to boot.
  const pool = policyOptions !== false
    ? new SandboxPool({ ...sandboxPool, confinement: sandboxConfinement })
    : undefined;
  if (pool && !pool.confinement.confined) {
    // One line: jobs still run, confined by Deno's permissions only (docs/runtime.md).
    onLog?.({ level: "warn", event: "sandbox_unconfined", reason: pool.confinement.reason });
  }
  try {
    if (policyOptions !== false) {
      // The worker is a libp2p service; a started node lends its own handle/unhandle.
      policy = new WorkerPolicy({ arch, ...policyOptions });
      worker = jobWorker({
        keyPair,
        policy,
        store,
        sandbox: "process",
        ...(pool ? { pool } : {}),
        streamTimeoutMs,
        tamperResultsForTests,
        ...(bootAttestation ? { receiptExtra: bootReceiptExtra(bootAttestation) } : {}),
        ...(keepReceipt ? { keepReceipt } : {}),
        ...(onLog ? { onLog } : {}),
      })({ registrar: libp2p, peerId: libp2p.peerId });
      await worker.start();
    }
  } catch (error) {
    await worker?.stop();
    store.close();
    await pool?.close();
    throw error;
  }
  let turn = 0;
  /** What each connected peer speaks (from its identify), with when it was read. */
  const protocolsOf = new Map<string, { protocols: string[]; at: number }>();
  // A job pinned to this node's own PeerId runs on its own worker, in process (libp2p cannot
  // dial itself); the scheduler refuses it when this node runs no jobs.
  const ownKey = toHex(keyPair.publicKey);
  const self = (peer: string) => {
    if (peer !== node.peerId) return undefined;
    if (!worker) throw new Error("This node runs no jobs");
    return worker;
  };
  // Job streams opened while their offer is answered, so a job waits for one stream set-up
  // (a multistream-select round trip) instead of two; by `<peer> <job id>`, taken by exec(),
  // aborted when the offer is not accepted or the service stops.
  const early = new Map<string, Promise<Stream>>();
  // Workers' verified boot attestations (for jobs that require one), bounded in size and age:
  // a peer's info is asked again after a minute, after 5 s when it could not be read.
  const attestations = new Map<
    string,
    { at: number; ttl: number; value: Promise<BootAttestation | undefined> }
  >();
  // Shared by every job that asks: bounded by the node's stream timeout, not one job's signal.
  const readAttestation = async (peer: string) => {
    const info = await node.queryInfo(peer);
    return info.boot_attestation === undefined
      ? undefined
      : await verifyBootAttestation(info.boot_attestation, { peerId: peer });
  };
  /**
   * What a connected peer speaks (its identify, from the peer store): a peer store read (a lock
   * and a record decode) per peer and job was a hot spot, so it is kept for a second.
   */
  const speaks = async (peer: PeerId, now = Date.now()): Promise<string[]> => {
    const id = peer.toString();
    let entry = protocolsOf.get(id);
    if (entry === undefined || now - entry.at > 1000) {
      const protocols: string[] = await libp2p.peerStore.get(peer).then(
        (p) => p.protocols,
        () => [],
      );
      entry = { protocols, at: now };
      if (protocols.length > 0) protocolsOf.set(id, entry);
      if (protocolsOf.size > 1024) protocolsOf.delete(protocolsOf.keys().next().value!);
    }
    return entry.protocols;
  };
  // 2.1.0 (eager input, no `Send` round trip) with a worker whose identify lists it.
  const dialExec = async (peerId: PeerId, signal: AbortSignal) =>
    await libp2p.dialProtocol(
      peerId,
      (await speaks(peerId)).includes(JOB_EXEC_PROTOCOL_EAGER)
        ? JOB_EXEC_PROTOCOL_EAGER
        : JOB_EXEC_PROTOCOL,
      { signal, runOnLimitedConnection: true },
    );
  const dispatcher: Dispatcher = {
    bootAttestation(peer) {
      if (peer === node.peerId) return Promise.resolve(bootAttestation);
      const now = Date.now();
      const cached = attestations.get(peer);
      if (cached && now - cached.at < cached.ttl) return cached.value;
      const entry = { at: now, ttl: 60_000, value: readAttestation(peer) };
      entry.value.catch(() => entry.ttl = 5_000);
      attestations.delete(peer);
      attestations.set(peer, entry);
      if (attestations.size > 1024) attestations.delete(attestations.keys().next().value!);
      return entry.value;
    },
    async candidates(signal) {
      const known: string[] = [];
      const unknown: string[] = [];
      const now = Date.now();
      for (const peer of libp2p.getPeers()) {
        const id = peer.toString();
        const protocols = await speaks(peer, now);
        if (protocols.includes(JOB_OFFER_PROTOCOL)) known.push(id);
        else if (protocols.length === 0) unknown.push(id);
      }
      if (known.length === 0 && libp2p.services.dht) {
        const found = await node.findProviders(capabilityKey(arch), {
          limit: 20,
          signal: AbortSignal.any([signal, AbortSignal.timeout(streamTimeoutMs)]),
        }).catch(() => []);
        for (const peer of found) {
          if (peer.peerId !== node.peerId && !known.includes(peer.peerId)) known.push(peer.peerId);
        }
      }
      // Rotate, so concurrent jobs spread over the workers.
      const start = known.length ? turn++ % known.length : 0;
      return [...known.slice(start), ...known.slice(0, start), ...unknown];
    },
    async offer(peer, offer, signal) {
      const local = self(peer);
      if (local) return local.decideOffer(offer, ownKey);
      const peerId = peerIdFromString(peer);
      const key = `${peer} ${offer.job_id}`;
      // Only over a direct connection: through a relay, exec() first checks the job fits.
      const direct = libp2p.getConnections(peerId).some((c) =>
        c.status === "open" && !isRelayed(c)
      );
      const pending = direct && !early.has(key) ? dialExec(peerId, signal) : undefined;
      pending?.catch(() => {});
      let accepted = false;
      try {
        const stream = await libp2p.dialProtocol(peerId, JOB_OFFER_PROTOCOL, {
          signal,
          runOnLimitedConnection: true,
        });
        const answer = await sendJobOffer(stream, offer, { signal });
        accepted = "Accepted" in answer;
        return answer;
      } finally {
        if (accepted && pending) early.set(key, pending);
        else pending?.then((s) => s.abort(new Error("The offer was not accepted")), () => {});
      }
    },
    async exec(peer, request, signal) {
      const local = self(peer);
      if (local) return await local.execute(request, ownKey, { signal });
      const peerId = peerIdFromString(peer);
      const key = `${peer} ${jobIdOf(request.manifest)}`;
      const opened = early.get(key);
      early.delete(key);
      const fresh = async () => {
        // Through a relay only what fits in its data limit (net/relay_room.ts).
        const bytes = request.input.length + (request.module?.length ?? 0);
        await ensureRelayRoom(() => libp2p.getConnections(peerId), bytes, { signal });
        return await dialExec(peerId, signal);
      };
      const stream = opened ? await opened.catch(fresh) : await fresh();
      return await requestJobExec(stream, request, {
        signal,
        eager: stream.protocol === JOB_EXEC_PROTOCOL_EAGER,
      });
    },
  };
  const scheduler = new Scheduler({
    store,
    keyPair,
    dispatcher,
    arch,
    maxAttempts,
    workerSearchTimeoutMs,
    self: { peerId: node.peerId, runsJobs: worker !== undefined },
    ...(keepReceipt ? { keepReceipt } : {}),
    ...(onLog ? { onLog } : {}),
  });
  const resumed = scheduler.resume();
  if (resumed.length > 0) onLog?.({ level: "info", event: "jobs_resumed", job_ids: resumed });
  const handler = apiToken
    ? createLocalApiHandler({ ...api, token: apiToken, jobs: scheduler })
    : undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      const stopping = worker?.stop();
      await scheduler.stop();
      for (const opened of early.values()) {
        opened.then((s) => s.abort(new Error("The node stopped")), () => {});
      }
      early.clear();
      await stopping;
      store.close();
      await pool?.close();
    })();
  return { scheduler, store, worker, policy, handler, stop, [Symbol.asyncDispose]: stop };
}
