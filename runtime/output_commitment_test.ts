import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { toHex } from "./digest.ts";
import {
  commitChunks,
  commitChunksAsync,
  OUTPUT_CHUNK_BYTES,
  stdoutChunks,
} from "./output_commitment.ts";

Deno.test("commitChunks() gives the protocol's check value for one empty stdout chunk", () => {
  assert.equal(
    toHex(commitChunks([{ kind: "stdout", data: new Uint8Array() }])),
    "fa9b4526d069cad21010765604a145c410fc8e16505eb38ef843ce1e3370282e",
  );
});

Deno.test("commitChunks() chains seq, kind and data lengths big-endian", () => {
  const data = new TextEncoder().encode("abc");
  const s0 = createHash("sha256").update("phase-protocol:v1:commitment").digest();
  const frame = (seq: number, kind: string, bytes: Uint8Array) => {
    const k = new TextEncoder().encode(kind);
    const out = new Uint8Array(8 + 4 + k.length + 4 + bytes.length);
    const view = new DataView(out.buffer);
    view.setBigUint64(0, BigInt(seq));
    view.setUint32(8, k.length);
    out.set(k, 12);
    view.setUint32(12 + k.length, bytes.length);
    out.set(bytes, 16 + k.length);
    return out;
  };
  const s1 = createHash("sha256").update(s0).update(frame(0, "stdout", data)).digest();
  const s2 = createHash("sha256").update(s1).update(frame(1, "stderr", data)).digest();
  const got = commitChunks([{ kind: "stdout", data }, { kind: "stderr", data }]);
  assert.equal(toHex(got), s2.toString("hex"));
});

Deno.test("stdoutChunks() splits at the chunk size and keeps every byte", () => {
  const bytes = new Uint8Array(OUTPUT_CHUNK_BYTES * 2 + 5).map((_, i) => i % 251);
  const chunks = stdoutChunks(bytes);
  assert.deepEqual(chunks.map((c) => c.data.length), [OUTPUT_CHUNK_BYTES, OUTPUT_CHUNK_BYTES, 5]);
  assert.deepEqual(new Uint8Array(chunks.flatMap((c) => [...c.data])), bytes);
  assert.equal(stdoutChunks(new Uint8Array(OUTPUT_CHUNK_BYTES)).length, 1);
});

Deno.test("commitChunksAsync() equals commitChunks() for chunks on both sides of 2 KiB", async () => {
  const bytes = (n: number) => new Uint8Array(n).map((_, i) => (i * 7) % 256);
  const chunks = [2047, 2048, 2049, 0, 70_000, 1].map((n, i) => ({
    kind: i % 2 ? "stderr" : "stdout",
    data: bytes(n),
  }));
  for (let n = 0; n <= chunks.length; n++) {
    assert.deepEqual(await commitChunksAsync(chunks.slice(0, n)), commitChunks(chunks.slice(0, n)));
  }
});

Deno.test("commitChunks() of no chunks is s0, and a caller changing it changes no later value", async () => {
  const s0 = createHash("sha256").update("phase-protocol:v1:commitment").digest();
  const first = commitChunks([]);
  assert.equal(toHex(first), s0.toString("hex"));
  first.fill(0);
  (await commitChunksAsync([])).fill(0);
  assert.equal(toHex(commitChunks([])), s0.toString("hex"));
  assert.equal(
    toHex(await commitChunksAsync([{ kind: "stdout", data: new Uint8Array() }])),
    "fa9b4526d069cad21010765604a145c410fc8e16505eb38ef843ce1e3370282e",
  );
});
