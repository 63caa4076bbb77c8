/**
 * `verify receipt`: check a `phase-receipt:v1` receipt against a pinned worker key and,
 * when given, the module, input and output it should describe. Dispatched from `cli/verify.ts`
 * (run with `--allow-read` only).
 *
 * @module
 */
import { peerPublicKey } from "../net/peer_key.ts";
import { readPublicKeyFile } from "../provider/key_files.ts";
import { fromHex } from "../runtime/digest.ts";
import { SignatureError } from "../runtime/errors.ts";
import { parseReceiptJson, ReceiptMismatchError, verifyReceipt } from "../runtime/receipt.ts";
import { StrictJsonError } from "../util/strict_json.ts";
import { readFileNamed } from "../util/fs_error.ts";
import { errorLine } from "../util/error_message.ts";
import { encodeFileTree } from "../runtime/file_tree.ts";
import { parseTreeMount, readHostTree } from "../runtime/host_tree.ts";
import { sha256Tag } from "../runtime/digest.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `verify receipt`. */
export const VERIFY_RECEIPT_COMMAND = {
  name: "verify receipt",
  args: "<receipt.json>",
  about:
    `--key pins the worker: its 64-hex public key, its PeerId (12D3KooW...), or a .pub file. The
receipt must be signed by it, and, when given, describe the module, input, output and job id.
--inputs takes what run --dir took (repeat it the same way); --outputs the directory run --out
wrote: their trees must hash to the receipt's inputs_hash and outputs_hash.
Exit codes: 0 verified, 1 not verified, 2 usage or unreadable files.`,
  options: {
    key: { type: "string", value: "<hex|PeerId|FILE.pub>", required: true, description: "worker" },
    module: { type: "string", value: "FILE", description: "the module it ran" },
    input: { type: "string", value: "FILE", description: "the input it was given" },
    output: { type: "string", value: "FILE", description: "the output it committed to" },
    "job-id": { type: "string", value: "HEX", description: "the job id" },
    inputs: {
      type: "string",
      multiple: true,
      value: "HOST[::GUEST]",
      description: "the input files (as run --dir)",
    },
    outputs: { type: "string", value: "DIR", description: "the output files (as run --out)" },
    json: { type: "boolean", description: "{ok, message} on stdout" },
  },
} as const;

/**
 * Run `verify receipt` with the arguments after `receipt`; returns the exit code: 0 verified,
 * 1 not verified (bad signature, wrong key, mismatching module/input/output), 2 usage or
 * unreadable files. `--key` is the worker's hex public key, its PeerId or a `.pub` file.
 *
 * @example
 * ```ts ignore
 * import { verifyReceiptMain } from "./verify_receipt.ts";
 *
 * Deno.exitCode = await verifyReceiptMain(["receipt.json", "--key", "79b5...9664"]);
 * ```
 */
export function verifyReceiptMain(argv: string[], context: CliContext = {}): Promise<number> {
  return runCommand(VERIFY_RECEIPT_COMMAND, argv, context, async (values, positionals, io) => {
    if (positionals.length !== 1) throw new UsageError("expected one <receipt.json>");
    if (!values.key) {
      throw new UsageError(
        "--key is required (the worker key is pinned, never taken from the receipt)",
      );
    }
    let receipt: Uint8Array, publicKey: Uint8Array;
    const trees: { inputs_hash?: string; outputs_hash?: string } = {};
    const options: {
      module?: Uint8Array;
      input?: Uint8Array;
      output?: Uint8Array;
      jobId?: string;
    } = {};
    try {
      publicKey = await _pinnedKey(values.key);
      const path = positionals[0]!;
      receipt = await readFileNamed(path, "receipt");
      if (values.module) options.module = await readFileNamed(values.module, "module");
      if (values.input) options.input = await readFileNamed(values.input, "input");
      if (values.output) options.output = await readFileNamed(values.output, "output");
      if (values["job-id"]) options.jobId = values["job-id"];
      if (values.inputs.length > 0) {
        const mounts = values.inputs.map((spec) => parseTreeMount(spec));
        trees.inputs_hash = await _treeHash(mounts);
      }
      if (values.outputs) trees.outputs_hash = await _treeHash([{ host: values.outputs, at: "" }]);
    } catch (error) {
      return _verdict(io, values.json, false, errorLine(error), 2);
    }
    try {
      // Strictly: a key twice, a float or a lone surrogate is refused, never read one way.
      const checked = await verifyReceipt(parseReceiptJson(receipt), { publicKey, ...options });
      // The receipt is signed: its hashes of the files can be compared with the files given.
      for (const [key, hash] of Object.entries(trees)) {
        const said = checked.result.metrics.extra[key];
        if (said !== hash) {
          throw new ReceiptMismatchError(key, said ?? "(nothing: no files)", hash);
        }
      }
      const bound = ["module", "input", "output", "jobId"].filter((k) => k in options)
        .concat(Object.keys(trees).map((k) => k === "inputs_hash" ? "inputs" : "outputs"));
      return _verdict(
        io,
        values.json,
        true,
        `receipt OK: job ${checked.job_id}, completion ${checked.result.completion}, signed by ${checked.worker_pubkey}${
          bound.length ? `; matches ${bound.join(", ")}` : ""
        }`,
        0,
      );
    } catch (error) {
      if (error instanceof StrictJsonError && error.notJson) {
        const message = `Cannot read receipt '${positionals[0]}': not JSON`;
        return _verdict(io, values.json, false, message, 2);
      }
      const known = error instanceof SignatureError || error instanceof ReceiptMismatchError ||
        error instanceof TypeError || error instanceof SyntaxError;
      return _verdict(io, values.json, false, (error as Error).message, known ? 1 : 2);
    }
  });
}

/** Caps when reading files to verify (the verifier's own files: generous, still bounded). */
const VERIFY_TREE_LIMITS = { maxFiles: 1_000_000, maxBytes: 2 ** 32 };

/** `fileTreeHash` of host directories read the way `run --dir` reads them. */
async function _treeHash(mounts: { host: string; at: string }[]): Promise<string> {
  return sha256Tag(encodeFileTree(await readHostTree(mounts, VERIFY_TREE_LIMITS)));
}

/** The pinned worker key: 64 hex, a PeerId, or a public key file. Never echoes a secret. */
async function _pinnedKey(spec: string): Promise<Uint8Array> {
  if (/^[0-9a-fA-F]{64}$/.test(spec)) return fromHex(spec.toLowerCase(), 32);
  if (/^(12D3KooW|Qm|bafz)[1-9A-Za-z]{40,}$/.test(spec)) {
    try {
      await Deno.lstat(spec); // a file that happens to be named like a PeerId
    } catch {
      try {
        return peerPublicKey(spec);
      } catch (error) {
        throw new TypeError(`Cannot use --key: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  return await readPublicKeyFile(spec);
}

function _verdict(
  io: CommandIo,
  json: boolean,
  ok: boolean,
  message: string,
  code: number,
): number {
  if (json) io.print(JSON.stringify({ ok, message }));
  else if (ok) io.print(message);
  else if (code === 1) io.log(`${io.name}: FAILED: ${message}`); // a verdict, not an error
  else io.fail(message);
  return code;
}
