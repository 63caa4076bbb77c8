/**
 * The options of a job submission, declared once for the three places that handle them: the
 * `Scheduler` (ranges, defaults, the signed payload fields), the local API (the JSON
 * body of `POST /jobs`) and the `Client` (which writes that body). {@linkcode SUBMIT_FIELDS}
 * maps each option to its JSON field.
 *
 * @module
 */
import { MAX_JOB_ARGS } from "../runtime/job_kinds.ts";
import type { WasmJobPayload } from "../runtime/job_manifest.ts";
import { jsonChecks } from "../util/json_checks.ts";
import { MAX_EXEC_OUTPUT_BYTES } from "./job_exec_protocol.ts";
import type { BootRequirement } from "./boot_attestation.ts";

/** Options of a job submission (`Scheduler.submit`, `Client.submit`, `POST /jobs`). */
export interface SubmitOptions {
  /** Stdin bytes. @default {empty} */
  input?: Uint8Array;
  /** CPU cores. @default {1} */
  cpu?: number;
  /** Linear memory limit in bytes. @default {67108864} (64 MiB) */
  memoryBytes?: number;
  /** Wall-clock limit in ms. @default {10000} */
  timeoutMs?: number;
  /** Workers that must run the job and agree on its output. @default {1} */
  replicas?: number;
  /** Run only on this worker (PeerId); with one replica only. @default any */
  worker?: string;
  /** Arguments after `argv[0]`, signed into the manifest. @default {[]} */
  args?: string[];
  /** The job's whole environment, signed into the manifest. @default {{}} */
  env?: Record<string, string>;
  /** Cap on stdout and stderr together, in bytes. @default {the worker's (16 MiB)} */
  maxOutputBytes?: number;
  /** Fuel limit (instructions); the job stops with `fuel_exhausted` past it. @default unmetered */
  fuel?: bigint | number | string;
  /** How long to look for a usable worker, in ms. @default {the scheduler's workerSearchTimeoutMs} */
  searchTimeoutMs?: number;
  /**
   * The job's input files: an encoded file tree (`encodeFileTree`), named by its hash in the
   * manifest (`inputs`); see `Scheduler.submit`. @default {no files}
   */
  inputs?: Uint8Array;
  /**
   * Offer the job only to workers whose node info shows a boot attestation, signed by their own
   * PeerId key, that names this publisher key id (hex public key) among its signers; their
   * receipts must carry its `boot_manifest_hash` and `boot_sequence` (docs/boot.md).
   * @default {no requirement}
   */
  requireBootSigner?: string;
  /** With `requireBootSigner`: the lowest boot sequence accepted. @default {0} (any) */
  minBootSequence?: number;
}

/** One submit option: its JSON field, its JSON type and, for numbers, the largest value. */
export interface SubmitField {
  /** The JSON field of `POST /jobs`. */
  field: string;
  /** `integer` (from 1 to `max`), `bytes` (base64), `string`, `strings`, `env` or `fuel`. */
  type: "integer" | "bytes" | "string" | "strings" | "env" | "fuel";
  /** Largest value of an `integer`. */
  max?: number;
}

/** Every submit option, with its JSON field; the module itself travels as `module` (base64). */
export const SUBMIT_FIELDS: Readonly<Record<keyof SubmitOptions, SubmitField>> = {
  input: { field: "input", type: "bytes" },
  cpu: { field: "cpu", type: "integer", max: 256 },
  memoryBytes: { field: "memory_bytes", type: "integer", max: 2 ** 32 },
  timeoutMs: { field: "timeout_ms", type: "integer", max: 24 * 3600_000 },
  replicas: { field: "replicas", type: "integer", max: 16 },
  worker: { field: "worker", type: "string" },
  args: { field: "args", type: "strings" },
  env: { field: "env", type: "env" },
  maxOutputBytes: { field: "max_output_bytes", type: "integer", max: MAX_EXEC_OUTPUT_BYTES },
  fuel: { field: "fuel", type: "fuel" },
  searchTimeoutMs: { field: "search_timeout_ms", type: "integer", max: 24 * 3600_000 },
  inputs: { field: "inputs", type: "bytes" },
  requireBootSigner: { field: "require_boot_signer", type: "string" },
  minBootSequence: { field: "min_boot_sequence", type: "integer", max: Number.MAX_SAFE_INTEGER },
};

