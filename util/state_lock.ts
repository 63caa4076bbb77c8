/**
 * One process per state dir: `start` and `serve` hold an advisory lock on `<state dir>/state.lock`
 * for as long as they run, so a second one on the same dir (the same node key, hence the same
 * PeerId) is refused with the PID of the first.
 *
 * The lock is an OS file lock (`flock`), so the kernel releases it when the process ends, however
 * it ends. The file also records who holds it (`{"pid","command","started_at"}`); a file left
 * behind by a process that died (SIGKILL, power loss) is a stale lock: it is noticed, reported
 * in {@linkcode StateLock.staleFrom} and taken over. A clean release removes the file.
 *
 * @module
 */
import { openNoFollow } from "./open_no_follow.ts";

/** File name of the lock inside the state dir. */
export const STATE_LOCK_FILE = "state.lock";

/** Who holds a state dir, as its lock file says. */
export interface StateLockHolder {
  /** The holder's process id. */
  pid: number;
  /** The subcommand that holds it, such as `start` or `serve`. */
  command: string;
  /** When it took the lock (RFC 3339). */
  started_at: string;
}

/** A held state-dir lock; see {@linkcode lockStateDir}. */
export interface StateLock extends AsyncDisposable {
  /** The lock file. */
  readonly path: string;
  /** The PID a stale lock file named when it was taken over, else `undefined`. */
  readonly staleFrom: number | undefined;
  /** Remove the lock file and release the lock; a second call does nothing. */
  release(): Promise<void>;
}

/**
 * Thrown by {@linkcode lockStateDir} when another process holds the state dir.
 *
 * @example
 * ```ts
 * import { StateDirLockedError } from "./state_lock.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new StateDirLockedError("/srv/plasm", { pid: 42, command: "start",
 *   started_at: "2026-01-01T00:00:00Z" });
 * assert.equal(error.message, "Cannot use state dir '/srv/plasm': start is already running there (PID 42)");
 * ```
 */
export class StateDirLockedError extends Error {
  /** The state dir asked for. */
  readonly stateDir: string;
  /** Who holds it, when its lock file says so. */
  readonly holder: StateLockHolder | undefined;

  /**
   * Make the error for `stateDir`, held by `holder` (unknown when the file could not be read).
   *
   * @example
   * ```ts
   * import { StateDirLockedError } from "./state_lock.ts";
   * import assert from "node:assert/strict";
   *
   * assert.match(new StateDirLockedError("/x", undefined).message, /PID unknown/);
   * ```
   */
  constructor(
    stateDir: string,
    holder: StateLockHolder | undefined,
    options?: ErrorOptions & { noun?: string },
  ) {
    super(
      `Cannot use ${options?.noun ?? "state dir"} '${stateDir}': ${
        holder
          ? `${holder.command} is already running there (PID ${holder.pid})`
          : "another process holds its lock (PID unknown)"
      }`,
      options,
    );
    this.name = "StateDirLockedError";
    this.stateDir = stateDir;
    this.holder = holder;
  }
}

/** Options of {@linkcode lockStateDir}. */
export interface LockStateDirOptions {
  /** The subcommand taking the lock, such as `start`, `serve` or `fetch`. */
  command: string;
  /** The lock file's name inside the directory. @default {"state.lock"} */
  file?: string;
  /** What the directory is, for the error: `Cannot use <noun> '<dir>': ...`. @default {"state dir"} */
  noun?: string;
}

