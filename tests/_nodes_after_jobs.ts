/**
 * Test helper: a worker node that has run jobs through its own local API, with a peer connected.
 *
 * @module
 */
import { type NodeProcess, spawnWorkerAndRequester } from "./net_spawn.ts";
import { type Finished, runTask } from "./_task.ts";

/** What {@linkcode nodesAfterJobs} gives: the nodes, `a`'s API, and how each job ended. */
export interface NodesAfterJobs extends AsyncDisposable {
  /** The worker, state in `<root>/a`. */
  a: NodeProcess;
  /** The requester (`--no-worker`), connected to `a`. */
  b: NodeProcess;
  /** The temporary directory holding both state dirs; removed on dispose. */
  root: string;
  /** `a`'s local API URL, with a trailing slash. */
  api: string;
  /** `a`'s API token. */
  token: string;
  /** Each `submit` of `runs`, in order. */
  runs: Finished[];
}

/**
 * Spawn a worker `a` and a requester `b` with `spawnWorkerAndRequester` in a fresh temporary
 * directory (`prefix`), submit each of `runs` (a module and its flags) to `a` through `a`'s own
 * API with `submit --worker <a> --wait`, and wait until `a` logged `b` as connected.
 *
 * @example
 * ```ts ignore
 * import { nodesAfterJobs } from "./_nodes_after_jobs.ts";
 *
 * await using nodes = await nodesAfterJobs("plasm-x-", [["examples/hello.wasm"]]);
 * console.log(nodes.runs[0]!.code, nodes.api);
 * ```
 */
export async function nodesAfterJobs(prefix: string, runs: string[][]): Promise<NodesAfterJobs> {
  const root = await Deno.makeTempDir({ prefix });
  const nodes = await spawnWorkerAndRequester(root, { removeRoot: true });
  try {
    const { a, b } = nodes;
    const finished = [];
    for (const args of runs) {
      finished.push(
        await runTask("submit", [
          ...args,
          "--worker",
          a.peerId,
          "--wait",
          "--state-dir",
          `${root}/a`,
        ]),
      );
    }
    await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === b.peerId);
    return {
      a,
      b,
      root,
      api: String(a.started.api_url),
      token: (await Deno.readTextFile(`${root}/a/api.token`)).trim(),
      runs: finished,
      [Symbol.asyncDispose]: () => nodes[Symbol.asyncDispose](),
    };
  } catch (error) {
    await nodes[Symbol.asyncDispose]();
    throw error;
  }
}
