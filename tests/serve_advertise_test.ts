import assert from "node:assert/strict";
import { startNode } from "../net/node.ts";
import { toHex } from "../runtime/digest.ts";
import { publisher, startServe, tempDir } from "./fetch_testlib.ts";
import { runDiscover } from "./net_spawn.ts";

Deno.test("serve advertises its manifest on the DHT: discover finds its HTTP URL and sequence", async () => {
  await using dir = await tempDir();
  const keys = await publisher(dir.path, "release");
  await Deno.mkdir(`${dir.path}/art/stable/x86_64`, { recursive: true });
  await Deno.writeTextFile(`${dir.path}/art/stable/x86_64/kernel`, "kernel bytes");
  await using seed = await startNode({ mdns: false });

  // The serve task's own flags (startServe narrows the write grant to the state dir).
  await using serve = await startServe(`${dir.path}/art`, keys.keyFile, `${dir.path}/state`, {
    p2p: ["--no-mdns", "--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", seed.multiaddrs[0]!],
  });
  for (let i = 0; i < 100 && !/mDNS .*\n/.test(serve.output()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const banner = serve.output();
  assert.match(banner, /DHT {8}on \(as \S+ at http:\/\/127\.0\.0\.1:\d+\/\)/);
  assert.match(banner, /mDNS {7}off \(--no-mdns\)/);
  const manifest = await (await fetch(`${serve.url}manifest.json`)).json();
  assert.equal(manifest.signatures[0].key_id, toHex(keys.publicKey));

  // The provider record may take a moment to reach the seed: ask until it is there.
  let found;
  for (let attempt = 0; attempt < 5 && !found; attempt++) {
    const result = await runDiscover([
      ...["--dht", "--bootstrap", seed.multiaddrs[0]!, "--channel", "stable"],
      ...["--arch", "x86_64", "--timeout", "10s", "--json"],
    ]);
    if (result.code === 0) found = JSON.parse(result.stdout)[0];
  }
  assert.ok(found, "discover found the provider");
  assert.equal(found.http_url, serve.url);
  assert.equal(found.manifest_sequence, manifest.sequence);
  assert.equal(found.channel, "stable");

  const status = await (await fetch(serve.url)).json();
  assert.match(status.dht, /^on/);
  await serve.stop();
  assert.equal((await serve.child.status).code, 0);
});
