/**
 * Run one WASI job in a sandbox with no permissions, under enforced limits.
 *
 * @module
 */
import type { JobErrorKind, SandboxEvent, SandboxFiles, SandboxJob } from "./sandbox_core.ts";
import { encodeJob, FrameDecoder, resultFrameBytes } from "./sandbox_frames.ts";
import { type FuelCache, instrumentFuel } from "./fuel.ts";
import { CANCELLED, jobOutcome, refuseJob, resolveJobOptions, sandboxJob } from "./job_options.ts";
import type { JobEnd } from "./job_options.ts";
import type { SandboxPool } from "./sandbox_pool.ts";
import {
  _spawnSandboxProcess,
  _startSandboxWorker,
  describeSandboxExit,
  SANDBOX_HEAP_MIB,
} from "./sandbox_spawn.ts";
// Both sandbox entries are started by URL, never imported for use here; these imports put them
// in this module's graph so that a remote (JSR) install caches them for `--cached-only`.
import "./sandbox_main.ts";
import "./sandbox_worker.ts";

export type { JobErrorKind, SandboxFiles } from "./sandbox_core.ts";
export { MEMORY_LIMIT_FRACTION } from "./sandbox_core.ts";

/** Options of {@linkcode runJob}. */
export interface RunJobOptions {
  /** Bytes the module reads from stdin. @default {empty} */
  input?: Uint8Array;
  /** Arguments after `argv[0]`. @default {[]} */
  args?: string[];
  /** `argv[0]`. @default {"module.wasm"} */
  argv0?: string;
  /** The module's whole environment; nothing is inherited. @default {{}} */
  env?: Record<string, string>;
  /** Linear memory cap in bytes, rounded down to 64 KiB pages. @default {268435456} (256 MiB) */
  memoryBytes?: number;
  /** Wall-clock limit in milliseconds, sandbox start included. @default {30000} */
  timeoutMs?: number;
  /** Cap on stdout and stderr together, in bytes. @default {16777216} (16 MiB) */
  maxOutputBytes?: number;
  /** Largest module accepted, in bytes; checked before compiling. @default {67108864} (64 MiB) */
  maxModuleBytes?: number;
  /**
   * Where the job runs: `"worker"`, a Web Worker with `deno: { permissions: "none" }` (the host
   * must run with `--unstable-worker-options`); or `"process"`, a separate `deno` process with
   * no `--allow-*` flag (the host needs `--allow-run` for `Deno.execPath()` and read access to
   * it).
   * @default {"worker"}
   */
  sandbox?: "worker" | "process";
  /**
   * Fuel limit: when set, the module is instrumented (see `instrumentFuel`) and stops with
   * kind `fuel_exhausted` after executing this many instructions; `fuelUsed` reports the
   * exact count. @default {undefined} (unmetered)
   */
  fuel?: bigint | number;
  /** Where instrumented modules are cached by hash; without it every metered run instruments. */
  fuelCache?: FuelCache;
  /**
   * Warm sandbox processes to run the job on (`sandbox: "process"` only; see `SandboxPool`);
   * without it each job spawns a process of its own.
   */
  pool?: SandboxPool;
  /** Aborting ends the job with completion `cancelled`. */
  signal?: AbortSignal;
  /**
   * Files for the job (an in-memory WASI filesystem, see wasi_fs.ts); the outcome then has
   * `files`. @default {undefined} (no filesystem)
   */
  files?: SandboxFiles;
}

/** How a job ended. */
export interface JobOutcome {
  /** Everything the module wrote to fd 1, up to the output cap. */
  stdout: Uint8Array;
  /** Everything the module wrote to fd 2, up to the output cap. */
  stderr: Uint8Array;
  /** The `proc_exit` code, 0 when `_start` returned, `null` when the job did not end by itself. */
  exitCode: number | null;
  /**
   * `stop`: ran to its end (any exit code); `length`: stopped at the output cap; `cancelled`:
   * aborted by the caller; `error`: any other breach or failure, see `error`.
   */
  completion: "stop" | "length" | "cancelled" | "error";
  /** Why the job failed; absent when `completion` is `stop`. */
  error?: { kind: JobErrorKind; message: string };
  /** Wall-clock milliseconds from the call to the outcome. */
  durationMs: number;
  /** Linear memory size when the job ended (the last size seen when the sandbox was killed). */
  peakMemoryBytes: number;
  /** Instructions executed, for a metered job (`fuel` set) that got to run. */
  fuelUsed?: bigint;
  /** The job's files when it ended (`encodeFileTree`), for a job given `files` that ran. */
  files?: Uint8Array;
}

