// deno run --allow-read --allow-write --allow-net=127.0.0.1
//   --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME cli/submit.ts <module.wasm> [flags]
//
// --allow-read: the module, --input and the node's api.json/api.token in the state dir.
// --allow-write: only `--receipt FILE` (a launcher may narrow it to that file).
// --allow-net=127.0.0.1: the node's local API. --allow-env=...: to find the state dir.
/**
 * `submit`: hand a WASM job to the local node, which runs it on a peer and verifies the receipt.
 *
 * ```
 * submit <module.wasm> [--input FILE|-] [--arg A]... [--env K=V]... [--memory SIZE]
 *        [--timeout DURATION] [--max-output SIZE] [--fuel N] [--cpu N] [--replicas N]
 *        [--worker PEERID] [--search-timeout DURATION] [--wait] [--receipt FILE] [--json]
 *        [--state-dir DIR]
 * ```
 *
 * Everything the job gets (module, input, arguments, environment, limits, fuel) is signed into
 * its manifest, hence into its job id and receipt. Stdin is the input when it is piped and no
 * `--input` is given. Prints the job id; with `--wait`, waits and reports like `run`: the job's
 * stdout and stderr, exit code the job's own, or 118-125 with one `error:` line naming the kind
 * when it did not run to its end. 1: the job failed (no worker found, no verified result,
 * replicas disagree) or the node is not answering; 2: bad usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration, parseSize } from "./_units.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { API_CLIENT_FLAGS, localClient, reportError, reportJobResult } from "./_api_client.ts";
import type { ClientSubmitOptions } from "../net/client.ts";
import { errorLine } from "../util/error_message.ts";

const _USAGE =
  `Usage: submit <module.wasm> [--input FILE|-] [--arg A]... [--env K=V]... [--memory SIZE]
              [--timeout DURATION] [--max-output SIZE] [--fuel N] [--cpu N] [--replicas N]
              [--worker PEERID] [--search-timeout DURATION] [--wait] [--receipt FILE]
              [--json] [--state-dir DIR]

Sends a WASI job to the local node (start), which runs it on a peer and verifies the receipt.
Input: --input, else stdin when it is piped. Prints the job id; with --wait, the job's output
and stderr, and exits like run: the job's own exit code, or 118-125 with one error line when it
did not run to its end. 1: the job failed or the node is not answering. 2: bad usage.
--receipt FILE (with --wait) writes the receipt; with --replicas N, [{peer_id, receipt}, ...].`;

/**
 * Run `submit`; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./submit.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--cpu", "x"]), 2);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let values, positionals;
  let options: ClientSubmitOptions = {};
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        input: { type: "string" },
        arg: { type: "string", multiple: true },
        env: { type: "string", multiple: true },
        cpu: { type: "string" },
        memory: { type: "string" },
        timeout: { type: "string" },
        "max-output": { type: "string" },
        fuel: { type: "string" },
        replicas: { type: "string" },
        worker: { type: "string" },
        "search-timeout": { type: "string" },
        ...API_CLIENT_FLAGS,
      },
    }));
    if (values.help) {
      console.log(_USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new TypeError("Cannot submit: give exactly one module");
    if (values.receipt !== undefined && !values.wait) {
      throw new TypeError("Cannot use --receipt without --wait: there is no receipt yet");
    }
    const int = (text: string | undefined, name: string) => {
      if (text === undefined) return undefined;
      if (!/^\d{1,9}$/.test(text) || Number(text) < 1) {
        throw new RangeError(`Cannot use --${name} '${text}': expected a positive integer`);
      }
      return Number(text);
    };
    const cpu = int(values.cpu, "cpu");
    const replicas = int(values.replicas, "replicas");
    if (values.fuel !== undefined && !/^\d{1,19}$/.test(values.fuel)) {
      throw new SyntaxError(
        `Cannot parse --fuel '${values.fuel}': use a whole number of instructions`,
      );
    }
    const env: Record<string, string> = {};
    for (const pair of values.env ?? []) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new SyntaxError(`Cannot parse --env '${pair}': use K=V`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    options = {
      ...(cpu ? { cpu } : {}),
      ...(replicas ? { replicas } : {}),
      ...(values.memory ? { memoryBytes: parseSize(values.memory) } : {}),
      ...(values.timeout ? { timeoutMs: parseDuration(values.timeout) } : {}),
      ...(values["max-output"] ? { maxOutputBytes: parseSize(values["max-output"]) } : {}),
      ...(values["search-timeout"]
        ? { searchTimeoutMs: parseDuration(values["search-timeout"]) }
        : {}),
      ...(values.fuel !== undefined ? { fuel: values.fuel } : {}),
      ...(values.arg?.length ? { args: values.arg } : {}),
      ...(Object.keys(env).length ? { env } : {}),
      ...(values.worker ? { worker: values.worker } : {}),
    };
  } catch (error) {
    console.error(`error: ${errorLine(error)} (see submit --help)`);
    return 2;
  }
  const json = values.json === true;
  let id: string | undefined;
  try {
    const module = await _read(positionals[0]!, "module");
    const input = await _readInput(values.input);
    const client = await localClient(values["state-dir"]);
    id = await client.submit(module, { ...options, ...(input.length ? { input } : {}) });
    if (!values.wait) {
      console.log(json ? JSON.stringify({ job_id: id }) : id);
      return 0;
    }
    const result = await client.result(id, { waitMs: 24 * 3600_000 });
    return await reportJobResult(id, result, { json, receiptFile: values.receipt });
  } catch (error) {
    return await reportError(error, { json, ...(id ? { jobId: id } : {}) });
  }
}

async function _readInput(spec: string | undefined): Promise<Uint8Array> {
  if (spec === "-" || (spec === undefined && !Deno.stdin.isTerminal())) {
    try {
      return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    } catch (cause) {
      throw new Error(`Cannot read input from stdin: ${fsErrorReason(cause)}`, { cause });
    }
  }
  if (spec === undefined) return new Uint8Array();
  return await _read(spec, "input");
}

async function _read(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (cause) {
    throw new Error(`Cannot read ${what} '${path}': ${fsErrorReason(cause)}`, { cause });
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
