/**
 * `verify receipt`: check a `phase-receipt:v1` receipt against a pinned worker key and,
 * when given, the module, input and output it should describe. Dispatched from `cli/verify.ts`
 * (run with `--allow-read` only).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { peerPublicKey } from "../net/peer_key.ts";
import { readPublicKeyFile } from "../provider/key_files.ts";
import { fromHex } from "../runtime/digest.ts";
import { SignatureError } from "../runtime/errors.ts";
import { ReceiptMismatchError, verifyReceipt } from "../runtime/receipt.ts";
import { fsErrorReason } from "../util/fs_error.ts";

const USAGE =
  `Usage: verify receipt <receipt.json> --key <hex|PeerId|FILE.pub> [--module m.wasm] [--input F]
                      [--output F] [--job-id HEX] [--json]

--key pins the worker: its 64-hex public key, its PeerId (12D3KooW...), or a .pub file.`;

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
export async function verifyReceiptMain(argv: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        key: { type: "string" },
        module: { type: "string" },
        input: { type: "string" },
        output: { type: "string" },
        "job-id": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    return _usage((error as Error).message.split("\n")[0]!.replace(/\. To specify .*$|\.$/, ""));
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || !values.key) {
    return _usage(
      positionals.length !== 1
        ? "expected one <receipt.json>"
        : "--key is required (the worker key is pinned, never taken from the receipt)",
    );
  }
  let receipt: unknown, publicKey: Uint8Array;
  const options: { module?: Uint8Array; input?: Uint8Array; output?: Uint8Array; jobId?: string } =
    {};
  try {
    publicKey = await _pinnedKey(values.key);
    const path = positionals[0]!;
    const text = await _read(path, "receipt", Deno.readTextFile);
    try {
      receipt = JSON.parse(text);
    } catch {
      throw new SyntaxError(`Cannot read receipt '${path}': not JSON`);
    }
    if (values.module) options.module = await _read(values.module, "module", Deno.readFile);
    if (values.input) options.input = await _read(values.input, "input", Deno.readFile);
    if (values.output) options.output = await _read(values.output, "output", Deno.readFile);
    if (values["job-id"]) options.jobId = values["job-id"];
  } catch (error) {
    return _verdict(values.json, false, (error as Error).message.split("\n")[0]!, 2);
  }
  try {
    const checked = await verifyReceipt(receipt, { publicKey, ...options });
    const bound = ["module", "input", "output", "jobId"].filter((k) => k in options);
    return _verdict(
      values.json,
      true,
      `receipt OK: job ${checked.job_id}, completion ${checked.result.completion}, signed by ${checked.worker_pubkey}${
        bound.length ? `; matches ${bound.join(", ")}` : ""
      }`,
      0,
    );
  } catch (error) {
    const known = error instanceof SignatureError || error instanceof ReceiptMismatchError ||
      error instanceof TypeError || error instanceof SyntaxError;
    return _verdict(values.json, false, (error as Error).message, known ? 1 : 2);
  }
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

async function _read<T>(path: string, what: string, read: (path: string) => Promise<T>) {
  try {
    return await read(path);
  } catch (error) {
    throw new Error(`Cannot read ${what} '${path}': ${fsErrorReason(error)}`, { cause: error });
  }
}

function _usage(message: string): number {
  console.error(`verify receipt: ${message} (see verify receipt --help)`);
  return 2;
}

function _verdict(json: boolean, ok: boolean, message: string, code: number): number {
  if (json) console.log(JSON.stringify({ ok, message }));
  else if (ok) console.log(message);
  else if (code === 1) console.error(`verify receipt: FAILED: ${message}`);
  else console.error(`verify receipt: ${message}`);
  return code;
}