/** Submit options checked, with their defaults; see {@linkcode checkSubmitOptions}. */
export interface CheckedSubmitOptions {
  /** Stdin bytes. */
  input: Uint8Array;
  /** CPU cores. */
  cpu: number;
  /** Linear memory limit in bytes. */
  memoryBytes: number;
  /** Wall-clock limit in ms. */
  timeoutMs: number;
  /** Replicas. */
  replicas: number;
  /** The pinned worker, if any. */
  worker: string | undefined;
  /** The optional payload fields (absent when default), ready to sign. */
  payload: Pick<WasmJobPayload, "args" | "env" | "fuel" | "max_output_bytes">;
  /** How long to look for a worker, if the job sets it. */
  searchTimeoutMs: number | undefined;
  /** The boot attestation workers must show, if the job sets one. */
  boot: BootRequirement | undefined;
}

/**
 * Check submit options and fill in the defaults (what the scheduler does before it signs).
 *
 * @throws {RangeError} If a number is out of range or the fuel is not a whole number.
 * @throws {TypeError} If `args` or `env` is malformed.
 *
 * @example
 * ```ts
 * import { checkSubmitOptions } from "./submit_options.ts";
 * import assert from "node:assert/strict";
 *
 * const checked = checkSubmitOptions({ fuel: 1000n, args: ["-v"] });
 * assert.deepEqual(checked.payload, { args: ["-v"], fuel: "1000" });
 * assert.equal(checked.memoryBytes, 64 * 2 ** 20);
 * assert.throws(() => checkSubmitOptions({ replicas: 17 }), RangeError);
 * assert.throws(() => checkSubmitOptions({ minBootSequence: 3 }), TypeError);
 * ```
 */
export function checkSubmitOptions(options: SubmitOptions): CheckedSubmitOptions {
  const {
    input = new Uint8Array(),
    cpu = 1,
    memoryBytes = 64 * 2 ** 20,
    timeoutMs = 10_000,
    replicas = 1,
    worker,
    args = [],
    env = {},
    maxOutputBytes,
    fuel,
    searchTimeoutMs,
    requireBootSigner,
    minBootSequence,
  } = options;
  const numbers = {
    cpu,
    memoryBytes,
    timeoutMs,
    replicas,
    maxOutputBytes,
    searchTimeoutMs,
    minBootSequence,
  };
  for (const [name, value] of Object.entries(numbers)) {
    const max = SUBMIT_FIELDS[name as keyof SubmitOptions].max!;
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new RangeError(
        `Cannot submit job: ${name} must be an integer from 1 to ${max}, got ${value}`,
      );
    }
  }
  return {
    input,
    cpu,
    memoryBytes,
    timeoutMs,
    replicas,
    worker,
    payload: {
      ..._payloadExtra(args, env, fuel),
      ...(maxOutputBytes !== undefined ? { max_output_bytes: maxOutputBytes } : {}),
    },
    searchTimeoutMs,
    boot: _bootRequirement(requireBootSigner, minBootSequence),
  };
}

/** The boot requirement of a submission, checked. */
function _bootRequirement(
  signer: string | undefined,
  minSequence: number | undefined,
): BootRequirement | undefined {
  if (signer === undefined) {
    if (minSequence !== undefined) {
      throw new TypeError(
        "Cannot submit job: minBootSequence needs requireBootSigner (the publisher key)",
      );
    }
    return undefined;
  }
  if (typeof signer !== "string" || !/^[0-9a-fA-F]{64}$/.test(signer)) {
    throw new TypeError(
      `Cannot submit job: requireBootSigner must be a hex public key (64 hex digits), got '${
        String(signer).slice(0, 80)
      }'`,
    );
  }
  return { signer: signer.toLowerCase(), minSequence: minSequence ?? 0 };
}

/**
 * The JSON body of `POST /jobs` for a module and its options (what the `Client` sends).
 *
 * @example
 * ```ts
 * import { encodeSubmitRequest, parseSubmitRequest } from "./submit_options.ts";
 * import assert from "node:assert/strict";
 *
 * const body = encodeSubmitRequest(new Uint8Array([1]), { timeoutMs: 500, fuel: 7n });
 * assert.deepEqual(body, { module: "AQ==", timeout_ms: 500, fuel: "7" });
 * assert.deepEqual(parseSubmitRequest(body).options, { timeoutMs: 500, fuel: "7" });
 * ```
 */