/**
 * Lock `stateDir` (or any directory, such as the output dir of `fetch`) for this process
 * (creating the dir 0700 if needed), or fail at once if another process holds it. Release with
 * {@linkcode StateLock.release} or `await using`; the lock also ends with the process. The lock
 * file is opened without following a symbolic link: a link planted in its place is refused.
 *
 * @throws {StateDirLockedError} If another process holds the lock.
 * @throws {LinkRefusedError} If the lock file's path is a symbolic link or not a regular file.
 *
 * @example
 * ```ts
 * import { lockStateDir, StateDirLockedError } from "./state_lock.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * {
 *   await using lock = await lockStateDir(dir, { command: "start" });
 *   await assert.rejects(lockStateDir(dir, { command: "serve" }), StateDirLockedError);
 *   assert.equal(lock.staleFrom, undefined);
 * }
 * const again = await lockStateDir(dir, { command: "serve" });
 * await again.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function lockStateDir(
  stateDir: string,
  options: LockStateDirOptions,
): Promise<StateLock> {
  const { command, file: name = STATE_LOCK_FILE, noun = "state dir" } = options;
  if (typeof command !== "string" || command === "") {
    throw new TypeError("Cannot lock the state dir: command must be a non-empty string");
  }
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === "." || name === "..") {
    throw new TypeError(`Cannot lock '${stateDir}': '${name}' is not a plain file name`);
  }
  const path = `${stateDir}/${name}`;
  // A holder removes the file when it releases; a file we opened just before that is no longer
  // the lock, so check we locked the file the path names, and start again if not.
  for (let attempt = 0; attempt < 10; attempt++) {
    let file: Deno.FsFile;
    try {
      await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
      file = await openNoFollow(path, { write: true, create: true, mode: 0o600 });
    } catch (cause) {
      throw _unusable(stateDir, cause, noun);
    }
    let keep = false;
    try {
      if (!(await file.tryLock(true))) {
        throw new StateDirLockedError(stateDir, await _holder(path), { noun });
      }
      let current: Deno.FileInfo | undefined;
      try {
        current = await Deno.lstat(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      if (!current || current.ino !== (await file.stat()).ino) continue;
      const previous = _parseHolder(await _readAll(file));
      const holder: StateLockHolder = {
        pid: Deno.pid,
        command,
        started_at: new Date().toISOString(),
      };
      await file.truncate(0);
      await file.seek(0, Deno.SeekMode.Start);
      await file.write(new TextEncoder().encode(`${JSON.stringify(holder)}\n`));
      keep = true;
      return _held(path, file, previous && previous.pid !== Deno.pid ? previous.pid : undefined);
    } finally {
      if (!keep) file.close();
    }
  }
  throw new StateDirLockedError(stateDir, await _holder(path), { noun });
}

function _unusable(stateDir: string, cause: unknown, noun: string): unknown {
  const why = cause instanceof Deno.errors.AlreadyExists ||
      cause instanceof Deno.errors.NotADirectory
    ? "not a directory"
    : cause instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : undefined;
  if (why === undefined) return cause; // e.g. NotCapable, whose message names the flag to add
  return new Error(`Cannot use ${noun} '${stateDir}': ${why}`, { cause });
}

function _held(path: string, file: Deno.FsFile, staleFrom: number | undefined): StateLock {
  let released: Promise<void> | undefined;
  const release = () =>
    released ??= (async () => {
      try {
        await Deno.remove(path).catch(() => {});
        await file.unlock().catch(() => {});
      } finally {
        file.close();
      }
    })();
  return { path, staleFrom, release, [Symbol.asyncDispose]: release };
}

/** What the lock file of a holder says; a holder writes it right after locking, so retry briefly. */
async function _holder(path: string): Promise<StateLockHolder | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    let text = "";
    try {
      text = await Deno.readTextFile(path);
    } catch {
      return undefined;
    }
    const holder = _parseHolder(text);
    if (holder) return holder;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return undefined;
}

async function _readAll(file: Deno.FsFile): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  const decoder = new TextDecoder();
  await file.seek(0, Deno.SeekMode.Start);
  for (
    let n = await file.read(buffer);
    n !== null && text.length < 64 * 1024;
    n = await file.read(buffer)
  ) {
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  return text;
}

function _parseHolder(text: string): StateLockHolder | undefined {
  try {
    const value = JSON.parse(text);
    if (
      Number.isSafeInteger(value?.pid) && value.pid > 0 && typeof value.command === "string" &&
      /^[a-z][a-z0-9_-]{0,31}$/.test(value.command)
    ) {
      return {
        pid: value.pid,
        command: value.command,
        started_at: typeof value.started_at === "string" ? value.started_at : "",
      };
    }
  } catch {
    // Empty or partly written: no holder known.
  }
  return undefined;
}
