/**
 * The HTTP API of a boot provider as a plain `(Request) => Promise<Response>` handler.
 *
 * Routes (GET and HEAD; any other method gets 405 with `Allow: GET, HEAD`):
 * - `/` provider info, `/health` (200 or 503), `/status` (info, health, metrics, channels),
 *   `/metrics` (Prometheus text format 0.0.4, see provider_metrics.ts; public like `/health`);
 * - `/manifest.json` (the default channel/arch) and `/<channel>/<arch>/manifest.json`;
 * - `/<channel>/<arch>/<artifact>`: streamed file with `Content-Length`, `Accept-Ranges`, a
 *   strong `ETag` (the sha256), `If-None-Match` (304), `If-Range`, and one byte range (206).
 *
 * Bodies: under `Deno.serve` (when `info.completed` is given) a body that runs to the end of its
 * file (a whole file, `bytes=a-`, `bytes=-n`) is sent by Deno itself from the file handle, seeked
 * to the range's start: no JavaScript per chunk. The handler keeps that handle and watches its
 * position, which is how it counts bytes, sees a client that takes nothing for `idleTimeoutMs`,
 * and ends the body (closing the handle makes Deno's next read fail, and the connection closes).
 * A range that ends before the end of its file, and any body outside `Deno.serve`, is streamed
 * through JavaScript in chunks out of `readBudgetBytes`: Deno's file path always reads to the end
 * of the file, and an HTTP/2 (h2c) client is reset if a body runs past `Content-Length`.
 *
 * Range rules: `bytes=a-b`, `bytes=a-` and `bytes=-n` give 206 (the end is clamped to the
 * file); a start at or past the end, `a > b`, `bytes=-0` or any range of an empty file give 416
 * with the unsatisfied form of `Content-Range` (`bytes *` slash size); a malformed header,
 * another unit, or several ranges give 200 with the whole file (multipart answers are not made).
 *
 * Freshness: `/manifest.json` and `/health` answer from bytes built once per check, not per
 * request. A manifest is checked against the files (one stat each, see {@linkcode ArtifactStore})
 * at most once per `recheckMs`, and at once after a download opened an artifact whose hash differs
 * from the one the cached manifest names; a download is always served, and tagged, by the hash of
 * exactly the file it opened. Health is measured at most once per `recheckMs`.
 *
 * Path rules: every path segment, once percent-decoded, must be a plain name
 * (`[A-Za-z0-9][A-Za-z0-9._-]*`), else 400; files are only ever opened through
 * {@linkcode ArtifactStore}, which knows a fixed list of artifact file names. `..`, `.`, encoded
 * slashes or backslashes, NUL, empty segments and double encoding therefore never reach the
 * file system.
 *
 * @module
 */
import { statfs } from "node:fs/promises";
import { createHash } from "node:crypto";
import type { BootManifest } from "./boot_manifest.ts";
import { toHex } from "../runtime/digest.ts";
import { PROMETHEUS_CONTENT_TYPE, renderProviderMetrics } from "./provider_metrics.ts";
import {
  type ArtifactEntry,
  type ArtifactStore,
  type ArtifactStoreMetrics,
  SAFE_NAME,
} from "./artifact_store.ts";

/** Free and total bytes of the file system holding a path. */
export interface DiskSpace {
  /** Bytes available to unprivileged users. */
  freeBytes: number;
  /** Size of the file system in bytes. */
  totalBytes: number;
}

/** Options of {@linkcode createProviderHandler}. */
export interface ProviderHandlerOptions {
  /** Where artifacts and manifests come from. */
  store: ArtifactStore;
  /** Channel of `/manifest.json` and of the health check. */
  channel: string;
  /** Architecture of `/manifest.json` and of the health check. */
  arch: string;
  /** Provider name shown by `/`. @default {"plasm"} */
  name?: string;
  /** Software version shown by `/`. @default {"0.1.0"} */
  version?: string;
  /**
   * Extra fields for `/` and `/status`, e.g. `{ dht: "off", p2p_listen: ["/ip4/..."] }`; read at
   * each request, so a caller may fill them in later. @default {{}}
   */
  info?: Record<string, string | number | boolean | string[]>;
  /** Health is `unhealthy` below this many free bytes on the artifacts' file system. @default {67108864} */
  minFreeBytes?: number;
  /** How disk space is measured. @default {statfs of `store.dir` (needs `--allow-sys=statfs`)} */
  diskSpace?: (path: string) => Promise<DiskSpace>;
  /**
   * Largest read per body chunk of a body streamed through JavaScript (a range that ends before
   * the end of its file, or any body outside `Deno.serve`). Such a body holds at most two chunks
   * (one the HTTP layer is writing, one read ahead), so each reads
   * `readBudgetBytes / (2 × such bodies in flight)` bytes at a time, between 64 KiB (or this, if
   * smaller) and this. Bodies Deno sends from the file read 64 KiB at a time. @default {4194304}
   */
  chunkBytes?: number;
  /** Bytes of read buffers shared by the bodies streamed through JavaScript. @default {33554432} */
  readBudgetBytes?: number;
  /**
   * Artifact bodies sent at once; one more is answered 503 with `Retry-After`. Under
   * `Deno.serve` a slot is held until the connection has delivered (or lost) the response, so
   * this also bounds what the HTTP layer buffers for clients that stop reading. @default {64}
   */
  maxDownloads?: number;
  /** Artifact bodies sent at once to one client address (`info.remoteAddr`). @default {16} */
  maxDownloadsPerClient?: number;
  /**
   * End an artifact body whose client has not taken a chunk for this long, in ms (its file is
   * closed and its read buffer freed). @default {30000}
   */
  idleTimeoutMs?: number;
  /** Aborting ends every body still being sent (their files are closed). @default {undefined} */
  signal?: AbortSignal;
  /**
   * How long, in ms, a manifest checked against the files and a health answer are served as they
   * are (0: check at every request). A download that opens an artifact whose hash differs from
   * the cached manifest's ends that manifest's time at once. @default {100}
   */
  recheckMs?: number;
  /** Called with unexpected errors (answered with 500). @default {console.error} */
  onError?: (error: unknown, request: Request) => void;
  /** The clock, in ms. @default {Date.now} */
  now?: () => number;
}

