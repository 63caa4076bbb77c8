// deno run --allow-net --allow-sys=networkInterfaces --allow-read --allow-write
//   --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME --ignore-env
//   --allow-run=<deno binary>,/bin/bash,/usr/bin/bwrap cli/start.ts [flags]
//
// --allow-run=<deno binary> (Deno.execPath(), spelled out by the task): only to spawn the job
//   sandbox, a deno process with no permissions at all. Without it the node runs no jobs.
//   /bin/bash,/usr/bin/bwrap: to confine that process by the OS too (bubblewrap, seccomp,
//   rlimits; runtime/confine.ts); without them, or without bubblewrap, one sandbox_unconfined
//   warning and Deno's permissions only.
// --allow-net: listen (0.0.0.0 by default), dial peers, mDNS multicast on 224.0.0.251:5353.
// --allow-sys=networkInterfaces: mDNS and the addresses of a 0.0.0.0 listener.
// --allow-read/--allow-write: the state dir (node.key, state.lock, ...), --config and
//   --boot-provenance (read only); a launcher may narrow both to those paths. Mode `private`
//   writes nothing.
// --allow-env=...: to find the state dir. --ignore-env: libraries probing other variables
//   (colour support) read `undefined` instead of failing.
/**
 * `start`: run a Phase node until SIGINT or SIGTERM.
 *
 * ```
 * start [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--bootstrap-file FILE] [--no-mdns]
 *       [--mode internet|local|private] [--config FILE] [--state-dir DIR]
 *       [--relay] [--reachability auto|public|private] [--punch-port PORT]
 *       [--boot-provenance FILE]
 * ```
 *
 * `--boot-provenance FILE` (the boot stub's `/booted/provenance.json`): the node signs a boot
 * attestation of it with its node key, shows it in its node info and `GET /status`, and every
 * receipt it signs carries `extra.boot_manifest_hash` and `extra.boot_sequence`
 * (net/boot_attestation.ts, docs/boot.md). A bad file is a usage error (exit 2).
 *
 * Prints one JSON line on stdout once listening:
 * `{"event":"started","peer_id":...,"public_key":...,"multiaddrs":[...],"mode":...}`, with
 * `api_url` and `dashboard_url` (a one-time link to the node dashboard, valid 15 minutes) when
 * the local API runs; logs are JSON lines on stderr, each with `ts`. The local API also serves
 * `GET /metrics` (Prometheus, bearer token) and the dashboard (docs/operations.md). Holds `<state dir>/state.lock` while it runs: a second
 * `start` (or `serve`) on the same state dir is refused with the PID of the first.
 *
 * Exit codes: 0 after a clean shutdown, 1 when the node cannot start (one `error:` line on
 * stderr), 2 for bad flags or a bad config file (one `error:` line).
 *
 * @module
 */
