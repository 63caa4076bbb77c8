// deno run --allow-net --allow-read --allow-write=<state dir> --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME --allow-sys=statfs,networkInterfaces --ignore-env cli/serve.ts
// No --allow-run or --allow-ffi. Writes only the state dir (node key on first use,
// provider_state.json, state.lock); reads the artifacts, the key and the state dir; statfs for
// /health; networkInterfaces for mDNS and the advertised URL; --ignore-env because libp2p's
// logging dependencies read other variables at import time (they get `undefined`). The deno.json
// task grants --allow-write without a path, as the state dir is only known at run time
// (--state-dir, PLASM_HOME, ...); a launcher that knows it narrows the grant to it.
/**
 * `serve`: the boot-artifact provider. Serves `DIR/<channel>/<arch>/{kernel,initramfs,rootfs}`
 * over HTTP with signed boot manifests and Range downloads, until SIGINT or SIGTERM.
 *
 * Run with exactly:
 *   deno run --allow-net --allow-read --allow-write=<state dir>
 *     --allow-env=PLASM_HOME,XDG_DATA_HOME,HOME --allow-sys=statfs,networkInterfaces
 *     --ignore-env cli/serve.ts [options]
 * The deno.json task `serve` grants `--allow-write` without a path, so `--state-dir` and
 * `PLASM_HOME` work through it; a launcher that knows the state dir narrows the grant to it.
 * `serve` checks the grant at start and names the flag it needs. It holds
 * `<state dir>/state.lock` while it runs: a second `serve` (or `start`) on the same state dir,
 * which would share its node key and PeerId, is refused with the PID of the first.
 *
 * Output: the banner on stdout; logs on stderr as JSON lines, each with `ts`. A start-up failure
 * is one `serve: ...` line on stderr.
 *
 * Exit codes: 0 after a clean shutdown, 1 start-up failure, 2 usage.
 *
 * @module
 */
import { defaultStateDir, loadOrCreateIdentity } from "../net/identity.ts";
import { readSecretKeyFile } from "../provider/key_files.ts";
import { ArtifactStore, SAFE_NAME } from "../provider/artifact_store.ts";
import { createProviderHandler } from "../provider/provider_handler.ts";
import { toHex } from "../runtime/digest.ts";
import type { AdvertiseLoop } from "../net/advertise_loop.ts";
import { lockStateDir } from "../util/state_lock.ts";
import { formatSize, parseDuration, parseSize } from "./_units.ts";
import { errorLine, errorMessage } from "../util/error_message.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import type { FlagValues } from "./_flags.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

const VERSION = "0.1.0";

