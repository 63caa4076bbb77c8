// deno run --allow-net --allow-read --allow-write cli/fetch.ts --provider URL --out DIR ...
// Narrow form: --allow-net --allow-read=DIR,KEYS,STATE_DIR --allow-write=DIR,STATE_DIR.
// No --allow-run, --allow-env, --allow-sys or --allow-ffi.
/**
 * `fetch`: download a verified boot manifest and its artifacts from untrusted providers.
 *
 * Run with exactly:
 *   deno run --allow-net --allow-read --allow-write cli/fetch.ts --provider URL --out DIR ...
 * Narrowest form (the output directory is only known at run time, so the task grants read and
 * write in general; a launcher or boot script that knows the paths should pass):
 *   --allow-net --allow-read=DIR,TRUSTED_KEYS,STATE --allow-write=DIR,<dir of STATE>
 * No --allow-run, --allow-env, --allow-sys or --allow-ffi.
 *
 * Exit codes: 0 all artifacts present and verified, 1 failed (one line on stderr), 2 usage,
 * 130 interrupted (SIGINT; only `.part` files are left, a later run resumes them).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fetchArtifacts } from "../provider/fetch_artifacts.ts";
import { readTrustedKeysFile } from "../provider/key_files.ts";
import { describeError, fsErrorReason } from "../util/fs_error.ts";
import { parseDuration, parseSize } from "./_units.ts";
import { errorLine } from "../util/error_message.ts";
import { dirname } from "node:path";

const USAGE = `Usage: fetch --provider URL [--provider URL]... --out DIR --trusted-keys FILE
             [--channel stable] [--arch x86_64] [--threshold N] [--state FILE]
             [--only kernel,initramfs] [--json] [--retries 3] [--stall-timeout 30s]
             [--max-redirects 5] [--parallel-threshold 8MiB] [--segment-size 4MiB] [--no-fsync]

--trusted-keys is a list of hex public keys (a keygen .pub is one), never a secret .key.
Exit codes: 0 verified and in place, 1 failed, 2 usage or unusable input, 130 interrupted.
Errors are one line (the last one on stderr).`;

/**
 * Run `fetch`; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./fetch.ts";
 * import assert from "node:assert/strict";
 *
 * const error = console.error;
 * console.error = () => {};
 * try {
 *   assert.equal(await main(["--out", "x"]), 2); // no --provider
 * } finally {
 *   console.error = error;
 * }
 * ```
 */
