import assert from "node:assert/strict";
import { NodeProcess, runDiscover } from "./net_spawn.ts";

const LOCAL = ["--mode", "local", "--listen", "/ip4/127.0.0.1/tcp/0"];

Deno.test("discover --mdns finds all three local nodes and ends once the answers stop, not at --timeout", async () => {
  const home = await Deno.makeTempDir();
  const nodes: NodeProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(await NodeProcess.spawn([...LOCAL, "--state-dir", `${home}/node${i}`]));
    }
    // A timeout far beyond what the search needs: it ends by --mdns-quiet, well before.
    const result = await runDiscover(["--mdns", "--timeout", "10m", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const found = JSON.parse(result.stdout) as { peer_id: string; via: string[] }[];
    for (const node of nodes) {
      const peer = found.find((p) => p.peer_id === node.peerId);
      assert.ok(peer, `${node.peerId} missing from ${result.stdout}`);
      assert.deepEqual(peer.via, ["mdns"]);
    }
    assert.ok(result.ms < 5 * 60_000, `discover ran ${result.ms} ms: it waited for --timeout`);
  } finally {
    await Promise.all(nodes.map((node) => node[Symbol.asyncDispose]()));
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("discover --mdns with nobody answering ends after --mdns-wait and exits 1", async () => {
  // Nodes of other tests may answer on this host; ask for an architecture none of them reports.
  const result = await runDiscover([
    ...["--mdns", "--arch", "sparc64", "--mdns-wait", "300ms", "--timeout", "10m"],
  ]);
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr, "discover: error: Found no matching peers before the timeout\n");
  assert.ok(result.ms < 5 * 60_000, `discover ran ${result.ms} ms: it waited for --timeout`);
});