/** The options of `serve`. */
export const SERVE_COMMAND = {
  name: "serve",
  about: `Serves DIR/<channel>/<arch>/{kernel,initramfs,rootfs} (also vmlinuz, bzImage, initrd,
initramfs.img, rootfs.img, rootfs.squashfs) with signed manifests at /manifest.json.
DIR defaults to <state dir>/artifacts; the key to the node identity in the state dir.
--port 0 picks a free port; the banner line 'Listening on http://HOST:PORT/' names it.
Unless --no-dht and --no-mdns are both given, a libp2p node (the node identity) advertises
/phase/<channel>/<arch>/manifest with the HTTP URL (--public-url, else this host's address);
the banner shows its PeerId and listen addresses. With the DHT on, give --bootstrap peers.
Downloads: at most --max-downloads at once (--max-downloads-per-client per address); more get
503 with Retry-After. A download whose client takes nothing for --idle-timeout is ended.
Manifests and /health are answered from bytes built at the last check of the files, made at
most every --recheck (0: at every request); downloads always check the file they open.
The state dir is --state-dir, else $PLASM_HOME, else $XDG_DATA_HOME/plasm, else
~/.local/share/plasm; one serve or start per state dir. Logs: JSON lines on stderr.
--mirror DIR serves DIR/<channel>/<arch>/manifest.json byte for byte, as its publisher signed
it, with the files it names (checked at start); nothing is signed, so no --key.`,
  options: {
    artifacts: { type: "string", value: "DIR", description: "what to serve" },
    mirror: {
      type: "string",
      value: "DIR",
      description: "serve DIR's signed manifests as they are",
    },
    channel: { type: "string", default: "stable", value: "NAME", description: "default channel" },
    arch: { type: "string", default: "auto", value: "ARCH", description: "default arch" },
    port: { type: "string", default: "8080", value: "N", description: "HTTP port (0: any)" },
    bind: { type: "string", default: "0.0.0.0", value: "HOST", description: "HTTP address" },
    key: { type: "string", value: "FILE", description: "manifest signing key (.key)" },
    "no-dht": { type: "boolean", description: "no DHT advertisement" },
    "no-mdns": { type: "boolean", description: "no mDNS answers" },
    "state-dir": { type: "string", value: "DIR", description: "node key, lock, state" },
    "validity-days": { type: "string", default: "30", value: "N", description: "manifests" },
    "min-free": { type: "string", default: "64MiB", value: "SIZE", description: "for /health" },
    "shutdown-timeout": { type: "string", default: "30s", value: "DURATION", description: "drain" },
    "max-downloads": { type: "string", default: "64", value: "N", description: "at once (503)" },
    "max-downloads-per-client": {
      type: "string",
      default: "16",
      value: "N",
      description: "at once per address",
    },
    "idle-timeout": {
      type: "string",
      default: "30s",
      value: "DURATION",
      description: "end a download not read",
    },
    recheck: {
      type: "string",
      default: "100ms",
      value: "DURATION",
      description: "how stale a manifest may be",
    },
    "p2p-listen": { type: "string", multiple: true, value: "MULTIADDR", description: "libp2p" },
    bootstrap: { type: "string", multiple: true, value: "MULTIADDR", description: "DHT peer" },
    "public-url": { type: "string", value: "URL", description: "the URL advertised" },
  },
  // The lines scripts and docs quote: `serve: <message>`.
} as const;

/** What {@linkcode main} can be given besides its arguments. */
export interface ServeContext extends CliContext {
  /**
   * Called when connections of clients that stopped reading are still open after
   * `--shutdown-timeout`: the entrypoint passes `Deno.exit`, as ending the process is the only
   * way to close them. @default {undefined}
   */
  forceExit?: (code: number) => void;
}

/**
 * Run `serve` until SIGINT, SIGTERM or `context.signal`; resolves to the exit code. The banner
 * goes to stdout, JSON log lines to stderr.
 *
 * @example
 * ```ts
 * import { main } from "./serve.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/art/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/art/stable/x86_64/kernel`, "k");
 * const stop = new AbortController();
 * let banner = "";
 * const stdout = { writeSync: (b: Uint8Array) => (banner += new TextDecoder().decode(b), b.length) };
 * const stderr = { writeSync: (b: Uint8Array) => b.length };
 * const done = main([
 *   "--artifacts", `${dir}/art`, "--state-dir", `${dir}/state`, "--arch", "x86_64",
 *   "--bind", "127.0.0.1", "--port", "0", "--min-free", "0", "--no-dht", "--no-mdns",
 * ], { signal: stop.signal, stdout, stderr });
 * while (!/^Listening on /m.test(banner)) await new Promise((r) => setTimeout(r, 10));
 * const url = /^Listening on (\S+)$/m.exec(banner)![1]!;
 * const res = await fetch(`${url}stable/x86_64/kernel`);
 * assert.equal(await res.text(), "k");
 * stop.abort();
 * assert.equal(await done, 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function main(args: string[], context: ServeContext = {}): Promise<number> {
  return runCommand(SERVE_COMMAND, args, context, async (values, _, io) => {
    const flags = await _flags(values);
    let stateDir: string;
    try {
      stateDir = values["state-dir"] ?? defaultStateDir((name) => Deno.env.get(name));
    } catch (error) {
      return io.fail(errorMessage(error));
    }
    const write = await Deno.permissions.query({ name: "write", path: stateDir });
    if (write.state !== "granted") {
      return io.fail(`Cannot write state dir '${stateDir}': run with --allow-write=${stateDir}`);
    }
    let lock;
    try {
      lock = await lockStateDir(stateDir, { command: "serve" });
    } catch (error) {
      const hint = error instanceof Error && error.name === "StateDirLockedError"
        ? "; stop it first or give this provider another --state-dir"
        : "";
      return io.fail(`${errorMessage(error)}${hint}`);
    }
    const logEvent = _logger(io);
    try {
      if (lock.staleFrom !== undefined) {
        logEvent("warn", "stale_lock_taken_over", { path: lock.path, pid: lock.staleFrom });
      }
      const forceExit = context.forceExit;
      return await _serve(io, {
        ...flags,
        stateDir,
        logEvent,
        ...(forceExit
          ? { forceExit: async (code: number) => (await lock.release(), forceExit(code)) }
          : {}),
      });
    } finally {
      await lock.release();
    }
  });
}

type _Values = FlagValues<typeof SERVE_COMMAND.options>;
type _LogEvent = (
  level: "info" | "warn" | "error",
  event: string,
  fields?: Record<string, unknown>,
) => void;

/** The validated flags of `serve`. */
interface _Flags {
  values: _Values;
  port: number;
  arch: string;
  validityDays: number;
  minFree: number;
  shutdownMs: number;
  maxDownloads: number;
  maxDownloadsPerClient: number;
  idleTimeoutMs: number;
  recheckMs: number;
  dht: boolean;
  mdns: boolean;
}