/** Bytes of the sandbox process's own stderr kept for diagnostics. */
const SANDBOX_STDERR_BYTES = 8 * 1024;

/** The events a running sandbox delivers, and how to stop it. */
interface _Sandbox {
  /** Stop the sandbox now; idempotent. */
  kill(): void;
  /** Settles when every resource of the sandbox is released. */
  closed: Promise<void>;
}

interface _Handlers {
  event(event: SandboxEvent): void;
  /**
   * The sandbox failed by itself (crashed, or could not start); `kind` is `memory_limit` when
   * it died at its engine heap limit.
   */
  failed(message: string, kind?: JobErrorKind): void;
}

/**
 * Run a WASI preview1 command module (`_start`) in a sandbox without permissions and report
 * how it ended. Everything the module does wrong comes back as an outcome with `error`; only
 * caller mistakes throw.
 *
 * Limits: linear memory is capped by rewriting the module's memory limits (see
 * `limitMemory`), so `memory.grow` past the cap fails inside the engine; a job that then fails
 * (trap or non-zero exit) with memory at or above {@linkcode MEMORY_LIMIT_FRACTION} of the cap
 * is classified `memory_limit`. The timeout kills the sandbox (`timeout`, partial output kept).
 * Output past the cap stops the job at once: completion `length`, output truncated to exactly
 * the cap, kind `output_limit`.
 *
 * @param module The WebAssembly binary.
 * @param options Input, arguments, environment, limits, sandbox kind and abort signal.
 * @returns The outcome; its `error` says what went wrong, if anything.
 * @throws {TypeError} If an option has the wrong type, or an argument or environment entry
 *   cannot be passed to WASI.
 * @throws {RangeError} If a limit is out of range.
 * @throws {Error} If the sandbox itself cannot be started.
 *
 * @example
 * ```ts
 * import { runJob } from "./run_job.ts";
 * import assert from "node:assert/strict";
 *
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const outcome = await runJob(module, { input: new TextEncoder().encode("Hello, World") });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "dlroW ,olleH");
 * assert.equal(outcome.completion, "stop");
 * assert.equal(outcome.exitCode, 0);
 * ```
 */
export function runJob(module: Uint8Array, options: RunJobOptions = {}): Promise<JobOutcome> {
  return _runJob(module, options, undefined);
}

/**
 * Internal: {@linkcode runJob}, told the module's hash. `moduleHash` must be the hex SHA-256 of
 * `module`'s bytes, and they must not change until the job has been sent: runSignedJob hashes a
 * copy of the caller's bytes that nothing else holds. A warm pool then uses it as the module's
 * cache key instead of hashing the module again (a metered job's instrumented module is still
 * hashed by the pool).
 *
 * @ignore
 * @example
 * ```ts
 * import { _runJob } from "./run_job.ts";
 * import { SandboxPool } from "./sandbox_pool.ts";
 * import assert from "node:assert/strict";
 *
 * await using pool = new SandboxPool({ size: 1 });
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const input = new TextEncoder().encode("abc");
 * const outcome = await _runJob(module, { input, sandbox: "process", pool }, pool._sha256(module));
 * assert.equal(new TextDecoder().decode(outcome.stdout), "cba");
 * ```
 */
