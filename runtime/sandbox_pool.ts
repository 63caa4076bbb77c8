/**
 * Warm sandbox processes: each runs jobs one after another (a fresh WebAssembly instance and a
 * fresh WASI host per job), keeps the modules it compiled, and is replaced when a job breaks it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash, createPrivateKey, type KeyObject, sign } from "node:crypto";
import { concatBytes } from "../util/concat_bytes.ts";
import type { JobErrorKind, SandboxEvent, SandboxJob } from "./sandbox_core.ts";
import {
  encodeMessage,
  FrameDecoder,
  resultFrameBytes,
  type SandboxRequest,
} from "./sandbox_frames.ts";
import {
  _spawnSandboxProcess,
  checkSandboxConfinement,
  type ConfinementStatus,
  describeSandboxExit,
  type SandboxConfinement,
} from "./sandbox_spawn.ts";

/** Options of {@linkcode SandboxPool}. */
export interface SandboxPoolOptions {
  /**
   * Warm processes kept: started ahead, and kept between jobs. A job that finds none idle starts
   * one of its own, which ends after its job when `size` others are warm.
   * @default {navigator.hardwareConcurrency} (at most 64)
   */
  size?: number;
  /**
   * OS confinement of the processes (see `sandboxCommand` in sandbox_spawn.ts): `"auto"`
   * confines where bubblewrap works, `"require"` makes the constructor throw where it does not,
   * `"off"` never confines. Read {@linkcode SandboxPool.confinement} to warn about a fallback.
   * @default {"auto"}
   */
  confinement?: SandboxConfinement;
  /** Jobs a process runs before it is replaced; 1 is one process per job. @default {1000} */
  jobsPerSandbox?: number;
  /**
   * Bytes of module a process compiles before it is replaced (counted when a module enters its
   * cache). @default {268435456} (256 MiB)
   */
  compiledBytesPerSandbox?: number;
  /**
   * Bound of each process's cache of compiled modules, in bytes of (memory-limited) module; the
   * least recently used go first. @default {67108864} (64 MiB)
   */
  cacheBytes?: number;
  /** Internal: the sandbox entry (tests pass a probe). @ignore */
  _entry?: URL;
}

/** One job's view of a sandbox: what run_job.ts passes to {@linkcode SandboxPool._run}. */
export interface SandboxJobHandlers {
  /** An event of this job, in order; `ready` first. */
  event(event: SandboxEvent): void;
  /** The sandbox failed by itself; `kind` `memory_limit` when it died at its heap limit. */
  failed(message: string, kind?: JobErrorKind): void;
}

/** A job's hold on a sandbox, as {@linkcode SandboxPool._run} hands it out. */
export interface SandboxLease {
  /**
   * The job is over: a sandbox that gave a clean result goes back to the pool, any other is
   * killed (and replaced). Idempotent.
   */
  kill(): void;
  /** Settles when the sandbox is back in the pool or its process has ended and been reaped. */
  closed: Promise<void>;
}

/** Jobs up to this size are written with one system call. */
const COALESCE_BYTES = 16 * 1024;

/** Most module copies a pool keeps for {@linkcode SandboxPool._own}. */
const OWNED_ENTRIES = 16;

/** Most bytes of module copies a pool keeps for {@linkcode SandboxPool._own}. */
const OWNED_BYTES = 64 * 2 ** 20;

/** Bytes read from a sandbox process's stdout at most at once. */
const READ_BYTES = 64 * 1024;

/** Bytes of a sandbox process's own stderr kept (the last ones) for diagnostics. */
const STDERR_TAIL_BYTES = 8 * 1024;
/** How long the pipes of an exited sandbox may stay open (held by a process it left) before they are given up. */
const PIPE_GRACE_MS = 2_000;

const DEFAULTS = {
  jobsPerSandbox: 1000,
  compiledBytesPerSandbox: 256 * 2 ** 20,
  cacheBytes: 64 * 2 ** 20,
} as const;