/** Validate the flags, or throw a `UsageError`. */
async function _flags(values: _Values): Promise<_Flags> {
  const port = Number(values.port);
  if (!/^\d{1,5}$/.test(values.port) || port > 65535) {
    throw new UsageError(`Cannot use --port '${values.port}': expected a number from 0 to 65535`);
  }
  const arch = values.arch === "auto" ? Deno.build.arch : values.arch;
  for (const [flag, value] of [["--channel", values.channel], ["--arch", arch]] as const) {
    if (!SAFE_NAME.test(value)) {
      throw new UsageError(`Cannot use ${flag} '${value}': expected a plain name like 'stable'`);
    }
  }
  const days = values["validity-days"];
  const validityDays = Number(days);
  if (!/^\d{1,4}$/.test(days) || validityDays < 1 || validityDays > 3650) {
    throw new UsageError(`Cannot use --validity-days '${days}': expected 1 to 3650`);
  }
  let minFree: number, shutdownMs: number, idleTimeoutMs: number, recheckMs: number;
  try {
    minFree = parseSize(values["min-free"]);
    shutdownMs = parseDuration(values["shutdown-timeout"]);
    idleTimeoutMs = parseDuration(values["idle-timeout"]);
    recheckMs = parseDuration(values.recheck);
  } catch (error) {
    throw new UsageError(errorLine(error));
  }
  if (recheckMs > 60_000) {
    throw new UsageError(`Cannot use --recheck '${values.recheck}': expected 0 to 60s`);
  }
  if (idleTimeoutMs < 1) throw new UsageError("Cannot use --idle-timeout 0: expected above zero");
  const count = (flag: "max-downloads" | "max-downloads-per-client") => {
    const text = values[flag];
    if (!/^\d{1,6}$/.test(text) || Number(text) < 1) {
      throw new UsageError(`Cannot use --${flag} '${text}': expected a number from 1 to 999999`);
    }
    return Number(text);
  };
  const maxDownloads = count("max-downloads");
  const maxDownloadsPerClient = count("max-downloads-per-client");
  if (values.mirror !== undefined) {
    for (const flag of ["artifacts", "key"] as const) {
      if (values[flag] !== undefined) {
        throw new UsageError(
          `Cannot use --${flag} with --mirror: a mirror serves the publisher's manifests as they are`,
        );
      }
    }
  }
  const dht = !values["no-dht"];
  const mdns = !values["no-mdns"];
  if (dht || mdns) {
    // Checked here, so a typo is a usage error rather than a provider silently without libp2p.
    const { multiaddr } = await import("@multiformats/multiaddr");
    const given = [
      ...values["p2p-listen"].map((addr) => ["--p2p-listen", addr] as const),
      ...values.bootstrap.map((addr) => ["--bootstrap", addr] as const),
    ];
    for (const [flag, addr] of given) {
      try {
        multiaddr(addr);
      } catch (error) {
        throw new UsageError(`Cannot use ${flag} '${addr}': ${errorMessage(error)}`);
      }
    }
  }
  return {
    values,
    port,
    arch,
    validityDays,
    minFree,
    shutdownMs,
    maxDownloads,
    maxDownloadsPerClient,
    idleTimeoutMs,
    recheckMs,
    dht,
    mdns,
  };
}

