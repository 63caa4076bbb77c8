/**
 * HTTP GET for untrusted providers and mirrors: redirects followed by hand (bounded, loops
 * named, http/https only), no content coding, a time limit on the response headers, a time
 * limit per read and a floor under the rate of a body, and errors that say whether trying the
 * same source again can help.
 *
 * @module
 */
import { errorMessage } from "../util/error_message.ts";

/**
 * A source (provider or mirror URL) failed. `retryable` says whether the same source may work
 * on a later attempt (network error, stall, truncated body, 5xx) or should be dropped (404,
 * wrong size, redirect loop).
 *
 * @example
 * ```ts
 * import { SourceError } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new SourceError("http://127.0.0.1:1/k", "HTTP 404", { retryable: false });
 * assert.equal(err.message, "Cannot fetch 'http://127.0.0.1:1/k': HTTP 404");
 * assert.equal(err.retryable, false);
 * ```
 */
export class SourceError extends Error {
  /** The URL that failed. */
  readonly url: string;
  /** Whether another attempt at the same source may succeed. */
  readonly retryable: boolean;
  /** Make the error: `Cannot fetch '<url>': <what>`. */
  constructor(
    url: string,
    what: string,
    options: { retryable: boolean; cause?: unknown },
  ) {
    super(`Cannot fetch '${url}': ${what}`, { cause: options.cause });
    this.name = "SourceError";
    this.url = url;
    this.retryable = options.retryable;
  }
}

/** Options of {@linkcode openHttp}. */
export interface OpenHttpOptions {
  /** Byte range `[start, endInclusive]` to ask for; `endInclusive` undefined means to the end. @default {undefined} */
  range?: [number, number | undefined] | undefined;
  /** Cancels the request (and its body). @default {undefined} */
  signal?: AbortSignal | undefined;
  /** How many redirects to follow. @default {5} */
  maxRedirects?: number;
  /** Time limit for the response headers, per hop, in ms. @default {30000} */
  timeoutMs?: number;
}

/**
 * GET a URL, following at most `maxRedirects` redirects by hand. Returns the final response
 * (any status other than a redirect) and its URL; the caller reads or cancels the body.
 *
 * @throws {SourceError} For network errors, header timeouts, redirect loops, too many
 * redirects, non-http(s) redirect targets and content codings other than identity.
 *
 * @example
 * ```ts
 * import { openHttp } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) =>
 *   new URL(req.url).pathname === "/old"
 *     ? new Response(null, { status: 302, headers: { location: "/new" } })
 *     : new Response("hello"));
 * const { response, url } = await openHttp(`http://127.0.0.1:${server.addr.port}/old`);
 * assert.equal(await response.text(), "hello");
 * assert.equal(new URL(url).pathname, "/new");
 * ```
 */
