// deno run --allow-read --allow-net=127.0.0.1 --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME
//   cli/submit.ts <module.wasm> [flags]
//
// --allow-read: the module, --input and the node's api.json/api.token in the state dir.
// --allow-net=127.0.0.1: the node's local API. --allow-env=...: to find the state dir.
/**
 * `submit`: hand a WASM job to the local node, which runs it on a peer and verifies the receipt.
 *
 * ```
 * submit <module.wasm> [--input F] [--cpu N] [--memory SIZE] [--timeout DURATION]
 *        [--replicas N] [--worker PEERID] [--wait] [--json] [--state-dir DIR]
 * ```
 *
 * Prints the job id; with `--wait`, waits and prints the output (or the result as JSON with
 * `--json`). Exit codes: 0 ok, 1 the job failed or its result did not verify, 2 bad usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration, parseSize } from "./_units.ts";
import { localClient, printJobResult } from "./_api_client.ts";

const _USAGE =
  `Usage: submit <module.wasm> [--input F] [--cpu N] [--memory SIZE] [--timeout DURATION]
              [--replicas N] [--worker PEERID] [--wait] [--json] [--state-dir DIR]`;

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
  let options: Record<string, number> = {};
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        input: { type: "string" },
        cpu: { type: "string" },
        memory: { type: "string" },
        timeout: { type: "string" },
        replicas: { type: "string" },
        worker: { type: "string" },
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
    if (positionals.length !== 1) throw new TypeError("Cannot submit: give exactly one module");
    const int = (text: string | undefined, name: string) => {
      if (text === undefined) return undefined;
      if (!/^\d+$/.test(text) || Number(text) < 1) {
        throw new RangeError(`Cannot use --${name} '${text}': expected a positive integer`);
      }
      return Number(text);
    };
    const cpu = int(values.cpu, "cpu");
    const replicas = int(values.replicas, "replicas");
    options = {
      ...(cpu ? { cpu } : {}),
      ...(replicas ? { replicas } : {}),
      ...(values.memory ? { memoryBytes: parseSize(values.memory) } : {}),
      ...(values.timeout ? { timeoutMs: parseDuration(values.timeout) } : {}),
    };
  } catch (error) {
    console.error(`error: ${_message(error)}`);
    console.error(_USAGE);
    return 2;
  }
  try {
    const module = await _read(positionals[0]!, "module");
    const input = values.input === undefined ? undefined : await _read(values.input, "input");
    const client = await localClient(values["state-dir"]);
    const id = await client.submit(module, {
      ...options,
      ...(input ? { input } : {}),
      ...(values.worker ? { worker: values.worker } : {}),
    });
    if (!values.wait) {
      console.log(values.json ? JSON.stringify({ job_id: id }) : id);
      return 0;
    }
    const result = await client.result(id, { waitMs: 24 * 3600_000 });
    await printJobResult(id, result, values.json === true);
    return 0;
  } catch (error) {
    console.error(`error: ${_message(error)}`);
    return 1;
  }
}

async function _read(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (cause) {
    throw new Error(`Cannot read ${what} '${path}': ${_message(cause)}`, { cause });
  }
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
