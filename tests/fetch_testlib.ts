/**
 * Test helpers for `fetch` and `verify`: signed manifests, the real `cli/serve.ts` as its own
 * process, and small misbehaving HTTP servers on 127.0.0.1 for the cases a real provider never
 * produces.
 *
 * @module
 */
import {
  type BootArtifact,
  type BootManifest,
  signBootManifest,
} from "../provider/boot_manifest.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { taskCommand } from "./_task.ts";
import { readTextUntil } from "../util/read_text_until.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import type { KeyPair } from "../runtime/ed25519.ts";

const ROOT = new URL("../", import.meta.url);

/**
 * A fresh temporary directory, removed on dispose.
 *
 * @example
 * ```ts
 * import { tempDir } from "./fetch_testlib.ts";
 *
 * await using dir = await tempDir();
 * await Deno.writeTextFile(`${dir.path}/a`, "x");
 * ```
 */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "phase-fetch-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/**
 * A publisher key pair written as `<dir>/<name>.key` / `.pub`, and a trusted-keys file
 * `<dir>/<name>.trusted` listing it.
 *
 * @example
 * ```ts
 * import { publisher, tempDir } from "./fetch_testlib.ts";
 *
 * await using dir = await tempDir();
 * const p = await publisher(dir.path, "release");
 * await Deno.stat(p.trustedKeysFile);
 * ```
 */
export async function publisher(
  dir: string,
  name: string,
): Promise<KeyPair & { keyFile: string; trustedKeysFile: string }> {
  const keys = await writeKeyPairFiles(`${dir}/${name}`);
  const trustedKeysFile = `${dir}/${name}.trusted`;
  await Deno.writeTextFile(trustedKeysFile, `# test\n${toHex(keys.publicKey)} ${name}\n`);
  return { ...keys, keyFile: `${dir}/${name}.key`, trustedKeysFile };
}

/**
 * An artifact entry for bytes, served at `download_url`.
 *
 * @example
 * ```ts
 * import { artifactEntry } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(artifactEntry("vmlinuz", new Uint8Array(3), "/k").size_bytes, 3);
 * ```
 */
export function artifactEntry(
  filename: string,
  bytes: Uint8Array,
  downloadUrl: string,
): BootArtifact {
  return { filename, size_bytes: bytes.length, hash: sha256Tag(bytes), download_url: downloadUrl };
}

/**
 * A manifest signed by each of `signers` (fields overridable before signing).
 *
 * @example
 * ```ts
 * import { signedManifest } from "./fetch_testlib.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const m = await signedManifest([await generateKeyPair()], {}, { sequence: 3 });
 * assert.equal(m.sequence, 3);
 * assert.equal(m.signatures.length, 1);
 * ```
 */
export async function signedManifest(
  signers: KeyPair[],
  artifacts: Record<string, BootArtifact>,
  fields: Partial<BootManifest> = {},
): Promise<BootManifest> {
  let manifest: BootManifest = {
    manifest_version: 1,
    version: "2026.11.1",
    sequence: 5,
    channel: "stable",
    arch: "x86_64",
    created_at: "2026-01-01T00:00:00Z",
    expires_at: "2099-01-01T00:00:00Z",
    artifacts,
    signatures: [],
    ...fields,
  };
  for (const s of signers) manifest = await signBootManifest(manifest, s);
  return manifest;
}

/**
 * Deterministic pseudo-random bytes (fast, for large test artifacts).
 *
 * @example
 * ```ts
 * import { pseudoRandomBytes } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(pseudoRandomBytes(8, 1), pseudoRandomBytes(8, 1));
 * ```
 */
