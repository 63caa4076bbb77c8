/**
 * The `start` config file: JSON, every key optional, unknown keys refused.
 *
 * @module
 */
import type { NodeCapabilities } from "./node_info.ts";
import { jobKind } from "../runtime/job_kinds.ts";

/** How a node takes part in the network. */
export type NodeMode = "internet" | "local" | "private";

/** A node's configuration; see {@linkcode defaultNodeConfig} for the defaults. */
export interface NodeConfig {
  /** `internet`: DHT (server) with bootstrap peers + mDNS; `local`: mDNS only; `private`: like
   * `internet` but with an ephemeral identity and nothing written to disk. */
  mode: NodeMode;
  /** Multiaddrs to listen on. */
  listen: string[];
  /**
   * Multiaddrs of bootstrap peers (DHT). Empty in mode `internet`: `bootstrap_file`, else the
   * shipped list of public Amino DHT bootstrap peers (`net/bootstrap_peers.ts`).
   */
  bootstrap: string[];
  /**
   * A bootstrap file (`{"bootstrap": [...]}`, see `net/bootstrap_peers.ts`) used when
   * `bootstrap` is empty; unset means the shipped list (mode `internet` only).
   */
  bootstrap_file?: string;
  /** Use mDNS on the LAN. */
  mdns: boolean;
  /** Interval between mDNS queries, in ms. */
  mdns_interval_ms: number;
  /** The state dir holding `node.key`; unset means the default (`$PLASM_HOME`, ...). */
  state_dir?: string;
  /** The architecture the node reports and advertises. */
  arch: string;
  /** Most open connections. */
  max_connections: number;
  /** Time limit for one protocol stream or dial, in ms. */
  stream_timeout_ms: number;
  /** Interval between re-provides of advertised keys, in ms (records live 48 h). */
  reprovide_interval_ms: number;
  /** The capabilities advertised, with their limits; `{}` advertises none. */
  capabilities: NodeCapabilities;
}

/**
 * The defaults: mode `internet`, listen on `/ip4/0.0.0.0/tcp/4001`, no bootstrap peers, mDNS on
 * (a query every 10 s), the host's architecture, 100 connections, 10 s stream timeout, re-provide every 12 h, and a
 * `wasm` capability with 256 MiB memory and 60 s per job.
 *
 * @example
 * ```ts
 * import { defaultNodeConfig } from "./node_config.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(defaultNodeConfig().mode, "internet");
 * ```
 */
export function defaultNodeConfig(): NodeConfig {
  return {
    mode: "internet",
    listen: ["/ip4/0.0.0.0/tcp/4001"],
    bootstrap: [],
    mdns: true,
    mdns_interval_ms: 10_000,
    arch: Deno.build.arch,
    max_connections: 100,
    stream_timeout_ms: 10_000,
    reprovide_interval_ms: 12 * 3600_000,
    capabilities: { wasm: { max_memory_bytes: 256 * 1024 * 1024, max_duration_ms: 60_000 } },
  };
}

/**
 * Parse a config file over the defaults.
 *
 * @throws {SyntaxError} If the text is not JSON.
 * @throws {TypeError} For an unknown key or a value of the wrong type.
 *
 * @example
 * ```ts
 * import { parseNodeConfig } from "./node_config.ts";
 * import assert from "node:assert/strict";
 *
 * const config = parseNodeConfig('{"mode":"local","listen":["/ip4/127.0.0.1/tcp/0"]}');
 * assert.equal(config.mode, "local");
 * assert.equal(config.max_connections, 100);
 * assert.throws(() => parseNodeConfig('{"modes":"local"}'), TypeError);
 * ```
 */
export function parseNodeConfig(text: string, base: NodeConfig = defaultNodeConfig()): NodeConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new SyntaxError(`Cannot parse config: ${(cause as Error).message}`, { cause });
  }
  const obj = _object(value, "config");
  const config: NodeConfig = structuredClone(base);
  for (const [key, v] of Object.entries(obj)) {
    switch (key) {
      case "mode":
        if (v !== "internet" && v !== "local" && v !== "private") {
          throw new TypeError(`Cannot use config mode '${v}': expected internet, local or private`);
        }
        config.mode = v;
        break;
      case "listen":
      case "bootstrap":
        if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
          throw new TypeError(`Cannot use config ${key}: expected an array of multiaddr strings`);
        }
        config[key] = v;
        break;
      case "mdns":
        if (typeof v !== "boolean") {
          throw new TypeError("Cannot use config mdns: expected a boolean");
        }
        config.mdns = v;
        break;
      case "state_dir":
      case "bootstrap_file":
      case "arch":
        if (typeof v !== "string" || v === "") {
          throw new TypeError(`Cannot use config ${key}: expected a non-empty string`);
        }
        config[key] = v;
        break;
      case "max_connections":
      case "mdns_interval_ms":
      case "stream_timeout_ms":
      case "reprovide_interval_ms":
        config[key] = _positive(v, key);
        break;
      case "capabilities": {
        const caps = _object(v, "capabilities");
        config.capabilities = {};
        for (const [name, c] of Object.entries(caps)) {
          const kind = jobKind(name, "capability").name;
          const limits = _object(c, `capabilities.${kind}`);
          config.capabilities[kind] = {
            max_memory_bytes: _positive(
              limits.max_memory_bytes,
              `capabilities.${kind}.max_memory_bytes`,
            ),
            max_duration_ms: _positive(
              limits.max_duration_ms,
              `capabilities.${kind}.max_duration_ms`,
            ),
          };
        }
        break;
      }
      default:
        throw new TypeError(`Cannot use config key '${key}': unknown`);
    }
  }
  return config;
}

function _object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`Cannot use ${what}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

function _positive(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`Cannot use config ${what}: expected a positive integer`);
  }
  return value;
}
