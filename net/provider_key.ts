/**
 * Provider-record keys: the DHT keys under which nodes advertise capabilities and boot manifests.
 *
 * A key string such as `/phase/capability/x86_64/wasm` is hashed with SHA-256 and wrapped in a
 * CIDv1 with the `raw` codec, so any Kademlia node, public ones included, can carry the record.
 *
 * @module
 */
import { CID } from "multiformats/cid";
import * as raw from "multiformats/codecs/raw";
import { create as createDigest } from "multiformats/hashes/digest";
import { DEFAULT_JOB_KIND } from "../runtime/job_kinds.ts";

/** The multihash code of SHA-256. */
const _SHA2_256 = 0x12;
const _SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The key string for nodes that run a capability (a job kind's name, see
 * `runtime/job_kinds.ts`) on an architecture.
 *
 * @throws {TypeError} If `arch` or `capability` is not a plain name (letters, digits, `._-`).
 *
 * @example
 * ```ts
 * import { capabilityKey } from "./provider_key.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(capabilityKey("x86_64"), "/phase/capability/x86_64/wasm");
 * ```
 */
export function capabilityKey(arch: string, capability: string = DEFAULT_JOB_KIND.name): string {
  return `/phase/capability/${_segment("arch", arch)}/${_segment("capability", capability)}`;
}

/**
 * The key string for providers of the boot manifest of a channel and architecture.
 *
 * @throws {TypeError} If `channel` or `arch` is not a plain name (letters, digits, `._-`).
 *
 * @example
 * ```ts
 * import { manifestKey } from "./provider_key.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(manifestKey("stable", "x86_64"), "/phase/stable/x86_64/manifest");
 * ```
 */
export function manifestKey(channel: string, arch: string): string {
  return `/phase/${_segment("channel", channel)}/${_segment("arch", arch)}/manifest`;
}

/**
 * The CID a provider record is stored under: CIDv1, codec `raw`, multihash SHA-256 of the
 * UTF-8 key string.
 *
 * @example
 * ```ts
 * import { providerKeyCid } from "./provider_key.ts";
 * import assert from "node:assert/strict";
 *
 * const cid = await providerKeyCid("/phase/capability/x86_64/wasm");
 * assert.equal(cid.version, 1);
 * assert.equal(cid.code, 0x55);
 * assert.equal(cid.multihash.digest.length, 32);
 * ```
 */
export async function providerKeyCid(key: string): Promise<CID> {
  if (!key.startsWith("/phase/")) {
    throw new TypeError(
      `Cannot derive a provider CID: key must start with '/phase/', got '${key}'`,
    );
  }
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)),
  );
  return CID.createV1(raw.code, createDigest(_SHA2_256, hash));
}

function _segment(what: string, value: string): string {
  if (!_SEGMENT.test(value)) {
    throw new TypeError(
      `Cannot use ${what} '${value}': expected 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  return value;
}
