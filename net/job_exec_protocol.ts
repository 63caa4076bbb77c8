/**
 * The execution protocol `/phase/job-exec/1.0.0` (ours; the reference stopped at offers).
 *
 * One message per stream in each direction, the writer closing its side to end it. A message
 * is `u32be(json length) || json || blobs`, the JSON naming the blob lengths in order.
 *
 * Request: `{manifest, input_len, module_len}` then the input, then the module (`module_len` 0:
 * not sent). The manifest is the requester's signed `phase-manifest:v1`.
 * Answers: `{"NeedModule":{job_id}}` (the worker lacks the module: ask again with it),
 * `{"Done":{job_id, exit_code, completion, error?, stdout_len, stderr_len, receipt}}` then stdout
 * and stderr, or `{"Rejected":{job_id, reason}}` with a job-offer reject reason.
 *
 * Every message is capped; the worker aborts the job when the requester resets the stream or
 * goes away.
 *
 * @module
 */
import type { JobManifest } from "../runtime/job_manifest.ts";
import { JOB_KINDS, jobKind, MAX_JOB_ARGS } from "../runtime/job_kinds.ts";
import { parseReceipt, type Receipt } from "../runtime/receipt.ts";
import { type MessageStreamLike, readStreamMessage } from "./node_info.ts";
import { parseRejectReason, type RejectReason } from "./job_protocol.ts";
import { errorMessage } from "../util/error_message.ts";
import { jsonChecks } from "../util/json_checks.ts";

/** The protocol id of job execution. */
export const JOB_EXEC_PROTOCOL = "/phase/job-exec/1.0.0";

/** Largest JSON part of any message, in bytes. */
export const MAX_EXEC_JSON_BYTES = 64 * 1024;
/** Largest input sent with a job, in bytes. */
export const MAX_EXEC_INPUT_BYTES = 16 * 1024 * 1024;
/** Largest module sent with a job, in bytes. */
export const MAX_EXEC_MODULE_BYTES = 64 * 1024 * 1024;
/** Largest stdout plus stderr sent back, in bytes. */
export const MAX_EXEC_OUTPUT_BYTES = 16 * 1024 * 1024;
/** Most arguments (and most environment entries) a job manifest may carry. */
export { MAX_JOB_ARGS };

/** A request to run a job. */
export interface ExecRequest {
  /** The requester's signed job manifest. */
  manifest: JobManifest;
  /** The stdin bytes; their hash must be the manifest's `input`. */
  input: Uint8Array;
  /** The module, or `undefined` to ask the worker to use its stored copy. */
  module?: Uint8Array | undefined;
}

/** A finished job as the worker reports it. */
export interface ExecDone {
  /** The job id. */
  job_id: string;
  /** The exit code, or null when the job did not end by itself. */
  exit_code: number | null;
  /** How it ended. */
  completion: Receipt["result"]["completion"];
  /** Why it failed, if it did. */
  error?: string;
  /** The worker's signed receipt. */
  receipt: Receipt;
  /** The job's stdout. */
  stdout: Uint8Array;
  /** The job's stderr. */
  stderr: Uint8Array;
}

/** A worker's answer to an {@linkcode ExecRequest}. */
export type ExecResponse =
  | { NeedModule: { job_id: string } }
  | { Done: ExecDone }
  | { Rejected: { job_id: string; reason: RejectReason } };

/**
 * Encode a message: `u32be(json length) || json || blobs`.
 *
 * @example
 * ```ts
 * import { decodeFrame, encodeFrame } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeFrame({ a: 1 }, [new Uint8Array([7, 8])]);
 * const { json, rest } = decodeFrame(bytes);
 * assert.deepEqual(json, { a: 1 });
 * assert.deepEqual(rest, new Uint8Array([7, 8]));
 * ```
 */
export function encodeFrame(json: unknown, blobs: Uint8Array[] = []): Uint8Array {
  const head = new TextEncoder().encode(JSON.stringify(json));
  if (head.length > MAX_EXEC_JSON_BYTES) {
    throw new RangeError(
      `Cannot send job message: its JSON is ${head.length} bytes, over the ${MAX_EXEC_JSON_BYTES} byte cap`,
    );
  }
  const out = new Uint8Array(4 + head.length + blobs.reduce((n, b) => n + b.length, 0));
  new DataView(out.buffer).setUint32(0, head.length);
  out.set(head, 4);
  let offset = 4 + head.length;
  for (const blob of blobs) {
    out.set(blob, offset);
    offset += blob.length;
  }
  return out;
}

