// deno run --allow-net cli/provider.ts status|list [--addr URL] [--json]
// Narrowest form: --allow-net=<host:port of --addr>. No read, write, env, run or sys.
/**
 * `provider status` and `provider list`: ask a running provider (`serve`) for its state and its
 * artifacts, and print a readable table or JSON. `list` shows what the provider's manifests
 * say; it does not verify signatures (that is `verify` and `fetch`).
 *
 * Exit codes: 0 answered (status: also when unhealthy), 1 unreachable or bad answer, 2 usage.
 *
 * @module
 */
import { formatSize, parseDuration } from "./_units.ts";
import { errorLine } from "../util/error_message.ts";
import { type CliContext, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `provider`. */
export const PROVIDER_COMMAND = {
  name: "provider",
  args: "status|list",
  about: `status: name, version, default channel, uptime, key, PeerId and libp2p listen addresses,
        health, DHT/mDNS state and metrics of a running provider.
list:   every channel/arch with its manifest sequence, expiry and artifacts (unverified).`,
  options: {
    addr: { type: "string", default: "http://127.0.0.1:8080/", value: "URL", description: "serve" },
    json: { type: "boolean", description: "JSON instead of a table" },
    timeout: { type: "string", default: "10s", value: "DURATION", description: "per request" },
  },
} as const;

/**
 * Run `provider status|list`; resolves to the exit code.
 *
 * @example Unreachable provider: one clear line, exit code 1
 * ```ts
 * import { main } from "./provider.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = listener.addr.port;
 * listener.close(); // nothing listens there now
 * let errors = "";
 * const stderr = { writeSync: (b: Uint8Array) => (errors += new TextDecoder().decode(b), b.length) };
 * const code = await main(["status", "--addr", `http://127.0.0.1:${port}`], { stderr });
 * assert.equal(code, 1);
 * assert.match(errors, /^provider: error: Cannot reach provider at http:\/\/127\.0\.0\.1:\d+\//);
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(PROVIDER_COMMAND, args, context, async (values, positionals, io) => {
    const [command, ...rest] = positionals;
    if ((command !== "status" && command !== "list") || rest.length > 0) {
      throw new UsageError(
        positionals.length === 0
          ? "Cannot run: expected 'status' or 'list'"
          : `Cannot run '${positionals.join(" ")}': expected 'status' or 'list'`,
      );
    }
    const { base, timeoutMs } = _target(values.addr, values.timeout);
    const get = _getter(base, timeoutMs, io.signal);
    try {
      const status = await get("status", [200]) as _Status;
      if (typeof status !== "object" || status === null || Array.isArray(status)) {
        throw new _Failure(`Cannot read ${new URL("status", base)}: not a provider status`);
      }
      if (command === "status") {
        if (values.json) io.print(JSON.stringify(status, null, 2));
        else for (const line of _statusLines(base, status)) io.print(line);
        return 0;
      }
      const channels = await _channels(base, status, get);
      if (values.json) io.print(JSON.stringify({ provider: base.href, channels }, null, 2));
      else for (const line of _listLines(channels)) io.print(line);
      return 0;
    } catch (error) {
      // A malformed answer (not the shape of /status or a manifest) is a bad answer too.
      return io.fail(
        error instanceof _Failure
          ? error.message
          : `Cannot read the answer of ${base}: ${errorLine(error)}`,
      );
    }
  });
}

/** The provider's base URL and the request timeout, or a `UsageError`. */
function _target(addr: string, timeout: string): { base: URL; timeoutMs: number } {
  try {
    const base = new URL(addr.includes("://") ? addr : `http://${addr}`);
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new TypeError("scheme");
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    return { base, timeoutMs: parseDuration(timeout) };
  } catch (error) {
    throw new UsageError(
      error instanceof Error && /duration/.test(error.message)
        ? error.message
        : `Cannot use --addr '${addr}': expected a URL like http://127.0.0.1:8080`,
    );
  }
}

type _Get = (path: string, okStatuses?: number[]) => Promise<unknown>;

/** GET a JSON document of the provider; any failure is a `_Failure` naming it. */
function _getter(base: URL, timeoutMs: number, signal: AbortSignal | undefined): _Get {
  return async (path, okStatuses = [200]) => {
    const url = new URL(path, base);
    const timeout = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (error) {
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : _reason(error);
      throw new _Failure(`Cannot reach provider at ${base}: ${why}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new _Failure(`Cannot read ${url}: not JSON (HTTP ${res.status})`);
    }
    if (!okStatuses.includes(res.status)) {
      const message = (body as { error?: unknown })?.error;
      throw new _Failure(
        `Cannot read ${url}: HTTP ${res.status}${
          typeof message === "string" ? `: ${message}` : ""
        }`,
      );
    }
    return body;
  };
}

/** Each channel of the provider with its manifest (unverified). */
async function _channels(base: URL, status: _Status, get: _Get): Promise<_ListedChannel[]> {
  const channels: _ListedChannel[] = [];
  for (const { channel, arch } of status.channels ?? []) {
    const path = `${channel}/${arch}/manifest.json`;
    const m = await get(path) as _Manifest;
    if (
      typeof m !== "object" || m === null || typeof m.sequence !== "number" ||
      typeof m.artifacts !== "object" || m.artifacts === null
    ) {
      throw new _Failure(`Cannot read ${new URL(path, base)}: not a boot manifest`);
    }
    channels.push({
      channel,
      arch,
      sequence: m.sequence,
      version: m.version,
      expires_at: m.expires_at,
      signers: (m.signatures ?? []).map((s) => s.key_id),
      artifacts: m.artifacts ?? {},
    });
  }
  return channels;
}

class _Failure extends Error {}

interface _Status {
  name?: string;
  version?: string;
  channel?: string;
  arch?: string;
  uptime_seconds?: number;
  public_key?: string;
  dht?: string;
  mdns?: string;
  peer_id?: string;
  p2p_listen?: string[];
  health?: {
    status?: string;
    checks?: Record<string, boolean>;
    disk_free_bytes?: number | null;
  };
  metrics?: Record<string, unknown> & {
    requests_total?: number;
    responses_by_status?: Record<string, number>;
    bytes_served_total?: number;
    downloads_total?: number;
    downloads_active?: number;
  };
  channels?: { channel: string; arch: string }[];
}

interface _Manifest {
  sequence: number;
  version: string;
  expires_at: string;
  signatures?: { key_id: string }[];
  artifacts?: Record<string, { filename: string; size_bytes: number; hash: string }>;
}

interface _ListedChannel {
  channel: string;
  arch: string;
  sequence: number;
  version: string;
  expires_at: string;
  signers: string[];
  artifacts: Record<string, { filename: string; size_bytes: number; hash: string }>;
}

function _statusLines(base: URL, s: _Status): string[] {
  const m = s.metrics ?? {};
  const h = s.health ?? {};
  const yes = (v: boolean | undefined) => v === true ? "yes" : "no";
  const byStatus = Object.entries(m.responses_by_status ?? {}).map(([k, v]) => `${k}: ${v}`)
    .join(", ");
  const free = typeof h.disk_free_bytes === "number"
    ? `, ${formatSize(h.disk_free_bytes)} free`
    : "";
  return [
    `Provider   ${base.href}`,
    `  name       ${s.name ?? "?"} ${s.version ?? ""}`.trimEnd(),
    `  default    ${s.channel ?? "?"}/${s.arch ?? "?"}`,
    `  uptime     ${_duration(s.uptime_seconds ?? 0)}`,
    `  key        ${s.public_key ?? "?"}`,
    `  health     ${h.status ?? "?"} (artifacts readable: ${
      yes(h.checks?.artifacts_readable)
    }, disk space ok: ${yes(h.checks?.disk_space_ok)}${free})`,
    ...(s.peer_id ? [`  peer id    ${s.peer_id}`] : []),
    ...(s.p2p_listen?.length
      ? s.p2p_listen.map((addr, i) => `  ${i === 0 ? "p2p       " : "          "} ${addr}`)
      : ["  p2p        off"]),
    `  DHT        ${s.dht ?? "?"}`,
    `  mDNS       ${s.mdns ?? "?"}`,
    `  requests   ${m.requests_total ?? 0}${byStatus ? ` (${byStatus})` : ""}`,
    `  served     ${formatSize(m.bytes_served_total ?? 0)} in ${
      m.downloads_total ?? 0
    } download(s), ${m.downloads_active ?? 0} active`,
    `  channels   ${(s.channels ?? []).map((c) => `${c.channel}/${c.arch}`).join(", ") || "none"}`,
  ];
}

function _listLines(channels: _ListedChannel[]): string[] {
  if (channels.length === 0) return ["No channels: the provider has no artifacts"];
  const rows = [["CHANNEL", "ARCH", "ARTIFACT", "FILE", "SIZE", "SHA256", "SEQUENCE", "EXPIRES"]];
  for (const c of channels) {
    const entries = Object.entries(c.artifacts).sort(([a], [b]) => a < b ? -1 : 1);
    if (entries.length === 0) {
      rows.push([c.channel, c.arch, "-", "-", "-", "-", String(c.sequence), c.expires_at]);
    }
    for (const [name, a] of entries) {
      rows.push([
        c.channel,
        c.arch,
        name,
        a.filename,
        formatSize(a.size_bytes),
        a.hash.replace(/^sha256:/, "").slice(0, 16),
        String(c.sequence),
        c.expires_at,
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
}

function _reason(error: unknown): string {
  const cause = (error as { cause?: unknown })?.cause;
  const text = cause instanceof Error ? cause.message : (error as Error)?.message ?? String(error);
  const os = /([A-Za-z ]+) \(os error \d+\)/.exec(text);
  return (os ? os[1]!.trim() : text.split("\n")[0]!).replace(/^tcp connect error: /, "");
}

function _duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h ${m}m ${s}s` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