function _logger(io: CommandIo): _LogEvent {
  return (level, event, fields = {}) =>
    io.log(JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields }));
}

interface _ServeOptions extends _Flags {
  stateDir: string;
  logEvent: _LogEvent;
  forceExit?: (code: number) => Promise<void>;
}

/** Everything from here runs while this process holds the state dir. */
async function _serve(io: CommandIo, o: _ServeOptions): Promise<number> {
  const { values, arch, stateDir, logEvent } = o;
  const artifactsDir = values.mirror ?? values.artifacts ?? `${stateDir}/artifacts`;
  try {
    if (!(await Deno.stat(artifactsDir)).isDirectory) throw new Deno.errors.NotADirectory();
  } catch {
    const flag = values.mirror === undefined ? "--artifacts" : "--mirror";
    return io.fail(`Cannot serve '${artifactsDir}': not a directory (pass ${flag} DIR)`);
  }
  const { store, key } = await _store(o, artifactsDir);
  // Read by the handler at each request, so the node's state shows once it is known.
  const p2pInfo: Record<string, string | string[]> = {
    dht: o.dht ? "on" : "off (--no-dht)",
    mdns: o.mdns ? "on" : "off (--no-mdns)",
  };
  const stopBodies = new AbortController();
  const handler = createProviderHandler({
    store,
    channel: values.channel,
    arch,
    version: VERSION,
    info: p2pInfo,
    minFreeBytes: o.minFree,
    maxDownloads: o.maxDownloads,
    maxDownloadsPerClient: o.maxDownloadsPerClient,
    idleTimeoutMs: o.idleTimeoutMs,
    recheckMs: o.recheckMs,
    signal: stopBodies.signal,
    onError: (error, req) =>
      logEvent("error", "request_failed", {
        method: req.method,
        url: req.url,
        error: errorMessage(error),
      }),
  });
  // Hash the default channel before listening, so the first client never waits for it.
  const summary = await _manifestSummary(store, values.channel, arch);
  const { server, addr } = await _listen(values.bind, o.port, handler, logEvent);
  const p2p = await _startP2p(o, store, addr, p2pInfo);
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  _banner(
    io,
    [
      `Listening on http://${host}:${addr.port}/`,
      `  artifacts  ${artifactsDir}`,
      `  channel    ${values.channel}`,
      `  arch       ${arch}`,
      `  manifest   /manifest.json (${summary})`,
      `  key        ${toHex(key.keyPair.publicKey)} (${key.source})`,
      `  state dir  ${stateDir}`,
    ],
    p2p,
    p2pInfo,
  );
  const why = await _stopRequested(server, io.signal);
  logEvent("info", "shutting_down", {
    reason: why,
    downloads_in_flight: handler.metrics().downloads_active,
    shutdown_timeout_ms: o.shutdownMs,
  });
  await p2p.loop?.stop();
  const clean = await _drain(server, o.shutdownMs, () => {
    logEvent("warn", "shutdown_timeout", { action: "closing the remaining downloads" });
    stopBodies.abort();
  });
  const m = handler.metrics();
  const stats = { requests: m.requests_total, bytes_served: m.bytes_served_total };
  if (clean) {
    logEvent("info", "stopped", stats);
    return 0;
  }
  // A client that stops reading keeps its connection's write pending; ending the body does not
  // end that write, and Deno.serve has no way to close a connection by force. So after the
  // timeout and a short grace, the entrypoint (forceExit) ends the process, which is what
  // closes those sockets. Under `main()` without forceExit the server is only unref'd.
  server.unref();
  logEvent("info", "stopped", { ...stats, action: "closing stalled connection(s)" });
  await o.forceExit?.(0);
  return 0;
}

