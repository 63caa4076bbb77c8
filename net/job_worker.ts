/**
 * The worker side of remote execution: answers job offers and runs jobs for peers in the
 * sandbox, returning output and a signed receipt.
 *
 * @module
 */
import { peerPublicKey } from "./peer_key.ts";
import type { Connection, Stream } from "@libp2p/interface";
import { sha256TagAsync, toHex } from "../runtime/digest.ts";
import type { KeyPair } from "../runtime/ed25519.ts";
import { verifyJobManifest } from "../runtime/job_manifest.ts";
import { DEFAULT_LIMITS, runSignedJob } from "../runtime/run_signed_job.ts";
import type { Receipt } from "../runtime/receipt.ts";
import type { SandboxPool } from "../runtime/sandbox_pool.ts";
import {
  JOB_OFFER_PROTOCOL,
  type JobOffer,
  NonceGuard,
  type OfferResponse,
  serveJobOffer,
} from "./job_protocol.ts";
import {
  type ExecContext,
  type ExecRequest,
  type ExecResponse,
  JOB_EXEC_PROTOCOL,
  MAX_EXEC_OUTPUT_BYTES,
  serveJobExec,
} from "./job_exec_protocol.ts";
import { QueueFullError, type WorkerPolicy } from "./worker_policy.ts";
import type { JobStore } from "./job_store.ts";
import { errorMessage } from "../util/error_message.ts";

/**
 * The value of the test-only switch that makes a worker corrupt the output it returns (one
 * flipped byte) while signing the true output, to prove requesters reject such results. The
 * `start` CLI reads it from `PLASM_TEST_ONLY_TAMPER_RESULTS`, which its own task never grants.
 */
export const TAMPER_RESULTS_VALUE = "flip-output-byte";

/** Options of {@linkcode JobWorker}. */
export interface JobWorkerOptions {
  /** The node's key pair (the one its PeerId derives from): signs receipts. */
  keyPair: KeyPair;
  /** The node's PeerId (base58), reported in `Accepted`. */
  peerId: string;
  /** Admission policy and slots. */
  policy: WorkerPolicy;
  /** Where signed receipts are recorded. @default none */
  store?: JobStore;
  /**
   * Keeps each receipt this worker signs (a node writes it under its state dir); a failure is
   * logged, never fails the job. @default none
   */
  keepReceipt?: (receipt: Receipt) => Promise<unknown>;
  /** Sandbox kind; `"process"` on a node. @default {"process"} */
  sandbox?: "worker" | "process";
  /** Pre-started sandbox processes (with `sandbox: "process"`). @default none */
  pool?: SandboxPool;
  /** Modules kept by hash (most recently used first), in bytes. @default {268435456} */
  moduleCacheBytes?: number;
  /** Test only: corrupt returned output (see {@linkcode TAMPER_RESULTS_VALUE}). @default {false} */
  tamperResultsForTests?: boolean;
  /** Receives structured log records. */
  onLog?: (record: Record<string, unknown>) => void;
}

/**
 * Runs jobs for peers. {@linkcode JobWorker.attach} serves its protocols on a libp2p node.
 *
 * @example
 * ```ts
 * import { JobWorker } from "./job_worker.ts";
 * import { WorkerPolicy } from "./worker_policy.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keyPair = await generateKeyPair();
 * const worker = new JobWorker({ keyPair, peerId: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
 *   policy: new WorkerPolicy({ arch: "x86_64" }) });
 * const answer = worker.decideOffer({ job_id: "ab".repeat(32), nonce: "nonce-1234",
 *   module_hash: `sha256:${"cd".repeat(32)}`, requirements: { cpu_cores: 1, memory_mb: 16,
 *   timeout_seconds: 1, arch: "riscv64", wasm_runtime: "wasi-preview1" } }, "ef".repeat(32));
 * assert.deepEqual(answer, { Rejected: { job_id: "ab".repeat(32),
 *   reason: { ArchMismatch: { required: "riscv64", available: "x86_64" } } } });
 * worker.stop();
 * ```
 */
export class JobWorker {
  #o: JobWorkerOptions;
  #nonces = new NonceGuard();
  #modules = new Map<string, Uint8Array>();
  #moduleBytes = 0;
  #inflightOffers = 0;
  #controller = new AbortController();

