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
import { checkIntegers } from "../util/check_integers.ts";

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
  /**
   * How long an accepted offer holds its place until its job stream starts, in ms (and again
   * after a stream that ended without running the job, such as one answered `NeedModule`).
   * @default {5000}
   */
  reservationMs?: number;
  /**
   * Accepted offers one requester may hold at once (so one peer's flood of offers cannot
   * take every place); past it, `QueueFull`. @default {4}
   */
  maxReservationsPerRequester?: number;
  /**
   * Accepted offers held at once by all requesters. When they are all taken, an offer from a
   * requester holding fewer than the largest holder takes the oldest unclaimed place of that
   * holder, so throwaway identities that reserve and never send a job cannot lock out an honest
   * requester. @default {half of maxConcurrentJobs + maxQueuedJobs, at least 1}
   */
  maxReservations?: number;
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
  #reserved = new Map<string, _Reservation>();

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
      reservationMs = 5_000,
      maxReservationsPerRequester = 4,
      maxReservations = Math.max(1, Math.floor((maxConcurrentJobs + maxQueuedJobs) / 2)),
    } = options;
    checkIntegers({
      maxMemoryBytes,
      maxDurationMs,
      maxCpuCores,
      maxConcurrentJobs,
      reservationMs,
      maxReservationsPerRequester,
      maxReservations,
    });
    checkIntegers({ maxQueuedJobs }, { min: 0 });
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
      maxReservations,
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
    const held = new Map<string, number>();
    for (const r of this.#reserved.values()) {
      held.set(r.requester, (held.get(r.requester) ?? 0) + 1);
    }
    const mine = held.get(requesterKey) ?? 0;
    if (mine >= this.#o.maxReservationsPerRequester) return reject("QueueFull");
    if (this.#reserved.size >= this.#o.maxReservations && !this.#evictFor(mine, held)) {
      return reject("QueueFull");
    }
    if (!this.#hasPlace()) return reject("QueueFull");
    this.#reserved.set(offer.job_id, { requester: requesterKey, timer: undefined });
    this.#arm(offer.job_id);
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
      if (reservation.timer !== undefined) clearTimeout(reservation.timer);
      this.#reserved.delete(jobId);
    } else if (!this.#hasPlace()) {
      throw new QueueFullError();
    }
    // A slot that ends is handed over to the next waiting job: no newcomer overtakes it.
    return await this.#slots.use(job, signal);
  }

  /**
   * Claim the place an accepted offer reserved for `jobId`, when its job stream starts: true if
   * `requesterKey` holds an unclaimed reservation for it. A claimed place does not expire and
   * is never taken by another requester; {@linkcode WorkerPolicy.run} uses it, or
   * {@linkcode WorkerPolicy.release} gives it back.
   */
  claim(jobId: string, requesterKey: string): boolean {
    const reservation = this.#reserved.get(jobId);
    if (!reservation || reservation.requester !== requesterKey) return false;
    if (reservation.timer === undefined) return false; // Claimed already: one stream at a time.
    clearTimeout(reservation.timer);
    reservation.timer = undefined;
    return true;
  }

  /**
   * Give back a claimed place whose job did not run (the stream ended first): it is reserved
   * again for `reservationMs`. Nothing happens once the job ran.
   */
  release(jobId: string): void {
    const reservation = this.#reserved.get(jobId);
    if (reservation && reservation.timer === undefined) this.#arm(jobId);
  }

  /** Accepted offers held now (claimed or not). */
  get reservations(): number {
    return this.#reserved.size;
  }

  /** Drop every reservation (and its timer). */
  clear(): void {
    for (const { timer } of this.#reserved.values()) if (timer !== undefined) clearTimeout(timer);
    this.#reserved.clear();
  }

  #arm(jobId: string): void {
    const reservation = this.#reserved.get(jobId);
    if (!reservation) return;
    reservation.timer = setTimeout(() => this.#reserved.delete(jobId), this.#o.reservationMs);
  }

  /**
   * Every reservation is taken: free the oldest unclaimed one of the largest holder, if that
   * holder holds more than a requester now holding `mine`.
   */
  #evictFor(mine: number, held: Map<string, number>): boolean {
    const most = Math.max(...held.values());
    if (most <= mine) return false;
    for (const [jobId, r] of this.#reserved) {
      if (r.timer === undefined || held.get(r.requester) !== most) continue;
      clearTimeout(r.timer);
      this.#reserved.delete(jobId);
      return true;
    }
    return false;
  }

  #hasPlace(): boolean {
    const free = this.#o.maxConcurrentJobs - this.#slots.held;
    return this.queued < Math.max(0, free) + this.#o.maxQueuedJobs;
  }
}

interface _Reservation {
  requester: string;
  /** Expiry of an unclaimed place; undefined once its job stream claimed it. */
  timer: ReturnType<typeof setTimeout> | undefined;
}
