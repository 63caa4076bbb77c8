/**
 * The part of a job that runs inside the sandbox (a worker or a process without permissions):
 * check the module's features and imports, cap its memory and tables, compile, instantiate with
 * WASI, run `_start`, stream the output and classify how it ended. Both sandbox kinds call {@linkcode executeJob}; they differ only in how
 * the events travel to the parent.
 *
 * @module
 */
import { checkModule } from "./check_module.ts";
import { readFuel, startFuel } from "./fuel.ts";
import {
  limitMemory,
  MEMORY_EXPORT,
  MemoryCapError,
  type MemoryLimits,
  TABLE_CAP_FRACTION,
  TABLE_ENTRY_BYTES,
  TABLE_EXPORT,
} from "./limit_memory.ts";
import { createWasi, WasiExit } from "./wasi.ts";
// Types only: the filesystem's code is loaded (by the caller, see `openFiles`) only for a job
// that has files, so a job without them pays nothing for it.
import type { JobFiles, openJobFiles, WasiPreopen } from "./wasi_fs.ts";
import { errorMessage } from "../util/error_message.ts";

/** Why a job failed; see `JobOutcome.error` in run_job.ts. */
export type JobErrorKind =
  | "invalid_module"
  | "module_too_large"
  | "no_start"
  | "trap"
  | "stack_overflow"
  | "timeout"
  | "memory_limit"
  | "output_limit"
  | "fuel_exhausted"
  | "cancelled"
  | "fs_bytes_limit"
  | "fs_files_limit";

/** The files of a job (see wasi_fs.ts): a tree, where it is preopened, and its caps. */
export interface SandboxFiles {
  /** The input tree, encoded (`encodeFileTree`); checked again against the caps here. */
  tree: Uint8Array;
  /** The directories the module gets as fds 3, 4, ... */
  preopens: WasiPreopen[];
  /** Cap on the bytes of all files together, the job's writes included. */
  maxBytes: number;
  /** Cap on the entries (files, directories, links), the job's included. */
  maxFiles: number;
}

/** A job as the sandbox receives it; options are already validated. */
export interface SandboxJob {
  /** The WebAssembly binary. */
  module: Uint8Array;
  /** Bytes for fd 0. */
  input: Uint8Array;
  /** Full argv, `argv[0]` included. */
  args: string[];
  /** The complete environment. */
  env: Record<string, string>;
  /** Linear memory cap in bytes. */
  memoryBytes: number;
  /** Cap on stdout plus stderr in bytes. */
  maxOutputBytes: number;
  /**
   * Wall-clock budget in milliseconds, checked on every WASI call. The parent enforces the
   * timeout by killing the sandbox; this check stops a job in a sandbox that cannot be killed
   * promptly (a busy worker) as soon as it next calls the host.
   */
  timeoutMs: number;
  /**
   * Fuel limit as a decimal string, for a module the parent already instrumented with
   * `instrumentFuel`; absent for an unmetered job.
   */
  fuel?: string;
  /**
   * The module was made by `instrumentFuel` from one that already passed `checkModule`
   * (run_in_process.ts gates before instrumenting), so the gate is not run again.
   */
  gated?: boolean;
  /** The job's files; absent: no filesystem at all (and none of its code runs). */
  files?: SandboxFiles;
}

/** A module as {@linkcode executeJob} instantiates it: checked, memory-limited and compiled. */
export interface CompiledModule {
  /** The compiled, limit-rewritten module. */
  module: WebAssembly.Module;
  /** The memories it declares, as `limitMemory` reports them. */
  memories: MemoryLimits[];
  /** Size of the rewritten binary that was compiled. */
  byteLength: number;
}

/**
 * Where {@linkcode executeJob} finds the job's module already compiled (`get`), or leaves the one
 * it compiled (`set`): one cache entry, chosen by the caller for this job's module and memory cap.
 */
export interface CompiledModuleSlot {
  get(): CompiledModule | undefined;
  set(compiled: CompiledModule): void;
}

/** An event from the sandbox to its parent, in order; `result` is the last one. */
export type SandboxEvent =
  | { type: "ready" }
  | { type: "started"; memoryBytes: number }
  | { type: "output"; fd: 1 | 2; data: Uint8Array; memoryBytes: number }
  | {
    type: "result";
    exitCode: number | null;
    error: { kind: JobErrorKind; message: string } | null;
    memoryBytes: number;
    /** Fuel used, as a decimal string, for a metered job. */
    fuelUsed?: string;
    /** The files when the job ended (`encodeFileTree`), for a job given `files`. */
    files?: Uint8Array;
  };

