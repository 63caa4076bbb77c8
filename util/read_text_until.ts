/**
 * Read a child process's text output up to what a caller waits for (a banner, a marker line).
 *
 * @module
 */

/** Options of {@linkcode readTextUntil}. */
export interface ReadTextUntilOptions {
  /** Most characters to read without finding the text. @default {1048576} */
  maxChars?: number;
  /**
   * Stop waiting: the promise rejects with the signal's reason, and a read still pending is
   * left to the caller (cancel the reader). @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/**
 * Read from `reader` until `found` holds for all the text read so far or the stream ends;
 * return all the text read. Test `found` on it again: the stream may have ended first (the
 * process exited). The reader stays open, so the caller can keep draining it or cancel it.
 *
 * @throws {RangeError} When more than `maxChars` characters come without the text.
 *
 * @example
 * ```ts
 * import { readTextUntil } from "./read_text_until.ts";
 * import assert from "node:assert/strict";
 *
 * const reader = ReadableStream.from(["start", "ing\nListening on x\n", "more"]).getReader();
 * assert.equal(await readTextUntil(reader, (t) => t.includes("Listening")), "starting\nListening on x\n");
 * assert.equal(await readTextUntil(reader, (t) => t.includes("never")), "more");
 * ```
 */
export async function readTextUntil(
  reader: ReadableStreamDefaultReader<string>,
  found: (text: string) => boolean,
  options: ReadTextUntilOptions = {},
): Promise<string> {
  const { maxChars = 1 << 20, signal } = options;
  signal?.throwIfAborted();
  const aborted = Promise.withResolvers<never>();
  const onAbort = () => aborted.reject(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  let text = "";
  try {
    while (!found(text)) {
      if (text.length > maxChars) {
        throw new RangeError(
          `Cannot read output: more than ${maxChars} characters came without the expected text`,
        );
      }
      const { value, done } = await Promise.race([reader.read(), aborted.promise]);
      if (done) break;
      text += value;
    }
    return text;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
