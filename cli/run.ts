/**
 * `run`: execute one WASM (WASI preview1) job locally under hard limits, print its output and
 * sign a `phase-receipt:v1` receipt with the node key.
 *
 * Run with exactly:
 *   deno run --no-prompt --no-remote --unstable-worker-options --v8-flags=--no-lazy --allow-read
 *     --allow-write --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME cli/run.ts <module.wasm> [options]
 * No --allow-net, --allow-run, --allow-sys or --allow-ffi. Everything is read and every receipt
 * file opened first; then the process revokes all its permissions and runs the job in its own
 * thread (runtime/run_in_process.ts; see docs/runtime.md, "Why in-process `run` is isolated").
 * Write access is used only for the state dir (node key, on first use, the fuel cache and every
 * receipt it signs, under `receipts/`), `--receipt FILE` and the `--out` / `--out-changed`
 * directories; env only to find the state dir. `--dir` trees are read before the job starts. A
 * job with `--out` or `--out-changed` must write after it ran, so it runs in a worker with
 * `permissions: "none"` (hence --unstable-worker-options) while the process keeps its grants.
 * --no-remote: Deno 2.9's module loader does not consult revoked permissions, so remote imports
 * are refused by this flag instead. --no-prompt: a revoked permission is in state "prompt", and
 * on a terminal Deno would otherwise ask the user to grant it back. --v8-flags=--no-lazy: V8
 * then compiles every function when it compiles a module, so Deno's code cache (made once, at
 * that moment) holds all of them; lazily, each function `run` calls would be compiled again in
 * every process (about 5 ms of a cold `run`; BENCHMARKS.md, "Cold `run`").
 *
 * @module
 */
import { defaultStateDir, loadOrCreateIdentity } from "../net/identity.ts";
import { FuelCache } from "../runtime/fuel.ts";
import { receiptPath, storeReceipt } from "../runtime/receipt_store.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";
import { revokeAllPermissions, runInProcess } from "../runtime/run_in_process.ts";
import { toHex } from "../runtime/digest.ts";
import { DEFAULT_LIMITS, runSignedJob } from "../runtime/run_signed_job.ts";
import type { JobErrorKind } from "../runtime/run_job.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";
export type { JobErrorKind };
import type { FlagValues } from "./_flags.ts";
import { checkFuel, JOB_FLAGS, parseJobEnv } from "./_job_flags.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { parseDuration, parseSize } from "./_units.ts";
import { errorLine } from "../util/error_message.ts";
// Types only: the file-tree code loads only for a job with --dir (see _fileTrees).
import type { TreeMount } from "../runtime/host_tree.ts";

/** Exit codes `run` uses when the job did not end by itself. */
export const EXIT_CODES: Record<JobErrorKind | "usage", number> = {
  usage: 2,
  fs_bytes_limit: 116,
  fs_files_limit: 117,
  fuel_exhausted: 118,
  cancelled: 119,
  invalid_module: 120,
  module_too_large: 120,
  no_start: 120,
  trap: 121,
  stack_overflow: 122,
  memory_limit: 123,
  timeout: 124,
  output_limit: 125,
};

/** The options of `run`. */
export const RUN_COMMAND = {
  name: "run",
  args: "<module.wasm>",
  about:
    `Runs a WASI module with stdin from --input (default: stdin when it is not a terminal), prints
its stdout and stderr, and signs a receipt with the node key (in --state-dir, default
$PLASM_HOME or ~/.local/share/plasm). A two-line summary of the receipt follows on stderr; the
full receipt is kept in <state dir>/receipts/, copied to --receipt FILE and included in --json.
Exit code: the job's own, or 116-125 when the job was stopped (see docs/cli.md); 1 when a file
cannot be read or written, 2 for bad arguments. Errors are one line: run: error: ...
Limits by default: --memory 256MiB, --timeout 30s, --max-output 16MiB, --max-module 64MiB.`,
  options: {
    ...JOB_FLAGS,
    "max-module": { type: "string", value: "SIZE", description: "module cap" },
    receipt: { type: "string", value: "FILE", description: "also write the receipt here" },
    json: { type: "boolean", description: "one JSON object with output and receipt" },
    "state-dir": { type: "string", value: "DIR", description: "where the node key lives" },
    dir: {
      type: "string",
      multiple: true,
      value: "HOST[::GUEST]",
      description: "copy a host directory into the job's in-memory files, preopened at GUEST",
    },
    out: { type: "string", value: "DIR", description: "write the job's final files to new DIR" },
    "out-changed": { type: "string", value: "DIR", description: "only files it made or changed" },
    "fs-max-bytes": { type: "string", value: "SIZE", description: "cap on file bytes" },
    "fs-max-files": { type: "string", value: "N", description: "cap on files, dirs and links" },
  },
} as const;

