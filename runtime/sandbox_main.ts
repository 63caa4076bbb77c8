/**
 * Entry of the "process" sandbox. It is started as
 * `deno run --no-prompt --no-remote --no-npm --no-config --no-lock -q runtime/sandbox_main.ts`
 * (see sandbox_spawn.ts), with no `--allow-*` flag at all: it reads jobs from stdin one after
 * another until stdin ends, runs each in a fresh WebAssembly instance with a fresh WASI host, and
 * writes event frames to stdout (see sandbox_frames.ts). It needs no permission: stdio is all it
 * touches. Compiled modules are kept between jobs in a cache bounded in bytes (least recently
 * used first out), keyed by what the parent names them.
 *
 * @module
 */
import { type CompiledModule, executeJob, type SandboxJob } from "./sandbox_core.ts";
import { concatBytes } from "../util/concat_bytes.ts";
import {
  checkRequest,
  encodeEventParts,
  MessageReader,
  type SandboxReply,
} from "./sandbox_frames.ts";

/** Frames up to this size are written with one system call. */
const COALESCE_BYTES = 16 * 1024;

/** Bound of the compiled-module cache when a job names none: 64 MiB of rewritten module. */
const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * Serve jobs from `stdin` until it ends: run each, write its frames with `writeSync`. The first
 * frame is `ready`; each job's last frame is its `result`, which says whether the job's module is
 * now cached (`cached`) and which cache keys were dropped to make room (`evicted`), so the parent
 * knows what it need not send again.
 *
 * @example
 * ```ts
 * import { serveSandbox } from "./sandbox_main.ts";
 * import { encodeJob, FrameDecoder } from "./sandbox_frames.ts";
 * import assert from "node:assert/strict";
 *
 * const job = {
 *   input: new Uint8Array(),
 *   args: ["module.wasm"],
 *   env: {},
 *   memoryBytes: 65536,
 *   maxOutputBytes: 16,
 *   timeoutMs: 1000,
 * };
 * const module = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
 * const written: Uint8Array[] = [];
 * await serveSandbox(
 *   ReadableStream.from([
 *     encodeJob({ ...job, module, cacheKey: "k" }),
 *     encodeJob({ ...job, cacheKey: "k" }), // the module is not sent again
 *   ]),
 *   (b) => (written.push(b.slice()), b.length),
 * );
 * const decoder = new FrameDecoder();
 * const results = written.flatMap((b) => [...decoder.push(b)]).filter((e) => e.type === "result");
 * assert.equal(results.length, 2);
 * assert.ok(results.every((r) => r.type === "result" && r.cached && r.error?.kind === "no_start"));
 * ```
 */
export async function serveSandbox(
  stdin: ReadableStream<Uint8Array>,
  writeSync: (bytes: Uint8Array) => number,
): Promise<void> {
  const write = (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.length;) at += writeSync(bytes.subarray(at));
  };
  const send = (event: SandboxReply) => {
    const parts = encodeEventParts(event);
    // One write for a small frame (a copy is cheaper than a system call); large data as is.
    if (parts.reduce((n, p) => n + p.length, 0) <= COALESCE_BYTES) write(concatBytes(parts));
    else parts.forEach(write);
  };
  send({ type: "ready" });
  const cache = new _ModuleCache();
  const reader = new MessageReader(stdin);
  for (;;) {
    const message = await reader.next();
    if (message === null) return;
    const { module, cacheKey, cacheBytes = DEFAULT_CACHE_BYTES, ...rest } = checkRequest(message);
    const job: SandboxJob = { ...rest, module: module ?? new Uint8Array() };
    let evicted: string[] = [];
    const slot = cacheKey === undefined ? undefined : {
      get: () => cache.get(cacheKey),
      set: (compiled: CompiledModule) => (evicted = cache.set(cacheKey, compiled, cacheBytes)),
    };
    const emit = (event: SandboxReply) => {
      if (event.type !== "result") return send(event);
      send({ ...event, cached: cacheKey !== undefined && cache.has(cacheKey), evicted });
    };
    if (module === undefined && (cacheKey === undefined || !cache.has(cacheKey))) {
      // The parent believed the module cached: a bug, not the module's fault.
      emit({
        type: "result",
        exitCode: null,
        error: { kind: "invalid_module", message: "Cannot run job: its module was not sent" },
        memoryBytes: 0,
      });
      continue;
    }
    // The filesystem's code is loaded only once a job has files (then kept, like any module);
    // each job opens its own filesystem from its own tree: nothing of another job's is left.
    const openFiles = job.files ? (await import("./wasi_fs.ts")).openJobFiles : undefined;
    executeJob(job, emit, slot, openFiles);
  }
}

/** Compiled modules by key, least recently used first; bounded in bytes of rewritten module. */
class _ModuleCache {
  readonly #entries = new Map<string, CompiledModule>();
  #bytes = 0;

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get(key: string): CompiledModule | undefined {
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /** Keep `compiled` unless it alone is over `limit`; returns the keys dropped for room. */
  set(key: string, compiled: CompiledModule, limit: number): string[] {
    const evicted: string[] = [];
    const old = this.#entries.get(key);
    if (old !== undefined) {
      this.#entries.delete(key);
      this.#bytes -= old.byteLength;
    }
    if (compiled.byteLength > limit) return evicted;
    for (const [k, entry] of this.#entries) {
      if (this.#bytes + compiled.byteLength <= limit) break;
      this.#entries.delete(k);
      this.#bytes -= entry.byteLength;
      evicted.push(k);
    }
    this.#entries.set(key, compiled);
    this.#bytes += compiled.byteLength;
    return evicted;
  }
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

/** Bytes read from stdin at most at once. */
const READ_BYTES = 64 * 1024;

/**
 * Stdin as a stream read with `readSync`, only when a read is pending (a high-water mark of 0:
 * nothing is read ahead while a job runs). A sandbox has nothing else to do while it waits for
 * its next job, and a blocking read on this thread costs a system call, where
 * `Deno.stdin.readable` hands each read to another thread and back.
 */
function _stdinReadable(): ReadableStream<Uint8Array> {
  const buffer = new Uint8Array(READ_BYTES);
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const n = Deno.stdin.readSync(buffer);
      if (n === null) controller.close();
      else controller.enqueue(buffer.slice(0, n));
    },
  }, { highWaterMark: 0 });
}

if (import.meta.main) {
  // Blob workers load with no permission; the watch ends with the process.
  const watch = new Worker(
    URL.createObjectURL(new Blob([PARENT_WATCH_SOURCE], { type: "text/javascript" })),
    { type: "module" },
  );
  await serveSandbox(_stdinReadable(), (b) => Deno.stdout.writeSync(b));
  watch.terminate();
}
