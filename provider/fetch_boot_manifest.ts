/**
 * Get a boot manifest from the first provider that serves one that verifies. Providers are
 * untrusted: one that is down or serves a bad, expired, rolled-back or foreign manifest is
 * skipped with a warning.
 *
 * @module
 */
import { acceptBootManifest, type AcceptBootManifestOptions } from "./accept_boot_manifest.ts";
import { type BootManifest, MAX_BOOT_MANIFEST_BYTES } from "./boot_manifest.ts";
import { retryableStatus, SourceError } from "./fetch_http.ts";
import { openHttpWithin } from "./open_http_within.ts";
import { sleep } from "../util/sleep.ts";
import { concatBytes } from "../util/concat_bytes.ts";

/** Largest manifest accepted, in bytes. */
export const MAX_MANIFEST_BYTES = MAX_BOOT_MANIFEST_BYTES;

/** Options of {@linkcode fetchBootManifest}. */
export interface FetchBootManifestOptions extends AcceptBootManifestOptions {
  /** Channel to ask for. @default {"stable"} */
  channel?: string;
  /** Architecture to ask for. @default {"x86_64"} */
  arch?: string;
  /** Cancels the requests. @default {undefined} */
  signal?: AbortSignal | undefined;
  /** Time limit per request (headers, then each read), in ms. @default {30000} */
  timeoutMs?: number;
  /** Rate floor of a body, in bytes/s over a `timeoutMs` window (0: none). @default {16384} */
  minRate?: number;
  /** Redirects followed per request. @default {5} */
  maxRedirects?: number;
  /** Rounds of retries for providers that failed in a way that may pass (down, 5xx, stall). @default {3} */
  retries?: number;
  /** First delay between rounds in ms; doubles per round, at most 5 s. @default {250} */
  retryDelayMs?: number;
  /** Called with a one-line warning for each provider skipped. @default {undefined} */
  onWarning?: ((message: string) => void) | undefined;
}

/** A verified manifest and where it came from. */
export interface FetchedBootManifest {
  /** The verified manifest. */
  manifest: BootManifest;
  /** The provider (as given) that served it. */
  provider: string;
  /** The URL it was read from (after redirects). */
  url: string;
}

/**
 * The URLs to try for a provider's manifest: the provider URL itself if it names a `.json`
 * file, else `<provider>/<channel>/<arch>/manifest.json`, then `<provider>/manifest.json`.
 *
 * @example
 * ```ts
 * import { manifestUrls } from "./fetch_boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(manifestUrls("http://127.0.0.1:8080", "stable", "x86_64"), [
 *   "http://127.0.0.1:8080/stable/x86_64/manifest.json",
 *   "http://127.0.0.1:8080/manifest.json",
 * ]);
 * ```
 */
export function manifestUrls(provider: string, channel: string, arch: string): string[] {
  const url = _providerUrl(provider);
  if (url.pathname.endsWith(".json")) return [url.href];
  const base = url.href.endsWith("/") ? url.href : `${url.href}/`;
  return [
    new URL(`${encodeURIComponent(channel)}/${encodeURIComponent(arch)}/manifest.json`, base).href,
    new URL("manifest.json", base).href,
  ];
}

/**
 * Resolve an artifact's `download_url` for a provider: absolute http(s) URLs stay as they are;
 * a path starting with `/` is taken below the provider URL (so a mirror may live under a path
 * prefix); anything else is relative to the manifest URL.
 *
 * @example
 * ```ts
 * import { resolveDownloadUrl } from "./fetch_boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   resolveDownloadUrl("/stable/x86_64/kernel", "http://127.0.0.1:8080/mirror/"),
 *   "http://127.0.0.1:8080/mirror/stable/x86_64/kernel",
 * );
 * assert.equal(
 *   resolveDownloadUrl("kernel", "http://127.0.0.1:8080", "http://127.0.0.1:8080/stable/x86_64/manifest.json"),
 *   "http://127.0.0.1:8080/stable/x86_64/kernel",
 * );
 * ```
 */
