/**
 * Which bootstrap peers `start` dials: `--bootstrap`, `--bootstrap-file`, the config's
 * `bootstrap` or `bootstrap_file`, and in mode `internet` without any of these the shipped list,
 * `net/bootstrap.json`: the public Amino DHT's bootstrap peers (see docs/network.md).
 *
 * A bootstrap file is JSON, read strictly and capped: `{"about": "...", "bootstrap": [...]}`,
 * `about` optional, at most 64 multiaddrs.
 *
 * @module
 */
import shipped from "./bootstrap.json" with { type: "json" };
import { multiaddr } from "@multiformats/multiaddr";
import { parseStrictJson } from "../util/strict_json.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { errorMessage } from "../util/error_message.ts";
import { readUpTo } from "../util/read_up_to.ts";

/** Where the chosen bootstrap peers came from. */
export type BootstrapSource = "flags" | "file" | "config" | "config_file" | "default" | "none";

/** The bootstrap peers chosen by {@linkcode bootstrapPeers}. */
export interface BootstrapChoice {
  /** The multiaddrs to dial; may be empty. */
  peers: string[];
  /** Which setting they came from. */
  source: BootstrapSource;
  /** The file read, for the `file`, `config_file` and `default` sources. */
  file?: string;
}

/** The node config's keys {@linkcode bootstrapPeers} reads (see `net/node_config.ts`). */
export interface BootstrapConfig {
  /** The node's mode: only `internet` gets the shipped list. */
  mode: "internet" | "local" | "private";
  /** Listen multiaddrs: a loopback-only node gets no shipped list. */
  listen: string[];
  /** The config's bootstrap multiaddrs. */
  bootstrap: string[];
  /** The config's bootstrap file. */
  bootstrap_file?: string | undefined;
}

/** Options of {@linkcode bootstrapPeers}. */
export interface BootstrapPeersOptions {
  /** `--bootstrap` values; they win over everything else. @default [] */
  flags?: string[];
  /** `--bootstrap-file`; wins over the config. @default none */
  file?: string;
  /** Aborts reading a file. */
  signal?: AbortSignal;
}

/** Largest bootstrap file read, in bytes. */
const _MAX_BYTES = 65_536;
/** Most multiaddrs in a bootstrap file. */
const _MAX_PEERS = 64;
/** Longest multiaddr in a bootstrap file, in characters. */
const _MAX_ADDR = 1024;

/**
 * Choose the bootstrap peers, first match wins: `--bootstrap` flags, `--bootstrap-file`, the
 * config's `bootstrap` (when not empty), the config's `bootstrap_file`, then in mode `internet`
 * the shipped list of public Amino DHT bootstrap peers. Mode `local` runs no DHT and mode
 * `private` never joins the public network by default, so both get no default; nor does a node
 * whose every listen address is loopback (a test or development node nobody outside could reach).
 *
 * @throws {SyntaxError} If a bootstrap file is not JSON (or breaks a strict JSON rule).
 * @throws {TypeError} If a bootstrap file has the wrong shape or a bad multiaddr.
 * @throws {RangeError} If a bootstrap file is too large or lists too many peers.
 * @throws {Error} If a bootstrap file cannot be read (one line naming the file).
 *
 * @example
 * ```ts
 * import { bootstrapPeers } from "./bootstrap_peers.ts";
 * import { defaultNodeConfig } from "./node_config.ts";
 * import assert from "node:assert/strict";
 *
 * const config = defaultNodeConfig(); // mode internet, listening on 0.0.0.0
 * const chosen = await bootstrapPeers(config);
 * assert.equal(chosen.source, "default");
 * assert.ok(chosen.peers.some((p) => p.startsWith("/dnsaddr/bootstrap.libp2p.io/p2p/")));
 * const mine = await bootstrapPeers(config, { flags: ["/ip4/192.0.2.1/tcp/4001"] });
 * assert.deepEqual(mine, { peers: ["/ip4/192.0.2.1/tcp/4001"], source: "flags" });
 * const local = await bootstrapPeers({ ...config, listen: ["/ip4/127.0.0.1/tcp/0"] });
 * assert.deepEqual(local, { peers: [], source: "none" });
 * ```
 */
export async function bootstrapPeers(
  config: BootstrapConfig,
  options: BootstrapPeersOptions = {},
): Promise<BootstrapChoice> {
  const { flags = [], file, signal } = options;
  if (flags.length > 0) return { peers: [...flags], source: "flags" };
  if (file !== undefined) {
    return { peers: await readBootstrapList(file, { signal }), source: "file", file };
  }
  if (config.bootstrap.length > 0) return { peers: [...config.bootstrap], source: "config" };
  if (config.bootstrap_file !== undefined) {
    return {
      peers: await readBootstrapList(config.bootstrap_file, { signal }),
      source: "config_file",
      file: config.bootstrap_file,
    };
  }
  const loopbackOnly = config.listen.length > 0 && config.listen.every(_isLoopback);
  if (config.mode !== "internet" || loopbackOnly) return { peers: [], source: "none" };
  return {
    peers: parseBootstrapList(shipped, "net/bootstrap.json"),
    source: "default",
    file: "net/bootstrap.json",
  };
}