/** Counters of a provider handler (plus its store's). */
export interface ProviderMetrics extends ArtifactStoreMetrics {
  /** Requests answered. */
  requests_total: number;
  /** Responses by status code. */
  responses_by_status: Record<string, number>;
  /** Body bytes of artifact downloads actually sent. */
  bytes_served_total: number;
  /** Artifact bodies being sent now. */
  downloads_active: number;
  /** Artifact bodies started (200 and 206 GETs). */
  downloads_total: number;
  /**
   * Of those, bodies Deno sent from the file handle (no JavaScript per chunk): whole files and
   * ranges that run to the end of the file, under `Deno.serve`.
   */
  downloads_direct_total: number;
  /** Artifact bodies that ended before their last byte (client gone, shutdown, file shrank). */
  downloads_aborted_total: number;
  /** Artifact requests answered 503 because every download slot (or the client's) was taken. */
  downloads_refused_total: number;
  /** Manifest bodies served. */
  manifests_served_total: number;
  /** Body bytes of artifact downloads sent, by `channel/arch/artifact`. */
  bytes_served_by_artifact: Record<string, number>;
  /** Artifact requests with a `Range` header, by answer: partial, unsatisfiable, full, not_modified. */
  range_requests: Record<string, number>;
}

/** What the HTTP server knows about a request's connection (a part of `Deno.ServeHandlerInfo`). */
export interface ProviderRequestInfo {
  /** The client's address: download slots are counted per `hostname`. */
  remoteAddr?: { hostname?: string } | Deno.Addr;
  /**
   * Settles once the response was delivered or the connection lost: frees the download slot.
   * Given (as `Deno.serve` does), a body that runs to the end of its file is sent by Deno from
   * the file handle.
   */
  completed?: Promise<void>;
}

/** A provider handler: answers requests, and reports its counters. */
export interface ProviderHandler {
  /**
   * Answer one request (`info` as `Deno.serve` passes it, optional). A manifest or health answer
   * that needs no I/O comes back as a `Response` at once (no promise, as `Deno.serve` allows);
   * everything else as a promise.
   */
  (request: Request, info?: ProviderRequestInfo): Response | Promise<Response>;
  /** A snapshot of the counters. */
  metrics(): ProviderMetrics;
}

const ALLOW = "GET, HEAD";

/** `range_requests` kinds by answer status. */
const _RANGE_KINDS: Record<number, string> = {
  206: "partial",
  416: "unsatisfiable",
  200: "full",
  304: "not_modified",
};

