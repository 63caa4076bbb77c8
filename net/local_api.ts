/**
 * The node's local HTTP API, a `(Request) => Promise<Response>` handler meant for 127.0.0.1 and
 * guarded by a bearer token:
 *
 * - `POST /jobs` with JSON `{module, input?, cpu?, memory_bytes?, timeout_ms?, replicas?,
 *   worker?}` (`module` and `input` base64) → `201 {job_id, status}`.
 * - `GET /jobs/:id` → `200 {job_id, status, attempts, worker_peer_id?, error?}`.
 * - `GET /jobs/:id/result[?wait=MS]` → `200 {job_id, status:"done", exit_code, completion,
 *   output, stderr, receipt, worker_peer_id, module_hash, input_hash}` (base64 bytes; the
 *   receipt already verified by the node), `202` with the status while not finished, `409`
 *   with the error when the job failed, `404` when unknown.
 *
 * Errors are JSON `{error}`. A missing or wrong token gives `401`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { timingSafeEqual } from "node:crypto";
import type { JobRecord } from "./job_store.ts";
import type { SubmitOptions } from "./scheduler.ts";

/** Largest request body accepted, in bytes (a 64 MiB module in base64, with room). */
export const MAX_API_BODY_BYTES = 96 * 1024 * 1024;

/** The part of a scheduler the API uses. */
export interface JobService {
  /** Start a job; resolves with its id. */
  submit(module: Uint8Array, options?: SubmitOptions): Promise<string>;
  /** A job, or `undefined`. */
  get(jobId: string): JobRecord | undefined;
  /** Wait until a job is finished or the signal aborts. */
  wait(jobId: string, options?: { signal?: AbortSignal }): Promise<JobRecord>;
}

/** Options of {@linkcode createLocalApiHandler}. */
export interface LocalApiOptions {
  /** The bearer token clients must send. */
  token: string;
  /** Where jobs go. */
  jobs: JobService;
  /** Longest `?wait=` honoured, in ms. @default {60000} */
  maxWaitMs?: number;
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
  const { token, jobs, maxWaitMs = 60_000 } = options;
  if (typeof token !== "string" || token.length < 16) {
    throw new TypeError("Cannot make local API: token must be at least 16 characters");
  }
  const expected = new TextEncoder().encode(`Bearer ${token}`);
  return async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const given = new TextEncoder().encode(request.headers.get("authorization") ?? "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      await request.body?.cancel();
      return _json(401, { error: "Cannot use the API: missing or wrong bearer token" });
    }
    const parts = url.pathname.split("/").filter(Boolean);
    try {
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
      if (parts.length === 2) return _json(200, _status(job));
      if (parts[2] !== "result") return _json(404, { error: "Not found" });
      const wait = Number(url.searchParams.get("wait") ?? "0");
      if (!Number.isFinite(wait) || wait < 0) {
        return _json(400, { error: "Cannot wait: ?wait= must be a number of ms" });
      }
      if (wait > 0 && job.status !== "done" && job.status !== "failed") {
        const signal = AbortSignal.any([
          AbortSignal.timeout(Math.min(wait, maxWaitMs)),
          request.signal,
        ]);
        job = await jobs.wait(id, { signal });
      }
      if (job.status === "failed") return _json(409, _status(job));
      if (job.status !== "done") return _json(202, _status(job));
      return _json(200, {
        job_id: job.jobId,
        status: job.status,
        exit_code: job.exitCode ?? null,
        completion: job.completion,
        output: Buffer.from(job.stdout ?? new Uint8Array()).toString("base64"),
        stderr: Buffer.from(job.stderr ?? new Uint8Array()).toString("base64"),
        receipt: job.receipt,
        worker_peer_id: job.workerPeerId,
        module_hash: job.manifest.payload.module_cid,
        input_hash: job.manifest.payload.input,
        ...(job.error ? { error: job.error } : {}),
      });
    } catch (error) {
      const status = error instanceof TypeError || error instanceof RangeError ||
          error instanceof SyntaxError
        ? 400
        : 500;
      return _json(status, { error: error instanceof Error ? error.message : String(error) });
    }
  };
}

async function _submit(request: Request, jobs: JobService): Promise<Response> {
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > MAX_API_BODY_BYTES) {
    await request.body?.cancel();
    return _json(413, { error: `Cannot accept job: body over ${MAX_API_BODY_BYTES} bytes` });
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body ?? []) {
    size += chunk.length;
    if (size > MAX_API_BODY_BYTES) {
      return _json(413, { error: `Cannot accept job: body over ${MAX_API_BODY_BYTES} bytes` });
    }
    chunks.push(chunk);
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new SyntaxError("Cannot parse job: the body must be JSON");
  }
  if (typeof body !== "object" || body === null || typeof body.module !== "string") {
    throw new TypeError("Cannot accept job: module must be a base64 string");
  }
  const options: SubmitOptions = {};
  if (body.input !== undefined) {
    if (typeof body.input !== "string") {
      throw new TypeError("Cannot accept job: input must be base64");
    }
    options.input = new Uint8Array(Buffer.from(body.input, "base64"));
  }
  const numbers = {
    cpu: "cpu",
    memory_bytes: "memoryBytes",
    timeout_ms: "timeoutMs",
    replicas: "replicas",
  } as const;
  for (const [field, option] of Object.entries(numbers)) {
    const value = body[field];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Cannot accept job: ${field} must be a number`);
    }
    options[option] = value;
  }
  if (body.worker !== undefined) {
    if (typeof body.worker !== "string") {
      throw new TypeError("Cannot accept job: worker must be a PeerId");
    }
    options.worker = body.worker;
  }
  const jobId = await jobs.submit(new Uint8Array(Buffer.from(body.module, "base64")), options);
  return _json(201, { job_id: jobId, status: jobs.get(jobId)?.status ?? "queued" });
}

function _status(job: JobRecord): Record<string, unknown> {
  return {
    job_id: job.jobId,
    status: job.status,
    attempts: job.attempts,
    ...(job.workerPeerId ? { worker_peer_id: job.workerPeerId } : {}),
    ...(job.error ? { error: job.error } : {}),
    created_at: new Date(job.createdAt).toISOString(),
    updated_at: new Date(job.updatedAt).toISOString(),
  };
}

function _json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