/**
 * Keeps `size` warm sandbox processes (`deno` running runtime/sandbox_main.ts with no
 * permissions, confined by the OS where it can be). `runJob(module, { sandbox: "process", pool })`
 * runs the job on an idle one; its module's bytes cross the pipe once per process (later jobs
 * send its SHA-256, computed here from the bytes the caller passed, and the process reuses what
 * it compiled). A process whose job did not end cleanly (timeout, cancel, crash, trap, any
 * limit or error) is killed and replaced, as is one that has run `jobsPerSandbox` jobs or
 * compiled `compiledBytesPerSandbox` bytes, or that dies while idle.
 *
 * @example
 * ```ts
 * import { SandboxPool } from "./sandbox_pool.ts";
 * import { runJob } from "./run_job.ts";
 * import assert from "node:assert/strict";
 *
 * await using pool = new SandboxPool({ size: 1 });
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const input = new TextEncoder().encode("abc");
 * const outcome = await runJob(module, { input, sandbox: "process", pool });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "cba");
 * ```
 */
export class SandboxPool implements AsyncDisposable {
  readonly #size: number;
  readonly #confinement: SandboxConfinement;
  readonly #jobsPerSandbox: number;
  readonly #compiledBytes: number;
  readonly #cacheBytes: number;
  readonly #entry: URL | undefined;
  /** Whether this pool's processes are confined by the OS, and if not, why. */
  readonly confinement: ConfinementStatus;
  /** Every warm process alive, busy or idle. */
  readonly #warm = new Set<_WarmSandbox>();
  readonly #idle = new Set<_WarmSandbox>();
  readonly #all = new Set<Promise<unknown>>();
  #closed = false;
  #started = 0;
  #moduleBytesSent = 0;
  /** See {@linkcode SandboxPool._own}: by the caller's array, least recently used first. */
  readonly #owned = new Map<Uint8Array, { bytes: Uint8Array; hash: string }>();
  #ownedBytes = 0;
  /** See {@linkcode SandboxPool._sign}: the last secret key (a copy) and its key object. */
  #signing: { secret: Uint8Array; key: KeyObject } | undefined;

