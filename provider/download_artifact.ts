/**
 * Download one boot artifact from untrusted sources into `<path>.part`, hashing while it
 * streams, and rename it to `<path>` only once its size and sha256 match the signed manifest.
 *
 * - resume: an existing `.part` is re-hashed and continued with `Range`;
 * - retries with exponential backoff, and failover to the next source;
 * - large artifacts with several sources: ranges fetched in parallel from all of them, written
 *   to the `.part` file in order (so it is always a prefix of the artifact and resumable) and
 *   hashed end to end;
 * - every response checked: status, `Content-Range`, `Content-Length`, body length; a stalled
 *   body is abandoned after `stallTimeoutMs`, and so is one slower than `minRate` over a
 *   `stallTimeoutMs` window (the next source is tried);
 * - nothing is followed that fetch did not create: a symbolic link at `<path>` or
 *   `<path>.part` is refused (`LinkRefusedError`), never read or written through.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { DigestMismatchError } from "../runtime/errors.ts";
import { retryableStatus, SourceError } from "./fetch_http.ts";
import { openHttpWithin } from "./open_http_within.ts";
import { openNoFollow } from "../util/open_no_follow.ts";
import { sleep } from "../util/sleep.ts";
import { syncDirectory } from "../util/write_file_atomic.ts";
import { dirname } from "node:path";

/**
 * Every source of an artifact failed (the `.part` file, if any, is kept for a later resume).
 *
 * @example
 * ```ts
 * import { ArtifactFetchError } from "./download_artifact.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new ArtifactFetchError("kernel", { "http://127.0.0.1:1/k": "HTTP 404" });
 * assert.equal(err.message, "Cannot fetch 'kernel': every source failed: http://127.0.0.1:1/k: HTTP 404");
 * ```
 */
export class ArtifactFetchError extends Error {
  /** The artifact name. */
  readonly subject: string;
  /** The last error of each source, by URL. */
  readonly errors: Record<string, string>;
  /** Make the error from the last error of each source. */
  constructor(subject: string, errors: Record<string, string>, options?: ErrorOptions) {
    super(
      `Cannot fetch '${subject}': every source failed: ${
        Object.entries(errors).map(([url, e]) =>
          `${url}: ${e.replace(`Cannot fetch '${url}': `, "")}`
        )
          .join("; ") || "no sources"
      }`,
      options,
    );
    this.name = "ArtifactFetchError";
    this.subject = subject;
    this.errors = errors;
  }
}

/** Options of {@linkcode downloadArtifact}. */
export interface DownloadArtifactOptions {
  /** Absolute http(s) URLs serving the artifact, in order of preference. */
  sources: string[];
  /** Exact size in bytes (from the verified manifest). */
  size: number;
  /** `sha256:<hex>` (from the verified manifest). */
  hash: string;
  /** The final path; the download goes to `<path>.part` first. */
  path: string;
  /** Cancels the download; the `.part` file is kept. @default {undefined} */
  signal?: AbortSignal | undefined;
  /** Failed attempts allowed per source before it is dropped. @default {3} */
  retries?: number;
  /** First backoff delay in ms; doubles per failure, capped at 5 s. @default {250} */
  retryDelayMs?: number;
  /** Give up on a response that sends no data (or no headers) for this long, in ms. @default {30000} */
  stallTimeoutMs?: number;
  /**
   * Give up on a response that delivers fewer than this many bytes per second over a whole
   * `stallTimeoutMs` window (a trickle is a stall too); 0 turns the floor off. @default {16384}
   */
  minRate?: number;
  /** Redirects followed per request. @default {5} */
  maxRedirects?: number;
  /** From this size on, with two or more sources, fetch ranges in parallel. @default {8 MiB} */
  parallelThreshold?: number;
  /** Range size for parallel fetching. @default {4 MiB} */
  segmentSize?: number;
  /** Ask another source for a range that one source has held this long, in ms. @default {2000} */
  hedgeAfterMs?: number;
  /** fsync the file before renaming it into place. @default {true} */
  sync?: boolean;
  /** Called with bytes on disk so far and the total. @default {undefined} */
  onProgress?: ((received: number, total: number) => void) | undefined;
  /** Called with one-line warnings (a source failed, was dropped, served bad data). @default {undefined} */
  onWarning?: ((message: string) => void) | undefined;
}

