/**
 * Where a node's local API is found: the bearer token (`api.token`, created 0600) and the URL
 * the node listens on (`api.json`, rewritten atomically at each start), both in the state dir.
 *
 * @module
 */
import { join } from "node:path";
import { toHex } from "../runtime/digest.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";
import { checkPrivateMode } from "./identity.ts";
import { readUpTo } from "../util/read_up_to.ts";

/** File name of the API token in the state dir. */
export const API_TOKEN_FILE = "api.token";
/** File name of the API address record in the state dir. */
export const API_ENDPOINT_FILE = "api.json";

/**
 * Read the API token from `stateDir`, creating a random one (mode 0600, never chmod'ed after)
 * when there is none.
 *
 * @throws {Deno.errors.PermissionDenied} If an existing token file grants other users any
 * access (mode `0644` and the like): it is refused, not used.
 *
 * @example
 * ```ts
 * import { loadOrCreateApiToken } from "./api_token.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const token = await loadOrCreateApiToken(dir);
 * assert.equal(await loadOrCreateApiToken(dir), token);
 * assert.equal((await Deno.stat(`${dir}/api.token`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadOrCreateApiToken(stateDir: string): Promise<string> {
  const path = join(stateDir, API_TOKEN_FILE);
  try {
    return await _readPrivateToken(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const token = toHex(crypto.getRandomValues(new Uint8Array(32)));
  try {
    await Deno.writeTextFile(path, token, { createNew: true, mode: 0o600 });
    return token;
  } catch (error) {
    // Another process made it first: use theirs.
    if (error instanceof Deno.errors.AlreadyExists) return await _readPrivateToken(path);
    throw error;
  }
}

/**
 * Record the API URL in `stateDir/api.json` (written atomically, with fsync).
 *
 * @example
 * ```ts
 * import { readApiEndpoint, writeApiEndpoint } from "./api_token.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await writeApiEndpoint(dir, "http://127.0.0.1:4000/");
 * await Deno.writeTextFile(`${dir}/api.token`, "a".repeat(64));
 * assert.deepEqual(await readApiEndpoint(dir), { url: "http://127.0.0.1:4000/", token: "a".repeat(64) });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeApiEndpoint(stateDir: string, url: string): Promise<void> {
  const path = join(stateDir, API_ENDPOINT_FILE);
  await writeFileAtomic(path, JSON.stringify({ url, pid: Deno.pid }) + "\n", { mode: 0o600 });
}

/**
 * Read the API URL and token a node recorded in `stateDir`.
 *
 * @throws {Deno.errors.NotFound} If no node has recorded them there.
 *
 * @example
 * ```ts
 * import { readApiEndpoint } from "./api_token.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await assert.rejects(readApiEndpoint(dir), Deno.errors.NotFound);
 * await Deno.remove(dir);
 * ```
 */
export async function readApiEndpoint(stateDir: string): Promise<{ url: string; token: string }> {
  const endpoint = JSON.parse(await Deno.readTextFile(join(stateDir, API_ENDPOINT_FILE)));
  if (typeof endpoint?.url !== "string") {
    throw new TypeError(`Cannot read ${API_ENDPOINT_FILE}: it has no url`);
  }
  const path = join(stateDir, API_TOKEN_FILE);
  return { url: endpoint.url, token: _checkToken(await Deno.readTextFile(path), path) };
}

/** The token in `path`, refused if other users may read or write the file. */
async function _readPrivateToken(path: string): Promise<string> {
  using file = await Deno.open(path, { read: true });
  checkPrivateMode(path, (await file.stat()).mode, "API token");
  return _checkToken(new TextDecoder().decode(await readUpTo(file, 4096)), path);
}

function _checkToken(text: string, path: string): string {
  const token = text.trim();
  if (token.length < 16) throw new TypeError(`Cannot use API token in '${path}': too short`);
  return token;
}