import { startNode } from "../net/node.ts";
import { natServices, type Reachability } from "../net/nat_services.ts";
import { webSockets } from "@libp2p/websockets";
import { nodeStatus } from "../net/node_status.ts";
import { defaultStateDir, loadOrCreateIdentity } from "../net/identity.ts";
import { defaultNodeConfig, type NodeConfig, parseNodeConfig } from "../net/node_config.ts";
import { bootstrapPeers } from "../net/bootstrap_peers.ts";
import {
  type BootProvenance,
  readBootProvenance,
  signBootAttestation,
} from "../net/boot_attestation.ts";
// Remote execution (issue 6): flags, service and local API; see cli/_exec.ts.
import { EXEC_FLAGS, type ExecFlags, parseExecFlags, startExec } from "./_exec.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { toHex } from "../runtime/digest.ts";
import { lockStateDir, type StateLock } from "../util/state_lock.ts";
import { NodeMetrics } from "../net/metrics.ts";
import { Dashboard } from "../net/dashboard.ts";
import { dashboardSnapshot } from "../net/dashboard_data.ts";
import { multiaddr } from "@multiformats/multiaddr";
import { errorLine, errorMessage } from "../util/error_message.ts";
import type { FlagValues } from "./_flags.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `start`. */
export const START_COMMAND = {
  name: "start",
  about: `Once listening, prints one JSON line on stdout: {"event":"started","peer_id":...,
"public_key":<hex>,"multiaddrs":[...],"api_url":...,"dashboard_url":...}; logs are JSON lines
on stderr. dashboard_url opens the node dashboard once (15 minutes); the local API also serves
GET /metrics (Prometheus text, bearer token from <state dir>/api.token).
State dir: --state-dir, else the config's state_dir, else $PLASM_HOME, else
$XDG_DATA_HOME/plasm, else ~/.local/share/plasm; one start (or serve) per state dir.
Exit codes: 0 stopped by SIGINT/SIGTERM, 1 cannot start, 2 bad flags or config.`,
  options: {
    listen: { type: "string", multiple: true, value: "MULTIADDR", description: "listen here" },
    bootstrap: { type: "string", multiple: true, value: "MULTIADDR", description: "DHT peer" },
    "bootstrap-file": { type: "string", value: "FILE", description: "DHT peers, a JSON list" },
    "no-mdns": { type: "boolean", description: "no mDNS discovery" },
    mode: { type: "string", value: "internet|local|private", description: "see docs/network.md" },
    config: { type: "string", value: "FILE", description: "a JSON node config" },
    "state-dir": { type: "string", value: "DIR", description: "node key, lock, API files" },
    ...EXEC_FLAGS,
    relay: { type: "boolean", description: "relay for private peers (bounded; docs/network.md)" },
    reachability: {
      type: "string",
      value: "auto|public|private",
      description: "private: reserve on a relay (default auto: AutoNAT decides)",
    },
    "punch-port": {
      type: "string",
      value: "PORT",
      description: "dial TCP from this port, for hole punching (not a listen port)",
    },
    "boot-provenance": {
      type: "string",
      value: "FILE",
      description: "sign a boot attestation of this stub record (docs/boot.md)",
    },
  },
} as const;

/**
 * Run the `start` subcommand; resolves with the exit code once the node has stopped (SIGINT,
 * SIGTERM or `context.signal`).
 *
 * @example
 * ```ts
 * import { main } from "./start.ts";
 * import assert from "node:assert/strict";
 *
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["--mode", "nowhere"], { stderr: quiet }), 2);
 * assert.equal(await main(["--reachability", "nowhere"], { stderr: quiet }), 2);
 * assert.equal(await main(["--punch-port", "70000"], { stderr: quiet }), 2);
 * assert.equal(await main(["--boot-provenance", "/no/such/provenance.json"], { stderr: quiet }), 2);
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(START_COMMAND, args, context, async (values, _, io) => {
    const { config, execFlags, nat, provenance } = await _config(values);
    const log = (record: Record<string, unknown>) => {
      io.log(JSON.stringify({ ts: new Date().toISOString(), ...record }));
    };
    const shutdown = new AbortController();
    const onSignal = () => shutdown.abort();
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    for (const name of signals) Deno.addSignalListener(name, onSignal);
    io.signal?.addEventListener("abort", onSignal, { once: true });
    if (io.signal?.aborted) onSignal();
    let lock: StateLock | undefined;
    try {
      let secretKey: Uint8Array | undefined;
      let stateDir: string | undefined;
      if (config.mode !== "private") {
        stateDir = values["state-dir"] ?? config.state_dir ??
          defaultStateDir((name) => Deno.env.get(name));
        // One process per state dir: the same key would mean two nodes with one PeerId.
        lock = await lockStateDir(stateDir, { command: "start" });
        if (lock.staleFrom !== undefined) {
          log({
            level: "warn",
            event: "stale_lock_taken_over",
            path: lock.path,
            pid: lock.staleFrom,
          });
        }
        secretKey = (await loadOrCreateIdentity(stateDir)).secretKey;
      }
      await _runNode(io, {
        config,
        execFlags,
        nat,
        provenance,
        secretKey,
        stateDir,
        log,
        signal: shutdown.signal,
      });
      return 0;
    } catch (error) {
      if (shutdown.signal.aborted) return 0;
      return io.fail(_startError(error, execFlags));
    } finally {
      for (const name of signals) Deno.removeSignalListener(name, onSignal);
      io.signal?.removeEventListener("abort", onSignal);
      await lock?.release();
    }
  });
}

/** The node config and execution flags the flags (and `--config`) ask for, or a `UsageError`. */
async function _config(
  values: FlagValues<typeof START_COMMAND.options>,
): Promise<
  { config: NodeConfig; execFlags: ExecFlags; nat: _NatFlags; provenance?: BootProvenance }
