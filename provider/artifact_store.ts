/**
 * The artifact store of a boot provider: finds boot artifacts under `DIR/<channel>/<arch>/`,
 * hashes them (streaming SHA-256, cached per file version, never stale) and signs the boot
 * manifest that lists them.
 *
 * Manifest rules (see {@linkcode ArtifactStore.manifest}):
 * - `created_at` is the start of the current UTC day, `expires_at` is `created_at` plus
 *   `validityDays` (at least 1), so a served manifest is never expired and the same artifacts,
 *   key and day always give the same signed bytes;
 * - `sequence` changes only when the content (names, file names, sizes, hashes, `VERSION`,
 *   `cmdline`) changes, and then becomes `max(previous + 1, newest artifact mtime in seconds)`.
 *   The last sequence per channel/arch is kept in `<stateDir>/provider_state.json`, so it never
 *   goes backwards across restarts; without a state dir (or with the file lost) the mtime term
 *   still moves it forward when files are replaced.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../runtime/canonical_json.ts";
import { sha256Tag } from "../runtime/digest.ts";
import type { KeyPair } from "../runtime/ed25519.ts";
import { rfc3339 } from "../runtime/receipt.ts";
import { type BootArtifact, type BootManifest, signBootManifest } from "./boot_manifest.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/**
 * File names accepted for each artifact, in order of preference: the first one present is the
 * artifact. Any of them also names the artifact in a download URL.
 */
export const ARTIFACT_FILE_NAMES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  kernel: Object.freeze(["kernel", "vmlinuz", "bzImage"]),
  initramfs: Object.freeze(["initramfs", "initrd", "initramfs.img", "initrd.img"]),
  rootfs: Object.freeze(["rootfs", "rootfs.img", "rootfs.squashfs"]),
});

const _ALIASES: ReadonlyMap<string, string> = new Map(
  Object.entries(ARTIFACT_FILE_NAMES).flatMap(([name, files]) => files.map((f) => [f, name])),
);

/** Names allowed for channels, architectures and artifacts: no dots first, no separators. */
export const SAFE_NAME: RegExp = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The identity of one version of a file: any change of these means new content. */
export interface FileVersion {
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch (0 if unknown). */
  mtimeMs: number;
  /** Status change time, ms since the epoch (0 if unknown); cannot be set back by users. */
  ctimeMs: number;
  /** Inode number (0 if unknown): a replaced file has a new one. */
  ino: number;
}

/** One artifact found by a scan. */
export interface ArtifactEntry extends FileVersion {
  /** Canonical name: `kernel`, `initramfs` or `rootfs`. */
  name: string;
  /** The file's name on disk, e.g. `vmlinuz`. */
  filename: string;
  /** Resolved path of the file (symlinks followed, always inside the artifacts dir). */
  path: string;
  /** `sha256:<hex>` of exactly this version of the file. */
  hash: string;
}

/** What one scan of `DIR/<channel>/<arch>/` found. */
export interface ArtifactSet {
  /** The channel. */
  channel: string;
  /** The architecture. */
  arch: string;
  /** Artifacts sorted by name. */
  artifacts: ArtifactEntry[];
  /** First line of a `VERSION` file in the directory, if any. */
  version?: string;
  /** Contents of a `cmdline` file in the directory (trimmed), if any. */
  cmdline?: string;
}

/** An artifact opened for reading; close it (or `using` it) when done. */
export interface OpenArtifact extends Disposable {
  /** The artifact, with the version and hash of exactly the open file. */
  entry: ArtifactEntry;
  /** The open file, positioned at 0. */
  file: Deno.FsFile;
}

/** Counters of an {@linkcode ArtifactStore}. */
export interface ArtifactStoreMetrics {
  /** Files hashed (each new file version once). */
  hashes_computed_total: number;
  /** Bytes read for hashing. */
  hash_bytes_total: number;
  /** Directory scans run. */
  scans_total: number;
  /** Manifests signed. */
  manifests_signed_total: number;
}

/** Options of {@linkcode ArtifactStore}. */
export interface ArtifactStoreOptions {
  /** The key that signs manifests. */
  keyPair: KeyPair;
  /** Where the last sequence per channel/arch is kept; none keeps it in memory. @default {undefined} */
  stateDir?: string;
  /** How long a manifest is valid after `created_at`, in whole days (at least 1). @default {30} */
  validityDays?: number;
  /** The clock. @default {() => new Date()} */
  now?: () => Date;
  /** Read size for hashing, in bytes. @default {1048576} */
  readChunkBytes?: number;
}

