/**
 * A counting semaphore: at most `permits` holders at once, the others wait in order.
 *
 * @module
 */

/**
 * A counting semaphore with fair (first come, first served) hand-over: a released permit goes
 * straight to the longest waiter, so a newcomer can never overtake it. A wait ends with the
 * signal's reason when its `signal` aborts first.
 *
 * @example
 * ```ts
 * import { Semaphore } from "./semaphore.ts";
 * import assert from "node:assert/strict";
 *
 * const slots = new Semaphore(1);
 * await slots.acquire();
 * const second = slots.acquire();
 * assert.equal(slots.waiting, 1);
 * slots.release(); // handed to the waiter: still one holder
 * await second;
 * assert.equal(slots.held, 1);
 * slots.release();
 * assert.equal(await slots.use(() => Promise.resolve(42)), 42);
 * assert.equal(slots.held, 0);
 * ```
 */
export class Semaphore {
  readonly #permits: number;
  #held = 0;
  #waiters: Array<() => void> = [];

  /**
   * Make a semaphore with `permits` permits.
   *
   * @example
   * ```ts
   * import { Semaphore } from "./semaphore.ts";
   * import assert from "node:assert/strict";
   * assert.throws(() => new Semaphore(0), RangeError);
   * ```
   */
  constructor(permits: number) {
    if (!Number.isSafeInteger(permits) || permits < 1) {
      throw new RangeError(`Cannot use ${permits} permits: expected a positive integer`);
    }
    this.#permits = permits;
  }

  /** How many permits there are. */
  get permits(): number {
    return this.#permits;
  }

  /** Permits held now. */
  get held(): number {
    return this.#held;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Take a permit, waiting for one if none is free.
   *
   * @throws The reason of `signal` if it aborts before a permit is taken.
   */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#held < this.#permits) {
      this.#held++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(wake);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
      };
      this.#waiters.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Give a permit back: to the longest waiter if any (the holder count stays), else free it. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else if (this.#held > 0) this.#held--;
  }

  /** Run `task` holding a permit, and release it however the task ends. */
  async use<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await task();
    } finally {
      this.release();
    }
  }
}
