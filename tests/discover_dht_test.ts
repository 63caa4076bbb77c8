import assert from "node:assert/strict";
import { NodeProcess, runDiscover } from "./net_spawn.ts";
import { PROVIDER_WASM_LIMITS, writeProviderConfig } from "./_provider_config.ts";

const LOCAL = ["--mode", "private", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

Deno.test("discover: a fresh DHT client finds the one riscv64 provider in a 10-node network via a bootstrap peer", async () => {
  const dir = await Deno.makeTempDir();
  const nodes: NodeProcess[] = [];
  try {
    const config = await writeProviderConfig(dir);
    const seed = await NodeProcess.spawn(LOCAL);
    nodes.push(seed);
    const bootstrap = ["--bootstrap", seed.multiaddrs[0]!];
    nodes.push(
      ...await Promise.all(
        Array.from({ length: 8 }, () => NodeProcess.spawn([...LOCAL, ...bootstrap])),
      ),
    );
    const provider = await NodeProcess.spawn([...LOCAL, ...bootstrap, "--config", config]);
    nodes.push(provider);
    await provider.waitForLog(
      (l) =>
        l.event === "provided" && l.key === "/phase/capability/riscv64/wasm" &&
        (l.peers as number) >= 1,
      30_000,
    );

    const entry = nodes[5]!;
    const result = await runDiscover([
      "--dht",
      "--bootstrap",
      entry.multiaddrs[0]!,
      "--arch",
      "riscv64",
      "--capability",
      "wasm",
      "--timeout",
      "20s",
      "--json",
    ]);
    assert.equal(result.code, 0, result.stderr);
    const found = JSON.parse(result.stdout);
    assert.deepEqual(found.map((p: { peer_id: string }) => p.peer_id), [provider.peerId]);
    assert.deepEqual(found[0].via, ["dht"]);
    assert.equal(found[0].arch, "riscv64");
    assert.deepEqual(found[0].limits, { wasm: PROVIDER_WASM_LIMITS });
    assert.ok(
      found[0].multiaddrs.includes(provider.multiaddrs[0]!.replace(/\/p2p\/.*$/, "")),
      JSON.stringify(found[0].multiaddrs),
    );
    assert.ok(result.ms < 20_000, `discover took ${result.ms} ms`);
  } finally {
    await Promise.all(nodes.map((node) => node[Symbol.asyncDispose]()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discover: exits 1 with one line when no provider exists", async () => {
  await using seed = await NodeProcess.spawn(LOCAL);
  const result = await runDiscover([
    "--dht",
    "--bootstrap",
    seed.multiaddrs[0]!,
    "--arch",
    "mips64",
    "--timeout",
    "3s",
  ]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr, "discover: error: Found no matching peers before the timeout\n");
});
