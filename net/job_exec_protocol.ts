/**
 * The execution protocol `/phase/job-exec/2.0.0` (ours; the reference stopped at offers).
 *
 * A frame is `u32be(json length) || json`, the JSON (at most {@linkcode MAX_EXEC_JSON_BYTES},
 * read strictly: no duplicate keys, integers only) naming the lengths of the raw bytes after it.
 * One job per stream, in this order, so a worker checks who and what before it accepts a byte
 * of module or input:
 *
 * 1. Requester: the header frame `{manifest, input_len, module_len, inputs_len?}`, then it waits.
 *    The manifest is the requester's signed `phase-manifest:v1`; `module_len` is 0 when it does
 *    not send the module; `inputs_len` (absent: 0) is the length of the job's input file tree
 *    (`phase-tree:v1`, at most {@linkcode MAX_EXEC_TREE_BYTES}), only for a manifest that names
 *    `inputs`. A requester sends nothing more until the worker asks.
 * 2. Worker: checks the header (signature, the requester's accepted offer for that job id, the
 *    allow-list, the declared sizes against its caps and its bytes in flight) and answers either
 *    a final answer (below), or `{"Send":{job_id, module}}`: send the input, and the module too
 *    when `module` is true (a worker runs a cached module only for a requester that sent those
 *    bytes itself), and the input tree too when `inputs` is true (absent: false; the same rule
 *    for trees, content-addressed by the manifest's `inputs`).
 * 3. Requester: exactly `input_len` input bytes, then `module_len` module bytes if asked, then
 *    `inputs_len` tree bytes if asked, then it closes its side. The worker hashes them as they
 *    arrive against the manifest (`input`, `module_cid`, `inputs`).
 * 4. Worker, the final answer: `{"Done":{job_id, exit_code, completion, error?, stdout_len,
 *    stderr_len, files_len?, receipt}}` then stdout, stderr and (for a job with files) its
 *    output tree (at most {@linkcode MAX_EXEC_TREE_BYTES}; the receipt's `outputs_hash`), `{"Rejected":{job_id, reason}}` with a
 *    job-offer reject reason, or `{"NeedModule":{job_id}}` (the header sent no module and the
 *    worker needs it: ask again on a new stream with the module).
 *
 * Under {@linkcode JOB_EXEC_PROTOCOL_EAGER} (`/phase/job-exec/2.1.0`, the same messages), a
 * request that sends no module and no input tree, with at most {@linkcode MAX_EAGER_INPUT_BYTES}
 * of input, may mark its header `input_sent: true`, send the input right after it and close its
 * side: a worker that needs nothing more runs it without the `Send` round trip; one that needs
 * the module answers `NeedModule` as before. A requester uses it with a worker whose identify
 * lists that protocol.
 *
 * Bytes a requester sends before it was asked, more than it declared, or after a final answer
 * reset the stream. The worker aborts the job when the requester resets the stream or goes
 * away; a requester whose stream to the worker dies before the answer fails with "the worker
 * connection was lost".
 *
 * @module
 */
import type { JobManifest } from "../runtime/job_manifest.ts";
import { JOB_KINDS, jobKind, MAX_JOB_ARGS } from "../runtime/job_kinds.ts";
import { parseReceipt, type Receipt } from "../runtime/receipt.ts";
import { createHash } from "node:crypto";
import type { MessageStreamLike } from "./node_info.ts";
import { parseStrictJson } from "../util/strict_json.ts";
import { parseRejectReason, type RejectReason } from "./job_protocol.ts";
import { errorMessage } from "../util/error_message.ts";
import { jsonChecks } from "../util/json_checks.ts";

/** The protocol id of job execution. */
export const JOB_EXEC_PROTOCOL = "/phase/job-exec/2.0.0";
/**
 * The protocol id of job execution with eager input: {@linkcode JOB_EXEC_PROTOCOL} plus the
 * header's optional `input_sent` (see the module doc).
 */
export const JOB_EXEC_PROTOCOL_EAGER = "/phase/job-exec/2.1.0";
/** Largest input a request may send with its header, unasked, under the eager protocol. */
export const MAX_EAGER_INPUT_BYTES = 64 * 1024;

