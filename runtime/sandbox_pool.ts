/**
 * A few sandbox processes started ahead of time, so a job does not wait for a `deno` process
 * to boot (~35 ms here). Each process still runs exactly one job and then exits.
 *
 * @module
 */
import {
  _spawnSandboxProcess,
  checkSandboxConfinement,
  type ConfinementStatus,
  type SandboxConfinement,
} from "./sandbox_spawn.ts";

/** Options of {@linkcode SandboxPool}. */
export interface SandboxPoolOptions {
  /** Idle processes kept ready. @default {1} */
  size?: number;
  /**
   * OS confinement of the processes (see `sandboxCommand` in sandbox_spawn.ts): `"auto"`
   * confines where bubblewrap works, `"require"` makes the constructor throw where it does not,
   * `"off"` never confines. Read {@linkcode SandboxPool.confinement} to warn about a fallback.
   * @default {"auto"}
   */
  confinement?: SandboxConfinement;
}

/**
 * Keeps `size` idle sandbox processes (`deno` running runtime/sandbox_main.ts with no
 * permissions, confined by the OS where it can be, waiting for a job on stdin). `runJob(module, { sandbox: "process", pool })`
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
  readonly #confinement: SandboxConfinement;
  /** Whether this pool's processes are confined by the OS, and if not, why. */
  readonly confinement: ConfinementStatus;
  readonly #idle = new Set<Deno.ChildProcess>();
  readonly #all = new Set<Promise<unknown>>();
  #closed = false;

  /**
   * Start `size` processes now.
   *
   * @throws {Error} With `confinement: "require"` where the processes cannot be confined.
   */
  constructor(options: SandboxPoolOptions = {}) {
    const { size = 1, confinement = "auto" } = options;
    if (!Number.isSafeInteger(size) || size < 0 || size > 64) {
      throw new RangeError(`Cannot make sandbox pool: size must be 0 to 64, got ${size}`);
    }
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
    return this.#start();
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

  #start(): Deno.ChildProcess {
    return _spawnSandboxProcess(undefined, { confinement: this.#confinement });
  }

  #spawn(): void {
    if (this.#closed || this.#idle.size >= this.#size) return;
    const child = this.#start();
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