> {
  try {
    const config = values.config
      ? parseNodeConfig(await _readConfig(values.config))
      : defaultNodeConfig();
    if (values.mode !== undefined) {
      if (values.mode !== "internet" && values.mode !== "local" && values.mode !== "private") {
        throw new TypeError(
          `Cannot use --mode '${values.mode}': expected internet, local or private`,
        );
      }
      config.mode = values.mode;
    }
    if (values.listen.length > 0) config.listen = values.listen;
    // Without any, mode internet dials the public Amino DHT's peers (net/bootstrap_peers.ts).
    config.bootstrap = (await bootstrapPeers(config, {
      flags: values.bootstrap,
      ...(values["bootstrap-file"] !== undefined ? { file: values["bootstrap-file"] } : {}),
    })).peers;
    if (values["no-mdns"]) config.mdns = false;
    const execFlags = parseExecFlags(values);
    const reachability = values.reachability ?? "auto";
    if (reachability !== "auto" && reachability !== "public" && reachability !== "private") {
      throw new TypeError(
        `Cannot use --reachability '${reachability}': expected auto, public or private`,
      );
    }
    for (const addr of [...config.listen, ...config.bootstrap]) {
      try {
        multiaddr(addr);
      } catch (cause) {
        throw new TypeError(`Cannot parse multiaddr '${addr}': ${errorMessage(cause)}`, { cause });
      }
    }
    const punchPort = _punchPort(values["punch-port"], config.listen);
    // Read once, at start: the stub's record does not change while the node runs.
    const file = values["boot-provenance"];
    const provenance = file === undefined ? undefined : await readBootProvenance(file);
    return {
      config,
      execFlags,
      ...(provenance ? { provenance } : {}),
      nat: { relay: values.relay === true, reachability, ...(punchPort ? { punchPort } : {}) },
    };
  } catch (error) {
    throw new UsageError(errorLine(error), { cause: error });
  }
}

