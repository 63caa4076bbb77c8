/**
 * The output commitment chain of Phase receipts.
 *
 * @module
 */
import { sha256 } from "./sha256.ts";

/** Chunk size used to split a job's stdout into committed chunks. */
export const OUTPUT_CHUNK_BYTES = 65536;

const SEED = "phase-protocol:v1:commitment";

/** One committed output chunk. */
export interface OutputChunk {
  /** What the bytes are, e.g. `stdout`. */
  kind: string;
  /** The chunk's bytes. */
  data: Uint8Array;
}

/**
 * Compute the output commitment over chunks:
 * `s0 = SHA256("phase-protocol:v1:commitment")`, then per chunk
 * `s = SHA256(s || u64be(seq) || u32be(len(kind)) || kind || u32be(len(data)) || data)`.
 *
 * @example The check value of docs/protocol.md: one empty stdout chunk
 * ```ts
 * import { commitChunks } from "./output_commitment.ts";
 * import { toHex } from "./digest.ts";
 * import assert from "node:assert/strict";
 *
 * const s = commitChunks([{ kind: "stdout", data: new Uint8Array() }]);
 * assert.equal(toHex(s), "fa9b4526d069cad21010765604a145c410fc8e16505eb38ef843ce1e3370282e");
 * ```
 */
export function commitChunks(chunks: Iterable<OutputChunk>): Uint8Array {
  let state = _seed();
  let seq = 0n;
  for (const chunk of chunks) state = _step(state, seq++, chunk);
  // A copy: the seed is shared by every commitment.
  return state === _seed() ? state.slice() : state;
}

/**
 * {@linkcode commitChunks} with the native Web Crypto digest for chunks of more than 2 KiB: the
 * same value, several times faster for large output. Smaller chunks are hashed in place, where a
 * round trip to the native digest costs more.
 *
 * @example
 * ```ts
 * import { commitChunks, commitChunksAsync, stdoutChunks } from "./output_commitment.ts";
 * import assert from "node:assert/strict";
 *
 * const chunks = stdoutChunks(new TextEncoder().encode("dlroW ,olleH"));
 * assert.deepEqual(await commitChunksAsync(chunks), commitChunks(chunks));
 * ```
 */
export async function commitChunksAsync(chunks: Iterable<OutputChunk>): Promise<Uint8Array> {
  let state = _seed();
  let seq = 0n;
  for (const chunk of chunks) {
    if (chunk.data.length <= _SYNC_MAX_BYTES) {
      state = _step(state, seq++, chunk);
      continue;
    }
    const parts = [state, ..._frame(seq++, chunk), chunk.data];
    const message = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      message.set(part, at);
      at += part.length;
    }
    state = new Uint8Array(await crypto.subtle.digest("SHA-256", message));
  }
  return state === _seed() ? state.slice() : state;
}

/** Chunks up to this size are hashed synchronously by {@linkcode commitChunksAsync}. */
const _SYNC_MAX_BYTES = 2048;

let _seedState: Uint8Array | undefined;

/** `s0`, computed once (never handed out: callers get copies). */
function _seed(): Uint8Array {
  return _seedState ??= sha256(new TextEncoder().encode(SEED));
}

/** The state after `chunk`, hashed synchronously. */
function _step(state: Uint8Array, seq: bigint, chunk: OutputChunk): Uint8Array {
  const [header, kind, dataLength] = _frame(seq, chunk);
  return sha256.create().update(state).update(header).update(kind).update(dataLength)
    .update(chunk.data).digest();
}

/** `u64be(seq) || u32be(len(kind))`, `kind`, `u32be(len(data))` of one chunk. */
function _frame(seq: bigint, chunk: OutputChunk): [Uint8Array, Uint8Array, Uint8Array] {
  const kind = new TextEncoder().encode(chunk.kind);
  const header = new DataView(new ArrayBuffer(12));
  header.setBigUint64(0, seq);
  header.setUint32(8, kind.length);
  const dataLength = new DataView(new ArrayBuffer(4));
  dataLength.setUint32(0, chunk.data.length);
  return [new Uint8Array(header.buffer), kind, new Uint8Array(dataLength.buffer)];
}

/**
 * Split a job's stdout into the chunks Phase commits to: `stdout` chunks of
 * {@linkcode OUTPUT_CHUNK_BYTES}, at least one (empty output is one empty chunk).
 *
 * @example
 * ```ts
 * import { stdoutChunks } from "./output_commitment.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(stdoutChunks(new Uint8Array(0)).length, 1);
 * assert.equal(stdoutChunks(new Uint8Array(65537)).length, 2);
 * ```
 */
export function stdoutChunks(stdout: Uint8Array): OutputChunk[] {
  const chunks: OutputChunk[] = [];
  for (
    let offset = 0;
    offset < stdout.length || chunks.length === 0;
    offset += OUTPUT_CHUNK_BYTES
  ) {
    chunks.push({ kind: "stdout", data: stdout.subarray(offset, offset + OUTPUT_CHUNK_BYTES) });
  }
  return chunks;
}
