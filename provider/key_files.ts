/**
 * Key files: publisher and node secret keys (raw 32 bytes, 0600) and trusted-keys lists.
 *
 * Formats:
 * - secret key file: exactly 32 raw bytes (the Ed25519 seed), mode 0600;
 * - public key file (`*.pub`): 64 lowercase hex characters and a newline;
 * - trusted-keys file: one hex public key per line, optionally followed by whitespace and a
 *   name; blank lines and lines starting with `#` are ignored.
 *
 * @module
 */
import { fromHex, toHex } from "../runtime/digest.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";
import { readFileNamed } from "../util/fs_error.ts";

/** The size of a secret key file: the raw Ed25519 seed. */
const SECRET_KEY_BYTES = 32;

/** A trusted public key with the name the trusted-keys file gives it. */
export interface TrustedKey {
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
  /** The name after the key on its line, or the empty string. */
  name: string;
}

/**
 * Read a raw 32-byte secret key file and derive its key pair.
 *
 * @throws {RangeError} If the file is not exactly 32 bytes.
 *
 * @example
 * ```ts
 * import { readSecretKeyFile, writeKeyPairFiles } from "./key_files.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const made = await writeKeyPairFiles(`${dir}/publisher`);
 * const read = await readSecretKeyFile(`${dir}/publisher.key`);
 * assert.deepEqual(read.publicKey, made.publicKey);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readSecretKeyFile(path: string): Promise<KeyPair> {
  const bytes = await Deno.readFile(path);
  if (bytes.length !== 32) {
    throw new RangeError(
      `Cannot read secret key '${path}': expected 32 raw bytes, got ${bytes.length}`,
    );
  }
  return generateKeyPair(bytes);
}

/**
 * Make a new key pair and write `<base>.key` (raw secret, created 0600, never overwritten) and
 * `<base>.pub` (hex public key).
 *
 * @throws {Deno.errors.AlreadyExists} If `<base>.key` or `<base>.pub` exists: a key is never
 * replaced (and no half pair is left behind).
 *
 * @example
 * ```ts
 * import { writeKeyPairFiles } from "./key_files.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await writeKeyPairFiles(`${dir}/k`);
 * assert.equal((await Deno.stat(`${dir}/k.key`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeKeyPairFiles(base: string): Promise<KeyPair> {
  const keys = await generateKeyPair();
  await writeFileAtomic(`${base}.key`, keys.secretKey, { mode: 0o600, createNew: true });
  try {
    await writeFileAtomic(`${base}.pub`, `${toHex(keys.publicKey)}\n`, { createNew: true });
  } catch (error) {
    // No half pair: a secret whose public half was never written is removed again.
    await Deno.remove(`${base}.key`).catch(() => {});
    throw error;
  }
  return keys;
}

/**
 * Parse a trusted-keys file's text. Text that is not a text file of keys (control characters
 * or bytes that are not UTF-8, as in a raw secret key file) is refused without quoting any of
 * it, and a bad line is quoted only when it is printable.
 *
 * @throws {SyntaxError} Naming the line that is not a 32-byte hex key.
 *
 * @example
 * ```ts
 * import { parseTrustedKeys } from "./key_files.ts";
 * import assert from "node:assert/strict";
 *
 * const keys = parseTrustedKeys(`# release keys\n${"ab".repeat(32)} release-2026\n`);
 * assert.equal(keys.length, 1);
 * assert.equal(keys[0]!.name, "release-2026");
 * ```
 */
export function parseTrustedKeys(text: string): TrustedKey[] {
  if (_BINARY.test(text)) {
    throw new SyntaxError(
      "Cannot read trusted keys: binary data, not hex keys (a secret key file? give the .pub)",
    );
  }
  const keys: TrustedKey[] = [];
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [hex = "", ...name] = line.split(/\s+/);
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      const shown = /^[\x21-\x7e]+$/.test(hex) ? `: '${hex.slice(0, 20)}'` : "";
      throw new SyntaxError(
        `Cannot read trusted keys: line ${index + 1} is not a 32-byte hex key${shown}`,
      );
    }
    keys.push({ publicKey: fromHex(hex.toLowerCase(), 32), name: name.join(" ") });
  }
  return keys;
}

/**
 * Read a trusted-keys file (see the module doc). A secret key file given by mistake is
 * recognised and refused without printing any of it.
 *
 * @throws {SyntaxError} If the file is a secret key file, binary, or has a line that is not a
 * key; the message starts `Cannot read trusted keys '<path>'`.
 * @throws {Deno.errors.NotFound} Or another file-system error, with the same message start.
 *
 * @example
 * ```ts
 * import { readTrustedKeysFile, writeKeyPairFiles } from "./key_files.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const made = await writeKeyPairFiles(`${dir}/release`);
 * const [key] = await readTrustedKeysFile(`${dir}/release.pub`);
 * assert.deepEqual(key!.publicKey, made.publicKey);
 * await assert.rejects(
 *   () => readTrustedKeysFile(`${dir}/release.key`),
 *   /this is a secret key file; give the \.pub/,
 * );
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readTrustedKeysFile(path: string): Promise<TrustedKey[]> {
  const text = await _readKeyText(path, "trusted keys");
  try {
    return parseTrustedKeys(text);
  } catch (error) {
    const why = (error as Error).message.replace(/^Cannot read trusted keys: /, "");
    throw new SyntaxError(`Cannot read trusted keys '${path}': ${why}`, { cause: error });
  }
}

/**
 * Read a public key file (`*.pub`: one hex key; a trusted-keys file with exactly one key is
 * accepted too). A secret key file given by mistake is refused without printing any of it.
 *
 * @throws {SyntaxError} If the file is a secret key file or does not hold exactly one key.
 *
 * @example
 * ```ts
 * import { readPublicKeyFile, writeKeyPairFiles } from "./key_files.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const made = await writeKeyPairFiles(`${dir}/worker`);
 * assert.deepEqual(await readPublicKeyFile(`${dir}/worker.pub`), made.publicKey);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readPublicKeyFile(path: string): Promise<Uint8Array> {
  const text = await _readKeyText(path, "public key");
  let keys;
  try {
    keys = parseTrustedKeys(text);
  } catch (error) {
    const why = (error as Error).message.replace(/^Cannot read trusted keys: /, "");
    throw new SyntaxError(`Cannot read public key '${path}': ${why}`, { cause: error });
  }
  if (keys.length !== 1) {
    throw new SyntaxError(
      `Cannot read public key '${path}': expected one hex key, found ${keys.length}`,
    );
  }
  return keys[0]!.publicKey;
}

/** Control characters other than tab, CR and LF, DEL, and U+FFFD (bytes that were not UTF-8). */
// deno-lint-ignore no-control-regex
const _BINARY = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]/;

async function _readKeyText(path: string, what: string): Promise<string> {
  const bytes = await readFileNamed(path, what);
  const text = new TextDecoder().decode(bytes);
  // No line of a key file fits in 32 bytes, so 32 bytes that are binary or hold anything but
  // comments are a secret key given by mistake: say so, and quote none of it. (A random seed
  // can start with '#' and have every later line start with one too: binary still names it.)
  const content = text.split("\n").some((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  if (bytes.length === SECRET_KEY_BYTES && (content || _BINARY.test(text))) {
    throw new SyntaxError(
      `Cannot read ${what} '${path}': this is a secret key file; give the .pub`,
    );
  }
  if (_BINARY.test(text)) {
    throw new SyntaxError(`Cannot read ${what} '${path}': binary data, not hex keys`);
  }
  return text;
}