/**
 * The store: signing with `--key` (else the node identity), or with `--mirror` the publisher's
 * manifests as they are, checked against the files now (the node identity only satisfies the
 * store and never signs).
 */
async function _store(o: _ServeOptions, dir: string) {
  const { values, arch, stateDir } = o;
  if (values.mirror === undefined) {
    const key = await _key(values.key, stateDir);
    const store = new ArtifactStore(dir, {
      keyPair: key.keyPair,
      stateDir,
      validityDays: o.validityDays,
    });
    return { store, key };
  }
  const { MirrorStore } = await import("../provider/mirror_store.ts");
  const store = new MirrorStore(dir, { keyPair: await loadOrCreateIdentity(stateDir) });
  const manifest = await store.check(values.channel, arch);
  const count = manifest.signatures.length;
  return {
    store,
    key: {
      keyPair: { publicKey: store.publicKey },
      source: `publisher's, ${count} signature(s) served as signed, never re-signed`,
    },
  };
}

/** The manifest signing key: `--key FILE`, else the node identity in the state dir. */
async function _key(file: string | undefined, stateDir: string) {
  try {
    if (file !== undefined) {
      return { keyPair: await readSecretKeyFile(file), source: `--key ${file}` };
    }
    const keyPair = await loadOrCreateIdentity(stateDir);
    return { keyPair, source: `node identity, ${stateDir}/node.key` };
  } catch (error) {
    const unreadable = file !== undefined && (error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.IsADirectory || error instanceof Deno.errors.PermissionDenied);
    throw new Error(
      unreadable ? `Cannot read key '${file}': ${fsErrorReason(error)}` : errorLine(error),
      { cause: error },
    );
  }
}

/** The banner's manifest line: artifacts and sequence, or why there is none. */
async function _manifestSummary(store: ArtifactStore, channel: string, arch: string) {
  const manifest = await store.manifest(channel, arch);
  if (!manifest) return `no ${channel}/${arch} directory (health: unhealthy)`;
  const artifacts = Object.entries(manifest.artifacts)
    .map(([name, a]) => `${name} ${formatSize(a.size_bytes)}`).join(", ");
  return `${artifacts || "no artifacts"}; sequence ${manifest.sequence}`;
}

/** `Deno.serve` on `bind:port`; resolves once listening. */
async function _listen(
  bind: string,
  port: number,
  handler: Deno.ServeHandler<Deno.NetAddr>,
  logEvent: _LogEvent,
): Promise<{ server: Deno.HttpServer<Deno.NetAddr>; addr: Deno.NetAddr }> {
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server;
  try {
    server = Deno.serve({
      hostname: bind,
      port,
      onListen: (addr) => listening.resolve(addr),
      onError: (error) => {
        logEvent("error", "request_failed", { error: errorMessage(error) });
        return new Response(JSON.stringify({ error: "Cannot answer: internal error" }), {
          status: 500,
          headers: { "content-type": "application/json" },
        });
      },
    }, handler);
  } catch (error) {
    throw new Error(`Cannot listen on ${bind}:${port}: ${_osReason(error)}`, { cause: error });
  }
  return { server, addr: await listening.promise };
}

/** What the libp2p side came to: its loop (when it runs) and the banner's p2p lines. */
interface _P2p {
  loop: AdvertiseLoop | undefined;
  peerId: string | undefined;
  addrs: string[];
  off: string;
}

/**
 * Start advertising unless both DHT and mDNS are off; a failure leaves HTTP serving alone.
 * libp2p is imported only here, so `serve --no-dht --no-mdns` never loads it.
 */