/**
 * Split a message into its JSON and the bytes after it.
 *
 * @throws {SyntaxError} If the frame is short or its JSON does not parse.
 * @throws {RangeError} If its JSON is over {@linkcode MAX_EXEC_JSON_BYTES}.
 *
 * @example
 * ```ts
 * import { decodeFrame } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeFrame(new Uint8Array([0, 0, 0, 9, 1])), SyntaxError);
 * ```
 */
export function decodeFrame(bytes: Uint8Array): { json: unknown; rest: Uint8Array } {
  if (bytes.length < 4) throw new SyntaxError("Cannot parse job message: shorter than 4 bytes");
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (length > MAX_EXEC_JSON_BYTES) {
    throw new RangeError(
      `Cannot accept job message: its JSON is ${length} bytes, over the ${MAX_EXEC_JSON_BYTES} byte cap`,
    );
  }
  if (4 + length > bytes.length) throw new SyntaxError("Cannot parse job message: truncated");
  let json: unknown;
  try {
    json = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(4, 4 + length)),
    );
  } catch (cause) {
    throw new SyntaxError(`Cannot parse job message: ${errorMessage(cause)}`, { cause });
  }
  return { json, rest: bytes.subarray(4 + length) };
}

/**
 * Parse an execution request; checks the manifest's shape (not its signature).
 *
 * @throws {TypeError} If a field is malformed or the blob lengths do not add up.
 *
 * @example
 * ```ts
 * import { encodeExecRequest, parseExecRequest } from "./job_exec_protocol.ts";
 * import { signJobManifest } from "../runtime/job_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const manifest = await signJobManifest({ kind: "wasm", module_cid: `sha256:${"a".repeat(64)}`,
 *   input: `sha256:${"b".repeat(64)}`, max_duration_ms: 1000, max_memory_bytes: 65536 },
 *   { keyPair: await generateKeyPair() });
 * const request = { manifest, input: new Uint8Array([1]), module: undefined };
 * assert.deepEqual(parseExecRequest(encodeExecRequest(request)), request);
 * ```
 */
export function parseExecRequest(bytes: Uint8Array): ExecRequest {
  const { json, rest } = decodeFrame(bytes);
  const obj = _check.object(json, "request");
  const inputLen = _check.count(obj.input_len, "input_len", MAX_EXEC_INPUT_BYTES);
  const moduleLen = _check.count(obj.module_len, "module_len", MAX_EXEC_MODULE_BYTES);
  _expectRest(rest, inputLen + moduleLen, "job request");
  return {
    manifest: parseManifestShape(obj.manifest),
    input: rest.slice(0, inputLen),
    module: moduleLen > 0 ? rest.slice(inputLen) : undefined,
  };
}

/**
 * Encode an execution request.
 *
 * @example
 * ```ts
 * import { decodeFrame, encodeExecRequest } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeExecRequest({ manifest: {} as never, input: new Uint8Array(3) });
 * assert.equal((decodeFrame(bytes).json as { input_len: number }).input_len, 3);
 * ```
 */
export function encodeExecRequest(request: ExecRequest): Uint8Array {
  const module = request.module ?? new Uint8Array();
  return encodeFrame(
    { manifest: request.manifest, input_len: request.input.length, module_len: module.length },
    [request.input, module],
  );
}

/**
 * Encode a worker's answer.
 *
 * @example
 * ```ts
 * import { encodeExecResponse, parseExecResponse } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const answer = { NeedModule: { job_id: "ab".repeat(32) } };
 * assert.deepEqual(parseExecResponse(encodeExecResponse(answer)), answer);
 * ```
 */
export function encodeExecResponse(response: ExecResponse): Uint8Array {
  if (!("Done" in response)) return encodeFrame(response);
  const { stdout, stderr, ...rest } = response.Done;
  return encodeFrame(
    { Done: { ...rest, stdout_len: stdout.length, stderr_len: stderr.length } },
    [stdout, stderr],
  );
}

/**
 * Parse a worker's answer; a `Done` answer's receipt is checked for shape only (the caller
 * verifies it against the worker's key).
 *
 * @throws {TypeError} If it is malformed.
 *
 * @example
 * ```ts
 * import { encodeFrame, parseExecResponse } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseExecResponse(encodeFrame({ Done: { job_id: 1 } })), TypeError);
 * ```
 */
