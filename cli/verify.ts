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
import { acceptBootManifest } from "../provider/accept_boot_manifest.ts";
import { type BootManifest, ManifestRejectedError } from "../provider/boot_manifest.ts";
import { readTrustedKeysFile } from "../provider/key_files.ts";
import { recordAcceptedManifest } from "../provider/manifest_state.ts";
import { hashFile, verifyArtifacts } from "../provider/verify_artifacts.ts";
import { isSha256Tag, toHex } from "../runtime/digest.ts";
import { fsErrorReason, readFileNamed } from "../util/fs_error.ts";
import { VERIFY_RECEIPT_COMMAND, verifyReceiptMain } from "./verify_receipt.ts";
import { errorLine } from "../util/error_message.ts";
import { dirname } from "node:path";
import { type CliContext, CommandIo, runCommand, UsageError, usageText } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `verify manifest`. */
export const VERIFY_MANIFEST_COMMAND = {
  name: "verify manifest",
  args: "<manifest.json>",
  about:
    `Checks the signatures (at least --threshold distinct trusted keys), expiry, rollback against
--state (recorded there when accepted) and shape; with --artifacts DIR also each file's size and
sha256. Exit codes: 0 verified, 1 not verified, 2 usage or unreadable input.`,
  options: {
    "trusted-keys": { type: "string", value: "FILE", required: true, description: "hex keys" },
    threshold: { type: "string", default: "1", value: "N", description: "signatures needed" },
    state: { type: "string", value: "FILE", description: "the last accepted sequence" },
    artifacts: { type: "string", value: "DIR", description: "check the artifact files there" },
    only: { type: "string", value: "NAME,...", description: "check only these artifacts" },
    json: { type: "boolean", description: "one JSON object on stdout" },
  },
} as const;

/** The options of `verify artifact`. */
export const VERIFY_ARTIFACT_COMMAND = {
  name: "verify artifact",
  args: "<file>",
  about: "Checks one file's sha256 (and size). Exit codes: 0 verified, 1 not verified, 2 usage.",
  options: {
    hash: { type: "string", value: "sha256:<hex>", required: true, description: "expected hash" },
    size: { type: "string", value: "BYTES", description: "expected size" },
    json: { type: "boolean", description: "one JSON object on stdout" },
  },
} as const;

const DISPATCH = { name: "verify", about: "", options: {} };

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
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["artifact", path, "--hash", hash], { stdout: quiet }), 0);
 * await Deno.remove(path);
 * ```
 */
export async function main(args: string[], context: CliContext = {}): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "manifest":
      return await verifyManifestMain(rest, context);
    case "receipt":
      return await verifyReceiptMain(rest, context);
    case "artifact":
      return await verifyArtifactMain(rest, context);
    case "-h":
    case "--help": {
      const specs = [VERIFY_MANIFEST_COMMAND, VERIFY_ARTIFACT_COMMAND, VERIFY_RECEIPT_COMMAND];
      new CommandIo(DISPATCH, context).print([
        ...specs.map((spec) => usageText(spec).split("\n\n")[0]!),
        "",
        "Each takes --help. Exit codes: 0 verified, 1 not verified, 2 usage or unreadable input.",
        "Errors are one line.",
      ].join("\n"));
      return 0;
    }
    default:
      return new CommandIo(DISPATCH, context).usage(
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
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await verifyManifestMain(["m.json"], { stderr: quiet }), 2); // no --trusted-keys
 * ```
 */
export function verifyManifestMain(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(VERIFY_MANIFEST_COMMAND, args, context, async (values, positionals, io) => {
    if (positionals.length !== 1) {
      throw new UsageError("Cannot verify manifest: give exactly one file");
    }
    const keysFile = values["trusted-keys"];
    if (keysFile === undefined) {
      throw new UsageError("Cannot verify manifest: --trusted-keys FILE is required");
    }
    if (!/^[1-9][0-9]*$/.test(values.threshold)) {
      throw new UsageError(`Cannot verify manifest: --threshold must be a whole number >= 1`);
    }
    const threshold = Number(values.threshold);
    const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const { json } = values;
    try {
      const { manifest, trusted } = await _accept(
        positionals[0]!,
        keysFile,
        threshold,
        values.state,
      );
      let checks;
      if (values.artifacts !== undefined) {
        try {
          checks = await verifyArtifacts(manifest, values.artifacts, only ? { only } : {});
        } catch (error) {
          throw new _Refused(2, errorLine(error));
        }
      }
      return _report(io, { manifest, trusted, threshold, checks, json });
    } catch (error) {
      if (!(error instanceof _Refused)) throw error;
      return _fail(io, error.code, error.message, json, error.reason);
    }
  });
}

/** A refusal of `verify manifest`: its exit code and, for a rejected manifest, the reason. */
class _Refused extends Error {
  constructor(readonly code: number, message: string, readonly reason?: string) {
    super(message);
  }
}

