// deno run --allow-read=/run/phase,/etc/phase boot/kexec_plan.ts
//
// Run by the stub's init as `/bin/phase-kexec-plan` right before kexec: it checks again, against
// the keys baked into the image, what `phase-fetch` left in the tmpfs, so that nothing
// unverified is ever loaded even if an earlier step went wrong.
/**
 * The last check before kexec: verify a fetched boot manifest and its `kernel` and `initramfs`
 * files, and compute the kernel command line of the next stage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type BootManifest,
  MAX_BOOT_MANIFEST_BYTES,
  verifyBootManifest,
} from "../provider/boot_manifest.ts";
import { parseTrustedKeys } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { DigestMismatchError } from "../runtime/errors.ts";
import { parseStrictJson, StrictJsonError } from "../util/strict_json.ts";

/** Options of {@linkcode planKexec}. */
export interface PlanKexecOptions {
  /** Where `manifest.json` and the artifacts were fetched to. */
  dir: string;
  /** Text of the trusted-keys file baked into the image. */
  trustedKeys: string;
  /** The channel that was asked for; the manifest must be for it. */
  channel: string;
  /** The architecture that was asked for; the manifest must be for it. */
  arch: string;
  /** The manifest file. @default {`${dir}/manifest.json`} */
  manifest?: string;
  /** Parameters appended to the manifest's command line (console=, phase.*). @default {""} */
  append?: string;
  /** Time to check expiry against. @default {new Date()} */
  now?: Date;
  /** The providers fetched from, recorded in the provenance. @default {[]} */
  providers?: string[];
  /** Cancel the check. @default {undefined} */
  signal?: AbortSignal;
}

/** What to kexec. */
export interface KexecPlan {
  /** Path of the verified kernel. */
  kernel: string;
  /** Path of the verified initramfs. */
  initrd: string;
  /** The next stage's kernel command line. */
  cmdline: string;
  /** The verified manifest. */
  manifest: BootManifest;
  /** What was verified, for the next stage (`/booted/provenance.json`, see docs/boot.md). */
  provenance: BootProvenance;
}

/**
 * What the stub verified before kexec, handed to the next stage: the node stage's own record of
 * where it came from. It is the stub's statement, not a proof to anyone else (no TPM quote).
 */
export interface BootProvenance {
  /** Always 1. */
  provenance_version: 1;
  /** `sha256:<hex>` of the manifest file exactly as verified (the bytes `serve` sent). */
  boot_manifest_hash: string;
  /** The manifest's `sequence`. */
  boot_sequence: number;
  /** The manifest's `version`. */
  version: string;
  /** The manifest's channel. */
  channel: string;
  /** The manifest's architecture. */
  arch: string;
  /** Key ids (hex public keys) of the manifest's signatures by keys the stub trusts. */
  signer_key_ids: string[];
  /** `sha256:<hex>` of each artifact kexec'd (`kernel`, `initramfs`). */
  artifacts: Record<string, string>;
  /** The providers the artifacts were fetched from, as given. */
  providers: string[];
}

