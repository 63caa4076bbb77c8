/**
 * The framing between run_job.ts and the sandbox process (runtime/sandbox_main.ts).
 *
 * Parent to sandbox (stdin, once): `u32be header length`, the header as UTF-8 JSON
 * `{args, env, memoryBytes, maxOutputBytes, timeoutMs, fuel?, moduleLength, inputLength}`, the module bytes, the
 * input bytes.
 *
 * Sandbox to parent (stdout, repeated): `u8 type`, `u32be payload length`, payload. Type 0 is a
 * JSON {@linkcode SandboxEvent} other than output; types 1 and 2 are stdout and stderr bytes,
 * whose payload starts with `f64be memory bytes` (linear memory plus tables, which need not be
 * whole pages and may pass 4 GiB) followed by the data.
 *
 * @module
 */
import type { SandboxEvent, SandboxJob } from "./sandbox_core.ts";

/** Largest header the sandbox accepts. */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/**
 * Encode a job for the sandbox's stdin.
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
export function encodeJob(job: SandboxJob): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({
    args: job.args,
    env: job.env,
    memoryBytes: job.memoryBytes,
    maxOutputBytes: job.maxOutputBytes,
    timeoutMs: job.timeoutMs,
    fuel: job.fuel,
    moduleLength: job.module.length,
    inputLength: job.input.length,
  }));
  const out = new Uint8Array(4 + header.length + job.module.length + job.input.length);
  new DataView(out.buffer).setUint32(0, header.length);
  out.set(header, 4);
  out.set(job.module, 4 + header.length);
  out.set(job.input, 4 + header.length + job.module.length);
  return out;
}

/**
 * Decode what {@linkcode encodeJob} made.
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
export function decodeJob(bytes: Uint8Array): SandboxJob {
  if (bytes.length < 4) throw new SyntaxError("Cannot decode job: frame too short");
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
  if (headerLength > MAX_HEADER_BYTES || 4 + headerLength > bytes.length) {
    throw new SyntaxError("Cannot decode job: bad header length");
  }
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headerLength)));
  const moduleStart = 4 + headerLength;
  const inputStart = moduleStart + h.moduleLength;
  if (inputStart + h.inputLength !== bytes.length) {
    throw new SyntaxError("Cannot decode job: lengths do not match the frame");
  }
  return {
    module: bytes.subarray(moduleStart, inputStart),
    input: bytes.subarray(inputStart),
    args: h.args,
    env: h.env,
    memoryBytes: h.memoryBytes,
    maxOutputBytes: h.maxOutputBytes,
    timeoutMs: h.timeoutMs,
    ...(typeof h.fuel === "string" ? { fuel: h.fuel } : {}),
  };
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
export function encodeEvent(event: SandboxEvent): Uint8Array {
  if (event.type === "output") {
    const out = new Uint8Array(13 + event.data.length);
    const v = new DataView(out.buffer);
    v.setUint8(0, event.fd);
    v.setUint32(1, 8 + event.data.length);
    v.setFloat64(5, event.memoryBytes);
    out.set(event.data, 13);
    return out;
  }
  const json = new TextEncoder().encode(JSON.stringify(event));
  const out = new Uint8Array(5 + json.length);
  new DataView(out.buffer).setUint32(1, json.length);
  out.set(json, 5);
  return out;
}

/**
 * Incremental decoder of sandbox stdout frames.
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
 * ```
 */
export class FrameDecoder {
  #buffer: Uint8Array = new Uint8Array(0);

  /**
   * Add bytes; yield every event that is now complete.
   *
   * @throws {SyntaxError} If a frame is malformed.
   */
  *push(chunk: Uint8Array): Generator<SandboxEvent> {
    if (this.#buffer.length === 0) {
      this.#buffer = chunk;
    } else {
      const joined = new Uint8Array(this.#buffer.length + chunk.length);
      joined.set(this.#buffer);
      joined.set(chunk, this.#buffer.length);
      this.#buffer = joined;
    }
    while (this.#buffer.length >= 5) {
      const b = this.#buffer;
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      const type = v.getUint8(0);
      const length = v.getUint32(1);
      if (b.length < 5 + length) break;
      const payload = b.subarray(5, 5 + length);
      this.#buffer = b.subarray(5 + length);
      if (type === 1 || type === 2) {
        if (length < 8) throw new SyntaxError("Cannot decode sandbox frame: short output frame");
        yield {
          type: "output",
          fd: type,
          memoryBytes: v.getFloat64(5),
          data: payload.slice(8),
        };
      } else if (type === 0) {
        yield JSON.parse(new TextDecoder().decode(payload)) as SandboxEvent;
      } else {
        throw new SyntaxError(`Cannot decode sandbox frame: unknown type ${type}`);
      }
    }
  }
}
