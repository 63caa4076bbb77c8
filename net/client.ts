/**
 * A typed client of a node's local API: submit a job, get its verified result.
 *
 * @module
 */
import { verifyReceipt } from "../runtime/receipt.ts";
import type { Receipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "./peer_key.ts";
import { ReceiptMismatchError } from "../runtime/receipt.ts";
import { sha256TagAsync, toHex } from "../runtime/digest.ts";
import { encodeSubmitRequest, type SubmitOptions } from "./submit_options.ts";

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** The API base URL, such as `http://127.0.0.1:4000/` (from `<state>/api.json`). */
  url: string;
  /** The bearer token (from `<state>/api.token`). */
  token: string;
}

/**
 * Options of {@linkcode Client.submit}: the scheduler's {@linkcode SubmitOptions} (the node
 * looks for a worker for `searchTimeoutMs`, by default its own 30000 ms), and a signal.
 */
export interface ClientSubmitOptions extends SubmitOptions {
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** Where a job stands. */
export interface JobStatusInfo {
  /** Hex job id. */
  jobId: string;
  /** `queued`, `running`, `done` or `failed`. */
  status: "queued" | "running" | "done" | "failed";
  /**
   * What an unfinished job waits for (`queued`, `waiting_for_workers`, `offering`,
   * `executing`); for a finished one, its status.
   */
  state: string;
  /** Workers tried. */
  attempts: number;
  /** Why an unfinished job still waits. */
  lastReason?: string;
  /** When the search for a worker gives up (RFC 3339), while waiting for one. */
  searchDeadline?: string;
  /** The (first) worker whose result was kept. */
  workerPeerId?: string;
  /** The error, when failed (or the last attempt's error). */
  error?: string;
  /** Why it failed: `no_worker_found`, `workers_failed`, `not_verified`, `replicas_disagree`... */
  errorKind?: string;
}

/** One worker's verified part of a result. */
export interface JobWorkerResult {
  /** The worker's PeerId. */
  peerId: string;
  /** Its receipt's output commitment, hex. */
  outputCommitment: string;
  /** Its signed receipt, verified against the key of its PeerId. */
  receipt: Receipt;
}

/** A finished job's verified result. */
export interface JobResultInfo {
  /** The job's stdout. */
  output: Uint8Array;
  /** The job's stderr. */
  stderr: Uint8Array;
  /** The exit code, or null when the job did not end by itself. */
  exitCode: number | null;
  /** `stop`, `length`, `cancelled` or `error`. */
  completion: string;
  /**
   * Why the job did not run to its end (`kind` as `run` names it: `trap`, `timeout`,
   * `memory_limit`, `invalid_module`, `output_limit`, `fuel_exhausted`...), or null.
   */
  error: { kind: string; message: string } | null;
  /** The (first) worker's signed receipt. */
  receipt: Receipt;
  /** The (first) worker that ran it. */
  workerPeerId: string;
  /** Every worker that ran it (several with replicas), each with its verified receipt. */
  workers: JobWorkerResult[];
  /** Always true for a result: replicas that disagree fail the job instead. */
  replicasAgree: true;
  /**
   * For a job with files, its output tree (`encodeFileTree`), checked against every verified
   * receipt's `outputs_hash`.
   */
  files?: Uint8Array;
  /** Always true: the receipt was checked here too (signature by the worker's PeerId key, job id, output). */
  verified: true;
}

/** Thrown by {@linkcode Client.result} when the job failed. */
export class JobFailedError extends Error {
  /** Why: `no_worker_found`, `workers_failed`, `not_verified`, `replicas_disagree`, `internal`. */
  readonly kind: string;
  /** The node's message, without the job id. */
  readonly reason: string;
  /** For replicas that disagreed: each worker and its receipt (checked against its PeerId). */
  readonly workers: JobWorkerResult[];

  /**
   * Make the error.
   *
   * @example
   * ```ts
   * import { JobFailedError } from "./client.ts";
   * import assert from "node:assert/strict";
   * const error = new JobFailedError("x", { kind: "no_worker_found" });
   * assert.equal(error.name, "JobFailedError");
   * assert.equal(error.kind, "no_worker_found");
   * ```
   */
  constructor(
    message: string,
    options: ErrorOptions & { kind?: string; reason?: string; workers?: JobWorkerResult[] } = {},
  ) {
    super(message, options);
    this.name = "JobFailedError";
    this.kind = options.kind ?? "failed";
    this.reason = options.reason ?? message;
    this.workers = options.workers ?? [];
  }
}

/** Thrown when the node's API does not answer (no node running there, or it stopped). */
export class ApiUnreachableError extends Error {
  /** The API URL that did not answer. */
  readonly url: string;