/**
 * Make the HTTP handler of a boot provider. It does no I/O until a request comes.
 *
 * @throws {TypeError} If `store` is missing or `channel`/`arch` are not plain names.
 * @throws {RangeError} If `minFreeBytes`, `chunkBytes`, `readBudgetBytes`, `recheckMs` or a
 * download limit is out of range.
 *
 * @example
 * ```ts
 * import { createProviderHandler } from "./provider_handler.ts";
 * import { ArtifactStore } from "./artifact_store.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/stable/x86_64/kernel`, "0123456789");
 * const store = new ArtifactStore(dir, { keyPair: await generateKeyPair() });
 * const handler = createProviderHandler({
 *   store, channel: "stable", arch: "x86_64",
 *   diskSpace: () => Promise.resolve({ freeBytes: 1e12, totalBytes: 2e12 }),
 * });
 * const res = await handler(new Request("http://provider/stable/x86_64/kernel", {
 *   headers: { range: "bytes=-3" },
 * }));
 * assert.equal(res.status, 206);
 * assert.equal(res.headers.get("content-range"), "bytes 7-9/10");
 * assert.equal(await res.text(), "789");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function createProviderHandler(options: ProviderHandlerOptions): ProviderHandler {
  const {
    store,
    channel,
    arch,
    name = "plasm",
    version = "0.1.0",
    info = {},
    minFreeBytes = 64 * 1024 * 1024,
    diskSpace = _statfsSpace,
    chunkBytes = 4 * 1024 * 1024,
    readBudgetBytes = 32 * 1024 * 1024,
    maxDownloads = 64,
    maxDownloadsPerClient = 16,
    idleTimeoutMs = 30_000,
    recheckMs = 100,
    signal,
    onError = (error: unknown) => console.error(error),
    now = Date.now,
  } = options;
  _validateOptions({ store, channel, arch, minFreeBytes, chunkBytes, readBudgetBytes });
  for (
    const [name, value] of Object.entries({ maxDownloads, maxDownloadsPerClient, idleTimeoutMs })
  ) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(
        `Cannot create provider handler: ${name} must be a whole number >= 1, got ${value}`,
      );
    }
  }
  if (!Number.isSafeInteger(recheckMs) || recheckMs < 0 || recheckMs > 60_000) {
    throw new RangeError(
      `Cannot create provider handler: recheckMs must be a whole number from 0 to 60000, got ${recheckMs}`,
    );
  }
  const provider = new _Provider({
    store,
    channel,
    arch,
    name,
    version,
    info,
    minFreeBytes,
    diskSpace,
    chunkBytes,
    readBudgetBytes,
    maxDownloads,
    maxDownloadsPerClient,
    idleTimeoutMs,
    recheckMs,
    signal,
    now,
  });
  const counters = provider.counters;
  const slow = async (req: Request, info?: ProviderRequestInfo): Promise<Response> => {
    let res: Response;
    try {
      res = await provider.route(req, info);
    } catch (error) {
      if (error instanceof Deno.errors.Busy) {
        res = _error(503, "Cannot serve artifact: it is being replaced, retry");
        res.headers.set("retry-after", "1");
      } else {
        onError(error, req);
        res = _error(500, "Cannot answer: internal error (see the provider log)");
      }
    }
    counters.responses_by_status[res.status] = (counters.responses_by_status[res.status] ?? 0) + 1;
    return res;
  };
  // Not async: a manifest or health answer built at the last check goes back without a promise.
  const handler = (req: Request, info?: ProviderRequestInfo): Response | Promise<Response> => {
    counters.requests_total++;
    const res = provider.cached(req);
    if (res === undefined) return slow(req, info);
    counters.responses_by_status[res.status] = (counters.responses_by_status[res.status] ?? 0) + 1;
    return res;
  };
  return Object.assign(handler, { metrics: () => provider.metrics() });
}

function _validateOptions(o: {
  store: ArtifactStore;
  channel: string;
  arch: string;
  minFreeBytes: number;
  chunkBytes: number;
  readBudgetBytes: number;
}): void {
  const { store, channel, arch, minFreeBytes, chunkBytes, readBudgetBytes } = o;
  if (typeof store?.open !== "function") {
    throw new TypeError("Cannot create provider handler: store must be an ArtifactStore");
  }
  if (!SAFE_NAME.test(channel) || !SAFE_NAME.test(arch)) {
    throw new TypeError(
      `Cannot create provider handler: channel and arch must be plain names, got '${channel}' and '${arch}'`,
    );
  }
  if (!Number.isSafeInteger(minFreeBytes) || minFreeBytes < 0) {
    throw new RangeError(
      `Cannot create provider handler: minFreeBytes must be a whole number >= 0, got ${minFreeBytes}`,
    );
  }
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1024 || chunkBytes > 16 * 1024 * 1024) {
    throw new RangeError(
      `Cannot create provider handler: chunkBytes must be a whole number from 1024 to 16777216, got ${chunkBytes}`,
    );
  }
  if (!Number.isSafeInteger(readBudgetBytes) || readBudgetBytes < chunkBytes) {
    throw new RangeError(
      `Cannot create provider handler: readBudgetBytes must be a whole number >= chunkBytes (${chunkBytes}), got ${readBudgetBytes}`,
    );
  }
}

/** The options of a handler once defaults are applied and checked. */
type _ProviderConfig =
  & Required<
    Omit<ProviderHandlerOptions, "signal" | "onError">
  >
  & { signal: AbortSignal | undefined };

/** The state behind one handler: its counters, bodies in flight, and the routes. */
class _Provider {
  readonly counters: Omit<ProviderMetrics, keyof ArtifactStoreMetrics> = {
    requests_total: 0,
    responses_by_status: {},
    bytes_served_total: 0,
    downloads_active: 0,
    downloads_total: 0,
    downloads_direct_total: 0,
    downloads_aborted_total: 0,
    downloads_refused_total: 0,
    manifests_served_total: 0,
    bytes_served_by_artifact: {},
    range_requests: {},
  };
  readonly #config: _ProviderConfig;
  readonly #startedAt: number;
  /** `channel/arch` of `/manifest.json`. */
  readonly #defaultKey: string;
  /** Download slots taken, in all and per client address. */
  #slotsTaken = 0;
  readonly #slotsByClient = new Map<string, number>();
  readonly #bodies = new Map<Deno.FsFile, (reason: Error) => void>();
  /** Bodies streamed through JavaScript now: they share the read budget. */
  #jsBodies = 0;
  /** Manifest answers by `channel/arch`, each as of the check that started at `checkedAt`. */
  readonly #manifests = new Map<string, _ManifestAnswer>();
  /** Bumped by each download that finds a manifest stale: checks begun before it are not kept. */
  readonly #generations = new Map<string, number>();
  #health: _HealthAnswer | undefined;
  #healthCheck: Promise<_HealthAnswer> | undefined;

