/**
 * The framing between the parent (run_job.ts, sandbox_pool.ts) and a sandbox process
 * (runtime/sandbox_main.ts), which runs jobs one after another.
 *
 * A message (both ways) is generic: `u32be header length`, the header as UTF-8 JSON
 * `[blobLengths, value]`, then the blobs. Every `Uint8Array` anywhere in `value` travels as a
 * blob, replaced in the JSON by `{"\u0000b": index}`, so a new field of a job or an event (bytes
 * or not, nested or not) passes through without a change here.
 *
 * Parent to sandbox (stdin, one message per job): a {@linkcode SandboxRequest}, the job's fields
 * plus `cacheKey` and `cacheBytes`; `module` is left out when the sandbox already holds the
 * module compiled under `cacheKey`.
 *
 * Sandbox to parent (stdout, repeated): `u8 type`, `u32be payload length`, payload. Type 0 is a
 * message holding a {@linkcode SandboxReply} other than output (a job's final file tree, if it
 * had files, is a blob of its `result`, which may then be up to {@linkcode resultFrameBytes}); types 1 and 2 are stdout and
 * stderr bytes, whose payload starts with `f64be memory bytes` (linear memory plus tables, which
 * need not be whole pages and may pass 4 GiB) followed by the data. The parent caps every frame
 * ({@linkcode FrameDecoder}) and checks every event's shape: after it ran a module, the sandbox
 * is the untrusted side.
 *
 * @module
 */
import type { SandboxEvent, SandboxJob } from "./sandbox_core.ts";
import { concatBytes } from "../util/concat_bytes.ts";
import { maxEncodedTreeBytes } from "./file_tree.ts";

/** Largest message header either side accepts. */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/**
 * Largest frame the parent accepts from a sandbox by default: an honest sandbox sends output in
 * frames of at most 128 KiB (64 KiB pending plus one write) and small events.
 */
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * Largest frame the parent accepts for the result of a job with files: {@linkcode MAX_FRAME_BYTES}
 * plus the largest encoding (`phase-tree:v1`) of a tree within the job's caps: its header, then
 * per entry a type byte, a path and a link target (each a u32 length and at most 4096 bytes),
 * plus the file contents. Without files, {@linkcode MAX_FRAME_BYTES}.
 *
 * @example
 * ```ts
 * import { MAX_FRAME_BYTES, resultFrameBytes } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(resultFrameBytes(undefined), MAX_FRAME_BYTES);
 * assert.equal(resultFrameBytes({ maxBytes: 100, maxFiles: 1 }), MAX_FRAME_BYTES + 18 + 8201 + 100);
 * ```
 */
export function resultFrameBytes(
  files: { maxBytes: number; maxFiles: number } | undefined,
): number {
  if (files === undefined) return MAX_FRAME_BYTES;
  return MAX_FRAME_BYTES + maxEncodedTreeBytes(files);
}

/** The JSON key that stands for a blob. */
const BLOB = "\u0000b";

/** Most blobs in one message. */
const MAX_BLOBS = 4096;

/**
 * A job as the parent sends it: the {@linkcode SandboxJob} fields (any new ones included),
 * `module` left out when the sandbox holds it compiled under `cacheKey`.
 */
export type SandboxRequest = Omit<SandboxJob, "module"> & {
  /** The module's bytes; absent when the sandbox has it under `cacheKey`. */
  module?: Uint8Array;
  /**
   * Key of the compiled module in the sandbox's cache: the module's SHA-256 (of bytes the parent
   * holds) and the memory cap it was limited to. Absent: compile and do not cache.
   */
  cacheKey?: string;
  /** Bound of the sandbox's compiled-module cache, in bytes of rewritten module. */
  cacheBytes?: number;
};

/**
 * An event as the sandbox sends it: a {@linkcode SandboxEvent}; on `result`, also whether the
 * job's module is now in the sandbox's cache and which keys the cache dropped.
 */
