/**
 * Persistent jobs and receipts in an embedded SQLite database (`node:sqlite`), so a restarted
 * node loses no result: submitted jobs with their module and input, their state, the verified
 * output and receipt; and the receipts a worker signed.
 *
 * Writes are group-committed: every write joins the open transaction, which commits
 * `commitDelayMs` after its first write, or as soon as the current task's microtasks ran once
 * someone awaits {@linkcode JobStore.durable} (one commit for all the writes made meanwhile). The
 * database runs in WAL mode with `synchronous = NORMAL`, so a commit writes the WAL without
 * waiting for the disk; durability comes from an fsync (fdatasync) of the WAL file made off the
 * event loop after the commit, one for every commit made while the previous one ran. Whoever
 * must not acknowledge a write before it is durable awaits {@linkcode JobStore.durable}.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { JobManifest } from "../runtime/job_manifest.ts";
import type { Receipt } from "../runtime/receipt.ts";

/** Where a job stands. */
export type JobStatus = "queued" | "running" | "done" | "failed";

/** What a requester asked for besides the manifest. */
export interface JobRequestOptions {
  /** CPU cores asked for. */
  cpu: number;
  /** Workers that must run the job and agree on the output. */
  replicas: number;
  /** Only this worker (PeerId) may run it, when set. */
  worker?: string;
  /** How long to look for a usable worker before the job fails, in ms; unset: the node's. */
  searchTimeoutMs?: number;
  /** The boot attestation a worker must show (`submit --require-boot-signer`), when set. */
  boot?: { signer: string; minSequence: number };
}

/** A job as stored. */
export interface JobRecord {
  /** Hex job id. */
  jobId: string;
  /** Where it stands. */
  status: JobStatus;
  /** The signed manifest. */
  manifest: JobManifest;
  /** Requester options. */
  options: JobRequestOptions;
  /** Creation time, ms since the epoch. */
  createdAt: number;
  /** Last change, ms since the epoch. */
  updatedAt: number;
  /** Workers tried so far. */
  attempts: number;
  /** The worker(s) whose verified result was kept, comma separated. */
  workerPeerId?: string;
  /**
   * Why it failed (or the last attempt's error); for a job that ran but did not end by itself,
   * the job's own error, `<kind>: <message>`.
   */
  error?: string;
  /**
   * Why the job failed, as a kind: `no_worker_found`, `workers_failed`, `not_verified`,
   * `replicas_disagree` or `internal`. Set only when `status` is `failed`.
   */
  errorKind?: string;
  /** The job's exit code. */
  exitCode?: number | null;
  /** How it ended. */
  completion?: string;
  /** The verified stdout. */
  stdout?: Uint8Array;
  /** The verified stderr. */
  stderr?: Uint8Array;
  /** The verified receipt. */
  receipt?: Receipt;
}

/** Fields {@linkcode JobStore.update} may change; `null` clears `error` and `errorKind`. */
export type JobPatch =
  & Partial<
    Pick<
      JobRecord,
      | "status"
      | "attempts"
      | "workerPeerId"
      | "exitCode"
      | "completion"
      | "stdout"
      | "stderr"
      | "receipt"
    >
  >
  & { error?: string | null; errorKind?: string | null };

const _SCHEMA = `
CREATE TABLE IF NOT EXISTS modules (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, status TEXT NOT NULL, manifest TEXT NOT NULL, options TEXT NOT NULL,
  input BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, worker_peer_id TEXT, error TEXT, exit_code INTEGER,
  completion TEXT, stdout BLOB, stderr BLOB, receipt TEXT, error_kind TEXT);
CREATE TABLE IF NOT EXISTS receipts (
  job_id TEXT NOT NULL, peer_id TEXT NOT NULL, role TEXT NOT NULL, receipt TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (job_id, peer_id, role));
`;

/** Options of {@linkcode JobStore.open}. */
export interface JobStoreOptions {
  /**
   * How long the first write of a batch waits for others before the batch commits, in ms
   * (0: the next macrotask). A `:memory:` store commits every write at once. @default {1}
   */
  commitDelayMs?: number;
}

/** Counts of a {@linkcode JobStore}'s group commits, for tests and benchmarks. */
export interface JobStoreStats {
  /** Transactions committed. */
  commits: number;
  /** fsyncs of the WAL made after commits. */
  syncs: number;
}