export async function main(
  args: string[],
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        provider: { type: "string", multiple: true },
        channel: { type: "string", default: "stable" },
        arch: { type: "string", default: "x86_64" },
        out: { type: "string" },
        "trusted-keys": { type: "string" },
        threshold: { type: "string", default: "1" },
        state: { type: "string" },
        only: { type: "string" },
        json: { type: "boolean", default: false },
        retries: { type: "string", default: "3" },
        "stall-timeout": { type: "string", default: "30s" },
        "max-redirects": { type: "string", default: "5" },
        "parallel-threshold": { type: "string", default: "8MiB" },
        "segment-size": { type: "string", default: "4MiB" },
        "no-fsync": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    return _usage((error as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const providers = values.provider ?? [];
  if (providers.length === 0) return _usage("Cannot fetch: give at least one --provider URL");
  if (values.out === undefined) return _usage("Cannot fetch: --out DIR is required");
  if (values["trusted-keys"] === undefined) {
    return _usage("Cannot fetch: --trusted-keys FILE is required");
  }
  const whole = (flag: string, text: string, min: number): number | string => {
    if (!/^[0-9]+$/.test(text) || Number(text) < min) {
      return `Cannot fetch: --${flag} must be a whole number >= ${min}, got '${text}'`;
    }
    return Number(text);
  };
  const threshold = whole("threshold", values.threshold, 1);
  const retries = whole("retries", values.retries, 0);
  const maxRedirects = whole("max-redirects", values["max-redirects"], 0);
  for (const v of [threshold, retries, maxRedirects]) if (typeof v === "string") return _usage(v);
  let stallTimeoutMs, parallelThreshold, segmentSize;
  try {
    stallTimeoutMs = parseDuration(values["stall-timeout"]);
    parallelThreshold = parseSize(values["parallel-threshold"]);
    segmentSize = parseSize(values["segment-size"]);
  } catch (error) {
    return _usage(`Cannot fetch: ${(error as Error).message}`);
  }
  if (stallTimeoutMs < 1) return _usage("Cannot fetch: --stall-timeout must be above zero");
  if (segmentSize < 1) return _usage("Cannot fetch: --segment-size must be above zero");
  const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const json = values.json;
  const out = values.out;

  for (const [path, name] of [[out, "write"], [values.state, "write"], [out, "read"]] as const) {
    if (path === undefined) continue;
    const target = path === values.state ? dirname(path) : path;
    if ((await Deno.permissions.query({ name, path: target })).state !== "granted") {
      return _fail(2, `Cannot use '${path}': run with --allow-${name}=${target}`, json);
    }
  }
  try {
    if (!(await Deno.stat(out)).isDirectory) {
      return _fail(2, `Cannot use --out '${out}': not a directory`, json);
    }
  } catch (error) {
    // A missing --out is made by the download; anything else is a problem to name now.
    if (!(error instanceof Deno.errors.NotFound)) {
      return _fail(2, `Cannot use --out '${out}': ${fsErrorReason(error)}`, json);
    }
  }
  let trustedKeys;
  try {
    trustedKeys = (await readTrustedKeysFile(values["trusted-keys"])).map((k) => k.publicKey);
  } catch (error) {
    return _fail(2, errorLine(error), json);
  }

  const progress = json ? undefined : new _Progress(Deno.stderr.isTerminal());
  const warnings: string[] = [];
  const controller = new AbortController();
  const onSigint = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  Deno.addSignalListener("SIGINT", onSigint);
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  try {
    const result = await fetchArtifacts({
      providers,
      out,
      trustedKeys,
      threshold: threshold as number,
      statePath: values.state,
      channel: values.channel,
      arch: values.arch,
      only,
      signal,
      retries: retries as number,
      maxRedirects: maxRedirects as number,
      stallTimeoutMs,
      parallelThreshold,
      segmentSize,
      sync: !values["no-fsync"],
      onArtifact: (name, size, sources) => progress?.start(name, size, sources),
      onProgress: (name, received, total) => progress?.update(name, received, total),
      onDone: (a) => progress?.done(a.name, a.status, a.hash),
      onWarning: (message) => {
        warnings.push(message);
        progress?.warn(message);
      },
    });
    const m = result.manifest;
    if (json) {
      console.log(JSON.stringify({
        ok: true,
        manifest: {
          channel: m.channel,
          arch: m.arch,
          version: m.version,
          sequence: m.sequence,
          expires_at: m.expires_at,
          ...(m.cmdline === undefined ? {} : { cmdline: m.cmdline }),
        },
        provider: result.provider,
        artifacts: result.artifacts,
        warnings,
      }));
    } else {
      console.error(
        `OK ${m.channel}/${m.arch} version ${m.version} sequence ${m.sequence} from ${result.provider}: ` +
          `${result.artifacts.length} artifact(s) in ${out}`,
      );
    }
    return 0;
  } catch (error) {
    progress?.clear();
    if (controller.signal.aborted || options.signal?.aborted) {
      return _fail(
        130,
        `Interrupted: partial downloads kept as .part files in ${out}`,
        json,
        warnings,
      );
    }
    const code = error instanceof TypeError || error instanceof RangeError ? 2 : 1;
    return _fail(code, describeError(error), json, warnings);
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

const MiB = 1024 * 1024;

/** Progress on stderr: a bar on a terminal, a few plain lines otherwise. */
class _Progress {
  #name = "";
  #started = 0;
  #lastDraw = 0;
  #lastQuarter = 0;
  #drawn = false;
  constructor(readonly tty: boolean) {}

  start(name: string, size: number, sources: string[]): void {
    this.clear();
    this.#name = name;
    this.#started = performance.now();
    this.#lastQuarter = 0;
    if (!this.tty) {
      console.error(`Fetching ${name} (${(size / MiB).toFixed(1)} MiB) from ${sources.join(", ")}`);
    }
  }

  update(name: string, received: number, total: number): void {
    const now = performance.now();
    const seconds = (now - this.#started) / 1000;
    const rate = seconds > 0 ? received / MiB / seconds : 0;
    const fraction = total === 0 ? 1 : received / total;
    if (this.tty) {
      if (now - this.#lastDraw < 100 && received < total) return;
      this.#lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      Deno.stderr.writeSync(new TextEncoder().encode(
        `\r\x1b[K${name} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${
          (received / MiB).toFixed(1)
        }/${(total / MiB).toFixed(1)} MiB ${rate.toFixed(1)} MiB/s`,
      ));
      this.#drawn = true;
    } else {
      const quarter = Math.floor(fraction * 4);
      if (quarter > this.#lastQuarter && quarter < 4) {
        this.#lastQuarter = quarter;
        console.error(
          `${name}: ${quarter * 25}% (${(received / MiB).toFixed(1)} MiB, ${
            rate.toFixed(1)
          } MiB/s)`,
        );
      }
    }
  }

  warn(message: string): void {
    this.clear();
    console.error(`Warning: ${message}`);
  }

  done(name: string, status: string, hash: string): void {
    this.clear();
    console.error(`${name}: ${status === "present" ? "already present" : "verified"} ${hash}`);
  }

  clear(): void {
    if (this.#drawn) {
      Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
      this.#drawn = false;
    }
    void this.#name;
  }
}

function _usage(message: string): number {
  const line = message.split("\n")[0]!.replace(/\. To specify a positional .*$|\.$/, "");
  console.error(`${line} (see fetch --help)`);
  return 2;
}

function _fail(code: number, message: string, json: boolean, warnings: string[] = []): number {
  if (json) console.log(JSON.stringify({ ok: false, error: message, warnings }));
  console.error(message);
  return code;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
