// deno run --allow-read --allow-write --allow-net=127.0.0.1
//   --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME cli/result.ts <job-id> [flags]
//
// --allow-read: the node's api.json/api.token in the state dir. --allow-write: only
// `--receipt FILE` and `--out DIR`. --allow-net=127.0.0.1: the node's local API. --allow-env=...: to find the
// state dir.
/**
 * `result`: report a job's verified result like `run` does (or, with `--json`, the result and
 * its receipts).
 *
 * ```
 * result <job-id> [--wait] [--receipt FILE] [--out DIR] [--json] [--state-dir DIR]
 * ```
 *
 * `--out DIR` (a job submitted with `--dir`) writes the job's output tree to DIR, a new or empty
 * directory (atomically: a temporary directory beside it, renamed into place), after checking
 * the tree against every verified receipt's `outputs_hash`; on a mismatch it fails in one line
 * and writes nothing.
 *
 * Every receipt is verified here too: signed by the key of its worker's PeerId, for this job
 * id, committing to the output printed. Exit codes: the job's own, or `run`'s 118-125 with one
 * `result: error:` line naming the kind when it did not run to its end; 1 failed, not finished
 * (without `--wait`), not verified or node not answering; 2 bad usage.
 *
 * @module
 */
import { API_CLIENT_EXITS, API_CLIENT_FLAGS } from "./_api_client.ts";
import { localClient, reportError, reportJobResult } from "./_api_client.ts";
import { type CliContext, runCommand, UsageError } from "./_main.ts";
import { writeHostTree } from "../runtime/host_tree.ts";
import { decodeFileTree } from "../runtime/file_tree.ts";
import { meshTreeLimits } from "../net/mesh_files.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `result`. */
export const RESULT_COMMAND = {
  name: "result",
  args: "<job-id>",
  about: `Prints a job's verified output and stderr. ${API_CLIENT_EXITS}
--receipt FILE writes the receipt (with replicas: [{peer_id, receipt}, ...]).`,
  options: {
    out: { type: "string", value: "DIR", description: "write the job's output files there" },
    ...API_CLIENT_FLAGS,
  },
} as const;

/**
 * Run `result`; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./result.ts";
 * import assert from "node:assert/strict";
 *
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["not-a-job-id"], { stderr: quiet }), 2);
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(RESULT_COMMAND, args, context, async (values, positionals, io) => {
    if (positionals.length !== 1 || !/^[0-9a-f]{64}$/.test(positionals[0]!)) {
      throw new UsageError("Cannot get result: give one job id (64 lowercase hex)");
    }
    const id = positionals[0]!;
    const json = values.json;
    try {
      const client = await localClient(values["state-dir"]);
      const result = await client.result(id, {
        waitMs: values.wait ? 24 * 3600_000 : 0,
        ...(io.signal ? { signal: io.signal } : {}),
      });
      if (values.out !== undefined) {
        // Checked against the receipts by client.result(); decoded under the mesh's caps.
        if (result.files === undefined) {
          throw new Error(`Cannot write files to '${values.out}': the job has no output files`);
        }
        await writeHostTree(decodeFileTree(result.files, meshTreeLimits()), values.out);
      }
      return await reportJobResult(io, id, result, { json, receiptFile: values.receipt });
    } catch (error) {
      return reportError(io, error, { json, jobId: id });
    }
  });
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
