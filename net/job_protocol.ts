/**
 * The job-offer protocol `/phase/job-offer/1.0.0`, as the reference defines it: JSON, one
 * message per stream in each direction, 64 KiB cap. A requester offers a job; the worker
 * accepts it (reserving a slot) or rejects it with one of the listed reasons. Nonces are checked
 * against replay with a bounded, time-windowed set ({@linkcode NonceGuard}).
 *
 * `estimated_start` is a Unix time in seconds (integer).
 *
 * @module
 */
import { type MessageStreamLike, readStreamMessage } from "./node_info.ts";
import { errorMessage } from "../util/error_message.ts";
import { jsonChecks } from "../util/json_checks.ts";
import { parseStrictJson } from "../util/strict_json.ts";

/** The protocol id of job offers. */
export const JOB_OFFER_PROTOCOL = "/phase/job-offer/1.0.0";

/** The largest offer or answer accepted, in bytes. */
export const MAX_OFFER_BYTES = 64 * 1024;

/** What a job needs from a worker. */
export interface JobRequirements {
  /** CPU cores. */
  cpu_cores: number;
  /** Memory in MiB. */
  memory_mb: number;
  /** Wall-clock limit in seconds. */
  timeout_seconds: number;
  /** Required architecture, such as `x86_64`. */
  arch: string;
  /** Required WASM runtime, such as `wasi-preview1`. */
  wasm_runtime: string;
}

/** An offer of a job to a worker. */
export interface JobOffer {
  /** The hex job id (SHA-256 of the job manifest's signed bytes). */
  job_id: string;
  /** A fresh random string, never reused: the worker refuses a nonce it has seen. */
  nonce: string;
  /** `sha256:<hex>` of the module. */
  module_hash: string;
  /** What the job needs. */
  requirements: JobRequirements;
}

/** Why a worker refused an offer. */
export type RejectReason =
  | { InsufficientResources: { missing: string } }
  | { ArchMismatch: { required: string; available: string } }
  | { RuntimeNotSupported: { required: string } }
  | "QueueFull"
  | { InvalidRequest: { details: string } };

/** A worker's answer to an offer. */
export type OfferResponse =
  | { Accepted: { job_id: string; estimated_start: number; node_peer_id: string } }
  | { Rejected: { job_id: string; reason: RejectReason } };

const _HEX64 = /^[0-9a-f]{64}$/;
const _NONCE = /^[\x21-\x7e]{8,128}$/;
const _SHA256 = /^sha256:[0-9a-f]{64}$/;
const _NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Encode a message as JSON bytes, refusing more than {@linkcode MAX_OFFER_BYTES}.
 *
 * @example
 * ```ts
 * import { encodeOfferMessage } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeOfferMessage("QueueFull");
 * assert.equal(new TextDecoder().decode(bytes), '"QueueFull"');
 * ```
 */
export function encodeOfferMessage(message: JobOffer | OfferResponse | string): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(message));
  if (bytes.length > MAX_OFFER_BYTES) {
    throw new RangeError(
      `Cannot send job offer message: ${bytes.length} bytes exceeds the ${MAX_OFFER_BYTES} byte cap`,
    );
  }
  return bytes;
}

/**
 * Parse and validate a job offer.
 *
 * @throws {RangeError} If it is over the cap.
 * @throws {SyntaxError} If it is not JSON.
 * @throws {TypeError} If a field is missing or malformed.
 *
 * @example
 * ```ts
 * import { encodeOfferMessage, parseJobOffer } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const offer = {
 *   job_id: "ab".repeat(32), nonce: "n-0123456789", module_hash: `sha256:${"cd".repeat(32)}`,
 *   requirements: { cpu_cores: 1, memory_mb: 64, timeout_seconds: 5, arch: "x86_64",
 *     wasm_runtime: "wasi-preview1" },
 * };
 * assert.deepEqual(parseJobOffer(encodeOfferMessage(offer)), offer);
 * assert.throws(() => parseJobOffer(encodeOfferMessage({ ...offer, nonce: 7 } as never)), TypeError);
 * ```
 */
