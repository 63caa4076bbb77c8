/**
 * A few sandbox processes started ahead of time, so a job does not wait for a `deno` process
 * to boot (~35 ms here). Each process still runs exactly one job and then exits.
 *
 * @module
 */
import { _spawnSandboxProcess } from "./run_job.ts";

/** Options of {@linkcode SandboxPool}. */
export interface SandboxPoolOptions {
  /** Idle processes kept ready. @default {1} */
  size?: number;
}

/**
 * Keeps `size` idle sandbox processes (`deno` running runtime/sandbox_main.ts with no
 * permissions, waiting for a job on stdin). `runJob(module, { sandbox: "process", pool })`
 * takes one and the pool starts a replacement at once. Idle processes hold no job and no
 * data; one that dies while idle is dropped.
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
  readonly #idle = new Set<Deno.ChildProcess>();
  readonly #all = new Set<Promise<unknown>>();
  #closed = false;

  /** Start `size` processes now. */
  constructor(options: SandboxPoolOptions = {}) {
    const { size = 1 } = options;
    if (!Number.isSafeInteger(size) || size < 0 || size > 64) {
      throw new RangeError(`Cannot make sandbox pool: size must be 0 to 64, got ${size}`);
    }
    this.#size = size;
    for (let i = 0; i < size; i++) this.#spawn();
  }

  /** Idle processes ready now. */
  get idle(): number {
    return this.#idle.size;
  }

  /**
   * A started sandbox process for one job: an idle one when there is one, else a new one.
   * Starts a replacement in the background. The caller owns the process from here.
   */
  take(): Deno.ChildProcess {
    if (this.#closed) throw new TypeError("Cannot take a sandbox: the pool is closed");
    const [child] = this.#idle;
    if (child) {
      this.#idle.delete(child);
      this.#spawn();
      return child;
    }
    return _spawnSandboxProcess(new URL("./sandbox_main.ts", import.meta.url));
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

  /** Kill the idle processes and wait for them and for handed-out ones; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const child of this.#idle) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    this.#idle.clear();
    await Promise.allSettled([...this.#all]);
  }

  /** Same as {@linkcode SandboxPool.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #spawn(): void {
    if (this.#closed || this.#idle.size >= this.#size) return;
    const child = _spawnSandboxProcess(new URL("./sandbox_main.ts", import.meta.url));
    this.#idle.add(child);
    const done: Promise<unknown> = child.status.then(async () => {
      // Died while idle (or after its job): drop it; drain what it said so nothing leaks.
      const wasIdle = this.#idle.delete(child);
      if (wasIdle) {
        await Promise.allSettled([
          child.stdout.cancel(),
          child.stderr.cancel(),
          child.stdin.close(),
        ]);
      }
    }).finally(() => this.#all.delete(done));
    this.#all.add(done);
  }
}
