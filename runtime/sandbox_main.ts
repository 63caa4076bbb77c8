/**
 * Entry of the "process" sandbox. run_job.ts starts it as
 * `deno run --no-prompt --no-remote --no-npm --no-config --no-lock -q runtime/sandbox_main.ts`,
 * with no `--allow-*` flag at all: it reads one job from stdin, runs it and writes event frames
 * to stdout (see sandbox_frames.ts). It needs no permission: stdio is all it touches.
 *
 * @module
 */
import { executeJob } from "./sandbox_core.ts";
import { concatBytes } from "../util/concat_bytes.ts";
import { decodeJob, encodeEvent } from "./sandbox_frames.ts";

/**
 * Read the job from `stdin`, run it, write frames with `writeSync`.
 *
 * @example
 * ```ts
 * import { serveProcessJob } from "./sandbox_main.ts";
 * import { encodeJob, FrameDecoder } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const job = encodeJob({
 *   module: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]),
 *   input: new Uint8Array(),
 *   args: ["module.wasm"],
 *   env: {},
 *   memoryBytes: 65536,
 *   maxOutputBytes: 16,
 *   timeoutMs: 1000,
 * });
 * const written: Uint8Array[] = [];
 * await serveProcessJob(ReadableStream.from([job]), (b) => (written.push(b), b.length));
 * const decoder = new FrameDecoder();
 * const events = written.flatMap((b) => [...decoder.push(b)]);
 * assert.equal(events.at(-1)?.type, "result");
 * ```
 */
export async function serveProcessJob(
  stdin: ReadableStream<Uint8Array>,
  writeSync: (bytes: Uint8Array) => number,
): Promise<void> {
  const send = (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.length;) at += writeSync(bytes.subarray(at));
  };
  send(encodeEvent({ type: "ready" }));
  const chunks: Uint8Array[] = [];
  for await (const chunk of stdin) chunks.push(chunk);
  executeJob(decodeJob(concatBytes(chunks)), (event) => send(encodeEvent(event)));
}

/**
 * The source of a worker that ends this process when its parent dies (its parent PID changes):
 * a sandbox busy in a module's loop never returns to the event loop, and a worker cannot exit
 * the process (`Deno.exit` there ends the worker only) nor signal it without `--allow-run`, so
 * it outgrows the V8 heap cap the sandbox runs with: a fatal out-of-memory error ends the whole
 * process within a second. bubblewrap's `--die-with-parent` does the same where the sandbox is
 * confined; this covers the unconfined fallback.
 *
 * @example
 * ```ts
 * import { PARENT_WATCH_SOURCE } from "./sandbox_main.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(PARENT_WATCH_SOURCE, /Deno\.ppid/);
 * ```
 */
export const PARENT_WATCH_SOURCE = `const parent = Deno.ppid;
setInterval(() => {
  if (Deno.ppid === parent) return;
  const hold = [];
  for (;;) hold.push(new Array(1 << 20).fill(1.5));
}, 250);`;

if (import.meta.main) {
  // Blob workers load with no permission; the watch ends with the process.
  const watch = new Worker(
    URL.createObjectURL(new Blob([PARENT_WATCH_SOURCE], { type: "text/javascript" })),
    { type: "module" },
  );
  await serveProcessJob(Deno.stdin.readable, (b) => Deno.stdout.writeSync(b));
  watch.terminate();
}
