/**
 * The runtime: run WASI jobs in a sandbox without permissions, under enforced limits (memory,
 * wall time, output, fuel), and sign receipts for them. The formats the runtime writes
 * (receipts, job manifests, digests) are in `formats.ts`.
 *
 * @example Run a job under a memory cap and a fuel limit
 * ```ts
 * import { runJob } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
 * const outcome = await runJob(module, {
 *   input: new TextEncoder().encode("abc"),
 *   memoryBytes: 16 * 2 ** 20,
 *   fuel: 1_000_000,
 * });
 * assert.equal(new TextDecoder().decode(outcome.stdout), "cba");
 * assert.ok(outcome.fuelUsed! > 0n);
 * ```
 *
 * @module
 */
export { MEMORY_LIMIT_FRACTION, runJob } from "./run_job.ts";
export type { JobErrorKind, JobOutcome, RunJobOptions, SandboxFiles } from "./run_job.ts";
export type { WasiPreopen } from "./wasi_fs.ts";
export { DEFAULT_LIMITS, runSignedJob } from "./run_signed_job.ts";
export type { RunSignedJobOptions, SignedJob } from "./run_signed_job.ts";
export { SandboxPool } from "./sandbox_pool.ts";
export type { SandboxPoolOptions } from "./sandbox_pool.ts";
export type { ConfinementStatus, SandboxConfinement } from "./sandbox_spawn.ts";
export { SANDBOX_HEAP_MIB } from "./sandbox_spawn.ts";
export { limitMemory, MemoryCapError, WASM_PAGE_BYTES } from "./limit_memory.ts";
export type { LimitedModule, MemoryLimits, TableLimits } from "./limit_memory.ts";
export {
  FUEL_EXHAUSTED_EXPORT,
  FUEL_GLOBAL_EXPORT,
  FUEL_START_EXPORT,
  FUEL_VERSION,
  FuelCache,
  FuelExhaustedError,
  instrumentFuel,
  readFuel,
  startFuel,
} from "./fuel.ts";
export type { FuelCacheOptions, FuelReading, InstrumentFuelOptions } from "./fuel.ts";
export type { KeyPair } from "./ed25519.ts";
export { WASM_KIND } from "./job_manifest.ts";
export type { JobManifest, JobPayload, WasmJobPayload } from "./job_manifest.ts";
export type { Completion, JobResult, Receipt, ResultMetrics } from "./receipt.ts";