/**
 * Jobs and receipts in SQLite. Open with {@linkcode JobStore.open}; close when done.
 *
 * @example
 * ```ts
 * import { JobStore } from "./job_store.ts";
 * import assert from "node:assert/strict";
 *
 * using store = JobStore.open(":memory:");
 * store.putModule("sha256:" + "a".repeat(64), new Uint8Array([0, 97, 115, 109]));
 * assert.deepEqual(store.getModule("sha256:" + "a".repeat(64)), new Uint8Array([0, 97, 115, 109]));
 * ```
 */
export class JobStore {
  #db: DatabaseSync;
  #walPath: string | undefined;
  #wal: Deno.FsFile | undefined;
  #commitDelayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Settles when the open transaction's writes are durable (or could not be made so). */
  #batch: PromiseWithResolvers<void> | undefined;
  /** The open transaction commits at the end of the tick: someone awaits it. */
  #urgent = false;
  /** The fsync running now, and the one queued to run after it (covering later commits). */
  #syncing: Promise<void> | undefined;
  #syncNext: Promise<void> | undefined;
  /** Settles when the last commit is durable. */
  #lastDurable: Promise<void> = Promise.resolve();
  #stats: JobStoreStats = { commits: 0, syncs: 0 };
  #closed = false;
  #statements = new Map<string, StatementSync>();

  private constructor(db: DatabaseSync, walPath: string | undefined, commitDelayMs: number) {
    this.#db = db;
    this.#walPath = walPath;
    this.#commitDelayMs = commitDelayMs;
  }

