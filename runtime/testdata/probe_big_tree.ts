/**
 * A hostile sandbox-process probe: says `ready` as sandbox_main.ts does, waits for a job, then
 * sends a `result` carrying a "file tree" of 8 MiB, far over what the job's file caps allow. The
 * parent must refuse the frame from its header, before buffering it, and kill the process (see
 * sandbox_pool_test.ts).
 *
 * @module
 */
import { encodeEvent } from "../sandbox_frames.ts";

if (import.meta.main) {
  Deno.stdout.writeSync(encodeEvent({ type: "ready" }));
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  const files = new Uint8Array(8 * 1024 * 1024);
  const frame = encodeEvent({ type: "result", exitCode: 0, error: null, memoryBytes: 0, files });
  for (let at = 0; at < frame.length;) at += Deno.stdout.writeSync(frame.subarray(at));
}
