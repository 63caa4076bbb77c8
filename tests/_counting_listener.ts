/**
 * Test helper: a TCP listener that counts who reached it.
 *
 * @module
 */

/** A listener from {@linkcode countingListener}. */
export interface CountingListener extends AsyncDisposable {
  /** Its port on 127.0.0.1. */
  port: number;
  /** How many connections it accepted so far. */
  accepted(): number;
  /** Stop listening and wait for the accept loop to end (idempotent). */
  close(): Promise<void>;
}

/**
 * Listen on a free port of 127.0.0.1, accept every connection, count it and close it: the target
 * a sandbox test tries to reach, and the proof of whether it did.
 *
 * @example
 * ```ts
 * import { countingListener } from "./_counting_listener.ts";
 * import assert from "node:assert/strict";
 *
 * await using listener = countingListener();
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
 * await conn.read(new Uint8Array(1)); // ends when the listener closes it
 * conn.close();
 * assert.equal(listener.accepted(), 1);
 * ```
 */
export function countingListener(): CountingListener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  })();
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      listener.close();
      await accepting;
    })();
  return {
    port: listener.addr.port,
    accepted: () => accepted,
    close,
    [Symbol.asyncDispose]: close,
  };
}
