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
 *          [--capability wasm] [--timeout 10s] [--json] [-v|--verbose]
 * ```
 *
 * Bootstrap peers that cannot be dialled are reported on stderr (`warning: ...`); when all of
 * them failed and mDNS is off, it stops at once. `-v` adds every log record as a JSON line.
 *
 * Exits 0 when something was found, 1 when nothing was (or no bootstrap peer answered), 2 for
 * bad flags.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type DiscoveredPeer, discoverPeers } from "../net/discover_peers.ts";
import { errorLine } from "../util/error_message.ts";
import { flagMessage } from "./_flag_message.ts";

const _USAGE = `Usage: discover [--mdns] [--dht] [--bootstrap MULTIADDR]... [--channel C] [--arch A]
                [--capability wasm] [--timeout 10s] [--json] [-v|--verbose]

Sources: --mdns and/or --dht; neither means mDNS, plus the DHT when --bootstrap is given.
Bootstrap peers that cannot be dialled are reported on stderr; if none answers and mDNS is
off, discover stops at once (exit 1). -v, --verbose: also every log record (JSON lines).
Exit codes: 0 found, 1 nothing found, 2 bad flags.`;

/**
 * Run the `discover` subcommand; resolves with the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./discover.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--timeout", "soon"]), 2);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let options: Parameters<typeof discoverPeers>[0];
  let json = false;
  try {
    const { values } = parseArgs({
      args,
      options: {
        mdns: { type: "boolean" },
        dht: { type: "boolean" },
        bootstrap: { type: "string", multiple: true },
        channel: { type: "string" },
        arch: { type: "string" },
        capability: { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      console.log(_USAGE);
      return 0;
    }
    json = values.json ?? false;
    const bootstrap = values.bootstrap ?? [];
    const either = values.mdns || values.dht;
    options = {
      mdns: either ? values.mdns ?? false : true,
      dht: either ? values.dht ?? false : bootstrap.length > 0,
      bootstrap,
      timeoutMs: parseDuration(values.timeout ?? "10s"),
      ...(values.channel !== undefined ? { channel: values.channel } : {}),
      ...(values.arch !== undefined ? { arch: values.arch } : {}),
      ...(values.capability !== undefined ? { capability: values.capability } : {}),
      onLog: (r: Record<string, unknown>) => {
        if (values.verbose) {
          console.error(JSON.stringify({ ts: new Date().toISOString(), ...r }));
        } else if (r.event === "bootstrap_dial_failed") {
          console.error(`warning: Cannot dial bootstrap peer '${r.multiaddr}': ${r.error}`);
        }
      },
    };
    if (options.capability !== undefined && options.capability !== "wasm") {
      throw new TypeError(`Cannot use --capability '${options.capability}': only wasm is known`);
    }
  } catch (error) {
    console.error(`error: ${flagMessage(error, "discover")}`);
    return 2;
  }
  let found: DiscoveredPeer[];
  try {
    found = await discoverPeers(options);
  } catch (error) {
    console.error(`error: ${errorLine(error)}`);
    return error instanceof TypeError || error instanceof RangeError ? 2 : 1;
  }
  if (json) {
    console.log(JSON.stringify(found.map(_record)));
  } else {
    for (const peer of found) {
      const r = _record(peer);
      console.log(
        [
          r.peer_id,
          `via=${r.via.join(",")}`,
          `arch=${r.arch}`,
          ...(r.channel ? [`channel=${r.channel}`] : []),
          ...(r.manifest_sequence !== undefined ? [`sequence=${r.manifest_sequence}`] : []),
          ...(r.http_url ? [`http=${r.http_url}`] : []),
          ...(r.capabilities.length ? [`capabilities=${r.capabilities.join(",")}`] : []),
          ...r.multiaddrs,
        ].join(" "),
      );
    }
  }
  if (found.length === 0) {
    console.error("error: Found no matching peers before the timeout");
    return 1;
  }
  return 0;
}

/**
 * Parse a duration: `10s`, `500ms`, `2m`, or a number of seconds.
 *
 * @throws {RangeError} If it is not a positive duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./discover.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseDuration("1.5s"), 1500);
 * assert.equal(parseDuration("250ms"), 250);
 * ```
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = match
    ? Number(match[1]) * ({ ms: 1, s: 1000, m: 60_000 }[match[2] ?? "s"] ?? 1000)
    : NaN;
  if (!(ms > 0)) {
    throw new RangeError(`Cannot parse duration '${text}': expected e.g. 10s or 500ms`);
  }
  return Math.round(ms);
}

function _record(peer: DiscoveredPeer) {
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
  };
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
