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
import { parseArgs } from "node:util";
import { defaultStateDir, loadOrCreateIdentity } from "../net/identity.ts";
import { readSecretKeyFile } from "../provider/key_files.ts";
import { ArtifactStore, SAFE_NAME } from "../provider/artifact_store.ts";
import { createProviderHandler } from "../provider/provider_handler.ts";
import { toHex } from "../runtime/digest.ts";
import type { PhaseNode } from "../net/node.ts";
import { lockStateDir, type StateLock } from "../net/state_lock.ts";
import { formatSize, parseDuration, parseSize } from "./_units.ts";
import { errorLine, errorMessage } from "../util/error_message.ts";
import { flagMessage } from "./_flag_message.ts";
import { fsErrorReason } from "../util/fs_error.ts";

const VERSION = "0.1.0";

const USAGE = `Usage: serve [--artifacts DIR] [--channel stable] [--arch auto] [--port 8080]
             [--bind 0.0.0.0] [--key FILE] [--no-dht] [--no-mdns] [--state-dir DIR]
             [--validity-days 30] [--min-free 64MiB] [--shutdown-timeout 30s]
             [--p2p-listen MULTIADDR]... [--bootstrap MULTIADDR]... [--public-url URL]

Serves DIR/<channel>/<arch>/{kernel,initramfs,rootfs} (also vmlinuz, bzImage, initrd,
initramfs.img, rootfs.img, rootfs.squashfs) with signed manifests at /manifest.json.
DIR defaults to <state dir>/artifacts; the key to the node identity in the state dir.
--port 0 picks a free port; the banner line 'Listening on http://HOST:PORT/' names it.
Unless --no-dht and --no-mdns are both given, a libp2p node (the node identity) advertises
/phase/<channel>/<arch>/manifest with the HTTP URL (--public-url, else this host's address);
the banner shows its PeerId and listen addresses. With the DHT on, give --bootstrap peers.
The state dir is --state-dir, else $PLASM_HOME, else $XDG_DATA_HOME/plasm, else
~/.local/share/plasm; one serve or start per state dir. Logs: JSON lines on stderr.`;

/** What {@linkcode main} can be given besides its arguments. */
export interface ServeMainOptions {
  /** Stops the provider like SIGTERM does. @default {undefined} */
  signal?: AbortSignal;
  /** Where banner lines go. @default {console.log} */
  print?: (line: string) => void;
  /** Where log and error lines go. @default {console.error} */
  log?: (line: string) => void;
  /**
   * Called when connections of clients that stopped reading are still open after
   * `--shutdown-timeout`: the entrypoint passes `Deno.exit`, as ending the process is the only
   * way to close them. @default {undefined}
   */
  forceExit?: (code: number) => void;
}

