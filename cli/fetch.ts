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
import { fetchArtifacts, type FetchArtifactsOptions } from "../provider/fetch_artifacts.ts";
import { readTrustedKeysFile } from "../provider/key_files.ts";
import { describeError, fsErrorReason } from "../util/fs_error.ts";
import { parseDuration, parseSize } from "./_units.ts";
import { errorLine } from "../util/error_message.ts";
import { dirname } from "node:path";
import type { FlagValues } from "./_flags.ts";
import { type CliContext, type CommandIo, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";
import { FetchProgress } from "./_progress.ts";

/** The options of `fetch`. */
export const FETCH_COMMAND = {
  name: "fetch",
  about: `--trusted-keys is a list of hex public keys (a keygen .pub is one), never a secret .key.
A source slower than --min-rate over a --stall-timeout window counts as stalled: the next
one is tried. One fetch per --out dir at a time (it holds DIR/.fetch.lock); links in DIR that
fetch did not make are refused, never followed.
Exit codes: 0 verified and in place, 1 failed, 2 usage or unusable input, 130 interrupted.
Errors are one line (the last one on stderr).`,
  options: {
    provider: {
      type: "string",
      multiple: true,
      value: "URL",
      required: true,
      description: "a mirror",
    },
    out: { type: "string", value: "DIR", required: true, description: "where the artifacts go" },
    "trusted-keys": { type: "string", value: "FILE", required: true, description: "hex keys" },
    channel: { type: "string", default: "stable", value: "NAME", description: "boot channel" },
    arch: { type: "string", default: "x86_64", value: "ARCH", description: "architecture" },
    threshold: { type: "string", default: "1", value: "N", description: "signatures needed" },
    state: { type: "string", value: "FILE", description: "the last accepted sequence" },
    only: { type: "string", value: "NAME,...", description: "fetch only these artifacts" },
    json: { type: "boolean", description: "one JSON object on stdout, no progress" },
    retries: { type: "string", default: "3", value: "N", description: "per source" },
    "stall-timeout": { type: "string", default: "30s", value: "DURATION", description: "no byte" },
    "min-rate": {
      type: "string",
      default: "16KiB/s",
      value: "RATE",
      description: "slower over a stall-timeout window is a stall (0: off)",
    },
    "max-redirects": { type: "string", default: "5", value: "N", description: "per request" },
    "parallel-threshold": {
      type: "string",
      default: "8MiB",
      value: "SIZE",
      description: "split above",
    },
    "segment-size": { type: "string", default: "4MiB", value: "SIZE", description: "per range" },
    "no-fsync": { type: "boolean", description: "do not sync files to disk" },
  },
  // The lines scripts and docs quote: the bare message.
} as const;

type _Values = FlagValues<typeof FETCH_COMMAND.options>;

/**
 * Run `fetch`; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./fetch.ts";
 * import assert from "node:assert/strict";
 *
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["--out", "x"], { stderr: quiet }), 2); // no --provider
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(FETCH_COMMAND, args, context, async (values, _, io) => {
    const options = _options(values);
    const { json, out } = options;
    const fail = (code: number, message: string, warnings: string[] = []) => {
      if (json) io.print(JSON.stringify({ ok: false, error: message, warnings }));
      return io.fail(message, code);
    };
    const problem = await _checkPaths(out, values.state);
    if (problem) return fail(2, problem);
    let trustedKeys;
    try {
      trustedKeys = (await readTrustedKeysFile(options.keysFile)).map((k) => k.publicKey);
    } catch (error) {
      return fail(2, errorLine(error));
    }
    const tty = context.stderr === undefined && Deno.stderr.isTerminal();
    const progress = json
      ? undefined
      : new FetchProgress((text) => io.writeError(new TextEncoder().encode(text)), {
        tty,
      });
    const warnings: string[] = [];
    const controller = new AbortController();
    const onSigint = () => controller.abort(new DOMException("Interrupted", "AbortError"));
    Deno.addSignalListener("SIGINT", onSigint);
    const signal = io.signal ? AbortSignal.any([io.signal, controller.signal]) : controller.signal;
    try {
      const result = await fetchArtifacts({
        ...options.fetch,
        trustedKeys,
        signal,
        onArtifact: (name, size, sources) => progress?.start(name, size, sources),
        onProgress: (name, received, total) => progress?.update(name, received, total),
        onDone: (a) => progress?.done(a.name, a.status, a.hash),
        onWarning: (message) => {
          warnings.push(message);
          progress?.warn(message);
        },
      });
      _report(io, result, { json, out, warnings });
      return 0;
    } catch (error) {
      progress?.clear();
      if (signal.aborted) {
        return fail(130, `Interrupted: partial downloads kept as .part files in ${out}`, warnings);
      }
      const code = error instanceof TypeError || error instanceof RangeError ? 2 : 1;
      return fail(code, describeError(error), warnings);
    } finally {
      Deno.removeSignalListener("SIGINT", onSigint);
    }
  });
}

/** Validate the flags into the options of `fetchArtifacts`, or throw a `UsageError`. */
function _options(values: _Values) {
  const providers = values.provider;
  if (providers.length === 0) {
    throw new UsageError("Cannot fetch: give at least one --provider URL");
  }
  const out = values.out;
  if (out === undefined) throw new UsageError("Cannot fetch: --out DIR is required");
  const keysFile = values["trusted-keys"];
  if (keysFile === undefined) throw new UsageError("Cannot fetch: --trusted-keys FILE is required");
  const whole = (flag: string, text: string, min: number): number => {
    if (!/^[0-9]+$/.test(text) || Number(text) < min) {
      throw new UsageError(
        `Cannot fetch: --${flag} must be a whole number >= ${min}, got '${text}'`,
      );
    }
    return Number(text);
  };
  const threshold = whole("threshold", values.threshold, 1);
  const retries = whole("retries", values.retries, 0);
  const maxRedirects = whole("max-redirects", values["max-redirects"], 0);
  let stallTimeoutMs, parallelThreshold, segmentSize, minRate;
  try {
    stallTimeoutMs = parseDuration(values["stall-timeout"]);
    minRate = parseSize(values["min-rate"].replace(/\/s$/i, ""));
    parallelThreshold = parseSize(values["parallel-threshold"]);
    segmentSize = parseSize(values["segment-size"]);
  } catch (error) {
    throw new UsageError(`Cannot fetch: ${errorLine(error)}`);
  }
  if (stallTimeoutMs < 1) throw new UsageError("Cannot fetch: --stall-timeout must be above zero");
  if (segmentSize < 1) throw new UsageError("Cannot fetch: --segment-size must be above zero");
  const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const fetch = {
    providers,
    out,
    threshold,
    statePath: values.state,
    channel: values.channel,
    arch: values.arch,
    only,
    retries,
    maxRedirects,
    stallTimeoutMs,
    minRate,
    parallelThreshold,
    segmentSize,
    sync: !values["no-fsync"],
  } satisfies Partial<FetchArtifactsOptions>;
  return { json: values.json, out, keysFile, fetch };
}

/** The problem with the output dir and state file (grants, not a directory), if any. */
async function _checkPaths(out: string, state: string | undefined): Promise<string | undefined> {
  for (const [path, name] of [[out, "write"], [state, "write"], [out, "read"]] as const) {
    if (path === undefined) continue;
    const target = path === state ? dirname(path) : path;
    if ((await Deno.permissions.query({ name, path: target })).state !== "granted") {
      return `Cannot use '${path}': run with --allow-${name}=${target}`;
    }
  }
  try {
    if (!(await Deno.stat(out)).isDirectory) return `Cannot use --out '${out}': not a directory`;
  } catch (error) {
    // A missing --out is made by the download; anything else is a problem to name now.
    if (!(error instanceof Deno.errors.NotFound)) {
      return `Cannot use --out '${out}': ${fsErrorReason(error)}`;
    }
  }
  return undefined;
}

/** Print what was fetched: one JSON object, or one `OK ...` line on stderr. */
function _report(
  io: CommandIo,
  result: Awaited<ReturnType<typeof fetchArtifacts>>,
  o: { json: boolean; out: string; warnings: string[] },
): void {
  const m = result.manifest;
  if (o.json) {
    io.print(JSON.stringify({
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
      warnings: o.warnings,
    }));
    return;
  }
  io.log(
    `OK ${m.channel}/${m.arch} version ${m.version} sequence ${m.sequence} from ${result.provider}: ` +
      `${result.artifacts.length} artifact(s) in ${o.out}`,
  );
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
