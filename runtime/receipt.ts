/**
 * Phase receipts (`phase-receipt:v1`): what a worker signs about a job it ran.
 *
 * @module
 */
import { fromHex, sha256TagAsync, toHex } from "./digest.ts";
import { signMessage, verifySignature } from "./ed25519.ts";
import { SignatureError } from "./errors.ts";
import { signingBytes } from "./signing_bytes.ts";
import { commitChunksAsync, stdoutChunks } from "./output_commitment.ts";
import { parseStrictJson } from "../util/strict_json.ts";

/** The ASCII domain prefix of receipt signatures. */
export const RECEIPT_PREFIX = "phase-receipt:v1:";

/** Largest receipt text {@linkcode parseReceiptJson} reads, in bytes (1 MiB). */
export const MAX_RECEIPT_BYTES = 1 << 20;

/** How a job ended: ran to its end, hit the output cap, was cancelled, or failed. */
export type Completion = "stop" | "length" | "cancelled" | "error";

/** Metrics of a job run; Phase puts its own facts in `extra` as strings. */
export interface ResultMetrics {
  /** Wall-clock time of the run in milliseconds. */
  total_duration_ms: number;
  /** Always 0 for WASM jobs (a field of the shared format). */
  prompt_tokens: number;
  /** Always 0 for WASM jobs (a field of the shared format). */
  completion_tokens: number;
  /** `module_hash`, `input_hash`, `exit_code`, `peak_memory_bytes`, ... as strings. */
  extra: Record<string, string>;
}

/** The signed result of a job. */
export interface JobResult {
  /** SHA-256 of the canonical JSON of the job payload, as 32 byte values. */
  job_spec_hash: number[];
  /** The output commitment chain value, as 32 byte values. */
  output_commitment: number[];
  /** How many chunks the commitment covers. */
  output_chunk_count: number;
  /** How the job ended. */
  completion: Completion;
  /** Always `null` for WASM jobs. */
  resumption: null;
  /** Metrics of the run. */
  metrics: ResultMetrics;
}

/** A signed receipt in the `phase-receipt:v1` envelope. */
export interface Receipt {
  /** Always 1. */
  schema_version: 1;
  /** The signed result. */
  result: JobResult;
  /** The job id: hex SHA-256 of the job manifest's signed bytes. */
  job_id: string;
  /** The worker's Ed25519 public key, hex. */
  worker_pubkey: string;
  /** Ed25519 signature over {@linkcode receiptSignedBytes}, hex. */
  signature: string;
  /** RFC 3339 UTC time the job completed. */
  completed_at: string;
}

/**
 * The exact bytes a receipt's signature covers: `phase-receipt:v1:` followed by the canonical
 * JSON of `{completed_at, job_id, result, schema_version}`.
 *
 * @example
 * ```ts
 * import { receiptSignedBytes } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = receiptSignedBytes({
 *   schema_version: 1, job_id: "00".repeat(32), completed_at: "2026-11-24T19:00:00Z",
 *   result: {
 *     job_spec_hash: Array(32).fill(0), output_commitment: Array(32).fill(0),
 *     output_chunk_count: 1, completion: "stop", resumption: null,
 *     metrics: { total_duration_ms: 12, prompt_tokens: 0, completion_tokens: 0, extra: {} },
 *   },
 * });
 * assert.ok(new TextDecoder().decode(bytes).startsWith('phase-receipt:v1:{"completed_at"'));
 * ```
 */
export function receiptSignedBytes(
  receipt: Pick<Receipt, "completed_at" | "job_id" | "result" | "schema_version">,
): Uint8Array {
  const { completed_at, job_id, result, schema_version } = receipt;
  return signingBytes(RECEIPT_PREFIX, { completed_at, job_id, result, schema_version });
}

/**
 * Sign a job result as a receipt.
 *
 * @param result The result to sign.
 * @param options The job id, the worker's key pair and the completion time.
 *
 * @example
 * ```ts
 * import { signReceipt, verifyReceipt } from "./receipt.ts";
 * import { generateKeyPair } from "./ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = await generateKeyPair();
 * const receipt = await signReceipt({
 *   job_spec_hash: Array(32).fill(0), output_commitment: Array(32).fill(1),
 *   output_chunk_count: 1, completion: "stop", resumption: null,
 *   metrics: { total_duration_ms: 5, prompt_tokens: 0, completion_tokens: 0, extra: {} },
 * }, { jobId: "00".repeat(32), keyPair: keys });
 * await verifyReceipt(receipt, { publicKey: keys.publicKey });
 * assert.equal(receipt.schema_version, 1);
 * ```
 */
