import assert from "node:assert/strict";
import { concatBytes } from "../util/concat_bytes.ts";
import { encodeEvent, FrameDecoder, type SandboxReply } from "./sandbox_frames.ts";

Deno.test("FrameDecoder.push() keeps no view of a chunk: a caller may reuse its buffer at once", () => {
  const files = new Uint8Array([5, 6, 7]);
  const frames = concatBytes([
    encodeEvent({ type: "output", fd: 1, data: new Uint8Array([1, 2, 3]), memoryBytes: 65536 }),
    encodeEvent({ type: "result", exitCode: 0, error: null, memoryBytes: 65536, files }),
    encodeEvent({ type: "output", fd: 2, data: new Uint8Array([4]), memoryBytes: 65536 }),
  ]);
  // One buffer, reused for every read (as the pool's reader does), split inside a frame.
  const buffer = new Uint8Array(frames.length);
  const decoder = new FrameDecoder(1024);
  const events: SandboxReply[] = [];
  const cuts: [number, number][] = [[0, 20], [20, frames.length - 3], [
    frames.length - 3,
    frames.length,
  ]];
  for (const [from, to] of cuts) {
    buffer.set(frames.subarray(from, to));
    events.push(...decoder.push(buffer.subarray(0, to - from)));
    buffer.fill(0xee);
  }
  assert.deepEqual(events, [
    { type: "output", fd: 1, data: new Uint8Array([1, 2, 3]), memoryBytes: 65536 },
    { type: "result", exitCode: 0, error: null, memoryBytes: 65536, files },
    { type: "output", fd: 2, data: new Uint8Array([4]), memoryBytes: 65536 },
  ]);
  assert.equal(decoder.pending, false);
});

Deno.test("FrameDecoder.push() keeps the start of a frame when the caller stops reading events", () => {
  const a = encodeEvent({ type: "started", memoryBytes: 1 });
  const b = encodeEvent({ type: "started", memoryBytes: 2 });
  const chunk = concatBytes([a, b.subarray(0, 4)]);
  const decoder = new FrameDecoder();
  for (const event of decoder.push(chunk)) {
    assert.deepEqual(event, { type: "started", memoryBytes: 1 });
  }
  chunk.fill(0xff);
  assert.deepEqual([...decoder.push(b.subarray(4))], [{ type: "started", memoryBytes: 2 }]);
});
