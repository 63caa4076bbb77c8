/**
 * The client's whole decision on a boot manifest: parse, signatures against trusted keys and a
 * threshold, expiry, rollback against a state file, the expected channel and architecture, and
 * the checks {@linkcode verifyBootManifest} leaves to the client (real calendar times, one file
 * name per artifact, safe download URLs).
 *
 * @module
 */
import {
  type BootManifest,
  ManifestRejectedError,
  parseBootManifestJson,
  verifyBootManifest,
} from "./boot_manifest.ts";
import { lastAcceptedSequence, readManifestState } from "./manifest_state.ts";

/** Options of {@linkcode acceptBootManifest}. */
export interface AcceptBootManifestOptions {
  /** Raw 32-byte public keys the client trusts. */
  trustedKeys: Uint8Array[];
  /** How many distinct trusted keys must have signed. @default {1} */
  threshold?: number;
  /** The time to check expiry against. @default {new Date()} */
  now?: Date;
  /** A state file (see `manifest_state.ts`) holding the last accepted sequence. @default {undefined} */
  statePath?: string | undefined;
  /** The channel the manifest must be for. @default {undefined} (any) */
  channel?: string | undefined;
  /** The architecture the manifest must be for. @default {undefined} (any) */
  arch?: string | undefined;
}

/**
 * Decide whether to accept a boot manifest, given as JSON text or bytes (read strictly: a
 * duplicate key, a float, a lone surrogate or a byte order mark is refused, see
 * `parseBootManifestJson`) or as a parsed value. Does not record it in the state file: call
 * `recordAcceptedManifest` once it is accepted.
 *
 * @returns The manifest, typed.
 * @throws {ManifestRejectedError} Saying exactly what failed, with a `reason`.
 * @throws {RangeError} For a threshold below 1 or above the number of trusted keys.
 *
 * @example
 * ```ts
 * import { acceptBootManifest } from "./accept_boot_manifest.ts";
 * import { signBootManifest } from "./boot_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = await generateKeyPair();
 * const signed = await signBootManifest({
 *   manifest_version: 1, version: "1", sequence: 1, channel: "beta", arch: "x86_64",
 *   created_at: "2026-01-01T00:00:00Z", expires_at: "2099-01-01T00:00:00Z", artifacts: {},
 *   signatures: [],
 * }, keys);
 * await acceptBootManifest(JSON.stringify(signed), { trustedKeys: [keys.publicKey] });
 * await assert.rejects(
 *   () => acceptBootManifest(signed, { trustedKeys: [keys.publicKey], channel: "stable" }),
 *   /channel is 'beta', expected 'stable'/,
 * );
 * ```
 */
export async function acceptBootManifest(
  input: string | unknown,
  options: AcceptBootManifestOptions,
): Promise<BootManifest> {
  const { trustedKeys, threshold = 1, now = new Date(), statePath, channel, arch } = options;
  if (!Number.isSafeInteger(threshold) || threshold < 1) {
    throw new RangeError(`Cannot verify manifest: threshold must be a whole number >= 1`);
  }
  if (trustedKeys.length === 0) {
    throw new RangeError("Cannot verify manifest: no trusted keys given");
  }
  const distinct = new Set(trustedKeys.map((k) => k.join(","))).size;
  if (threshold > distinct) {
    throw new RangeError(
      `Cannot verify manifest: threshold ${threshold} is more than the ${distinct} trusted key(s)`,
    );
  }
  const value = typeof input === "string" || input instanceof Uint8Array
    ? parseBootManifestJson(input)
    : input;
  let minSequence: number | undefined;
  if (statePath !== undefined) {
    const m = value as Record<string, unknown> | null;
    if (typeof m?.channel === "string" && typeof m?.arch === "string") {
      minSequence = lastAcceptedSequence(await readManifestState(statePath), m.channel, m.arch);
    }
  }
  let manifest: BootManifest;
  try {
    manifest = await verifyBootManifest(value, {
      trustedKeys,
      threshold,
      now,
      ...(minSequence === undefined ? {} : { minSequence }),
    });
  } catch (error) {
    if (error instanceof ManifestRejectedError) throw error;
    // canonicalJson refuses floats and other values signed data cannot hold.
    throw new ManifestRejectedError(
      "shape",
      `Cannot accept manifest: malformed: ${(error as Error).message}`,
      { cause: error },
    );
  }
  _checkClientRules(manifest, now);
  if (channel !== undefined && manifest.channel !== channel) {
    throw new ManifestRejectedError(
      "shape",
      `Cannot accept manifest: channel is '${manifest.channel}', expected '${channel}'`,
    );
  }
  if (arch !== undefined && manifest.arch !== arch) {
    throw new ManifestRejectedError(
      "shape",
      `Cannot accept manifest: arch is '${manifest.arch}', expected '${arch}'`,
    );
  }
  return manifest;
}

function _checkClientRules(manifest: BootManifest, now: Date): void {
  const bad = (what: string) =>
    new ManifestRejectedError("shape", `Cannot accept manifest: malformed: ${what}`);
  for (const key of ["created_at", "expires_at"] as const) {
    const text = manifest[key];
    const ms = Date.parse(text);
    // Date.parse gives NaN for 2026-13-45, and rolls 2026-02-30 over: both are not real times.
    if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 19) !== text.slice(0, 19)) {
      throw bad(`${key} '${text}' is not a real date and time`);
    }
  }
  if (Date.parse(manifest.expires_at) <= now.getTime()) {
    throw new ManifestRejectedError(
      "expired",
      `Cannot accept manifest: expired at ${manifest.expires_at}`,
    );
  }
  const files = new Map<string, string>();
  for (const [name, artifact] of Object.entries(manifest.artifacts)) {
    const other = files.get(artifact.filename);
    if (other !== undefined) {
      throw bad(`artifacts ${other} and ${name} share the filename '${artifact.filename}'`);
    }
    if (artifact.filename.endsWith(".part") || artifact.filename.includes(".tmp-")) {
      throw bad(`artifacts.${name}.filename '${artifact.filename}' is reserved for partial files`);
    }
    files.set(artifact.filename, name);
    const url = artifact.download_url;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url)) {
      if (!/^https?:\/\//i.test(url)) {
        throw bad(`artifacts.${name}.download_url '${url.slice(0, 40)}' is not http(s)`);
      }
      try {
        new URL(url);
      } catch {
        throw bad(`artifacts.${name}.download_url '${url.slice(0, 40)}' is not a URL`);
      }
    } else if (/[\s\\]/.test(url) || url.startsWith("//")) {
      throw bad(`artifacts.${name}.download_url '${url.slice(0, 40)}' is not a URL path`);
    }
  }
}