export function pseudoRandomBytes(length: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A running `cli/serve.ts` process. */
export interface ServeProcess extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/`. */
  url: string;
  /** The process. */
  child: Deno.ChildProcess;
  /** What it printed on stdout so far (the banner). */
  output(): string;
  /** Stop with SIGTERM and wait (idempotent). */
  stop(): Promise<void>;
  /** Kill with SIGKILL at once and wait. */
  kill(): Promise<void>;
}

/**
 * Start the real provider, `cli/serve.ts`, serving `artifactsDir` (laid out as
 * `<channel>/<arch>/<file>`) with the key in `keyFile`, on 127.0.0.1 and a free port.
 *
 * @example
 * ```ts
 * import { publisher, startServe, tempDir } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * await using dir = await tempDir();
 * const keys = await publisher(dir.path, "p");
 * await Deno.mkdir(`${dir.path}/art/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir.path}/art/stable/x86_64/kernel`, "k");
 * await using serve = await startServe(`${dir.path}/art`, keys.keyFile, `${dir.path}/state`);
 * const res = await fetch(`${serve.url}stable/x86_64/kernel`);
 * assert.equal(await res.text(), "k");
 * ```
 */
export async function startServe(
  artifactsDir: string,
  keyFile: string,
  stateDir: string,
  options: {
    /** More `serve` arguments, after the defaults. @default {[]} */
    args?: string[];
    /** Arguments for the libp2p advertisement, instead of `--no-dht --no-mdns`. @default {undefined} */
    p2p?: string[];
  } = {},
): Promise<ServeProcess> {
  const { args = [], p2p = ["--no-dht", "--no-mdns"] } = options;
  await Deno.mkdir(stateDir, { recursive: true });
  // The `serve` task's own flags, its write grant narrowed to this state dir.
  const { flags } = await taskCommand("serve");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...flags.map((f) => f.split("=")[0] === "--allow-write" ? `--allow-write=${stateDir}` : f),
      new URL("cli/serve.ts", ROOT).pathname,
      ...["--artifacts", artifactsDir, "--key", keyFile, "--state-dir", stateDir],
      ...["--arch", "x86_64", "--port", "0", "--bind", "127.0.0.1", ...p2p],
      ...["--min-free", "0", "--shutdown-timeout", "1s", ...args],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const listening = /Listening on (http:\/\/\S+\/)/;
  let text = await readTextUntil(reader, (t) => listening.test(t));
  const url = listening.exec(text)?.[1];
  if (url === undefined) {
    const status = await child.status;
    throw new Error(`Cannot start serve (exit ${status.code}): ${text}${await stderr}`);
  }
  const drained = (async () => {
    // Keep stdout flowing, and keep what the banner says after the first line.
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
  })();
  let stopped: Promise<void> | undefined;
  const finish = (signal: Deno.Signal) =>
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      await child.status;
      await drained;
      await stderr;
    })();
  return {
    url,
    child,
    output: () => text,
    stop: () => finish("SIGTERM"),
    kill: () => finish("SIGKILL"),
    [Symbol.asyncDispose]: () => finish("SIGTERM"),
  };
}

/**
 * The `fetch` arguments naming each provider, the output folder and the trusted keys file.
 *
 * @example
 * ```ts
 * import { fetchArgs } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(fetchArgs(["http://a/"], "out", "k.trusted"), [
 *   "--provider",
 *   "http://a/",
 *   "--out",
 *   "out",
 *   "--trusted-keys",
 *   "k.trusted",
 * ]);
 * ```
 */
export function fetchArgs(providers: string[], out: string, trustedKeysFile: string): string[] {
  return [
    ...providers.flatMap((p) => ["--provider", p]),
    "--out",
    out,
    "--trusted-keys",
    trustedKeysFile,
  ];
}

/** A test HTTP server on 127.0.0.1. */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Requests seen, as `METHOD path range`. */
  log: string[];
  /** Stop it (idempotent). */
  stop(): Promise<void>;
}

/**
 * Start an in-process HTTP server on 127.0.0.1 with `handler` (for misbehaving providers).
 *
 * @example
 * ```ts
 * import { startServer } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * await using server = startServer(() => new Response("x"));
 * assert.equal(await (await fetch(server.url)).text(), "x");
 * ```
 */
export function startServer(handler: (req: Request) => Response | Promise<Response>): TestServer {
  const log: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      log.push(
        `${req.method} ${new URL(req.url).pathname} ${req.headers.get("range") ?? ""}`.trim(),
      );
      return handler(req);
    },
  );
  let stopped: Promise<void> | undefined;
  const stop = () => stopped ??= server.shutdown();
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    log,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Serve `bytes` with correct `Range` support (206, 416), optionally altering the response: the
 * building block of the misbehaving servers.
 *
 * @example
 * ```ts
 * import { rangeResponse } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * const res = rangeResponse(new Request("http://x/", { headers: { range: "bytes=1-" } }),
 *   new TextEncoder().encode("abc"));
 * assert.equal(res.status, 206);
 * assert.equal(await res.text(), "bc");
 * ```
 */
export function rangeResponse(req: Request, bytes: Uint8Array<ArrayBuffer>): Response {
  const range = req.headers.get("range");
  const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
  if (m) {
    const start = Number(m[1]);
    const end = m[2] === "" ? bytes.length - 1 : Math.min(Number(m[2]), bytes.length - 1);
    if (start >= bytes.length || start > end) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${bytes.length}` },
      });
    }
    return new Response(bytes.slice(start, end + 1), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${end}/${bytes.length}` },
    });
  }
  return new Response(bytes);
}

/**
 * A response whose body sends `bytes` in chunks, waiting `delayMs` between them, then either
 * ends or (with `failAfter`) errors the stream after that many bytes (a provider dying
 * mid-transfer). `headers` are sent as given (so a wrong Content-Length can be declared).
 *
 * @example
 * ```ts
 * import { slowResponse } from "./fetch_testlib.ts";
 * import assert from "node:assert/strict";
 *
 * const res = slowResponse(new TextEncoder().encode("abcdef"), { chunk: 2, delayMs: 1 });
 * assert.equal(await res.text(), "abcdef");
 * ```
 */
export function slowResponse(
  bytes: Uint8Array,
  options: {
    chunk?: number;
    delayMs?: number;
    failAfter?: number;
    status?: number;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
): Response {
  const { chunk = 64 * 1024, delayMs = 0, failAfter, status = 200, headers = {}, signal } = options;
  let offset = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (signal?.aborted) return controller.error(new Error("stopped"));
      if (failAfter !== undefined && offset >= failAfter) {
        return controller.error(new Error("provider died"));
      }
      if (offset >= bytes.length) return controller.close();
      if (delayMs > 0) await new Promise((r) => timer = setTimeout(r, delayMs));
      const end = Math.min(bytes.length, offset + chunk, failAfter ?? Infinity);
      controller.enqueue(bytes.slice(offset, end));
      offset = end;
    },
    cancel() {
      clearTimeout(timer);
    },
  });
  return new Response(body, { status, headers });
}
