import assert from "node:assert/strict";
import { startNode } from "../net/node.ts";
import { toHex } from "../runtime/digest.ts";
import { publisher, tempDir } from "./fetch_testlib.ts";
import { runDiscover } from "./net_spawn.ts";
import { taskCommand } from "./_task.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("serve advertises its manifest on the DHT: discover finds its HTTP URL and sequence", async () => {
  await using dir = await tempDir();
  const keys = await publisher(dir.path, "release");
  await Deno.mkdir(`${dir.path}/art/stable/x86_64`, { recursive: true });
  await Deno.writeTextFile(`${dir.path}/art/stable/x86_64/kernel`, "kernel bytes");
  await using seed = await startNode({ mdns: false });

  // The serve task's own flags, with the write grant narrowed to this test's state dir.
  const { flags } = await taskCommand("serve");
  const state = `${dir.path}/state`;
  await Deno.mkdir(state);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...flags.map((f) => f.startsWith("--allow-write=") ? `--allow-write=${state}` : f),
      `${ROOT}cli/serve.ts`,
      ...["--artifacts", `${dir.path}/art`, "--key", keys.keyFile, "--state-dir", state],
      ...["--arch", "x86_64", "--bind", "127.0.0.1", "--port", "0", "--no-mdns"],
      ...["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", seed.multiaddrs[0]!],
      ...["--min-free", "0", "--shutdown-timeout", "1s"],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  try {
    while (!/mDNS .*\n/.test(banner)) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`serve exited early: ${banner}${await stderr}`);
      banner += value;
    }
    const url = /Listening on (http:\/\/\S+\/)/.exec(banner)![1]!;
    assert.match(banner, /DHT {8}on \(as \S+ at http:\/\/127\.0\.0\.1:\d+\/\)/);
    assert.match(banner, /mDNS {7}off \(--no-mdns\)/);
    const manifest = await (await fetch(`${url}manifest.json`)).json();
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
    assert.equal(found.http_url, url);
    assert.equal(found.manifest_sequence, manifest.sequence);
    assert.equal(found.channel, "stable");

    const status = await (await fetch(url)).json();
    assert.match(status.dht, /^on/);
  } finally {
    child.kill("SIGTERM");
    while (!(await reader.read()).done) { /* drain */ }
    await stderr;
    const { code } = await child.status;
    assert.equal(code, 0);
  }
});
