/**
 * What a worker accepts: operator ceilings on limits, who may submit (allow-list or open), how
 * many jobs run at once and how many wait.
 *
 * @module
 */
import type { JobPayload } from "../runtime/job_manifest.ts";
import { DEFAULT_JOB_KIND } from "../runtime/job_kinds.ts";
import type { JobOffer, OfferResponse, RejectReason } from "./job_protocol.ts";
import { Semaphore } from "../util/semaphore.ts";

/** The WASM runtimes a worker runs (`wasm_runtime` in offers): the default job kind's. */
export const SUPPORTED_RUNTIMES: readonly string[] = DEFAULT_JOB_KIND.runtimes;

/** Options of {@linkcode WorkerPolicy}. */
export interface WorkerPolicyOptions {
  /** This worker's architecture. @default {"x86_64"} */
  arch?: string;
  /** Ceiling on a job's linear memory, in bytes. @default {268435456} (256 MiB) */
  maxMemoryBytes?: number;
  /** Ceiling on a job's wall-clock time, in ms. @default {30000} */
  maxDurationMs?: number;
  /** Most CPU cores a job may ask for. @default {1} */
  maxCpuCores?: number;
  /**
   * Requester keys (hex Ed25519 public keys) allowed to submit, or `"open"` for anyone.
   * @default {"open"}
   */
  allowedRequesters?: "open" | string[];
  /** Jobs running at once. @default {2} */
  maxConcurrentJobs?: number;
  /** Jobs waiting for a slot (accepted offers included); more gives `QueueFull`. @default {16} */
  maxQueuedJobs?: number;
  /** How long an accepted offer holds its place without its job arriving, in ms. @default {30000} */
  reservationMs?: number;
  /**
   * Accepted offers one requester may hold at once (so one peer's flood of offers cannot
   * take every place); past it, `QueueFull`. @default {4}
   */
  maxReservationsPerRequester?: number;
}

/** Thrown by {@linkcode WorkerPolicy.run} when no place is left. */
export class QueueFullError extends Error {
  /**
   * Make the error.
   *
   * @example
   * ```ts
   * import { QueueFullError } from "./worker_policy.ts";
   * import assert from "node:assert/strict";
   * assert.equal(new QueueFullError().name, "QueueFullError");
   * ```
   */
  constructor(message = "Cannot queue job: the queue is full", options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueFullError";
  }
}

/**
 * A worker's admission policy and job slots.
 *
 * @example
 * ```ts
 * import { WorkerPolicy } from "./worker_policy.ts";
 * import assert from "node:assert/strict";
 *
 * const policy = new WorkerPolicy({ maxMemoryBytes: 1 << 20, maxDurationMs: 1000 });
 * assert.deepEqual(policy.clamp({ kind: "wasm", module_cid: "", input: "",
 *   max_duration_ms: 60_000, max_memory_bytes: 1 << 30 }), { memoryBytes: 1 << 20, timeoutMs: 1000 });
 * ```
 */
export class WorkerPolicy {
  #o: Required<WorkerPolicyOptions>;
  #slots: Semaphore;
  #reserved = new Map<string, { requester: string; timer: ReturnType<typeof setTimeout> }>();