/** What {@linkcode downloadArtifact} did. */
export interface DownloadResult {
  /** The final path. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** `sha256:<hex>`. */
  hash: string;
  /** `present`: the file was already there and correct; `downloaded`: fetched now. */
  status: "present" | "downloaded";
  /** Bytes taken over from an existing `.part` file. */
  resumed_from: number;
  /** The sources that delivered data. */
  sources: string[];
  /** Whether ranges were fetched from several sources in parallel. */
  parallel: boolean;
}

/**
 * Download one artifact (see the module doc). A bad file never appears under `path`.
 *
 * @throws {DigestMismatchError} If no source delivered bytes with the right hash (the `.part`
 * file is deleted).
 * @throws {ArtifactFetchError} If every source failed (the `.part` file is kept).
 *
 * @example
 * ```ts
 * import { downloadArtifact } from "./download_artifact.ts";
 * import { sha256Tag } from "../runtime/digest.ts";
 * import assert from "node:assert/strict";
 *
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} },
 *   () => new Response("kernel bytes"));
 * const dir = await Deno.makeTempDir();
 * const result = await downloadArtifact("kernel", {
 *   sources: [`http://127.0.0.1:${server.addr.port}/k`],
 *   size: 12, hash: sha256Tag("kernel bytes"), path: `${dir}/vmlinuz`,
 * });
 * assert.equal(result.status, "downloaded");
 * assert.equal(await Deno.readTextFile(`${dir}/vmlinuz`), "kernel bytes");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function downloadArtifact(
  name: string,
  options: DownloadArtifactOptions,
): Promise<DownloadResult> {
  const {
    sources,
    size,
    hash,
    path,
    signal,
    retries = 3,
    retryDelayMs = 250,
    stallTimeoutMs = 30_000,
    minRate = 16 * 1024,
    maxRedirects = 5,
    parallelThreshold = 8 << 20,
    segmentSize = 4 << 20,
    hedgeAfterMs = 2000,
    sync = true,
    onProgress,
    onWarning,
  } = options;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Cannot fetch '${name}': size must be a whole number of bytes`);
  }
  if (!Number.isSafeInteger(segmentSize) || segmentSize < 1) {
    throw new RangeError(`Cannot fetch '${name}': segmentSize must be >= 1`);
  }
  if (!Number.isSafeInteger(retries) || retries < 0) {
    throw new RangeError(`Cannot fetch '${name}': retries must be >= 0`);
  }
  if (!Number.isFinite(minRate) || minRate < 0) {
    throw new RangeError(`Cannot fetch '${name}': minRate must be >= 0 bytes per second`);
  }
  const ctx: _Ctx = {
    name,
    size,
    signal,
    retries,
    retryDelayMs,
    stallTimeoutMs,
    minRate,
    maxRedirects,
    segmentSize,
    hedgeAfterMs,
    onProgress,
    warn: (m) => onWarning?.(m),
    errors: {},
    contributors: new Set(),
    failures: 0,
  };
  if (await _isPresent(path, size, hash, signal)) {
    return {
      path,
      size,
      hash,
      status: "present",
      resumed_from: 0,
      sources: [],
      parallel: false,
    };
  }
  const partPath = `${path}.part`;
  const part = await _Part.open(partPath, size, signal);
  if (sync) part.syncEvery = 32 << 20;
  const resumedFrom = part.written;
  let fromEarlierRun = resumedFrom > 0;
  let live = [...new Set(sources)];
  let parallel = false;
  let triedParallel = false;
  try {
    for (;;) {
      if (part.written === size) {
        const got = `sha256:${part.hasher.digest("hex")}`;
        if (got === hash) break;
        await part.reset();
        if (fromEarlierRun) {
          ctx.warn(`Discarding '${partPath}': it does not match the manifest; starting over`);
        } else if (parallel) {
          ctx.warn(
            `Cannot accept '${name}' from parallel ranges: sha256 mismatch; retrying one source at a time`,
          );
        } else {
          for (const src of ctx.contributors) {
            ctx.warn(`Dropping ${src}: served '${name}' with sha256 ${got}, expected ${hash}`);
            ctx.errors[src] = `sha256 mismatch: got ${got}`;
          }
          live = live.filter((s) => !ctx.contributors.has(s));
          if (live.length === 0) {
            await part.close();
            await Deno.remove(partPath).catch(() => {});
            throw new DigestMismatchError(name, hash, got);
          }
        }
        fromEarlierRun = false;
        parallel = false;
        ctx.contributors.clear();
        continue;
      }
      if (live.length === 0) throw new ArtifactFetchError(name, ctx.errors);
      signal?.throwIfAborted();
      if (!triedParallel && live.length >= 2 && size - part.written >= parallelThreshold) {
        triedParallel = true;
        parallel = true;
        live = await _parallel(part, live, ctx);
      } else {
        live = await _sequential(part, live, ctx);
      }
    }
    if (sync) {
      await part.settle();
      await part.file.syncData();
    }
    await part.close();
    await Deno.rename(partPath, path);
    if (sync) await syncDirectory(dirname(path));
  } finally {
    await part.close();
  }
  return {
    path,
    size,
    hash,
    status: "downloaded",
    resumed_from: resumedFrom,
    sources: [...ctx.contributors],
    parallel,
  };
}

interface _Ctx {
  name: string;
  size: number;
  signal: AbortSignal | undefined;
  retries: number;
  retryDelayMs: number;
  stallTimeoutMs: number;
  minRate: number;
  maxRedirects: number;
  segmentSize: number;
  hedgeAfterMs: number;
  onProgress: ((received: number, total: number) => void) | undefined;
  warn: (message: string) => void;
  /** Last error by source. */
  errors: Record<string, string>;
  /** Sources that wrote into the part since its last reset. */
  contributors: Set<string>;
  /** Failures so far, for the backoff. */
  failures: number;
}