export function parseExecResponse(bytes: Uint8Array): ExecResponse {
  const { json, rest } = decodeFrame(bytes);
  const obj = _check.object(json, "answer");
  if (obj.NeedModule !== undefined) {
    return { NeedModule: { job_id: _jobId(_check.object(obj.NeedModule, "NeedModule").job_id) } };
  }
  if (obj.Rejected !== undefined) {
    const r = _check.object(obj.Rejected, "Rejected");
    if (r.reason === undefined) throw new TypeError("Cannot accept job answer: reason missing");
    return {
      Rejected: {
        job_id: _check.string(r.job_id, "job_id", 128),
        reason: parseRejectReason(r.reason),
      },
    };
  }
  if (obj.Done === undefined) throw new TypeError("Cannot accept job answer: unknown kind");
  const d = _check.object(obj.Done, "Done");
  const stdoutLen = _check.count(d.stdout_len, "stdout_len", MAX_EXEC_OUTPUT_BYTES);
  const stderrLen = _check.count(d.stderr_len, "stderr_len", MAX_EXEC_OUTPUT_BYTES);
  _expectRest(rest, stdoutLen + stderrLen, "job answer");
  if (d.exit_code !== null && (typeof d.exit_code !== "number" || !Number.isInteger(d.exit_code))) {
    throw new TypeError("Cannot accept job answer: exit_code must be an integer or null");
  }
  const completion = d.completion;
  if (
    completion !== "stop" && completion !== "length" && completion !== "cancelled" &&
    completion !== "error"
  ) {
    throw new TypeError("Cannot accept job answer: completion is malformed");
  }
  const done: ExecDone = {
    job_id: _jobId(d.job_id),
    exit_code: d.exit_code as number | null,
    completion,
    receipt: parseReceipt(d.receipt),
    stdout: rest.slice(0, stdoutLen),
    stderr: rest.slice(stdoutLen),
  };
  if (typeof d.error === "string") done.error = d.error.slice(0, 1024);
  return { Done: done };
}

/**
 * Check the shape of a job manifest received from a peer (not its signature).
 *
 * @throws {TypeError} If a field is missing or malformed.
 *
 * @example
 * ```ts
 * import { parseManifestShape } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseManifestShape({ schema_version: 2 }), TypeError);
 * ```
 */
export function parseManifestShape(value: unknown): JobManifest {
  const m = _manifest.object(value, "manifest");
  const p = _manifest.object(m.payload, "payload");
  if (m.schema_version !== 1) _manifest.fail("schema_version must be 1");
  if (typeof p.kind !== "string" || !Object.hasOwn(JOB_KINDS, p.kind)) {
    _manifest.fail(`payload kind must be ${Object.keys(JOB_KINDS).join(" or ")}`);
  }
  const manifest: JobManifest = {
    schema_version: 1,
    payload: jobKind(p.kind).parsePayload(p),
    signer_pubkey: _manifest.match(m.signer_pubkey, /^[0-9a-f]{64}$/, "signer_pubkey"),
    signature: _manifest.match(m.signature, /^[0-9a-f]{128}$/, "signature"),
    created_at: _time(m.created_at, "created_at"),
  };
  if (m.expires_at !== undefined) manifest.expires_at = _time(m.expires_at, "expires_at");
  return manifest;
}

function _time(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length > 40 || Number.isNaN(Date.parse(value))) {
    _manifest.fail(`${what} must be an RFC 3339 time`);
  }
  return value as string;
}

/** What {@linkcode serveJobExec} passes to its handler. */
export interface ExecContext {
  /** Aborts when the requester resets the stream or goes away, or the server stops. */
  signal: AbortSignal;
}

/**
 * Serve one execution request on a stream: read it (capped), run `handle` with a signal that
 * aborts when the requester goes away, send the answer, close.
 *
 * @example
 * ```ts
 * import { requestJobExec, serveJobExec } from "./job_exec_protocol.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [requester, worker] = await streamPair();
 * const manifest = { schema_version: 1, payload: { kind: "wasm", module_cid: `sha256:${"a".repeat(64)}`,
 *   input: `sha256:${"b".repeat(64)}`, max_duration_ms: 1, max_memory_bytes: 1 },
 *   signer_pubkey: "c".repeat(64), signature: "d".repeat(128), created_at: "2026-01-01T00:00:00Z" } as const;
 * const [answer] = await Promise.all([
 *   requestJobExec(requester, { manifest, input: new Uint8Array() }),
 *   serveJobExec(worker, () => Promise.resolve({ NeedModule: { job_id: "e".repeat(64) } })),
 * ]);
 * assert.deepEqual(answer, { NeedModule: { job_id: "e".repeat(64) } });
 * ```
 */