/** Largest JSON part of any message, in bytes. */
export const MAX_EXEC_JSON_BYTES = 64 * 1024;
/** Largest input sent with a job, in bytes. */
export const MAX_EXEC_INPUT_BYTES = 16 * 1024 * 1024;
/** Largest module sent with a job, in bytes. */
export const MAX_EXEC_MODULE_BYTES = 64 * 1024 * 1024;
/**
 * Largest file tree (encoded, `phase-tree:v1`) sent with a job, and largest sent back with its
 * answer, in bytes: 64 MiB (the default `--fs-max-bytes`) plus room for the entries' names.
 */
export const MAX_EXEC_TREE_BYTES = 80 * 1024 * 1024;
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
  /**
   * The input file tree (`encodeFileTree`), for a manifest that names `inputs` (its hash); a
   * worker that holds it for this requester does not ask for it.
   */
  inputs?: Uint8Array | undefined;
  /** On the worker: the input came with the header, unasked (eager protocol). */
  input_sent?: boolean;
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
  /** The job's output tree (`encodeFileTree`), for a job with files that ran. */
  files?: Uint8Array;
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
  const json = _parseJson(bytes.subarray(4, 4 + length), "job message");
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
  const [inputLen, moduleLen, inputsLen] = _sections(obj, rest, "job request", {
    input_len: MAX_EXEC_INPUT_BYTES,
    module_len: MAX_EXEC_MODULE_BYTES,
  }, "inputs_len");
  const request: ExecRequest = {
    manifest: parseManifestShape(obj.manifest),
    input: rest.slice(0, inputLen),
    module: moduleLen > 0 ? rest.slice(inputLen, inputLen + moduleLen) : undefined,
  };
  if (inputsLen !== undefined) request.inputs = rest.slice(inputLen + moduleLen);
  return request;
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
  const { inputs } = request;
  return encodeFrame(
    {
      manifest: request.manifest,
      input_len: request.input.length,
      module_len: module.length,
      ...(inputs !== undefined ? { inputs_len: inputs.length } : {}),
    },
    [request.input, module, ...(inputs !== undefined ? [inputs] : [])],
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
  const { stdout, stderr, files, ...rest } = response.Done;
  const lengths = {
    stdout_len: stdout.length,
    stderr_len: stderr.length,
    ...(files !== undefined ? { files_len: files.length } : {}),
  };
  return encodeFrame({ Done: { ...rest, ...lengths } }, [
    stdout,
    stderr,
    ...(files ? [files] : []),
  ]);
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
  const [stdoutLen, stderrLen, filesLen] = _sections(d, rest, "job answer", {
    stdout_len: MAX_EXEC_OUTPUT_BYTES,
    stderr_len: MAX_EXEC_OUTPUT_BYTES,
  }, "files_len");
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
    stderr: rest.slice(stdoutLen, stdoutLen + stderrLen),
  };
  if (filesLen !== undefined) done.files = rest.slice(stdoutLen + stderrLen);
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

/** The header of an execution request: what a worker checks before it accepts module bytes. */
export interface ExecHeader {
  /** The requester's signed job manifest. */
  manifest: JobManifest;
  /** Length of the input (stdin) the requester will send. */
  input_len: number;
  /** Length of the module it can send, or 0 when it does not send one. */
  module_len: number;
  /** Length of the input tree it can send; absent for a job without files. */
  inputs_len?: number;
  /**
   * The input follows the header unasked and nothing else will (eager protocol only; no module,
   * no input tree, input at most {@linkcode MAX_EAGER_INPUT_BYTES}); absent: false.
   */
  input_sent?: boolean;
}

/**
 * A worker's decision on an {@linkcode ExecHeader}: a final answer, or which bytes to send.
 */
export type ExecAdmission = ExecResponse | {
  send: { job_id: string; module: boolean; inputs?: boolean };
};

/** What {@linkcode serveJobExec} asks of the worker. */
export interface ExecHandler {
  /** Decide on a header before any module or input byte is accepted. */
  admit(header: ExecHeader, context: ExecContext): Promise<ExecAdmission>;
  /** Run the admitted job whose bytes arrived and matched the manifest's hashes. */
  run(request: ExecRequest, context: ExecContext): Promise<ExecResponse>;
}

