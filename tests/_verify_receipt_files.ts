/**
 * Test helper: `verify receipt` against a job's bytes, written as the files the CLI reads.
 *
 * @module
 */
import { type Finished, runVerifyReceipt } from "./_task.ts";

/** The job's parts for {@linkcode runVerifyReceiptFiles}; each one given is checked. */
export interface ReceiptJobFiles {
  /** Where `input` and `output` are written (as `input` and `output`). */
  dir: string;
  /** Path of the job's module (`--module`). */
  module?: string;
  /** The job's input (`--input`). */
  input?: string | Uint8Array;
  /** The job's output (`--output`). */
  output?: string | Uint8Array;
}

/**
 * `verify receipt RECEIPT --key KEY` (the `verify` task's flags) with `--module`, `--input` and
 * `--output` for the parts of `job` given, the bytes written into `job.dir`; then `args`.
 *
 * @example
 * ```ts
 * import { runVerifyReceiptFiles } from "./_verify_receipt_files.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const { code } = await runVerifyReceiptFiles(`${dir}/missing.json`, "00".repeat(32), {
 *   dir,
 *   output: "dlroW ,olleH",
 * });
 * assert.equal(code, 2);
 * assert.equal(await Deno.readTextFile(`${dir}/output`), "dlroW ,olleH");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runVerifyReceiptFiles(
  receipt: string,
  key: string,
  job: ReceiptJobFiles,
  args: string[] = [],
): Promise<Finished> {
  const flags = job.module === undefined ? [] : ["--module", job.module];
  for (const part of ["input", "output"] as const) {
    const bytes = job[part];
    if (bytes === undefined) continue;
    const path = `${job.dir}/${part}`;
    if (typeof bytes === "string") await Deno.writeTextFile(path, bytes);
    else await Deno.writeFile(path, bytes);
    flags.push(`--${part}`, path);
  }
  return await runVerifyReceipt(receipt, key, [...flags, ...args]);
}