export async function _runJob(
  module: Uint8Array,
  options: RunJobOptions,
  moduleHash: string | undefined,
): Promise<JobOutcome> {
  const started = performance.now();
  const settings = resolveJobOptions(module, options);
  const { sandbox = "worker", pool } = options;
  if (sandbox !== "worker" && sandbox !== "process") {
    throw new TypeError(`Cannot run job: sandbox must be "worker" or "process", got ${sandbox}`);
  }
  const { fuel, fuelCache, signal } = settings;
  const elapsed = () => Math.round(performance.now() - started);
  const refused = refuseJob(module, settings, elapsed());
  if (refused) return refused;
  let bytes = module;
  let hash = moduleHash;
  if (fuel !== undefined) {
    hash = undefined;
    const instrumented = await _instrument(module, fuelCache, signal);
    if (!(instrumented instanceof Uint8Array)) {
      return signal?.aborted ? jobOutcome(CANCELLED, elapsed()) : jobOutcome({
        exitCode: null,
        error: { kind: "invalid_module", message: instrumented.message },
      }, elapsed());
    }
    bytes = instrumented;
  }
  return await _runInSandbox(sandboxJob(bytes, settings), {
    sandbox,
    pool,
    signal,
    elapsed,
    moduleHash: hash,
  });
}

/** The fuel-metered module, or the error that instrumenting it threw. */
async function _instrument(
  module: Uint8Array,
  fuelCache: FuelCache | undefined,
  signal: AbortSignal | undefined,
): Promise<Uint8Array | Error> {
  try {
    return fuelCache
      ? await fuelCache.instrument(module, signal ? { signal } : {})
      : instrumentFuel(module);
  } catch (error) {
    return error as Error;
  }
}

/** Start the sandbox, hand it the job, and turn what it reports into an outcome. */
async function _runInSandbox(
  job: SandboxJob,
  options: {
    sandbox: "worker" | "process";
    pool: SandboxPool | undefined;
    signal: AbortSignal | undefined;
    elapsed: () => number;
    /** The hex SHA-256 of `job.module`, when the caller knows it. */
    moduleHash: string | undefined;
  },
): Promise<JobOutcome> {
  const { sandbox, pool, signal, elapsed, moduleHash } = options;
  const watch = new _JobWatch(job.maxOutputBytes, sandbox);
  const timer = setTimeout(() =>
    watch.settle({
      exitCode: null,
      error: { kind: "timeout", message: `Cannot finish job: timed out after ${job.timeoutMs} ms` },
    }), job.timeoutMs);
  const onAbort = () =>
    watch.settle({
      exitCode: null,
      error: { kind: "cancelled", message: "Cannot finish job: cancelled" },
    });
  signal?.addEventListener("abort", onAbort, { once: true });
  let box: _Sandbox | undefined;
  try {
    box = sandbox === "worker"
      ? _startWorker(job, watch)
      : _startProcess(job, watch, pool, moduleHash);
    return watch.outcome(await watch.ended, elapsed());
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    box?.kill();
    // A pooled process is reaped by its pool (awaited by pool.close()), so the outcome does not
    // wait for the killed process to exit; otherwise wait here, so nothing outlives the call.
    if (box && pool && sandbox === "process") pool._track(box.closed);
    else await box?.closed;
  }
}

/**
 * What a sandbox has reported so far: output (capped), memory, fuel; `ended` settles once, with
 * the first of the sandbox's result, a breach, the timeout, an abort or a sandbox failure.
 */
class _JobWatch implements _Handlers {
  readonly ended: Promise<JobEnd>;
  readonly #maxOutputBytes: number;
  readonly #sandbox: string;
  readonly #out: { 1: Uint8Array[]; 2: Uint8Array[] } = { 1: [], 2: [] };
  #outBytes = 0;
  #memory = 0;
  #fuelUsed: bigint | undefined;
  #files: Uint8Array | undefined;
  #ready = false;
  #done = false;
  #resolve!: (end: JobEnd) => void;
  #reject!: (error: Error) => void;

