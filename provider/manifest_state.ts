/**
 * The rollback state file: the highest boot manifest `sequence` a client has accepted, per
 * channel and architecture. Written atomically (temporary file, fsync, rename, fsync of the
 * directory), so a crash leaves either the old or the new state, never a torn file.
 *
 * Format (JSON):
 *
 * ```json
 * {
 *   "state_version": 1,
 *   "accepted": {
 *     "stable": {
 *       "x86_64": { "sequence": 7, "version": "2026.11.1", "accepted_at": "2026-11-24T20:00:00Z" }
 *     }
 *   }
 * }
 * ```
 *
 * @module
 */
import { rfc3339 } from "../runtime/receipt.ts";
import { parseStrictJson, StrictJsonError } from "../util/strict_json.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/** What the state remembers of the last accepted manifest of one channel and architecture. */
export interface ManifestStateEntry {
  /** The highest accepted `sequence`. */
  sequence: number;
  /** The `version` of that manifest. */
  version: string;
  /** When it was accepted, RFC 3339 UTC. */
  accepted_at: string;
}

/** The content of a state file. */
export interface ManifestState {
  /** Always 1. */
  state_version: 1;
  /** Entries by channel, then architecture. */
  accepted: Record<string, Record<string, ManifestStateEntry>>;
}

/**
 * Read a state file. A missing file is an empty state; a file that is not a valid state is an
 * error (silently starting over would switch rollback protection off). The file is read as
 * strictly as signed data: a key given twice (two `sequence`s) or a float is refused.
 *
 * @throws {SyntaxError} If the file is not a valid state file.
 *
 * @example
 * ```ts
 * import { readManifestState } from "./manifest_state.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * assert.deepEqual(await readManifestState(`${dir}/state.json`), { state_version: 1, accepted: {} });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readManifestState(path: string): Promise<ManifestState> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { state_version: 1, accepted: {} };
    throw error;
  }
  const bad = (what: string) =>
    new SyntaxError(`Cannot read state file '${path}': ${what} (delete it only on purpose)`);
  let value: unknown;
  try {
    value = parseStrictJson(bytes, { what: "state file" });
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    throw bad(error.notJson ? "not JSON" : error.reason);
  }
  const state = value as ManifestState;
  if (typeof value !== "object" || value === null || state.state_version !== 1) {
    throw bad("not a state_version 1 object");
  }
  if (typeof state.accepted !== "object" || state.accepted === null) {
    throw bad("accepted is not an object");
  }
  for (const [channel, arches] of Object.entries(state.accepted)) {
    if (typeof arches !== "object" || arches === null) throw bad(`accepted.${channel}`);
    for (const [arch, entry] of Object.entries(arches)) {
      if (
        typeof entry !== "object" || entry === null || !Number.isSafeInteger(entry.sequence) ||
        entry.sequence < 0
      ) {
        throw bad(`accepted.${channel}.${arch}.sequence is not a whole number`);
      }
    }
  }
  return state;
}

/**
 * The highest sequence a state has accepted for a channel and architecture, if any.
 *
 * @example
 * ```ts
 * import { lastAcceptedSequence } from "./manifest_state.ts";
 * import assert from "node:assert/strict";
 *
 * const state = { state_version: 1 as const, accepted: {
 *   stable: { x86_64: { sequence: 7, version: "7", accepted_at: "2026-01-01T00:00:00Z" } },
 * } };
 * assert.equal(lastAcceptedSequence(state, "stable", "x86_64"), 7);
 * assert.equal(lastAcceptedSequence(state, "beta", "x86_64"), undefined);
 * ```
 */
export function lastAcceptedSequence(
  state: ManifestState,
  channel: string,
  arch: string,
): number | undefined {
  return Object.hasOwn(state.accepted, channel) && Object.hasOwn(state.accepted[channel]!, arch)
    ? state.accepted[channel]![arch]!.sequence
    : undefined;
}

/**
 * Record an accepted manifest in a state file: re-reads the file, keeps the higher of the
 * stored and the new sequence, and writes the file atomically.
 *
 * @returns The state as written.
 *
 * @example
 * ```ts
 * import { lastAcceptedSequence, recordAcceptedManifest } from "./manifest_state.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/state.json`;
 * await recordAcceptedManifest(path, { channel: "stable", arch: "x86_64", sequence: 9, version: "9" });
 * const state = await recordAcceptedManifest(path, {
 *   channel: "stable", arch: "x86_64", sequence: 3, version: "3",
 * });
 * assert.equal(lastAcceptedSequence(state, "stable", "x86_64"), 9);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function recordAcceptedManifest(
  path: string,
  manifest: { channel: string; arch: string; sequence: number; version: string },
  options: {
    /** The acceptance time. @default {new Date()} */
    now?: Date;
  } = {},
): Promise<ManifestState> {
  const { now = new Date() } = options;
  const state = await readManifestState(path);
  const last = lastAcceptedSequence(state, manifest.channel, manifest.arch);
  if (last !== undefined && last >= manifest.sequence) return state;
  if (!Object.hasOwn(state.accepted, manifest.channel)) state.accepted[manifest.channel] = {};
  state.accepted[manifest.channel]![manifest.arch] = {
    sequence: manifest.sequence,
    version: manifest.version,
    accepted_at: rfc3339(now),
  };
  await writeFileAtomic(path, `${JSON.stringify(state, null, 2)}\n`);
  return state;
}