  constructor(config: _ProviderConfig) {
    this.#config = config;
    this.#startedAt = config.now();
    this.#defaultKey = `${config.channel}/${config.arch}`;
    config.signal?.addEventListener("abort", () => {
      for (const end of [...this.#bodies.values()]) end(new Error("Provider is shutting down"));
    }, { once: true });
  }

  metrics(): ProviderMetrics {
    return {
      ...this.counters,
      responses_by_status: { ...this.counters.responses_by_status },
      bytes_served_by_artifact: { ...this.counters.bytes_served_by_artifact },
      range_requests: { ...this.counters.range_requests },
      ...this.#config.store.metrics(),
    };
  }

  /**
   * The answer to a GET or HEAD of a manifest or of `/health` checked less than `recheckMs` ago,
   * built without I/O or a promise; `undefined` for every other request.
   */
  cached(req: Request): Response | undefined {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") return undefined;
    const path = _path(req.url);
    let key: string;
    if (path === "/manifest.json") key = this.#defaultKey;
    else if (path === "/health") return this.#freshHealth()?.response(method === "HEAD");
    else if (path.endsWith("/manifest.json")) {
      const segments = _segments(req.url);
      if (segments?.length !== 3) return undefined;
      key = `${segments[0]}/${segments[1]}`;
    } else return undefined;
    const answer = this.#manifests.get(key);
    if (answer === undefined || !this.#fresh(answer.checkedAt)) return undefined;
    return this.#manifestResponse(req, answer);
  }

  /** Whether a check begun at `checkedAt` is recent enough to answer from. */
  #fresh(checkedAt: number): boolean {
    const age = this.#config.now() - checkedAt;
    return age >= 0 && age < this.#config.recheckMs;
  }

  async route(req: Request, info?: ProviderRequestInfo): Promise<Response> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      const res = _error(405, `Cannot ${req.method.slice(0, 16)}: only GET and HEAD are allowed`);
      res.headers.set("allow", ALLOW);
      return res;
    }
    const segments = _segments(req.url);
    if (segments === undefined) {
      return _error(400, "Cannot serve path: every segment must be a plain name");
    }
    const jsonBody = (value: unknown, status = 200) => _json(value, status, req.method === "HEAD");
    const { store, channel, arch } = this.#config;
    const [first, second, third] = segments;
    switch (segments.length) {
      case 0:
        return jsonBody(this.#info());
      case 1:
        if (first === "health") {
          return (await this.#checkedHealth()).response(req.method === "HEAD");
        }
        if (first === "status") {
          const [h, channels] = await Promise.all([this.#checkedHealth(), store.channels()]);
          return jsonBody({ ...this.#info(), health: h.value, metrics: this.metrics(), channels });
        }
        if (first === "manifest.json") return await this.#serveManifest(req, channel, arch);
        if (first === "metrics") {
          const text = await renderProviderMetrics(this.metrics(), () => this.#sequences());
          return new Response(req.method === "HEAD" ? null : text, {
            headers: { "content-type": PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" },
          });
        }
        break;
      case 3:
        if (third === "manifest.json") return await this.#serveManifest(req, first!, second!);
        return await this.#serveArtifact(req, first!, second!, third!, info);
    }
    return _error(404, `Cannot find '${new URL(req.url).pathname.slice(0, 200)}'`);
  }

  #info() {
    const { name, version, channel, arch, now, store, info } = this.#config;
    return {
      name,
      version,
      channel,
      arch,
      uptime_seconds: Math.floor((now() - this.#startedAt) / 1000),
      public_key: toHex(store.publicKey),
      ...info,
    };
  }

  /** The manifest sequence of every channel/arch served (for `/metrics`). */
  async #sequences(): Promise<{ channel: string; arch: string; sequence: number }[]> {
    const { store } = this.#config;
    const out = [];
    for (const { channel, arch } of await store.channels()) {
      const manifest = await store.manifest(channel, arch).catch(() => undefined);
      if (manifest) out.push({ channel, arch, sequence: manifest.sequence });
    }
    return out;
  }

  /** The health answer of the last `recheckMs`, if there is one. */
  #freshHealth(): _HealthAnswer | undefined {
    const health = this.#health;
    return health !== undefined && this.#fresh(health.checkedAt) ? health : undefined;
  }

  /**
   * The health answer, measured again if the last one is older than `recheckMs`. Callers that
   * come while it is being measured share that measurement.
   */
  #checkedHealth(): Promise<_HealthAnswer> {
    const fresh = this.#freshHealth();
    if (fresh) return Promise.resolve(fresh);
    this.#healthCheck ??= (async () => {
      const checkedAt = this.#config.now();
      try {
        const value = await this.#measureHealth();
        const answer = new _HealthAnswer(value, checkedAt);
        if (this.#health === undefined || this.#health.checkedAt <= checkedAt) {
          this.#health = answer;
        }
        return answer;
      } finally {
        this.#healthCheck = undefined;
      }
    })();
    return this.#healthCheck;
  }

  async #measureHealth(): Promise<_Health> {
    const { store, channel, arch, diskSpace, minFreeBytes } = this.#config;
    let artifactsReadable = false;
    let disk: DiskSpace | undefined;
    try {
      artifactsReadable = await _artifactsReadable(store, channel, arch);
    } catch {
      artifactsReadable = false;
    }
    try {
      disk = await diskSpace(store.dir);
    } catch {
      disk = undefined;
    }
    const diskOk = disk !== undefined && disk.freeBytes >= minFreeBytes;
    const health: _Health = {
      status: artifactsReadable && diskOk ? "healthy" : "unhealthy",
      checks: { artifacts_readable: artifactsReadable, disk_space_ok: diskOk },
      disk_free_bytes: disk?.freeBytes ?? null,
      disk_total_bytes: disk?.totalBytes ?? null,
      min_free_bytes: minFreeBytes,
    };
    return health;
  }

  async #serveManifest(req: Request, c: string, a: string): Promise<Response> {
    const key = `${c}/${a}`;
    let answer = this.#manifests.get(key);
    if (answer === undefined || !this.#fresh(answer.checkedAt)) {
      // Checked now: the store stats every file (and hashes what changed) before it answers.
      const checkedAt = this.#config.now();
      const generation = this.#generations.get(key) ?? 0;
      const manifest = await this.#config.store.manifest(c, a);
      if (!manifest) {
        this.#manifests.delete(key);
        return _error(404, `Cannot find channel '${c}' for arch '${a}'`);
      }
      const last = this.#manifests.get(key);
      answer = last?.manifest === manifest
        ? last.checkedAgain(checkedAt)
        : new _ManifestAnswer(manifest, checkedAt);
      // Kept unless a later check is kept already, or a download found the files changed since.
      if (
        (last === undefined || last.checkedAt <= checkedAt) &&
        (this.#generations.get(key) ?? 0) === generation
      ) {
        this.#manifests.set(key, answer);
      }
    }
    return this.#manifestResponse(req, answer);
  }

  #manifestResponse(req: Request, answer: _ManifestAnswer): Response {
    if (_etagMatches(req.headers.get("if-none-match"), answer.etag)) {
      return new Response(null, { status: 304, headers: answer.headers });
    }
    if (req.method === "HEAD") {
      return new Response(null, { status: 200, headers: answer.headHeaders });
    }
    this.counters.manifests_served_total++;
    return new Response(answer.bytes, { status: 200, headers: answer.headers });
  }

  /**
   * A download opened `entry` of `c/a`: if the cached manifest names another hash (or no such
   * artifact), it is dropped, so the next manifest request checks the files again.
   */
  #noteServed(c: string, a: string, entry: ArtifactEntry): void {
    const key = `${c}/${a}`;
    const answer = this.#manifests.get(key);
    if (answer === undefined) return;
    const named = Object.hasOwn(answer.manifest.artifacts, entry.name)
      ? answer.manifest.artifacts[entry.name]
      : undefined;
    if (named?.hash === entry.hash && named.size_bytes === entry.size) return;
    this.#manifests.delete(key);
    this.#generations.set(key, (this.#generations.get(key) ?? 0) + 1);
  }

  async #serveArtifact(
    req: Request,
    c: string,
    a: string,
    artifact: string,
    info: ProviderRequestInfo | undefined,
  ): Promise<Response> {
    const opened = await this.#config.store.open(c, a, artifact);
    if (!opened) return _error(404, `Cannot find artifact '${artifact}' in ${c}/${a}`);
    const { entry, file } = opened;
    let handedOver = false;
    try {
      this.#noteServed(c, a, entry);
      const answer = _artifactAnswer(req, entry, artifact);
      if (req.headers.has("range")) {
        const kind = _RANGE_KINDS[answer.status] ?? "full";
        const ranges = this.counters.range_requests;
        ranges[kind] = (ranges[kind] ?? 0) + 1;
      }
      if (answer instanceof Response) return answer;
      const { status, headers, start, length } = answer;
      if (req.method === "HEAD" || length === 0) return new Response(null, { status, headers });
      if (this.#config.signal?.aborted) {
        return _error(503, "Cannot serve artifact: provider is shutting down");
      }
      const client = _clientKey(info);
      const busy = this.#takeSlot(client);
      if (busy !== undefined) {
        this.counters.downloads_refused_total++;
        const res = _error(503, `Cannot serve artifact: ${busy}, retry later`);
        res.headers.set("retry-after", "5");
        return res;
      }
      // The slot is freed once the connection is done with the response (so what the HTTP
      // layer holds for a client that stopped reading stays counted), else when the body ends.
      let freed = false;
      const free = () => {
        if (freed) return;
        freed = true;
        this.#freeSlot(client);
      };
      const completed = info?.completed;
      completed?.then(free, free);
      const key = `${c}/${a}/${artifact}`;
      if (completed !== undefined && start + length === entry.size) {
        const direct = await this.#directBody(file, start, length, key, completed);
        if (direct !== undefined) {
          handedOver = true;
          return new Response(direct, { status, headers });
        }
      }
      const body = this.#fileBody(file, start, length, key, completed ? undefined : free);
      handedOver = true;
      return new Response(body, { status, headers });
    } finally {
      if (!handedOver) _closeFile(file);
    }
  }

