/**
 * Boot artifacts: the provider side (an artifact store that signs boot manifests, and the HTTP
 * handler that serves them with Range and ETag support) and the client side (fetch a manifest,
 * accept it against trusted keys and the rollback state, download and verify artifacts while
 * streaming). Key files of publishers and trusted-key lists live here too.
 *
 * The handler is a plain `(Request) => Response | Promise<Response>`; `Deno.serve` is called by
 * the `serve` subcommand, not here.
 *
 * @example Serve a store's signed manifest over HTTP, then fetch and accept it
 * ```ts
 * import { ArtifactStore, createProviderHandler, fetchBootManifest } from "./mod.ts";
 * import { generateKeyPair } from "../formats.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/stable/x86_64/vmlinuz`, "kernel bytes");
 * const keyPair = await generateKeyPair();
 * const store = new ArtifactStore(dir, { keyPair });
 * const handler = createProviderHandler({
 *   store, channel: "stable", arch: "x86_64",
 *   diskSpace: () => Promise.resolve({ freeBytes: 1e12, totalBytes: 2e12 }),
 * });
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const { manifest } = await fetchBootManifest([`http://127.0.0.1:${server.addr.port}`], {
 *   trustedKeys: [keyPair.publicKey],
 * });
 * assert.equal(manifest.artifacts.kernel?.size_bytes, 12);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  ARTIFACT_FILE_NAMES,
  ArtifactStore,
  PROVIDER_STATE_FILE,
  SAFE_NAME,
} from "./artifact_store.ts";
export type {
  ArtifactEntry,
  ArtifactSet,
  ArtifactStoreMetrics,
  ArtifactStoreOptions,
  FileVersion,
  OpenArtifact,
} from "./artifact_store.ts";
export { createProviderHandler } from "./provider_handler.ts";
export type {
  DiskSpace,
  ProviderHandler,
  ProviderHandlerOptions,
  ProviderMetrics,
  ProviderRequestInfo,
} from "./provider_handler.ts";
export { fetchArtifacts } from "./fetch_artifacts.ts";
export type {
  FetchArtifactsOptions,
  FetchArtifactsResult,
  FetchedArtifact,
} from "./fetch_artifacts.ts";
export { fetchBootManifest } from "./fetch_boot_manifest.ts";
export type { FetchBootManifestOptions, FetchedBootManifest } from "./fetch_boot_manifest.ts";
export { ArtifactFetchError, downloadArtifact } from "./download_artifact.ts";
export type { DownloadArtifactOptions, DownloadResult } from "./download_artifact.ts";
export { acceptBootManifest } from "./accept_boot_manifest.ts";
export type { AcceptBootManifestOptions } from "./accept_boot_manifest.ts";
export {
  ArtifactSizeError,
  hashFile,
  verifyArtifactFile,
  verifyArtifacts,
} from "./verify_artifacts.ts";
export type { ArtifactCheck } from "./verify_artifacts.ts";
export {
  lastAcceptedSequence,
  readManifestState,
  recordAcceptedManifest,
} from "./manifest_state.ts";
export type { ManifestState, ManifestStateEntry } from "./manifest_state.ts";
export {
  parseTrustedKeys,
  readPublicKeyFile,
  readSecretKeyFile,
  readTrustedKeysFile,
  writeKeyPairFiles,
} from "./key_files.ts";
export type { TrustedKey } from "./key_files.ts";
export type { BootArtifact, BootManifest, BootSignature } from "./boot_manifest.ts";
export type { KeyPair } from "../runtime/ed25519.ts";