export async function serveJobExec(
  stream: MessageStreamLike,
  handle: (request: ExecRequest, context: ExecContext) => Promise<ExecResponse>,
  options: { signal?: AbortSignal; readTimeoutMs?: number } = {},
): Promise<ExecResponse> {
  const { signal, readTimeoutMs = 30_000 } = options;
  const gone = new AbortController();
  const onClose = () => gone.abort(new Error("The requester went away"));
  try {
    const readSignal = AbortSignal.any([
      AbortSignal.timeout(readTimeoutMs),
      ...(signal ? [signal] : []),
    ]);
    const bytes = await readStreamMessage(stream, {
      maxBytes: 4 + MAX_EXEC_JSON_BYTES + MAX_EXEC_INPUT_BYTES + MAX_EXEC_MODULE_BYTES,
      signal: readSignal,
    });
    stream.addEventListener("close", onClose);
    let answer: ExecResponse;
    try {
      const request = parseExecRequest(bytes);
      answer = await handle(request, {
        signal: AbortSignal.any([gone.signal, ...(signal ? [signal] : [])]),
      });
    } catch (error) {
      if (!(error instanceof TypeError || error instanceof SyntaxError)) throw error;
      answer = {
        Rejected: {
          job_id: "",
          reason: { InvalidRequest: { details: errorMessage(error).slice(0, 512) } },
        },
      };
    }
    stream.removeEventListener("close", onClose);
    if (gone.signal.aborted) throw gone.signal.reason;
    await sendAll(stream, encodeExecResponse(answer), signal);
    await stream.close(signal ? { signal } : {});
    return answer;
  } catch (error) {
    stream.removeEventListener("close", onClose);
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

/**
 * Send one execution request and read the answer (capped). Aborting `signal` resets the
 * stream, which cancels the job on the worker.
 *
 * @example
 * ```ts
 * import { requestJobExec } from "./job_exec_protocol.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [requester, silent] = await streamPair();
 * const manifest = {} as never;
 * await assert.rejects(
 *   requestJobExec(requester, { manifest, input: new Uint8Array() }, { signal: AbortSignal.timeout(20) }),
 * );
 * silent.abort(new Error("done"));
 * ```
 */
export async function requestJobExec(
  stream: MessageStreamLike,
  request: ExecRequest,
  options: { signal?: AbortSignal } = {},
): Promise<ExecResponse> {
  const { signal } = options;
  try {
    const reading = readStreamMessage(stream, {
      maxBytes: 4 + MAX_EXEC_JSON_BYTES + 2 * MAX_EXEC_OUTPUT_BYTES,
      ...(signal ? { signal } : {}),
    });
    reading.catch(() => {});
    await sendAll(stream, encodeExecRequest(request), signal);
    await stream.close(signal ? { signal } : {});
    return parseExecResponse(await reading);
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

/**
 * Send bytes in 64 KiB pieces, waiting for `drain` when the stream's buffer is full.
 *
 * @example
 * ```ts
 * import { sendAll } from "./job_exec_protocol.ts";
 * import { readStreamMessage } from "./node_info.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = await streamPair();
 * const reading = readStreamMessage(b, { maxBytes: 1 << 20 });
 * await sendAll(a, new Uint8Array(300_000).fill(5));
 * await a.close();
 * assert.equal((await reading).length, 300_000);
 * await b.close();
 * ```
 */
export async function sendAll(
  stream: MessageStreamLike,
  bytes: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  const piece = 64 * 1024;
  for (let offset = 0; offset < bytes.length; offset += piece) {
    signal?.throwIfAborted();
    const ok = stream.send(bytes.subarray(offset, offset + piece));
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const done = (error?: unknown) => {
          stream.removeEventListener("drain", onDrain);
          stream.removeEventListener("close", onClose);
          signal?.removeEventListener("abort", onAbort);
          if (error) reject(error);
          else resolve();
        };
        const onDrain = () => done();
        const onClose = () => done(new Error("Cannot send: the stream closed"));
        const onAbort = () => done(signal!.reason);
        stream.addEventListener("drain", onDrain);
        stream.addEventListener("close", onClose);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }
}

const _check = jsonChecks("Cannot accept job message");
const _manifest = jsonChecks("Cannot accept job manifest");

function _jobId(value: unknown): string {
  return _check.match(value, /^[0-9a-f]{64}$/, "job_id");
}

function _expectRest(rest: Uint8Array, length: number, what: string): void {
  if (rest.length !== length) {
    throw new TypeError(
      `Cannot accept ${what}: expected ${length} bytes after the JSON, got ${rest.length}`,
    );
  }
}