/**
 * Output is passed to the parent when this much is pending, at the end of the job, or on a
 * write at least {@linkcode FLUSH_MS} after the previous pass (the first write always passes at
 * once). A kill (timeout, cancel) can therefore lose at most the output of the last
 * `FLUSH_MS` before the module stopped calling the host. Pending stdout and stderr are kept in
 * one growable buffer each, whatever the writes alternate between, and a pass sends at most one
 * event per descriptor: a job sends at most `2 * (maxOutputBytes / FLUSH_BYTES +
 * duration / FLUSH_MS + 2)` output events, however small its writes.
 */
const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 5;

/**
 * A failing job whose linear memory ends at or above this fraction of the cap, or whose table
 * ends at or above this fraction of the table cap, is classified as `memory_limit`: the engine
 * refused `memory.grow` (or `table.grow`) at the cap, and the failure then surfaced as a trap or
 * a non-zero exit.
 *
 * @example
 * ```ts
 * import { MEMORY_LIMIT_FRACTION } from "./sandbox_core.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MEMORY_LIMIT_FRACTION, 0.875);
 * ```
 */
export const MEMORY_LIMIT_FRACTION = 7 / 8;

class _Stop extends Error {
  constructor() {
    super("job stopped by the host");
    this.name = "Stop";
  }
}

/**
 * Run one job to its end, synchronously, and report through `emit`: `started` once the module
 * is instantiated, `output` chunks (coalesced, in write order), then exactly one `result`.
 * Nothing throws out of this function for anything the module does. A job with `files` needs
 * `openFiles` (`openJobFiles` of wasi_fs.ts, which the caller imports only for such a job);
 * without it such a job fails.
 *
 * @example
 * ```ts
 * import { executeJob, type SandboxEvent } from "./sandbox_core.ts";
 * import assert from "node:assert/strict";
 *
 * const events: SandboxEvent[] = [];
 * executeJob({
 *   module: new Uint8Array([1, 2, 3]),
 *   input: new Uint8Array(),
 *   args: ["module.wasm"],
 *   env: {},
 *   memoryBytes: 1 << 20,
 *   maxOutputBytes: 1024,
 *   timeoutMs: 1000,
 * }, (event) => events.push(event));
 * const last = events.at(-1);
 * assert.equal(last?.type === "result" && last.error?.kind, "invalid_module");
 * ```
 */