  /**
   * Open (creating if needed) the database at `path` (`:memory:` for a throwaway one). The file
   * is created 0600 (SQLite gives its `-wal` and `-shm` files the same mode); an existing one
   * that other users could read is narrowed to 0600 first, as it holds other peers' jobs.
   *
   * @example
   * ```ts
   * import { JobStore } from "./job_store.ts";
   * const store = JobStore.open(":memory:");
   * store.close();
   * ```
   */
  static open(path: string, options: JobStoreOptions = {}): JobStore {
    const { commitDelayMs = 1 } = options;
    if (!Number.isSafeInteger(commitDelayMs) || commitDelayMs < 0 || commitDelayMs > 1000) {
      throw new RangeError(
        `Cannot open job store: commitDelayMs must be 0 to 1000, got ${commitDelayMs}`,
      );
    }
    const file = path !== ":memory:" && !path.startsWith("file:");
    if (file) _privateFiles(path);
    const db = new DatabaseSync(path);
    try {
      db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
      );
      db.exec(_SCHEMA);
      // Databases made before a column existed gain it.
      const columns = new Set(
        (db.prepare("PRAGMA table_info(jobs)").all() as { name: string }[]).map((c) => c.name),
      );
      if (!columns.has("error_kind")) db.exec("ALTER TABLE jobs ADD COLUMN error_kind TEXT");
    } catch (error) {
      db.close();
      throw error;
    }
    return new JobStore(db, file ? `${path}-wal` : undefined, commitDelayMs);
  }

  /**
   * Resolves once every write made so far is committed and on disk (the WAL fsynced); rejects
   * if the commit or the fsync failed. Resolves at once when nothing is pending.
   *
   * @example
   * ```ts
   * import { JobStore } from "./job_store.ts";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * using store = JobStore.open(`${dir}/jobs.db`);
   * store.putModule("sha256:" + "a".repeat(64), new Uint8Array([0, 97, 115, 109]));
   * store.putModule("sha256:" + "b".repeat(64), new Uint8Array([0, 97, 115, 109]));
   * await store.durable();
   * assert.deepEqual(store.stats, { commits: 1, syncs: 1 }); // one commit for both writes
   * store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  durable(): Promise<void> {
    if (!this.#batch) return this.#lastDurable;
    if (!this.#urgent) {
      // Someone waits: commit once this task's microtasks ran (what they write joins), not
      // after a timer (a timer turn here was ~3 ms of the job's round trip).
      this.#urgent = true;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      const batch = this.#batch;
      queueMicrotask(() => {
        if (this.#batch === batch && !this.#closed) this.#commit();
      });
    }
    return this.#batch.promise;
  }

  /** How many group commits and WAL fsyncs this store made. */
  get stats(): JobStoreStats {
    return { ...this.#stats };
  }

  /** Store a module by its `sha256:` tag (kept once). */
  putModule(hash: string, bytes: Uint8Array): void {
    this.#write(() =>
      this.#prepare("INSERT OR IGNORE INTO modules (hash, bytes) VALUES (?, ?)").run(
        hash,
        bytes,
      )
    );
  }

  /** Whether a module is stored (without reading its bytes). */
  hasModule(hash: string): boolean {
    return this.#prepare("SELECT 1 FROM modules WHERE hash = ?").get(hash) !== undefined;
  }

  /** A stored module, or `undefined`. */
  getModule(hash: string): Uint8Array | undefined {
    const row = this.#prepare("SELECT bytes FROM modules WHERE hash = ?").get(hash) as
      | { bytes: Uint8Array }
      | undefined;
    return row ? new Uint8Array(row.bytes) : undefined;
  }

  /** Add a new job in state `queued`; its module must be stored with {@linkcode putModule}. */
  insert(job: {
    jobId: string;
    manifest: JobManifest;
    input: Uint8Array;
    options: JobRequestOptions;
  }): void {
    const now = Date.now();
    this.#write(() =>
      this.#prepare(
        "INSERT INTO jobs (job_id, status, manifest, options, input, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?, ?, ?)",
      ).run(
        job.jobId,
        JSON.stringify(job.manifest),
        JSON.stringify(job.options),
        job.input,
        now,
        now,
      )
    );
  }

  /** A job, or `undefined` if unknown. */
  get(jobId: string): JobRecord | undefined {
    // Every column but the input: a status read need not copy up to 16 MiB of it.
    const row = this.#prepare(`SELECT ${_RECORD_COLUMNS} FROM jobs WHERE job_id = ?`).get(
      jobId,
    ) as
      | Record<string, unknown>
      | undefined;
    return row ? _record(row) : undefined;
  }

  /** A job's input bytes. */
  input(jobId: string): Uint8Array | undefined {
    const row = this.#prepare("SELECT input FROM jobs WHERE job_id = ?").get(jobId) as
      | { input: Uint8Array }
      | undefined;
    return row ? new Uint8Array(row.input) : undefined;
  }

  /** Change fields of a job. */
  update(jobId: string, patch: JobPatch): void {
    const columns: Record<string, unknown> = {
      status: patch.status,
      attempts: patch.attempts,
      worker_peer_id: patch.workerPeerId,
      error: patch.error,
      error_kind: patch.errorKind,
      exit_code: patch.exitCode,
      completion: patch.completion,
      stdout: patch.stdout,
      stderr: patch.stderr,
      receipt: patch.receipt === undefined ? undefined : JSON.stringify(patch.receipt),
    };
    const set = Object.entries(columns).filter(([, v]) => v !== undefined);
    const sql = `UPDATE jobs SET ${set.map(([k]) => `${k} = ?`).join(", ")}${
      set.length ? ", " : ""
    }updated_at = ? WHERE job_id = ?`;
    this.#write(() =>
      this.#prepare(sql).run(
        ...set.map(([, v]) => v as string | number | Uint8Array | null),
        Date.now(),
        jobId,
      )
    );
  }

  /** Ids of jobs not finished (queued or running), oldest first. */
  unfinished(): string[] {
    const rows = this.#prepare(
      "SELECT job_id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at",
    ).all() as { job_id: string }[];
    return rows.map((row) => row.job_id);
  }

  /**
   * The newest `limit` jobs, newest first, without their output bytes (for the dashboard).
   *
   * @example
   * ```ts
   * import { JobStore } from "./job_store.ts";
   * import assert from "node:assert/strict";
   *
   * using store = JobStore.open(":memory:");
   * assert.deepEqual(store.recent(10), []);
   * ```
   */
  recent(limit: number): JobRecord[] {
    const rows = this.#prepare(
      "SELECT job_id, status, manifest, options, created_at, updated_at, attempts, " +
        "worker_peer_id, error, error_kind, exit_code, completion, receipt FROM jobs " +
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
    ).all(Math.max(0, Math.floor(limit))) as Record<string, unknown>[];
    return rows.map(_record);
  }

  /** Record a receipt: one this node signed as a worker, or one it verified as requester. */
  addReceipt(jobId: string, peerId: string, role: "worker" | "requester", receipt: Receipt): void {
    this.#write(() =>
      this.#prepare(
        "INSERT OR REPLACE INTO receipts (job_id, peer_id, role, receipt, created_at) VALUES (?, ?, ?, ?, ?)",
      ).run(jobId, peerId, role, JSON.stringify(receipt), Date.now())
    );
  }

  /** Forget the receipts recorded for a job in one role (a job scheduled again). */
  deleteReceipts(jobId: string, role: "worker" | "requester"): void {
    this.#write(() =>
      this.#prepare("DELETE FROM receipts WHERE job_id = ? AND role = ?").run(jobId, role)
    );
  }

  /** The receipts recorded for a job. */
  receipts(jobId: string): { peerId: string; role: string; receipt: Receipt }[] {
    const rows = this.#prepare(
      "SELECT peer_id, role, receipt FROM receipts WHERE job_id = ? ORDER BY created_at",
    ).all(jobId) as { peer_id: string; role: string; receipt: string }[];
    return rows.map((r) => ({ peerId: r.peer_id, role: r.role, receipt: JSON.parse(r.receipt) }));
  }

  /**
   * Close the database, committing and syncing what is pending first (synchronously);
   * idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // SQLite's own checkpoint on close fsyncs the WAL and the database.
      if (this.#db.isTransaction) this.#commit();
      this.#wal?.syncDataSync();
    } finally {
      this.#wal?.close();
      this.#wal = undefined;
      this.#db.close();
    }
  }

  /** A prepared statement, parsed once per store (every job runs the same few). */
  #prepare(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Run a write in the open transaction, opening one (and timing its commit) if none is. */
  #write(write: () => unknown): void {
    if (!this.#walPath) {
      write();
      return;
    }
    if (!this.#db.isTransaction) {
      this.#db.exec("BEGIN IMMEDIATE");
      this.#batch = Promise.withResolvers<void>();
      // Nobody may have asked for durability yet: an unobserved failure is not unhandled.
      this.#batch.promise.catch(() => {});
      this.#timer = setTimeout(() => this.#commit(), this.#commitDelayMs);
    }
    write();
  }

  /** Commit the open transaction, then make it durable with an fsync of the WAL. */
  #commit(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch!;
    this.#batch = undefined;
    this.#urgent = false;
    try {
      this.#db.exec("COMMIT");
      this.#stats.commits++;
    } catch (error) {
      try {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch {
        // The commit's error is the one to report.
      }
      batch.reject(error);
      return;
    }
    this.#lastDurable = batch.promise;
    this.#sync().then(batch.resolve, batch.reject);
  }

  /**
   * An fsync of the WAL that starts after now: the running one if none is, else one queued
   * behind it (shared by every commit made meanwhile).
   */
  #sync(): Promise<void> {
    if (this.#syncing === undefined) {
      const run = this.#fsync().finally(() => {
        if (this.#syncing === run) this.#syncing = undefined;
      });
      this.#syncing = run;
      return run;
    }
    this.#syncNext ??= this.#syncing.catch(() => {}).then(() => {
      this.#syncNext = undefined;
      return this.#sync();
    });
    return this.#syncNext;
  }

  async #fsync(): Promise<void> {
    // Once closed, close() and SQLite's checkpoint on close made everything durable.
    if (this.#closed) return;
    if (!this.#wal) {
      const wal = await Deno.open(this.#walPath!, { read: true });
      if (this.#closed) return wal.close();
      this.#wal = wal;
    }
    try {
      await this.#wal.syncData();
    } catch (error) {
      if (this.#closed) return;
      throw error;
    }
    this.#stats.syncs++;
  }

  /** Close the database. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The columns {@linkcode _record} reads. */
const _RECORD_COLUMNS = "job_id, status, manifest, options, created_at, updated_at, attempts, " +
  "worker_peer_id, error, error_kind, exit_code, completion, stdout, stderr, receipt";

function _record(row: Record<string, unknown>): JobRecord {
  const record: JobRecord = {
    jobId: row.job_id as string,
    status: row.status as JobStatus,
    manifest: JSON.parse(row.manifest as string),
    options: JSON.parse(row.options as string),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    attempts: Number(row.attempts),
  };
  if (row.worker_peer_id != null) record.workerPeerId = row.worker_peer_id as string;
  if (row.error != null) record.error = row.error as string;
  if (row.error_kind != null) record.errorKind = row.error_kind as string;
  if (row.completion != null) {
    record.completion = row.completion as string;
    record.exitCode = row.exit_code == null ? null : Number(row.exit_code);
  }
  if (row.stdout != null) record.stdout = new Uint8Array(row.stdout as Uint8Array);
  if (row.stderr != null) record.stderr = new Uint8Array(row.stderr as Uint8Array);
  if (row.receipt != null) record.receipt = JSON.parse(row.receipt as string);
  return record;
}

/** Create `path` 0600 if missing; take group and other access away from it and its WAL/SHM. */
function _privateFiles(path: string): void {
  try {
    Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(file);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (info.isFile && info.mode !== null && (info.mode & 0o077) !== 0) {
      Deno.chmodSync(file, info.mode & 0o700);
    }
  }
}