export function encodeSubmitRequest(
  module: Uint8Array,
  options: SubmitOptions,
): Record<string, unknown> {
  const body: Record<string, unknown> = { module: module.toBase64() };
  for (const [option, { field, type }] of Object.entries(SUBMIT_FIELDS)) {
    const value = options[option as keyof SubmitOptions];
    if (value === undefined) continue;
    body[field] = type === "bytes"
      ? (value as Uint8Array).toBase64()
      : type === "fuel"
      ? String(value)
      : value;
  }
  return body;
}

/**
 * Parse the JSON body of `POST /jobs`: every field's type is checked here, ranges by the
 * scheduler ({@linkcode checkSubmitOptions}). Absent fields stay absent.
 *
 * @throws {TypeError} If the body is not an object, the module is missing or a field has the
 *   wrong type.
 *
 * @example
 * ```ts
 * import { parseSubmitRequest } from "./submit_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseSubmitRequest({ module: "AA==", env: { K: 1 } }), TypeError);
 * ```
 */
export function parseSubmitRequest(
  body: unknown,
): { module: Uint8Array; options: SubmitOptions } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    _check.fail("module must be a base64 string");
  }
  const json = body as Record<string, unknown>;
  if (typeof json.module !== "string") _check.fail("module must be a base64 string");
  const options: Record<string, unknown> = {};
  for (const [option, { field, type }] of Object.entries(SUBMIT_FIELDS)) {
    const value = json[field];
    if (value === undefined) continue;
    options[option] = _parseField(value, field, type);
  }
  return { module: _fromBase64(json.module, "module"), options: options as SubmitOptions };
}

const _check = jsonChecks("Cannot accept job");

function _parseField(value: unknown, field: string, type: SubmitField["type"]): unknown {
  switch (type) {
    case "integer":
      if (typeof value !== "number") _check.fail(`${field} must be a number`);
      return value;
    case "bytes":
      return _fromBase64(value, field);
    case "string":
      if (typeof value !== "string") _check.fail(`${field} must be a string`);
      return value;
    case "strings":
      if (!Array.isArray(value) || !value.every((a) => typeof a === "string")) {
        _check.fail(`${field} must be a list of strings`);
      }
      return value;
    case "env":
      if (
        typeof value !== "object" || value === null || Array.isArray(value) ||
        !Object.values(value).every((v) => typeof v === "string")
      ) {
        _check.fail(`${field} must map names to strings`);
      }
      return value;
    case "fuel":
      if (typeof value !== "string" && typeof value !== "number") {
        _check.fail(`${field} must be a decimal string or an integer`);
      }
      return value;
  }
}

function _fromBase64(value: unknown, field: string): Uint8Array {
  if (typeof value !== "string") _check.fail(`${field} must be base64`);
  try {
    return Uint8Array.fromBase64(value as string);
  } catch (cause) {
    throw new TypeError(`Cannot accept job: ${field} must be base64`, { cause });
  }
}

/** The optional payload fields of a submission, checked; defaults are left out. */
function _payloadExtra(
  args: string[],
  env: Record<string, string>,
  fuel: bigint | number | string | undefined,
): Pick<WasmJobPayload, "args" | "env" | "fuel"> {
  if (
    !Array.isArray(args) || args.length > MAX_JOB_ARGS || !args.every((a) => typeof a === "string")
  ) {
    throw new TypeError(`Cannot submit job: args must be at most ${MAX_JOB_ARGS} strings`);
  }
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError("Cannot submit job: env must map names to strings");
  }
  const entries = Object.entries(env);
  for (const [key, value] of entries) {
    if (key.length === 0 || key.includes("=") || typeof value !== "string") {
      throw new TypeError(
        `Cannot submit job: env entry '${key}' must have a name without '=' and a string value`,
      );
    }
  }
  if (entries.length > MAX_JOB_ARGS) {
    throw new TypeError(`Cannot submit job: env must have at most ${MAX_JOB_ARGS} entries`);
  }
  let fuelText: string | undefined;
  if (fuel !== undefined) {
    fuelText = String(fuel);
    if (!/^\d{1,19}$/.test(fuelText) || BigInt(fuelText) >= 2n ** 63n) {
      throw new RangeError(
        `Cannot submit job: fuel must be a whole number from 0 to 2^63-1, got ${fuelText}`,
      );
    }
  }
  return {
    ...(args.length > 0 ? { args: [...args] } : {}),
    ...(entries.length > 0 ? { env: { ...env } } : {}),
    ...(fuelText !== undefined ? { fuel: fuelText } : {}),
  };
}
