/**
 * The output commitment chain of Phase receipts.
 *
 * @module
 */
import { createHash } from "node:crypto";

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
 * @example The check value of DESIGN.md
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
  let state = createHash("sha256").update(SEED).digest();
  let seq = 0n;
  const encoder = new TextEncoder();
  for (const { kind, data } of chunks) {
    const kindBytes = encoder.encode(kind);
    const header = new DataView(new ArrayBuffer(12));
    header.setBigUint64(0, seq);
    header.setUint32(8, kindBytes.length);
    const dataLength = new DataView(new ArrayBuffer(4));
    dataLength.setUint32(0, data.length);
    state = createHash("sha256")
      .update(state)
      .update(new Uint8Array(header.buffer))
      .update(kindBytes)
      .update(new Uint8Array(dataLength.buffer))
      .update(data)
      .digest();
    seq++;
  }
  return new Uint8Array(state.buffer, state.byteOffset, state.byteLength);
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