/** Whether `path` already holds the artifact; a link planted there is refused, never read. */
async function _isPresent(
  path: string,
  size: number,
  hash: string,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await openNoFollow(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  try {
    if ((await file.stat()).size !== size) return false;
    const hasher = createHash("sha256");
    await _hashOpenFile(file, hasher, size, signal);
    return `sha256:${hasher.digest("hex")}` === hash;
  } finally {
    file.close();
  }
}

/** Feed the first `limit` bytes of an open file into `hasher`; returns the bytes read. */
async function _hashOpenFile(
  file: Deno.FsFile,
  hasher: Hash,
  limit: number,
  signal: AbortSignal | undefined,
): Promise<number> {
  await file.seek(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(1 << 20);
  let total = 0;
  while (total < limit) {
    signal?.throwIfAborted();
    const n = await file.read(buffer.subarray(0, Math.min(buffer.length, limit - total)));
    if (n === null) break;
    hasher.update(buffer.subarray(0, n));
    total += n;
  }
  return total;
}

/** The `.part` file: open for writing at `written`, with the hash of its first `written` bytes. */
class _Part {
  hasher: Hash = createHash("sha256");
  written = 0;
  /** fdatasync in the background after this many new bytes (0: never), so the final one is short. */
  syncEvery = 0;
  #closed = false;
  #unsynced = 0;
  #syncing: Promise<void> | undefined;
  constructor(readonly path: string, readonly file: Deno.FsFile) {}

  /** Account for `n` bytes written at the end. */
  wrote(n: number): void {
    this.written += n;
    if (this.syncEvery <= 0) return;
    this.#unsynced += n;
    if (this.#unsynced >= this.syncEvery && this.#syncing === undefined) {
      this.#unsynced = 0;
      this.#syncing = this.file.syncData().catch(() => {}).finally(() => this.#syncing = undefined);
    }
  }

  /** Wait for a background sync, if one runs. */
  async settle(): Promise<void> {
    await this.#syncing;
  }

  static async open(path: string, size: number, signal?: AbortSignal): Promise<_Part> {
    // Opened without following a link: one planted at `<path>.part` is refused, not written.
    const file = await openNoFollow(path, { write: true, create: true, mode: 0o644 });
    const part = new _Part(path, file);
    try {
      const length = (await file.stat()).size;
      if (length > size) {
        await part.reset();
      } else if (length > 0) {
        part.written = await _hashOpenFile(file, part.hasher, length, signal);
        await file.truncate(part.written);
        await file.seek(part.written, Deno.SeekMode.Start);
      }
    } catch (error) {
      await part.close();
      throw error;
    }
    return part;
  }

  async reset(): Promise<void> {
    await this.file.truncate(0);
    await this.file.seek(0, Deno.SeekMode.Start);
    this.hasher = createHash("sha256");
    this.written = 0;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.settle();
    this.file.close();
  }
}

async function _writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await file.write(data.subarray(done));
}

const _BATCH = 1 << 20;

/** Collects chunks into 1 MiB blocks; hashes one block while the previous one is written. */
class _BatchWriter {
  #buf = new Uint8Array(_BATCH);
  #spare = new Uint8Array(_BATCH);
  #fill = 0;
  #pending: Promise<void> = Promise.resolve();
  constructor(readonly part: _Part, readonly onProgress?: (received: number) => void) {}

  async push(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(_BATCH - this.#fill, chunk.length - offset);
      this.#buf.set(chunk.subarray(offset, offset + n), this.#fill);
      this.#fill += n;
      offset += n;
      if (this.#fill === _BATCH) await this.#swap();
    }
  }

  async flush(): Promise<void> {
    if (this.#fill > 0) await this.#swap();
    await this.#pending;
  }

  async #swap(): Promise<void> {
    await this.#pending;
    const out = this.#buf.subarray(0, this.#fill);
    const part = this.part;
    this.#pending = _writeAll(part.file, out).then(() => {
      part.wrote(out.length);
      this.onProgress?.(part.written);
    });
    part.hasher.update(out);
    [this.#buf, this.#spare] = [this.#spare, this.#buf];
    this.#fill = 0;
  }
}

function _backoff(ctx: _Ctx): number {
  const base = ctx.retryDelayMs * 2 ** Math.min(ctx.failures - 1, 10);
  return Math.min(5000, base) * (0.75 + Math.random() * 0.5);
}

function _contentRange(response: Response): [number, number, number] | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get("content-range") ?? "");
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * One source at a time: stream from the part's end to the artifact's end. Returns the sources
 * still worth using once the part is complete.
 */
