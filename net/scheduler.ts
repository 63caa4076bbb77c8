/**
 * The requester side of remote execution: sign a manifest, offer the job to workers, send it
 * to one that accepts, verify the receipt against that worker's PeerId key and bind it to the
 * job; retry on another worker when one rejects, dies or returns a bad result; optionally run
 * on N workers and compare their output commitments. Jobs and results persist in a
 * {@linkcode JobStore}.
 *
 * @module
 */
import { canonicalJson } from "../runtime/canonical_json.ts";
import { sha256Tag, sha256TagAsync, toHex } from "../runtime/digest.ts";
import type { KeyPair } from "../runtime/ed25519.ts";
import {
  jobIdOf,
  type JobManifest,
  jobSpecHash,
  signJobManifest,
} from "../runtime/job_manifest.ts";
import { DEFAULT_JOB_KIND, jobKind } from "../runtime/job_kinds.ts";
import { decodeFileTree } from "../runtime/file_tree.ts";
import { checkSubmitOptions, type SubmitOptions } from "./submit_options.ts";
import { type Receipt, ReceiptMismatchError, verifyReceipt } from "../runtime/receipt.ts";
import {
  encodeExecRequest,
  encodeExecResponse,
  type ExecDone,
  type ExecRequest,
  type ExecResponse,
  MAX_EXEC_TREE_BYTES,
  parseExecRequest,
  parseExecResponse,
} from "./job_exec_protocol.ts";
import {
  describeReason,
  encodeOfferMessage,
  type JobOffer,
  type OfferResponse,
  parseJobOffer,
  parseOfferResponse,
} from "./job_protocol.ts";
import type { JobWorker } from "./job_worker.ts";
import { meshTreeLimits } from "./mesh_files.ts";
import type { JobRecord, JobRequestOptions, JobStore } from "./job_store.ts";
import { peerPublicKey } from "./peer_key.ts";
import {
  type BootAttestation,
  bootReceiptExtra,
  type BootRequirement,
  bootRequirementProblem,
  describeBootRequirement,
} from "./boot_attestation.ts";
import { sleep } from "../util/sleep.ts";
import { Semaphore } from "../util/semaphore.ts";
import { errorMessage } from "../util/error_message.ts";
import { checkIntegers } from "../util/check_integers.ts";

/** How the scheduler reaches workers; {@linkcode Scheduler} is transport-free. */
export interface Dispatcher {
  /** PeerIds of workers worth offering jobs to, best first. */
  candidates(signal: AbortSignal): Promise<string[]>;
  /** Offer a job to a worker. */
  offer(peerId: string, offer: JobOffer, signal: AbortSignal): Promise<OfferResponse>;
  /** Send a job to a worker and wait for its answer. */
  exec(peerId: string, request: ExecRequest, signal: AbortSignal): Promise<ExecResponse>;
  /**
   * The boot attestation a worker shows in its node info, verified against its PeerId key;
   * `undefined` when it shows none; rejects when its info cannot be read or the attestation
   * does not verify. Without it, jobs that require one find no worker.
   */
  bootAttestation?(peerId: string, signal: AbortSignal): Promise<BootAttestation | undefined>;
}

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Where jobs, modules and results persist. */
  store: JobStore;
  /** The requester's key pair: signs job manifests. */
  keyPair: KeyPair;
  /** How workers are reached. */
  dispatcher: Dispatcher;
  /** Architecture asked of workers. @default {"x86_64"} */
  arch?: string;
  /** Workers tried per replica before the job fails. @default {5} */
  maxAttempts?: number;
  /** Jobs dispatched at once; more wait. @default {64} */
  maxInflight?: number;
  /** Extra time granted over a job's own limit before a worker is given up on, in ms. @default {15000} */
  graceMs?: number;
  /**
   * Times a replica backs off and offers again when workers answer `QueueFull` (until one of
   * this scheduler's jobs ends, or an exponential backoff up to 2 s), before that counts as a
   * failed attempt. @default {12}
   */
  maxBusyRetries?: number;
  /**
   * Jobs this scheduler has at one worker at once (offered or running); more wait for one of
   * them to end. Keep it below the workers' job streams per peer (8 by default: a peer that
   * opens more is dropped), with room for streams of rejected offers still being torn down.
   * @default {6}
   */
  maxPerWorker?: number;
  /**
   * How long a job looks for a usable worker (one that is found and accepts it) before it fails
   * with `no worker found`, in ms; a job may set its own. @default {30000}
   */
  workerSearchTimeoutMs?: number;
  /**
   * This node. A job pinned to its PeerId is refused at submit when it runs no jobs (the
   * dispatcher runs it in process otherwise). @default none
   */
  self?: { peerId: string; runsJobs: boolean };
  /**
   * Keeps each verified receipt the scheduler accepts (a node writes it under its state dir);
   * a failure is logged, never fails the job. @default none
   */
  keepReceipt?: (receipt: Receipt) => Promise<unknown>;
  /** Receives structured log records. */
  onLog?: (record: Record<string, unknown>) => void;
}

/** Where a job stands while the scheduler works on it (not persisted). */
export interface JobProgress {
  /**
   * `queued` (waiting for a scheduler slot), `waiting_for_workers` (no usable worker yet),
   * `offering` (asking a worker) or `executing` (a worker runs it).
   */
  state: "queued" | "waiting_for_workers" | "offering" | "executing";
  /** Why the job is still waiting: the last failed attempt or what the search found. */
  lastReason?: string;
  /** When the search for a worker gives up, ms since the epoch (while waiting). */
  searchDeadline?: number;
  /** The worker offered or running it. */
  peerId?: string;
}