/**
 * Verify the manifest in `dir` against the trusted keys (signature, expiry, channel, arch) and
 * the `kernel` and `initramfs` files against it (size, sha256), then return what to kexec.
 *
 * @throws {ManifestRejectedError} If the manifest is not acceptable.
 * @throws {DigestMismatchError} If a file's sha256 does not match its manifest entry.
 * @throws {RangeError} If the manifest is for another channel or arch, lacks an artifact, or a
 * file's size does not match.
 *
 * @example
 * ```ts
 * import { planKexec } from "./kexec_plan.ts";
 * import { signBootManifest } from "../provider/boot_manifest.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import { sha256Tag, toHex } from "../runtime/digest.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const keys = await generateKeyPair();
 * const files = { kernel: "k", initramfs: "i" } as Record<string, string>;
 * const artifacts: Record<string, { filename: string; size_bytes: number; hash: string; download_url: string }> = {};
 * for (const [name, body] of Object.entries(files)) {
 *   await Deno.writeTextFile(`${dir}/${name}`, body);
 *   artifacts[name] = { filename: name, size_bytes: 1, hash: sha256Tag(body), download_url: `/stable/x86_64/${name}` };
 * }
 * const manifest = await signBootManifest({
 *   manifest_version: 1, version: "1", sequence: 1, channel: "stable", arch: "x86_64",
 *   created_at: "2026-01-01T00:00:00Z", expires_at: "2099-01-01T00:00:00Z", artifacts,
 *   cmdline: "quiet", signatures: [],
 * }, keys);
 * await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest));
 * const plan = await planKexec({
 *   dir, trustedKeys: toHex(keys.publicKey), channel: "stable", arch: "x86_64",
 *   append: "phase.mode=private",
 * });
 * assert.equal(plan.cmdline, "quiet phase.mode=private");
 * assert.equal(plan.kernel, `${dir}/kernel`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function planKexec(options: PlanKexecOptions): Promise<KexecPlan> {
  const {
    dir,
    trustedKeys,
    channel,
    arch,
    manifest: manifestPath = `${dir}/manifest.json`,
    append = "",
    now = new Date(),
    providers = [],
    signal,
  } = options;
  if (_hasControl(append)) {
    throw new TypeError("Cannot plan kexec: appended parameters contain a control character");
  }
  let raw: unknown;
  let manifestBytes: Uint8Array<ArrayBuffer>;
  try {
    manifestBytes = await Deno.readFile(manifestPath);
    // Strictly, as signed data: no duplicate key, float or lone surrogate read one way.
    raw = parseStrictJson(manifestBytes, {
      what: "manifest",
      maxBytes: MAX_BOOT_MANIFEST_BYTES,
    });
  } catch (error) {
    const why = error instanceof StrictJsonError ? error.reason : (error as Error).message;
    throw new SyntaxError(
      `Cannot read manifest '${manifestPath}': ${why}`,
      { cause: error },
    );
  }
  const trusted = parseTrustedKeys(trustedKeys).map((k) => k.publicKey);
  const manifest = await verifyBootManifest(raw, { trustedKeys: trusted, now });
  if (manifest.channel !== channel) {
    throw new RangeError(
      `Cannot accept manifest: it is for channel '${manifest.channel}', not '${channel}'`,
    );
  }
  if (manifest.arch !== arch) {
    throw new RangeError(
      `Cannot accept manifest: it is for arch '${manifest.arch}', not '${arch}'`,
    );
  }
  const paths: Record<string, string> = {};
  const hashes: Record<string, string> = {};
  for (const name of ["kernel", "initramfs"]) {
    const artifact = manifest.artifacts[name];
    if (artifact === undefined) {
      throw new RangeError(`Cannot accept manifest: it has no '${name}' artifact`);
    }
    const path = [`${dir}/${artifact.filename}`, `${dir}/${name}`].find(_isFile);
    if (path === undefined) {
      throw new Deno.errors.NotFound(`Cannot find '${name}' in ${dir}: it was not fetched`);
    }
    signal?.throwIfAborted();
    const { size, hash } = await _hashFile(path);
    if (size !== artifact.size_bytes) {
      throw new RangeError(
        `Cannot accept '${name}': size mismatch: expected ${artifact.size_bytes}, got ${size}`,
      );
    }
    if (hash !== artifact.hash) throw new DigestMismatchError(name, artifact.hash, hash);
    paths[name] = path;
    hashes[name] = hash;
  }
  const base = manifest.cmdline ?? "";
  if (_hasControl(base)) {
    throw new RangeError("Cannot accept manifest: its cmdline contains a control character");
  }
  const trustedHex = new Set(trusted.map(toHex));
  const provenance: BootProvenance = {
    provenance_version: 1,
    boot_manifest_hash: `sha256:${toHex(await _sha256(manifestBytes))}`,
    boot_sequence: manifest.sequence,
    version: manifest.version,
    channel: manifest.channel,
    arch: manifest.arch,
    signer_key_ids: [
      ...new Set(manifest.signatures.map((s) => s.key_id).filter((id) => trustedHex.has(id))),
    ],
    artifacts: hashes,
    providers,
  };
  return {
    kernel: paths.kernel!,
    initrd: paths.initramfs!,
    cmdline: [base.trim(), append.trim()].filter((s) => s !== "").join(" "),
    manifest,
    provenance,
  };
}

function _hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function _isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

async function _hashFile(path: string): Promise<{ size: number; hash: string }> {
  // One native digest call: far cheaper than streaming through JS under emulation (TCG),
  // and kernels and initramfs images fit in memory by definition.
  const bytes = await Deno.readFile(path);
  return { size: bytes.length, hash: `sha256:${toHex(await _sha256(bytes))}` };
}

async function _sha256(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const USAGE =
  "Usage: phase-kexec-plan --dir DIR --trusted-keys FILE --channel C --arch A [--append TEXT] [--manifest FILE] [--provider URL]...";

/**
 * CLI: print the kernel path, the initrd path, the command line and the provenance (one line of
 * JSON), one per line.
 */
async function main(args: string[]): Promise<number> {
  try {
    const { values } = parseArgs({
      args,
      options: {
        dir: { type: "string" },
        "trusted-keys": { type: "string" },
        channel: { type: "string" },
        arch: { type: "string" },
        append: { type: "string", default: "" },
        manifest: { type: "string" },
        provider: { type: "string", multiple: true, default: [] },
      },
      strict: true,
      allowPositionals: false,
    });
    const { dir, channel, arch } = values;
    const keysFile = values["trusted-keys"];
    if (!dir || !keysFile || !channel || !arch) throw new TypeError(`Missing a flag. ${USAGE}`);
    const plan = await planKexec({
      dir,
      trustedKeys: await Deno.readTextFile(keysFile),
      channel,
      arch,
      append: values.append,
      ...(values.manifest ? { manifest: values.manifest } : {}),
      providers: values.provider,
    });
    console.log(
      `${plan.kernel}\n${plan.initrd}\n${plan.cmdline}\n${JSON.stringify(plan.provenance)}`,
    );
    return 0;
  } catch (error) {
    console.error((error as Error).message.split("\n")[0]);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