export function executeJob(
  job: SandboxJob,
  emit: (event: SandboxEvent) => void,
  cache?: CompiledModuleSlot,
  openFiles?: typeof openJobFiles,
): void {
  let memory: WebAssembly.Memory | null = null;
  let table: WebAssembly.Table | null = null;
  let files: JobFiles | undefined;
  let instance: WebAssembly.Instance | undefined;
  const tableCap = Math.floor(job.memoryBytes * TABLE_CAP_FRACTION / TABLE_ENTRY_BYTES);
  const fuel = job.fuel === undefined ? undefined : BigInt(job.fuel);
  let fuelStarted = false;
  const fuelUsed = () =>
    fuel === undefined || instance === undefined || !fuelStarted ? {} : {
      fuelUsed: String(readFuel(instance, fuel).used),
    };
  const pending = { 1: new _Buffer(), 2: new _Buffer() };
  let lastFlush = -Infinity;
  let written = 0;
  let finished = false;
  const linearBytes = () => memory?.buffer.byteLength ?? 0;
  /** Linear memory plus tables: what the job makes the engine hold for it. */
  const memoryBytes = () => linearBytes() + (table?.length ?? 0) * TABLE_ENTRY_BYTES;
  const deadline = performance.now() + job.timeoutMs;
  const check = () => {
    if (finished) throw new _Stop();
    if (performance.now() > deadline) {
      finish(null, {
        kind: "timeout",
        message: `Cannot finish job: timed out after ${job.timeoutMs} ms`,
      });
      throw new _Stop();
    }
  };

  const flush = () => {
    for (const fd of [1, 2] as const) {
      if (pending[fd].length > 0) {
        emit({ type: "output", fd, data: pending[fd].take(), memoryBytes: memoryBytes() });
      }
    }
    lastFlush = performance.now();
  };
  const finish = (
    exitCode: number | null,
    error: { kind: JobErrorKind; message: string } | null,
  ) => {
    if (finished) return;
    finished = true;
    flush();
    // One line whatever the engine or the module's names put in a message.
    if (error) error = { kind: error.kind, message: _oneLine(error.message) };
    emit({
      type: "result",
      exitCode,
      error,
      memoryBytes: memoryBytes(),
      ...fuelUsed(),
      ...(files ? _encodeFiles(files) : {}),
    });
  };
  /** One `fd_write` call: its chunks are views of the module's memory, copied here. */
  const write = (fd: 1 | 2, chunks: readonly Uint8Array[]) => {
    if (finished) throw new _Stop();
    for (const data of chunks) {
      const room = job.maxOutputBytes - written;
      const take = data.length > room ? data.subarray(0, room) : data;
      if (take.length >= FLUSH_BYTES) {
        // Large: pass it on after what is pending, in copies of FLUSH_BYTES at most.
        flush();
        for (let at = 0; at < take.length; at += FLUSH_BYTES) {
          const slice = take.slice(at, at + FLUSH_BYTES);
          emit({ type: "output", fd, data: slice, memoryBytes: memoryBytes() });
        }
      } else if (take.length > 0) {
        pending[fd].push(take);
      }
      written += take.length;
      if (data.length > room) {
        finish(null, {
          kind: "output_limit",
          message: `Cannot finish job: output exceeded the ${job.maxOutputBytes} byte cap`,
        });
        throw new _Stop();
      }
    }
    if (
      pending[1].length + pending[2].length >= FLUSH_BYTES ||
      performance.now() - lastFlush >= FLUSH_MS
    ) {
      flush();
    }
  };
  const failure = (error: unknown, exitCode: number | null) => {
    if (error instanceof _Stop) return finish(null, null);
    const limit = _fsLimit(error);
    if (limit) return finish(null, limit);
    if (error instanceof WasiExit) return classify(error.code, null);
    if (error instanceof RangeError && /call stack/i.test(error.message)) {
      return finish(null, {
        kind: "stack_overflow",
        message: "Cannot finish job: stack overflow (call stack size exceeded)",
      });
    }
    if (error instanceof RangeError && /memory/i.test(error.message)) {
      return finish(null, {
        kind: "memory_limit",
        message: `Cannot allocate linear memory: ${error.message}`,
      });
    }
    const message = errorMessage(error);
    classify(exitCode, { kind: "trap", message: `Cannot finish job: module trapped: ${message}` });
  };
  /** Apply the memory rule to a job that ended with `exitCode` or `error`. */
  const classify = (
    exitCode: number | null,
    error: { kind: JobErrorKind; message: string } | null,
  ) => {
    const failed = error !== null || (exitCode !== null && exitCode !== 0);
    const how = () => error === null ? `exit code ${exitCode}` : error.message.replace(/^.*: /, "");
    if (failed && memory !== null && linearBytes() >= job.memoryBytes * MEMORY_LIMIT_FRACTION) {
      return finish(exitCode, {
        kind: "memory_limit",
        message: `Cannot finish job: linear memory reached the ${job.memoryBytes} byte cap ` +
          `(${linearBytes()} bytes in use; ${how()})`,
      });
    }
    if (failed && table !== null && table.length >= tableCap * MEMORY_LIMIT_FRACTION) {
      return finish(exitCode, {
        kind: "memory_limit",
        message: `Cannot finish job: its table reached the ${tableCap} entry cap of the ` +
          `${job.memoryBytes} byte memory cap (${table.length} entries; ${how()})`,
      });
    }
    finish(exitCode, error);
  };

  // A warm sandbox (sandbox_main.ts) hands in the module it compiled for an earlier job.
  let limited = cache?.get();
  if (limited === undefined) {
    let rewritten;
    try {
      if (!job.gated) checkModule(job.module);
      rewritten = limitMemory(job.module, job.memoryBytes);
    } catch (error) {
      const kind = error instanceof MemoryCapError ? "memory_limit" : "invalid_module";
      return finish(null, { kind, message: (error as Error).message });
    }
    try {
      limited = {
        module: new WebAssembly.Module(rewritten.bytes as Uint8Array<ArrayBuffer>),
        memories: rewritten.memories,
        byteLength: rewritten.bytes.length,
      };
    } catch (error) {
      return finish(null, {
        kind: "invalid_module",
        message: `Cannot compile module: ${
          (error as Error).message.replace(/^WebAssembly\.Module\(\): /, "")
        }`,
      });
    }
    cache?.set(limited);
  }
  const module = limited.module;
  if (job.files) {
    try {
      if (!openFiles) throw new Error("the sandbox did not load its filesystem");
      files = openFiles(job.files);
    } catch (error) {
      return finish(
        null,
        _fsLimit(error) ?? {
          kind: "invalid_module",
          message: `Cannot use the job's files: ${errorMessage(error)}`,
        },
      );
    }
  }
  const wasi = createWasi({
    args: job.args,
    env: job.env,
    stdin: job.input,
    write,
    check,
    ...(files ? { fs: files.fs } : {}),
  });
  // No prototype anywhere: a name the module was not given resolves to nothing.
  const imports: WebAssembly.Imports = Object.assign(Object.create(null), {
    wasi_snapshot_preview1: wasi.imports,
  });
  for (const m of limited.memories) {
    if (m.imported?.module === "env" && m.imported.name === "memory") {
      try {
        memory = new WebAssembly.Memory({
          initial: m.initialPages,
          maximum: m.maximumPages,
          shared: m.shared,
        });
      } catch (error) {
        return failure(error, null);
      }
      imports.env = Object.freeze(Object.assign(Object.create(null), { memory }));
      wasi.bindMemory(memory);
    }
  }
  try {
    instance = new WebAssembly.Instance(module, imports);
  } catch (error) {
    if (error instanceof WebAssembly.LinkError || error instanceof TypeError) {
      return finish(null, {
        kind: "invalid_module",
        message: `Cannot instantiate module: ${
          error.message.replace(/^WebAssembly\.Instance\(\): /, "")
        }`,
      });
    }
    return failure(error, null);
  }
  const exported = instance.exports[MEMORY_EXPORT];
  if (memory === null && exported instanceof WebAssembly.Memory) {
    memory = exported;
    wasi.bindMemory(memory);
  }
  const exportedTable = instance.exports[TABLE_EXPORT];
  if (exportedTable instanceof WebAssembly.Table) table = exportedTable;
  emit({ type: "started", memoryBytes: memoryBytes() });
  const start = instance.exports._start;
  if (typeof start !== "function") {
    return finish(null, {
      kind: "no_start",
      message: "Cannot run module: it exports no '_start' function (not a WASI command)",
    });
  }
  // A metered job succeeds only if the fuel it was charged fits its limit: the last straight-line
  // segment is charged on entry, so a job can end (return or proc_exit) slightly over the limit
  // before a check point sees it; that is exhaustion too, so `fuel_used <= limit` iff success.
  const exhausted = () => fuel !== undefined && readFuel(instance!, fuel).exhausted;
  const outOfFuel = () =>
    finish(null, {
      kind: "fuel_exhausted",
      message: `Cannot finish job: fuel exhausted (limit ${fuel})`,
    });
  try {
    if (fuel !== undefined) {
      fuelStarted = true;
      startFuel(instance, fuel);
    }
    start();
  } catch (error) {
    if (exhausted() && !(error instanceof _Stop)) return outOfFuel();
    return failure(error, null);
  }
  if (exhausted()) return outOfFuel();
  classify(0, null);
}