  /**
   * Start `size` processes now.
   *
   * @throws {Error} With `confinement: "require"` where the processes cannot be confined.
   */
  constructor(options: SandboxPoolOptions = {}) {
    const {
      size = Math.min(navigator.hardwareConcurrency, 64),
      confinement = "auto",
      jobsPerSandbox = DEFAULTS.jobsPerSandbox,
      compiledBytesPerSandbox = DEFAULTS.compiledBytesPerSandbox,
      cacheBytes = DEFAULTS.cacheBytes,
      _entry,
    } = options;
    if (!Number.isSafeInteger(size) || size < 0 || size > 64) {
      throw new RangeError(`Cannot make sandbox pool: size must be 0 to 64, got ${size}`);
    }
    const positive = (name: string, v: number) => {
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new RangeError(
          `Cannot make sandbox pool: ${name} must be a whole number >= 1, got ${v}`,
        );
      }
    };
    positive("jobsPerSandbox", jobsPerSandbox);
    positive("compiledBytesPerSandbox", compiledBytesPerSandbox);
    positive("cacheBytes", cacheBytes);
    if (confinement !== "auto" && confinement !== "require" && confinement !== "off") {
      throw new TypeError(
        `Cannot make sandbox pool: confinement must be "auto", "require" or "off", got ${confinement}`,
      );
    }
    this.confinement = confinement === "off"
      ? { confined: false, reason: 'confinement is "off"' }
      : checkSandboxConfinement();
    if (confinement === "require" && !this.confinement.confined) {
      throw new Error(`Cannot confine the job sandbox: ${this.confinement.reason}`);
    }
    this.#confinement = confinement;
    this.#size = size;
    this.#jobsPerSandbox = jobsPerSandbox;
    this.#compiledBytes = compiledBytesPerSandbox;
    this.#cacheBytes = cacheBytes;
    this.#entry = _entry;
    for (let i = 0; i < size; i++) this.#refill();
  }

  /** Idle warm processes ready now. */
  get idle(): number {
    return this.#idle.size;
  }

  /** PIDs of the warm processes alive now (the bubblewrap launcher's where confined). */
  get pids(): number[] {
    return [...this.#warm].map((s) => s.child.pid);
  }

  /** Warm processes started since the pool was made (replacements included). */
  get started(): number {
    return this.#started;
  }

  /** Bytes of module sent to warm processes so far (each module once per process). */
  get moduleBytesSent(): number {
    return this.#moduleBytesSent;
  }

  /**
   * A new sandbox process for one job, owned by the caller (runJob uses the warm ones through
   * {@linkcode SandboxPool._run} instead).
   */
  take(): Deno.ChildProcess {
    if (this.#closed) throw new TypeError("Cannot take a sandbox: the pool is closed");
    return _spawnSandboxProcess(this.#entry, { confinement: this.#confinement });
  }

  /**
   * Internal: the hex SHA-256 of `bytes`, natively (`node:crypto`, which this module loads
   * anyway).
   *
   * @ignore
   */
  _sha256(bytes: Uint8Array): string {
    return createHash("sha256").update(bytes).digest("hex");
  }

  /**
   * Internal: the Ed25519 signature of `message` by `secretKey` (a raw 32-byte seed), natively
   * and synchronously (`node:crypto`): runSignedJob signs a job's manifest and receipt with it,
   * where Web Crypto hands every signature to another thread and back (measured: ~41 µs of CPU
   * a signature, against ~17). Ed25519 is deterministic: the signature is `signMessage`'s. The
   * key object of the last secret key is kept (with a copy of its bytes, compared each time).
   *
   * @ignore
   */
  _sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
    let held = this.#signing;
    if (
      held === undefined || held.secret.length !== secretKey.length ||
      Buffer.compare(held.secret, secretKey) !== 0
    ) {
      if (secretKey.length !== 32) {
        throw new RangeError(
          `Cannot use Ed25519 secret key: expected 32 bytes, got ${secretKey.length}`,
        );
      }
      const b64 = (b: Uint8Array) => b.toBase64({ alphabet: "base64url", omitPadding: true });
      // `x` is required by the format; the key is derived from `d` alone.
      const jwk = { kty: "OKP", crv: "Ed25519", d: b64(secretKey), x: b64(new Uint8Array(32)) };
      held = { secret: secretKey.slice(), key: createPrivateKey({ key: jwk, format: "jwk" }) };
      this.#signing = held;
    }
    return new Uint8Array(sign(null, message, held.key));
  }

  /**
   * Internal: a copy of `module` that only this pool holds, and its hex SHA-256, for
   * runSignedJob to hash a job's module once and hand both to {@linkcode SandboxPool._run}:
   * since nothing else can change the copy, the hash stays the hash of the bytes sent. The
   * copies of the arrays seen last are kept (at most {@linkcode OWNED_ENTRIES}, and
   * {@linkcode OWNED_BYTES} in all, least recently used out): a later job given the same array
   * gets the same copy and hash if its bytes still equal the copy's (a native comparison, a
   * fraction of a hash); an array whose bytes changed is copied and hashed afresh.
   *
   * @ignore
   */
  _own(module: Uint8Array): { bytes: Uint8Array; hash: string } {
    const owned = this.#owned;
    const hit = owned.get(module);
    if (hit !== undefined) {
      owned.delete(module);
      if (hit.bytes.length === module.length && Buffer.compare(hit.bytes, module) === 0) {
        owned.set(module, hit);
        return hit;
      }
      this.#ownedBytes -= hit.bytes.length;
    }
    const bytes = module.slice();
    const entry = { bytes, hash: this._sha256(bytes) };
    if (bytes.length > OWNED_BYTES) return entry;
    for (const [key, old] of owned) {
      if (owned.size < OWNED_ENTRIES && this.#ownedBytes + bytes.length <= OWNED_BYTES) break;
      owned.delete(key);
      this.#ownedBytes -= old.bytes.length;
    }
    owned.set(module, entry);
    this.#ownedBytes += bytes.length;
    return entry;
  }

  /**
   * Internal: run `job` on an idle warm process (or a new one), reporting to `handlers`.
   * `moduleHash`, when given, is the hex SHA-256 of `job.module` (the caller hashed bytes no one
   * else holds, see run_signed_job.ts); otherwise the module is hashed here.
   *
   * @ignore
   */
  _run(job: SandboxJob, handlers: SandboxJobHandlers, moduleHash?: string): SandboxLease {
    if (this.#closed) throw new TypeError("Cannot take a sandbox: the pool is closed");
    let box: _WarmSandbox | undefined;
    for (const idle of this.#idle) {
      this.#idle.delete(idle);
      // One killed for breaking the protocol while idle is on its way out.
      if (idle.alive) {
        box = idle;
        break;
      }
    }
    box ??= this.#spawn();
    const key = `${moduleHash ?? this._sha256(job.module)}:${job.memoryBytes}`;
    // A warm process that dies before saying anything of this job (killed while idle, say) had
    // not started it: the job runs once more, on a fresh process, and only once.
    let current: SandboxLease;
    const retry = () => {
      if (this.#closed) return false;
      current = this.#send(this.#spawn(), job, key, handlers, undefined);
      return true;
    };
    current = this.#send(box, job, key, handlers, retry);
    return {
      kill: () => current.kill(),
      get closed() {
        return current.closed;
      },
    };
  }

  #send(
    box: _WarmSandbox,
    job: SandboxJob,
    key: string,
    handlers: SandboxJobHandlers,
    retry: (() => boolean) | undefined,
  ): SandboxLease {
    const lease = box.run(job, key, this.#cacheBytes, handlers, retry);
    this.#moduleBytesSent += lease.moduleBytesSent;
    return lease;
  }

  /**
   * Internal: a handed-out process's clean-up, awaited by {@linkcode SandboxPool.close}.
   *
   * @ignore
   */
  _track(closing: Promise<void>): void {
    const done: Promise<unknown> = closing.finally(() => this.#all.delete(done));
    this.#all.add(done);
  }

  /** Kill the idle processes and wait for them and for busy ones; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const box of this.#idle) box.kill();
    this.#idle.clear();
    await Promise.allSettled([...this.#all]);
  }

  /** Same as {@linkcode SandboxPool.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** A job is done with `box`: keep it warm, or end it. */
  #release(box: _WarmSandbox, clean: boolean): void {
    if (
      clean && !this.#closed && box.jobs < this.#jobsPerSandbox &&
      box.compiledBytes < this.#compiledBytes && this.#warm.size <= this.#size
    ) {
      this.#idle.add(box);
    } else {
      box.kill();
    }
  }

  #refill(): void {
    if (this.#closed || this.#warm.size >= this.#size) return;
    this.#idle.add(this.#spawn());
  }

  #spawn(): _WarmSandbox {
    const child = _spawnSandboxProcess(this.#entry, { confinement: this.#confinement });
    this.#started++;
    const box = new _WarmSandbox(child, (b, clean) => this.#release(b, clean));
    this.#warm.add(box);
    const done: Promise<unknown> = box.exited.then(() => {
      this.#warm.delete(box);
      this.#idle.delete(box);
      // One that never got as far as `ready` is not replaced at once (a sandbox that cannot
      // start would be respawned in a loop): the next job starts one.
      if (box.ready) this.#refill();
    }).finally(() => this.#all.delete(done));
    this.#all.add(done);
    return box;
  }
}

/**
 * Internal (exported for tests): one warm sandbox process: its pipes, what it has compiled, and
 * the job it runs now.
 */
export class _WarmSandbox {
  readonly child: Deno.ChildProcess;
  /**
   * Settles once the process has ended and its pipes are drained, or given up PIPE_GRACE_MS
   * after it ended while a process it left holds them open.
   */
  readonly exited: Promise<void>;
  jobs = 0;
  compiledBytes = 0;
  readonly #release: (box: _WarmSandbox, clean: boolean) => void;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Decoder of the process's stdout; its cap is set per job (a tree in the result is larger). */
  readonly #decoder = new FrameDecoder();
  /** Cache keys the process holds compiled, as its results said. */
  readonly #cached = new Set<string>();
  #ready = false;
  #killed = false;

  /** Whether the process is not known to be ending. */
  get alive(): boolean {
    return !this.#killed;
  }

  /** Whether the process said `ready`. */
  get ready(): boolean {
    return this.#ready;
  }

  #diagnostics = "";
  /** The running job: its handlers, until its result (or the end of the process). */
  #job: {
    handlers: SandboxJobHandlers;
    key: string;
    sentBytes: number;
    /** Whether the process said anything of this job. */
    heard: boolean;
    /** Run the job on another process instead; false if it cannot. */
    retry: (() => boolean) | undefined;
  } | null = null;

  constructor(child: Deno.ChildProcess, release: (box: _WarmSandbox, clean: boolean) => void) {
    this.child = child;
    this.#release = release;
    const writer = child.stdin.getWriter();
    this.#writer = writer;
    const errReader = child.stderr.getReader();
    const readingErr = (async () => {
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await errReader.read();
        if (done) break;
        this.#diagnostics = (this.#diagnostics + decoder.decode(value, { stream: true }))
          .slice(-STDERR_TAIL_BYTES);
      }
    })();
    const outReader = child.stdout.getReader({ mode: "byob" });
    const readingOut = (async () => {
      // Into one buffer, reused: a plain read allocates (and zeroes) 64 KiB per read, which the
      // few bytes of a small job's frames then keep alive. The decoder keeps no view of it.
      const reader = outReader;
      let buffer = new Uint8Array(READ_BYTES);
      try {
        for (;;) {
          const { value, done } = await reader.read(buffer);
          if (done) break;
          for (const event of this.#decoder.push(value)) this.#event(event);
          if (this.#killed) {
            await reader.cancel();
            break;
          }
          buffer = new Uint8Array(value.buffer);
        }
      } catch (error) {
        this.#fail((error as Error).message);
      }
    })();
    this.exited = (async () => {
      const status = await child.status;
      this.#killed = true;
      const pipes = Promise.allSettled([readingErr, readingOut, writer.close()]);
      // A process it started may outlive it and hold its pipes open (an inner bwrap killed in
      // the middle of its set-up): after PIPE_GRACE_MS the pipes are given up, not waited for.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = await Promise.race([
        pipes.then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), PIPE_GRACE_MS)),
      ]);
      clearTimeout(timer);
      if (late) {
        await Promise.allSettled([
          errReader.cancel(),
          outReader.cancel(),
          writer.abort(new Error("the sandbox exited")),
        ]);
        await pipes;
      }
      const job = this.#job;
      this.#job = null;
      if (job && !(this.#ready && !job.heard && job.retry?.())) {
        const { message, kind } = describeSandboxExit(status, this.#diagnostics);
        job.handlers.failed(message, kind);
      }
    })();
  }

  /** Send `job` to the process; see {@linkcode SandboxPool._run}. */
  run(
    job: SandboxJob,
    key: string,
    cacheBytes: number,
    handlers: SandboxJobHandlers,
    retry: (() => boolean) | undefined,
  ): SandboxLease & { moduleBytesSent: number } {
    this.jobs++;
    // Between jobs nothing is pending (a result ends a job's frames), so the cap is this job's.
    this.#decoder.maxFrameBytes = resultFrameBytes(job.files);
    const known = this.#cached.has(key);
    this.#job = { handlers, key, sentBytes: known ? 0 : job.module.length, heard: false, retry };
    if (this.#ready) handlers.event({ type: "ready" });
    const { module, ...rest } = job;
    const request: SandboxRequest = { ...rest, cacheKey: key, cacheBytes };
    if (!known) request.module = module;
    const writing = (async () => {
      try {
        const parts = encodeMessage(request);
        // One write for a small job (a copy is cheaper than a system call); large blobs as is.
        if (parts.reduce((n, p) => n + p.length, 0) <= COALESCE_BYTES) {
          await this.#writer.write(concatBytes(parts));
        } else {
          for (const part of parts) await this.#writer.write(part);
        }
      } catch {
        // The process died before reading its job; its status tells why.
      }
    })();
    let clean: boolean | undefined;
    let closed: Promise<void> | undefined;
    let result = false;
    const watch = handlers;
    handlers = {
      event: (event) => {
        if (event.type === "result") result = event.error === null;
        watch.event(event);
      },
      failed: (message, kind) => watch.failed(message, kind),
    };
    this.#job.handlers = handlers;
    const kill = () => {
      if (clean !== undefined) return;
      // Clean only if the result came and nothing else was said since.
      clean = result && this.#job === null && !this.#killed;
      if (!clean) {
        if (this.#job?.handlers === handlers) this.#job = null;
        this.kill();
        closed = this.exited;
      } else {
        closed = writing.then(() => {});
      }
      this.#release(this, clean);
    };
    return {
      kill,
      moduleBytesSent: known ? 0 : module.length,
      get closed() {
        return closed ?? Promise.resolve();
      },
    };
  }

  /** End the process now; idempotent. */
  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  #event(event: SandboxEvent & { cached?: boolean; evicted?: string[] }): void {
    if (event.type === "ready" && !this.#ready) {
      this.#ready = true;
      this.#job?.handlers.event(event);
      return;
    }
    const job = this.#job;
    if (job === null || event.type === "ready") {
      // Nothing is running, or a second `ready`: the process is not following the protocol.
      this.kill();
      return;
    }
    job.heard = true;
    if (event.type === "result") {
      this.#job = null;
      for (const key of event.evicted ?? []) this.#cached.delete(key);
      if (event.cached && !this.#cached.has(job.key)) {
        this.#cached.add(job.key);
        this.compiledBytes += job.sentBytes;
      }
      const { cached: _c, evicted: _e, ...rest } = event;
      job.handlers.event(rest);
      return;
    }
    job.handlers.event(event);
  }

  #fail(message: string): void {
    const job = this.#job;
    this.#job = null;
    this.kill();
    job?.handlers.failed(message);
  }
}
