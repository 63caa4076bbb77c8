/**
 * Boot-artifact providers announce themselves: `serve` calls {@linkcode advertiseProvider}.
 *
 * @module
 */
import type { PhaseNode } from "./node.ts";
import { manifestKey } from "./provider_key.ts";

/** What a boot-artifact provider serves. */
export interface AdvertiseProviderOptions {
  /** The boot channel, such as `stable`. */
  channel: string;
  /** The architecture of the artifacts, such as `x86_64`. */
  arch: string;
  /** The base URL clients fetch `/manifest.json` and artifacts from. */
  httpUrl: string;
  /** The `sequence` of the manifest served. */
  manifestSequence: number;
}

/**
 * Advertise a boot-artifact provider: put channel, HTTP URL and manifest sequence into the
 * node's `/phase/info/1.0.0` answer, and publish a DHT provider record for
 * `/phase/<channel>/<arch>/manifest` (re-provided before it expires, while the node runs). mDNS
 * peers see the same info when they ask. Call it again with a new `manifestSequence` after
 * publishing a new manifest; the record is not published twice. A node without a DHT server
 * (mode `local`) only updates its info.
 *
 * @throws {TypeError} If channel, arch or URL is malformed.
 *
 * @example
 * ```ts
 * import { startNode } from "./node.ts";
 * import { advertiseProvider } from "./advertise_provider.ts";
 * import assert from "node:assert/strict";
 *
 * await using node = await startNode({ mdns: false });
 * await advertiseProvider(node, {
 *   channel: "stable",
 *   arch: "x86_64",
 *   httpUrl: "http://127.0.0.1:8080/",
 *   manifestSequence: 7,
 * });
 * assert.equal(node.info().manifest_sequence, 7);
 * ```
 */
export async function advertiseProvider(
  node: PhaseNode,
  options: AdvertiseProviderOptions,
): Promise<void> {
  const { channel, arch, httpUrl, manifestSequence } = options;
  const key = manifestKey(channel, arch);
  node.updateInfo({ channel, http_url: httpUrl, manifest_sequence: manifestSequence });
  if (node.libp2p.services.dht && node.libp2p.services.dht.getMode() === "server") {
    await node.advertise(key);
  }
}
