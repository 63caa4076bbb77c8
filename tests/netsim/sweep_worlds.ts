// Run as root: deno run --allow-read --allow-run tests/netsim/sweep_worlds.ts [--all]
/**
 * Remove what simulated worlds left behind: network namespaces named `netsim-<pid>-<start>-...`
 * whose creating process (PID plus its start time, so a reused PID does not count) is gone.
 * Every process still inside such a namespace is killed first (`ip netns pids`), then the
 * namespace is deleted, which removes its veth pairs, bridges, TAP devices and nft tables.
 *
 * `createWorld()` runs this sweep each time it creates a world; run this file by hand to clean
 * up after a killed test run (`--all` removes every world, live ones included).
 *
 * @module
 */
import { _must, _run } from "./_exec.ts";

/** Every world's namespace name starts with this, then `<pid>-<start time>-`. */
export const NAMESPACE_PREFIX = "netsim-";
const NETNS_DIR = "/run/netns";
const NAME = /^netsim-(\d+)-(\d+)-/;

/**
 * The start time of process `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or
 * `undefined` when there is no such process (or only its zombie).
 *
 * @example
 * ```ts
 * import { processStartTime } from "./sweep_worlds.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeof await processStartTime(Deno.pid), "string");
 * assert.equal(await processStartTime(2 ** 30), undefined);
 * ```
 */
export async function processStartTime(pid: number): Promise<string | undefined> {
  // Deno wants --allow-all to read /proc/<pid>/; cat needs nothing special.
  const { code, out } = await _run("cat", [`/proc/${pid}/stat`]);
  if (code !== 0) return undefined;
  const fields = out.slice(out.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return fields[19];
}

/**
 * The names of all network namespaces that belong to simulated worlds.
 *
 * @example
 * ```ts
 * import { worldNamespaces } from "./sweep_worlds.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(Array.isArray(await worldNamespaces()));
 * ```
 */
export async function worldNamespaces(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(NETNS_DIR)) {
      if (entry.name.startsWith(NAMESPACE_PREFIX)) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

/**
 * Kill every process inside namespace `name`, then delete it. A namespace that is already gone
 * is not an error.
 *
 * @example
 * ```ts
 * import { removeNamespace } from "./sweep_worlds.ts";
 * import { missingPrerequisites } from "./missing_prerequisites.ts";
 *
 * // A name no world uses: nothing to do.
 * if ((await missingPrerequisites()).length === 0) {
 *   await removeNamespace("netsim-0-0-example-none");
 * }
 * ```
 */
export async function removeNamespace(name: string): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const { code, out } = await _run("ip", ["netns", "pids", name]);
    if (code !== 0) break;
    const pids = out.split(/\s+/).filter((p) => p !== "").map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 10 * (round + 1)));
  }
  const { code, err } = await _run("ip", ["netns", "delete", name]);
  if (code !== 0 && !/No such file|not exist/i.test(err)) {
    await _must(`delete namespace '${name}'`, "ip", ["netns", "delete", name]);
  }
}

/**
 * Remove the namespaces of worlds whose creating process is gone (or of every world, with
 * `all`). Returns the names it removed.
 *
 * @example
 * ```ts
 * import { sweepWorlds } from "./sweep_worlds.ts";
 * import { missingPrerequisites } from "./missing_prerequisites.ts";
 * import assert from "node:assert/strict";
 *
 * if ((await missingPrerequisites()).length === 0) {
 *   assert.ok(Array.isArray(await sweepWorlds()));
 * }
 * ```
 */
export async function sweepWorlds(options: { all?: boolean } = {}): Promise<string[]> {
  const { all = false } = options;
  const removed: string[] = [];
  const alive = new Map<string, boolean>();
  for (const name of await worldNamespaces()) {
    const match = NAME.exec(name);
    if (!match) continue;
    const [, pid, start] = match as unknown as [string, string, string];
    const key = `${pid}-${start}`;
    if (!alive.has(key)) alive.set(key, (await processStartTime(Number(pid))) === start);
    if (all || !alive.get(key)) {
      await removeNamespace(name);
      removed.push(name);
    }
  }
  return removed;
}

if (import.meta.main) {
  try {
    const removed = await sweepWorlds({ all: Deno.args.includes("--all") });
    console.log(
      `removed ${removed.length} namespace(s)${removed.length ? ": " : ""}${removed.join(" ")}`,
    );
  } catch (error) {
    console.error(`sweep_worlds: error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