  /**
   * Make the error.
   *
   * @example
   * ```ts
   * import { ApiUnreachableError } from "./client.ts";
   * import assert from "node:assert/strict";
   * const error = new ApiUnreachableError("http://127.0.0.1:9/");
   * assert.equal(error.message, "Cannot reach the node API at http://127.0.0.1:9/");
   * ```
   */
  constructor(url: string, options?: ErrorOptions) {
    super(`Cannot reach the node API at ${url}`, options);
    this.name = "ApiUnreachableError";
    this.url = url;
  }
}

/**
 * Client of a node's local API.
 *
 * @example
 * ```ts
 * import { Client } from "./client.ts";
 * import { createLocalApiHandler } from "./local_api.ts";
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
 * // A node's API over a scheduler with one in-process worker.
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
 * const token = "t".repeat(32);
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} },
 *   createLocalApiHandler({ token, jobs: scheduler }));
 *
 * const client = new Client({ url: `http://127.0.0.1:${server.addr.port}/`, token });
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const id = await client.submit(module, { input: new TextEncoder().encode("Hello") });
 * const result = await client.result(id, { waitMs: 10_000 });
 * assert.equal(new TextDecoder().decode(result.output), "olleH");
 * assert.equal(result.verified, true);
 * await scheduler.stop();
 * worker.stop();
 * ```
 */
export class Client {
  #url: URL;
  #token: string;

  /**
   * Make a client; nothing is sent until a call.
   *
   * @example
   * ```ts
   * import { Client } from "./client.ts";
   * import assert from "node:assert/strict";
   * assert.throws(() => new Client({ url: "not a url", token: "t".repeat(32) }), TypeError);
   * ```
   */
  constructor(options: ClientOptions) {
    const { url, token } = options;
    try {
      this.#url = new URL(url);
    } catch (cause) {
      throw new TypeError(`Cannot use API URL '${url}'`, { cause });
    }
    if (typeof token !== "string" || token.length < 16) {
      throw new TypeError("Cannot use API token: expected at least 16 characters");
    }
    this.#token = token;
  }

  /**
   * Submit a job; resolves with its hex job id.
   *
   * @throws {Error} If the node refuses the job.
   */
  async submit(module: Uint8Array, options: ClientSubmitOptions = {}): Promise<string> {
    const { signal, ...submit } = options;
    const body = encodeSubmitRequest(module, submit);
    const { status, json } = await this.#call("jobs", {
      method: "POST",
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    if (status !== 201 || typeof json.job_id !== "string") {
      const why = json.error ?? `HTTP ${status}`;
      throw new Error(why.startsWith("Cannot ") ? why : `Cannot submit job: ${why}`);
    }
    return json.job_id;
  }

  /**
   * Where a job stands.
   *
   * @throws {RangeError} If the node does not know the job.
   */
  async status(jobId: string, options: { signal?: AbortSignal } = {}): Promise<JobStatusInfo> {
    const { status, json } = await this.#call(`jobs/${_id(jobId)}`, options);
    if (status === 404) throw new RangeError(`Cannot find job ${jobId}`);
    if (status !== 200) throw new Error(`Cannot get job ${jobId}: ${json.error ?? status}`);
    return _statusInfo(json);
  }

  /**
   * A finished job's result, verified here as well: the receipt must be signed by the key of the
   * worker's PeerId, name this job id and commit to the output returned. With `waitMs`, waits
   * that long for the job to finish.
   *
   * @throws {JobFailedError} If the job failed (no worker returned a verified result, or
   *   replicas disagreed); its `kind` says which.
   * @throws {Error} If it is not finished (yet).
   * @throws {SignatureError | ReceiptMismatchError} If the receipt does not verify.
   */
  async result(
    jobId: string,
    options: { waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<JobResultInfo> {
    const { waitMs = 0, signal } = options;
    const deadline = Date.now() + waitMs;
    while (true) {
      const left = Math.max(0, deadline - Date.now());
      const { status, json } = await this.#call(
        `jobs/${_id(jobId)}/result${left > 0 ? `?wait=${Math.min(left, 60_000)}` : ""}`,
        signal ? { signal } : {},
      );
      if (status === 404) throw new RangeError(`Cannot find job ${jobId}`);
      if (status === 409) {
        const workers = Array.isArray(json.workers) ? await _verifiedWorkers(json.workers) : [];
        throw new JobFailedError(`Job ${jobId} failed: ${json.error}`, {
          kind: typeof json.error_kind === "string" ? json.error_kind : "failed",
          reason: String(json.error),
          workers,
        });
      }
      if (status === 202) {
        if (Date.now() < deadline) continue;
        const why = json.state && json.state !== json.status
          ? ` (${json.state}${json.last_reason ? `: ${json.last_reason}` : ""})`
          : "";
        throw new Error(`Cannot get result of job ${jobId}: it is still ${json.status}${why}`);
      }
      if (status !== 200) {
        throw new Error(`Cannot get result of job ${jobId}: ${json.error ?? status}`);
      }
      return await _verified(jobId, json);
    }
  }

  async #call(
    path: string,
    init: RequestInit,
  ): Promise<{ status: number; json: Record<string, string> & Record<string, unknown> }> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.#url), {
        ...init,
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
      });
    } catch (cause) {
      // Connection refused or reset: nobody (or no longer anybody) listens there.
      if (cause instanceof TypeError && !init.signal?.aborted) {
        throw new ApiUnreachableError(this.#url.href, { cause });
      }
      throw cause;
    }
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new SyntaxError(`Cannot parse API answer (HTTP ${response.status})`);
    }
    return { status: response.status, json };
  }
}