/**
 * Run `serve` until SIGINT, SIGTERM or `options.signal`; resolves to the exit code.
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
 * const lines: string[] = [];
 * const done = main([
 *   "--artifacts", `${dir}/art`, "--state-dir", `${dir}/state`, "--arch", "x86_64",
 *   "--bind", "127.0.0.1", "--port", "0", "--min-free", "0", "--no-dht", "--no-mdns",
 * ], {
 *   signal: stop.signal,
 *   print: (line) => lines.push(line),
 *   log: () => {},
 * });
 * while (!lines.some((l) => l.startsWith("Listening on "))) {
 *   await new Promise((r) => setTimeout(r, 10));
 * }
 * const url = lines.find((l) => l.startsWith("Listening on "))!.slice(13);
 * const res = await fetch(`${url}stable/x86_64/kernel`);
 * assert.equal(await res.text(), "k");
 * stop.abort();
 * assert.equal(await done, 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function main(args: string[], options: ServeMainOptions = {}): Promise<number> {
  const { signal, print = console.log, log = console.error } = options;
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        artifacts: { type: "string" },
        channel: { type: "string", default: "stable" },
        arch: { type: "string", default: "auto" },
        port: { type: "string", default: "8080" },
        bind: { type: "string", default: "0.0.0.0" },
        key: { type: "string" },
        "no-dht": { type: "boolean", default: false },
        "no-mdns": { type: "boolean", default: false },
        "state-dir": { type: "string" },
        "validity-days": { type: "string", default: "30" },
        "min-free": { type: "string", default: "64MiB" },
        "shutdown-timeout": { type: "string", default: "30s" },
        "p2p-listen": { type: "string", multiple: true, default: [] },
        bootstrap: { type: "string", multiple: true, default: [] },
        "public-url": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    log(`serve: ${flagMessage(error, "serve")}`);
    return 2;
  }
  if (values.help) {
    print(USAGE);
    return 0;
  }
  const flags = values;
  const usage = (message: string) => {
    log(`serve: ${message}`);
    return 2;
  };
  const port = Number(values.port);
  if (!/^\d{1,5}$/.test(values.port) || port > 65535) {
    return usage(`Cannot use --port '${values.port}': expected a number from 0 to 65535`);
  }
  const arch = values.arch === "auto" ? Deno.build.arch : values.arch;
  for (const [flag, value] of [["--channel", values.channel], ["--arch", arch]] as const) {
    if (!SAFE_NAME.test(value)) {
      return usage(`Cannot use ${flag} '${value}': expected a plain name like 'stable'`);
    }
  }
  const validityDays = Number(values["validity-days"]);
  if (!/^\d{1,4}$/.test(values["validity-days"]) || validityDays < 1 || validityDays > 3650) {
    return usage(
      `Cannot use --validity-days '${values["validity-days"]}': expected 1 to 3650`,
    );
  }
  let minFree: number;
  let shutdownMs: number;
  try {
    minFree = parseSize(values["min-free"]);
    shutdownMs = parseDuration(values["shutdown-timeout"]);
  } catch (error) {
    return usage((error as Error).message);
  }
  const wantDht = !values["no-dht"];
  const wantMdns = !values["no-mdns"];
  if (wantDht || wantMdns) {
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
        return usage(`Cannot use ${flag} '${addr}': ${errorMessage(error)}`);
      }
    }
  }
  const logEvent = (
    level: "info" | "warn" | "error",
    event: string,
    fields: Record<string, unknown> = {},
  ) => log(JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields }));

  let stateDir: string;
  try {
    stateDir = values["state-dir"] ?? defaultStateDir((name) => Deno.env.get(name));
  } catch (error) {
    log(`serve: ${(error as Error).message}`);
    return 1;
  }
  const write = await Deno.permissions.query({ name: "write", path: stateDir });
  if (write.state !== "granted") {
    log(`serve: Cannot write state dir '${stateDir}': run with --allow-write=${stateDir}`);
    return 1;
  }
  let lock: StateLock;
  try {
    lock = await lockStateDir(stateDir, { command: "serve" });
  } catch (error) {
    const hint = error instanceof Error && error.name === "StateDirLockedError"
      ? "; stop it first or give this provider another --state-dir"
      : "";
    log(`serve: ${errorMessage(error)}${hint}`);
    return 1;
  }
  try {
    if (lock.staleFrom !== undefined) {
      logEvent("warn", "stale_lock_taken_over", { path: lock.path, pid: lock.staleFrom });
    }
    return await _serve();
  } finally {
    await lock.release();
  }

  // Everything from here runs while this process holds the state dir.
  async function _serve(): Promise<number> {
    const artifactsDir = flags.artifacts ?? `${stateDir}/artifacts`;
    try {
      if (!(await Deno.stat(artifactsDir)).isDirectory) throw new Deno.errors.NotADirectory();
    } catch {
      log(`serve: Cannot serve '${artifactsDir}': not a directory (pass --artifacts DIR)`);
      return 1;
    }

    let keyPair;
    let keySource: string;
    try {
      if (flags.key !== undefined) {
        keyPair = await readSecretKeyFile(flags.key);
        keySource = `--key ${flags.key}`;
      } else {
        keyPair = await loadOrCreateIdentity(stateDir);
        keySource = `node identity, ${stateDir}/node.key`;
      }
    } catch (error) {
      const file = error instanceof Deno.errors.NotFound ||
        error instanceof Deno.errors.IsADirectory || error instanceof Deno.errors.PermissionDenied;
      log(
        `serve: ${
          file ? `Cannot read key '${flags.key}': ${fsErrorReason(error)}` : errorLine(error)
        }`,
      );
      return 1;
    }

    const store = new ArtifactStore(artifactsDir, { keyPair, stateDir, validityDays });
    let dht = wantDht ? "on" : "off (--no-dht)";
    let mdns = wantMdns ? "on" : "off (--no-mdns)";
    // Read by the handler at each request, so the node's state shows once it is known.
    const p2pInfo: Record<string, string | string[]> = { dht, mdns };
    const stopBodies = new AbortController();
    const handler = createProviderHandler({
      store,
      channel: flags.channel,
      arch,
      version: VERSION,
      info: p2pInfo,
      minFreeBytes: minFree,
      signal: stopBodies.signal,
      onError: (error, req) =>
        logEvent("error", "request_failed", {
          method: req.method,
          url: req.url,
          error: errorMessage(error),
        }),
    });

    // Hash the default channel before listening, so the first client never waits for it.
    let summary: string;
    try {
      const manifest = await store.manifest(flags.channel, arch);
      summary = manifest
        ? `${
          Object.entries(manifest.artifacts).map(([n, a]) => `${n} ${formatSize(a.size_bytes)}`)
            .join(", ") || "no artifacts"
        }; sequence ${manifest.sequence}`
        : `no ${flags.channel}/${arch} directory (health: unhealthy)`;
    } catch (error) {
      log(`serve: ${errorMessage(error)}`);
      return 1;
    }

    let listening: (addr: Deno.NetAddr) => void;
    const listened = new Promise<Deno.NetAddr>((resolve) => listening = resolve);
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: flags.bind,
        port,
        onListen: (addr) => listening(addr),
        onError: (error) => {
          logEvent("error", "request_failed", { error: errorMessage(error) });
          return new Response(JSON.stringify({ error: "Cannot answer: internal error" }), {
            status: 500,
            headers: { "content-type": "application/json" },
          });
        },
      }, handler);
    } catch (error) {
      log(`serve: Cannot listen on ${flags.bind}:${port}: ${_osReason(error)}`);
      return 1;
    }
    const addr = await listened;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    let advert: _Advertisement | undefined;
    let peerLine: string | undefined;
    let p2pAddrs: string[] = [];
    let p2pLine = "off (--no-dht --no-mdns)";
    if (wantDht || wantMdns) {
      const httpUrl = flags["public-url"] ?? _publicUrl(addr);
      try {
        advert = await _advertise({
          stateDir,
          store,
          channel: flags.channel,
          arch,
          httpUrl,
          dht: wantDht,
          mdns: wantMdns,
          listen: flags["p2p-listen"].length > 0
            ? flags["p2p-listen"]
            : [`/ip4/${addr.hostname.includes(":") ? "0.0.0.0" : addr.hostname}/tcp/0`],
          bootstrap: flags.bootstrap,
          logEvent,
        });
        const p2p = `as ${advert.node.peerId} at ${httpUrl}`;
        if (wantDht) dht = `on (${p2p})`;
        if (wantMdns) mdns = `on (${p2p})`;
        peerLine = advert.node.peerId;
        p2pAddrs = advert.node.multiaddrs;
        p2pInfo.peer_id = advert.node.peerId;
        p2pInfo.p2p_listen = p2pAddrs;
        if (wantDht && flags.bootstrap.length === 0) {
          logEvent("warn", "dht_without_bootstrap", {
            reason: "no --bootstrap peer: the DHT holds the manifest record only once peers " +
              "connect to this provider",
          });
        }
      } catch (error) {
        logEvent("warn", "p2p_start_failed", {
          error: errorLine(error),
          reason: "serving HTTP only",
        });
        if (wantDht) dht = "off (node failed to start)";
        if (wantMdns) mdns = "off (node failed to start)";
        p2pLine = `off (node failed to start: ${errorLine(error)})`;
      }
    }
    p2pInfo.dht = dht;
    p2pInfo.mdns = mdns;
    print(`plasm serve ${VERSION}: boot-artifact provider`);
    print(`Listening on http://${host}:${addr.port}/`);
    print(`  artifacts  ${artifactsDir}`);
    print(`  channel    ${flags.channel}`);
    print(`  arch       ${arch}`);
    print(`  manifest   /manifest.json (${summary})`);
    print(`  key        ${toHex(keyPair.publicKey)} (${keySource})`);
    print(`  state dir  ${stateDir}`);
    if (peerLine) print(`  peer id    ${peerLine}`);
    if (p2pAddrs.length > 0) {
      p2pAddrs.forEach((addr, i) => print(`  ${i === 0 ? "p2p       " : "          "} ${addr}`));
    } else print(`  p2p        ${p2pLine}`);
    print(`  DHT        ${dht}`);
    print(`  mDNS       ${mdns}`);

    // Wait for a stop request, then shut down: no new connections, in-flight downloads finish
    // within --shutdown-timeout, after which they are ended and their files closed.
    let cleanup = () => {};
    const stopped = new Promise<string>((resolve) => {
      const onSignal = (name: string) => () => resolve(name);
      const onInt = onSignal("SIGINT");
      const onTerm = onSignal("SIGTERM");
      Deno.addSignalListener("SIGINT", onInt);
      Deno.addSignalListener("SIGTERM", onTerm);
      const onAbort = () => resolve("stop request");
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) resolve("stop request");
      server.finished.then(() => resolve("server closed"));
      cleanup = () => {
        Deno.removeSignalListener("SIGINT", onInt);
        Deno.removeSignalListener("SIGTERM", onTerm);
        signal?.removeEventListener("abort", onAbort);
      };
    });
    const why = await stopped;
    cleanup();
    logEvent("info", "shutting_down", {
      reason: why,
      downloads_in_flight: handler.metrics().downloads_active,
      shutdown_timeout_ms: shutdownMs,
    });
    await advert?.stop();
    // A client that stops reading keeps its connection's write pending; ending the body does not
    // end that write, and Deno.serve has no way to close a connection by force. So after the
    // timeout and a short grace, the entrypoint (options.forceExit) ends the process, which is
    // what closes those sockets. Under `main()` without forceExit the server is only unref'd.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        logEvent("warn", "shutdown_timeout", { action: "closing the remaining downloads" });
        stopBodies.abort();
        timer = setTimeout(resolve, 1000);
      }, shutdownMs);
    });
    const closed = server.shutdown().then(() => server.finished).then(() => true);
    let clean: boolean;
    try {
      clean = await Promise.race([closed, timedOut.then(() => false)]);
    } finally {
      clearTimeout(timer);
    }
    if (!clean) {
      server.unref();
      const m = handler.metrics();
      logEvent("info", "stopped", {
        requests: m.requests_total,
        bytes_served: m.bytes_served_total,
        action: "closing stalled connection(s)",
      });
      if (options.forceExit) {
        await lock.release();
        options.forceExit(0);
      }
      return 0;
    }
    const m = handler.metrics();
    logEvent("info", "stopped", { requests: m.requests_total, bytes_served: m.bytes_served_total });
    return 0;
  }
}

/** `Address already in use (os error 98)` becomes `address already in use`. */
function _osReason(error: unknown): string {
  const text = errorLine(error);
  const os = /^([A-Za-z ]+) \(os error \d+\)$/.exec(text);
  return os ? os[1]!.trim().toLowerCase() : text;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args, { forceExit: (code) => Deno.exit(code) });
}

