import assert from "node:assert/strict";
import { bootstrapPeers, parseBootstrapList, readBootstrapList } from "./bootstrap_peers.ts";
import { defaultNodeConfig, type NodeConfig } from "./node_config.ts";
import shipped from "./bootstrap.json" with { type: "json" };

function config(patch: Partial<NodeConfig> = {}): NodeConfig {
  return { ...defaultNodeConfig(), ...patch };
}

async function withFile(text: string | Uint8Array, body: (path: string) => Promise<void>) {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    if (typeof text === "string") await Deno.writeTextFile(path, text);
    else await Deno.writeFile(path, text);
    await body(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("the shipped bootstrap list names the public Amino DHT peers, each with its PeerId", () => {
  const peers = parseBootstrapList(shipped, "net/bootstrap.json");
  assert.ok(peers.length >= 5);
  for (const peer of peers) assert.match(peer, /\/p2p\/(Qm|12D3KooW)[1-9A-HJ-NP-Za-km-z]+$/);
  assert.ok(peers.includes(
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
  ));
  // Only addresses a TCP node can dial: no QUIC, WebTransport or WebSocket ones.
  for (const peer of peers) assert.doesNotMatch(peer, /quic|webtransport|\/ws|\/wss/);
});

Deno.test("bootstrapPeers() takes flags, then --bootstrap-file, then the config, then its file, then the default", async () => {
  await withFile('{"bootstrap":["/ip4/192.0.2.2/tcp/4001"]}', async (file) => {
    await withFile('{"bootstrap":["/ip4/192.0.2.3/tcp/4001"]}', async (configFile) => {
      const flags = ["/ip4/192.0.2.1/tcp/4001"];
      const full = config({ bootstrap: ["/ip4/192.0.2.4/tcp/4001"], bootstrap_file: configFile });
      assert.deepEqual(await bootstrapPeers(full, { flags, file }), {
        peers: flags,
        source: "flags",
      });
      assert.deepEqual(await bootstrapPeers(full, { file }), {
        peers: ["/ip4/192.0.2.2/tcp/4001"],
        source: "file",
        file,
      });
      assert.deepEqual(await bootstrapPeers(full), {
        peers: ["/ip4/192.0.2.4/tcp/4001"],
        source: "config",
      });
      assert.deepEqual(await bootstrapPeers({ ...full, bootstrap: [] }), {
        peers: ["/ip4/192.0.2.3/tcp/4001"],
        source: "config_file",
        file: configFile,
      });
      const fallback = await bootstrapPeers(config());
      assert.equal(fallback.source, "default");
      assert.deepEqual(fallback.peers, parseBootstrapList(shipped, "net/bootstrap.json"));
    });
  });
});

Deno.test("bootstrapPeers() gives no default in modes local and private, nor to a loopback-only node", async () => {
  const none = { peers: [], source: "none" };
  assert.deepEqual(await bootstrapPeers(config({ mode: "local" })), none);
  assert.deepEqual(await bootstrapPeers(config({ mode: "private" })), none);
  assert.deepEqual(await bootstrapPeers(config({ listen: ["/ip4/127.0.0.1/tcp/0"] })), none);
  assert.deepEqual(await bootstrapPeers(config({ listen: ["/ip6/::1/tcp/0"] })), none);
  // One address others can reach is enough for the default.
  const mixed = config({ listen: ["/ip4/127.0.0.1/tcp/0", "/ip4/0.0.0.0/tcp/4001"] });
  assert.equal((await bootstrapPeers(mixed)).source, "default");
  // An empty bootstrap file is a choice: no peers (the first node of a network).
  await withFile('{"bootstrap":[]}', async (file) => {
    assert.deepEqual(await bootstrapPeers(config(), { file }), { peers: [], source: "file", file });
  });
});

Deno.test("readBootstrapList() refuses bad files with one line naming the file", async () => {
  const cases: [string | Uint8Array, RegExp][] = [
    ["", /^Cannot parse bootstrap file '.*': /],
    ["[]", /^Cannot use bootstrap file '.*': expected a JSON object$/],
    ['{"bootstrap":["/ip4/192.0.2.1/tcp/1"],"bootstrap":[]}', /duplicate key 'bootstrap'/],
    ['{"peers":[]}', /^Cannot use bootstrap file '.*': unknown key 'peers'$/],
    ['{"about":1,"bootstrap":[]}', /'about' must be a string$/],
    ['{"bootstrap":"/ip4/192.0.2.1/tcp/1"}', /'bootstrap' must be an array of multiaddr strings$/],
    ['{"bootstrap":[1]}', /'bootstrap' must be an array of multiaddr strings$/],
    ['{"bootstrap":["nowhere"]}', /cannot parse multiaddr 'nowhere'/],
    [
      JSON.stringify({
        bootstrap: Array.from({ length: 65 }, (_, i) => `/ip4/192.0.2.${i}/tcp/4001`),
      }),
      /65 peers, at most 64$/,
    ],
    [JSON.stringify({ bootstrap: [`/dns/${"a".repeat(1100)}/tcp/1`] }), /over 1024 characters$/],
    [new Uint8Array(65_537).fill(0x20), /larger than 65536 bytes$/],
  ];
  for (const [text, message] of cases) {
    await withFile(text, async (path) => {
      const error = await readBootstrapList(path).then(() => undefined, (e: Error) => e);
      assert.ok(error, `accepted ${String(text).slice(0, 60)}`);
      assert.match(error.message, message);
      assert.ok(error.message.includes(path), error.message);
      assert.equal(error.message.split("\n").length, 1);
    });
  }
  await assert.rejects(
    readBootstrapList("/no/such/bootstrap.json"),
    { message: "Cannot read bootstrap file '/no/such/bootstrap.json': no such file" },
  );
});

Deno.test("readBootstrapList() drops duplicate peers and keeps the order", async () => {
  const a = "/ip4/192.0.2.1/tcp/4001";
  const b = "/ip4/192.0.2.2/tcp/4001";
  await withFile(JSON.stringify({ about: "test", bootstrap: [a, b, a] }), async (path) => {
    assert.deepEqual(await readBootstrapList(path), [a, b]);
  });
});