/**
 * Run the `run` subcommand with the given arguments; returns the process exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "./run.ts";
 *
 * Deno.exit(await main(["examples/hello.wasm", "--input", "-"]));
 * ```
 */
export function main(argv: string[], context: CliContext = {}): Promise<number> {
  return runCommand(RUN_COMMAND, argv, context, async (values, positionals, io) => {
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0 ? "Missing <module.wasm>" : "Too many arguments",
      );
    }
    const modulePath = positionals[0]!;
    const { limits, env } = _limits(values);
    const trees = values.dir.length > 0 ? await _fileTrees() : undefined;
    const fsFlags = _fsFlags(values, limits.memoryBytes, trees);
    let job;
    let files;
    try {
      job = await _load(modulePath, values, limits.maxModuleBytes);
      // Read once, up front, while read permission is there; the job never reaches the host.
      if (fsFlags && trees) files = await _readFiles(fsFlags, trees);
    } catch (error) {
      return io.fail(
        errorLine(error),
        error instanceof _TooLarge
          ? EXIT_CODES.module_too_large
          : trees && error instanceof trees.FileTreeLimitError
          ? EXIT_CODES[error.kind === "bytes" ? "fs_bytes_limit" : "fs_files_limit"]
          : 1,
      );
    }
    await Deno.permissions.revoke({ name: "env" });
    const { module, input, keyPair, stateDir } = job;
    // In process unless the job's files must be written out after it (see the header).
    const inProcess = !(files && (values.out || values["out-changed"]));
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    // In process, Ctrl-C keeps its default (end the process): a listener could not run before
    // the job ends, since the job runs on this thread.
    if (!inProcess) Deno.addSignalListener("SIGINT", onSignal);
    const signal = io.signal ? AbortSignal.any([io.signal, ac.signal]) : ac.signal;
    let signed;
    let sinks: _ReceiptSinks | undefined;
    try {
      signed = await runSignedJob(module, {
        ...limits,
        input,
        args: values.arg,
        env,
        keyPair,
        signal,
        ...(files ? { files } : {}),
        ...(values.fuel === undefined ? {} : {
          fuel: BigInt(values.fuel),
          fuelCache: new FuelCache({ dir: `${stateDir}/fuel-cache` }),
        }),
        ...(inProcess
          ? {
            runner: async (bytes, options, jobId) => {
              sinks = await _openReceipts(stateDir, jobId, toHex(keyPair.publicKey), values);
              // The instrumented module is cached by hash in the state dir: metered ones in
              // fuel-cache/, those with interrupt checks only in interrupt-cache/.
              const fuelCache = options.fuelCache ??
                new FuelCache({ dir: `${stateDir}/interrupt-cache` });
              return await runInProcess(bytes, {
                ...options,
                fuelCache,
                beforeRun: revokeAllPermissions,
              });
            },
          }
          : {}),
      });
    } finally {
      if (!inProcess) Deno.removeSignalListener("SIGINT", onSignal);
    }
    const { receipt } = signed;
    const text = JSON.stringify(receipt, null, 2) + "\n";
    let stored: string;
    if (sinks) {
      stored = sinks.store.path;
      const { store, copy, dir } = sinks;
      await _io("store receipt in", `${stateDir}/receipts`, () => store.write(text));
      if (copy) await _io("write receipt", copy.path, () => copy.write(text));
      try {
        dir.syncSync();
      } catch {
        // The receipt's own bytes are synced; a directory that cannot be synced is no error.
      }
      dir.close();
    } else {
      stored = await _io(
        "store receipt in",
        `${stateDir}/receipts`,
        () => storeReceipt(stateDir, receipt),
      );
      if (values.receipt) {
        const path = values.receipt;
        await _io("write receipt", path, () => writeFileAtomic(path, text));
      }
    }
    if (files && trees && signed.outcome.files) {
      // The job's final files (within the caps the sandbox kept) to --out / --out-changed.
      const { decodeFileTree, changedFileTree, writeHostTree } = trees;
      const caps = { maxBytes: files.maxBytes, maxFiles: files.maxFiles };
      const final = decodeFileTree(signed.outcome.files, caps);
      if (values.out) await writeHostTree(final, values.out);
      if (values["out-changed"]) {
        const changed = changedFileTree(decodeFileTree(files.tree, caps), final);
        await writeHostTree(changed, values["out-changed"]);
      }
    }
    _report(io, signed, stored, values);
    const { outcome } = signed;
    if (outcome.error) return EXIT_CODES[outcome.error.kind];
    return Math.min(outcome.exitCode ?? 0, 255);
  });
}

