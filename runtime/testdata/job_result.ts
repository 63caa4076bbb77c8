/**
 * Test fixture: the result part of a receipt for a job that stopped normally, with made-up
 * hashes and 1 ms of run time. `over` replaces fields.
 *
 * @module
 */
import type { JobResult } from "../receipt.ts";

/** A job result for tests (see the module doc). */
export function testJobResult(over: Partial<JobResult> = {}): JobResult {
  return {
    job_spec_hash: Array(32).fill(1),
    output_commitment: Array(32).fill(2),
    output_chunk_count: 1,
    completion: "stop",
    resumption: null,
    metrics: { total_duration_ms: 1, prompt_tokens: 0, completion_tokens: 0, extra: {} },
    ...over,
  };
}
