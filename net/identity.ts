/**
 * Node identity: one Ed25519 key per node, kept as a raw 32-byte secret in the state dir.
 *
 * @module
 */
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";
import { readUpTo } from "../util/read_up_to.ts";

/** File name of the node key inside the state dir. */
export const NODE_KEY_FILE = "node.key";

/**
 * The state dir: `$PLASM_HOME`, else `$XDG_DATA_HOME/plasm`, else `$HOME/.local/share/plasm`.
 * The environment is passed in, so this module reads none at import.
 *
 * @param env A lookup of environment variables, such as `(name) => Deno.env.get(name)`.
 * @throws {TypeError} If none of the three variables is set.
 *
 * @example
 * ```ts
 * import { defaultStateDir } from "./identity.ts";
 * import assert from "node:assert/strict";
 *
 * const env: Record<string, string> = { HOME: "/home/ada" };
 * assert.equal(defaultStateDir((k) => env[k]), "/home/ada/.local/share/plasm");
 * ```
 */
export function defaultStateDir(env: (name: string) => string | undefined): string {
  const home = env("PLASM_HOME");
  if (home) return home;
  const data = env("XDG_DATA_HOME");
  if (data) return `${data}/plasm`;
  const user = env("HOME");
  if (user) return `${user}/.local/share/plasm`;
  throw new TypeError("Cannot find a state dir: set PLASM_HOME (or HOME)");
}

/**
 * Load the node key from `stateDir`, creating it on first use: directory 0700, key file 0600 from
 * creation (never chmod after), written to a temporary file and linked into place, so a crash
 * or a concurrent first start never leaves a partial or a second key.
 *
 * @throws {RangeError} If an existing key file is not exactly 32 bytes.
 * @throws {Deno.errors.PermissionDenied} If an existing key file grants other users any access
 * (mode `0644` and the like): it is refused, never used or silently fixed.
 *
 * @example
 * ```ts
 * import { loadOrCreateIdentity } from "./identity.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const first = await loadOrCreateIdentity(dir);
 * const again = await loadOrCreateIdentity(dir);
 * assert.deepEqual(again.publicKey, first.publicKey);
 * assert.equal((await Deno.stat(`${dir}/node.key`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadOrCreateIdentity(stateDir: string): Promise<KeyPair> {
  const path = `${stateDir}/${NODE_KEY_FILE}`;
  const existing = await _readKey(path);
  if (existing) return existing;
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const keys = await generateKeyPair();
  try {
    await writeFileAtomic(path, keys.secretKey, { mode: 0o600, createNew: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  // Another process may have won the race: the key on disk is the identity.
  return (await _readKey(path))!;
}

async function _readKey(path: string): Promise<KeyPair | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let bytes: Uint8Array;
  let mode: number | null;
  try {
    mode = (await file.stat()).mode;
    bytes = await readUpTo(file, 64);
  } finally {
    file.close();
  }
  if (bytes.length !== 32) {
    throw new RangeError(`Cannot load node key '${path}': expected 32 bytes, got ${bytes.length}`);
  }
  checkPrivateMode(path, mode, "node key");
  return generateKeyPair(bytes);
}

/**
 * Refuse a secret file (node key, API token) that other users may read or write: a key that
 * was readable may have leaked, and the operator should know rather than run with it. `mode` is
 * the file's `Deno.FileInfo.mode` (`null` where the OS has none: nothing to check).
 *
 * @throws {Deno.errors.PermissionDenied} If `mode` grants any group or other access.
 *
 * @example
 * ```ts
 * import { checkPrivateMode } from "./identity.ts";
 * import assert from "node:assert/strict";
 *
 * checkPrivateMode("/srv/plasm/node.key", 0o100600, "node key");
 * assert.throws(
 *   () => checkPrivateMode("/srv/plasm/node.key", 0o100644, "node key"),
 *   /^PermissionDenied: Cannot load node key '\/srv\/plasm\/node\.key': other users can read it \(mode 0644\)/,
 * );
 * ```
 */
export function checkPrivateMode(path: string, mode: number | null, what: string): void {
  if (mode === null || (mode & 0o077) === 0) return;
  const bits = (mode & 0o777).toString(8).padStart(4, "0");
  throw new Deno.errors.PermissionDenied(
    `Cannot load ${what} '${path}': other users can ${
      mode & 0o044 ? "read" : "write"
    } it (mode ${bits}); if it may have leaked make a new one, else run chmod 600 '${path}'`,
  );
}