/** The job's final files, or nothing if they cannot be encoded (never expected: never throws). */
function _encodeFiles(files: JobFiles): { files?: Uint8Array } {
  try {
    return { files: files.encode() };
  } catch {
    return {};
  }
}

/** The kind and message of a filesystem cap breach (`WasiFsLimitError`), else null. */
function _fsLimit(error: unknown): { kind: JobErrorKind; message: string } | null {
  const e = error as { name?: unknown; kind?: unknown; message?: unknown } | null;
  if (e?.name !== "WasiFsLimitError") return null;
  if (e.kind !== "fs_bytes_limit" && e.kind !== "fs_files_limit") return null;
  return { kind: e.kind, message: String(e.message) };
}

/** A growable byte buffer: pending output of one descriptor. */
class _Buffer {
  #bytes = new Uint8Array(0);
  length = 0;
  push(data: Uint8Array): void {
    if (this.length + data.length > this.#bytes.length) {
      const next = new Uint8Array(Math.max(256, 2 * (this.length + data.length)));
      next.set(this.#bytes.subarray(0, this.length));
      this.#bytes = next;
    }
    this.#bytes.set(data, this.length);
    this.length += data.length;
  }
  /** The pending bytes as a new array of their own; empties the buffer. */
  take(): Uint8Array {
    const out = this.#bytes.slice(0, this.length);
    this.length = 0;
    return out;
  }
}

/** Control characters (a newline from a module's names, say) become spaces. */
function _oneLine(message: string): string {
  // deno-lint-ignore no-control-regex -- control characters are exactly what is replaced
  return message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ");
}