export function parseJobOffer(bytes: Uint8Array): JobOffer {
  const obj = _check.object(_json(bytes, "job offer"), "job offer");
  const req = _check.object(obj.requirements, "requirements");
  return {
    job_id: _check.match(obj.job_id, _HEX64, "job_id"),
    nonce: _check.match(obj.nonce, _NONCE, "nonce"),
    module_hash: _check.match(obj.module_hash, _SHA256, "module_hash"),
    requirements: {
      cpu_cores: _check.count(req.cpu_cores, "cpu_cores"),
      memory_mb: _check.count(req.memory_mb, "memory_mb"),
      timeout_seconds: _check.count(req.timeout_seconds, "timeout_seconds"),
      arch: _check.match(req.arch, _NAME, "arch"),
      wasm_runtime: _check.match(req.wasm_runtime, _NAME, "wasm_runtime"),
    },
  };
}

/**
 * Parse and validate a worker's answer to an offer.
 *
 * @throws {RangeError} If it is over the cap.
 * @throws {SyntaxError} If it is not JSON.
 * @throws {TypeError} If it is neither a valid `Accepted` nor a valid `Rejected`.
 *
 * @example
 * ```ts
 * import { parseOfferResponse } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode(
 *   `{"Rejected":{"job_id":"${"ab".repeat(32)}","reason":"QueueFull"}}`,
 * );
 * assert.deepEqual(parseOfferResponse(bytes), {
 *   Rejected: { job_id: "ab".repeat(32), reason: "QueueFull" },
 * });
 * ```
 */
export function parseOfferResponse(bytes: Uint8Array): OfferResponse {
  const obj = _check.object(_json(bytes, "offer answer"), "offer answer");
  const keys = Object.keys(obj);
  if (keys.length !== 1) {
    throw new TypeError("Cannot accept offer answer: expected exactly Accepted or Rejected");
  }
  if (obj.Accepted !== undefined) {
    const a = _check.object(obj.Accepted, "Accepted");
    return {
      Accepted: {
        job_id: _check.match(a.job_id, _HEX64, "job_id"),
        estimated_start: _check.count(a.estimated_start, "estimated_start"),
        node_peer_id: _check.match(
          a.node_peer_id,
          /^[1-9A-HJ-NP-Za-km-z]{32,128}$/,
          "node_peer_id",
        ),
      },
    };
  }
  if (obj.Rejected !== undefined) {
    const r = _check.object(obj.Rejected, "Rejected");
    return {
      Rejected: {
        job_id: _check.string(r.job_id, "job_id", 128),
        reason: parseRejectReason(r.reason),
      },
    };
  }
  throw new TypeError("Cannot accept offer answer: expected exactly Accepted or Rejected");
}

/**
 * Describe a reject reason in one line, such as `QueueFull` or `ArchMismatch: required
 * riscv64, available x86_64`.
 *
 * @example
 * ```ts
 * import { describeReason } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(describeReason({ RuntimeNotSupported: { required: "wasi-p2" } }),
 *   "RuntimeNotSupported: required wasi-p2");
 * ```
 */
export function describeReason(reason: RejectReason): string {
  if (typeof reason === "string") return reason;
  const [name, fields] = Object.entries(reason)[0]!;
  return `${name}: ${
    Object.entries(fields as Record<string, string>).map(([k, v]) => `${k} ${v}`).join(", ")
  }`;
}

/** Options of {@linkcode NonceGuard}. */
export interface NonceGuardOptions {
  /** How long a nonce is remembered, in ms. @default {600000} (10 min) */
  windowMs?: number;
  /** Most nonces remembered; past it, the oldest are forgotten first. @default {65536} */
  maxEntries?: number;
}