/**
 * Check the JSON of a header frame.
 *
 * @throws {TypeError} If a field is malformed or a length is over its cap.
 *
 * @example
 * ```ts
 * import { parseExecHeader } from "./job_exec_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseExecHeader({ manifest: {}, input_len: 1, module_len: 2 ** 40 }), TypeError);
 * ```
 */
export function parseExecHeader(json: unknown, options: { eager?: boolean } = {}): ExecHeader {
  const obj = _check.object(json, "request");
  const input_len = _check.count(obj.input_len, "input_len", MAX_EXEC_INPUT_BYTES);
  const module_len = _check.count(obj.module_len, "module_len", MAX_EXEC_MODULE_BYTES);
  const header: ExecHeader = { manifest: parseManifestShape(obj.manifest), input_len, module_len };
  if (obj.inputs_len !== undefined) {
    header.inputs_len = _check.count(obj.inputs_len, "inputs_len", MAX_EXEC_TREE_BYTES);
    if (header.manifest.payload.inputs === undefined) {
      throw new TypeError(
        "Cannot accept job request: inputs_len given but the manifest names no inputs",
      );
    }
  }
  if (obj.input_sent !== undefined && obj.input_sent !== false) {
    if (obj.input_sent !== true) {
      throw new TypeError("Cannot accept job request: input_sent must be a boolean");
    }
    if (!options.eager) {
      throw new TypeError(`Cannot accept job request: input_sent needs ${JOB_EXEC_PROTOCOL_EAGER}`);
    }
    if (module_len !== 0 || header.inputs_len !== undefined || input_len > MAX_EAGER_INPUT_BYTES) {
      throw new TypeError(
        `Cannot accept job request: input_sent only without a module or input tree and with at most ${MAX_EAGER_INPUT_BYTES} bytes of input`,
      );
    }
    header.input_sent = true;
  }
  return header;
}

/**
 * Serve one execution request on a stream: read the header (at most
 * {@linkcode MAX_EXEC_JSON_BYTES}), ask `handler.admit`, and only if it says so, accept the
 * declared input (and module) bytes, hashing them as they arrive against the manifest; then
 * `handler.run` with a signal that aborts when the requester goes away, send the answer,
 * close. Bytes the requester sends before it is asked, or beyond what it declared, reset the
 * stream. With `eager` (the stream speaks {@linkcode JOB_EXEC_PROTOCOL_EAGER}), a header with
 * `input_sent` may be followed by its input, and no `Send` is sent for it.
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
 *   serveJobExec(worker, {
 *     admit: () => Promise.resolve({ NeedModule: { job_id: "e".repeat(64) } }),
 *     run: () => Promise.reject(new Error("not reached")),
 *   }),
 * ]);
 * assert.deepEqual(answer, { NeedModule: { job_id: "e".repeat(64) } });
 * ```
 */
