/**
 * The worker side of remote execution: answers job offers and runs jobs for peers in the
 * sandbox, returning output and a signed receipt. A libp2p service in the js-libp2p way:
 * {@linkcode jobWorker} returns a factory that `createLibp2p` (or `startNode`'s `services`)
 * calls with the node's components; `start()` registers `/phase/job-offer/1.0.0` and
 * `/phase/job-exec/2.0.0`, `stop()` unregisters them and cancels running jobs.
 *
 * @module
 */
import { peerPublicKey } from "./peer_key.ts";
import type { Connection, PeerId, Stream } from "@libp2p/interface";
import { sha256TagAsync, toHex } from "../runtime/digest.ts";
import type { KeyPair } from "../runtime/ed25519.ts";
import { verifyJobManifest } from "../runtime/job_manifest.ts";
import { DEFAULT_LIMITS, type SignedJob } from "../runtime/run_signed_job.ts";
import { jobKind, type JobKindLimits } from "../runtime/job_kinds.ts";
import type { JobManifest } from "../runtime/job_manifest.ts";
import type { Receipt } from "../runtime/receipt.ts";
import type { SandboxPool } from "../runtime/sandbox_pool.ts";
import { meshJobFiles } from "./mesh_files.ts";
import {
  JOB_OFFER_PROTOCOL,
  type JobOffer,
  NonceGuard,
  type OfferResponse,
  serveJobOffer,
} from "./job_protocol.ts";
import {
  type ExecContext,
  type ExecHeader,
  type ExecRequest,
  type ExecResponse,
  JOB_EXEC_PROTOCOL,
  JOB_EXEC_PROTOCOL_EAGER,
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
  /** The node's PeerId (base58), reported in `Accepted`. @default {the components' peerId} */
  peerId?: string;
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
  /** Time limit for one offer stream (a job stream gets at least 30 s to arrive), in ms. @default {10000} */
  streamTimeoutMs?: number;
  /** Offer streams answered at once; more are reset. @default {256} */
  maxInflightOffers?: number;
  /**
   * Job streams one peer may have open at once; a peer that opens more is dropped (its
   * connection closed) and refused for `peerBlockMs`. @default {8}
   */
  maxExecStreamsPerPeer?: number;
  /** Job streams open at once from all peers; more are reset. @default {32} */
  maxExecStreams?: number;
  /**
   * Module and input bytes the worker accepts at once (declared by admitted job streams, held
   * until their job ends); a job that would exceed it gets `QueueFull`. @default {268435456}
   */
  maxInflightBytes?: number;
  /** How long a dropped peer is refused, in ms. @default {30000} */
  peerBlockMs?: number;
  /** Test only: corrupt returned output (see {@linkcode TAMPER_RESULTS_VALUE}). @default {false} */
  tamperResultsForTests?: boolean;
  /**
   * Fields added to every receipt's `metrics.extra` (a booted node's `boot_manifest_hash` and
   * `boot_sequence`, see net/boot_attestation.ts); the receipt is signed with them. @default none
   */
  receiptExtra?: Record<string, string>;
  /** Receives structured log records. */
  onLog?: (record: Record<string, unknown>) => void;
}

/**
 * What a {@linkcode JobWorker} service takes from its node: the libp2p registrar (a running
 * `Libp2p` node has the same `handle`/`unhandle`) and the PeerId.
 */
export interface JobWorkerComponents {
  /** Where the worker registers its protocol handlers. */
  registrar: {
    handle(
      protocol: string,
      handler: (stream: Stream, connection: Connection) => void | Promise<void>,
      options?: {
        maxInboundStreams?: number;
        maxOutboundStreams?: number;
        runOnLimitedConnection?: boolean;
      },
    ): Promise<void>;
    unhandle(protocol: string): Promise<void>;
  };
  /** The node's PeerId. */
  peerId: PeerId | { toString(): string };
}

