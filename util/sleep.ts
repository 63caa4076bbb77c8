/**
 * A sleep that an abort signal ends early.
 *
 * @module
 */

/**
 * Wait `ms` milliseconds, or less if `signal` aborts first; resolves either way (never rejects)
 * and leaves no timer or listener behind.
 *
 * @example
 * ```ts
 * import { sleep } from "./sleep.ts";
 * import assert from "node:assert/strict";
 *
 * const stop = new AbortController();
 * const started = performance.now();
 * setTimeout(() => stop.abort(), 10);
 * await sleep(10_000, stop.signal);
 * assert.ok(performance.now() - started < 5_000);
 * await sleep(1);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