export type SandboxReply = SandboxEvent & { cached?: boolean; evicted?: string[] };

/**
 * Encode a value as one message, in parts (the header, then each blob as the caller's own bytes,
 * not copied).
 *
 * @example
 * ```ts
 * import { decodeMessage, encodeMessage } from "./sandbox_frames.ts";
 * import { concatBytes } from "../util/concat_bytes.ts";
import { maxEncodedTreeBytes } from "./file_tree.ts";
 * import assert from "node:assert/strict";
 *
 * const value = { a: 1, files: { "x.txt": new Uint8Array([1, 2]) }, list: [new Uint8Array([3])] };
 * const parts = encodeMessage(value);
 * assert.equal(parts.length, 3);
 * assert.deepEqual(decodeMessage(concatBytes(parts)), value);
 * ```
 */
export function encodeMessage(value: unknown): Uint8Array[] {
  const blobs: Uint8Array[] = [];
  const json = JSON.stringify(value, (_key, v) => {
    if (v instanceof Uint8Array) {
      blobs.push(v);
      return { [BLOB]: blobs.length - 1 };
    }
    return v;
  });
  const header = new TextEncoder().encode(
    `[${JSON.stringify(blobs.map((b) => b.length))},${json}]`,
  );
  const head = new Uint8Array(4 + header.length);
  new DataView(head.buffer).setUint32(0, header.length);
  head.set(header, 4);
  return [head, ...blobs];
}

/**
 * Decode one whole message made by {@linkcode encodeMessage}; blobs are views of `bytes`.
 *
 * @throws {SyntaxError} If the bytes are not exactly one well-formed message.
 *
 * @example
 * ```ts
 * import { decodeMessage } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeMessage(new Uint8Array([0, 0])), SyntaxError);
 * ```
 */
export function decodeMessage(bytes: Uint8Array): unknown {
  const header = _header(bytes);
  if (header === undefined) throw new SyntaxError("Cannot decode message: frame too short");
  const { lengths, json, start } = header;
  const total = lengths.reduce((a, b) => a + b, 0);
  if (start + total !== bytes.length) {
    throw new SyntaxError("Cannot decode message: lengths do not match the frame");
  }
  const blobs: Uint8Array[] = [];
  let at = start;
  for (const length of lengths) blobs.push(bytes.subarray(at, at += length));
  return _revive(json, blobs);
}

/** The parsed header of a message that starts `bytes`, or undefined if it is not all there. */
function _header(
  bytes: Uint8Array,
): { lengths: number[]; json: unknown; start: number } | undefined {
  if (bytes.length < 4) return undefined;
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(0);
  if (length > MAX_HEADER_BYTES) {
    throw new SyntaxError(`Cannot decode message: header of ${length} bytes is over the cap`);
  }
  if (bytes.length < 4 + length) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
  } catch (error) {
    throw new SyntaxError(`Cannot decode message: ${(error as Error).message}`);
  }
  if (
    !Array.isArray(parsed) || parsed.length !== 2 || !Array.isArray(parsed[0]) ||
    parsed[0].length > MAX_BLOBS ||
    !parsed[0].every((n) => Number.isSafeInteger(n) && n >= 0 && n < 2 ** 32)
  ) {
    throw new SyntaxError("Cannot decode message: bad header");
  }
  return { lengths: parsed[0] as number[], json: parsed[1], start: 4 + length };
}

function _revive(json: unknown, blobs: Uint8Array[]): unknown {
  if (typeof json !== "object" || json === null) return json;
  if (Array.isArray(json)) return json.map((v) => _revive(v, blobs));
  const keys = Object.keys(json);
  if (keys.length === 1 && keys[0] === BLOB) {
    const blob = blobs[(json as Record<string, unknown>)[BLOB] as number];
    if (blob === undefined) throw new SyntaxError("Cannot decode message: bad blob reference");
    return blob;
  }
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = _revive((json as Record<string, unknown>)[key], blobs);
  return out;
}

