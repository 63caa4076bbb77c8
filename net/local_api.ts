/**
 * The node's local HTTP API, a `(Request) => Promise<Response>` handler meant for 127.0.0.1 and
 * guarded by a bearer token:
 *
 * - `POST /jobs` with JSON `{module, input?, args?, env?, cpu?, memory_bytes?, timeout_ms?,
 *   max_output_bytes?, fuel?, replicas?, worker?, search_timeout_ms?, inputs?}` (`module`,
 *   `input` and `inputs`, an encoded file tree, base64; `fuel` a decimal string or integer) →
 *   `201 {job_id, status}`.
 * - `GET /jobs/:id` → `200 {job_id, status, state, attempts, last_reason?, search_deadline?,
 *   worker_peer_id?, error?, error_kind?, created_at, updated_at}`; `state` says why a running
 *   job waits (`queued`, `waiting_for_workers`, `offering`, `executing`).
 * - `GET /jobs/:id/result[?wait=MS]` → `200 {job_id, status:"done", exit_code, completion,
 *   error, output, stderr, receipt, worker_peer_id, workers, replicas_agree, module_hash,
 *   input_hash, files?}` (base64 bytes; `files` the output tree of a job with files, the
 *   receipts' `outputs_hash`; every receipt already verified by the node; `error` is
 *   `{kind, message}` when the job did not end by itself, else null; `workers` lists
 *   `{peer_id, output_commitment, receipt}` per worker), `202` with the status while not
 *   finished, `409` with the status (`error`, `error_kind`, and for replicas that disagreed
 *   `workers` and `replicas_agree: false`) when the job failed, `404` when unknown.
 *
 * - `GET /status` → `200 {peer_id, multiaddrs, reachability, relay, peers}` (when a `status`
 *   source is given): `peers` lists `{peer_id, connection: "direct"|"relayed", transport,
 *   multiaddr, direction, connections}`.
 * - `GET /metrics` → `200` Prometheus text exposition format 0.0.4 (when a `metrics` source is
 *   given; bearer token required like every route here).
 * - `/dashboard...`: the node dashboard (when given), authenticated by its own one-time link
 *   and session cookie, not by the bearer token; `POST /dashboard/link` (bearer token) mints a
 *   new link. See net/dashboard.ts.
 *
 * Errors are JSON `{error}`. A missing or wrong token gives `401`.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import type { JobRecord } from "./job_store.ts";
import type { JobProgress } from "./scheduler.ts";
import type { PeerConnection } from "./metrics_peers.ts";
import { parseSubmitRequest, type SubmitOptions } from "./submit_options.ts";
import type { BootProvenance } from "../boot/kexec_plan.ts";
import type { Receipt } from "../runtime/receipt.ts";
import { toHex } from "../runtime/digest.ts";
import { errorMessage } from "../util/error_message.ts";

/**
 * Largest request body accepted, in bytes (a 64 MiB module and an 80 MiB file tree in base64,
 * with room).
 */
export const MAX_API_BODY_BYTES = 224 * 1024 * 1024;

/** The part of a scheduler the API uses. */
export interface JobService {
  /** Start a job; resolves with its id. */
  submit(module: Uint8Array, options?: SubmitOptions): Promise<string>;
  /** A job, or `undefined`. */
  get(jobId: string): JobRecord | undefined;
  /** Wait until a job is finished or the signal aborts. */
  wait(jobId: string, options?: { signal?: AbortSignal }): Promise<JobRecord>;
  /** Where an unfinished job stands (why it waits). */
  progress?(jobId: string): JobProgress | undefined;
  /** The verified receipts of a job, one per worker. */
  workers?(jobId: string): { peerId: string; receipt: Receipt }[];
  /** The output tree of a finished job with files, by its receipt's `outputs_hash`. */
  outputTree?(jobId: string): Uint8Array | undefined;
  /**
   * Resolves once every change to the jobs made so far is durable; a finished job's result is
   * answered only after it.
   */
  durable?(): Promise<void>;
}

/** Options of {@linkcode createLocalApiHandler}. */
export interface LocalApiOptions {
  /** The bearer token clients must send. */
  token: string;
  /** Where jobs go. */
  jobs: JobService;
  /** Longest `?wait=` honoured, in ms. @default {60000} */
  maxWaitMs?: number;
  /** What `GET /metrics` serves (such as a `NodeMetrics`); none: 404. @default none */
  metrics?: { render(): Promise<string>; readonly contentType: string };
  /**
   * What answers `/dashboard` and below (such as a `Dashboard`), told whether the request
   * carried the bearer token; none: 404. @default none
   */
  dashboard?: { handle(request: Request, authorized: boolean): Promise<Response> };
  /**
   * What `GET /status` answers (the node, its reachability and relay, and per peer whether it is
   * connected `direct` or `relayed`); none: 404. @default none
   */
  status?: () => NodeStatus;
}

