import assert from "node:assert/strict";
import { startNode } from "../net/node.ts";
import { advertiseProvider } from "../net/advertise_provider.ts";
import { runDiscover } from "./net_spawn.ts";

Deno.test("discover --channel finds a boot provider advertised with advertiseProvider(), with its URL and sequence", async () => {
  await using seed = await startNode({ mdns: false });
  let provided: () => void;
  const done = new Promise<void>((resolve) => provided = resolve);
  await using provider = await startNode({
    mdns: false,
    bootstrap: seed.multiaddrs,
    onLog: (r) => {
      if (r.event === "provided" && r.key === "/phase/beta/x86_64/manifest" && r.peers) provided();
    },
  });
  await advertiseProvider(provider, {
    channel: "beta",
    arch: "x86_64",
    httpUrl: "http://127.0.0.1:8099/",
    manifestSequence: 42,
  });
  await done;
  const search = ["--dht", "--bootstrap", seed.multiaddrs[0]!, "--channel", "beta"];
  const args = [...search, "--arch", "x86_64", "--timeout", "15s"];
  const result = await runDiscover([...args, "--json"]);
  assert.equal(result.code, 0, result.stderr);
  const [found, ...rest] = JSON.parse(result.stdout);
  assert.deepEqual(rest, []);
  assert.equal(found.peer_id, provider.peerId);
  assert.equal(found.channel, "beta");
  assert.equal(found.http_url, "http://127.0.0.1:8099/");
  assert.equal(found.manifest_sequence, 42);
  assert.deepEqual(found.via, ["dht"]);

  const text = await runDiscover(args);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    new RegExp(
      `^${provider.peerId} via=dht arch=x86_64 channel=beta sequence=42 http=http://127\\.0\\.0\\.1:8099/ /ip4/127\\.0\\.0\\.1/tcp/\\d+\\n$`,
    ),
  );
});

Deno.test("discover rejects bad flags with one line and exit code 2", async () => {
  for (
    const [args, message] of [
      [
        ["--timeout", "soon"],
        "discover: Cannot parse duration 'soon': use e.g. 500ms, 30s, 2m or 1h (see discover --help)",
      ],
      [
        ["--dht"],
        "discover: Cannot discover in the DHT: give at least one bootstrap peer (see discover --help)",
      ],
      [
        ["--capability", "gpu"],
        "discover: Cannot use --capability 'gpu': only wasm is known (see discover --help)",
      ],
      [
        ["--channel", "../etc", "--mdns"],
        "discover: Cannot use channel '../etc': expected 1-64 letters, digits, '.', '_' or '-' (see discover --help)",
      ],
    ] as const
  ) {
    const result = await runDiscover([...args]);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr.split("\n")[0], message);
  }
});
