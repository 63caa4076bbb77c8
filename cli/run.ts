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
import { parseFlags } from "./_flags.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { parseDuration, parseSize } from "./_units.ts";
import { errorLine } from "../util/error_message.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

const USAGE = `Usage: run <module.wasm> [--input FILE|-] [--arg A]... [--env K=V]...
           [--memory 256MiB] [--timeout 30s] [--max-output 16MiB] [--max-module 64MiB] [--fuel N]
           [--receipt FILE] [--json] [--state-dir DIR]

Runs a WASI module with stdin from --input (default: stdin when it is not a terminal), prints
its stdout and stderr, and signs a receipt with the node key (in --state-dir, default
$PLASM_HOME or ~/.local/share/plasm). A two-line summary of the receipt follows on stderr; the
full receipt is kept in <state dir>/receipts/, copied to --receipt FILE and included in --json.
Exit code: the job's own, or 118-125 when the job was stopped (see README); 1 when a file
cannot be read or written, 2 for bad arguments. Errors are one line: run: error: ...`;

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
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(argv, {
      input: { type: "string" },
      arg: { type: "string", multiple: true },
      env: { type: "string", multiple: true },
      memory: { type: "string" },
      timeout: { type: "string" },
      "max-output": { type: "string" },
      "max-module": { type: "string" },
      fuel: { type: "string" },
      receipt: { type: "string" },
      json: { type: "boolean" },
      "state-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    });
  } catch (error) {
    return _usage((error as Error).message);
  }
  const { positionals } = parsed;
  const values = parsed.values as {
    input?: string;
    arg?: string[];
    env?: string[];
    memory?: string;
    timeout?: string;
    "max-output"?: string;
    "max-module"?: string;
    fuel?: string;
    receipt?: string;
    json?: boolean;
    "state-dir"?: string;
    help?: boolean;
  };
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    return _usage(positionals.length === 0 ? "Missing <module.wasm>" : "Too many arguments");
  }
  const modulePath = positionals[0]!;
  let limits;
  const env: Record<string, string> = {};
  try {
    limits = {
      memoryBytes: values.memory ? parseSize(values.memory) : DEFAULT_LIMITS.memoryBytes,
      timeoutMs: values.timeout ? parseDuration(values.timeout) : DEFAULT_LIMITS.timeoutMs,
      maxOutputBytes: values["max-output"]
        ? parseSize(values["max-output"])
        : DEFAULT_LIMITS.maxOutputBytes,
      maxModuleBytes: values["max-module"]
        ? parseSize(values["max-module"])
        : DEFAULT_LIMITS.maxModuleBytes,
    };
    if (values.fuel !== undefined && !/^\d{1,19}$/.test(values.fuel)) {
      throw new SyntaxError(
        `Cannot parse --fuel '${values.fuel}': use a whole number of instructions`,
      );
    }
    for (const pair of values.env ?? []) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new SyntaxError(`Cannot parse --env '${pair}': use K=V`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  } catch (error) {
    return _usage((error as Error).message);
  }

  let module: Uint8Array;
  let input: Uint8Array;
  let keyPair;
  let stateDir: string;
  try {
    const stat = await _io("read module", modulePath, () => Deno.stat(modulePath));
    if (!stat.isFile) throw new Error(`Cannot read module '${modulePath}': not a file`);
    if (stat.size > limits.maxModuleBytes) {
      return _fail(
        `Cannot run '${modulePath}': module is ${stat.size} bytes, over the ${limits.maxModuleBytes}-byte limit`,
        EXIT_CODES.module_too_large,
      );
    }
    module = await _io("read module", modulePath, () => Deno.readFile(modulePath));
    input = await _io("read input", values.input ?? "-", () => _readInput(values.input));
    const dir = values["state-dir"] ?? defaultStateDir((name) => Deno.env.get(name));
    stateDir = dir;
    keyPair = await _io("use state dir", dir, () => loadOrCreateIdentity(dir));
  } catch (error) {
    return _fail(errorLine(error), 1);
  }
  await Deno.permissions.revoke({ name: "env" });

  const ac = new AbortController();
  const onSignal = () => ac.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  let signed;
  try {
    signed = await runSignedJob(module, {
      ...limits,
      input,
      args: values.arg ?? [],
      env,
      keyPair,
      signal: ac.signal,
      ...(values.fuel === undefined ? {} : {
        fuel: BigInt(values.fuel),
        fuelCache: new FuelCache({ dir: `${stateDir}/fuel-cache` }),
      }),
    });
  } catch (error) {
    return _fail(errorLine(error), 1);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
  const { outcome, receipt, jobId, manifest } = signed;

  let stored: string;
  try {
    stored = await _io(
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
  } catch (error) {
    return _fail(errorLine(error), 1);
  }
  if (values.json) {
    const text = (bytes: Uint8Array) => {
      try {
        return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        return null;
      }
    };
    console.log(JSON.stringify({
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
  } else {
    await _writeAll(Deno.stdout, outcome.stdout);
    await _writeAll(Deno.stderr, outcome.stderr);
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
    await _writeAll(Deno.stderr, new TextEncoder().encode(lines.join("\n") + "\n"));
  }
  if (outcome.error) return EXIT_CODES[outcome.error.kind];
  return Math.min(outcome.exitCode ?? 0, 255);
}

async function _readInput(spec: string | undefined): Promise<Uint8Array> {
  if (spec === "-" || (spec === undefined && !Deno.stdin.isTerminal())) {
    return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  }
  if (spec === undefined) return new Uint8Array();
  return await Deno.readFile(spec);
}

async function _writeAll(file: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
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

function _usage(message: string): number {
  console.error(`run: ${message.split("\n")[0]} (see run --help)`);
  return EXIT_CODES.usage;
}

function _fail(message: string, code: number): number {
  console.error(`run: error: ${message}`);
  return code;
}

if (import.meta.main) {
  // Exit explicitly: after a timeout the job's worker may still spin in a compute loop, since
  // Deno 2.9's worker.terminate() does not interrupt running WebAssembly; ending the process is
  // what stops it. Everything (output, receipt file) is written before this line.
  Deno.exit(await main(Deno.args));
}