/**
 * A libp2p service factory for a job worker, like js-libp2p's `ping()`: pass it in
 * `startNode({ services: { jobs: jobWorker(...) } })`, or call it with a running node's
 * `{ registrar: node.libp2p, peerId: node.libp2p.peerId }` and `start()` the worker.
 *
 * @example
 * ```ts
 * import { jobWorker } from "./job_worker.ts";
 * import { WorkerPolicy } from "./worker_policy.ts";
 * import { JOB_OFFER_PROTOCOL } from "./job_protocol.ts";
 * import { startNode } from "./node.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keyPair = await generateKeyPair();
 * await using node = await startNode({
 *   secretKey: keyPair.secretKey, mdns: false, dht: false,
 *   services: { jobs: jobWorker({ keyPair, policy: new WorkerPolicy() }) },
 * });
 * assert.ok(node.libp2p.getProtocols().includes(JOB_OFFER_PROTOCOL));
 * await node.stop();
 * assert.ok(!node.libp2p.getProtocols().includes(JOB_OFFER_PROTOCOL));
 * ```
 */
export function jobWorker(
  options: JobWorkerOptions,
): (components: JobWorkerComponents) => JobWorker {
  return (components) => new JobWorker(options, components);
}

/**
 * Runs jobs for peers; as a libp2p service (see {@linkcode jobWorker}) it serves its protocols
 * between `start()` and `stop()`.
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
  /** The service's name, as js-libp2p services have. */
  readonly [Symbol.toStringTag] = "@phase/job-worker";
  #o: JobWorkerOptions;
  #peerId: string;
  #registrar: JobWorkerComponents["registrar"] | undefined;
  #nonces = new NonceGuard();
  #modules = new Map<string, Uint8Array>();
  #moduleBytes = 0;
  #inflightOffers = 0;
  /** Modules each requester sent itself (hashes, bounded): only those run from the cache. */
  #sentBy = new Map<string, Set<string>>();
  #execStreams = new Map<string, number>();
  #execTotal = 0;
  #inflightBytes = 0;
  #blocked = new Map<string, number>();
  #controller = new AbortController();
  #started = false;
  /** Receipt files being written (awaited by stop()). */
  #keeping = new Set<Promise<unknown>>();

  /**
   * Make a worker; nothing is served until {@linkcode JobWorker.start}.
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
  constructor(options: JobWorkerOptions, components?: JobWorkerComponents) {
    const peerId = options.peerId ?? components?.peerId.toString();
    if (peerId === undefined) {
      throw new TypeError("Cannot make job worker: give a peerId or the node's components");
    }
    this.#o = options;
    this.#peerId = peerId;
    this.#registrar = components?.registrar;
    if (options.tamperResultsForTests) {
      this.#log("warn", "tamper_results_enabled", {
        warning: "TEST ONLY: this worker corrupts the output it returns",
      });
    }
  }

  /** Answer an offer from the requester with raw key `requesterKey` (hex). */
  decideOffer(offer: JobOffer, requesterKey: string): OfferResponse {
    if (!this.#nonces.check(offer.nonce)) {
      return _reject(offer.job_id, "nonce replayed");
    }
    return this.#o.policy.decideOffer(offer, requesterKey, this.#peerId);
  }

  /**
   * Run a job for the requester with raw key `requesterKey` (hex), in memory (a job this node
   * sends to itself): admit it as a job stream's header would be (signature, accepted offer,
   * allow list, module), check the bytes' hashes, run it in a slot under the policy's limits,
   * keep the receipt and answer with the output.
   */
  async execute(
    request: ExecRequest,
    requesterKey: string,
    context: ExecContext,
  ): Promise<ExecResponse> {
    const admitted = await this.#admitHeader({
      manifest: request.manifest,
      input_len: request.input.length,
      module_len: request.module?.length ?? 0,
      ...(request.inputs !== undefined ? { inputs_len: request.inputs.length } : {}),
    }, requesterKey);
    if ("answer" in admitted) return admitted.answer;
    try {
      const { jobId } = admitted;
      const { payload } = request.manifest;
      if (request.module && await sha256TagAsync(request.module) !== payload.module_cid) {
        return _reject(jobId, `module bytes do not hash to ${payload.module_cid}`);
      }
      if (await sha256TagAsync(request.input) !== payload.input) {
        return _reject(jobId, `input bytes do not hash to ${payload.input}`);
      }
      if (request.inputs && await sha256TagAsync(request.inputs) !== payload.inputs) {
        return _reject(jobId, `input tree bytes do not hash to ${payload.inputs ?? "none"}`);
      }
      if (admitted.needInputs && request.inputs === undefined) {
        return _reject(jobId, "the input tree was not sent");
      }
      return await this.#execute(admitted, request, context);
    } finally {
      admitted.release();
    }
  }

  /**
   * Serve `/phase/job-offer/1.0.0` and `/phase/job-exec/2.0.0` (and 2.1.0, eager input)
   * through the registrar. Offers are cheap to answer and capped in number; each stream is
   * timed out. A second call does nothing; a worker without a registrar serves nothing.
   */
  async start(): Promise<void> {
    if (this.#started || !this.#registrar) return;
    this.#started = true;
    if (this.#controller.signal.aborted) this.#controller = new AbortController();
    const { streamTimeoutMs = 10_000, maxInflightOffers = 256 } = this.#o;
    await this.#registrar.handle(JOB_OFFER_PROTOCOL, async (stream, connection) => {
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
    }, { maxInboundStreams: 64, maxOutboundStreams: 64, runOnLimitedConnection: true });
    const {
      maxExecStreamsPerPeer = 8,
      maxExecStreams = 32,
      peerBlockMs = 30_000,
    } = this.#o;
    // Both execution protocols (2.1.0 only adds eager input) share the handler and its limits.
    const onExec = async (stream: Stream, connection: Connection) => {
      const peer = connection.remotePeer.toString();
      if (this.#isBlocked(peer)) {
        stream.abort(new Error("This peer is refused for a while"));
        return;
      }
      const open = this.#execStreams.get(peer) ?? 0;
      if (open >= maxExecStreamsPerPeer) {
        // More job streams than any honest requester opens: drop the peer for a while.
        this.#blocked.set(peer, Date.now() + peerBlockMs);
        this.#log("warn", "peer_dropped", {
          peer_id: peer,
          reason: `more than ${maxExecStreamsPerPeer} job streams at once`,
        });
        stream.abort(new Error("Too many job streams from this peer"));
        connection.abort?.(new Error("Too many job streams from this peer"));
        return;
      }
      if (this.#execTotal >= maxExecStreams) {
        stream.abort(new Error("Too many job streams in flight"));
        return;
      }
      this.#execStreams.set(peer, open + 1);
      this.#execTotal++;
      let admitted: _Admitted | undefined;
      try {
        const key = _peerKey(peer);
        await serveJobExec(stream, {
          admit: async (header) => {
            const decided = await this.#admitHeader(header, key);
            if ("answer" in decided) return decided.answer;
            admitted = decided;
            const inputs = decided.needInputs ? { inputs: true } : {};
            return { send: { job_id: decided.jobId, module: decided.needModule, ...inputs } };
          },
          run: (request, context) => this.#execute(admitted!, request, context),
        }, {
          signal: this.#controller.signal,
          readTimeoutMs: Math.max(streamTimeoutMs, 30_000),
          eager: stream.protocol === JOB_EXEC_PROTOCOL_EAGER,
        });
      } catch (error) {
        this.#log("warn", "exec_failed", { peer_id: peer, error: errorMessage(error) });
      } finally {
        admitted?.release();
        this.#execTotal--;
        const left = (this.#execStreams.get(peer) ?? 1) - 1;
        if (left > 0) this.#execStreams.set(peer, left);
        else this.#execStreams.delete(peer);
      }
    };
    for (const protocol of [JOB_EXEC_PROTOCOL, JOB_EXEC_PROTOCOL_EAGER]) {
      await this.#registrar.handle(protocol, onExec, {
        maxInboundStreams: 64,
        maxOutboundStreams: 64,
        runOnLimitedConnection: true,
      });
    }
  }

  /** Stop serving, cancel running jobs and drop reservations; idempotent. */
  async stop(): Promise<void> {
    this.#controller.abort(new Error("The worker stopped"));
    this.#o.policy.clear();
    if (this.#started) {
      this.#started = false;
      await Promise.allSettled([
        this.#registrar?.unhandle(JOB_OFFER_PROTOCOL),
        this.#registrar?.unhandle(JOB_EXEC_PROTOCOL),
        this.#registrar?.unhandle(JOB_EXEC_PROTOCOL_EAGER),
      ]);
    }
    await Promise.allSettled(this.#keeping);
  }

  /**
   * Check a job's header before any of its bytes are accepted: who asks, the manifest's
   * signature, the accepted offer (claimed here), whether the module must be sent, and the
   * bytes in flight.
   */
  async #admitHeader(
    header: ExecHeader,
    requesterKey: string,
  ): Promise<{ answer: ExecResponse } | _Admitted> {
    const { manifest } = header;
    const reject = (jobId: string, details: string) => ({ answer: _reject(jobId, details) });
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
    if (!this.#o.policy.claim(jobId, requesterKey)) {
      return reject(jobId, "no accepted offer from this peer for this job: offer it first");
    }
    const hash = manifest.payload.module_cid;
    // A cached module runs only for a requester that sent those bytes itself.
    const needModule = !(this.#modules.has(hash) && this.#sentBy.get(requesterKey)?.has(hash));
    let held = 0;
    const release = () => {
      this.#inflightBytes -= held;
      held = 0;
      this.#o.policy.release(jobId);
    };
    if (needModule && header.module_len === 0) {
      release();
      return { answer: { NeedModule: { job_id: jobId } } };
    }
    // The input tree: content-addressed by the manifest's `inputs`, scoped like modules.
    const tree = manifest.payload.inputs;
    const needInputs = tree !== undefined &&
      !(this.#modules.has(tree) && this.#sentBy.get(requesterKey)?.has(tree));
    if ((tree !== undefined) !== (header.inputs_len !== undefined)) {
      release();
      return reject(jobId, "the manifest's inputs and the request's input tree do not match");
    }
    const bytes = header.input_len + (needModule ? header.module_len : 0) +
      (needInputs ? header.inputs_len ?? 0 : 0);
    const { maxInflightBytes = 256 * 2 ** 20 } = this.#o;
    if (this.#inflightBytes + bytes > maxInflightBytes) {
      release();
      return { answer: { Rejected: { job_id: jobId, reason: "QueueFull" } } };
    }
    this.#inflightBytes += bytes;
    held = bytes;
    return { jobId, needModule, needInputs, requesterKey, release };
  }

  /** Run an admitted job whose bytes arrived (and hash right). */
  async #execute(
    admitted: _Admitted,
    request: ExecRequest,
    context: ExecContext,
  ): Promise<ExecResponse> {
    const { jobId, requesterKey } = admitted;
    const { manifest } = request;
    const hash = manifest.payload.module_cid;
    const module = request.module ?? this.#modules.get(hash);
    // Evicted while the input arrived: ask for it again.
    if (!module) return { NeedModule: { job_id: jobId } };
    const treeHash = manifest.payload.inputs;
    const tree = treeHash === undefined ? undefined : request.inputs ?? this.#modules.get(treeHash);
    // Evicted while the rest arrived: ask again (the worker then asks for the tree too).
    if (treeHash !== undefined && !tree) return { NeedModule: { job_id: jobId } };
    if (request.module) this.#remember(hash, request.module, requesterKey);
    if (treeHash !== undefined && request.inputs) {
      this.#remember(treeHash, request.inputs, requesterKey);
    }
    const limits = this.#limits(manifest);
    this.#log("info", "job_accepted", {
      job_id: jobId,
      ...(request.input_sent ? { input_sent: true } : {}),
      ...limits,
      ...(manifest.payload.fuel !== undefined ? { fuel: manifest.payload.fuel } : {}),
    });
    const ran = await this.#run(jobId, module, request, limits, context.signal, tree);
    if ("answer" in ran) return ran.answer;
    this.#keep(jobId, ran.signed.receipt);
    return this.#done(jobId, ran.signed);
  }

  /**
   * The limits a job runs under: what it asks, clamped to the policy's ceilings, and the output
   * cap it signed (never over what one answer carries).
   */
  #limits(manifest: JobManifest): JobKindLimits {
    const payload = manifest.payload;
    return {
      ...this.#o.policy.clamp(payload),
      maxOutputBytes: Math.max(
        1,
        Math.min(payload.max_output_bytes ?? DEFAULT_LIMITS.maxOutputBytes, MAX_EXEC_OUTPUT_BYTES),
      ),
    };
  }

  /** Run the job in a slot with its kind's runner; a full queue or a bad request answers. */
  async #run(
    jobId: string,
    module: Uint8Array,
    request: ExecRequest,
    limits: JobKindLimits,
    cancel: AbortSignal,
    tree: Uint8Array | undefined,
  ): Promise<{ answer: ExecResponse } | { signed: SignedJob }> {
    const { manifest } = request;
    const signal = AbortSignal.any([cancel, this.#controller.signal]);
    try {
      const signed = await this.#o.policy.run(jobId, () => {
        this.#log("info", "job_started", { job_id: jobId });
        return jobKind(manifest.payload.kind).run(module, {
          keyPair: this.#o.keyPair,
          manifest,
          input: request.input,
          ...limits,
          sandbox: this.#o.sandbox ?? "process",
          ...(tree ? { files: meshJobFiles(tree, limits.memoryBytes) } : {}),
          ...(this.#o.pool ? { pool: this.#o.pool } : {}),
          ...(this.#o.receiptExtra ? { receiptExtra: this.#o.receiptExtra } : {}),
          signal,
        });
      }, signal);
      return { signed };
    } catch (error) {
      if (error instanceof QueueFullError) {
        return { answer: { Rejected: { job_id: jobId, reason: "QueueFull" } } };
      }
      // Arguments or environment WASI cannot carry, an out-of-range limit: the request's fault.
      if (error instanceof TypeError || error instanceof RangeError) {
        return { answer: _reject(jobId, errorMessage(error)) };
      }
      throw error;
    }
  }

  /** Record the receipt in the store and keep its file; a failure to keep it is only logged. */
  #keep(jobId: string, receipt: Receipt): void {
    this.#o.store?.addReceipt(jobId, this.#peerId, "worker", receipt);
    if (this.#o.keepReceipt) {
      // Beside the answer, not before it: the requester holds the receipt it acknowledges, and
      // the file's two fsyncs would delay every job (stop() waits for it).
      const kept = this.#o.keepReceipt(receipt).catch((error) =>
        this.#log("warn", "receipt_not_kept", { job_id: jobId, error: errorMessage(error) })
      ).finally(() => this.#keeping.delete(kept));
      this.#keeping.add(kept);
    }
  }

  /** The `Done` answer of a run (with one byte flipped when tampering for tests). */
  #done(jobId: string, signed: SignedJob): ExecResponse {
    const { outcome, receipt } = signed;
    this.#log("info", "job_ran", {
      job_id: jobId,
      completion: outcome.completion,
      exit_code: outcome.exitCode,
      duration_ms: Math.round(outcome.durationMs),
      // Read by net/metrics.ts (plasm_jobs_total outcome, plasm_job_fuel_used_total).
      ...(outcome.error ? { error_kind: outcome.error.kind } : {}),
      ...(outcome.fuelUsed !== undefined ? { fuel_used: String(outcome.fuelUsed) } : {}),
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
        ...(outcome.files ? { files: outcome.files } : {}),
      },
    };
  }

  #isBlocked(peer: string): boolean {
    const until = this.#blocked.get(peer);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.#blocked.delete(peer);
    return false;
  }

  #remember(hash: string, module: Uint8Array, requesterKey: string): void {
    // Bounded: the most recent requesters, and the most recent modules of each.
    let sent = this.#sentBy.get(requesterKey);
    this.#sentBy.delete(requesterKey);
    sent ??= new Set();
    sent.delete(hash);
    sent.add(hash);
    if (sent.size > _MAX_MODULES_PER_REQUESTER) sent.delete(sent.values().next().value!);
    this.#sentBy.set(requesterKey, sent);
    if (this.#sentBy.size > _MAX_REQUESTERS_REMEMBERED) {
      this.#sentBy.delete(this.#sentBy.keys().next().value!);
    }
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

/** Module hashes remembered per requester. */
const _MAX_MODULES_PER_REQUESTER = 256;
/** Requesters whose sent modules are remembered. */
const _MAX_REQUESTERS_REMEMBERED = 4096;

/** A job stream whose header was admitted. */
interface _Admitted {
  jobId: string;
  /** The requester must send the module (the worker lacks it, or the requester never sent it). */
  needModule: boolean;
  /** The requester must send the input tree (same rule as the module). */
  needInputs: boolean;
  requesterKey: string;
  /** Give back the bytes in flight and the claimed place if the job did not run; idempotent. */
  release(): void;
}

function _reject(
  jobId: string,
  details: string,
): { Rejected: { job_id: string; reason: { InvalidRequest: { details: string } } } } {
  return { Rejected: { job_id: jobId, reason: { InvalidRequest: { details } } } };
}

function _peerKey(peerId: string): string {
  return toHex(peerPublicKey(peerId));
}
