/**
 * A requester node killed with kill -9 loses nothing it acknowledged: jobs whose ids `submit`
 * returned, and results `result` returned (the job store's group commits, net/job_store.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type NodeProcess, ROOT, spawnLocalNode } from "./net_spawn.ts";
import { withTempDir } from "./_temp_dir.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";

const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("a requester killed (kill -9) right after submit or after a result loses nothing acknowledged", async () => {
  await withTempDir("plasm-durable-", async (root) => {
    await using worker = await spawnLocalNode(`${root}/a`);
    const requester = (): Promise<NodeProcess> =>
      spawnLocalNode(`${root}/b`, ["--no-worker", "--bootstrap", worker.multiaddrs[0]!]);
    const connected = (node: NodeProcess) =>
      node.waitForLog((l) => l.event === "peer_connected" && l.peer_id === worker.peerId, 30_000);
    let done: string;
    let queued: string[];
    {
      await using b = await requester();
      await connected(b);
      const client = new Client(await readApiEndpoint(`${root}/b`));
      done = await client.submit(HELLO, { input: enc("kept") });
      assert.equal(dec((await client.result(done, { waitMs: 30_000 })).output), "tpek");
      // Acknowledged ids, then at once the hardest kill there is.
      queued = await Promise.all(
        [1, 2, 3, 4, 5].map((i) => client.submit(HELLO, { input: enc(`job ${i}`) })),
      );
      await b.stop("SIGKILL");
    }
    await using b = await requester();
    await connected(b);
    const client = new Client(await readApiEndpoint(`${root}/b`));
    // The acknowledged result is there at once, verified again by the client.
    const kept = await client.result(done);
    assert.equal(dec(kept.output), "tpek");
    assert.equal(kept.workerPeerId, worker.peerId);
    // Every acknowledged job is known, resumed and finished.
    for (const [i, id] of queued.entries()) {
      const result = await client.result(id, { waitMs: 30_000 });
      assert.equal(dec(result.output), [...`job ${i + 1}`].reverse().join(""));
    }
  });
});