/** The file a store keeps its sequences in, inside the state dir. */
export const PROVIDER_STATE_FILE = "provider_state.json";

const DAY_MS = 86_400_000;

interface _Flight<T> {
  running?: Promise<T> | undefined;
  queued?: Promise<T> | undefined;
}

interface _ScanResult {
  set: ArtifactSet;
  dir: string;
  dirVersion: FileVersion;
  extras: [string, FileVersion][];
}

interface _SignedManifest {
  set: ArtifactSet;
  day: number;
  contentKey: string;
  createdAt: string;
  manifest: BootManifest;
}

/**
 * Boot artifacts under one directory, laid out as `DIR/<channel>/<arch>/<file>`.
 *
 * Every call re-checks the files (stat) before it answers, so a replaced file is noticed at once;
 * hashes are computed once per file version (path, size, mtime, ctime, inode). Concurrent
 * callers share one directory scan, but only a scan that started after they called.
 *
 * @example
 * ```ts
 * import { ArtifactStore } from "./artifact_store.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import { verifyBootManifest } from "./boot_manifest.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/stable/x86_64/vmlinuz`, "kernel bytes");
 * const keyPair = await generateKeyPair();
 * const store = new ArtifactStore(dir, { keyPair });
 * const manifest = (await store.manifest("stable", "x86_64"))!;
 * assert.equal(manifest.artifacts.kernel!.filename, "vmlinuz");
 * assert.equal(manifest.artifacts.kernel!.download_url, "/stable/x86_64/kernel");
 * await verifyBootManifest(manifest, { trustedKeys: [keyPair.publicKey] });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ArtifactStore {
  /** The artifacts directory. */
  readonly dir: string;
  readonly #keyPair: KeyPair;
  readonly #stateDir: string | undefined;
  readonly #validityMs: number;
  readonly #now: () => Date;
  readonly #chunk: number;
  readonly #hashes = new Map<string, FileVersion & { hash: string; hashedAtMs: number }>();
  readonly #hashing = new Map<string, Promise<string>>();
  readonly #scans = new Map<string, _Flight<ArtifactSet | undefined>>();
  readonly #signed = new Map<string, _SignedManifest>();
  readonly #sets = new Map<string, _ScanResult>();
  #state: Promise<Record<string, { content: string; sequence: number }>> | undefined;
  #stateWrite: Promise<void> = Promise.resolve();
  readonly #metrics: ArtifactStoreMetrics = {
    hashes_computed_total: 0,
    hash_bytes_total: 0,
    scans_total: 0,
    manifests_signed_total: 0,
  };

  /**
   * Make a store; no I/O happens until it is used.
   *
   * @throws {TypeError} If the key pair is missing or `dir` is empty.
   * @throws {RangeError} If `validityDays` or `readChunkBytes` is out of range.
   */
  constructor(dir: string, options: ArtifactStoreOptions) {
    const {
      keyPair,
      stateDir,
      validityDays = 30,
      now = () => new Date(),
      readChunkBytes = 1 << 20,
    } = options;
    if (typeof dir !== "string" || dir === "") {
      throw new TypeError("Cannot create artifact store: dir must be a non-empty path");
    }
    if (keyPair?.secretKey?.length !== 32 || keyPair?.publicKey?.length !== 32) {
      throw new TypeError("Cannot create artifact store: keyPair must hold 32-byte keys");
    }
    if (!Number.isSafeInteger(validityDays) || validityDays < 1 || validityDays > 3650) {
      throw new RangeError(
        `Cannot create artifact store: validityDays must be a whole number from 1 to 3650, got ${validityDays}`,
      );
    }
    if (!Number.isSafeInteger(readChunkBytes) || readChunkBytes < 4096) {
      throw new RangeError(
        `Cannot create artifact store: readChunkBytes must be a whole number >= 4096, got ${readChunkBytes}`,
      );
    }
    this.dir = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
    this.#keyPair = keyPair;
    this.#stateDir = stateDir;
    this.#validityMs = validityDays * DAY_MS;
    this.#now = now;
    this.#chunk = readChunkBytes;
  }

  /** The public key manifests are signed with. */
  get publicKey(): Uint8Array {
    return this.#keyPair.publicKey;
  }

  /** A copy of the store's counters. */
  metrics(): ArtifactStoreMetrics {
    return { ...this.#metrics };
  }

  /**
   * List the `<channel>/<arch>` directories that hold at least one artifact file, sorted.
   * Hashes nothing.
   */
  async channels(options: { signal?: AbortSignal } = {}): Promise<
    { channel: string; arch: string }[]
  > {
    const out: { channel: string; arch: string }[] = [];
    for (const channel of await _dirNames(this.dir)) {
      options.signal?.throwIfAborted();
      for (const arch of await _dirNames(`${this.dir}/${channel}`)) {
        const dir = `${this.dir}/${channel}/${arch}`;
        for await (const e of Deno.readDir(dir)) {
          if (_ALIASES.has(e.name) && !e.isDirectory) {
            out.push({ channel, arch });
            break;
          }
        }
      }
    }
    return out.sort((a, b) =>
      a.channel === b.channel ? _cmp(a.arch, b.arch) : _cmp(a.channel, b.channel)
    );
  }

  /**
   * Find and hash the artifacts of one channel/arch. Resolves to `undefined` if the directory
   * does not exist (or either name is not a plain name).
   */
  scan(
    channel: string,
    arch: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ArtifactSet | undefined> {
    if (!SAFE_NAME.test(channel) || !SAFE_NAME.test(arch)) return Promise.resolve(undefined);
    const key = `${channel}/${arch}`;
    return _abortable(_coalesce(this.#scans, key, () => this.#scan(channel, arch)), options.signal);
  }

  /**
   * Open one artifact by its name or any of its file names (`kernel`, `vmlinuz`, ...). The
   * returned entry describes exactly the open file: if the file is replaced while this runs,
   * the open (old) file is hashed and served consistently. Resolves to `undefined` if there is
   * no such artifact.
   *
   * @throws {Deno.errors.Busy} If the file keeps changing while it is being hashed.
   */
  async open(
    channel: string,
    arch: string,
    artifact: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<OpenArtifact | undefined> {
    const name = _ALIASES.get(artifact);
    if (!name || !SAFE_NAME.test(channel) || !SAFE_NAME.test(arch)) return undefined;
    const found = await this.#locate(`${this.dir}/${channel}/${arch}`, name);
    if (!found) return undefined;
    const file = await Deno.open(found.path, { read: true });
    try {
      const version = _version(await file.stat());
      let hash = this.#cached(found.path, version);
      if (hash === undefined) {
        try {
          hash = await _abortable(this.#hashPath(found.path, version), options.signal);
        } catch (error) {
          if (!(error instanceof _Changed)) throw error;
          // The path now names another file: hash the one we hold, then rewind.
          hash = await this.#hashHandle(file, version);
          await file.seek(0, Deno.SeekMode.Start);
        }
      }
      const entry: ArtifactEntry = {
        name,
        filename: found.filename,
        path: found.path,
        hash,
        ...version,
      };
      return { entry, file, [Symbol.dispose]: () => _close(file) };
    } catch (error) {
      _close(file);
      throw error;
    }
  }

  /**
   * The resolved path of one artifact (by name or file name), without hashing it, or
   * `undefined` if there is none.
   */
  async locate(channel: string, arch: string, artifact: string): Promise<string | undefined> {
    const name = _ALIASES.get(artifact);
    if (!name || !SAFE_NAME.test(channel) || !SAFE_NAME.test(arch)) return undefined;
    return (await this.#locate(`${this.dir}/${channel}/${arch}`, name))?.path;
  }

  /**
   * The signed boot manifest of one channel/arch, or `undefined` if its directory does not
   * exist. See the module doc for the rules of `created_at`, `expires_at` and `sequence`.
   */
  async manifest(
    channel: string,
    arch: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<BootManifest | undefined> {
    const set = await this.scan(channel, arch, options);
    if (!set) return undefined;
    const key = `${channel}/${arch}`;
    const day = Math.floor(this.#now().getTime() / DAY_MS) * DAY_MS;
    const cached = this.#signed.get(key);
    if (cached && cached.set === set && cached.day === day) return cached.manifest;
    const createdAt = rfc3339(new Date(day));
    const artifacts: Record<string, BootArtifact> = {};
    for (const a of set.artifacts) {
      artifacts[a.name] = {
        filename: a.filename,
        size_bytes: a.size,
        hash: a.hash,
        download_url: `/${channel}/${arch}/${a.name}`,
      };
    }
    const content = { artifacts, version: set.version, cmdline: set.cmdline };
    const contentKey = sha256Tag(canonicalJson(content));
    const newestMtime = Math.max(0, ...set.artifacts.map((a) => a.mtimeMs));
    const sequence = await this.#sequence(set, contentKey, Math.floor(newestMtime / 1000));
    if (
      cached && cached.contentKey === contentKey && cached.createdAt === createdAt &&
      cached.manifest.sequence === sequence
    ) {
      this.#signed.set(key, { ...cached, set, day });
      return cached.manifest;
    }
    const unsigned: BootManifest = {
      manifest_version: 1,
      version: set.version ?? String(sequence),
      sequence,
      channel,
      arch,
      created_at: createdAt,
      expires_at: rfc3339(new Date(day + this.#validityMs)),
      artifacts,
      ...(set.cmdline !== undefined ? { cmdline: set.cmdline } : {}),
      signatures: [],
    };
    const manifest = await signBootManifest(unsigned, this.#keyPair);
    this.#metrics.manifests_signed_total++;
    this.#signed.set(key, { set, day, contentKey, createdAt, manifest });
    return manifest;
  }

  async #scan(channel: string, arch: string): Promise<ArtifactSet | undefined> {
    this.#metrics.scans_total++;
    const key = `${channel}/${arch}`;
    const dir = `${this.dir}/${key}`;
    // Fast path: the directory itself (any entry added, removed or renamed changes its mtime)
    // and every file the last scan used are unchanged: the last result still holds.
    const last = this.#sets.get(key);
    if (last && _unchanged(last, (path, v) => this.#cached(path, v))) return last.set;
    let dirVersion: FileVersion;
    try {
      dirVersion = _version(Deno.statSync(dir));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        this.#sets.delete(key);
        return undefined;
      }
      throw error;
    }
    // One directory listing, then one stat per artifact: cheap enough to run for every
    // manifest request (concurrent requests share it). Metadata calls are synchronous on
    // purpose: a few microseconds each, where a thread-pool hop per call costs ten times more;
    // only hashing reads file contents, asynchronously.
    const entries = new Map<string, Deno.DirEntry>();
    try {
      for (const e of Deno.readDirSync(dir)) entries.set(e.name, e);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        this.#sets.delete(key);
        return undefined;
      }
      throw error;
    }
    // Symlinked channel or arch directories must still resolve inside the artifacts dir.
    const root = Deno.realPathSync(this.dir);
    const real = Deno.realPathSync(dir);
    const inside = (path: string) => path.startsWith(root === "/" ? "/" : `${root}/`);
    if (!inside(real)) return undefined;
    const set: ArtifactSet = { channel, arch, artifacts: [] };
    for (const name of Object.keys(ARTIFACT_FILE_NAMES).sort(_cmp)) {
      for (const filename of ARTIFACT_FILE_NAMES[name] ?? []) {
        const e = entries.get(filename);
        if (!e || e.isDirectory) continue;
        let path = `${real}/${filename}`;
        if (e.isSymlink) {
          try {
            path = Deno.realPathSync(path);
          } catch (error) {
            if (error instanceof Deno.errors.NotFound) continue; // dangling link
            throw error;
          }
          if (!inside(path)) continue; // escapes the dir: ignore
        }
        const entry = await this.#entry(name, filename, path);
        if (entry === undefined) continue; // not a regular file
        set.artifacts.push(entry);
        break;
      }
    }
    const extras: [string, FileVersion][] = [];
    for (const name of ["VERSION", "cmdline"]) {
      if (!entries.has(name)) continue;
      const path = `${real}/${name}`;
      extras.push([path, _version(Deno.statSync(path))]);
      const text = _readSmallText(path);
      if (name === "VERSION") {
        const line = text?.split("\n")[0]?.trim();
        if (line) set.version = line;
      } else if (text?.trim()) {
        set.cmdline = text.trim();
      }
    }
    // Same content as the last scan: hand out the same object, so its manifest is reused.
    const result = last && _sameSet(last.set, set) ? last.set : set;
    this.#sets.set(key, { set: result, dir, dirVersion, extras });
    return result;
  }

  /** The first present file name of an artifact, resolved and checked to stay inside `dir`. */
  async #locate(
    dir: string,
    name: string,
  ): Promise<{ filename: string; path: string } | undefined> {
    let root: string | undefined;
    for (const filename of ARTIFACT_FILE_NAMES[name] ?? []) {
      let real: string;
      try {
        real = await Deno.realPath(`${dir}/${filename}`);
        if (!(await Deno.stat(real)).isFile) continue;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
          continue;
        }
        throw error;
      }
      root ??= await Deno.realPath(this.dir);
      if (!real.startsWith(root === "/" ? "/" : `${root}/`)) continue; // escapes the dir: ignore
      return { filename, path: real };
    }
    return undefined;
  }

  async #entry(
    name: string,
    filename: string,
    path: string,
  ): Promise<ArtifactEntry | undefined> {
    for (let attempt = 0;; attempt++) {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      const version = _version(info);
      try {
        const hash = this.#cached(path, version) ?? await this.#hashPath(path, version);
        return { name, filename, path, hash, ...version };
      } catch (error) {
        if (!(error instanceof _Changed) || attempt >= 4) throw _busy(path, error);
      }
    }
  }

  #cached(path: string, version: FileVersion): string | undefined {
    const c = this.#hashes.get(path);
    return c && _same(c, version) && !_racy(c) ? c.hash : undefined;
  }

  /** Hash the file at `path`, which must still be `version` before and after. */
  #hashPath(path: string, version: FileVersion): Promise<string> {
    const key = `${path}\0${version.size}\0${version.mtimeMs}\0${version.ctimeMs}\0${version.ino}`;
    let pending = this.#hashing.get(key);
    if (!pending) {
      pending = (async () => {
        const hashedAtMs = this.#now().getTime();
        const file = await Deno.open(path, { read: true });
        try {
          if (!_same(_version(await file.stat()), version)) throw new _Changed();
          const hash = await this.#hashHandle(file, version);
          this.#hashes.set(path, { ...version, hash, hashedAtMs });
          return hash;
        } finally {
          _close(file);
        }
      })().finally(() => this.#hashing.delete(key));
      this.#hashing.set(key, pending);
    }
    return pending;
  }

  /** Hash an open file from its current position; it must be `version` before and after. */
  async #hashHandle(file: Deno.FsFile, version: FileVersion): Promise<string> {
    const hash = createHash("sha256");
    const buf = new Uint8Array(this.#chunk);
    let total = 0;
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      total += n;
    }
    this.#metrics.hash_bytes_total += total;
    const after = _version(await file.stat());
    if (!_same(after, version) || total !== version.size) throw new _Changed();
    const tag = `sha256:${hash.digest("hex")}`;
    this.#metrics.hashes_computed_total++;
    return tag;
  }

  async #sequence(set: ArtifactSet, contentKey: string, mtimeSeconds: number): Promise<number> {
    // Serialised: two content changes in flight must not reuse a sequence.
    const run = this.#stateWrite.then(async () => {
      this.#state ??= this.#loadState();
      const state = await this.#state;
      const key = `${set.channel}/${set.arch}`;
      const last = state[key];
      if (last?.content === contentKey) return last.sequence;
      const sequence = Math.max((last?.sequence ?? 0) + 1, mtimeSeconds);
      state[key] = { content: contentKey, sequence };
      if (this.#stateDir !== undefined) await this.#saveState(state);
      return sequence;
    });
    this.#stateWrite = run.then(() => {}, () => {});
    return await run;
  }

  async #loadState(): Promise<Record<string, { content: string; sequence: number }>> {
    if (this.#stateDir === undefined) return {};
    const path = `${this.#stateDir}/${PROVIDER_STATE_FILE}`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return {};
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new SyntaxError(`Cannot read provider state '${path}': not JSON`, { cause: error });
    }
    const channels = (parsed as { channels?: unknown })?.channels;
    if (typeof channels !== "object" || channels === null || Array.isArray(channels)) {
      throw new SyntaxError(`Cannot read provider state '${path}': no channels object`);
    }
    const state: Record<string, { content: string; sequence: number }> = {};
    for (const [key, value] of Object.entries(channels)) {
      const v = value as { content?: unknown; sequence?: unknown };
      if (typeof v?.content === "string" && Number.isSafeInteger(v.sequence)) {
        state[key] = { content: v.content, sequence: v.sequence as number };
      }
    }
    return state;
  }

  async #saveState(state: Record<string, { content: string; sequence: number }>): Promise<void> {
    const dir = this.#stateDir!;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const path = `${dir}/${PROVIDER_STATE_FILE}`;
    const text = `${JSON.stringify({ version: 1, channels: state }, null, 2)}\n`;
    await writeFileAtomic(path, text, { mode: 0o600 });
  }
}

class _Changed extends Error {
  constructor() {
    super("File changed while it was read");
  }
}

function _busy(path: string, cause: unknown): Error {
  if (!(cause instanceof _Changed)) return cause as Error;
  return new Deno.errors.Busy(`Cannot hash '${path}': it keeps changing while it is read`, {
    cause,
  });
}

function _version(info: Deno.FileInfo): FileVersion {
  return {
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    ctimeMs: info.ctime?.getTime() ?? 0,
    ino: info.ino ?? 0,
  };
}

function _same(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs &&
    a.ino === b.ino;
}

/**
 * Whether a cached hash cannot be trusted yet. File times here have coarse resolution (Deno
 * reports `ctime` in whole seconds), so a file rewritten in place with the same size and its
 * old mtime put back, within the same second of `ctime` as the version that was hashed, looks
 * unchanged. As git does for its racily clean index entries: a hash made before the second of
 * the file's `ctime` had fully passed (plus a margin for the kernel's coarse clock; by the
 * store's `now`) is used for that one answer only, and the file is hashed again next time; once its `ctime` is safely in
 * the past, any later write moves `ctime` to a later second and is noticed.
 */
function _racy(c: FileVersion & { hashedAtMs: number }): boolean {
  if (c.ctimeMs === 0) return false; // no ctime on this OS: size, mtime and inode only
  return c.hashedAtMs < Math.floor(c.ctimeMs / 1000) * 1000 + 1000 + _CLOCK_MARGIN_MS;
}

/** How far the kernel's coarse clock (file times) may lag `Date.now()`, in ms. */
const _CLOCK_MARGIN_MS = 50;

function _unchanged(last: _ScanResult, cached: (path: string, v: FileVersion) => unknown): boolean {
  try {
    if (!_same(_version(Deno.statSync(last.dir)), last.dirVersion)) return false;
    for (const a of last.set.artifacts) {
      if (!_same(_version(Deno.statSync(a.path)), a)) return false;
      if (cached(a.path, a) === undefined) return false; // hashed too early to trust: look again
    }
    for (const [path, version] of last.extras) {
      if (!_same(_version(Deno.statSync(path)), version)) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function _sameSet(a: ArtifactSet, b: ArtifactSet): boolean {
  return a.version === b.version && a.cmdline === b.cmdline &&
    a.artifacts.length === b.artifacts.length &&
    a.artifacts.every((x, i) => {
      const y = b.artifacts[i]!;
      return x.name === y.name && x.filename === y.filename && x.path === y.path &&
        x.hash === y.hash && _same(x, y);
    });
}

function _close(file: Deno.FsFile): void {
  try {
    file.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

function _cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function _dirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!SAFE_NAME.test(e.name)) continue;
      if (e.isDirectory || (e.isSymlink && (await Deno.stat(`${dir}/${e.name}`)).isDirectory)) {
        names.push(e.name);
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw error;
  }
  return names.sort(_cmp);
}

function _readSmallText(path: string): string | undefined {
  try {
    const info = Deno.statSync(path);
    if (!info.isFile || info.size > 4096) return undefined;
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Run `fn` for `key` at most once at a time; a caller that arrives while a run is going joins
 * the next run (started after it arrived), never a run that may predate its call.
 */
function _coalesce<T>(flights: Map<string, _Flight<T>>, key: string, fn: () => Promise<T>) {
  let f = flights.get(key);
  if (!f) flights.set(key, f = {});
  const slot = f;
  const run = (): Promise<T> => {
    const p: Promise<T> = fn().finally(() => {
      if (slot.running === p) slot.running = undefined;
      if (!slot.running && !slot.queued) flights.delete(key);
    });
    slot.running = p;
    return p;
  };
  if (!slot.running) return run();
  slot.queued ??= slot.running.then(() => {}, () => {}).then(() => {
    slot.queued = undefined;
    return run();
  });
  return slot.queued;
}

function _abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