/**
 * Reads messages one after another from a stream (the sandbox's stdin).
 *
 * @example
 * ```ts
 * import { encodeMessage, MessageReader } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const parts = [...encodeMessage({ n: 1 }), ...encodeMessage({ n: 2, b: new Uint8Array([9]) })];
 * const reader = new MessageReader(ReadableStream.from(parts));
 * assert.deepEqual(await reader.next(), { n: 1 });
 * assert.deepEqual(await reader.next(), { n: 2, b: new Uint8Array([9]) });
 * assert.equal(await reader.next(), null);
 * ```
 */
export class MessageReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #length = 0;

  /** Read from `stream`, which this reader locks. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /**
   * The next message, or `null` at the end of the stream between messages.
   *
   * @throws {SyntaxError} If the stream ends inside a message or a message is malformed.
   */
  async next(): Promise<unknown> {
    if (!(await this.#fill(4))) return null;
    let head = this.#peek(4);
    const headerLength = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
    if (headerLength > MAX_HEADER_BYTES) {
      throw new SyntaxError(
        `Cannot decode message: header of ${headerLength} bytes is over the cap`,
      );
    }
    if (!(await this.#fill(4 + headerLength))) {
      throw new SyntaxError("Cannot decode message: the stream ended inside a message");
    }
    head = this.#peek(4 + headerLength);
    const header = _header(head)!;
    const total = header.start + header.lengths.reduce((a, b) => a + b, 0);
    if (!(await this.#fill(total))) {
      throw new SyntaxError("Cannot decode message: the stream ended inside a message");
    }
    return decodeMessage(this.#take(total));
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#length < n) {
      const { value, done } = await this.#reader.read();
      if (done) {
        if (this.#length === 0) return false;
        throw new SyntaxError("Cannot decode message: the stream ended inside a message");
      }
      this.#chunks.push(value);
      this.#length += value.length;
    }
    return true;
  }

  /** The first `n` buffered bytes, contiguous (joins chunks only when it must). */
  #peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const joined = concatBytes(this.#chunks);
    this.#chunks = [joined];
    return joined.subarray(0, n);
  }

  #take(n: number): Uint8Array {
    const out = this.#peek(n);
    const first = this.#chunks[0]!;
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#length -= n;
    return out;
  }
}

/**
 * Encode a job as one message for the sandbox's stdin (the module sent, nothing cached).
 *
 * @example
 * ```ts
 * import { decodeJob, encodeJob } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const job = {
 *   module: new Uint8Array([0, 97, 115, 109]),
 *   input: new Uint8Array([104, 105]),
 *   args: ["module.wasm", "-v"],
 *   env: { A: "1" },
 *   memoryBytes: 65536,
 *   maxOutputBytes: 10,
 *   timeoutMs: 1000,
 * };
 * assert.deepEqual(decodeJob(encodeJob(job)), job);
 * ```
 */
export function encodeJob(job: SandboxRequest): Uint8Array {
  return concatBytes(encodeMessage(job));
}

/**
 * Decode what {@linkcode encodeJob} made, checking the fields every job has.
 *
 * @throws {SyntaxError} If the bytes are not one well-formed job.
 *
 * @example
 * ```ts
 * import { decodeJob } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeJob(new Uint8Array([0, 0])), SyntaxError);
 * ```
 */
export function decodeJob(bytes: Uint8Array): SandboxRequest {
  return checkRequest(decodeMessage(bytes));
}

/**
 * Check that a decoded message has the shape of a {@linkcode SandboxRequest}.
 *
 * @throws {SyntaxError} If it does not.
 *
 * @example
 * ```ts
 * import { checkRequest } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => checkRequest({ input: 1 }), SyntaxError);
 * ```
 */
export function checkRequest(value: unknown): SandboxRequest {
  const r = value as Record<string, unknown>;
  const ok = typeof r === "object" && r !== null && r.input instanceof Uint8Array &&
    (r.module === undefined || r.module instanceof Uint8Array) &&
    Array.isArray(r.args) && r.args.every((a) => typeof a === "string") &&
    typeof r.env === "object" && r.env !== null &&
    Object.values(r.env).every((v) => typeof v === "string") &&
    [r.memoryBytes, r.maxOutputBytes, r.timeoutMs].every(Number.isSafeInteger) &&
    (r.fuel === undefined || typeof r.fuel === "string") &&
    (r.cacheKey === undefined || typeof r.cacheKey === "string") &&
    (r.cacheBytes === undefined || Number.isSafeInteger(r.cacheBytes)) &&
    (r.files === undefined || _filesShape(r.files));
  if (!ok) throw new SyntaxError("Cannot decode job: fields have the wrong types");
  return r as SandboxRequest;
}

/** Whether `f` has the shape of a job's `files` (`SandboxFiles`). */
function _filesShape(f: unknown): boolean {
  const r = f as Record<string, unknown>;
  return typeof r === "object" && r !== null && r.tree instanceof Uint8Array &&
    Number.isSafeInteger(r.maxBytes) && Number.isSafeInteger(r.maxFiles) &&
    Array.isArray(r.preopens) &&
    r.preopens.every((p: Record<string, unknown>) =>
      typeof p === "object" && p !== null && typeof p.name === "string" &&
      typeof p.path === "string"
    );
}

/**
 * Encode one event as a frame for the sandbox's stdout.
 *
 * @example
 * ```ts
 * import { encodeEvent, FrameDecoder } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const frame = encodeEvent({ type: "output", fd: 1, data: new Uint8Array([7]), memoryBytes: 65536 });
 * assert.deepEqual([...new FrameDecoder().push(frame)], [
 *   { type: "output", fd: 1, data: new Uint8Array([7]), memoryBytes: 65536 },
 * ]);
 * ```
 */
export function encodeEvent(event: SandboxReply): Uint8Array {
  return concatBytes(encodeEventParts(event));
}

/**
 * {@linkcode encodeEvent} in parts, to be written one after another: output data is not copied.
 *
 * @example
 * ```ts
 * import { encodeEventParts } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const data = new Uint8Array([7]);
 * const parts = encodeEventParts({ type: "output", fd: 2, data, memoryBytes: 0 });
 * assert.equal(parts[1], data);
 * ```
 */
export function encodeEventParts(event: SandboxReply): Uint8Array[] {
  if (event.type === "output") {
    const head = new Uint8Array(13);
    const v = new DataView(head.buffer);
    v.setUint8(0, event.fd);
    v.setUint32(1, 8 + event.data.length);
    v.setFloat64(5, event.memoryBytes);
    return [head, event.data];
  }
  const parts = encodeMessage(event);
  const head = new Uint8Array(5);
  new DataView(head.buffer).setUint32(1, parts.reduce((n, p) => n + p.length, 0));
  return [head, ...parts];
}

/** The shape of a `JobErrorKind` (the list grows; the parent passes on any such word). */
const KIND = /^[a-z_]{1,40}$/;

/** Longest error message accepted from a sandbox. */
const MAX_MESSAGE = 4096;

/** The event if it has a {@linkcode SandboxReply}'s shape, else a SyntaxError. */
function _checkEvent(value: unknown): SandboxReply {
  const e = value as Record<string, unknown>;
  const bad = () => new SyntaxError("Cannot decode sandbox frame: malformed event");
  if (typeof e !== "object" || e === null || Array.isArray(e)) throw bad();
  const memory = (m: unknown) => typeof m === "number" && Number.isFinite(m) && m >= 0;
  if (e.type === "ready") return e as SandboxReply;
  if (e.type === "started" && memory(e.memoryBytes)) return e as SandboxReply;
  if (e.type !== "result" || !memory(e.memoryBytes)) throw bad();
  const err = e.error as Record<string, unknown> | null;
  const ok = (e.exitCode === null || Number.isSafeInteger(e.exitCode)) &&
    (err === null ||
      (typeof err === "object" && typeof err.kind === "string" && KIND.test(err.kind) &&
        typeof err.message === "string" && err.message.length <= MAX_MESSAGE)) &&
    (e.fuelUsed === undefined ||
      (typeof e.fuelUsed === "string" && /^\d{1,20}$/.test(e.fuelUsed))) &&
    (e.files === undefined || e.files instanceof Uint8Array) &&
    (e.cached === undefined || typeof e.cached === "boolean") &&
    (e.evicted === undefined ||
      (Array.isArray(e.evicted) && e.evicted.length <= MAX_BLOBS &&
        e.evicted.every((k) => typeof k === "string")));
  if (!ok) throw bad();
  return e as SandboxReply;
}

/**
 * Incremental decoder of sandbox stdout frames: refuses a frame over `maxFrameBytes` before
 * buffering it, and an event of the wrong shape.
 *
 * @example
 * ```ts
 * import { encodeEvent, FrameDecoder } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const frame = encodeEvent({ type: "ready" });
 * const decoder = new FrameDecoder();
 * assert.deepEqual([...decoder.push(frame.subarray(0, 3))], []);
 * assert.deepEqual([...decoder.push(frame.subarray(3))], [{ type: "ready" }]);
 * assert.throws(() => [...new FrameDecoder(8).push(new Uint8Array([1, 0, 0, 0, 9]))], SyntaxError);
 * ```
 */
export class FrameDecoder {
  /**
   * Largest payload accepted; a parent may raise it for a job whose result carries more (it
   * applies to frames not yet started).
   */
  maxFrameBytes: number;
  #buffer: Uint8Array = new Uint8Array(0);

  /** @param maxFrameBytes Largest payload accepted. @default {MAX_FRAME_BYTES} */
  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Whether bytes of an unfinished frame are buffered. */
  get pending(): boolean {
    return this.#buffer.length > 0;
  }

  /**
   * Add bytes; yield every event that is now complete.
   *
   * @throws {SyntaxError} If a frame is malformed or over the cap.
   */
  *push(chunk: Uint8Array): Generator<SandboxReply> {
    this.#buffer = this.#buffer.length === 0 ? chunk : concatBytes([this.#buffer, chunk]);
    try {
      yield* this.#frames();
    } finally {
      // What is left of `chunk` (a frame's start) is kept as a copy: the caller may reuse it.
      if (this.#buffer.buffer === chunk.buffer) this.#buffer = this.#buffer.slice();
    }
  }

  *#frames(): Generator<SandboxReply> {
    while (this.#buffer.length >= 5) {
      const b = this.#buffer;
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      const type = v.getUint8(0);
      const length = v.getUint32(1);
      if (type > 2) throw new SyntaxError(`Cannot decode sandbox frame: unknown type ${type}`);
      if (length > this.maxFrameBytes) {
        throw new SyntaxError(
          `Cannot decode sandbox frame: ${length} bytes is over the ${this.maxFrameBytes} byte cap`,
        );
      }
      if (b.length < 5 + length) break;
      const payload = b.subarray(5, 5 + length);
      this.#buffer = b.subarray(5 + length);
      if (type === 1 || type === 2) {
        const memoryBytes = length < 8 ? NaN : v.getFloat64(5);
        if (!(memoryBytes >= 0 && memoryBytes < Infinity)) {
          throw new SyntaxError("Cannot decode sandbox frame: malformed output frame");
        }
        // Copies: nothing yielded is a view of a chunk, which the caller may reuse.
        yield { type: "output", fd: type, memoryBytes, data: payload.slice(8) };
      } else {
        yield _checkEvent(decodeMessage(payload.slice()));
      }
    }
  }
}