export async function serveJobExec(
  stream: MessageStreamLike,
  handler: ExecHandler,
  options: { signal?: AbortSignal; readTimeoutMs?: number; eager?: boolean } = {},
): Promise<ExecResponse> {
  const { signal, readTimeoutMs = 30_000, eager = false } = options;
  const gone = new AbortController();
  const readSignal = AbortSignal.any([
    AbortSignal.timeout(readTimeoutMs),
    ...(signal ? [signal] : []),
  ]);
  // Until the worker asks for bytes, the header frame is all a requester may send (and, eager,
  // a small input).
  const reader = new _StreamReader(
    stream,
    4 + MAX_EXEC_JSON_BYTES + (eager ? MAX_EAGER_INPUT_BYTES : 0),
    readSignal,
  );
  const context: ExecContext = {
    signal: AbortSignal.any([gone.signal, ...(signal ? [signal] : [])]),
  };
  const finish = async (answer: ExecResponse) => {
    if (gone.signal.aborted) throw gone.signal.reason;
    await sendAll(stream, encodeExecResponse(answer), signal);
    await stream.close(signal ? { signal } : {});
    return answer;
  };
  try {
    let header: ExecHeader;
    try {
      header = parseExecHeader(await _readFrame(reader, "job request"), { eager });
    } catch (error) {
      if (!(error instanceof TypeError || error instanceof SyntaxError)) throw error;
      reader.stop();
      return await finish(_invalid("", error));
    }
    const admission = await Promise.race([handler.admit(header, context), reader.failed]);
    if (!("send" in admission)) {
      // A final answer: nothing more is read; any bytes still coming are refused by the close.
      reader.stop();
      return await finish(admission);
    }
    const { job_id, module: wantModule, inputs: wantInputs = false } = admission.send;
    const { manifest, input_len, module_len, inputs_len = 0 } = header;
    const moduleLen = wantModule ? module_len : 0;
    const inputsLen = wantInputs ? inputs_len : 0;
    if (wantModule && module_len === 0) {
      reader.stop();
      return await finish({ NeedModule: { job_id } });
    }
    if (wantInputs && manifest.payload.inputs === undefined) {
      reader.stop();
      return await finish(
        _invalid(job_id, new TypeError("Cannot accept job request: the manifest names no inputs")),
      );
    }
    if (header.input_sent && wantInputs) {
      reader.stop();
      return await finish(
        _invalid(
          job_id,
          new TypeError("Cannot accept job request: an input tree is needed but none was declared"),
        ),
      );
    }
    if (reader.buffered > 0 && !header.input_sent) {
      reader.stop();
      return await finish(
        _invalid(
          job_id,
          new TypeError(
            "Cannot accept job request: bytes were sent before the worker asked for them",
          ),
        ),
      );
    }
    reader.allow(input_len + moduleLen + inputsLen);
    const send = { job_id, module: wantModule, ...(wantInputs ? { inputs: true } : {}) };
    // Eager: the input is (being) sent and nothing else is needed, so there is nothing to ask.
    if (!header.input_sent) await sendAll(stream, encodeFrame({ Send: send }), signal);
    let input: Uint8Array;
    let module: Uint8Array | undefined;
    let inputs: Uint8Array | undefined;
    try {
      input = await reader.take(input_len, manifest.payload.input, "input");
      if (wantModule) module = await reader.take(moduleLen, manifest.payload.module_cid, "module");
      if (wantInputs) inputs = await reader.take(inputsLen, manifest.payload.inputs, "input tree");
      await reader.end();
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      return await finish(_invalid(job_id, error));
    }
    stream.addEventListener("close", onClose);
    const answer = await handler.run({
      manifest,
      input,
      module,
      inputs,
      ...(header.input_sent ? { input_sent: true } : {}),
    }, context);
    stream.removeEventListener("close", onClose);
    return await finish(answer);
  } catch (error) {
    reader.stop();
    stream.removeEventListener("close", onClose);
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
  function onClose() {
    gone.abort(new Error("The requester went away"));
  }
}

/**
 * Send one execution request and read the answer (capped): the header first, then the input
 * (and module) only when the worker asks for them. A request without a module whose worker
 * wants one answers `NeedModule` (ask again with the module). Aborting `signal` resets the
 * stream, which cancels the job on the worker. With `eager` (the stream speaks
 * {@linkcode JOB_EXEC_PROTOCOL_EAGER}), a request without module or input tree and with a small
 * input sends the input with the header and closes its side at once.
 *
 * @throws {Error} "the worker connection was lost" when the stream dies before the answer.
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
  options: { signal?: AbortSignal; eager?: boolean } = {},
): Promise<ExecResponse> {
  const { signal, eager = false } = options;
  const module = request.module ?? new Uint8Array();
  const inputSent = eager && request.module === undefined && request.inputs === undefined &&
    request.input.length <= MAX_EAGER_INPUT_BYTES;
  const reader = new _StreamReader(
    stream,
    4 + MAX_EXEC_JSON_BYTES + 2 * MAX_EXEC_OUTPUT_BYTES +
      (request.inputs !== undefined ? MAX_EXEC_TREE_BYTES : 0),
    signal,
  );
  try {
    try {
      await sendAll(
        stream,
        encodeFrame({
          manifest: request.manifest,
          input_len: request.input.length,
          module_len: module.length,
          ...(request.inputs !== undefined ? { inputs_len: request.inputs.length } : {}),
          ...(inputSent ? { input_sent: true } : {}),
        }, inputSent ? [request.input] : []),
        signal,
      );
      if (inputSent) await stream.close(signal ? { signal } : {});
      const first = await _readFrame(reader, "job answer").catch((error) => {
        // A worker that died (kill -9) ends the stream without an answer.
        if (reader.ended && error instanceof TypeError) {
          throw new Error("the stream ended before the answer", { cause: error });
        }
        throw error;
      });
      const send = _sendOf(first);
      if (!send) {
        const answer = parseExecResponse(encodeFrame(first, [await reader.rest()]));
        if (!inputSent) await stream.close(signal ? { signal } : {});
        return answer;
      }
      if (send.module && request.module === undefined) {
        reader.stop();
        stream.abort(new Error("The module is sent on a new stream"));
        return { NeedModule: { job_id: send.job_id } };
      }
      if (inputSent) {
        throw new TypeError(
          "Cannot accept job message: Send after the input was sent with the header",
        );
      }
      await sendAll(stream, request.input, signal);
      if (send.module) await sendAll(stream, module, signal);
      if (send.inputs) {
        if (request.inputs === undefined) {
          throw new TypeError("Cannot send job: the worker asked for an input tree it has none of");
        }
        await sendAll(stream, request.inputs, signal);
      }
      await stream.close(signal ? { signal } : {});
      const answer = await reader.rest();
      if (answer.length === 0) throw new Error("the stream ended before the answer");
      return parseExecResponse(answer);
    } catch (error) {
      if (
        signal?.aborted || error instanceof TypeError || error instanceof SyntaxError ||
        error instanceof RangeError
      ) throw error;
      throw new Error(`Cannot run job: the worker connection was lost (${errorMessage(error)})`, {
        cause: error,
      });
    }
  } catch (error) {
    reader.stop();
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

function _sendOf(
  json: unknown,
): { job_id: string; module: boolean; inputs: boolean } | undefined {
  if (typeof json !== "object" || json === null || !("Send" in json)) return undefined;
  const send = _check.object((json as { Send: unknown }).Send, "Send");
  if (typeof send.module !== "boolean") {
    throw new TypeError("Cannot accept job message: module must be a boolean");
  }
  if (send.inputs !== undefined && typeof send.inputs !== "boolean") {
    throw new TypeError("Cannot accept job message: inputs must be a boolean");
  }
  return { job_id: _jobId(send.job_id), module: send.module, inputs: send.inputs === true };
}

function _invalid(jobId: string, error: unknown): ExecResponse {
  return {
    Rejected: {
      job_id: jobId,
      reason: { InvalidRequest: { details: errorMessage(error).slice(0, 512) } },
    },
  };
}

async function _readFrame(reader: _StreamReader, what: string): Promise<unknown> {
  const length = new DataView((await reader.take(4)).buffer).getUint32(0);
  if (length > MAX_EXEC_JSON_BYTES) {
    throw new RangeError(
      `Cannot accept ${what}: its JSON is ${length} bytes, over the ${MAX_EXEC_JSON_BYTES} byte cap`,
    );
  }
  return _parseJson(await reader.take(length), what);
}

function _parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return parseStrictJson(bytes, { what, maxBytes: MAX_EXEC_JSON_BYTES });
  } catch (cause) {
    throw new SyntaxError(errorMessage(cause), { cause });
  }
}

/**
 * Reads a stream piece by piece: `take(n)` waits for `n` bytes. Never buffers more than it was
 * allowed: bytes past `limit` (what the peer may have sent so far) reset the stream.
 */
class _StreamReader {
  #stream: MessageStreamLike;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #received = 0;
  #limit: number;
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  #signal: AbortSignal | undefined;
  #stopped = false;
  #failed = Promise.withResolvers<never>();

  constructor(stream: MessageStreamLike, limit: number, signal?: AbortSignal) {
    this.#failed.promise.catch(() => {});
    this.#stream = stream;
    this.#limit = limit;
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    stream.addEventListener("message", this.#onMessage);
    stream.addEventListener("end", this.#onEnd);
    stream.addEventListener("close", this.#onClose);
    if (signal?.aborted) this.#onAbort();
  }

  /** Allow `more` bytes beyond those already received. */
  allow(more: number): void {
    this.#limit = this.#received - this.#buffered + more;
  }

  /** Bytes received and not yet taken. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Wait for `n` bytes; with `hash`, check they hash to it (`TypeError` if not). */
  /** Whether the peer ended its side of the stream. */
  get ended(): boolean {
    return this.#ended;
  }

  async take(n: number, hash?: string, what = "bytes"): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    const digest = hash === undefined ? undefined : createHash("sha256");
    let at = 0;
    while (at < n) {
      if (this.#buffered === 0) {
        if (this.#error !== undefined) throw this.#error;
        if (this.#ended) {
          throw new TypeError(
            `Cannot accept job ${what}: the stream ended after ${at} of ${n} bytes`,
          );
        }
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      const chunk = this.#chunks[0]!;
      const piece = chunk.subarray(0, n - at);
      out.set(piece, at);
      digest?.update(piece);
      at += piece.length;
      this.#buffered -= piece.length;
      if (piece.length === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(piece.length);
    }
    if (digest && `sha256:${digest.digest("hex")}` !== hash) {
      throw new TypeError(`Cannot accept job ${what}: its bytes do not hash to ${hash}`);
    }
    return out;
  }

  /** Wait for the end of the stream; bytes before it are an error. */
  async end(): Promise<void> {
    while (!this.#ended || this.#buffered > 0) {
      if (this.#buffered > 0) {
        throw new TypeError("Cannot accept job request: more bytes than declared");
      }
      if (this.#error !== undefined) throw this.#error;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    this.stop();
  }

  /** Everything until the end of the stream. */
  async rest(): Promise<Uint8Array> {
    while (!this.#ended) {
      if (this.#error !== undefined) throw this.#error;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    if (this.#error !== undefined) throw this.#error;
    const out = await this.take(this.#buffered);
    this.stop();
    return out;
  }

  /** Stop listening. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stream.removeEventListener("message", this.#onMessage);
    this.#stream.removeEventListener("end", this.#onEnd);
    this.#stream.removeEventListener("close", this.#onClose);
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  /** Rejects when the stream fails (reset, over the limit, aborted). */
  get failed(): Promise<never> {
    return this.#failed.promise;
  }

  #fail(error: unknown): void {
    if (this.#error === undefined) this.#error = error;
    this.#failed.reject(error);
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #onMessage = (event: Event) => {
    const data = (event as Event & { data: Uint8Array | { subarray(): Uint8Array } }).data;
    const chunk = data instanceof Uint8Array ? data : data.subarray();
    this.#received += chunk.length;
    if (this.#received > this.#limit) {
      const error = new RangeError(
        `Cannot read job message: the peer sent more than the ${this.#limit} bytes allowed`,
      );
      this.#fail(error);
      this.stop();
      this.#stream.abort(error);
      return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    this.#poke();
  };

  #onEnd = () => {
    const status = this.#stream.status;
    if (status === "reset" || status === "aborted") {
      this.#fail(new Error(`Cannot read message: the stream was ${status}`));
    }
    this.#ended = true;
    this.#poke();
  };

  #onClose = (event: Event) => {
    const error = (event as Event & { error?: Error }).error;
    if (error) return this.#fail(error);
    queueMicrotask(() => {
      if (this.#stream.readableEnded) this.#onEnd();
      else this.#fail(new Error("Stream closed early"));
    });
  };

  #onAbort = () => {
    const reason = this.#signal!.reason;
    this.#fail(reason);
    this.#stream.abort(reason instanceof Error ? reason : new Error(String(reason)));
  };
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

/**
 * The byte lengths a frame's JSON names, in order: the two `required` fields (each capped), then
 * the optional file tree's (`undefined` when absent); together they must be all of `rest`.
 */
function _sections(
  obj: Record<string, unknown>,
  rest: Uint8Array,
  what: string,
  required: Record<string, number>,
  tree: string,
): [number, number, number | undefined] {
  const [a, b] = Object.entries(required).map(([field, max]) =>
    _check.count(obj[field], field, max)
  );
  const treeLen = obj[tree] === undefined
    ? undefined
    : _check.count(obj[tree], tree, MAX_EXEC_TREE_BYTES);
  _expectRest(rest, a! + b! + (treeLen ?? 0), what);
  return [a!, b!, treeLen];
}

function _expectRest(rest: Uint8Array, length: number, what: string): void {
  if (rest.length !== length) {
    throw new TypeError(
      `Cannot accept ${what}: expected ${length} bytes after the JSON, got ${rest.length}`,
    );
  }
}