/**
 * Remembers offer nonces for a time window, in bounded memory, and refuses one seen before.
 *
 * @example
 * ```ts
 * import { NonceGuard } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * const guard = new NonceGuard({ windowMs: 1000, maxEntries: 2 });
 * assert.equal(guard.check("nonce-aaaa", 0), true);
 * assert.equal(guard.check("nonce-aaaa", 10), false);
 * assert.equal(guard.check("nonce-aaaa", 2000), true); // outside the window
 * ```
 */
export class NonceGuard {
  #seen = new Map<string, number>();
  #windowMs: number;
  #maxEntries: number;

  /**
   * Make an empty guard.
   *
   * @example
   * ```ts
   * import { NonceGuard } from "./job_protocol.ts";
   * const guard = new NonceGuard();
   * guard.check("nonce-0001");
   * ```
   */
  constructor(options: NonceGuardOptions = {}) {
    const { windowMs = 600_000, maxEntries = 65_536 } = options;
    if (!(windowMs > 0) || !Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError("Cannot make nonce guard: windowMs and maxEntries must be positive");
    }
    this.#windowMs = windowMs;
    this.#maxEntries = maxEntries;
  }

  /** Nonces currently remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /** True (and remember it) if `nonce` is fresh; false if it was seen within the window. */
  check(nonce: string, now: number = Date.now()): boolean {
    // Entries are in insertion order, so expired ones sit at the front.
    for (const [old, at] of this.#seen) {
      if (now - at < this.#windowMs) break;
      this.#seen.delete(old);
    }
    const at = this.#seen.get(nonce);
    if (at !== undefined && now - at < this.#windowMs) return false;
    this.#seen.delete(nonce);
    while (this.#seen.size >= this.#maxEntries) {
      this.#seen.delete(this.#seen.keys().next().value!);
    }
    this.#seen.set(nonce, now);
    return true;
  }
}

/**
 * Answer one offer on a stream: read it (capped), ask `decide`, send the answer, close. A
 * malformed offer gets `Rejected` with `InvalidRequest` (job id `""` when it was unreadable).
 *
 * @example
 * ```ts
 * import { sendJobOffer, serveJobOffer } from "./job_protocol.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [requester, worker] = await streamPair();
 * const offer = {
 *   job_id: "ab".repeat(32), nonce: "n-0123456789", module_hash: `sha256:${"cd".repeat(32)}`,
 *   requirements: { cpu_cores: 1, memory_mb: 64, timeout_seconds: 5, arch: "x86_64",
 *     wasm_runtime: "wasi-preview1" },
 * };
 * const [answer] = await Promise.all([
 *   sendJobOffer(requester, offer),
 *   serveJobOffer(worker, (o) => ({ Rejected: { job_id: o.job_id, reason: "QueueFull" } })),
 * ]);
 * assert.deepEqual(answer, { Rejected: { job_id: offer.job_id, reason: "QueueFull" } });
 * ```
 */
export async function serveJobOffer(
  stream: MessageStreamLike,
  decide: (offer: JobOffer) => OfferResponse | Promise<OfferResponse>,
  options: { signal?: AbortSignal } = {},
): Promise<OfferResponse> {
  const { signal } = options;
  const opts = signal ? { signal } : {};
  try {
    const bytes = await readStreamMessage(stream, { maxBytes: MAX_OFFER_BYTES, ...opts });
    let answer: OfferResponse;
    try {
      answer = await decide(parseJobOffer(bytes));
    } catch (error) {
      if (!(error instanceof TypeError || error instanceof SyntaxError)) throw error;
      answer = {
        Rejected: {
          job_id: _jobIdOf(bytes),
          reason: { InvalidRequest: { details: errorMessage(error).slice(0, 512) } },
        },
      };
    }
    stream.send(encodeOfferMessage(answer));
    await stream.close(opts);
    return answer;
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

/**
 * Send an offer on a fresh stream and read the answer; the answer must name the offered job.
 *
 * @throws {TypeError} If the answer is malformed or names another job.
 *
 * @example
 * ```ts
 * import { sendJobOffer } from "./job_protocol.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [requester, evil] = await streamPair();
 * evil.send(new TextEncoder().encode('"Accepted"'));
 * await evil.close();
 * const offer = {
 *   job_id: "ab".repeat(32), nonce: "n-0123456789", module_hash: `sha256:${"cd".repeat(32)}`,
 *   requirements: { cpu_cores: 1, memory_mb: 64, timeout_seconds: 5, arch: "x86_64",
 *     wasm_runtime: "wasi-preview1" },
 * };
 * await assert.rejects(sendJobOffer(requester, offer), TypeError);
 * ```
 */
export async function sendJobOffer(
  stream: MessageStreamLike,
  offer: JobOffer,
  options: { signal?: AbortSignal } = {},
): Promise<OfferResponse> {
  const { signal } = options;
  const opts = signal ? { signal } : {};
  try {
    const reading = readStreamMessage(stream, { maxBytes: MAX_OFFER_BYTES, ...opts });
    reading.catch(() => {});
    stream.send(encodeOfferMessage(offer));
    await stream.close(opts);
    const answer = parseOfferResponse(await reading);
    const jobId = "Accepted" in answer ? answer.Accepted.job_id : answer.Rejected.job_id;
    if (jobId !== offer.job_id) {
      throw new TypeError(
        `Cannot accept offer answer: it names job ${jobId}, expected ${offer.job_id}`,
      );
    }
    return answer;
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

function _jobIdOf(bytes: Uint8Array): string {
  try {
    const id = JSON.parse(new TextDecoder().decode(bytes))?.job_id;
    return typeof id === "string" && _HEX64.test(id) ? id : "";
  } catch {
    return "";
  }
}

/**
 * Validate a reject reason a peer sent (in an offer answer or a job answer).
 *
 * @throws {TypeError} If it is not one of the listed reasons with short string fields.
 *
 * @example
 * ```ts
 * import { parseRejectReason } from "./job_protocol.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseRejectReason("QueueFull"), "QueueFull");
 * assert.throws(() => parseRejectReason({ InvalidRequest: { details: 7 } }), TypeError);
 * assert.throws(() => parseRejectReason({ Bribe: {} }), TypeError);
 * ```
 */
export function parseRejectReason(value: unknown): RejectReason {
  if (value === "QueueFull") return "QueueFull";
  const obj = _check.object(value, "reason");
  const keys = Object.keys(obj);
  const f = keys.length === 1 ? _check.object(obj[keys[0]!], keys[0]!) : {};
  switch (keys.length === 1 ? keys[0] : "") {
    case "InsufficientResources":
      return { InsufficientResources: { missing: _check.string(f.missing, "missing", 512) } };
    case "ArchMismatch":
      return {
        ArchMismatch: {
          required: _check.string(f.required, "required", 64),
          available: _check.string(f.available, "available", 64),
        },
      };
    case "RuntimeNotSupported":
      return { RuntimeNotSupported: { required: _check.string(f.required, "required", 64) } };
    case "InvalidRequest":
      return { InvalidRequest: { details: _check.string(f.details, "details", 1024) } };
  }
  throw new TypeError("Cannot accept offer answer: unknown reject reason");
}

function _json(bytes: Uint8Array, what: string): unknown {
  if (bytes.length > MAX_OFFER_BYTES) {
    throw new RangeError(
      `Cannot accept ${what}: ${bytes.length} bytes exceeds the ${MAX_OFFER_BYTES} byte cap`,
    );
  }
  try {
    return parseStrictJson(bytes, { what, maxBytes: MAX_OFFER_BYTES, numbers: "finite" });
  } catch (cause) {
    throw new SyntaxError(errorMessage(cause), { cause });
  }
}

const _check = jsonChecks("Cannot accept job offer message");