/**
 * Read a bootstrap file: at most 64 KiB, strict JSON (see the module doc).
 *
 * @throws {Error} If it cannot be read: `Cannot read bootstrap file 'x': no such file`.
 * @throws {RangeError} If it is over 64 KiB or lists over 64 peers.
 * @throws {SyntaxError} If it is not strict JSON.
 * @throws {TypeError} If it has the wrong shape or a bad multiaddr.
 *
 * @example
 * ```ts
 * import { readBootstrapList } from "./bootstrap_peers.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"bootstrap":["/ip4/192.0.2.1/tcp/4001"]}');
 * assert.deepEqual(await readBootstrapList(path), ["/ip4/192.0.2.1/tcp/4001"]);
 * await Deno.remove(path);
 * ```
 */
export async function readBootstrapList(
  path: string,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<string[]> {
  const { signal } = options;
  signal?.throwIfAborted();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw new Error(`Cannot read bootstrap file '${path}': ${fsErrorReason(error)}`, {
      cause: error,
    });
  }
  let bytes: Uint8Array;
  try {
    bytes = await readUpTo(file, _MAX_BYTES + 1, signal);
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new Error(`Cannot read bootstrap file '${path}': ${fsErrorReason(error)}`, {
      cause: error,
    });
  } finally {
    file.close();
  }
  if (bytes.length > _MAX_BYTES) {
    throw new RangeError(`Cannot read bootstrap file '${path}': larger than ${_MAX_BYTES} bytes`);
  }
  const value = parseStrictJson(bytes, {
    what: `bootstrap file '${path}'`,
    maxBytes: _MAX_BYTES,
    maxDepth: 4,
  });
  return parseBootstrapList(value, path);
}

/**
 * Check a parsed bootstrap list (`{"about"?: string, "bootstrap": string[]}`) and return its
 * multiaddrs, duplicates dropped. `name` names it in messages.
 *
 * @throws {TypeError} For the wrong shape, an unknown key or a bad multiaddr.
 * @throws {RangeError} For over 64 peers or a multiaddr over 1024 characters.
 *
 * @example
 * ```ts
 * import { parseBootstrapList } from "./bootstrap_peers.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseBootstrapList({ bootstrap: [] }, "empty.json"), []);
 * assert.throws(() => parseBootstrapList({ peers: [] }, "x.json"), {
 *   message: "Cannot use bootstrap file 'x.json': unknown key 'peers'",
 * });
 * ```
 */
export function parseBootstrapList(value: unknown, name: string): string[] {
  const what = `Cannot use bootstrap file '${name}'`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${what}: expected a JSON object`);
  }
  for (const key of Object.keys(value)) {
    if (key !== "about" && key !== "bootstrap") {
      throw new TypeError(`${what}: unknown key '${key}'`);
    }
  }
  const { about, bootstrap } = value as { about?: unknown; bootstrap?: unknown };
  if (about !== undefined && typeof about !== "string") {
    throw new TypeError(`${what}: 'about' must be a string`);
  }
  if (!Array.isArray(bootstrap)) {
    throw new TypeError(`${what}: 'bootstrap' must be an array of multiaddr strings`);
  }
  if (bootstrap.length > _MAX_PEERS) {
    throw new RangeError(`${what}: ${bootstrap.length} peers, at most ${_MAX_PEERS}`);
  }
  const peers: string[] = [];
  for (const entry of bootstrap) {
    if (typeof entry !== "string") {
      throw new TypeError(`${what}: 'bootstrap' must be an array of multiaddr strings`);
    }
    if (entry.length > _MAX_ADDR) {
      throw new RangeError(`${what}: a multiaddr over ${_MAX_ADDR} characters`);
    }
    try {
      multiaddr(entry);
    } catch (cause) {
      throw new TypeError(`${what}: cannot parse multiaddr '${entry}': ${errorMessage(cause)}`, {
        cause,
      });
    }
    if (!peers.includes(entry)) peers.push(entry);
  }
  return peers;
}

/** True for a multiaddr on 127.0.0.0/8, ::1 or `localhost`. */
function _isLoopback(text: string): boolean {
  try {
    const host = multiaddr(text).getComponents().find((c) =>
      ["ip4", "ip6", "dns", "dns4", "dns6"].includes(c.name)
    )?.value;
    return host !== undefined &&
      (/^127\./.test(host) || host === "::1" || host === "localhost");
  } catch {
    return false;
  }
}
