/**
 * Shared by `submit` and `result`: find the local node's API (URL and token in the state dir).
 *
 * @module
 */
import { defaultStateDir } from "../net/identity.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { Buffer } from "node:buffer";
import { Client, type JobResultInfo } from "../net/client.ts";

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
    throw new Error(
      `Cannot find the node's API in '${dir}': start a node with 'start' first (${
        cause instanceof Error ? cause.message : cause
      })`,
      { cause },
    );
  }
}

/**
 * Print a verified job result the way `submit --wait` and `result` do: the job's output bytes
 * on stdout, or with `json` one object with the output and stderr in base64, the exit code,
 * completion, worker and receipt.
 *
 * @example
 * ```ts ignore
 * import { localClient, printJobResult } from "./_api_client.ts";
 *
 * const client = await localClient();
 * await printJobResult("<job id>", await client.result("<job id>"), false);
 * ```
 */
export async function printJobResult(
  jobId: string,
  result: JobResultInfo,
  json: boolean,
): Promise<void> {
  if (json) {
    console.log(JSON.stringify({
      job_id: jobId,
      exit_code: result.exitCode,
      completion: result.completion,
      output: Buffer.from(result.output).toString("base64"),
      stderr: Buffer.from(result.stderr).toString("base64"),
      worker_peer_id: result.workerPeerId,
      verified: result.verified,
      receipt: result.receipt,
    }));
    return;
  }
  for (let at = 0; at < result.output.length;) {
    at += await Deno.stdout.write(result.output.subarray(at));
  }
}
