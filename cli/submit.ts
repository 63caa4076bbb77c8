// deno run --allow-read --allow-write --allow-net=127.0.0.1
//   --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME cli/submit.ts <module.wasm> [flags]
//
// --allow-read: the module, --input, --dir and the node's api.json/api.token in the state dir.
// --allow-write: only `--receipt FILE` (a launcher may narrow it to that file).
// --allow-net=127.0.0.1: the node's local API. --allow-env=...: to find the state dir.
/**
 * `submit`: hand a WASM job to the local node, which runs it on a peer and verifies the receipt.
 *
 * ```
 * submit <module.wasm> [--input FILE|-] [--arg A]... [--env K=V]... [--memory SIZE]
 *        [--timeout DURATION] [--max-output SIZE] [--fuel N] [--cpu N] [--replicas N]
 *        [--worker PEERID] [--search-timeout DURATION] [--dir HOST[::GUEST]]... [--wait]
 *        [--require-boot-signer KEY [--min-boot-sequence N]]
 *        [--receipt FILE] [--json] [--state-dir DIR]
 * ```
 *
 * `--require-boot-signer KEY` (a publisher's hex key id): the job is offered only to workers
 * whose node info shows a boot attestation, signed by their own PeerId key, naming KEY among
 * the boot manifest's signers (with `--min-boot-sequence N`: and a boot sequence of at least N);
 * their receipts must carry that attestation's `boot_manifest_hash` and `boot_sequence`. With
 * `--worker`, that worker must show it. What this proves: docs/boot.md, "Boot provenance".
 *
 * `--dir` (as `run --dir`: GUEST defaults to the directory's name, `::/` is the root) reads the
 * host directories into one file tree, sent with the job (its hash is signed into the manifest
 * as `inputs`) and run preopened as `/` under the mesh's caps: 64 MiB of contents (never more
 * than `--memory`) and 1,000 entries. `result --out DIR` writes the job's output tree.
 *
 * Everything the job gets (module, input, arguments, environment, limits, fuel) is signed into
 * its manifest, hence into its job id and receipt. Stdin is the input when it is piped and no
 * `--input` is given. Prints the job id; with `--wait`, waits and reports like `run`: the job's
 * stdout and stderr, exit code the job's own, or 118-125 with one `submit: error:` line naming the kind
 * when it did not run to its end. 1: the job failed (no worker found, no verified result,
 * replicas disagree) or the node is not answering; 2: bad usage.
 *
 * @module
 */