export function resolveDownloadUrl(
  downloadUrl: string,
  provider: string,
  manifestUrl?: string,
): string {
  if (/^https?:\/\//i.test(downloadUrl)) return new URL(downloadUrl).href;
  const base = _providerUrl(provider);
  if (downloadUrl.startsWith("/")) {
    // A manifest URL given as the provider names a file, not a prefix: use its origin.
    const prefix = base.pathname.endsWith(".json") ? "" : base.pathname.replace(/\/+$/, "");
    return new URL(`${prefix}${downloadUrl}`, base.origin).href;
  }
  return new URL(downloadUrl, manifestUrl ?? (base.href.endsWith("/") ? base : `${base.href}/`))
    .href;
}

function _providerUrl(provider: string): URL {
  let url: URL;
  try {
    url = new URL(provider);
  } catch {
    throw new TypeError(`Cannot use provider '${provider}': not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`Cannot use provider '${provider}': only http and https are allowed`);
  }
  url.search = "";
  url.hash = "";
  return url;
}

/**
 * Fetch and verify a boot manifest from the first provider that serves one that verifies.
 * Does not record it in the state file (the caller does, once it decides to use it).
 *
 * @throws {TypeError} If a provider URL is not an http(s) URL.
 * @throws {Error} If no provider served a manifest that verifies; the message lists why, per
 * provider.
 *
 * @example
 * ```ts
 * import { fetchBootManifest } from "./fetch_boot_manifest.ts";
 * import { signBootManifest } from "./boot_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = await generateKeyPair();
 * const manifest = await signBootManifest({
 *   manifest_version: 1, version: "1", sequence: 1, channel: "stable", arch: "x86_64",
 *   created_at: "2026-01-01T00:00:00Z", expires_at: "2099-01-01T00:00:00Z", artifacts: {},
 *   signatures: [],
 * }, keys);
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} },
 *   () => Response.json(manifest));
 * const got = await fetchBootManifest([`http://127.0.0.1:${server.addr.port}`], {
 *   trustedKeys: [keys.publicKey],
 * });
 * assert.equal(got.manifest.sequence, 1);
 * ```
 */
export async function fetchBootManifest(
  providers: string[],
  options: FetchBootManifestOptions,
): Promise<FetchedBootManifest> {
  const {
    channel = "stable",
    arch = "x86_64",
    signal,
    timeoutMs = 30_000,
    minRate = 16 * 1024,
    maxRedirects = 5,
    retries = 3,
    retryDelayMs = 250,
    onWarning,
    ...accept
  } = options;
  if (providers.length === 0) throw new TypeError("Cannot fetch manifest: no provider given");
  const candidates = providers.map((p) => ({ provider: p, urls: manifestUrls(p, channel, arch) }));
  const reasons = new Map<string, string>();
  let pending = candidates;
  for (let round = 0;; round++) {
    const again: typeof candidates = [];
    for (const candidate of pending) {
      const { provider, urls } = candidate;
      let reason = "";
      let retryable = false;
      for (const url of urls) {
        signal?.throwIfAborted();
        try {
          const { text, url: finalUrl } = await _getText(url, {
            signal,
            timeoutMs,
            minRate,
            maxRedirects,
          });
          const manifest = await acceptBootManifest(text, { ...accept, channel, arch });
          return { manifest, provider, url: finalUrl };
        } catch (error) {
          signal?.throwIfAborted();
          if (error instanceof RangeError) throw error; // threshold or key list: the caller's mistake
          reason = String((error as Error).message).split("\n")[0]!;
          retryable = error instanceof SourceError && error.retryable;
          if (error instanceof SourceError && / HTTP 404$/.test(reason)) continue;
          break;
        }
      }
      reasons.set(provider, reason);
      const retry = retryable && round < retries;
      if (retry) again.push(candidate);
      // The last failure before giving up is named by the error itself: no warning repeats it.
      const last = !retry && again.length === 0 && candidate === pending.at(-1);
      if (!last) {
        onWarning?.(`Skipping provider ${provider}: ${reason}${retry ? " (will retry)" : ""}`);
      }
    }
    if (again.length === 0) break;
    pending = again;
    await sleep(Math.min(5000, retryDelayMs * 2 ** round), signal);
    signal?.throwIfAborted();
  }
  throw new Error(
    `Cannot fetch manifest: no provider served a manifest that verifies (${
      [...reasons].map(([p, r]) => `${p}: ${r}`).join("; ")
    })`,
  );
}

async function _getText(
  url: string,
  options: {
    signal: AbortSignal | undefined;
    timeoutMs: number;
    minRate: number;
    maxRedirects: number;
  },
): Promise<{ text: string; url: string }> {
  const { response, url: finalUrl, body } = await openHttpWithin(url, {
    timeoutMs: options.timeoutMs,
    maxRedirects: options.maxRedirects,
    signal: options.signal,
    minRate: options.minRate,
  });
  if (response.status !== 200) {
    await response.body?.cancel();
    const status = response.status;
    throw new SourceError(finalUrl, `HTTP ${status}`, {
      retryable: retryableStatus(status),
    });
  }
  const length = Number(response.headers.get("content-length") ?? 0);
  if (length > MAX_MANIFEST_BYTES) {
    await response.body?.cancel();
    throw new SourceError(finalUrl, `manifest larger than ${MAX_MANIFEST_BYTES} bytes`, {
      retryable: false,
    });
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body()) {
    total += chunk.length;
    if (total > MAX_MANIFEST_BYTES) {
      throw new SourceError(finalUrl, `manifest larger than ${MAX_MANIFEST_BYTES} bytes`, {
        retryable: false,
      });
    }
    chunks.push(chunk);
  }
  const bytes = concatBytes(chunks);
  try {
    // A byte order mark is kept, so that the strict parser refuses it as not JSON.
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    return { text, url: finalUrl };
  } catch {
    throw new SourceError(finalUrl, "manifest is not UTF-8", { retryable: false });
  }
}
