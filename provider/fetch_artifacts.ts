/**
 * The client side of network boot: fetch a verified boot manifest from untrusted providers,
 * record it against rollback, then download each artifact into a directory, verified while it
 * streams (see `download_artifact.ts`).
 *
 * @module
 */
import type { BootManifest } from "./boot_manifest.ts";
import {
  downloadArtifact,
  type DownloadArtifactOptions,
  type DownloadResult,
} from "./download_artifact.ts";
import { fetchBootManifest, manifestUrls, resolveDownloadUrl } from "./fetch_boot_manifest.ts";
import { recordAcceptedManifest } from "./manifest_state.ts";
import { selectArtifacts } from "./verify_artifacts.ts";
import { lockStateDir } from "../util/state_lock.ts";

/**
 * The lock file `fetch` holds in its output dir while it runs (removed when it ends): a second
 * fetch into the same dir is refused with the PID of the first.
 */
export const FETCH_LOCK_FILE = ".fetch.lock";

/** Options of {@linkcode fetchArtifacts}. */
export interface FetchArtifactsOptions extends
  Pick<
    DownloadArtifactOptions,
    | "retries"
    | "retryDelayMs"
    | "stallTimeoutMs"
    | "minRate"
    | "maxRedirects"
    | "parallelThreshold"
    | "segmentSize"
    | "hedgeAfterMs"
    | "sync"
  > {
  /** Provider base URLs (or manifest URLs), in order of preference. */
  providers: string[];
  /** Output directory (created if missing). */
  out: string;
  /** Raw 32-byte public keys the client trusts. */
  trustedKeys: Uint8Array[];
  /** How many distinct trusted keys must have signed. @default {1} */
  threshold?: number;
  /** Rollback state file; the accepted sequence is recorded there. @default {undefined} */
  statePath?: string | undefined;
  /** Channel. @default {"stable"} */
  channel?: string;
  /** Architecture. @default {"x86_64"} */
  arch?: string;
  /** Only these artifact names. @default {undefined} (all) */
  only?: string[] | undefined;
  /** The time to check expiry against. @default {new Date()} */
  now?: Date;
  /** Cancels everything; `.part` files are kept for a resume. @default {undefined} */
  signal?: AbortSignal | undefined;
  /** Called when an artifact starts, with its size. @default {undefined} */
  onArtifact?: ((name: string, size: number, sources: string[]) => void) | undefined;
  /** Called with bytes on disk and total of the current artifact. @default {undefined} */
  onProgress?: ((name: string, received: number, total: number) => void) | undefined;
  /** Called with one-line warnings. @default {undefined} */
  onWarning?: ((message: string) => void) | undefined;
  /** Called when an artifact is in place and verified. @default {undefined} */
  onDone?: ((artifact: FetchedArtifact) => void) | undefined;
}

/** One artifact fetched by {@linkcode fetchArtifacts}. */
export interface FetchedArtifact extends DownloadResult {
  /** The artifact name. */
  name: string;
  /** Its file name in the output directory. */
  filename: string;
}

/** What {@linkcode fetchArtifacts} did. */
export interface FetchArtifactsResult {
  /** The verified manifest. */
  manifest: BootManifest;
  /** The provider that served it. */
  provider: string;
  /** The artifacts, in the order fetched. */
  artifacts: FetchedArtifact[];
}

/**
 * The URLs an artifact can be fetched from: its `download_url` resolved against each provider
 * (an absolute URL once, followed by its path on each provider), without duplicates.
 * `manifestUrls[i]` is where provider `i` serves the manifest (for `download_url`s relative to
 * it).
 *
 * @example
 * ```ts
 * import { artifactSources } from "./fetch_artifacts.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(
 *   artifactSources("/stable/x86_64/kernel", ["http://127.0.0.1:1", "http://127.0.0.1:2/m/"]),
 *   ["http://127.0.0.1:1/stable/x86_64/kernel", "http://127.0.0.1:2/m/stable/x86_64/kernel"],
 * );
 * ```
 */
export function artifactSources(
  downloadUrl: string,
  providers: string[],
  manifestUrls: string[] = [],
): string[] {
  const urls: string[] = [];
  if (/^https?:\/\//i.test(downloadUrl)) {
    const absolute = new URL(downloadUrl);
    urls.push(absolute.href);
    for (const p of providers) urls.push(resolveDownloadUrl(absolute.pathname, p));
  } else {
    for (const [i, p] of providers.entries()) {
      urls.push(resolveDownloadUrl(downloadUrl, p, manifestUrls[i]));
    }
  }
  return [...new Set(urls)];
}

