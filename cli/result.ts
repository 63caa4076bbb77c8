// deno run --allow-read --allow-net=127.0.0.1 --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME
//   cli/result.ts <job-id> [flags]
//
// --allow-read: the node's api.json/api.token in the state dir. --allow-net=127.0.0.1: the
// node's local API. --allow-env=...: to find the state dir.
/**
 * `result`: print a job's verified output (or, with `--json`, the result and its receipt).
 *
 * ```
 * result <job-id> [--wait] [--json] [--state-dir DIR]
 * ```
 *
 * The receipt is verified here too: signed by the key of the worker's PeerId, for this job
 * id, committing to the output printed. Exit codes: 0 verified result, 1 failed, not finished
 * (without `--wait`) or not verified, 2 bad usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { localClient, printJobResult } from "./_api_client.ts";

const _USAGE = "Usage: result <job-id> [--wait] [--json] [--state-dir DIR]";

/**
 * Run `result`; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./result.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["not-a-job-id"]), 2);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        wait: { type: "boolean" },
        json: { type: "boolean" },
        "state-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
    if (values.help) {
      console.log(_USAGE);
      return 0;
    }
    if (positionals.length !== 1 || !/^[0-9a-f]{64}$/.test(positionals[0]!)) {
      throw new TypeError("Cannot get result: give one job id (64 lowercase hex)");
    }
  } catch (error) {
    console.error(`error: ${_message(error)}`);
    console.error(_USAGE);
    return 2;
  }
  const id = positionals[0]!;
  try {
    const client = await localClient(values["state-dir"]);
    const result = await client.result(id, { waitMs: values.wait ? 24 * 3600_000 : 0 });
    await printJobResult(id, result, values.json === true);
    return 0;
  } catch (error) {
    console.error(`error: ${_message(error)}`);
    return 1;
  }
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