interface _Advertisement {
  node: PhaseNode;
  stop(): Promise<void>;
}

/**
 * Start the provider's libp2p node (the node identity) and advertise the manifest; then check
 * the manifest every 30 s and advertise again when its sequence changes. libp2p is imported
 * only here, so `serve --no-dht --no-mdns` never loads it.
 */
async function _advertise(o: {
  stateDir: string;
  store: ArtifactStore;
  channel: string;
  arch: string;
  httpUrl: string;
  dht: boolean;
  mdns: boolean;
  listen: string[];
  bootstrap: string[];
  logEvent: (
    level: "info" | "warn" | "error",
    event: string,
    fields?: Record<string, unknown>,
  ) => void;
}): Promise<_Advertisement> {
  const { startNode } = await import("../net/node.ts");
  const { advertiseProvider } = await import("../net/advertise_provider.ts");
  const identity = await loadOrCreateIdentity(o.stateDir);
  const node = await startNode({
    secretKey: identity.secretKey,
    listen: o.listen,
    bootstrap: o.bootstrap,
    dht: o.dht,
    mdns: o.mdns,
    arch: o.arch,
    onLog: ({ level, event, ...fields }) =>
      o.logEvent(level, event, { source: "libp2p", ...fields }),
  });
  let sequence = -1;
  const publish = async () => {
    const manifest = await o.store.manifest(o.channel, o.arch);
    if (!manifest || manifest.sequence === sequence) return;
    sequence = manifest.sequence;
    await advertiseProvider(node, {
      channel: o.channel,
      arch: o.arch,
      httpUrl: o.httpUrl,
      manifestSequence: manifest.sequence,
    });
  };
  try {
    await publish();
  } catch (error) {
    o.logEvent("warn", "advertise_failed", { error: errorMessage(error), retry_in_ms: 30_000 });
  }
  const timer = setInterval(() => {
    publish().catch((error) =>
      o.logEvent("warn", "advertise_failed", { error: errorMessage(error), retry_in_ms: 30_000 })
    );
  }, 30_000);
  return {
    node,
    async stop() {
      clearInterval(timer);
      await node.stop();
    },
  };
}

/** The URL clients should use: the bound address, or this host's first LAN IPv4 for 0.0.0.0. */
function _publicUrl(addr: Deno.NetAddr): string {
  let host = addr.hostname;
  if (host === "0.0.0.0" || host === "::") {
    const lan = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    );
    host = lan?.address ?? "127.0.0.1";
  }
  return `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}/`;
}