async function _sequential(part: _Part, sources: string[], ctx: _Ctx): Promise<string[]> {
  const live = [...sources];
  const failures = new Map<string, number>();
  let index = 0;
  while (live.length > 0) {
    const src = live[index % live.length]!;
    const before = part.written;
    try {
      await _streamFrom(src, part, ctx);
      ctx.contributors.add(src);
      return live;
    } catch (error) {
      if (part.written > before) ctx.contributors.add(src);
      if (!(error instanceof SourceError)) throw error;
      ctx.errors[src] = error.message;
      ctx.failures++;
      const count = (failures.get(src) ?? 0) + 1;
      failures.set(src, count);
      if (!error.retryable || count > ctx.retries) {
        live.splice(index % live.length, 1);
        ctx.warn(`${error.message}; dropping this source for '${ctx.name}'`);
      } else {
        ctx.warn(`${error.message}; retrying${live.length > 1 ? " with the next source" : ""}`);
        index++;
      }
      if (live.length > 0) {
        await sleep(_backoff(ctx), ctx.signal);
        ctx.signal?.throwIfAborted();
      }
    }
  }
  throw new ArtifactFetchError(ctx.name, ctx.errors);
}

/** Stream `[part.written, size)` from one source into the part. */
async function _streamFrom(url: string, part: _Part, ctx: _Ctx): Promise<void> {
  const { size } = ctx;
  const start = part.written;
  const { response, url: finalUrl, body } = await openHttpWithin(url, {
    range: start > 0 ? [start, undefined] : undefined,
    signal: ctx.signal,
    maxRedirects: ctx.maxRedirects,
    timeoutMs: ctx.stallTimeoutMs,
    minRate: ctx.minRate,
  });
  const fail = async (what: string, retryable: boolean): Promise<never> => {
    await response.body?.cancel().catch(() => {});
    throw new SourceError(finalUrl, what, { retryable });
  };
  const length = response.headers.get("content-length");
  if (response.status === 206) {
    const range = _contentRange(response);
    if (range === undefined || range[0] !== start || range[1] !== size - 1 || range[2] !== size) {
      await fail(
        `wrong Content-Range '${response.headers.get("content-range")}', expected 'bytes ${start}-${
          size - 1
        }/${size}'`,
        false,
      );
    }
    if (length !== null && Number(length) !== size - start) {
      await fail(`wrong Content-Length ${length}, expected ${size - start}`, false);
    }
  } else if (response.status === 200) {
    if (length !== null && Number(length) !== size) {
      await fail(`wrong Content-Length ${length}, expected ${size}`, false);
    }
    if (start > 0) {
      ctx.warn(`${finalUrl} ignored the Range request; restarting '${ctx.name}' from byte 0`);
      await part.reset();
      ctx.contributors.clear();
    }
  } else {
    await fail(`HTTP ${response.status}`, retryableStatus(response.status));
  }
  if (response.body === null) await fail("no body", true);
  const writer = new _BatchWriter(part, (n) => ctx.onProgress?.(n, size));
  let position = part.written;
  try {
    for await (const chunk of body()) {
      if (position + chunk.length > size) {
        await writer.push(chunk.subarray(0, size - position));
        throw new SourceError(finalUrl, `sent more than the ${size} bytes of '${ctx.name}'`, {
          retryable: false,
        });
      }
      position += chunk.length;
      await writer.push(chunk);
    }
  } finally {
    await writer.flush();
  }
  if (part.written < size) {
    throw new SourceError(
      finalUrl,
      `truncated response: got ${part.written - start} of ${size - start} bytes`,
      { retryable: true },
    );
  }
}

