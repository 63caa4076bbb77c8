// deno run --allow-read cli/verify.ts <manifest|receipt|artifact> ...
// With `manifest --state FILE` also: --allow-write=<directory of FILE> (the state is rewritten
// atomically beside it). No net, run, env.
/**
 * `verify`: check boot manifests, receipts and artifact hashes. Exit codes: 0 verified,
 * 1 not verified (one line on stderr says exactly what failed), 2 usage or unreadable input.
 *
 * - `verify manifest <manifest.json> --trusted-keys FILE [--threshold N] [--state FILE]
 *   [--artifacts DIR] [--only a,b] [--json]`
 * - `verify artifact <file> --hash sha256:<hex> [--size N] [--json]`
 * - `verify receipt ...` (see `cli/verify_receipt.ts`)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { acceptBootManifest } from "../provider/accept_boot_manifest.ts";
import { ManifestRejectedError } from "../provider/boot_manifest.ts";
import { readTrustedKeysFile } from "../provider/key_files.ts";
import { recordAcceptedManifest } from "../provider/manifest_state.ts";
import { hashFile, verifyArtifacts } from "../provider/verify_artifacts.ts";
import { isSha256Tag, toHex } from "../runtime/digest.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { verifyReceiptMain } from "./verify_receipt.ts";
import { errorLine } from "../util/error_message.ts";
import { dirname } from "node:path";

const USAGE = `Usage:
  verify manifest <manifest.json> --trusted-keys FILE [--threshold N] [--state FILE]
                  [--artifacts DIR] [--only NAME,...] [--json]
  verify artifact <file> --hash sha256:<hex> [--size BYTES] [--json]
  verify receipt <receipt.json> --key <hex|PeerId|FILE.pub> [...]

Exit codes: 0 verified, 1 not verified, 2 usage or unreadable input. Errors are one line.`;

/**
 * Run `verify` with its arguments; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./verify.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "abc");
 * const hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
 * const log = console.log;
 * console.log = () => {};
 * try {
 *   assert.equal(await main(["artifact", path, "--hash", hash]), 0);
 * } finally {
 *   console.log = log;
 * }
 * await Deno.remove(path);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "manifest":
      return await verifyManifestMain(rest);
    case "receipt":
      return await verifyReceiptMain(rest);
    case "artifact":
      return await verifyArtifactMain(rest);
    case "-h":
    case "--help":
      console.log(USAGE);
      return 0;
    default:
      return _usage(
        sub === undefined
          ? "Cannot verify: give what to verify: manifest, artifact or receipt"
          : `Cannot verify '${sub}': unknown kind (manifest, artifact or receipt)`,
      );
  }
}

/**
 * `verify manifest`: signatures by at least `--threshold` distinct trusted keys, expiry,
 * rollback against `--state` (recorded there when accepted), shape; with `--artifacts DIR` the
 * size and sha256 of each artifact file. Returns the exit code.
 *
 * @example
 * ```ts
 * import { verifyManifestMain } from "./verify.ts";
 * import assert from "node:assert/strict";
 *
 * const error = console.error;
 * console.error = () => {};
 * try {
 *   assert.equal(await verifyManifestMain(["m.json"]), 2); // --trusted-keys is required
 * } finally {
 *   console.error = error;
 * }
 * ```
 */