import { parseDuration, parseSize } from "./_units.ts";
import { fsErrorReason, readFileNamed } from "../util/fs_error.ts";
import { API_CLIENT_EXITS, API_CLIENT_FLAGS } from "./_api_client.ts";
import { localClient, reportError, reportJobResult } from "./_api_client.ts";
import type { ClientSubmitOptions } from "../net/client.ts";
import { errorLine } from "../util/error_message.ts";
import type { FlagValues } from "./_flags.ts";
import { checkFuel, JOB_FLAGS, parseJobEnv } from "./_job_flags.ts";
import { parseTreeMount, readHostTree, type TreeMount } from "../runtime/host_tree.ts";
import { encodeFileTree, FileTreeLimitError } from "../runtime/file_tree.ts";
import { meshTreeLimits } from "../net/mesh_files.ts";
import { type CliContext, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `submit`. */
export const SUBMIT_COMMAND = {
  name: "submit",
  args: "<module.wasm>",
  about:
    `Sends a WASI job to the local node (start), which runs it on a peer and verifies the receipt.
Input: --input, else stdin when it is piped. Prints the job id; with --wait, the job's output
and stderr. ${API_CLIENT_EXITS}
--receipt FILE (with --wait) writes the receipt; with --replicas N, [{peer_id, receipt}, ...].`,
  options: {
    ...JOB_FLAGS,
    cpu: { type: "string", value: "N", description: "cores the worker must offer" },
    replicas: { type: "string", value: "N", description: "run on N workers, compare outputs" },
    worker: { type: "string", value: "PEERID", description: "run on this worker" },
    "search-timeout": { type: "string", value: "DURATION", description: "find a worker within" },
    "require-boot-signer": {
      type: "string",
      value: "KEY",
      description: "only workers that attest booting a release signed by this key",
    },
    "min-boot-sequence": {
      type: "string",
      value: "N",
      description: "with --require-boot-signer: boot sequence at least N",
    },
    dir: {
      type: "string",
      multiple: true,
      value: "HOST[::GUEST]",
      description: "send a host directory as the job's files",
    },
    ...API_CLIENT_FLAGS,
  },
} as const;

/**
 * Run `submit`; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./submit.ts";
 * import assert from "node:assert/strict";
 *
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["--cpu", "x"], { stderr: quiet }), 2);
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(SUBMIT_COMMAND, args, context, async (values, positionals, io) => {
    if (positionals.length !== 1) throw new UsageError("Cannot submit: give exactly one module");
    const options = _submitOptions(values);
    const mounts = _parseDirs(values.dir);
    const json = values.json;
    const signal = io.signal ? { signal: io.signal } : {};
    let id: string | undefined;
    try {
      const module = await readFileNamed(positionals[0]!, "module");
      const input = await _readInput(values.input);
      const inputs = mounts.length ? await _readDirs(mounts, options.memoryBytes) : undefined;
      const client = await localClient(values["state-dir"]);
      id = await client.submit(module, {
        ...options,
        ...signal,
        ...(input.length ? { input } : {}),
        ...(inputs ? { inputs } : {}),
      });
      if (!values.wait) {
        io.print(json ? JSON.stringify({ job_id: id }) : id);
        return 0;
      }
      const result = await client.result(id, { waitMs: 24 * 3600_000, ...signal });
      return await reportJobResult(io, id, result, { json, receiptFile: values.receipt });
    } catch (error) {
      return reportError(io, error, { json, ...(id ? { jobId: id } : {}) });
    }
  });
}

/** The submit options the flags ask for, or a `UsageError`. */
function _submitOptions(values: FlagValues<typeof SUBMIT_COMMAND.options>): ClientSubmitOptions {
  try {
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
    const signer = values["require-boot-signer"];
    const minSequence = values["min-boot-sequence"];
    if (signer !== undefined && !/^[0-9a-fA-F]{64}$/.test(signer)) {
      throw new TypeError(
        `Cannot use --require-boot-signer '${signer}': expected a hex public key (64 hex digits)`,
      );
    }
    if (minSequence !== undefined) {
      if (signer === undefined) {
        throw new TypeError("Cannot use --min-boot-sequence without --require-boot-signer");
      }
      if (!/^\d{1,16}$/.test(minSequence) || !Number.isSafeInteger(Number(minSequence))) {
        throw new RangeError(
          `Cannot use --min-boot-sequence '${minSequence}': expected a whole number`,
        );
      }
    }
    const replicas = int(values.replicas, "replicas");
    checkFuel(values.fuel);
    const env = parseJobEnv(values.env);
    return {
      ...(cpu ? { cpu } : {}),
      ...(replicas ? { replicas } : {}),
      ...(values.memory ? { memoryBytes: parseSize(values.memory) } : {}),
      ...(values.timeout ? { timeoutMs: parseDuration(values.timeout) } : {}),
      ...(values["max-output"] ? { maxOutputBytes: parseSize(values["max-output"]) } : {}),
      ...(values["search-timeout"]
        ? { searchTimeoutMs: parseDuration(values["search-timeout"]) }
        : {}),
      ...(values.fuel !== undefined ? { fuel: values.fuel } : {}),
      ...(values.arg.length ? { args: values.arg } : {}),
      ...(Object.keys(env).length ? { env } : {}),
      ...(values.worker ? { worker: values.worker } : {}),
      ...(signer !== undefined ? { requireBootSigner: signer.toLowerCase() } : {}),
      // 0 asks for any sequence: the same as leaving it out.
      ...(minSequence !== undefined && Number(minSequence) > 0
        ? { minBootSequence: Number(minSequence) }
        : {}),
    };
  } catch (error) {
    throw new UsageError(errorLine(error), { cause: error });
  }
}

/** The `--dir` specs, or a `UsageError`. */
function _parseDirs(specs: string[]): TreeMount[] {
  return specs.map((spec) => {
    try {
      return parseTreeMount(spec);
    } catch (error) {
      throw new UsageError(errorLine(error).replace(/^Cannot use '/, "Cannot use --dir '"));
    }
  });
}

/** The `--dir` directories as one encoded tree, within the mesh's caps. */
async function _readDirs(mounts: TreeMount[], memoryBytes = 64 * 2 ** 20): Promise<Uint8Array> {
  const limits = meshTreeLimits(memoryBytes);
  try {
    return encodeFileTree(await readHostTree(mounts, limits));
  } catch (error) {
    if (!(error instanceof FileTreeLimitError)) throw error;
    throw new RangeError(
      error.kind === "bytes"
        ? `Cannot send --dir: its files pass the ${limits.maxBytes} byte cap of a job on the mesh (64 MiB, never more than --memory)`
        : `Cannot send --dir: it holds more than ${limits.maxFiles} entries, the cap of a job on the mesh`,
      { cause: error },
    );
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
  return await readFileNamed(spec, "input");
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