interface _Segment {
  start: number;
  end: number; // inclusive
  state: "queued" | "inflight" | "done";
  data: Uint8Array | undefined;
  startedAt: number;
  holders: Map<AbortController, string>;
}

/**
 * Several sources at once: ranges of `segmentSize`, each source fetching the next free one
 * within a window ahead of the write position; completed ranges written in order. A range held
 * too long by one source is also asked of an idle one (first answer wins).
 */
async function _parallel(part: _Part, sources: string[], ctx: _Ctx): Promise<string[]> {
  const { size, segmentSize } = ctx;
  const first = part.written;
  const count = Math.ceil((size - first) / segmentSize);
  const segments: _Segment[] = Array.from({ length: count }, (_, i) => ({
    start: first + i * segmentSize,
    end: Math.min(size, first + (i + 1) * segmentSize) - 1,
    state: "queued",
    data: undefined,
    startedAt: 0,
    holders: new Map(),
  }));
  const window = Math.max(4, sources.length * 3);
  const live = new Set(sources);
  const delivered = new Set<string>();
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  ctx.signal?.addEventListener("abort", onAbort);
  let head = 0;
  let fatal: unknown;
  let notify = () => {};
  let changed = new Promise<void>((r) => notify = r);
  const signalChange = () => {
    const n = notify;
    changed = new Promise<void>((r) => notify = r);
    n();
  };
  const waitChange = async (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([changed, new Promise<void>((r) => timer = setTimeout(r, ms))]);
    } finally {
      clearTimeout(timer);
    }
  };

  const worker = async (src: string) => {
    let failures = 0;
    while (!stop.signal.aborted) {
      let segment: _Segment | undefined;
      for (let i = head; i < Math.min(count, head + window); i++) {
        if (segments[i]!.state === "queued") {
          segment = segments[i];
          break;
        }
      }
      if (segment === undefined) {
        const h = segments[head];
        if (
          h?.state === "inflight" && h.holders.size === 1 &&
          ![...h.holders.values()].includes(src) &&
          performance.now() - h.startedAt > ctx.hedgeAfterMs
        ) {
          segment = h;
        }
      }
      if (segment === undefined) {
        await waitChange(100);
        continue;
      }
      if (segment.state === "queued") segment.startedAt = performance.now();
      segment.state = "inflight";
      const attempt = new AbortController();
      segment.holders.set(attempt, src);
      try {
        const data = await _fetchRange(src, segment.start, segment.end, ctx, [
          stop.signal,
          attempt.signal,
        ]);
        if ((segment.state as _Segment["state"]) !== "done") {
          segment.data = data;
          segment.state = "done";
          delivered.add(src);
          for (const c of segment.holders.keys()) if (c !== attempt) c.abort();
        }
        failures = 0;
      } catch (error) {
        if (stop.signal.aborted) return;
        if (segment.state === "done") continue; // overtaken by a hedged request
        if (!(error instanceof SourceError)) {
          fatal = error;
          stop.abort();
          return;
        }
        ctx.errors[src] = error.message;
        ctx.failures++;
        failures++;
        if (segment.holders.size === 1) segment.state = "queued";
        if (!error.retryable || failures > ctx.retries) {
          live.delete(src);
          ctx.warn(`${error.message}; dropping this source for '${ctx.name}'`);
          return;
        }
        ctx.warn(`${error.message}; retrying`);
        await sleep(_backoff(ctx), stop.signal);
      } finally {
        segment.holders.delete(attempt);
        signalChange();
      }
    }
  };

  const workers = sources.map((src) =>
    worker(src).catch((error) => {
      fatal ??= error;
    }).finally(() => {
      live.delete(src);
      signalChange();
    })
  );
  try {
    while (head < count) {
      ctx.signal?.throwIfAborted();
      if (fatal !== undefined) throw fatal;
      const segment = segments[head]!;
      if (segment.state === "done") {
        const data = segment.data!;
        await _writeAll(part.file, data);
        part.hasher.update(data);
        part.wrote(data.length);
        segment.data = undefined;
        head++;
        ctx.onProgress?.(part.written, size);
        signalChange();
        continue;
      }
      if (live.size === 0) break;
      await waitChange(200);
    }
  } finally {
    stop.abort();
    ctx.signal?.removeEventListener("abort", onAbort);
    signalChange();
    await Promise.all(workers);
  }
  ctx.signal?.throwIfAborted();
  if (fatal !== undefined) throw fatal;
  for (const src of delivered) ctx.contributors.add(src);
  if (head < count) {
    // Every source gave up on some range: let the sequential path try what is left.
    return sources.filter((s) => live.has(s));
  }
  return sources;
}

