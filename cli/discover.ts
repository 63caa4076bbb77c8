// deno run --allow-net --allow-sys=networkInterfaces --ignore-env cli/discover.ts [flags]
//
// --allow-net: mDNS multicast (224.0.0.251:5353) and dialling the peers found.
// --allow-sys=networkInterfaces: mDNS. --ignore-env: libraries probing variables (colour
// support) read `undefined`. No read, write, run or env: the identity is ephemeral.
/**
 * `discover`: list Phase nodes and boot providers found by mDNS and in the DHT.
 *
 * ```
 * discover [--mdns] [--dht] [--bootstrap MULTIADDR]... [--channel C] [--arch A]
 *          [--capability wasm] [--timeout 10s] [--mdns-quiet 200ms] [--mdns-wait 2s]
 *          [--json] [-v|--verbose]
 * ```
 *
 * mDNS ends as soon as its answers stop changing: `--mdns-quiet` without a new peer after the
 * first answer, or `--mdns-wait` without any answer (both within `--timeout`).
 *
 * Bootstrap peers that cannot be dialled are reported on stderr (`warning: ...`); when all of
 * them failed and mDNS is off, it stops at once. `-v` adds every log record as a JSON line.
 *
 * Exits 0 when something was found, 1 when nothing was (or no bootstrap peer answered), 2 for
 * bad flags.
 *
 * @module
 */
import { type DiscoveredPeer, discoverPeers } from "../net/discover_peers.ts";
import { errorLine } from "../util/error_message.ts";
import { type BootAttestation, verifyBootAttestation } from "../net/boot_attestation.ts";
import type { FlagValues } from "./_flags.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";
import { parseDuration } from "./_units.ts";

/** The options of `discover`. */
export const DISCOVER_COMMAND = {
  name: "discover",
  about: `Sources: --mdns and/or --dht; neither means mDNS, plus the DHT when --bootstrap is given.
mDNS ends --mdns-quiet after the last new answer, or after --mdns-wait without any answer.
Bootstrap peers that cannot be dialled are reported on stderr; if none answers and mDNS is
off, discover stops at once (exit 1). -v, --verbose: also every log record (JSON lines).
Exit codes: 0 found, 1 nothing found, 2 bad flags.`,
  options: {
    mdns: { type: "boolean", description: "look on the local network" },
    dht: { type: "boolean", description: "look in the DHT (needs --bootstrap)" },
    bootstrap: { type: "string", multiple: true, value: "MULTIADDR", description: "DHT peer" },
    channel: { type: "string", value: "C", description: "only providers of this channel" },
    arch: { type: "string", value: "A", description: "only this architecture" },
    capability: { type: "string", value: "wasm", description: "only nodes that run jobs" },
    timeout: { type: "string", default: "10s", value: "DURATION", description: "look for" },
    "mdns-quiet": {
      type: "string",
      default: "200ms",
      value: "DURATION",
      description: "mDNS: end this long after the last new answer",
    },
    "mdns-wait": {
      type: "string",
      default: "2s",
      value: "DURATION",
      description: "mDNS: end this long after start without any answer",
    },
    json: { type: "boolean", description: "one JSON array on stdout" },
    verbose: { type: "boolean", short: "v", description: "also every log record" },
  },
} as const;

