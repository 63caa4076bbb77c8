/**
 * A hostile sandbox-process probe: says `ready` as sandbox_main.ts does, waits for a job, then
 * announces an output frame of 2 GiB and keeps writing. The parent must refuse the frame from
 * its header, before buffering it, and kill the process (see sandbox_pool_test.ts).
 *
 * @module
 */
import { encodeEvent } from "../sandbox_frames.ts";

if (import.meta.main) {
  Deno.stdout.writeSync(encodeEvent({ type: "ready" }));
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  const head = new Uint8Array(13);
  new DataView(head.buffer).setUint32(1, 2 ** 31);
  Deno.stdout.writeSync(head);
  const junk = new Uint8Array(1 << 16);
  for (;;) Deno.stdout.writeSync(junk);
}
