/**
 * HTTP GET for untrusted providers and mirrors: redirects followed by hand (bounded, loops
 * named, http/https only), no content coding, a time limit on the response headers, and errors
 * that say whether trying the same source again can help.
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
}

/**
 * Read one chunk from a body reader, failing if nothing arrives within `timeoutMs` (a stalled
 * source). On a stall `onStall` is called (to abort the request) and a retryable
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
  const { timeoutMs, url, onStall, signal } = options;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new SourceError(url, `stalled: no data for ${timeoutMs} ms`, { retryable: true }));
          onStall();
        }, timeoutMs);
      }),
    ]);
  } catch (error) {
    signal?.throwIfAborted();
    if (error instanceof SourceError) throw error;
    throw new SourceError(url, _oneLine(error), { retryable: true, cause: error });
  } finally {
    clearTimeout(timer);
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
