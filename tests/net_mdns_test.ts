import assert from "node:assert/strict";
import { NodeProcess } from "./net_spawn.ts";

Deno.test("start: three nodes in local mode find each other by mDNS and exit promptly", async () => {
  const nodes: NodeProcess[] = [];
  const home = await Deno.makeTempDir();
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await NodeProcess.spawn(["--mode", "local", "--listen", "/ip4/127.0.0.1/tcp/0"], {
          env: { PLASM_HOME: `${home}/node${i}` },
        }),
      );
    }
    for (const node of nodes) {
      for (const other of nodes) {
        if (other === node) continue;
        const hit = await node.waitForLog((l) =>
          l.event === "mdns_peer" && l.peer_id === other.peerId
        );
        const port = other.multiaddrs[0]!.split("/")[4];
        assert.ok(
          (hit.multiaddrs as string[]).some((ma) => ma.endsWith(`/tcp/${port}`)),
          `mDNS gave ${JSON.stringify(hit.multiaddrs)} for ${other.multiaddrs[0]}`,
        );
      }
    }
    for (const node of nodes) {
      const { code, ms } = await node.stop("SIGINT");
      assert.equal(code, 0);
      assert.ok(ms < 5000, `exit took ${ms} ms`);
    }
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("start: a peer seen again by mDNS is logged on first sight, not at every query", async () => {
  const home = await Deno.makeTempDir();
  const nodes: NodeProcess[] = [];
  try {
    // Query every 100 ms, so that within a second each node hears about the other ~10 times.
    await Deno.writeTextFile(`${home}/fast.json`, JSON.stringify({ mdns_interval_ms: 100 }));
    for (const name of ["a", "b"]) {
      nodes.push(
        await NodeProcess.spawn([
          ...["--mode", "local", "--listen", "/ip4/127.0.0.1/tcp/0"],
          ...["--config", `${home}/fast.json`, "--state-dir", `${home}/${name}`],
        ]),
      );
    }
    const [a, b] = nodes as [NodeProcess, NodeProcess];
    await a.waitForLog((l) => l.event === "mdns_peer" && l.peer_id === b.peerId);
    await b.waitForLog((l) => l.event === "mdns_peer" && l.peer_id === a.peerId);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const [node, other] of [[a, b], [b, a]] as const) {
      assert.equal((await node.stop()).code, 0);
      const seen = node.logs.filter((l) => l.event === "mdns_peer" && l.peer_id === other.peerId);
      assert.equal(seen.length, 1, JSON.stringify(seen));
    }
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
    await Deno.remove(home, { recursive: true });
  }
});