  /**
   * Make a policy; options are validated.
   *
   * @example
   * ```ts
   * import { WorkerPolicy } from "./worker_policy.ts";
   * import assert from "node:assert/strict";
   * assert.throws(() => new WorkerPolicy({ maxConcurrentJobs: 0 }), RangeError);
   * ```
   */
  constructor(options: WorkerPolicyOptions = {}) {
    const {
      arch = "x86_64",
      maxMemoryBytes = 256 * 2 ** 20,
      maxDurationMs = 30_000,
      maxCpuCores = 1,
      allowedRequesters = "open",
      maxConcurrentJobs = 2,
      maxQueuedJobs = 16,
      reservationMs = 30_000,
      maxReservationsPerRequester = 4,
    } = options;
    for (
      const [name, value] of Object.entries({
        maxMemoryBytes,
        maxDurationMs,
        maxCpuCores,
        maxConcurrentJobs,
        reservationMs,
        maxReservationsPerRequester,
      })
    ) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`Cannot use ${name} ${value}: expected a positive integer`);
      }
    }
    if (!Number.isSafeInteger(maxQueuedJobs) || maxQueuedJobs < 0) {
      throw new RangeError(`Cannot use maxQueuedJobs ${maxQueuedJobs}: expected an integer >= 0`);
    }
    if (allowedRequesters !== "open") {
      if (!Array.isArray(allowedRequesters)) {
        throw new TypeError('Cannot use allowedRequesters: expected "open" or a list of keys');
      }
      for (const key of allowedRequesters) {
        if (typeof key !== "string" || !/^[0-9a-f]{64}$/.test(key)) {
          throw new TypeError(`Cannot use requester key '${key}': expected 64 lowercase hex`);
        }
      }
    }
    this.#o = {
      arch,
      maxMemoryBytes,
      maxDurationMs,
      maxCpuCores,
      allowedRequesters,
      maxConcurrentJobs,
      maxQueuedJobs,
      reservationMs,
      maxReservationsPerRequester,
    };
    this.#slots = new Semaphore(maxConcurrentJobs);
  }

  /** Jobs running now. */
  get running(): number {
    return this.#slots.held;
  }

  /** Places taken in the queue: waiting jobs and accepted offers whose job has not come. */
  get queued(): number {
    return this.#slots.waiting + this.#reserved.size;
  }

  /** True if `requesterKey` (hex) may submit jobs. */
  allows(requesterKey: string): boolean {
    return this.#o.allowedRequesters === "open" || this.#o.allowedRequesters.includes(requesterKey);
  }

  /**
   * Decide on an offer from the requester with key `requesterKey` (hex); an accepted offer
   * holds a place until its job arrives or the reservation times out.
   */
  decideOffer(offer: JobOffer, requesterKey: string, nodePeerId: string): OfferResponse {
    const reject = (reason: RejectReason): OfferResponse => ({
      Rejected: { job_id: offer.job_id, reason },
    });
    const r = offer.requirements;
    if (!this.allows(requesterKey)) {
      return reject({ InvalidRequest: { details: "requester is not on the allow-list" } });
    }
    if (r.arch !== this.#o.arch && r.arch !== "any") {
      return reject({ ArchMismatch: { required: r.arch, available: this.#o.arch } });
    }
    if (!SUPPORTED_RUNTIMES.includes(r.wasm_runtime)) {
      return reject({ RuntimeNotSupported: { required: r.wasm_runtime } });
    }
    if (r.cpu_cores > this.#o.maxCpuCores) {
      return reject({
        InsufficientResources: { missing: `cpu_cores ${r.cpu_cores} > ${this.#o.maxCpuCores}` },
      });
    }
    if (r.memory_mb * 2 ** 20 > this.#o.maxMemoryBytes) {
      return reject({
        InsufficientResources: {
          missing: `memory_mb ${r.memory_mb} > ${Math.floor(this.#o.maxMemoryBytes / 2 ** 20)}`,
        },
      });
    }
    if (this.#reserved.has(offer.job_id)) {
      return reject({ InvalidRequest: { details: "job already offered" } });
    }
    if (!this.#hasPlace()) return reject("QueueFull");
    let held = 0;
    for (const r of this.#reserved.values()) if (r.requester === requesterKey) held++;
    if (held >= this.#o.maxReservationsPerRequester) return reject("QueueFull");
    const timer = setTimeout(() => this.#reserved.delete(offer.job_id), this.#o.reservationMs);
    this.#reserved.set(offer.job_id, { requester: requesterKey, timer });
    const ahead = Math.max(0, this.#slots.held + this.queued - this.#o.maxConcurrentJobs);
    return {
      Accepted: {
        job_id: offer.job_id,
        estimated_start: Math.floor(Date.now() / 1000) +
          Math.ceil(ahead * this.#o.maxDurationMs / 1000 / this.#o.maxConcurrentJobs),
        node_peer_id: nodePeerId,
      },
    };
  }

  /** Limits for a job: what it asks for, clamped to the operator's ceilings. */
  clamp(payload: JobPayload): { memoryBytes: number; timeoutMs: number } {
    return {
      memoryBytes: Math.max(65_536, Math.min(payload.max_memory_bytes, this.#o.maxMemoryBytes)),
      timeoutMs: Math.max(1, Math.min(payload.max_duration_ms, this.#o.maxDurationMs)),
    };
  }

  /**
   * Run `job` in a slot: at once if one is free, else after waiting in the bounded queue.
   * A job whose offer was accepted uses the place it reserved.
   *
   * @throws {QueueFullError} If no slot and no place in the queue is left.
   */
  async run<T>(jobId: string, job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    const reservation = this.#reserved.get(jobId);
    if (reservation) {
      clearTimeout(reservation.timer);
      this.#reserved.delete(jobId);
    } else if (!this.#hasPlace()) {
      throw new QueueFullError();
    }
    // A slot that ends is handed over to the next waiting job: no newcomer overtakes it.
    return await this.#slots.use(job, signal);
  }

  /** Drop every reservation (and its timer). */
  clear(): void {
    for (const { timer } of this.#reserved.values()) clearTimeout(timer);
    this.#reserved.clear();
  }

  #hasPlace(): boolean {
    const free = this.#o.maxConcurrentJobs - this.#slots.held;
    return this.queued < Math.max(0, free) + this.#o.maxQueuedJobs;
  }
}