/**
 * Run the `discover` subcommand; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./discover.ts";
 * import assert from "node:assert/strict";
 *
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["--timeout", "soon"], { stderr: quiet }), 2);
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(DISCOVER_COMMAND, args, context, async (values, _, io) => {
    const options = _options(values, io);
    let found: DiscoveredPeer[];
    try {
      found = await discoverPeers(options);
    } catch (error) {
      // A bad argument (a flag's value discoverPeers refuses) is a usage error.
      if (error instanceof TypeError || error instanceof RangeError) {
        return io.usage(errorLine(error));
      }
      return io.fail(errorLine(error));
    }
    // A boot attestation is shown only when it verifies with the peer's own key.
    const boots = await Promise.all(
      found.map((peer) =>
        peer.info.boot_attestation === undefined ? undefined : verifyBootAttestation(
          peer.info.boot_attestation,
          { peerId: peer.peer_id },
        ).catch(() => undefined)
      ),
    );
    if (values.json) {
      io.print(JSON.stringify(found.map((peer, i) => _record(peer, boots[i]))));
    } else {
      for (const [i, peer] of found.entries()) {
        const r = _record(peer, boots[i]);
        io.print(
          [
            r.peer_id,
            `via=${r.via.join(",")}`,
            `arch=${r.arch}`,
            ...(r.channel ? [`channel=${r.channel}`] : []),
            ...(r.manifest_sequence !== undefined ? [`sequence=${r.manifest_sequence}`] : []),
            ...(r.http_url ? [`http=${r.http_url}`] : []),
            ...(r.capabilities.length ? [`capabilities=${r.capabilities.join(",")}`] : []),
            ...(r.boot_attestation ? [_bootField(r.boot_attestation)] : []),
            ...r.multiaddrs,
          ].join(" "),
        );
      }
    }
    if (found.length === 0) return io.fail("Found no matching peers before the timeout");
    return 0;
  });
}

/** The options of `discoverPeers` the flags ask for, or a `UsageError`. */
function _options(
  values: FlagValues<typeof DISCOVER_COMMAND.options>,
  io: CommandIo,
): Parameters<typeof discoverPeers>[0] {
  const timeoutMs = _duration(values.timeout, "timeout");
  const mdnsQuietMs = _duration(values["mdns-quiet"], "mdns-quiet");
  const mdnsWaitMs = _duration(values["mdns-wait"], "mdns-wait");
  if (values.capability !== undefined && values.capability !== "wasm") {
    throw new UsageError(`Cannot use --capability '${values.capability}': only wasm is known`);
  }
  const bootstrap = values.bootstrap;
  const either = values.mdns || values.dht;
  return {
    mdns: either ? values.mdns : true,
    dht: either ? values.dht : bootstrap.length > 0,
    bootstrap,
    timeoutMs,
    mdnsQuietMs,
    mdnsWaitMs,
    ...(values.channel !== undefined ? { channel: values.channel } : {}),
    ...(values.arch !== undefined ? { arch: values.arch } : {}),
    ...(values.capability !== undefined ? { capability: values.capability } : {}),
    ...(io.signal ? { signal: io.signal } : {}),
    onLog: (r: Record<string, unknown>) => {
      if (values.verbose) {
        io.log(JSON.stringify({ ts: new Date().toISOString(), ...r }));
      } else if (r.event === "bootstrap_dial_failed") {
        io.log(`warning: Cannot dial bootstrap peer '${r.multiaddr}': ${r.error}`);
      }
    },
  };
}

/** A duration flag's value in ms (above 0), or a `UsageError`. */
function _duration(text: string, flag: string): number {
  let ms;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(errorLine(error));
  }
  if (ms < 1) throw new UsageError(`Cannot use --${flag} '${text}': expected a duration above 0`);
  return ms;
}

/** `boot=seq:<N>,signer:<first 16 hex of each signer key>` */
function _bootField(attestation: BootAttestation): string {
  const { boot_sequence, signer_key_ids } = attestation.provenance;
  return `boot=seq:${boot_sequence},signer:${
    signer_key_ids.map((id) => id.slice(0, 16)).join("+")
  }`;
}

function _record(peer: DiscoveredPeer, boot: BootAttestation | undefined) {
  return {
    peer_id: peer.peer_id,
    multiaddrs: peer.multiaddrs,
    via: peer.via,
    arch: peer.info.arch,
    http_url: peer.info.http_url,
    channel: peer.info.channel,
    manifest_sequence: peer.info.manifest_sequence,
    capabilities: Object.keys(peer.info.capabilities),
    limits: peer.info.capabilities,
    ...(boot ? { boot_attestation: boot } : {}),
  };
}

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  Deno.exitCode = await main(Deno.args);
}