/** Start the node and its execution service, print the `started` line, run until `signal`. */
async function _runNode(io: CommandIo, o: {
  config: NodeConfig;
  execFlags: ExecFlags;
  nat: _NatFlags;
  provenance?: BootProvenance | undefined;
  secretKey: Uint8Array | undefined;
  stateDir: string | undefined;
  log: (record: Record<string, unknown>) => void;
  signal: AbortSignal;
}): Promise<void> {
  const { config, stateDir, signal } = o;
  // Receipts are signed with the PeerId's key, so private mode needs one in hand too.
  const keyPair = await generateKeyPair(o.secretKey);
  // /metrics counts from the log records, so metrics and log never disagree.
  const metrics = new NodeMetrics({ info: { version: _VERSION, mode: config.mode } });
  const log = (record: Record<string, unknown>) => {
    metrics.observe(record);
    o.log(record);
  };
  if (config.mode === "local" && config.bootstrap.length > 0) {
    log({ level: "warn", event: "bootstrap_ignored", reason: "mode local runs no DHT" });
  }
  // NAT traversal (AutoNAT, relay, DCUtR, identify push): net/nat_services.ts.
  const nat = natServices({ ...o.nat, onLog: log });
  const node = await startNode({
    secretKey: keyPair.secretKey,
    listen: [...config.listen, ...nat.listen],
    // WebSockets next to TCP: listen with `--listen /ip4/.../tcp/N/ws`; QUIC needs an npm
    // node_modules layout this project does not have (docs/network.md, "NAT traversal").
    transports: [...nat.transports, webSockets()],
    services: nat.services,
    bootstrap: config.mode === "local" ? [] : config.bootstrap,
    mdns: config.mdns,
    mdnsIntervalMs: config.mdns_interval_ms,
    dht: config.mode !== "local",
    arch: config.arch,
    maxConnections: config.max_connections,
    streamTimeoutMs: config.stream_timeout_ms,
    reprovideIntervalMs: config.reprovide_interval_ms,
    capabilities: config.capabilities,
    metrics: metrics.libp2pMetrics(),
    onLog: log,
    signal,
  });
  // The node key's own statement of how this machine booted (docs/boot.md, "Boot provenance").
  const bootAttestation = o.provenance
    ? await signBootAttestation(o.provenance, { keyPair, peerId: node.peerId })
    : undefined;
  if (bootAttestation) {
    node.updateInfo({ boot_attestation: bootAttestation });
    const { boot_manifest_hash, boot_sequence, signer_key_ids } = bootAttestation.provenance;
    log({
      level: "info",
      event: "boot_attested",
      boot_manifest_hash,
      boot_sequence,
      signer_key_ids,
    });
  }
  const startedAt = new Date().toISOString();
  let service: Awaited<ReturnType<typeof startExec>>["service"] | undefined;
  const dashboard = new Dashboard({
    snapshot: () => {
      if (!service) throw new Error("the node is still starting");
      return dashboardSnapshot({
        node: {
          peer_id: node.peerId,
          public_key: toHex(keyPair.publicKey),
          mode: config.mode,
          version: _VERSION,
          started_at: startedAt,
        },
        info: () => node.info(),
        multiaddrs: () => node.multiaddrs,
        connections: () => node.libp2p.getConnections(),
        jobs: service.store,
        progress: (id) => service?.scheduler.progress(id),
        worker: () => service?.policy,
        verified,
      });
    },
    receipt: (jobId) => service?.store.get(jobId)?.receipt,
  });
  const verified = new Map<string, string>();
  let exec: Awaited<ReturnType<typeof startExec>> | undefined;
  try {
    exec = await startExec(node, o.execFlags, {
      keyPair,
      stateDir,
      wasm: config.capabilities.wasm,
      log,
      api: { metrics, dashboard, status: () => nodeStatus(node, nat.relayLimits) },
      ...(bootAttestation ? { bootAttestation } : {}),
    });
    service = exec.service;
    const policy = service.policy;
    metrics.attach({
      connections: () => node.libp2p.getConnections(),
      worker: () => policy,
      pendingJobs: () => exec?.service.store.unfinished().length ?? 0,
    });
    const started = {
      peer_id: node.peerId,
      public_key: toHex(keyPair.publicKey),
      multiaddrs: node.multiaddrs,
      mode: config.mode,
      ...(stateDir ? { state_dir: stateDir } : {}),
      ...(exec.apiUrl ? { api_url: exec.apiUrl } : {}),
    };
    // The dashboard link carries a one-time code: stdout only, never the log.
    const link = exec.apiUrl ? { dashboard_url: dashboard.link(exec.apiUrl) } : {};
    io.print(JSON.stringify({ event: "started", ...started, ...link }));
    log({ level: "info", event: "started", ...started });
    if (!signal.aborted) {
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    }
    log({ level: "info", event: "shutting_down" });
  } finally {
    await exec?.stop();
    await node.stop();
  }
}

const _VERSION = "0.1.0";

interface _NatFlags {
  relay: boolean;
  reachability: Reachability;
  punchPort?: number;
}

/** `--punch-port`: a TCP port 1-65535 that no `--listen` address uses. */
function _punchPort(text: string | undefined, listen: string[]): number | undefined {
  if (text === undefined) return undefined;
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new TypeError(`Cannot use --punch-port '${text}': expected a port from 1 to 65535`);
  }
  if (listen.some((addr) => new RegExp(`/tcp/${port}(/|$)`).test(addr))) {
    throw new TypeError(
      `Cannot use --punch-port '${text}': the node listens on that port; pick another`,
    );
  }
  return port;
}

/** One line for a start-up failure, naming what the user can change. */
function _startError(error: unknown, exec: ExecFlags): string {
  if (error instanceof Error && error.name === "StateDirLockedError") {
    return `${error.message}; stop it first or give this node another --state-dir`;
  }
  if (error instanceof Deno.errors.AddrInUse && exec.apiPort !== undefined) {
    return `Cannot listen on 127.0.0.1:${exec.apiPort} (--api-port): address already in use`;
  }
  return errorLine(error);
}

async function _readConfig(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    const why = cause instanceof Deno.errors.NotFound
      ? "no such file"
      : cause instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : cause instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : errorMessage(cause);
    throw new TypeError(`Cannot read config '${path}': ${why}`, { cause });
  }
}

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  Deno.exitCode = await main(Deno.args);
}