  /** Take a download slot for `client`, or say why there is none. */
  #takeSlot(client: string): string | undefined {
    const { maxDownloads, maxDownloadsPerClient } = this.#config;
    if (this.#slotsTaken >= maxDownloads) {
      return `too many downloads in flight (${maxDownloads})`;
    }
    const mine = this.#slotsByClient.get(client) ?? 0;
    if (mine >= maxDownloadsPerClient) {
      return `too many downloads in flight to this client (${maxDownloadsPerClient})`;
    }
    this.#slotsTaken++;
    this.#slotsByClient.set(client, mine + 1);
    return undefined;
  }

  #freeSlot(client: string): void {
    this.#slotsTaken--;
    const left = (this.#slotsByClient.get(client) ?? 1) - 1;
    if (left > 0) this.#slotsByClient.set(client, left);
    else this.#slotsByClient.delete(client);
  }

  /**
   * A body Deno sends from `file` itself, from `start` to the end of the file (`length` bytes),
   * watched through the file's position: counted, ended when idle or on shutdown, and finished
   * once `completed` settles. `undefined` if this Deno gives no such body.
   */
  async #directBody(
    file: Deno.FsFile,
    start: number,
    length: number,
    key: string,
    completed: Promise<void>,
  ): Promise<ReadableStream<Uint8Array> | undefined> {
    const stream = _directStream(file);
    if (stream === undefined) return undefined;
    if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    this.counters.downloads_direct_total++;
    _watchDirectBody(
      file,
      start,
      length,
      this.#config.idleTimeoutMs,
      completed,
      this.#bodyHooks(file, key, { js: false }),
    );
    return stream;
  }

  /**
   * The bookkeeping of one body of `file` (`key`'s bytes): its place among the bodies shutdown
   * ends and the download counters; `js` bodies also count for the read budget's share.
   */
  #bodyHooks(
    file: Deno.FsFile,
    key: string,
    o: { js: boolean; onEnd?: (() => void) | undefined },
  ): _BodyHooks {
    const counters = this.counters;
    return {
      register: (end) => {
        this.#bodies.set(file, end);
        if (o.js) this.#jsBodies++;
        counters.downloads_active++;
        counters.downloads_total++;
      },
      sent: (n) => this.#countSent(key, n),
      done: (complete) => {
        o.onEnd?.();
        if (!this.#bodies.delete(file)) return;
        if (o.js) this.#jsBodies--;
        counters.downloads_active--;
        if (!complete) counters.downloads_aborted_total++;
      },
    };
  }

  #countSent(key: string, n: number): void {
    const counters = this.counters;
    counters.bytes_served_total += n;
    const byArtifact = counters.bytes_served_by_artifact;
    byArtifact[key] = (byArtifact[key] ?? 0) + n;
  }

  /** A body streaming `length` bytes of `file` from `start`, counted and ended on shutdown. */
  #fileBody(
    file: Deno.FsFile,
    start: number,
    length: number,
    key: string,
    onEnd: (() => void) | undefined,
  ): ReadableStream<Uint8Array> {
    const { chunkBytes, readBudgetBytes, idleTimeoutMs } = this.#config;
    const chunkSize = () =>
      Math.max(
        Math.min(64 * 1024, chunkBytes),
        Math.min(
          chunkBytes,
          Math.floor(readBudgetBytes / (2 * Math.max(1, this.#jsBodies))),
        ),
      );
    return _fileBody(
      file,
      start,
      length,
      chunkSize,
      idleTimeoutMs,
      this.#bodyHooks(file, key, { js: true, onEnd }),
    );
  }
}

/** How a body reports to the handler: started (with its ender), bytes sent, ended. */
interface _BodyHooks {
  register: (end: (reason: Error) => void) => void;
  sent: (n: number) => void;
  done: (complete: boolean) => void;
}

/** The body of `/health`. */
interface _Health {
  status: "healthy" | "unhealthy";
  checks: { artifacts_readable: boolean; disk_space_ok: boolean };
  disk_free_bytes: number | null;
  disk_total_bytes: number | null;
  min_free_bytes: number;
}

/**
 * One health measurement with its body and headers built once. A GET names no `Content-Length`:
 * the HTTP layer sets it from the body, one header less to build per request.
 */
class _HealthAnswer {
  readonly status: number;
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly headers: Record<string, string>;
  readonly headHeaders: Record<string, string>;

  constructor(readonly value: _Health, readonly checkedAt: number) {
    this.status = value.status === "healthy" ? 200 : 503;
    this.bytes = new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
    this.headers = {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    };
    this.headHeaders = { ...this.headers, "content-length": String(this.bytes.length) };
  }

  response(head: boolean): Response {
    return head
      ? new Response(null, { status: this.status, headers: this.headHeaders })
      : new Response(this.bytes, { status: this.status, headers: this.headers });
  }
}

/**
 * One signed manifest with its body, ETag and headers built once, as of a check. A GET (and a
 * 304) names no `Content-Length`: the HTTP layer sets it from the body.
 */
class _ManifestAnswer {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly etag: string;
  readonly headers: Record<string, string>;
  readonly headHeaders: Record<string, string>;

  constructor(readonly manifest: BootManifest, readonly checkedAt: number, from?: _ManifestAnswer) {
    if (from) {
      ({ bytes: this.bytes, etag: this.etag, headers: this.headers } = from);
      this.headHeaders = from.headHeaders;
      return;
    }
    this.bytes = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
    this.etag = `"${createHash("sha256").update(this.bytes).digest("hex")}"`;
    this.headers = {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-cache",
      etag: this.etag,
    };
    this.headHeaders = { ...this.headers, "content-length": String(this.bytes.length) };
  }

  /** The same answer, as of a later check that found the same manifest. */
  checkedAgain(checkedAt: number): _ManifestAnswer {
    return new _ManifestAnswer(this.manifest, checkedAt, this);
  }
}

/**
 * The status and headers of an artifact answer with its byte range, or the whole answer when
 * it has no body to stream (304, 416).
 */
function _artifactAnswer(
  req: Request,
  entry: ArtifactEntry,
  artifact: string,
): Response | { status: number; headers: Headers; start: number; length: number } {
  const size = entry.size;
  const etag = `"${entry.hash.slice("sha256:".length)}"`;
  const headers = new Headers({
    "accept-ranges": "bytes",
    "content-type": "application/octet-stream",
    "cache-control": "no-cache",
    etag,
  });
  if (entry.mtimeMs > 0) headers.set("last-modified", new Date(entry.mtimeMs).toUTCString());
  if (_etagMatches(req.headers.get("if-none-match"), etag)) {
    return new Response(null, { status: 304, headers });
  }
  let range = _parseRange(req.headers.get("range"), size);
  const ifRange = req.headers.get("if-range");
  if (ifRange !== null && ifRange.trim() !== etag) range = { kind: "full" };
  if (range.kind === "unsatisfiable") {
    headers.set("content-range", `bytes */${size}`);
    const res = _error(416, `Cannot serve range of '${artifact}': file has ${size} bytes`);
    for (const [k, v] of headers) if (k !== "content-type") res.headers.set(k, v);
    return res;
  }
  let start = 0;
  let length = size;
  let status = 200;
  if (range.kind === "range") {
    start = range.start;
    length = range.end - range.start + 1;
    status = 206;
    headers.set("content-range", `bytes ${range.start}-${range.end}/${size}`);
  }
  headers.set("content-length", String(length));
  return { status, headers, start, length };
}

async function _statfsSpace(path: string): Promise<DiskSpace> {
  const s = await statfs(path);
  return {
    freeBytes: Number(s.bavail) * Number(s.bsize),
    totalBytes: Number(s.blocks) * Number(s.bsize),
  };
}

async function _artifactsReadable(
  store: ArtifactStore,
  channel: string,
  arch: string,
): Promise<boolean> {
  let count = 0;
  for (const name of ["kernel", "initramfs", "rootfs"]) {
    const path = await store.locate(channel, arch, name);
    if (path === undefined) continue;
    const file = await Deno.open(path, { read: true });
    file.close();
    count++;
  }
  return count > 0;
}

/** The raw (still percent-encoded) path of an absolute request URL, `/` if it has none. */
function _path(url: string): string {
  // Request URLs are absolute and already parsed; taking the path by hand is cheaper than
  // `new URL()`, and stricter: `..` is not folded away here but refused by _segments.
  const scheme = url.indexOf("://");
  const start = scheme < 0 ? -1 : url.indexOf("/", scheme + 3);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  if (end < 0) end = url.length;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  return url.slice(start, end);
}

/** Split a URL path into decoded plain-name segments, or `undefined` if any is not one. */
function _segments(url: string): string[] | undefined {
  const path = _path(url);
  if (path === "/") return [];
  const out: string[] = [];
  for (const raw of path.slice(1).split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (!SAFE_NAME.test(segment)) return undefined;
    out.push(segment);
  }
  return out;
}

type _Range =
  | { kind: "full" }
  | { kind: "unsatisfiable" }
  | { kind: "range"; start: number; end: number };

function _parseRange(header: string | null, size: number): _Range {
  if (header === null) return { kind: "full" };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: "full" }; // malformed, another unit, or several ranges
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return { kind: "full" };
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Number(last);
  if (start >= size || end < start) return { kind: "unsatisfiable" };
  return { kind: "range", start, end: Math.min(end, size - 1) };
}

function _etagMatches(header: string | null, etag: string): boolean {
  if (header === null) return false;
  const trimmed = header.trim();
  if (trimmed === "*") return true;
  return trimmed.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag);
}