/** What `GET /status` answers. */
export interface NodeStatus {
  /** This node's PeerId. */
  peer_id: string;
  /** Its addresses, relayed ones (`/p2p-circuit`) included. */
  multiaddrs: string[];
  /** `public`, `private`, or `unknown` while AutoNAT has not decided. */
  reachability: "public" | "private" | "unknown";
  /** The relay server this node runs, or null: its bounds and how many reservations it holds. */
  relay: {
    max_reservations: number;
    reservations: number;
    data_limit_bytes: number;
    duration_limit_ms: number;
  } | null;
  /** Connected peers, each `direct` or `relayed` (every connection through a relay). */
  peers: PeerConnection[];
  /**
   * How the node booted, from the boot attestation it signed (`start --boot-provenance`);
   * absent without one. Its own statement, not hardware evidence (docs/boot.md).
   */
  boot?:
    & Pick<
      BootProvenance,
      "boot_manifest_hash" | "boot_sequence" | "version" | "channel" | "arch" | "signer_key_ids"
    >
    & { signed_at: string };
}

/**
 * Make the local API handler.
 *
 * @example
 * ```ts
 * import { createLocalApiHandler } from "./local_api.ts";
 * import assert from "node:assert/strict";
 *
 * const handler = createLocalApiHandler({ token: "t".repeat(32), jobs: {
 *   submit: () => Promise.resolve("ab".repeat(32)), get: () => undefined,
 *   wait: () => Promise.reject(new Error("unused")) } });
 * const denied = await handler(new Request("http://127.0.0.1/jobs/x"));
 * assert.equal(denied.status, 401);
 * await denied.body?.cancel();
 * const missing = await handler(new Request(`http://127.0.0.1/jobs/${"ab".repeat(32)}`,
 *   { headers: { authorization: `Bearer ${"t".repeat(32)}` } }));
 * assert.equal(missing.status, 404);
 * await missing.body?.cancel();
 * ```
 */
export function createLocalApiHandler(
  options: LocalApiOptions,
): (request: Request) => Promise<Response> {
  const { token, jobs, maxWaitMs = 60_000, metrics, dashboard, status } = options;
  if (typeof token !== "string" || token.length < 16) {
    throw new TypeError("Cannot make local API: token must be at least 16 characters");
  }
  const expected = new TextEncoder().encode(`Bearer ${token}`);
  return async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const given = new TextEncoder().encode(request.headers.get("authorization") ?? "");
    const authorized = given.length === expected.length && timingSafeEqual(given, expected);
    if (dashboard && /^\/dashboard(\/|$)/.test(url.pathname)) {
      return await dashboard.handle(request, authorized);
    }
    if (!authorized) {
      await request.body?.cancel();
      return _json(401, { error: "Cannot use the API: missing or wrong bearer token" });
    }
    const parts = url.pathname.split("/").filter(Boolean);
    try {
      if (metrics && url.pathname === "/metrics") return await _metrics(request, metrics);
      if (status && url.pathname === "/status") {
        await request.body?.cancel();
        if (request.method !== "GET") return _json(405, { error: "Use GET /status" });
        return _json(200, status());
      }
      if (parts[0] !== "jobs" || parts.length > 3) return _json(404, { error: "Not found" });
      if (parts.length === 1) {
        if (request.method !== "POST") return _json(405, { error: "Use POST /jobs" });
        return await _submit(request, jobs);
      }
      await request.body?.cancel();
      if (request.method !== "GET") return _json(405, { error: "Use GET" });
      const id = parts[1]!;
      if (!/^[0-9a-f]{64}$/.test(id)) return _json(404, { error: `Cannot find job ${id}` });
      let job = jobs.get(id);
      if (!job) return _json(404, { error: `Cannot find job ${id}` });
      if (parts.length === 2) return _json(200, _status(job, jobs.progress?.(id)));
      if (parts[2] !== "result") return _json(404, { error: "Not found" });
      const wait = Number(url.searchParams.get("wait") ?? "0");
      if (!Number.isFinite(wait) || wait < 0) {
        return _json(400, { error: "Cannot wait: ?wait= must be a number of ms" });
      }
      if (wait > 0 && job.status !== "done" && job.status !== "failed") {
        // Not request.signal: reading it makes Deno.serve print a plain-text warning about its
        // legacy abort behaviour into the node's JSON-lines log. The wait is bounded anyway.
        const signal = AbortSignal.timeout(Math.min(wait, maxWaitMs));
        job = await jobs.wait(id, { signal });
      }
      // A result (or failure) is acknowledged only once it is on disk.
      if (job.status === "done" || job.status === "failed") await jobs.durable?.();
      const workers = _workers(job, jobs.workers?.(id));
      if (job.status === "failed") {
        return _json(409, {
          ..._status(job, undefined),
          ...(job.errorKind === "replicas_disagree" && workers.length > 0
            ? { workers, replicas_agree: false }
            : {}),
        });
      }
      if (job.status !== "done") return _json(202, _status(job, jobs.progress?.(id)));
      const files = jobs.outputTree?.(id);
      return _json(200, {
        job_id: job.jobId,
        status: job.status,
        exit_code: job.exitCode ?? null,
        completion: job.completion,
        error: _jobError(job),
        output: (job.stdout ?? new Uint8Array()).toBase64(),
        stderr: (job.stderr ?? new Uint8Array()).toBase64(),
        receipt: job.receipt,
        worker_peer_id: workers[0]?.peer_id ?? job.workerPeerId,
        workers,
        replicas_agree: true,
        module_hash: job.manifest.payload.module_cid,
        input_hash: job.manifest.payload.input,
        ...(files ? { files: files.toBase64() } : {}),
      });
    } catch (error) {
      const status = error instanceof TypeError || error instanceof RangeError ||
          error instanceof SyntaxError
        ? 400
        : 500;
      return _json(status, { error: errorMessage(error) });
    }
  };
}

