/**
 * `run`: execute one WASM (WASI preview1) job locally under hard limits, print its output and
 * sign a `phase-receipt:v1` receipt with the node key.
 *
 * Run with exactly:
 *   deno run --unstable-worker-options --allow-read --allow-write
 *     --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME cli/run.ts <module.wasm> [options]
 * No --allow-net, --allow-run, --allow-sys or --allow-ffi: the job itself runs in a worker with
 * `permissions: "none"`. Write access is used only for the state dir (node key, on first use,
 * and every receipt it signs, under `receipts/`) and `--receipt FILE`; env only to find the
 * state dir.
 *
 * @module
 */
import { defaultStateDir, loadOrCreateIdentity } from "../net/identity.ts";
import { FuelCache } from "../runtime/fuel.ts";
import { storeReceipt } from "../runtime/receipt_store.ts";
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
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/** Exit codes `run` uses when the job did not end by itself. */
export const EXIT_CODES: Record<JobErrorKind | "usage", number> = {
  usage: 2,
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
Exit code: the job's own, or 118-125 when the job was stopped (see docs/cli.md); 1 when a file
cannot be read or written, 2 for bad arguments. Errors are one line: run: error: ...
Limits by default: --memory 256MiB, --timeout 30s, --max-output 16MiB, --max-module 64MiB.`,
  options: {
    ...JOB_FLAGS,
    "max-module": { type: "string", value: "SIZE", description: "module cap" },
    receipt: { type: "string", value: "FILE", description: "also write the receipt here" },
    json: { type: "boolean", description: "one JSON object with output and receipt" },
    "state-dir": { type: "string", value: "DIR", description: "where the node key lives" },
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
    let job;
    try {
      job = await _load(modulePath, values, limits.maxModuleBytes);
    } catch (error) {
      return io.fail(
        errorLine(error),
        error instanceof _TooLarge ? EXIT_CODES.module_too_large : 1,
      );
    }
    await Deno.permissions.revoke({ name: "env" });
    const { module, input, keyPair, stateDir } = job;
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    Deno.addSignalListener("SIGINT", onSignal);
    const signal = io.signal ? AbortSignal.any([io.signal, ac.signal]) : ac.signal;
    let signed;
    try {
      signed = await runSignedJob(module, {
        ...limits,
        input,
        args: values.arg,
        env,
        keyPair,
        signal,
        ...(values.fuel === undefined ? {} : {
          fuel: BigInt(values.fuel),
          fuelCache: new FuelCache({ dir: `${stateDir}/fuel-cache` }),
        }),
      });
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
    }
    const { receipt } = signed;
    const stored = await _io(
      "store receipt in",
      `${stateDir}/receipts`,
      () => storeReceipt(stateDir, receipt),
    );
    if (values.receipt) {
      const path = values.receipt;
      await _io(
        "write receipt",
        path,
        () => writeFileAtomic(path, JSON.stringify(receipt, null, 2) + "\n"),
      );
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

class _TooLarge extends Error {}

/** Read the module and input, and load (or make) the node key. */
async function _load(modulePath: string, values: _Values, maxModuleBytes: number) {
  const stat = await _io("read module", modulePath, () => Deno.stat(modulePath));
  if (!stat.isFile) throw new Error(`Cannot read module '${modulePath}': not a file`);
  if (stat.size > maxModuleBytes) {
    throw new _TooLarge(
      `Cannot run '${modulePath}': module is ${stat.size} bytes, over the ${maxModuleBytes}-byte limit`,
    );
  }
  const module = await _io("read module", modulePath, () => Deno.readFile(modulePath));
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
async function _io<T>(what: string, path: string, op: () => Promise<T>): Promise<T> {
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
