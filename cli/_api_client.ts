/**
 * Shared by `submit` and `result`: find the local node's API (URL and token in the state dir),
 * and report a job's outcome the way `run` does (output, stderr, exit code, one `error:` line).
 *
 * @module
 */
import { defaultStateDir } from "../net/identity.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import {
  ApiUnreachableError,
  Client,
  JobFailedError,
  type JobResultInfo,
  type JobWorkerResult,
} from "../net/client.ts";
import { EXIT_CODES } from "./run.ts";
import { errorMessage } from "../util/error_message.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";
import type { CommandIo } from "./_main.ts";

/** The exit codes of `submit --wait` and `result`, for their usage texts. */
export const API_CLIENT_EXITS =
  `Exits like run: the job's own exit code, or 118-125 with one error line when it did not run to
its end. 1: the job failed, is not finished (result without --wait) or the node is not
answering. 2: bad usage.`;

/** The flags `submit` and `result` share: waiting, the receipt copy, JSON output, the node. */
export const API_CLIENT_FLAGS = {
  wait: { type: "boolean", description: "wait for the result" },
  receipt: { type: "string", value: "FILE", description: "write the receipt(s) (with --wait)" },
  json: { type: "boolean", description: "one JSON object on stdout" },
  "state-dir": { type: "string", value: "DIR", description: "the node's state dir" },
} as const;

/**
 * A {@linkcode Client} of the node whose state dir is `stateDir` (default: the usual one).
 *
 * @throws {Error} If no node has recorded its API there.
 *
 * @example
 * ```ts
 * import { localClient } from "./_api_client.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await assert.rejects(localClient(dir), /Cannot find the node's API/);
 * await Deno.remove(dir);
 * ```
 */
export async function localClient(stateDir?: string): Promise<Client> {
  const dir = stateDir ?? defaultStateDir((name) => Deno.env.get(name));
  try {
    return new Client(await readApiEndpoint(dir));
  } catch (cause) {
    const why = cause instanceof Deno.errors.NotFound
      ? "no node has recorded one there (is start running with this state dir?)"
      : errorMessage(cause);
    throw new Error(`Cannot find the node's API in '${dir}': ${why}`, { cause });
  }
}

/** How {@linkcode reportJobResult} prints. */
export interface ReportOptions {
  /** One JSON object on stdout instead of the raw output. */
  json: boolean;
  /** Write the receipt (several workers: `[{peer_id, receipt}]`) to this file. */
  receiptFile?: string | undefined;
}

/**
 * Print a verified job result the way `run` does and return the exit code: the job's stdout
 * on stdout and its stderr on stderr, then, when it did not run to its end, one `error:` line
 * naming the kind; exit code the job's own, or `run`'s 118-125 for the kind. With `json`, one
 * object with the same fields as `run --json` (`stdout`/`stderr` as text when UTF-8, with
 * `stdout_base64`/`stderr_base64`), plus the workers and their receipts.
 *
 * @example
 * ```ts ignore
 * import { localClient, reportJobResult } from "./_api_client.ts";
 *
 * import { CommandIo } from "./_main.ts";
 *
 * const io = new CommandIo({ name: "result", about: "", options: {} });
 * const client = await localClient();
 * Deno.exitCode = await reportJobResult(io, "<job id>", await client.result("<job id>"), {
 *   json: false,
 * });
 * ```
 */
export async function reportJobResult(
  io: CommandIo,
  jobId: string,
  result: JobResultInfo,
  options: ReportOptions,
): Promise<number> {
  const { json, receiptFile } = options;
  if (receiptFile !== undefined) await _writeReceipts(receiptFile, result.workers);
  if (json) {
    io.print(
      JSON.stringify({
        job_id: jobId,
        status: "done",
        completion: result.completion,
        exit_code: result.exitCode,
        error: result.error,
        stdout: _text(result.output),
        stdout_base64: result.output.toBase64(),
        stderr: _text(result.stderr),
        stderr_base64: result.stderr.toBase64(),
        worker_peer_id: result.workerPeerId,
        workers: result.workers.map(_worker),
        replicas_agree: result.replicasAgree,
        verified: result.verified,
        receipt: result.receipt,
      }),
    );
  } else {
    io.write(result.output);
    io.writeError(result.stderr);
    if (result.error) {
      const newline = result.stderr.length > 0 && result.stderr.at(-1) !== 10 ? "\n" : "";
      io.log(
        `${newline}${io.name}: error: ${result.error.kind}: ${_oneLine(result.error.message)}`,
      );
    }
  }
  if (result.error) return (EXIT_CODES as Record<string, number>)[result.error.kind] ?? 1;
  return Math.min(result.exitCode ?? 0, 255);
}

/**
 * Report an error of `submit`/`result` in one line (or, for a failed job with `json`, one JSON
 * object on stdout) and return exit code 1.
 *
 * @example
 * ```ts
 * import { reportError } from "./_api_client.ts";
 * import { CommandIo } from "./_main.ts";
 * import { ApiUnreachableError } from "../net/client.ts";
 * import assert from "node:assert/strict";
 *
 * let text = "";
 * const stderr = { writeSync: (b: Uint8Array) => (text += new TextDecoder().decode(b), b.length) };
 * const spec = { name: "result", about: "", options: {} };
 * const io = new CommandIo(spec, { stderr });
 * const code = reportError(io, new ApiUnreachableError("http://127.0.0.1:9/"), { json: false });
 * assert.equal(code, 1);
 * assert.equal(
 *   text,
 *   "result: error: node API at http://127.0.0.1:9/ is not answering (is start running with this state dir?)\n",
 * );
 * ```
 */
export function reportError(
  io: CommandIo,
  error: unknown,
  options: { json: boolean; jobId?: string },
): number {
  const { json, jobId } = options;
  if (error instanceof JobFailedError && json && jobId) {
    io.print(
      JSON.stringify({
        job_id: jobId,
        status: "failed",
        error: { kind: error.kind, message: error.reason },
        ...(error.workers.length > 0
          ? { workers: error.workers.map(_worker), replicas_agree: false }
          : {}),
      }),
    );
    return 1;
  }
  return io.fail(_oneLine(describeError(error)));
}

/**
 * The one-line text of an error of `submit`/`result`.
 *
 * @example
 * ```ts
 * import { describeError } from "./_api_client.ts";
 * import { JobFailedError } from "../net/client.ts";
 * import assert from "node:assert/strict";
 *
 * const failed = new JobFailedError("Job ab failed: x", { kind: "no_worker_found", reason: "x" });
 * assert.equal(describeError(failed), "Job ab failed: x");
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof ApiUnreachableError) {
    return `node API at ${error.url} is not answering (is start running with this state dir?)`;
  }
  return errorMessage(error);
}

async function _writeReceipts(path: string, workers: JobWorkerResult[]): Promise<void> {
  const value = workers.length === 1
    ? workers[0]!.receipt
    : workers.map((w) => ({ peer_id: w.peerId, receipt: w.receipt }));
  try {
    await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
  } catch (cause) {
    throw new Error(`Cannot write receipt '${path}': ${errorMessage(cause)}`, { cause });
  }
}

function _worker(w: JobWorkerResult): Record<string, unknown> {
  return { peer_id: w.peerId, output_commitment: w.outputCommitment, receipt: w.receipt };
}

function _text(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

function _oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