/** Fetch exactly `[start, end]` from a source. */
async function _fetchRange(
  url: string,
  start: number,
  end: number,
  ctx: _Ctx,
  signals: AbortSignal[],
): Promise<Uint8Array> {
  const { response, url: finalUrl, body } = await openHttpWithin(url, {
    range: [start, end],
    signal: AbortSignal.any(signals),
    maxRedirects: ctx.maxRedirects,
    timeoutMs: ctx.stallTimeoutMs,
    minRate: ctx.minRate,
  });
  const want = end - start + 1;
  const fail = async (what: string, retryable: boolean): Promise<never> => {
    await response.body?.cancel().catch(() => {});
    throw new SourceError(finalUrl, what, { retryable });
  };
  if (response.status === 200) await fail("does not support Range requests", false);
  if (response.status !== 206) {
    await fail(`HTTP ${response.status}`, retryableStatus(response.status));
  }
  const range = _contentRange(response);
  if (range === undefined || range[0] !== start || range[1] !== end || range[2] !== ctx.size) {
    await fail(
      `wrong Content-Range '${
        response.headers.get("content-range")
      }', expected 'bytes ${start}-${end}/${ctx.size}'`,
      false,
    );
  }
  const length = response.headers.get("content-length");
  if (length !== null && Number(length) !== want) {
    await fail(`wrong Content-Length ${length}, expected ${want}`, false);
  }
  if (response.body === null) await fail("no body", true);
  const data = new Uint8Array(want);
  let got = 0;
  for await (const chunk of body()) {
    if (got + chunk.length > want) {
      throw new SourceError(finalUrl, `sent more than the ${want} bytes asked for`, {
        retryable: false,
      });
    }
    data.set(chunk, got);
    got += chunk.length;
  }
  if (got < want) {
    throw new SourceError(finalUrl, `truncated response: got ${got} of ${want} bytes`, {
      retryable: true,
    });
  }
  return data;
}
