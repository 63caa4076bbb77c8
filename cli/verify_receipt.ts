/**
 * `verify receipt`: check a `phase-receipt:v1` receipt against a pinned worker key and,
 * when given, the module, input and output it should describe. Dispatched from `cli/verify.ts`
 * (run with `--allow-read` only).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fromHex } from "../runtime/digest.ts";
import { SignatureError } from "../runtime/errors.ts";
import { ReceiptMismatchError, verifyReceipt } from "../runtime/receipt.ts";

const USAGE =
  `Usage: verify receipt <receipt.json> --key <hex|FILE.pub> [--module m.wasm] [--input F] [--output F] [--job-id HEX] [--json]`;

/**
 * Run `verify receipt` with the arguments after `receipt`; returns the exit code: 0 verified,
 * 1 not verified (bad signature, wrong key, mismatching module/input/output), 2 usage or
 * unreadable files.
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
    console.error(`verify receipt: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || !values.key) {
    console.error(
      `verify receipt: ${
        positionals.length !== 1
          ? "expected one <receipt.json>"
          : "--key is required (the worker key is pinned, never taken from the receipt)"
      }\n${USAGE}`,
    );
    return 2;
  }
  let receipt: unknown, publicKey: Uint8Array;
  const options: { module?: Uint8Array; input?: Uint8Array; output?: Uint8Array; jobId?: string } =
    {};
  try {
    const keyText = /^[0-9a-fA-F]{64}$/.test(values.key)
      ? values.key
      : (await Deno.readTextFile(values.key)).trim();
    publicKey = fromHex(keyText.toLowerCase(), 32);
    const text = await Deno.readTextFile(positionals[0]!);
    try {
      receipt = JSON.parse(text);
    } catch {
      throw new SyntaxError(`Cannot read receipt '${positionals[0]}': not JSON`);
    }
    if (values.module) options.module = await Deno.readFile(values.module);
    if (values.input) options.input = await Deno.readFile(values.input);
    if (values.output) options.output = await Deno.readFile(values.output);
    if (values["job-id"]) options.jobId = values["job-id"];
  } catch (error) {
    return _verdict(values.json, false, (error as Error).message, 2);
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

function _verdict(json: boolean, ok: boolean, message: string, code: number): number {
  if (json) console.log(JSON.stringify({ ok, message }));
  else if (ok) console.log(message);
  else console.error(`verify receipt: FAILED: ${message}`);
  return code;
}