async function _metrics(
  request: Request,
  metrics: NonNullable<LocalApiOptions["metrics"]>,
): Promise<Response> {
  await request.body?.cancel();
  if (request.method !== "GET" && request.method !== "HEAD") {
    return _json(405, { error: "Use GET /metrics" });
  }
  const body = await metrics.render();
  return new Response(request.method === "HEAD" ? null : body, {
    headers: { "content-type": metrics.contentType, "cache-control": "no-store" },
  });
}

async function _submit(request: Request, jobs: JobService): Promise<Response> {
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > MAX_API_BODY_BYTES) {
    await request.body?.cancel();
    return _json(413, { error: `Cannot accept job: body over ${MAX_API_BODY_BYTES} bytes` });
  }
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let size = 0;
  for await (const chunk of request.body ?? []) {
    size += chunk.length;
    if (size > MAX_API_BODY_BYTES) {
      return _json(413, { error: `Cannot accept job: body over ${MAX_API_BODY_BYTES} bytes` });
    }
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(await new Blob(chunks).text());
  } catch {
    throw new SyntaxError("Cannot parse job: the body must be JSON");
  }
  const { module, options } = parseSubmitRequest(body);
  const jobId = await jobs.submit(module, options);
  return _json(201, { job_id: jobId, status: jobs.get(jobId)?.status ?? "queued" });
}

function _status(job: JobRecord, progress: JobProgress | undefined): Record<string, unknown> {
  const finished = job.status === "done" || job.status === "failed";
  return {
    job_id: job.jobId,
    status: job.status,
    state: finished ? job.status : progress?.state ?? job.status,
    attempts: job.attempts,
    ...(!finished && progress?.lastReason ? { last_reason: progress.lastReason } : {}),
    ...(!finished && progress?.searchDeadline
      ? { search_deadline: new Date(progress.searchDeadline).toISOString() }
      : {}),
    ...(job.workerPeerId ? { worker_peer_id: job.workerPeerId.split(",")[0] } : {}),
    ...(job.error ? { error: job.error } : {}),
    ...(job.status === "failed" && job.errorKind ? { error_kind: job.errorKind } : {}),
    created_at: new Date(job.createdAt).toISOString(),
    updated_at: new Date(job.updatedAt).toISOString(),
  };
}

function _workers(
  job: JobRecord,
  receipts: { peerId: string; receipt: Receipt }[] | undefined,
): { peer_id: string; output_commitment: string; receipt: Receipt }[] {
  const list = receipts ??
    (job.receipt && job.workerPeerId
      ? [{ peerId: job.workerPeerId.split(",")[0]!, receipt: job.receipt }]
      : []);
  return list.map(({ peerId, receipt }) => ({
    peer_id: peerId,
    output_commitment: toHex(Uint8Array.from(receipt.result.output_commitment)),
    receipt,
  }));
}

/** A job's own error as `{kind, message}` (the kind from its verified receipt), or null. */
function _jobError(
  job: Pick<JobRecord, "completion" | "error" | "receipt">,
): { kind: string; message: string } | null {
  const kind = job.receipt?.result.metrics.extra.error ??
    (job.completion === "length" ? "output_limit" : undefined);
  if (!kind && (job.completion === "stop" || job.completion === undefined)) return null;
  const name = kind ?? "error";
  const text = job.error ?? name;
  return {
    kind: name,
    message: text.startsWith(`${name}: `) ? text.slice(name.length + 2) : text,
  };
}

function _json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
