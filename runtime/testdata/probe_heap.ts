/**
 * A sandbox-process probe for the engine heap limit: says `ready` as sandbox_main.ts does, prints
 * the V8 heap limit on stderr, then allocates JavaScript objects until the engine gives up.
 * Started with the exact arguments of a sandbox process (see run_job_test.ts).
 *
 * @module
 */
import { getHeapStatistics } from "node:v8";
import { encodeEvent } from "../sandbox_frames.ts";

if (import.meta.main) {
  Deno.stdout.writeSync(encodeEvent({ type: "ready" }));
  Deno.stderr.writeSync(
    new TextEncoder().encode(`heap_size_limit ${getHeapStatistics().heap_size_limit}\n`),
  );
  const hold: unknown[] = [];
  for (;;) hold.push(new Array(100_000).fill({ x: hold.length }));
}