type _Values = FlagValues<typeof RUN_COMMAND.options>;

/** The limits and environment the flags ask for. */
function _limits(values: _Values) {
  const size = (text: string | undefined, fallback: number) => text ? parseSize(text) : fallback;
  let limits, env;
  try {
    limits = {
      memoryBytes: size(values.memory, DEFAULT_LIMITS.memoryBytes),
      timeoutMs: values.timeout ? parseDuration(values.timeout) : DEFAULT_LIMITS.timeoutMs,
      maxOutputBytes: size(values["max-output"], DEFAULT_LIMITS.maxOutputBytes),
      maxModuleBytes: size(values["max-module"], DEFAULT_LIMITS.maxModuleBytes),
    };
    checkFuel(values.fuel);
    env = parseJobEnv(values.env);
  } catch (error) {
    throw new UsageError(errorLine(error), { cause: error });
  }
  return { limits, env };
}

/** Default of `--fs-max-bytes` (never more than `--memory`). */
const FS_MAX_BYTES = 64 * 1024 * 1024;
/** Default of `--fs-max-files`. */
const FS_MAX_FILES = 10_000;

/**
 * The file-tree code, loaded only for a job with `--dir`: a cold `run` without files does not
 * pay for compiling it.
 */
async function _fileTrees() {
  const [fileTree, hostTree] = await Promise.all([
    import("../runtime/file_tree.ts"),
    import("../runtime/host_tree.ts"),
  ]);
  const { changedFileTree, decodeFileTree, encodeFileTree, FileTreeLimitError } = fileTree;
  const { parseTreeMount, readHostTree, writeHostTree } = hostTree;
  return {
    changedFileTree,
    decodeFileTree,
    encodeFileTree,
    FileTreeLimitError,
    parseTreeMount,
    readHostTree,
    writeHostTree,
  };
}

type _FileTrees = Awaited<ReturnType<typeof _fileTrees>>;

/** The file flags, checked: null without `--dir` (then `trees` is not needed). */
function _fsFlags(values: _Values, memoryBytes: number, trees: _FileTrees | undefined) {
  const usage = (message: string): never => {
    throw new UsageError(message);
  };
  if (values.dir.length === 0 || !trees) {
    for (const flag of ["out", "out-changed", "fs-max-bytes", "fs-max-files"] as const) {
      if (values[flag] !== undefined) usage(`--${flag} needs --dir`);
    }
    return null;
  }
  let maxBytes = Math.min(FS_MAX_BYTES, memoryBytes);
  let maxFiles = FS_MAX_FILES;
  try {
    if (values["fs-max-bytes"] !== undefined) maxBytes = parseSize(values["fs-max-bytes"]);
  } catch (error) {
    usage(errorLine(error));
  }
  if (maxBytes > memoryBytes) {
    usage(`Cannot use --fs-max-bytes ${maxBytes}: over --memory (${memoryBytes} bytes)`);
  }
  if (values["fs-max-files"] !== undefined) {
    const text = values["fs-max-files"];
    maxFiles = /^[0-9]{1,9}$/.test(text) ? Number(text) : -1;
    if (maxFiles < 1) usage(`Cannot use --fs-max-files '${text}': not a whole number from 1`);
  }
  const mounts: TreeMount[] = [];
  const preopens: { name: string; path: string }[] = [];
  for (const spec of values.dir) {
    let host, at, name;
    try {
      ({ host, at, name } = trees.parseTreeMount(spec));
    } catch (error) {
      return usage(`${errorLine(error).replace(/^Cannot use '/, "Cannot use --dir '")}`);
    }
    mounts.push({ host, at });
    preopens.push({ name, path: at });
  }
  return {
    mounts,
    preopens,
    maxBytes,
    maxFiles,
    out: values.out,
    outChanged: values["out-changed"],
  };
}