  constructor(maxOutputBytes: number, sandbox: string) {
    this.#maxOutputBytes = maxOutputBytes;
    this.#sandbox = sandbox;
    this.ended = new Promise<JobEnd>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  settle(end: JobEnd): void {
    if (!this.#done) (this.#done = true, this.#resolve(end));
  }

  event(event: SandboxEvent): void {
    if (event.type === "ready") {
      this.#ready = true;
    } else if (event.type === "started") {
      this.#memory = event.memoryBytes;
    } else if (event.type === "output") {
      this.#memory = event.memoryBytes;
      this.#output(event.fd, event.data);
    } else if (event.type === "result") {
      this.#memory = event.memoryBytes;
      if (event.fuelUsed !== undefined) this.#fuelUsed = BigInt(event.fuelUsed);
      if (event.files !== undefined) this.#files = event.files;
      this.settle({ exitCode: event.exitCode, error: event.error });
    }
  }

  failed(message: string, kind: JobErrorKind = "trap"): void {
    if (!this.#ready) {
      if (!this.#done) {
        this.#done = true;
        this.#reject(new Error(`Cannot start the ${this.#sandbox} sandbox: ${message}`));
      }
    } else if (kind === "memory_limit") {
      this.settle({
        exitCode: null,
        error: {
          kind,
          message: `Cannot finish job: the sandbox reached its ${SANDBOX_HEAP_MIB} MiB engine ` +
            `heap limit (${message})`,
        },
      });
    } else {
      this.settle({
        exitCode: null,
        error: { kind: "trap", message: `Cannot finish job: the sandbox died: ${message}` },
      });
    }
  }

  outcome(end: JobEnd, durationMs: number): JobOutcome {
    return jobOutcome(end, durationMs, {
      stdout: this.#out[1],
      stderr: this.#out[2],
      peakMemoryBytes: this.#memory,
      fuelUsed: this.#fuelUsed,
      files: this.#files,
    });
  }

  #output(fd: 1 | 2, chunk: Uint8Array): void {
    const room = this.#maxOutputBytes - this.#outBytes;
    const data = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.#out[fd].push(data);
    this.#outBytes += data.length;
    if (chunk.length > room) {
      this.settle({
        exitCode: null,
        error: {
          kind: "output_limit",
          message: `Cannot finish job: output exceeded the ${this.#maxOutputBytes} byte cap`,
        },
      });
    }
  }
}

function _startWorker(job: SandboxJob, handlers: _Handlers): _Sandbox {
  const worker = _startSandboxWorker(new URL("./sandbox_worker.ts", import.meta.url));
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let killed = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    worker.terminate();
    resolveClosed();
  };
  worker.onmessage = (e: MessageEvent<SandboxEvent>) => {
    if (!killed) handlers.event(e.data);
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    if (!killed) handlers.failed(e.message);
  };
  worker.onmessageerror = () => {
    if (!killed) handlers.failed("a message could not be decoded");
  };
  // Structured clone copies a view's whole buffer: send views of larger buffers as copies.
  const own = (b: Uint8Array) => (b.byteLength === b.buffer.byteLength ? b : b.slice());
  worker.postMessage({ ...job, module: own(job.module), input: own(job.input) });
  return { kill, closed };
}

function _startProcess(
  job: SandboxJob,
  handlers: _Handlers,
  pool: SandboxPool | undefined,
  moduleHash: string | undefined,
): _Sandbox {
  // A warm process from the pool; a stand-in pool without `_run` hands out one-shot processes.
  if (typeof pool?._run === "function") return pool._run(job, handlers, moduleHash);
  const child = pool?.take() ?? _spawnSandboxProcess();
  let killed = false;
  let exited = false;
  const kill = () => {
    if (killed || exited) return;
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  let diagnostics = "";
  const writing = (async () => {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(encodeJob(job));
      await writer.close();
    } catch {
      // The sandbox died or was killed before reading its job; its status tells why.
    }
  })();
  const readingErr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      if (diagnostics.length < SANDBOX_STDERR_BYTES) {
        diagnostics += decoder.decode(chunk, { stream: true });
      }
    }
  })();
  let gotResult = false;
  const readingOut = (async () => {
    const decoder = new FrameDecoder(resultFrameBytes(job.files));
    try {
      for await (const chunk of child.stdout) {
        for (const event of decoder.push(chunk)) {
          if (event.type === "result") gotResult = true;
          if (!killed) handlers.event(event);
        }
      }
    } catch (error) {
      if (!killed) handlers.failed((error as Error).message);
    }
  })();
  const closed = (async () => {
    const status = await child.status;
    exited = true;
    await Promise.allSettled([writing, readingErr, readingOut]);
    if (!killed && !gotResult) {
      const { message, kind } = describeSandboxExit(status, diagnostics);
      handlers.failed(message, kind);
    }
  })();
  return { kill, closed };
}
