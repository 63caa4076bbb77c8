/**
 * Two Node.js behaviours js-libp2p relies on and Deno lacks; without them a node that listened
 * on TCP keeps `deno run` alive after `stop()`.
 *
 * 1. `mortice` (the lock library of libp2p's peer store) opens one process-wide
 *    `BroadcastChannel` the first time a peer record is written (for a listening node: its own
 *    record, about 1 s after it starts listening) and calls `channel.unref?.()` on it. Node's
 *    global `BroadcastChannel` has `unref()`; Deno's web one does not, so the call is skipped and
 *    the channel's pending receive holds the event loop open forever. The channel is never
 *    closed. Deno's `node:worker_threads` `BroadcastChannel` extends the web class and does
 *    implement `ref()`/`unref()`; we lend those two methods to the web class.
 * 2. Node's `AbortSignal.timeout()` never keeps the process alive. Deno's keeps it alive while
 *    the signal has an `abort` listener, and libp2p leaves listeners on such signals (the
 *    Kademlia routing table, for one, combines a 20 s timeout with its shutdown signal and never
 *    clears it), so the process lingered up to 20 s after `stop()`. We replace
 *    `AbortSignal.timeout` with one whose timer is unref'd, as in Node.
 *
 * @module
 */
import { BroadcastChannel as NodeBroadcastChannel } from "node:worker_threads";

const _PATCHED = Symbol.for("phase.nodeCompat");

/**
 * Give the web `BroadcastChannel` Node's `ref`/`unref` and make `AbortSignal.timeout` unref its
 * timer, as in Node. Idempotent. `startNode` does not call it: each program that starts a node under
 * `deno run` (the `start`, `serve` and `discover` CLIs, benches, test peers) calls it once.
 *
 * @example
 * ```ts
 * import { applyNodeCompat } from "./node_compat.ts";
 * import assert from "node:assert/strict";
 *
 * applyNodeCompat();
 * const channel = new BroadcastChannel("example");
 * assert.equal(typeof (channel as unknown as { unref(): unknown }).unref, "function");
 * channel.close();
 * // As in Node, a timeout signal alone does not keep the process alive; a timer does.
 * const signal = AbortSignal.timeout(1);
 * await new Promise((resolve) => setTimeout(resolve, 20));
 * assert.equal(signal.reason.name, "TimeoutError");
 * ```
 */
export function applyNodeCompat(): void {
  const g = globalThis as unknown as Record<symbol, boolean>;
  if (g[_PATCHED]) return;
  g[_PATCHED] = true;
  _lendUnref();
  _unrefTimeouts();
}

function _lendUnref(): void {
  const web = globalThis.BroadcastChannel;
  if (!web || typeof (web.prototype as { unref?: unknown }).unref === "function") return;
  const nodeProto = NodeBroadcastChannel.prototype as { ref?: unknown; unref?: unknown };
  if (Object.getPrototypeOf(nodeProto) !== web.prototype) return;
  if (typeof nodeProto.ref !== "function" || typeof nodeProto.unref !== "function") return;
  for (const name of ["ref", "unref"] as const) {
    Object.defineProperty(web.prototype, name, {
      value: nodeProto[name],
      writable: true,
      configurable: true,
    });
  }
}

function _unrefTimeouts(): void {
  const timeout = (milliseconds: number): AbortSignal => {
    const ms = Number(milliseconds);
    if (!Number.isFinite(ms) || ms < 0) {
      throw new TypeError(`Cannot make a timeout signal: invalid delay ${milliseconds}`);
    }
    const controller = new AbortController();
    const id = setTimeout(() => {
      controller.abort(new DOMException("Signal timed out.", "TimeoutError"));
    }, ms);
    Deno.unrefTimer(id);
    return controller.signal;
  };
  Object.defineProperty(AbortSignal, "timeout", {
    value: timeout,
    writable: true,
    configurable: true,
  });
}