  /**
   * Make a worker; nothing is served until {@linkcode JobWorker.attach}.
   *
   * @example
   * ```ts
   * import { JobWorker } from "./job_worker.ts";
   * import { WorkerPolicy } from "./worker_policy.ts";
   * import { generateKeyPair } from "../runtime/ed25519.ts";
   *
   * const w = new JobWorker({ keyPair: await generateKeyPair(), peerId: "x", policy: new WorkerPolicy() });
   * w.stop();
   * ```
   */
  constructor(options: JobWorkerOptions) {
    this.#o = options;
    if (options.tamperResultsForTests) {
      this.#log("warn", "tamper_results_enabled", {
        warning: "TEST ONLY: this worker corrupts the output it returns",
      });
    }
  }

  /** Answer an offer from the requester with raw key `requesterKey` (hex). */
  decideOffer(offer: JobOffer, requesterKey: string): OfferResponse {
    if (!this.#nonces.check(offer.nonce)) {
      return {
        Rejected: {
          job_id: offer.job_id,
          reason: { InvalidRequest: { details: "nonce replayed" } },
        },
      };
    }
    return this.#o.policy.decideOffer(offer, requesterKey, this.#o.peerId);
  }

  /** Run a job for the requester with raw key `requesterKey` (hex). */
  async execute(
    request: ExecRequest,
    requesterKey: string,
    context: ExecContext,
  ): Promise<ExecResponse> {
    const { manifest } = request;
    const reject = (jobId: string, details: string): ExecResponse => ({
      Rejected: { job_id: jobId, reason: { InvalidRequest: { details } } },
    });
    if (manifest.signer_pubkey !== requesterKey) {
      return reject("", "the manifest is not signed by the requesting peer");
    }
    if (!this.#o.policy.allows(requesterKey)) {
      return reject("", "requester is not on the allow-list");
    }
    let jobId: string;
    try {
      jobId = await verifyJobManifest(manifest);
    } catch (error) {
      return reject("", errorMessage(error));
    }
    const hash = manifest.payload.module_cid;
    let module = request.module;
    if (module) {
      if (await sha256TagAsync(module) !== hash) {
        return reject(jobId, `module bytes do not hash to ${hash}`);
      }
      this.#remember(hash, module);
    } else {
      module = this.#modules.get(hash);
      if (!module) return { NeedModule: { job_id: jobId } };
      this.#remember(hash, module);
    }
    if (await sha256TagAsync(request.input) !== manifest.payload.input) {
      return reject(jobId, `input bytes do not hash to ${manifest.payload.input}`);
    }
    const payload = manifest.payload;
    const limits = {
      ...this.#o.policy.clamp(payload),
      // Enforce what the requester signed: output cap (never over what one answer carries),
      // arguments, environment and fuel.
      maxOutputBytes: Math.max(
        1,
        Math.min(payload.max_output_bytes ?? DEFAULT_LIMITS.maxOutputBytes, MAX_EXEC_OUTPUT_BYTES),
      ),
    };
    this.#log("info", "job_accepted", {
      job_id: jobId,
      ...limits,
      ...(payload.fuel !== undefined ? { fuel: payload.fuel } : {}),
    });
    const signal = AbortSignal.any([context.signal, this.#controller.signal]);
    const job = module;
    let signed;
    try {
      signed = await this.#o.policy.run(
        jobId,
        () => {
          this.#log("info", "job_started", { job_id: jobId });
          return runSignedJob(job, {
            keyPair: this.#o.keyPair,
            manifest,
            input: request.input,
            ...limits,
            args: payload.args ?? [],
            env: payload.env ?? {},
            ...(payload.fuel !== undefined ? { fuel: BigInt(payload.fuel) } : {}),
            sandbox: this.#o.sandbox ?? "process",
            ...(this.#o.pool ? { pool: this.#o.pool } : {}),
            signal,
          });
        },
        signal,
      );
    } catch (error) {
      if (error instanceof QueueFullError) {
        return { Rejected: { job_id: jobId, reason: "QueueFull" } };
      }
      // Arguments or environment WASI cannot carry, an out-of-range limit: the request's fault.
      if (error instanceof TypeError || error instanceof RangeError) {
        return reject(jobId, errorMessage(error));
      }
      throw error;
    }
    const { outcome, receipt } = signed;
    this.#o.store?.addReceipt(jobId, this.#o.peerId, "worker", receipt);
    if (this.#o.keepReceipt) {
      await this.#o.keepReceipt(receipt).catch((error) =>
        this.#log("warn", "receipt_not_kept", { job_id: jobId, error: errorMessage(error) })
      );
    }
    this.#log("info", "job_ran", {
      job_id: jobId,
      completion: outcome.completion,
      exit_code: outcome.exitCode,
      duration_ms: Math.round(outcome.durationMs),
    });
    let stdout = outcome.stdout;
    if (this.#o.tamperResultsForTests) {
      stdout = stdout.length > 0 ? stdout.slice() : new Uint8Array(1);
      stdout[0]! ^= 1;
    }
    return {
      Done: {
        job_id: jobId,
        exit_code: outcome.exitCode,
        completion: outcome.completion,
        ...(outcome.error ? { error: `${outcome.error.kind}: ${outcome.error.message}` } : {}),
        receipt,
        stdout,
        stderr: outcome.stderr,
      },
    };
  }

  /**
   * Serve `/phase/job-offer/1.0.0` and `/phase/job-exec/1.0.0` on a libp2p node. Offers are
   * cheap to answer and capped in number; each stream is timed out.
   */
  async attach(
    libp2p: {
      handle(
        protocol: string,
        handler: (stream: Stream, connection: Connection) => void | Promise<void>,
        options?: { maxInboundStreams?: number; maxOutboundStreams?: number },
      ): Promise<void>;
    },
    options: { streamTimeoutMs?: number; maxInflightOffers?: number } = {},
  ): Promise<void> {
    const { streamTimeoutMs = 10_000, maxInflightOffers = 256 } = options;
    await libp2p.handle(JOB_OFFER_PROTOCOL, async (stream, connection) => {
      if (this.#inflightOffers >= maxInflightOffers) {
        stream.abort(new Error("Too many offers in flight"));
        return;
      }
      this.#inflightOffers++;
      try {
        const key = _peerKey(connection.remotePeer.toString());
        await serveJobOffer(stream, (offer) => this.decideOffer(offer, key), {
          signal: AbortSignal.any([AbortSignal.timeout(streamTimeoutMs), this.#controller.signal]),
        });
      } catch (error) {
        this.#log("warn", "offer_failed", { error: errorMessage(error) });
      } finally {
        this.#inflightOffers--;
      }
    }, { maxInboundStreams: 64, maxOutboundStreams: 64 });
    await libp2p.handle(JOB_EXEC_PROTOCOL, async (stream, connection) => {
      try {
        const key = _peerKey(connection.remotePeer.toString());
        await serveJobExec(stream, (request, context) => this.execute(request, key, context), {
          signal: this.#controller.signal,
          readTimeoutMs: Math.max(streamTimeoutMs, 30_000),
        });
      } catch (error) {
        this.#log("warn", "exec_failed", { error: errorMessage(error) });
      }
    }, { maxInboundStreams: 32, maxOutboundStreams: 32 });
  }

  /** Cancel running jobs and drop reservations; idempotent. */
  stop(): void {
    this.#controller.abort(new Error("The worker stopped"));
    this.#o.policy.clear();
  }

  #remember(hash: string, module: Uint8Array): void {
    const cap = this.#o.moduleCacheBytes ?? 256 * 2 ** 20;
    const old = this.#modules.get(hash);
    if (old) {
      this.#modules.delete(hash);
      this.#moduleBytes -= old.length;
    }
    if (module.length > cap) return;
    this.#modules.set(hash, module);
    this.#moduleBytes += module.length;
    for (const [key, value] of this.#modules) {
      if (this.#moduleBytes <= cap) break;
      this.#modules.delete(key);
      this.#moduleBytes -= value.length;
    }
  }

  #log(level: string, event: string, fields: Record<string, unknown>): void {
    try {
      this.#o.onLog?.({ level, event, ...fields });
    } catch {
      // A failing log sink must not break the worker.
    }
  }
}

function _peerKey(peerId: string): string {
  return toHex(peerPublicKey(peerId));
}