/** Why a job failed, as {@linkcode JobRecord.errorKind} holds it. */
export type JobFailureKind =
  | "no_worker_found"
  | "workers_failed"
  | "not_verified"
  | "replicas_disagree"
  | "internal";

/** Options of {@linkcode Scheduler.submit}; declared in `submit_options.ts`. */
export type { SubmitOptions };

/** A verified result from one worker. */
interface _Verified {
  peerId: string;
  done: ExecDone;
}

/** A replica that got no verified result, and why. */
interface _Failed {
  failed: JobFailureKind;
}

interface _Tally {
  claimed: Set<string>;
  offered: Set<string>;
  errors: string[];
}

/**
 * Schedules jobs onto workers and keeps their verified results.
 *
 * @example
 * ```ts
 * import { Scheduler } from "./scheduler.ts";
 * import { JobStore } from "./job_store.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * using store = JobStore.open(":memory:");
 * // Nobody to run it: the search for a worker gives up after 200 ms.
 * const scheduler = new Scheduler({ store, keyPair: await generateKeyPair(), dispatcher: {
 *   candidates: () => Promise.resolve([]),
 *   offer: () => Promise.reject(new Error("unused")),
 *   exec: () => Promise.reject(new Error("unused")),
 * }, workerSearchTimeoutMs: 200 });
 * const id = await scheduler.submit(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
 * const job = await scheduler.wait(id);
 * assert.equal(job.status, "failed");
 * assert.equal(job.errorKind, "no_worker_found");
 * assert.match(job.error!, /no worker found within 200 ms/);
 * await scheduler.stop();
 * ```
 */
export class Scheduler {
  #o:
    & Required<Omit<SchedulerOptions, "onLog" | "self" | "keepReceipt">>
    & Pick<SchedulerOptions, "onLog" | "self" | "keepReceipt">;
  #progress = new Map<string, JobProgress>();
  #controller = new AbortController();
  #running = new Map<string, Promise<void>>();
  #slots: Semaphore;
  #watchers = new Map<string, Set<() => void>>();
  /** This scheduler's attempts at each worker now. */
  #atWorker = new Map<string, number>();
  /**
   * How many of this scheduler's jobs each worker took before it answered `QueueFull` (below
   * maxPerWorker): no more are offered to it, raised by one whenever it accepts that many.
   */
  #takes = new Map<string, number>();
  /** Replicas waiting for an attempt to end (every worker full or at its cap), oldest first. */
  #freed: ((peer: string) => void)[] = [];
  /** Receipt files being written (awaited by stop()). */
  #keeping = new Set<Promise<unknown>>();

