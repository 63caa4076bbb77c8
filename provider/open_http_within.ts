/**
 * One GET of an untrusted source under its time limits from the first byte of the headers to the
 * last byte of the body.
 *
 * @module
 */
import { openHttp, type OpenHttpOptions, readBodyWithin } from "./fetch_http.ts";

/** Options of {@linkcode openHttpWithin}. */
export interface OpenHttpWithinOptions extends OpenHttpOptions {
  /**
   * The body's rate floor in bytes per second, over windows of `timeoutMs` (0: none).
   * @default {0}
   */
  minRate?: number | undefined;
}

/** A response opened by {@linkcode openHttpWithin}. */
export interface HttpWithin {
  /** The final response (any status but a redirect); read it with `body()` or cancel its body. */
  response: Response;
  /** The URL it came from, after redirects. */
  url: string;
  /**
   * Its body chunk by chunk: each chunk within `timeoutMs`, the whole above `minRate`. A body
   * that stalls fails with a retryable `SourceError` and aborts the request; leaving the loop
   * early cancels the body. No body reads as empty.
   */
  body(): AsyncGenerator<Uint8Array, void, undefined>;
}

/**
 * GET `url` with {@linkcode openHttp} (redirects by hand, a time limit on the headers), and read
 * its body with {@linkcode readBodyWithin} under the same `timeoutMs` per read and the
 * `minRate` floor. When `signal` aborts, its reason is thrown, never a `SourceError`.
 *
 * @throws {SourceError} As {@linkcode openHttp} does, and from `body()` for a stalled, too slow
 * or broken body.
 *
 * @example
 * ```ts
 * import { openHttpWithin } from "./open_http_within.ts";
 * import assert from "node:assert/strict";
 *
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
 *   new Response("hello"));
 * const { response, body } = await openHttpWithin(`http://127.0.0.1:${server.addr.port}/`, {
 *   timeoutMs: 5_000,
 *   minRate: 1,
 * });
 * assert.equal(response.status, 200);
 * const chunks = [];
 * for await (const chunk of body()) chunks.push(...chunk);
 * assert.equal(new TextDecoder().decode(new Uint8Array(chunks)), "hello");
 * ```
 */
export async function openHttpWithin(
  url: string,
  options: OpenHttpWithinOptions = {},
): Promise<HttpWithin> {
  const { signal, minRate = 0, timeoutMs = 30_000, ...open } = options;
  // A stalled body aborts the request as well as its read.
  const stall = new AbortController();
  const { response, url: finalUrl } = await openHttp(url, {
    ...open,
    timeoutMs,
    signal: signal ? AbortSignal.any([signal, stall.signal]) : stall.signal,
  });
  return {
    response,
    url: finalUrl,
    body: () =>
      readBodyWithin(response.body ?? ReadableStream.from<Uint8Array>([]), {
        timeoutMs,
        url: finalUrl,
        onStall: () => stall.abort(),
        signal,
        minRate,
      }),
  };
}