async function _verified(
  jobId: string,
  json: Record<string, unknown>,
): Promise<JobResultInfo> {
  const output = _fromBase64(json.output, "output");
  const stderr = _fromBase64(json.stderr, "stderr");
  // Every worker's receipt: signed by the key inside its PeerId, for this job and this output.
  const listed = Array.isArray(json.workers) && json.workers.length > 0
    ? json.workers
    : [{ peer_id: String(json.worker_peer_id ?? "").split(",")[0], receipt: json.receipt }];
  const workers = await _verifiedWorkers(listed, { jobId, output });
  const receipt = workers[0]!.receipt;
  const extra = receipt.result.metrics.extra;
  for (const field of ["module_hash", "input_hash"] as const) {
    if (extra[field] !== json[field]) {
      throw new ReceiptMismatchError(field, String(json[field]), String(extra[field]));
    }
  }
  // The output tree: exactly the one every receipt names (or none where none names one).
  const files = json.files === undefined ? undefined : _fromBase64(json.files, "files");
  const treeHash = files === undefined ? undefined : await sha256TagAsync(files);
  for (const worker of workers) {
    const signed = worker.receipt.result.metrics.extra.outputs_hash;
    if (signed !== treeHash) {
      throw new ReceiptMismatchError("outputs_hash", String(signed), String(treeHash));
    }
  }
  const exitCode = json.exit_code === null ? null : Number(json.exit_code);
  if ((extra.exit_code ?? null) !== (exitCode === null ? null : String(exitCode))) {
    throw new ReceiptMismatchError("exit_code", String(extra.exit_code), String(exitCode));
  }
  let error: JobResultInfo["error"] = null;
  const given = json.error as { kind?: unknown; message?: unknown } | null | undefined;
  if (receipt.result.completion !== "stop" || extra.error !== undefined) {
    // The kind is the signed one; the message is the worker's word.
    const kind = extra.error ?? receipt.result.completion;
    error = {
      kind,
      message: typeof given?.message === "string" ? given.message : kind,
    };
  }
  return {
    output,
    stderr,
    exitCode,
    completion: receipt.result.completion,
    error,
    receipt,
    workerPeerId: workers[0]!.peerId,
    workers,
    replicasAgree: true,
    verified: true,
    ...(files !== undefined ? { files } : {}),
  };
}

async function _verifiedWorkers(
  list: unknown[],
  expected: { jobId?: string; output?: Uint8Array } = {},
): Promise<JobWorkerResult[]> {
  const workers: JobWorkerResult[] = [];
  for (const item of list) {
    const entry = item as { peer_id?: unknown; receipt?: unknown };
    const peerId = String(entry?.peer_id ?? "");
    const receipt = await verifyReceipt(entry?.receipt, {
      publicKey: peerPublicKey(peerId),
      ...(expected.jobId ? { jobId: expected.jobId } : {}),
      ...(expected.output ? { output: expected.output } : {}),
    });
    workers.push({
      peerId,
      outputCommitment: toHex(Uint8Array.from(receipt.result.output_commitment)),
      receipt,
    });
  }
  return workers;
}

function _statusInfo(json: Record<string, unknown>): JobStatusInfo {
  const info: JobStatusInfo = {
    jobId: String(json.job_id),
    status: json.status as JobStatusInfo["status"],
    state: String(json.state ?? json.status),
    attempts: Number(json.attempts ?? 0),
  };
  if (typeof json.last_reason === "string") info.lastReason = json.last_reason;
  if (typeof json.search_deadline === "string") info.searchDeadline = json.search_deadline;
  if (typeof json.worker_peer_id === "string") info.workerPeerId = json.worker_peer_id;
  if (typeof json.error === "string") info.error = json.error;
  if (typeof json.error_kind === "string") info.errorKind = json.error_kind;
  return info;
}

function _id(jobId: string): string {
  if (!/^[0-9a-f]{64}$/.test(jobId)) {
    throw new TypeError(`Cannot use job id '${jobId}': expected 64 lowercase hex`);
  }
  return jobId;
}

function _fromBase64(value: unknown, field: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(String(value ?? ""));
  } catch (cause) {
    throw new SyntaxError(`Cannot read job result: ${field} is not base64`, { cause });
  }
}