export async function signReceipt(
  result: JobResult,
  options: {
    /** Hex job id. */
    jobId: string;
    /** The worker's key pair. */
    keyPair: { secretKey: Uint8Array; publicKey: Uint8Array };
    /** Completion time. @default {new Date()} */
    completedAt?: Date;
    /**
     * Signs the bytes with `keyPair`'s secret key in place of `signMessage` (a warm pool signs
     * natively, without a round trip to another thread); Ed25519 gives the same signature.
     * @default {signMessage}
     */
    sign?: (message: Uint8Array) => Uint8Array | Promise<Uint8Array>;
  },
): Promise<Receipt> {
  const { jobId, keyPair, completedAt = new Date(), sign } = options;
  const unsigned = {
    schema_version: 1 as const,
    result,
    job_id: jobId,
    completed_at: rfc3339(completedAt),
  };
  const bytes = receiptSignedBytes(unsigned);
  const signature = await (sign ? sign(bytes) : signMessage(bytes, keyPair.secretKey));
  return {
    schema_version: 1,
    result,
    job_id: jobId,
    worker_pubkey: toHex(keyPair.publicKey),
    signature: toHex(signature),
    completed_at: unsigned.completed_at,
  };
}

/** What {@linkcode verifyReceipt} checks besides the signature. */
export interface VerifyReceiptOptions {
  /** The worker key the receipt must be signed by (pinned; never taken from the receipt). */
  publicKey: Uint8Array;
  /** When given, the module bytes: their hash must equal `extra.module_hash`. */
  module?: Uint8Array;
  /** When given, the input bytes: their hash must equal `extra.input_hash`. */
  input?: Uint8Array;
  /** When given, the stdout bytes: they must match the commitment and chunk count. */
  output?: Uint8Array;
  /** When given, the job id the receipt must name. */
  jobId?: string;
}

/**
 * Verify a receipt: its shape, its Ed25519 signature against the pinned key, and, when given,
 * the module, input and output it commits to. Throws on the first failure.
 *
 * @throws {SignatureError} If the signature does not verify or the key is not the pinned one.
 * @throws {TypeError} If the receipt is malformed.
 * @throws {ReceiptMismatchError} If the receipt is validly signed but names another job id,
 * module, input or output than the ones given.
 *
 * @example
 * ```ts
 * import { signReceipt, verifyReceipt } from "./receipt.ts";
 * import { generateKeyPair } from "./ed25519.ts";
 * import { SignatureError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const worker = await generateKeyPair();
 * const receipt = await signReceipt({
 *   job_spec_hash: Array(32).fill(0), output_commitment: Array(32).fill(0),
 *   output_chunk_count: 1, completion: "stop", resumption: null,
 *   metrics: { total_duration_ms: 1, prompt_tokens: 0, completion_tokens: 0, extra: {} },
 * }, { jobId: "00".repeat(32), keyPair: worker });
 * await verifyReceipt(receipt, { publicKey: worker.publicKey });
 * const stranger = await generateKeyPair();
 * await assert.rejects(() => verifyReceipt(receipt, { publicKey: stranger.publicKey }), SignatureError);
 * ```
 */
export async function verifyReceipt(
  receipt: unknown,
  options: VerifyReceiptOptions,
): Promise<Receipt> {
  const checked = parseReceipt(receipt);
  const { publicKey, module, input, output, jobId } = options;
  if (checked.worker_pubkey !== toHex(publicKey)) {
    throw new SignatureError(
      `Cannot verify receipt: signed for key ${checked.worker_pubkey}, expected ${
        toHex(publicKey)
      }`,
    );
  }
  const ok = await verifySignature(
    fromHex(checked.signature),
    receiptSignedBytes(checked),
    publicKey,
  );
  if (!ok) throw new SignatureError("Cannot verify receipt: bad signature");
  const extra = checked.result.metrics.extra;
  if (jobId !== undefined && checked.job_id !== jobId) {
    throw new ReceiptMismatchError("job_id", jobId, checked.job_id);
  }
  if (module !== undefined) {
    _expectHash("module_hash", extra.module_hash, await sha256TagAsync(module));
  }
  if (input !== undefined) {
    _expectHash("input_hash", extra.input_hash, await sha256TagAsync(input));
  }
  if (output !== undefined) {
    const chunks = stdoutChunks(output);
    const commitment = toHex(await commitChunksAsync(chunks));
    const signed = toHex(Uint8Array.from(checked.result.output_commitment));
    if (commitment !== signed) {
      throw new ReceiptMismatchError("output_commitment", signed, commitment);
    }
    if (chunks.length !== checked.result.output_chunk_count) {
      throw new ReceiptMismatchError(
        "output_chunk_count",
        String(checked.result.output_chunk_count),
        String(chunks.length),
      );
    }
  }
  return checked;
}

/**
 * A validly signed receipt that does not describe the module, input, output or job at hand.
 *
 * @example
 * ```ts
 * import { ReceiptMismatchError } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new ReceiptMismatchError("input_hash", "sha256:aa", "sha256:bb");
 * assert.equal(err.message, "Receipt does not match: input_hash: receipt says sha256:aa, got sha256:bb");
 * ```
 */
