/**
 * Test fixture: a job offer as the scheduler sends one, for a 1-core, 16 MiB, 5 s WASI job on
 * x86_64 with a random id, nonce and module hash. `over` replaces fields, and single fields of
 * `requirements`.
 *
 * @module
 */
import type { JobOffer } from "../job_protocol.ts";

/** What a test changes in {@linkcode testOffer}'s offer. */
export type OfferChanges = Partial<Omit<JobOffer, "requirements">> & {
  requirements?: Partial<JobOffer["requirements"]>;
};

/** A job offer for tests (see the module doc). */
export function testOffer(over: OfferChanges = {}): JobOffer {
  const hex = () => crypto.getRandomValues(new Uint8Array(32)).toHex();
  const { requirements, ...fields } = over;
  return {
    job_id: hex(),
    nonce: crypto.randomUUID(),
    module_hash: `sha256:${hex()}`,
    ...fields,
    requirements: {
      cpu_cores: 1,
      memory_mb: 16,
      timeout_seconds: 5,
      arch: "x86_64",
      wasm_runtime: "wasi-preview1",
      ...requirements,
    },
  };
}