/** Read the keys and the manifest, accept it (and record it in `state`), or throw `_Refused`. */
async function _accept(path: string, keysFile: string, threshold: number, state?: string) {
  if (state !== undefined) {
    const dir = dirname(state);
    if ((await Deno.permissions.query({ name: "write", path: dir })).state !== "granted") {
      throw new _Refused(2, `Cannot use --state '${state}': run with --allow-write=${dir}`);
    }
  }
  let text: Uint8Array, trusted;
  try {
    trusted = await readTrustedKeysFile(keysFile);
    // Bytes: the strict parser refuses a BOM and bad UTF-8.
    text = await readFileNamed(path, "manifest");
  } catch (error) {
    throw new _Refused(2, errorLine(error));
  }
  let manifest;
  try {
    manifest = await acceptBootManifest(text, {
      trustedKeys: trusted.map((k) => k.publicKey),
      threshold,
      statePath: state,
    });
  } catch (error) {
    const code = error instanceof ManifestRejectedError ? 1 : 2;
    throw new _Refused(code, errorLine(error), _reason(error));
  }
  if (state !== undefined) {
    try {
      await recordAcceptedManifest(state, manifest);
    } catch (error) {
      const hint = error instanceof Deno.errors.NotCapable
        ? `run with --allow-write=${dirname(state)}`
        : errorLine(error);
      throw new _Refused(1, `Cannot record state in '${state}': ${hint}`);
    }
  }
  return { manifest, trusted };
}

/** Print an accepted manifest (and its artifact checks); returns the exit code. */
function _report(io: CommandIo, o: {
  manifest: BootManifest;
  trusted: { publicKey: Uint8Array }[];
  threshold: number;
  checks: Awaited<ReturnType<typeof verifyArtifacts>> | undefined;
  json: boolean;
}): number {
  const { manifest, checks, json, threshold } = o;
  const trustedHex = new Set(o.trusted.map((k) => toHex(k.publicKey)));
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
  const failed = (checks ?? []).filter((c) => !c.ok);
  if (failed.length > 0) {
    const line = failed.map((c) => c.error).join("; ");
    if (json) {
      io.print(JSON.stringify({ ok: false, error: line, manifest: summary, artifacts: checks }));
    }
    return io.fail(line);
  }
  if (json) {
    io.print(
      JSON.stringify({ ok: true, manifest: summary, ...(checks ? { artifacts: checks } : {}) }),
    );
    return 0;
  }
  io.print(
    `OK manifest ${manifest.channel}/${manifest.arch} version ${manifest.version} sequence ${manifest.sequence}: ` +
      `${signers.length} trusted signature(s), threshold ${threshold}, expires ${manifest.expires_at}`,
  );
  for (const c of checks ?? []) {
    const a = manifest.artifacts[c.name]!;
    io.print(`OK ${c.name} ${c.path} ${a.size_bytes} bytes ${a.hash}`);
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
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * const hash = "sha256:" + "0".repeat(64);
 * assert.equal(await verifyArtifactMain([path, "--hash", hash], { stderr: quiet }), 1);
 * await Deno.remove(path);
 * ```
 */
export function verifyArtifactMain(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(VERIFY_ARTIFACT_COMMAND, args, context, async (values, positionals, io) => {
    if (positionals.length !== 1) {
      throw new UsageError("Cannot verify artifact: give exactly one file");
    }
    if (!isSha256Tag(values.hash)) {
      throw new UsageError("Cannot verify artifact: --hash must be sha256:<64 lowercase hex>");
    }
    if (values.size !== undefined && !/^(0|[1-9][0-9]*)$/.test(values.size)) {
      throw new UsageError("Cannot verify artifact: --size must be a whole number of bytes");
    }
    const path = positionals[0]!;
    let got;
    try {
      got = await hashFile(path);
    } catch (error) {
      return _fail(io, 2, `Cannot verify artifact '${path}': ${fsErrorReason(error)}`, values.json);
    }
    const problems: string[] = [];
    if (values.size !== undefined && got.size !== Number(values.size)) {
      problems.push(`size mismatch: expected ${values.size} bytes, got ${got.size}`);
    }
    if (got.hash !== values.hash) {
      problems.push(`sha256 mismatch: expected ${values.hash}, got ${got.hash}`);
    }
    if (problems.length > 0) {
      return _fail(io, 1, `Cannot accept '${path}': ${problems.join("; ")}`, values.json);
    }
    if (values.json) io.print(JSON.stringify({ ok: true, path, ...got }));
    else io.print(`OK ${path} ${got.size} bytes ${got.hash}`);
    return 0;
  });
}

function _fail(
  io: CommandIo,
  code: number,
  message: string,
  json: boolean,
  reason?: string,
): number {
  if (json) io.print(JSON.stringify({ ok: false, error: message, ...(reason ? { reason } : {}) }));
  return io.fail(message, code);
}

function _reason(error: unknown): string | undefined {
  return error instanceof ManifestRejectedError ? error.reason : undefined;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
