/**
 * A boot-artifact provider's libp2p side: start a node with the provider's identity, advertise
 * the manifest it serves, and advertise again whenever the manifest's sequence changes.
 *
 * @module
 */
import { advertiseProvider } from "./advertise_provider.ts";
import { type NodeLogRecord, type PhaseNode, startNode } from "./node.ts";
import { errorMessage } from "../util/error_message.ts";

/** What {@linkcode startAdvertiseLoop} advertises, and how. */
export interface AdvertiseLoopOptions {
  /** The node's Ed25519 secret key (its PeerId). */
  secretKey: Uint8Array;
  /** The boot channel, such as `stable`. */
  channel: string;
  /** The architecture of the artifacts, such as `x86_64`. */
  arch: string;
  /** The base URL clients fetch `/manifest.json` and artifacts from. */
  httpUrl: string;
  /** The sequence of the manifest served now, or `undefined` when there is none. */
  manifestSequence: () => Promise<number | undefined>;
  /** Publish DHT provider records. */
  dht: boolean;
  /** Answer on mDNS. */
  mdns: boolean;
  /** Listen multiaddrs of the node. */
  listen: string[];
  /** DHT bootstrap peers. @default {[]} */
  bootstrap?: string[];
  /** How often the manifest's sequence is checked, in ms. @default {30000} */
  intervalMs?: number;
  /** Log records: the node's, and `advertise_failed` warnings. @default {() => {}} */
  onLog?: (record: NodeLogRecord) => void;
}

/** A running advertisement: the node and how to stop both. */
export interface AdvertiseLoop extends AsyncDisposable {
  /** The provider's libp2p node. */
  readonly node: PhaseNode;
  /** Stop re-advertising and stop the node. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Start the provider's node, advertise the manifest (a failure is logged as
 * `advertise_failed` and retried at the next check), then check the sequence every `intervalMs` and advertise
 * again when it changed.
 *
 * @example
 * ```ts
 * import { startAdvertiseLoop } from "./advertise_loop.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const { secretKey } = await generateKeyPair();
 * await using loop = await startAdvertiseLoop({
 *   secretKey,
 *   channel: "stable",
 *   arch: "x86_64",
 *   httpUrl: "http://127.0.0.1:8080/",
 *   manifestSequence: () => Promise.resolve(3),
 *   dht: false,
 *   mdns: false,
 *   listen: ["/ip4/127.0.0.1/tcp/0"],
 * });
 * assert.equal(loop.node.info().manifest_sequence, 3);
 * ```
 */
export async function startAdvertiseLoop(options: AdvertiseLoopOptions): Promise<AdvertiseLoop> {
  const { channel, arch, httpUrl, bootstrap = [], intervalMs = 30_000, onLog = () => {} } = options;
  const node = await startNode({
    secretKey: options.secretKey,
    listen: options.listen,
    bootstrap,
    dht: options.dht,
    mdns: options.mdns,
    arch,
    onLog,
  });
  let advertised = -1;
  const publish = async () => {
    const sequence = await options.manifestSequence();
    if (sequence === undefined || sequence === advertised) return;
    await advertiseProvider(node, { channel, arch, httpUrl, manifestSequence: sequence });
    advertised = sequence; // only now: a failed attempt is retried at the next check
  };
  const attempt = () =>
    publish().catch((error) =>
      onLog({
        level: "warn",
        event: "advertise_failed",
        error: errorMessage(error),
        retry_in_ms: intervalMs,
      })
    );
  await attempt();
  const timer = setInterval(attempt, intervalMs);
  let stopped: Promise<void> | undefined;
  const stop = () => {
    clearInterval(timer);
    return stopped ??= node.stop();
  };
  return { node, stop, [Symbol.asyncDispose]: stop };
}
