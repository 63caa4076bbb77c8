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
 * @throws {Deno.errors.AlreadyExists} If `<base>.key` exists: a key is never replaced.
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
  const file = await Deno.open(`${base}.key`, { write: true, createNew: true, mode: 0o600 });
  try {
    await file.write(keys.secretKey);
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.writeTextFile(`${base}.pub`, `${toHex(keys.publicKey)}\n`);
  return keys;
}

/**
 * Parse a trusted-keys file's text.
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
  const keys: TrustedKey[] = [];
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [hex = "", ...name] = line.split(/\s+/);
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      throw new SyntaxError(
        `Cannot read trusted keys: line ${index + 1} is not a 32-byte hex key: '${
          hex.slice(0, 20)
        }'`,
      );
    }
    keys.push({ publicKey: fromHex(hex.toLowerCase(), 32), name: name.join(" ") });
  }
  return keys;
}