export async function openHttp(
  url: string,
  options: OpenHttpOptions = {},
): Promise<{ response: Response; url: string }> {
  const { range, signal, maxRedirects = 5, timeoutMs = 30_000 } = options;
  const seen: string[] = [];
  let current = url;
  for (let hop = 0;; hop++) {
    let parsed: URL;
    try {
      parsed = new URL(current);
    } catch {
      throw new SourceError(current, "not a URL", { retryable: false });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new SourceError(current, `only http and https are allowed, got ${parsed.protocol}`, {
        retryable: false,
      });
    }
    if (seen.includes(parsed.href)) {
      throw new SourceError(url, `redirect loop: ${[...seen, parsed.href].join(" -> ")}`, {
        retryable: false,
      });
    }
    seen.push(parsed.href);
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (range) headers.range = `bytes=${range[0]}-${range[1] ?? ""}`;
    const timeout = new AbortController();
    const timer = setTimeout(
      () =>
        timeout.abort(
          new SourceError(parsed.href, `no response within ${timeoutMs} ms`, {
            retryable: true,
          }),
        ),
      timeoutMs,
    );
    let response: Response;
    try {
      response = await fetch(parsed, {
        headers,
        redirect: "manual",
        signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal,
      });
    } catch (error) {
      signal?.throwIfAborted();
      if (timeout.signal.aborted) throw timeout.signal.reason;
      throw new SourceError(parsed.href, _networkReason(error), { retryable: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
    if ([301, 302, 303, 307, 308].includes(response.status)) {
      await response.body?.cancel();
      const location = response.headers.get("location");
      if (location === null) {
        throw new SourceError(parsed.href, `HTTP ${response.status} without Location`, {
          retryable: false,
        });
      }
      if (hop >= maxRedirects) {
        throw new SourceError(url, `too many redirects (more than ${maxRedirects})`, {
          retryable: false,
        });
      }
      current = new URL(location, parsed).href;
      continue;
    }
    const coding = response.headers.get("content-encoding");
    if (coding !== null && coding.toLowerCase() !== "identity") {
      await response.body?.cancel();
      throw new SourceError(parsed.href, `unexpected Content-Encoding '${coding}'`, {
        retryable: false,
      });
    }
    return { response, url: parsed.href };
  }
}

/**
 * Whether an HTTP status is worth trying again at the same source: a server error, 408 or 429.
 *
 * @example
 * ```ts
 * import { retryableStatus } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(retryableStatus(503), true);
 * assert.equal(retryableStatus(404), false);
 * ```
 */
export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/**
 * A floor under the rate of one response body: once a whole window has passed, a body that
 * delivered fewer than `bytesPerSecond` times its seconds in that window is too slow (a source
 * that trickles a byte now and then never trips a per-read timeout, and would hold a client
 * forever). Windows follow each other; the check runs as bytes arrive, so a body that ends
 * within its first window is never judged.
 *
 * @example
 * ```ts
 * import { RateFloor } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * let now = 0;
 * const floor = new RateFloor(1000, 2000, () => now);
 * now = 1000;
 * assert.equal(floor.count(10), undefined); // window not over yet
 * now = 2000;
 * assert.match(floor.count(10)!, /^too slow: 20 bytes in 2000 ms/);
 * ```
 */
export class RateFloor {
  /** The floor, in bytes per second (0: no floor). */
  readonly bytesPerSecond: number;
  /** The window the rate is measured over, in ms. */
  readonly windowMs: number;
  readonly #now: () => number;
  #start: number;
  #bytes = 0;

  /**
   * Start measuring now.
   *
   * @throws {RangeError} If `bytesPerSecond` is negative or `windowMs` is not above zero.
   */
  constructor(
    bytesPerSecond: number,
    windowMs: number,
    now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond >= 0) || !(windowMs > 0)) {
      throw new RangeError(
        `Cannot measure rate: expected a floor >= 0 and a window > 0, got ${bytesPerSecond} and ${windowMs}`,
      );
    }
    this.bytesPerSecond = bytesPerSecond;
    this.windowMs = windowMs;
    this.#now = now;
    this.#start = now();
  }

  /** Count `n` bytes that arrived; returns why the body is too slow, or `undefined`. */
  count(n: number): string | undefined {
    this.#bytes += n;
    const now = this.#now();
    const elapsed = now - this.#start;
    if (elapsed < this.windowMs) return undefined;
    const bytes = this.#bytes;
    this.#start = now;
    this.#bytes = 0;
    if (bytes >= (this.bytesPerSecond * elapsed) / 1000) return undefined;
    return `too slow: ${bytes} bytes in ${Math.round(elapsed)} ms, below the floor of ${
      _rate(this.bytesPerSecond)
    }`;
  }
}

function _rate(bytesPerSecond: number): string {
  return bytesPerSecond % 1024 === 0 && bytesPerSecond > 0
    ? `${bytesPerSecond / 1024} KiB/s`
    : `${bytesPerSecond} bytes/s`;
}

/** Options of {@linkcode readWithin}. */
export interface ReadWithinOptions {
  /** How long to wait for the chunk, in ms. */
  timeoutMs: number;
  /** The source's URL, for the error. */
  url: string;
  /** Called on a stall, e.g. to abort the request. */
  onStall: () => void;
  /** When aborted, its reason is thrown instead of a {@linkcode SourceError}. */
  signal?: AbortSignal | undefined;
  /** The body's rate floor; a body below it is a stall too. @default {undefined} */
  floor?: RateFloor | undefined;
}

/**
 * Read one chunk from a body reader, failing if nothing arrives within `timeoutMs` (a stalled
 * source), or if the body fell below its `floor` rate. On a stall `onStall` is called (to abort the request) and a retryable
 * {@linkcode SourceError} is thrown; any other read error becomes a retryable `SourceError`
 * naming its first line, unless `signal` was aborted (then its reason is thrown).
 *
 * @example
 * ```ts
 * import { readWithin } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * const reader = new Response("abc").body!.getReader();
 * const { value } = await readWithin(reader, { timeoutMs: 1000, url: "http://x/", onStall() {} });
 * assert.equal(new TextDecoder().decode(value), "abc");
 * reader.releaseLock();
 * ```
 */
export async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: ReadWithinOptions,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  const { timeoutMs, url, onStall, signal, floor } = options;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new SourceError(url, `stalled: no data for ${timeoutMs} ms`, { retryable: true }));
          onStall();
        }, timeoutMs);
      }),
    ]);
    const slow = result.done || floor === undefined ? undefined : floor.count(result.value.length);
    if (slow !== undefined) {
      onStall();
      throw new SourceError(url, slow, { retryable: true });
    }
    return result;
  } catch (error) {
    signal?.throwIfAborted();
    if (error instanceof SourceError) throw error;
    throw new SourceError(url, _oneLine(error), { retryable: true, cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@linkcode readBodyWithin}. */
export interface ReadBodyWithinOptions extends Omit<ReadWithinOptions, "floor"> {
  /**
   * The body's rate floor in bytes per second, measured over windows of `timeoutMs` (0: none).
   * @default {0}
   */
  minRate?: number | undefined;
}

/**
 * Read a body chunk by chunk with {@linkcode readWithin}: every chunk within `timeoutMs` and the
 * body above `minRate`. Leaving the loop early (a `break` or a throw) cancels the body; the
 * reader's lock is released either way.
 *
 * @example
 * ```ts
 * import { readBodyWithin } from "./fetch_http.ts";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const body = new Response("abc").body!;
 * for await (const chunk of readBodyWithin(body, { timeoutMs: 1000, url: "http://x/", onStall() {} })) {
 *   chunks.push(chunk);
 * }
 * assert.equal(new TextDecoder().decode(chunks[0]), "abc");
 * ```
 */
export async function* readBodyWithin(
  body: ReadableStream<Uint8Array>,
  options: ReadBodyWithinOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { minRate = 0, ...read } = options;
  const reader = body.getReader();
  const floor = minRate > 0 ? new RateFloor(minRate, read.timeoutMs) : undefined;
  let finished = false;
  try {
    for (;;) {
      const result = await readWithin(reader, { ...read, floor });
      if (result.done) {
        finished = true;
        return;
      }
      yield result.value;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function _oneLine(error: unknown): string {
  return errorMessage(error).split("\n")[0]!;
}

/** `fetch failed` says nothing: name the cause (`connection refused`) in a few words. */
function _networkReason(error: unknown): string {
  const e = error as Error & { cause?: unknown };
  const text = e?.message === "fetch failed" && e.cause instanceof Error
    ? e.cause.message
    : _oneLine(error);
  const reason = text.split("\n")[0]!
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(\w+\): /, "")
    .replace(/ \(os error \d+\)$/, "")
    .replace(/^tcp connect error: /, "")
    .replace(/^dns error: failed to lookup address information: /, "cannot resolve host: ");
  return reason.charAt(0).toLowerCase() + reason.slice(1);
}
