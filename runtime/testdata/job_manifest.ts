/**
 * Test fixture: a wasm job manifest (1 s, 64 KiB, made-up module and input hashes) signed by
 * `keyPair`.
 *
 * @module
 */
import type { KeyPair } from "../ed25519.ts";
import { type JobManifest, signJobManifest } from "../job_manifest.ts";

/** A signed job manifest for tests (see the module doc). */
export function testJobManifest(keyPair: KeyPair): Promise<JobManifest> {
  return signJobManifest({
    kind: "wasm",
    module_cid: `sha256:${"a".repeat(64)}`,
    input: `sha256:${"b".repeat(64)}`,
    max_duration_ms: 1000,
    max_memory_bytes: 65536,
  }, { keyPair });
}