export async function verifyManifestMain(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "trusted-keys": { type: "string" },
        threshold: { type: "string", default: "1" },
        state: { type: "string" },
        artifacts: { type: "string" },
        only: { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    return _usage((error as Error).message);
  }
  if (positionals.length !== 1) return _usage("Cannot verify manifest: give exactly one file");
  if (values["trusted-keys"] === undefined) {
    return _usage("Cannot verify manifest: --trusted-keys FILE is required");
  }
  const threshold = Number(values.threshold);
  if (!/^[1-9][0-9]*$/.test(values.threshold)) {
    return _usage(`Cannot verify manifest: --threshold must be a whole number >= 1`);
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const json = values.json;
  const path = positionals[0]!;
  if (values.state !== undefined) {
    const dir = dirname(values.state);
    if ((await Deno.permissions.query({ name: "write", path: dir })).state !== "granted") {
      return _fail(2, `Cannot use --state '${values.state}': run with --allow-write=${dir}`, json);
    }
  }
  let text: string, trusted;
  try {
    trusted = await readTrustedKeysFile(values["trusted-keys"]);
    text = await _read(path, "manifest");
  } catch (error) {
    return _fail(2, errorLine(error), json);
  }
  let manifest;
  try {
    manifest = await acceptBootManifest(text, {
      trustedKeys: trusted.map((k) => k.publicKey),
      threshold,
      statePath: values.state,
    });
  } catch (error) {
    const code = error instanceof ManifestRejectedError ? 1 : 2;
    return _fail(code, errorLine(error), json, _reason(error));
  }
  if (values.state !== undefined) {
    try {
      await recordAcceptedManifest(values.state, manifest);
    } catch (error) {
      const hint = error instanceof Deno.errors.NotCapable
        ? `run with --allow-write=${dirname(values.state)}`
        : errorLine(error);
      return _fail(1, `Cannot record state in '${values.state}': ${hint}`, json);
    }
  }
  const trustedHex = new Set(trusted.map((k) => toHex(k.publicKey)));
  const signers = [
    ...new Set(manifest.signatures.map((s) => s.key_id).filter((k) => trustedHex.has(k))),
  ];
  const summary = {
    channel: manifest.channel,
    arch: manifest.arch,
    version: manifest.version,
    sequence: manifest.sequence,
    expires_at: manifest.expires_at,
    trusted_signers: signers,
    threshold,
  };
  let checks;
  if (values.artifacts !== undefined) {
    try {
      checks = await verifyArtifacts(manifest, values.artifacts, only ? { only } : {});
    } catch (error) {
      return _fail(2, errorLine(error), json);
    }
    const failed = checks.filter((c) => !c.ok);
    if (failed.length > 0) {
      const line = failed.map((c) => c.error).join("; ");
      if (json) {
        console.log(
          JSON.stringify({ ok: false, error: line, manifest: summary, artifacts: checks }),
        );
      }
      console.error(line);
      return 1;
    }
  }
  if (json) {
    console.log(
      JSON.stringify({ ok: true, manifest: summary, ...(checks ? { artifacts: checks } : {}) }),
    );
  } else {
    console.log(
      `OK manifest ${manifest.channel}/${manifest.arch} version ${manifest.version} sequence ${manifest.sequence}: ` +
        `${signers.length} trusted signature(s), threshold ${threshold}, expires ${manifest.expires_at}`,
    );
    for (const c of checks ?? []) {
      const a = manifest.artifacts[c.name]!;
      console.log(`OK ${c.name} ${c.path} ${a.size_bytes} bytes ${a.hash}`);
    }
  }
  return 0;
}

/**
 * `verify artifact <file> --hash sha256:<hex> [--size N]`: check one file. Returns the exit code.
 *
 * @example
 * ```ts
 * import { verifyArtifactMain } from "./verify.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * const error = console.error;
 * console.error = () => {};
 * try {
 *   assert.equal(await verifyArtifactMain([path, "--hash", "sha256:" + "0".repeat(64)]), 1);
 * } finally {
 *   console.error = error;
 * }
 * await Deno.remove(path);
 * ```
 */
export async function verifyArtifactMain(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        hash: { type: "string" },
        size: { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    return _usage((error as Error).message);
  }
  if (positionals.length !== 1) return _usage("Cannot verify artifact: give exactly one file");
  if (!isSha256Tag(values.hash)) {
    return _usage("Cannot verify artifact: --hash must be sha256:<64 lowercase hex>");
  }
  if (values.size !== undefined && !/^(0|[1-9][0-9]*)$/.test(values.size)) {
    return _usage("Cannot verify artifact: --size must be a whole number of bytes");
  }
  const path = positionals[0]!;
  let got;
  try {
    got = await hashFile(path);
  } catch (error) {
    return _fail(2, `Cannot verify artifact '${path}': ${fsErrorReason(error)}`, values.json);
  }
  const problems: string[] = [];
  if (values.size !== undefined && got.size !== Number(values.size)) {
    problems.push(`size mismatch: expected ${values.size} bytes, got ${got.size}`);
  }
  if (got.hash !== values.hash) {
    problems.push(`sha256 mismatch: expected ${values.hash}, got ${got.hash}`);
  }
  if (problems.length > 0) {
    return _fail(1, `Cannot accept '${path}': ${problems.join("; ")}`, values.json);
  }
  if (values.json) console.log(JSON.stringify({ ok: true, path, ...got }));
  else console.log(`OK ${path} ${got.size} bytes ${got.hash}`);
  return 0;
}

async function _read(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Cannot read ${what} '${path}': ${fsErrorReason(error)}`, { cause: error });
  }
}

function _usage(message: string): number {
  const line = message.split("\n")[0]!.replace(/\. To specify a positional .*$|\.$/, "");
  console.error(`${line} (see verify --help)`);
  return 2;
}

function _fail(code: number, message: string, json: boolean, reason?: string): number {
  if (json) {
    console.log(JSON.stringify({ ok: false, error: message, ...(reason ? { reason } : {}) }));
  }
  console.error(message);
  return code;
}

function _reason(error: unknown): string | undefined {
  return error instanceof ManifestRejectedError ? error.reason : undefined;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