/**
 * Fetch a verified manifest, record it in the state file (when given), and download the
 * selected artifacts into `out`, each verified before it gets its final name. While it
 * downloads it holds `out/.fetch.lock` ({@linkcode FETCH_LOCK_FILE}).
 *
 * @throws {StateDirLockedError} If another fetch holds `out` (from `util/state_lock.ts`).
 * @throws {Error} If no provider serves a manifest that verifies.
 * @throws {RangeError} If `only` names an artifact the manifest does not have.
 * @throws {DigestMismatchError} If no source delivers an artifact with the right hash.
 * @throws {ArtifactFetchError} If every source of an artifact fails.
 *
 * @example
 * ```ts
 * import { fetchArtifacts } from "./fetch_artifacts.ts";
 * import { signBootManifest } from "./boot_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import { sha256Tag } from "../runtime/digest.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = await generateKeyPair();
 * const manifest = await signBootManifest({
 *   manifest_version: 1, version: "1", sequence: 1, channel: "stable", arch: "x86_64",
 *   created_at: "2026-01-01T00:00:00Z", expires_at: "2099-01-01T00:00:00Z",
 *   artifacts: { kernel: { filename: "vmlinuz", size_bytes: 6, hash: sha256Tag("kernel"),
 *     download_url: "/stable/x86_64/kernel" } },
 *   signatures: [],
 * }, keys);
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) =>
 *   req.url.endsWith("manifest.json") ? Response.json(manifest) : new Response("kernel"));
 * const out = await Deno.makeTempDir();
 * const result = await fetchArtifacts({
 *   providers: [`http://127.0.0.1:${server.addr.port}`], out, trustedKeys: [keys.publicKey],
 * });
 * assert.equal(result.artifacts[0]!.status, "downloaded");
 * assert.equal(await Deno.readTextFile(`${out}/vmlinuz`), "kernel");
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function fetchArtifacts(
  options: FetchArtifactsOptions,
): Promise<FetchArtifactsResult> {
  const {
    providers,
    out,
    trustedKeys,
    threshold = 1,
    statePath,
    channel = "stable",
    arch = "x86_64",
    only,
    now = new Date(),
    signal,
    onArtifact,
    onProgress,
    onWarning,
    onDone,
    ...knobs
  } = options;
  const { manifest, provider, url } = await fetchBootManifest(providers, {
    trustedKeys,
    threshold,
    now,
    statePath,
    channel,
    arch,
    signal,
    onWarning,
    ...(knobs.stallTimeoutMs === undefined ? {} : { timeoutMs: knobs.stallTimeoutMs }),
    ...(knobs.minRate === undefined ? {} : { minRate: knobs.minRate }),
    ...(knobs.maxRedirects === undefined ? {} : { maxRedirects: knobs.maxRedirects }),
    ...(knobs.retries === undefined ? {} : { retries: knobs.retries }),
    ...(knobs.retryDelayMs === undefined ? {} : { retryDelayMs: knobs.retryDelayMs }),
  });
  const names = selectArtifacts(manifest, only);
  await Deno.mkdir(out, { recursive: true });
  // One fetch per output dir: a second one would share the `.part` files.
  await using _lock = await lockStateDir(out, {
    command: "fetch",
    file: FETCH_LOCK_FILE,
    noun: "output dir",
  });
  if (statePath !== undefined) await recordAcceptedManifest(statePath, manifest, { now });
  // The provider that served the manifest first, then the others in the order given.
  const ordered = [provider, ...providers.filter((p) => p !== provider)];
  const artifacts: FetchedArtifact[] = [];
  for (const name of names) {
    const artifact = manifest.artifacts[name]!;
    const sources = artifactSources(
      artifact.download_url,
      ordered,
      ordered.map((p) => p === provider ? url : manifestUrls(p, channel, arch)[0]!),
    );
    onArtifact?.(name, artifact.size_bytes, sources);
    const result = await downloadArtifact(name, {
      ...knobs,
      sources,
      size: artifact.size_bytes,
      hash: artifact.hash,
      path: `${out.replace(/\/+$/, "") || "/"}/${artifact.filename}`,
      signal,
      onProgress: (received, total) => onProgress?.(name, received, total),
      onWarning,
    });
    const fetched = { name, filename: artifact.filename, ...result };
    artifacts.push(fetched);
    onDone?.(fetched);
  }
  return { manifest, provider, artifacts };
}
