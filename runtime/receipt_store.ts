/**
 * Where a node keeps the receipts it signs or accepts: `<state dir>/receipts/`, one file per
 * job and worker, written atomically.
 *
 * @module
 */
import type { Receipt } from "./receipt.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/**
 * The path a receipt is kept at: `<stateDir>/receipts/<job id>-<first 16 hex of the worker
 * key>.json`, so the receipts of replicas of one job sit side by side.
 *
 * @example
 * ```ts
 * import { receiptPath } from "./receipt_store.ts";
 * import assert from "node:assert/strict";
 *
 * const path = receiptPath("/s", { job_id: "ab".repeat(32), worker_pubkey: "cd".repeat(32) });
 * assert.equal(path, `/s/receipts/${"ab".repeat(32)}-${"cd".repeat(8)}.json`);
 * ```
 */
export function receiptPath(
  stateDir: string,
  receipt: Pick<Receipt, "job_id" | "worker_pubkey">,
): string {
  const { job_id, worker_pubkey } = receipt;
  if (!/^[0-9a-f]{64}$/.test(job_id) || !/^[0-9a-f]{64}$/.test(worker_pubkey)) {
    throw new TypeError("Cannot store receipt: job_id and worker_pubkey must be 64 lowercase hex");
  }
  return `${stateDir}/receipts/${job_id}-${worker_pubkey.slice(0, 16)}.json`;
}

/**
 * Keep `receipt` under `stateDir` (pretty JSON, mode 0600, directory 0700, atomic); resolves
 * with the path written. Storing the same receipt again replaces the file with equal bytes.
 *
 * @example
 * ```ts
 * import { storeReceipt } from "./receipt_store.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const receipt = {
 *   schema_version: 1 as const, job_id: "ab".repeat(32), worker_pubkey: "cd".repeat(32),
 *   signature: "00", completed_at: "2026-01-01T00:00:00Z",
 *   result: {
 *     job_spec_hash: [], output_commitment: [], output_chunk_count: 0,
 *     completion: "stop" as const, resumption: null,
 *     metrics: { total_duration_ms: 0, prompt_tokens: 0, completion_tokens: 0, extra: {} },
 *   },
 * };
 * const path = await storeReceipt(dir, receipt);
 * assert.equal(JSON.parse(await Deno.readTextFile(path)).job_id, receipt.job_id);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function storeReceipt(stateDir: string, receipt: Receipt): Promise<string> {
  const path = receiptPath(stateDir, receipt);
  await Deno.mkdir(`${stateDir}/receipts`, { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, JSON.stringify(receipt, null, 2) + "\n", { mode: 0o600 });
  return path;
}