/** Read the `--dir` trees into the job's files; refuse an `--out` that cannot be written. */
async function _readFiles(flags: NonNullable<ReturnType<typeof _fsFlags>>, trees: _FileTrees) {
  for (const dir of [flags.out, flags.outChanged]) {
    if (dir === undefined) continue;
    let nonEmpty = false;
    try {
      const info = await Deno.lstat(dir);
      nonEmpty = !info.isDirectory;
      if (info.isDirectory) { for await (const _ of Deno.readDir(dir)) nonEmpty = true; }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (nonEmpty) throw new Error(`Cannot write files to '${dir}': it exists and is not empty`);
  }
  const { maxBytes, maxFiles } = flags;
  const tree = await trees.readHostTree(flags.mounts, { maxBytes, maxFiles });
  return { tree: trees.encodeFileTree(tree), preopens: flags.preopens, maxBytes, maxFiles };
}

class _TooLarge extends Error {}

/**
 * A receipt file opened before the job, while write access is there, and written after it. An
 * existing file keeps its bytes until the new receipt replaces them; a process killed during the
 * job leaves a new file empty, never partial. Its calls are synchronous, as are the stat and
 * read of the module: the process has nothing else to do meanwhile, and each asynchronous call
 * would cost a round trip to Deno's blocking thread pool.
 */
class _ReceiptFile {
  constructor(readonly path: string, readonly file: Deno.FsFile, readonly created: boolean) {}

  static open(path: string, mode: number): _ReceiptFile {
    let created = false;
    let file;
    try {
      file = Deno.openSync(path, { write: true, createNew: true, mode });
      created = true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      file = Deno.openSync(path, { write: true, mode });
    }
    return new _ReceiptFile(path, file, created);
  }

  /** Close it unwritten, removing it if it did not exist before (permissions still held). */
  discard(): void {
    this.file.close();
    if (this.created) {
      try {
        Deno.removeSync(this.path);
      } catch {
        // Best effort: the error that made us discard it is the one to report.
      }
    }
  }

  write(text: string): void {
    const bytes = new TextEncoder().encode(text);
    try {
      for (let at = 0; at < bytes.length;) at += this.file.writeSync(bytes.subarray(at));
      this.file.truncateSync(bytes.length);
      this.file.syncDataSync();
    } finally {
      this.file.close();
    }
  }
}

interface _ReceiptSinks {
  store: _ReceiptFile;
  copy: _ReceiptFile | undefined;
  /** The receipts directory, to sync once the new entry is written. */
  dir: Deno.FsFile;
}

/** Open the receipt's file in the state dir and `--receipt FILE`, before the job runs. */
async function _openReceipts(
  stateDir: string,
  jobId: string,
  publicKey: string,
  values: _Values,
): Promise<_ReceiptSinks> {
  const path = receiptPath(stateDir, { job_id: jobId, worker_pubkey: publicKey });
  const copyPath = values.receipt;
  const copy = copyPath === undefined
    ? undefined
    : await _io("write receipt", copyPath, () => _ReceiptFile.open(copyPath, 0o644));
  try {
    return await _io("store receipt in", `${stateDir}/receipts`, () => {
      Deno.mkdirSync(`${stateDir}/receipts`, { recursive: true, mode: 0o700 });
      const dir = Deno.openSync(`${stateDir}/receipts`, { read: true });
      try {
        return { store: _ReceiptFile.open(path, 0o600), copy, dir };
      } catch (error) {
        dir.close();
        throw error;
      }
    });
  } catch (error) {
    copy?.discard();
    throw error;
  }
}

/** Read the module and input, and load (or make) the node key. */
async function _load(modulePath: string, values: _Values, maxModuleBytes: number) {
  const stat = await _io("read module", modulePath, () => Deno.statSync(modulePath));
  if (!stat.isFile) throw new Error(`Cannot read module '${modulePath}': not a file`);
  if (stat.size > maxModuleBytes) {
    throw new _TooLarge(
      `Cannot run '${modulePath}': module is ${stat.size} bytes, over the ${maxModuleBytes}-byte limit`,
    );
  }
  const module = await _io("read module", modulePath, () => Deno.readFileSync(modulePath));
  const input = await _io("read input", values.input ?? "-", () => _readInput(values.input));
  const stateDir = values["state-dir"] ?? defaultStateDir((name) => Deno.env.get(name));
  const keyPair = await _io("use state dir", stateDir, () => loadOrCreateIdentity(stateDir));
  return { module, input, keyPair, stateDir };
}

/** Print the job's output and the receipt summary (or one JSON object). */
function _report(
  io: CommandIo,
  signed: Awaited<ReturnType<typeof runSignedJob>>,
  stored: string,
  values: _Values,
): void {
  const { outcome, receipt, jobId, manifest } = signed;
  if (values.json) {
    const text = (bytes: Uint8Array) => {
      try {
        return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        return null;
      }
    };
    io.print(JSON.stringify({
      job_id: jobId,
      completion: outcome.completion,
      exit_code: outcome.exitCode,
      error: outcome.error ?? null,
      duration_ms: outcome.durationMs,
      stdout: text(outcome.stdout),
      stdout_base64: outcome.stdout.toBase64(),
      stderr: text(outcome.stderr),
      stderr_base64: outcome.stderr.toBase64(),
      manifest,
      receipt,
      receipt_file: stored,
    }));
    return;
  }
  io.write(outcome.stdout);
  io.writeError(outcome.stderr);
  const extra = receipt.result.metrics.extra;
  const ended = outcome.error
    ? `${receipt.result.completion} (${outcome.error.kind})`
    : `${receipt.result.completion}, exit ${outcome.exitCode ?? "none"}`;
  // Start on a line of its own when the job's last output (on a terminal they share one
  // screen) did not end one.
  const last = outcome.stderr.length > 0 ? outcome.stderr : outcome.stdout;
  const lines = [
    ...(last.length > 0 && last.at(-1) !== 0x0a ? [""] : []),
    ...(outcome.error ? [`run: error: ${outcome.error.message}`] : []),
    `--- receipt: job ${jobId}, completion ${ended}, output ${extra.output_hash}`,
    `--- signed by ${receipt.worker_pubkey}; full receipt: ${stored}${
      values.receipt ? ` (copy: ${values.receipt})` : ""
    }`,
  ];
  io.log(lines.join("\n"));
}

async function _readInput(spec: string | undefined): Promise<Uint8Array> {
  if (spec === "-" || (spec === undefined && !Deno.stdin.isTerminal())) {
    return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  }
  if (spec === undefined) return new Uint8Array();
  return await Deno.readFile(spec);
}

/** Run a file operation; a failure becomes `Cannot <what> '<path>': <reason>`. */
async function _io<T>(what: string, path: string, op: () => T | Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    if (error instanceof RangeError) throw error; // already says which file and why
    throw new Error(`Cannot ${what} '${path}': ${fsErrorReason(error)}`, { cause: error });
  }
}

if (import.meta.main) {
  // Exit explicitly: after a timeout the job's worker may still spin in a compute loop, since
  // Deno 2.9's worker.terminate() does not interrupt running WebAssembly; ending the process is
  // what stops it. Everything (output, receipt file) is written before this line.
  Deno.exit(await main(Deno.args));
}