export class ReceiptMismatchError extends Error {
  /** The field that differs. */
  readonly field: string;
  /** Make the error for `field`, which the receipt says is `signed` but is `actual`. */
  constructor(field: string, signed: string, actual: string, options?: ErrorOptions) {
    super(`Receipt does not match: ${field}: receipt says ${signed}, got ${actual}`, options);
    this.name = "ReceiptMismatchError";
    this.field = field;
  }
}

function _expectHash(field: string, signed: string | undefined, actual: string): void {
  if (signed !== actual) throw new ReceiptMismatchError(field, signed ?? "(nothing)", actual);
}

/**
 * Check that a value has the shape of a `phase-receipt:v1` receipt, and return it typed.
 *
 * @throws {TypeError} Naming the first field that is missing or malformed.
 *
 * @example
 * ```ts
 * import { parseReceipt } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseReceipt({ schema_version: 2 }), TypeError);
 * ```
 */
export function parseReceipt(value: unknown): Receipt {
  const r = _object(value, "receipt");
  if (r.schema_version !== 1) {
    throw new TypeError(
      `Cannot read receipt: unsupported schema_version ${String(r.schema_version)}`,
    );
  }
  _hex(r.job_id, "job_id", 32);
  _hex(r.worker_pubkey, "worker_pubkey", 32);
  _hex(r.signature, "signature", 64);
  if (typeof r.completed_at !== "string" || !RFC3339_UTC.test(r.completed_at)) {
    throw new TypeError("Cannot read receipt: completed_at is not an RFC 3339 UTC time");
  }
  const result = _object(r.result, "result");
  _bytes32(result.job_spec_hash, "result.job_spec_hash");
  _bytes32(result.output_commitment, "result.output_commitment");
  if (
    !Number.isSafeInteger(result.output_chunk_count) || (result.output_chunk_count as number) < 0
  ) {
    throw new TypeError("Cannot read receipt: result.output_chunk_count is not a count");
  }
  if (!["stop", "length", "cancelled", "error"].includes(result.completion as string)) {
    throw new TypeError(
      "Cannot read receipt: result.completion is not stop|length|cancelled|error",
    );
  }
  if (result.resumption !== null) {
    throw new TypeError("Cannot read receipt: result.resumption is not null");
  }
  const metrics = _object(result.metrics, "result.metrics");
  for (const key of ["total_duration_ms", "prompt_tokens", "completion_tokens"]) {
    if (!Number.isSafeInteger(metrics[key])) {
      throw new TypeError(`Cannot read receipt: result.metrics.${key} is not an integer`);
    }
  }
  const extra = _object(metrics.extra, "result.metrics.extra");
  for (const [key, item] of Object.entries(extra)) {
    if (typeof item !== "string") {
      throw new TypeError(`Cannot read receipt: result.metrics.extra.${key} is not a string`);
    }
  }
  return value as Receipt;
}

/**
 * Read a receipt from its JSON text or bytes, strictly (see `util/strict_json.ts`: no duplicate
 * keys, integers only, no lone surrogates, at most {@linkcode MAX_RECEIPT_BYTES}), so that the
 * receipt verified is the one every reader reads; then check its shape as
 * {@linkcode parseReceipt} does. Verify it with {@linkcode verifyReceipt}.
 *
 * @throws {SyntaxError} A `StrictJsonError` for text that is not strict JSON:
 * `Cannot parse receipt: duplicate key 'completion' at result`.
 * @throws {TypeError} Naming the first field that is missing or malformed.
 *
 * @example
 * ```ts
 * import { parseReceiptJson } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseReceiptJson('{"result":{"completion":"error","completion":"stop"}}'), {
 *   name: "StrictJsonError",
 *   message: "Cannot parse receipt: duplicate key 'completion' at result",
 * });
 * ```
 */
export function parseReceiptJson(input: string | Uint8Array): Receipt {
  return parseReceipt(parseStrictJson(input, { what: "receipt", maxBytes: MAX_RECEIPT_BYTES }));
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/**
 * Format a time as RFC 3339 UTC with `Z` and whole seconds, as Phase signs it.
 *
 * @example
 * ```ts
 * import { rfc3339 } from "./receipt.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(rfc3339(new Date(Date.UTC(2026, 10, 24, 19, 0, 0, 450))), "2026-11-24T19:00:00Z");
 * ```
 */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function _object(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`Cannot read receipt: ${name} is not an object`);
  }
  return value as Record<string, unknown>;
}

function _hex(value: unknown, name: string, bytes: number): void {
  if (typeof value !== "string" || !new RegExp(`^[0-9a-f]{${bytes * 2}}$`).test(value)) {
    throw new TypeError(`Cannot read receipt: ${name} is not ${bytes} bytes of lowercase hex`);
  }
}

function _bytes32(value: unknown, name: string): void {
  if (
    !Array.isArray(value) || value.length !== 32 ||
    !value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)
  ) {
    throw new TypeError(`Cannot read receipt: ${name} is not 32 byte values`);
  }
}