  /**
   * Make a scheduler; call {@linkcode Scheduler.resume} to pick up jobs a previous run left.
   *
   * @example
   * ```ts
   * import { Scheduler } from "./scheduler.ts";
   * import { JobStore } from "./job_store.ts";
   * import { generateKeyPair } from "../runtime/ed25519.ts";
   * import assert from "node:assert/strict";
   *
   * using store = JobStore.open(":memory:");
   * const dispatcher = { candidates: () => Promise.resolve([]), offer: () => Promise.reject(),
   *   exec: () => Promise.reject() };
   * assert.throws(() => new Scheduler({ store, keyPair: {} as never, dispatcher, maxAttempts: 0 }),
   *   RangeError);
   * ```
   */
  constructor(options: SchedulerOptions) {
    const {
      store,
      keyPair,
      dispatcher,
      arch = "x86_64",
      maxAttempts = 5,
      maxInflight = 64,
      graceMs = 15_000,
      maxBusyRetries = 12,
      maxPerWorker = 6,
      workerSearchTimeoutMs = 30_000,
      self,
      keepReceipt,
      onLog,
    } = options;
    checkIntegers({ maxAttempts, maxInflight, graceMs, workerSearchTimeoutMs, maxPerWorker });
    checkIntegers({ maxBusyRetries }, { min: 0 });
    this.#o = {
      store,
      keyPair,
      dispatcher,
      arch,
      maxAttempts,
      maxInflight,
      graceMs,
      maxBusyRetries,
      maxPerWorker,
      workerSearchTimeoutMs,
      ...(self ? { self } : {}),
      ...(keepReceipt ? { keepReceipt } : {}),
      ...(onLog ? { onLog } : {}),
    };
    this.#slots = new Semaphore(maxInflight);
  }

  /**
   * Store a job and start scheduling it; resolves with its hex job id once the job is durable
   * in the store (its group commit fsynced), so an acknowledged job survives a crash.
   *
   * With `inputs` (an encoded file tree, `encodeFileTree`), the manifest names its hash as
   * `inputs`, the tree travels to each worker (once per worker while it keeps it) and runs
   * preopened as `/` under the mesh's caps (64 MiB, 1,000 entries: `meshJobFiles`); the job's
   * output tree, checked against each receipt's `outputs_hash` (replicas must agree on it), is
   * kept in the store under that hash (`store.getModule(outputs_hash)`).
   *
   * @throws {RangeError} If an option is out of range.
   */
  async submit(module: Uint8Array, options: SubmitOptions = {}): Promise<string> {
    if (!(module instanceof Uint8Array) || module.length === 0) {
      throw new TypeError("Cannot submit job: module must be a non-empty Uint8Array");
    }
    const { inputs: tree, ...rest } = options;
    const checked = checkSubmitOptions(rest);
    const { input, memoryBytes, timeoutMs, replicas, worker, boot } = checked;
    if (tree !== undefined) {
      if (!(tree instanceof Uint8Array)) {
        throw new TypeError("Cannot submit job: inputs must be an encoded file tree");
      }
      // The length first: one comparison, before a decode that walks the whole tree.
      if (tree.length > MAX_EXEC_TREE_BYTES) {
        throw new RangeError(
          `Cannot submit job: its file tree is ${tree.length} bytes, over the ${MAX_EXEC_TREE_BYTES} byte cap`,
        );
      }
      try {
        decodeFileTree(tree, meshTreeLimits(memoryBytes));
      } catch (error) {
        throw new RangeError(`Cannot submit job: ${errorMessage(error)}`, { cause: error });
      }
    }
    if (worker !== undefined) {
      try {
        peerPublicKey(worker);
      } catch (cause) {
        throw new TypeError(`Cannot submit job: worker ${errorMessage(cause)}`, { cause });
      }
      if (replicas > 1) {
        throw new RangeError(
          `Cannot submit job: a pinned worker runs one replica, got replicas ${replicas}`,
        );
      }
      const self = this.#o.self;
      if (self && worker === self.peerId && !self.runsJobs) {
        throw new RangeError(
          `Cannot submit job: worker ${worker} is this node, which runs no jobs (no worker)`,
        );
      }
    }
    const moduleHash = await sha256TagAsync(module);
    const signedPayload = {
      kind: DEFAULT_JOB_KIND.name,
      module_cid: moduleHash,
      input: await sha256TagAsync(input),
      max_duration_ms: timeoutMs,
      max_memory_bytes: memoryBytes,
      ...checked.payload,
      ...(tree !== undefined ? { inputs: await sha256TagAsync(tree) } : {}),
    };
    let manifest = await signJobManifest(signedPayload, { keyPair: this.#o.keyPair });
    let jobId = jobIdOf(manifest);
    // The same job with another boot requirement is another job: it may not take the result of
    // one that ran on a worker the requirement refuses. It gets a later created_at. (A job
    // without a requirement may take any result: no check on the common path.)
    for (let next = 1; boot !== undefined && _otherBoot(this.#o.store.get(jobId), boot); next++) {
      if (next > 16) {
        throw new RangeError(
          "Cannot submit job: the same job was submitted with 16 other boot requirements within seconds; try again later",
        );
      }
      const createdAt = new Date(Date.parse(manifest.created_at) + 1000);
      manifest = await signJobManifest(signedPayload, { keyPair: this.#o.keyPair, createdAt });
      jobId = jobIdOf(manifest);
    }
    const { cpu, searchTimeoutMs } = checked;
    const jobOptions: JobRequestOptions = {
      cpu,
      replicas,
      ...(worker ? { worker } : {}),
      ...(searchTimeoutMs !== undefined ? { searchTimeoutMs } : {}),
      ...(boot ? { boot } : {}),
    };
    this.#o.store.putModule(moduleHash, module);
    // The tree is content-addressed like a module, in the same table.
    if (tree !== undefined) this.#o.store.putModule(manifest.payload.inputs!, tree);
    // Job ids are content addresses with one-second timestamps: the same job submitted twice
    // within a second is the same job.
    const existing = this.#o.store.get(jobId);
    if (existing) {
      if (existing.status === "failed") {
        this.#o.store.deleteReceipts(jobId, "requester");
        this.#o.store.update(jobId, { status: "queued", error: null, errorKind: null });
      }
    } else {
      this.#o.store.insert({ jobId, manifest, input, options: jobOptions });
    }
    this.#start(jobId);
    await this.#o.store.durable();
    return jobId;
  }

  /** Resolves once every change to the jobs made so far is durable in the store. */
  durable(): Promise<void> {
    return this.#o.store.durable();
  }

  /** Restart every job a previous run left queued or running. */
  resume(): string[] {
    const ids = this.#o.store.unfinished();
    for (const id of ids) this.#start(id);
    return ids;
  }

  /**
   * The output tree of a finished job with files (`encodeFileTree`), as its verified receipt's
   * `outputs_hash` names it, or `undefined`.
   */
  outputTree(jobId: string): Uint8Array | undefined {
    const hash = this.#o.store.get(jobId)?.receipt?.result.metrics.extra.outputs_hash;
    return hash === undefined ? undefined : this.#o.store.getModule(hash);
  }

  /** A job as stored, or `undefined`. */
  get(jobId: string): JobRecord | undefined {
    return this.#o.store.get(jobId);
  }

  /** The verified receipts kept for a job, one per worker, in the order they were kept. */
  workers(jobId: string): { peerId: string; receipt: Receipt }[] {
    return this.#o.store.receipts(jobId).filter((r) => r.role === "requester").map((r) => ({
      peerId: r.peerId,
      receipt: r.receipt,
    }));
  }

  /** Where an unfinished job stands right now (why it waits), or `undefined`. */
  progress(jobId: string): JobProgress | undefined {
    const progress = this.#progress.get(jobId);
    return progress ? { ...progress } : undefined;
  }

  /**
   * Wait until a job is done or failed (and durable in the store), or the signal aborts; then
   * return it.
   *
   * @throws {RangeError} If the job is unknown.
   */
  async wait(jobId: string, options: { signal?: AbortSignal } = {}): Promise<JobRecord> {
    const { signal } = options;
    while (true) {
      const job = this.#o.store.get(jobId);
      if (!job) throw new RangeError(`Cannot find job ${jobId}`);
      if (job.status === "done" || job.status === "failed") {
        // An outcome is told only once it is durable.
        await this.#o.store.durable();
        return job;
      }
      if (signal?.aborted) return job;
      await new Promise<void>((resolve) => {
        const set = this.#watchers.get(jobId) ?? new Set();
        this.#watchers.set(jobId, set);
        const wake = () => {
          set.delete(wake);
          if (set.size === 0) this.#watchers.delete(jobId);
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        set.add(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  /** Stop scheduling; running attempts are cancelled (their jobs stay queued for resume). */
  async stop(): Promise<void> {
    this.#controller.abort(new Error("The scheduler stopped"));
    await Promise.allSettled(this.#running.values());
    await Promise.allSettled(this.#keeping);
    await this.#o.store.durable().catch(() => {});
    for (const set of this.#watchers.values()) for (const wake of [...set]) wake();
  }

  /** Stop scheduling. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #start(jobId: string): void {
    if (this.#running.has(jobId)) return;
    this.#progress.set(jobId, { state: "queued" });
    const run = this.#run(jobId).catch((error) => {
      if (!this.#controller.signal.aborted) {
        this.#fail(jobId, `Cannot run job: ${errorMessage(error)}`, "internal");
      }
    }).finally(async () => {
      // Nobody learns of the outcome before it is durable.
      await this.#o.store.durable().catch((error) =>
        this.#log("error", "job_store_failed", { job_id: jobId, error: errorMessage(error) })
      );
      this.#running.delete(jobId);
      this.#progress.delete(jobId);
      this.#notify(jobId);
    });
    this.#running.set(jobId, run);
  }

  async #run(jobId: string): Promise<void> {
    const signal = this.#controller.signal;
    // Stopping the scheduler aborts the wait; the job stays queued for resume.
    if (!(await this.#slots.acquire(signal).then(() => true, () => false))) return;
    try {
      if (signal.aborted) return;
      const store = this.#o.store;
      const job = store.get(jobId)!;
      // The module's bytes are read only for a worker that asks for them (NeedModule).
      const hash = job.manifest.payload.module_cid;
      const module = () => store.getModule(hash);
      const input = store.input(jobId);
      if (!store.hasModule(hash) || !input) {
        return this.#fail(jobId, "Cannot run job: its module or input is lost", "internal");
      }
      store.update(jobId, { status: "running" });
      this.#notify(jobId);
      const tally: _Tally = { claimed: new Set(), offered: new Set(), errors: [] };
      const replicas = Math.max(1, job.options.replicas);
      const results = await Promise.all(
        Array.from(
          { length: replicas },
          () => this.#runReplica(job, module, input, tally, signal),
        ),
      );
      if (signal.aborted) return;
      const { offered, errors } = tally;
      store.update(jobId, { attempts: offered.size });
      const good = results.filter((r): r is _Verified => "done" in r);
      if (good.length < replicas) {
        // The most telling failure wins: a result that did not verify, then workers that
        // failed, then no worker at all.
        const kinds = results.filter((r): r is _Failed => "failed" in r).map((r) => r.failed);
        const kind = (["not_verified", "workers_failed", "no_worker_found"] as const).find((k) =>
          kinds.includes(k)
        ) ?? "workers_failed";
        const last = errors.at(-1) ?? "no peer that runs jobs was found";
        const searchMs = job.options.searchTimeoutMs ?? this.#o.workerSearchTimeoutMs;
        return this.#fail(
          jobId,
          kind === "no_worker_found"
            ? `Cannot run job: no worker found${
              job.options.worker ? "" : ` within ${_seconds(searchMs)}`
            } (last reason: ${last})`
            : `Cannot run job: ${good.length} of ${replicas} workers returned a verified result; ${
              errors.slice(-5).join("; ")
            }`,
          kind,
        );
      }
      // Replicas agree on stdout (the output commitment) and, for a job with files, on the
      // output tree (`outputs_hash`, checked against each answer's tree in _verifyDone).
      const outcomeOf = (r: (typeof good)[number]) =>
        `${toHex(Uint8Array.from(r.done.receipt.result.output_commitment))}${
          r.done.receipt.result.metrics.extra.outputs_hash ?? ""
        }`;
      const commitments = new Set(good.map(outcomeOf));
      // Every verified receipt is kept in the job's record, agreeing or not.
      for (const r of good) store.addReceipt(jobId, r.peerId, "requester", r.done.receipt);
      if (commitments.size > 1) {
        store.update(jobId, { workerPeerId: good.map((r) => r.peerId).join(",") });
        return this.#fail(
          jobId,
          `Cannot accept job result: replicas disagree (${
            good.map((r) =>
              `${r.peerId}: ${outcomeOf(r).slice(0, 16)}${
                r.done.receipt.result.metrics.extra.outputs_hash
                  ? ` files ${r.done.receipt.result.metrics.extra.outputs_hash.slice(7, 23)}`
                  : ""
              }`
            ).join(", ")
          })`,
          "replicas_disagree",
        );
      }
      const { done } = good[0]!;
      // The output tree, verified against the receipts' outputs_hash, by that hash.
      const outputs = done.receipt.result.metrics.extra.outputs_hash;
      if (outputs !== undefined && done.files) store.putModule(outputs, done.files);
      store.update(jobId, {
        status: "done",
        workerPeerId: good.map((r) => r.peerId).join(","),
        exitCode: done.exit_code,
        completion: done.completion,
        stdout: done.stdout,
        stderr: done.stderr,
        receipt: done.receipt,
        error: done.error ?? null,
        errorKind: null,
      });
      this.#log("info", "job_done", { job_id: jobId, workers: good.map((r) => r.peerId) });
      const keep = this.#o.keepReceipt;
      if (keep) {
        // The receipts are durable in the store with the result; their files (two fsyncs
        // each) are written once the result is, so they do not hold up its WAL fsync.
        const durable = store.durable().catch(() => {});
        for (const r of good) {
          const kept = durable.then(() => keep(r.done.receipt)).catch((error) =>
            this.#log("warn", "receipt_not_kept", { job_id: jobId, error: errorMessage(error) })
          ).finally(() => this.#keeping.delete(kept));
          this.#keeping.add(kept);
        }
      }
    } finally {
      this.#slots.release();
    }
  }

  async #runReplica(
    job: JobRecord,
    module: () => Uint8Array | undefined,
    input: Uint8Array,
    tally: _Tally,
    signal: AbortSignal,
  ): Promise<_Verified | _Failed> {
    const { claimed, offered, errors } = tally;
    const pinned = job.options.worker;
    const searchMs = job.options.searchTimeoutMs ?? this.#o.workerSearchTimeoutMs;
    let attempts = 0;
    let busy = 0;
    let accepted = 0;
    let unverified = 0;
    // Since when this replica has had no worker to try (undefined while it has one).
    let searchingSince: number | undefined;
    let lastReason: string | undefined;
    const busyPeers = new Set<string>();
    // Offers lost in transit per worker (offered again, see MAX_LOST_OFFERS).
    const lost = new Map<string, number>();
    // A worker where one of our jobs just ended: worth offering to first.
    let hint: string | undefined;
    // Verified boot attestations of the workers that meet the job's boot requirement.
    const attested = new Map<string, BootAttestation>();
    const failure = (): _Failed => ({
      failed: unverified > 0 ? "not_verified" : accepted > 0 ? "workers_failed" : "no_worker_found",
    });
    while (attempts < this.#o.maxAttempts && !signal.aborted) {
      let all: string[];
      if (pinned) {
        all = [pinned];
      } else {
        // A lookup may not outlast the search: the deadline bounds it too.
        const left = searchingSince === undefined
          ? searchMs
          : Math.max(1, searchingSince + searchMs - Date.now());
        all = await this.#o.dispatcher.candidates(
          AbortSignal.any([signal, AbortSignal.timeout(left)]),
        ).catch(() => []);
        if (signal.aborted) break;
      }
      if (job.options.boot) {
        // Only workers whose signed boot attestation meets the job's requirement.
        const boot = await this.#bootQualified(job.options.boot, all, {
          claimed,
          attested,
          pinned: pinned !== undefined,
          signal,
        });
        if (signal.aborted) break;
        all = boot.peers;
        if (all.length === 0 && boot.reason) {
          lastReason = boot.reason;
          if (pinned) {
            errors.push(boot.reason);
            break;
          }
        }
      }
      const fresh = all.filter((p) => !claimed.has(p));
      const open = fresh.filter((p) => (this.#atWorker.get(p) ?? 0) < this.#capOf(p));
      if (fresh.length > 0 && open.length === 0) {
        // Every worker has as many of our jobs as it takes from one peer: wait for one to end.
        this.#setProgress(job.jobId, {
          state: "waiting_for_workers",
          lastReason: "every worker runs as many of this node's jobs as it takes",
        });
        hint = await this.#waitFreed(signal);
        continue;
      }
      const peer = (hint !== undefined && open.includes(hint) ? hint : undefined) ??
        open.find((p) => !busyPeers.has(p)) ?? open[0];
      hint = undefined;
      if (!peer) {
        // A pinned worker that was tried is not coming back; others may still appear.
        if (pinned) break;
        const now = Date.now();
        if (searchingSince === undefined) {
          searchingSince = now;
          lastReason ??= all.length > 0
            ? "every worker found was tried"
            : "no peer that runs jobs was found";
          this.#log("info", "job_waiting_for_workers", {
            job_id: job.jobId,
            reason: lastReason,
            search_timeout_ms: searchMs,
          });
        }
        const deadline = searchingSince + searchMs;
        this.#setProgress(job.jobId, {
          state: "waiting_for_workers",
          lastReason: lastReason ?? "no peer that runs jobs was found",
          searchDeadline: deadline,
        });
        if (now >= deadline) {
          if (errors.length === 0 || errors.at(-1) !== lastReason) {
            errors.push(lastReason ?? "no peer that runs jobs was found");
          }
          break;
        }
        await sleep(Math.min(1000, deadline - now), signal);
        continue;
      }
      searchingSince = undefined;
      claimed.add(peer);
      offered.add(peer);
      attempts++;
      this.#o.store.update(job.jobId, { attempts: offered.size });
      this.#atWorker.set(peer, (this.#atWorker.get(peer) ?? 0) + 1);
      let held = false;
      try {
        try {
          return await this.#attempt(peer, job, module, input, signal, attested.get(peer), () => {
            accepted++;
            held = true;
            // It took as many as it was known to take: try one more next time.
            const takes = this.#takes.get(peer);
            if (takes !== undefined && (this.#atWorker.get(peer) ?? 0) >= takes) {
              if (takes + 1 >= this.#o.maxPerWorker) this.#takes.delete(peer);
              else this.#takes.set(peer, takes + 1);
            }
          });
        } finally {
          const left = (this.#atWorker.get(peer) ?? 1) - 1;
          if (left > 0) this.#atWorker.set(peer, left);
          else this.#atWorker.delete(peer);
          // A place this job held at the worker is free: the replica waiting longest tries it.
          if (held) this.#freed.shift()?.(peer);
        }
      } catch (error) {
        if (signal.aborted) return failure();
        const text = `${peer}: ${errorMessage(error)}`;
        lastReason = text;
        if (error instanceof _BusyError && error.full) {
          // Full with this many of ours: offer it no more until one of them ends.
          this.#takes.delete(peer);
          this.#takes.set(peer, Math.max(1, this.#atWorker.get(peer) ?? 0));
          if (this.#takes.size > 4096) this.#takes.delete(this.#takes.keys().next().value!);
        }
        if (error instanceof _BusyError && busy < this.#o.maxBusyRetries) {
          // A full worker is not a failed one: try the others, and once every one was full,
          // back off and offer again (none of this counts as an attempt).
          attempts--;
          claimed.delete(peer);
          busyPeers.add(peer);
          this.#setProgress(job.jobId, { state: "waiting_for_workers", lastReason: text });
          this.#log("info", "job_backoff", { job_id: job.jobId, peer_id: peer, error: text });
          if (open.every((p) => busyPeers.has(p))) {
            busyPeers.clear();
            // Until one of this node's jobs ends somewhere (a place is free), or a backoff
            // (others' jobs fill the workers); only a backoff that runs out counts as a retry.
            const backoff = Math.min(2000, 50 * 2 ** (busy + 1)) * (0.5 + Math.random());
            hint = await this.#waitFreed(signal, backoff);
            if (hint === undefined) busy++;
          }
          continue;
        }
        if (
          error instanceof _OfferLostError &&
          (lost.get(peer) ?? 0) < MAX_LOST_OFFERS
        ) {
          // The offer was lost in transit (a relayed connection closing as a direct one
          // replaces it, a connection reset): the worker did not refuse, so offer it again
          // after a pause (not counted as an attempt), at most MAX_LOST_OFFERS times.
          const n = (lost.get(peer) ?? 0) + 1;
          lost.set(peer, n);
          attempts--;
          claimed.delete(peer);
          this.#log("info", "job_offer_lost", { job_id: job.jobId, peer_id: peer, error: text });
          await sleep(250 * n, signal).catch(() => {});
          continue;
        }
        if (error instanceof _UnverifiedError) unverified++;
        errors.push(text);
        this.#log("warn", "job_attempt_failed", { job_id: job.jobId, peer_id: peer, error: text });
        this.#o.store.update(job.jobId, { error: text, attempts: offered.size });
      }
    }
    return failure();
  }

  /**
   * The candidates whose verified boot attestation meets `boot` (kept in `attested`), and why
   * none does when none does. At most 32 not yet checked are asked per round.
   */
  async #bootQualified(
    boot: BootRequirement,
    all: string[],
    o: {
      claimed: Set<string>;
      attested: Map<string, BootAttestation>;
      pinned: boolean;
      signal: AbortSignal;
    },
  ): Promise<{ peers: string[]; reason?: string }> {
    const { claimed, attested, signal } = o;
    const ask = this.#o.dispatcher.bootAttestation?.bind(this.#o.dispatcher);
    const wanted = describeBootRequirement(boot);
    const problems: string[] = [];
    const unchecked = all.filter((p) => !attested.has(p) && !claimed.has(p)).slice(0, 32);
    await Promise.all(unchecked.map(async (peer) => {
      let problem: string | undefined;
      try {
        if (!ask) throw new Error("this node cannot read workers' node info");
        const attestation = await ask(peer, AbortSignal.any([signal, AbortSignal.timeout(10_000)]));
        problem = bootRequirementProblem(attestation, boot);
        if (problem === undefined) attested.set(peer, attestation!);
      } catch (error) {
        problem = errorMessage(error);
      }
      if (problem !== undefined) problems.push(`${peer}: ${problem}`);
    }));
    const peers = all.filter((p) => attested.has(p));
    if (peers.length > 0 || all.length === 0) return { peers };
    return {
      peers,
      reason: o.pinned
        ? `worker ${all[0]} does not show ${wanted}: ${
          problems[0]?.replace(/^[^:]*: /, "") ?? "it was tried"
        }`
        : `no worker shows ${wanted}`,
    };
  }

  /** How many of this scheduler's jobs `peer` is offered at once. */
  #capOf(peer: string): number {
    return Math.min(this.#o.maxPerWorker, this.#takes.get(peer) ?? this.#o.maxPerWorker);
  }

  /**
   * Wait until one of this scheduler's attempts ends (resolves with its worker), `timeoutMs`
   * passes or `signal` aborts (resolves with `undefined`).
   */
  #waitFreed(signal: AbortSignal, timeoutMs?: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (peer: string | undefined) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        const index = this.#freed.indexOf(wake);
        if (index >= 0) this.#freed.splice(index, 1);
        resolve(peer);
      };
      const wake = (peer: string) => done(peer);
      const onAbort = () => done(undefined);
      if (signal.aborted) return resolve(undefined);
      this.#freed.push(wake);
      signal.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(() => done(undefined), timeoutMs);
    });
  }

  async #attempt(
    peer: string,
    job: JobRecord,
    module: () => Uint8Array | undefined,
    input: Uint8Array,
    parent: AbortSignal,
    boot: BootAttestation | undefined,
    onAccepted: () => void,
  ): Promise<_Verified> {
    const { manifest } = job;
    const publicKey = peerPublicKey(peer);
    this.#setProgress(job.jobId, { state: "offering", peerId: peer });
    const offerSignal = AbortSignal.any([parent, AbortSignal.timeout(10_000)]);
    const answer = await this.#o.dispatcher.offer(peer, {
      job_id: job.jobId,
      nonce: toHex(crypto.getRandomValues(new Uint8Array(16))),
      module_hash: manifest.payload.module_cid,
      requirements: {
        cpu_cores: job.options.cpu,
        arch: this.#o.arch,
        ...jobKind(manifest.payload.kind).requirements(manifest.payload),
      },
    }, offerSignal).catch((cause) => {
      // No answer at all because the connection or stream went away (not a timeout): the
      // worker did not refuse.
      if (offerSignal.aborted) throw cause;
      throw new _OfferLostError(errorMessage(cause), { cause });
    });
    if ("Rejected" in answer) {
      const message = `Offer rejected: ${describeReason(answer.Rejected.reason)}`;
      const { reason } = answer.Rejected;
      if (reason === "QueueFull") throw new _BusyError(message);
      // The worker still holds a place for this very job id: an offer of this node's before it
      // restarted (a resumed job). It expires or runs soon: offer again, as after QueueFull.
      if (
        typeof reason === "object" && "InvalidRequest" in reason &&
        reason.InvalidRequest.details === "job already offered"
      ) {
        throw new _BusyError(message, { full: false });
      }
      throw new Error(message);
    }
    onAccepted();
    this.#setProgress(job.jobId, { state: "executing", peerId: peer });
    const signal = AbortSignal.any([
      parent,
      AbortSignal.timeout(manifest.payload.max_duration_ms + this.#o.graceMs),
    ]);
    const treeHash = manifest.payload.inputs;
    const tree = treeHash === undefined ? undefined : this.#o.store.getModule(treeHash);
    if (treeHash !== undefined && !tree) {
      throw new Error("Cannot send the input tree: it is lost from the job store");
    }
    const inputs = tree ? { inputs: tree } : {};
    let response = await this.#o.dispatcher.exec(peer, { manifest, input, ...inputs }, signal);
    if ("NeedModule" in response) {
      const bytes = module();
      if (!bytes) throw new Error("Cannot send the module: it is lost from the job store");
      response = await this.#o.dispatcher.exec(
        peer,
        { manifest, input, module: bytes, ...inputs },
        signal,
      );
    }
    if ("NeedModule" in response) throw new Error("Worker asked for the module twice");
    if ("Rejected" in response) {
      const message = `Job rejected: ${describeReason(response.Rejected.reason)}`;
      throw response.Rejected.reason === "QueueFull" ? new _BusyError(message) : new Error(message);
    }
    const done = response.Done;
    try {
      await _verifyDone(done, { publicKey, jobId: job.jobId, manifest });
      if (boot) _checkBootExtra(done, boot);
    } catch (cause) {
      throw new _UnverifiedError(errorMessage(cause), { cause });
    }
    return { peerId: peer, done };
  }

  #setProgress(jobId: string, progress: JobProgress): void {
    if (this.#progress.has(jobId)) this.#progress.set(jobId, progress);
  }

  #fail(jobId: string, error: string, kind: JobFailureKind): void {
    this.#o.store.update(jobId, { status: "failed", error, errorKind: kind });
    this.#progress.delete(jobId);
    this.#log("warn", "job_failed", { job_id: jobId, kind, error });
    // Watchers learn of it once it is durable (the end of #start's run waits for that too).
    void this.#o.store.durable().catch(() => {}).then(() => this.#notify(jobId));
  }

  #notify(jobId: string): void {
    for (const wake of [...(this.#watchers.get(jobId) ?? [])]) wake();
  }

  #log(level: string, event: string, fields: Record<string, unknown>): void {
    try {
      this.#o.onLog?.({ level, event, ...fields });
    } catch {
      // A failing log sink must not break scheduling.
    }
  }
}

/**
 * Check a worker's answer: the receipt is signed by the worker's key, names our job id, job
 * spec, module and input hashes and the output we got, and agrees with the reported exit code
 * and completion. The module and input are checked by their hashes in the manifest, which this
 * node computed from the same stored bytes at submit: no need to hash them again per job.
 */
async function _verifyDone(
  done: ExecDone,
  expected: { publicKey: Uint8Array; jobId: string; manifest: JobManifest },
): Promise<void> {
  const receipt = await verifyReceipt(done.receipt, {
    publicKey: expected.publicKey,
    jobId: expected.jobId,
    output: done.stdout,
  });
  const { module_cid, input } = expected.manifest.payload;
  const signed = receipt.result.metrics.extra;
  if (signed.module_hash !== module_cid) {
    throw new ReceiptMismatchError("module_hash", String(signed.module_hash), module_cid);
  }
  if (signed.input_hash !== input) {
    throw new ReceiptMismatchError("input_hash", String(signed.input_hash), input);
  }
  if (done.job_id !== expected.jobId) {
    throw new TypeError(`Cannot accept result: it names job ${done.job_id}`);
  }
  const spec = toHex(jobSpecHash(expected.manifest.payload));
  if (toHex(Uint8Array.from(receipt.result.job_spec_hash)) !== spec) {
    throw new TypeError("Cannot accept result: the receipt's job_spec_hash is not this job's");
  }
  if (receipt.result.completion !== done.completion) {
    throw new TypeError("Cannot accept result: completion differs from the receipt's");
  }
  const signedExit = receipt.result.metrics.extra.exit_code;
  if ((signedExit ?? null) !== (done.exit_code === null ? null : String(done.exit_code))) {
    throw new TypeError("Cannot accept result: exit code differs from the receipt's");
  }
  const stderrHash = receipt.result.metrics.extra.stderr_hash;
  if (stderrHash !== undefined && stderrHash !== await sha256TagAsync(done.stderr)) {
    throw new TypeError("Cannot accept result: stderr differs from the receipt's");
  }
  // The job spec hash already binds these; the worker must also say it ran with them.
  const payload = expected.manifest.payload;
  const extra = receipt.result.metrics.extra;
  if (extra.args_hash !== sha256Tag(canonicalJson(payload.args ?? []))) {
    throw new TypeError("Cannot accept result: the receipt's args_hash is not this job's");
  }
  if (extra.env_hash !== sha256Tag(canonicalJson(payload.env ?? {}))) {
    throw new TypeError("Cannot accept result: the receipt's env_hash is not this job's");
  }
  // Files: the receipt names the tree the job was given and the one it left; the answer's tree
  // must be that one (a tampered tree is refused here, before anything of it is kept).
  if (extra.inputs_hash !== payload.inputs) {
    throw new TypeError("Cannot accept result: the receipt's inputs_hash is not this job's");
  }
  const treeHash = done.files === undefined ? undefined : await sha256TagAsync(done.files);
  if (treeHash !== extra.outputs_hash) {
    throw new TypeError(
      `Cannot accept result: the output tree does not match the receipt's outputs_hash: expected ${
        extra.outputs_hash ?? "none"
      }, got ${treeHash ?? "none"}`,
    );
  }
  if (payload.fuel !== undefined && extra.fuel_limit !== payload.fuel) {
    throw new TypeError("Cannot accept result: the receipt's fuel_limit is not this job's");
  }
}

/** Whether a stored job (if any) has another boot requirement than a new submission's. */
function _otherBoot(stored: JobRecord | undefined, wanted: BootRequirement | undefined): boolean {
  if (stored === undefined) return false;
  const boot = stored.options.boot;
  return boot?.signer !== wanted?.signer || boot?.minSequence !== wanted?.minSequence;
}

/** A worker picked for its boot attestation must sign the same boot fields into its receipt. */
function _checkBootExtra(done: ExecDone, attestation: BootAttestation): void {
  const extra = done.receipt.result.metrics.extra;
  for (const [field, value] of Object.entries(bootReceiptExtra(attestation))) {
    if (extra[field] !== value) {
      throw new TypeError(
        `Cannot accept result: the receipt's ${field} is ${
          extra[field] ?? "missing"
        }, not the worker's boot attestation's ${value}`,
      );
    }
  }
}

function _seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** A worker's answer did not verify. */
class _UnverifiedError extends Error {
  override name = "UnverifiedError";
}

/** How many times one replica offers a job again to a worker after an offer lost in transit. */
const MAX_LOST_OFFERS = 2;

/** An offer got no answer: the stream or connection failed before the worker answered. */
class _OfferLostError extends Error {
  override name = "OfferLostError";
}

/** A worker answered `QueueFull`. */
class _BusyError extends Error {
  override name = "BusyError";
  /** Whether the worker is full (rather than holding this job's place from before). */
  readonly full: boolean;
  constructor(message: string, options: ErrorOptions & { full?: boolean } = {}) {
    super(message, options);
    this.full = options.full ?? true;
  }
}

/**
 * A {@linkcode Dispatcher} that reaches workers in this process, each under a PeerId whose key
 * signs its receipts; messages still go through the wire codecs. For tests and examples.
 *
 * @example
 * ```ts
 * import { localDispatcher, Scheduler } from "./scheduler.ts";
 * import { JobStore } from "./job_store.ts";
 * import { JobWorker } from "./job_worker.ts";
 * import { WorkerPolicy } from "./worker_policy.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import { toHex } from "../runtime/digest.ts";
 * import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
 * import { peerIdFromPrivateKey } from "@libp2p/peer-id";
 * import assert from "node:assert/strict";
 *
 * const workerKeys = await generateKeyPair();
 * const peerId = peerIdFromPrivateKey(
 *   await generateKeyPairFromSeed("Ed25519", workerKeys.secretKey),
 * ).toString();
 * const worker = new JobWorker({ keyPair: workerKeys, peerId, sandbox: "worker",
 *   policy: new WorkerPolicy({ arch: "x86_64" }) });
 * const requester = await generateKeyPair();
 * using store = JobStore.open(":memory:");
 * const scheduler = new Scheduler({ store, keyPair: requester,
 *   dispatcher: localDispatcher({ [peerId]: worker }, toHex(requester.publicKey)) });
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const id = await scheduler.submit(module, { input: new TextEncoder().encode("abc") });
 * const job = await scheduler.wait(id);
 * assert.equal(new TextDecoder().decode(job.stdout), "cba");
 * assert.equal(job.workerPeerId, peerId);
 * await scheduler.stop();
 * worker.stop();
 * ```
 */
export function localDispatcher(
  workers: Record<string, JobWorker>,
  requesterKey: string,
): Dispatcher {
  const find = (peerId: string) => {
    const worker = workers[peerId];
    if (!worker) throw new Error(`Cannot reach peer ${peerId}`);
    return worker;
  };
  return {
    candidates: () => Promise.resolve(Object.keys(workers)),
    offer: (peerId, offer) =>
      Promise.resolve(
        parseOfferResponse(
          encodeOfferMessage(
            find(peerId).decideOffer(parseJobOffer(encodeOfferMessage(offer)), requesterKey),
          ),
        ),
      ),
    exec: async (peerId, request, signal) =>
      parseExecResponse(
        encodeExecResponse(
          await find(peerId).execute(
            parseExecRequest(encodeExecRequest(request)),
            requesterKey,
            { signal },
          ),
        ),
      ),
  };
}
