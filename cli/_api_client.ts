/**
 * Shared by `submit` and `result`: find the local node's API (URL and token in the state dir).
 *
 * @module
 */
import { defaultStateDir } from "../net/identity.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { Client } from "../net/client.ts";

/**
 * A {@linkcode Client} of the node whose state dir is `stateDir` (default: the usual one).
 *
 * @throws {Error} If no node has recorded its API there.
 *
 * @example
 * ```ts
 * import { localClient } from "./_api_client.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await assert.rejects(localClient(dir), /Cannot find the node's API/);
 * await Deno.remove(dir);
 * ```
 */
export async function localClient(stateDir?: string): Promise<Client> {
  const dir = stateDir ?? defaultStateDir((name) => Deno.env.get(name));
  try {
    return new Client(await readApiEndpoint(dir));
  } catch (cause) {
    throw new Error(
      `Cannot find the node's API in '${dir}': start a node with 'start' first (${
        cause instanceof Error ? cause.message : cause
      })`,
      { cause },
    );
  }
}