async function _startP2p(
  o: _ServeOptions,
  store: ArtifactStore,
  addr: Deno.NetAddr,
  info: Record<string, string | string[]>,
): Promise<_P2p> {
  const { values, arch, logEvent } = o;
  const p2p: _P2p = {
    loop: undefined,
    peerId: undefined,
    addrs: [],
    off: "off (--no-dht --no-mdns)",
  };
  if (!o.dht && !o.mdns) return p2p;
  const { publicHttpUrl } = await import("../net/public_url.ts");
  const httpUrl = values["public-url"] ?? publicHttpUrl(addr);
  try {
    const { startAdvertiseLoop } = await import("../net/advertise_loop.ts");
    const loop = await startAdvertiseLoop({
      secretKey: (await loadOrCreateIdentity(o.stateDir)).secretKey,
      channel: values.channel,
      arch,
      httpUrl,
      manifestSequence: async () => (await store.manifest(values.channel, arch))?.sequence,
      dht: o.dht,
      mdns: o.mdns,
      listen: values["p2p-listen"].length > 0
        ? values["p2p-listen"]
        : [`/ip4/${addr.hostname.includes(":") ? "0.0.0.0" : addr.hostname}/tcp/0`],
      bootstrap: values.bootstrap,
      onLog: ({ level, event, ...fields }) =>
        logEvent(level, event, { source: "libp2p", ...fields }),
    });
    const state = `on (as ${loop.node.peerId} at ${httpUrl})`;
    if (o.dht) info.dht = state;
    if (o.mdns) info.mdns = state;
    Object.assign(p2p, { loop, peerId: loop.node.peerId, addrs: loop.node.multiaddrs });
    info.peer_id = loop.node.peerId;
    info.p2p_listen = loop.node.multiaddrs;
    if (o.dht && values.bootstrap.length === 0) {
      logEvent("warn", "dht_without_bootstrap", {
        reason: "no --bootstrap peer: the DHT holds the manifest record only once peers " +
          "connect to this provider",
      });
    }
  } catch (error) {
    logEvent("warn", "p2p_start_failed", { error: errorLine(error), reason: "serving HTTP only" });
    if (o.dht) info.dht = "off (node failed to start)";
    if (o.mdns) info.mdns = "off (node failed to start)";
    p2p.off = `off (node failed to start: ${errorLine(error)})`;
  }
  return p2p;
}

function _banner(
  io: CommandIo,
  lines: string[],
  p2p: _P2p,
  info: Record<string, string | string[]>,
): void {
  io.print(`plasm serve ${VERSION}: boot-artifact provider`);
  for (const line of lines) io.print(line);
  if (p2p.peerId) io.print(`  peer id    ${p2p.peerId}`);
  if (p2p.addrs.length > 0) {
    p2p.addrs.forEach((addr, i) => io.print(`  ${i === 0 ? "p2p       " : "          "} ${addr}`));
  } else io.print(`  p2p        ${p2p.off}`);
  io.print(`  DHT        ${info.dht}`);
  io.print(`  mDNS       ${info.mdns}`);
}

/** Resolves with why serving should stop: SIGINT, SIGTERM, `signal`, or the server closed. */
async function _stopRequested(
  server: Deno.HttpServer<Deno.NetAddr>,
  signal: AbortSignal | undefined,
): Promise<string> {
  const stop = Promise.withResolvers<string>();
  const onInt = () => stop.resolve("SIGINT");
  const onTerm = () => stop.resolve("SIGTERM");
  const onAbort = () => stop.resolve("stop request");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  server.finished.then(() => stop.resolve("server closed"));
  try {
    return await stop.promise;
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Shut the server down: no new connections, in-flight downloads finish within `timeoutMs`,
 * after which `onTimeout` ends them and a 1 s grace follows. Resolves `true` when it closed.
 */
async function _drain(
  server: Deno.HttpServer<Deno.NetAddr>,
  timeoutMs: number,
  onTimeout: () => void,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      onTimeout();
      timer = setTimeout(resolve, 1000);
    }, timeoutMs);
  });
  const closed = server.shutdown().then(() => server.finished).then(() => true);
  try {
    return await Promise.race([closed, timedOut.then(() => false)]);
  } finally {
    clearTimeout(timer);
  }
}

/** `Address already in use (os error 98)` becomes `address already in use`. */
function _osReason(error: unknown): string {
  const text = errorLine(error);
  const os = /^([A-Za-z ]+) \(os error \d+\)$/.exec(text);
  return os ? os[1]!.trim().toLowerCase() : text;
}

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  Deno.exitCode = await main(Deno.args, { forceExit: (code) => Deno.exit(code) });
}