/** The key download slots are counted by: the client's IP address. */
function _clientKey(info: ProviderRequestInfo | undefined): string {
  const addr = info?.remoteAddr as { hostname?: unknown } | undefined;
  return typeof addr?.hostname === "string" ? addr.hostname : "local";
}

function _fileBody(
  file: Deno.FsFile,
  start: number,
  length: number,
  chunkSize: () => number,
  idleTimeoutMs: number,
  hooks: _BodyHooks,
): ReadableStream<Uint8Array> {
  let remaining = length;
  let idle: ReturnType<typeof setTimeout> | undefined;
  let finished = false;
  let end: (reason: Error) => void = () => {};
  const finish = (complete: boolean) => {
    clearTimeout(idle);
    if (finished) return;
    finished = true;
    _closeFile(file);
    hooks.done(complete);
  };
  // Armed while the body waits for its reader: a client that takes nothing for idleTimeoutMs
  // has its body ended, so its file and read buffer are let go.
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(
      () => end(new Error(`Client took no data for ${idleTimeoutMs} ms`)),
      idleTimeoutMs,
    );
  };
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      end = (reason) => {
        finish(false);
        try {
          controller.error(reason);
        } catch { /* already closed */ }
      };
      hooks.register(end);
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
      arm();
    },
    async pull(controller) {
      clearTimeout(idle);
      const buf = new Uint8Array(Math.min(chunkSize(), remaining));
      let n: number | null;
      try {
        n = await file.read(buf);
      } catch (error) {
        finish(false);
        throw error;
      }
      if (n === null || n === 0) {
        finish(false);
        throw new Error(`Cannot send artifact: file ended ${remaining} bytes early`);
      }
      remaining -= n;
      hooks.sent(n);
      controller.enqueue(n === buf.length ? buf : buf.subarray(0, n));
      if (remaining === 0) {
        finish(true);
        controller.close();
      } else {
        arm();
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}

/**
 * `file.readable` made to leave the file handle open when Deno's HTTP layer takes it, or
 * `undefined` if this Deno's stream does not look as expected. A stream over a file handle
 * carries `{ rid, autoClose }` under an internal symbol; `Deno.serve` sends such a body from the
 * handle itself, without JavaScript per chunk, and with `autoClose` false it only borrows the
 * handle, so the handler can still read its position (how far Deno has read) and close it (Deno's
 * next read then fails and the connection is closed).
 */
function _directStream(file: Deno.FsFile): ReadableStream<Uint8Array> | undefined {
  const ridKey = Object.getOwnPropertySymbols(file)
    .find((key) => key.description === "Deno.internal.rid");
  const rid = ridKey === undefined
    ? undefined
    : (file as unknown as Record<symbol, unknown>)[ridKey];
  if (typeof rid !== "number") return undefined;
  const stream = file.readable;
  const fields = stream as unknown as Record<symbol, unknown>;
  const backings = Object.getOwnPropertySymbols(stream).map((key) => fields[key])
    .filter((value): value is { rid: unknown; autoClose: unknown } =>
      typeof value === "object" && value !== null && "rid" in value && "autoClose" in value
    );
  const [backing] = backings;
  if (backings.length !== 1 || backing?.rid !== rid || backing.autoClose !== true) {
    return undefined;
  }
  backing.autoClose = false;
  return stream;
}

/**
 * Watch a body Deno sends from `file` (from `start`, `length` bytes to the end of the file): the
 * file's position is how far Deno has read. Progress is counted as sent; no progress for
 * `idleTimeoutMs` (checked every quarter of it) ends the body; when `completed` settles the body
 * is complete if Deno read all of it.
 */
function _watchDirectBody(
  file: Deno.FsFile,
  start: number,
  length: number,
  idleTimeoutMs: number,
  completed: Promise<void>,
  hooks: _BodyHooks,
): void {
  let seen = start;
  let counted = 0;
  // Real time, as the JavaScript path's idle timer (the handler's `now` is the manifests' clock).
  const now = () => performance.now();
  let quietSince = now();
  let finished = false;
  let checking = false;
  const report = (position: number) => {
    const upTo = Math.min(Math.max(position, start), start + length) - start;
    if (upTo > counted) hooks.sent(upTo - counted);
    counted = Math.max(counted, upTo);
  };
  const finish = (complete: boolean) => {
    if (finished) return;
    finished = true;
    clearInterval(timer);
    _closeFile(file);
    hooks.done(complete);
  };
  const timer = setInterval(async () => {
    if (checking || finished) return;
    checking = true;
    try {
      const position = await file.seek(0, Deno.SeekMode.Current);
      if (finished) return;
      if (position !== seen) {
        seen = position;
        quietSince = now();
        report(position);
      } else if (now() - quietSince >= idleTimeoutMs) {
        finish(false);
      }
    } catch {
      // Closed by finish(), or busy with Deno's read: nothing to learn this time.
    } finally {
      checking = false;
    }
  }, Math.max(1, Math.ceil(idleTimeoutMs / 4)));
  hooks.register(() => finish(false));
  const settle = async () => {
    if (finished) return;
    let position = seen;
    try {
      position = file.seekSync(0, Deno.SeekMode.Current);
    } catch {
      try {
        position = await file.seek(0, Deno.SeekMode.Current);
      } catch { /* closed meanwhile: keep the last position seen */ }
    }
    if (finished) return;
    report(position);
    finish(position >= start + length);
  };
  completed.then(settle, settle);
}

function _closeFile(file: Deno.FsFile): void {
  try {
    file.close();
  } catch { /* already closed */ }
}

function _json(value: unknown, status: number, head: boolean): Response {
  const bytes = new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
  return new Response(head ? null : bytes, {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "content-length": String(bytes.length),
      "cache-control": "no-store",
    },
  });
}

function _error(status: number, message: string): Response {
  return _json({ error: message, status }, status, false);
}
