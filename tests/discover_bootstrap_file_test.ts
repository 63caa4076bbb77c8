// `start`'s bootstrap peers from a bootstrap file (--bootstrap-file, the config's
// bootstrap_file). Tests never dial the shipped list of public peers: every node here listens
// on loopback only, or is given its own file.
import assert from "node:assert/strict";
import { execStartFlags, NodeProcess } from "./net_spawn.ts";
import { auditCli } from "./_cli_audit.ts";

const LOCAL = ["--mode", "private", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

Deno.test("start --mode internet --bootstrap-file FILE dials the peers the file lists", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using seed = await NodeProcess.spawn(LOCAL);
    const file = `${dir}/bootstrap.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({ about: "test network", bootstrap: [seed.multiaddrs[0]] }),
    );
    await using node = await NodeProcess.spawn([
      ...["--mode", "internet", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
      ...["--state-dir", `${dir}/node`, "--no-worker", "--bootstrap-file", file],
    ]);
    await node.waitForLog((l) => l.event === "peer_connected" && l.peer_id === seed.peerId);
    // Only the file's peer was dialled: no failed dial of any other (such as the default list).
    assert.deepEqual(node.logs.filter((l) => l.event === "bootstrap_dial_failed"), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: the config's bootstrap_file is used when the config lists no bootstrap peer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using seed = await NodeProcess.spawn(LOCAL);
    await Deno.writeTextFile(
      `${dir}/bootstrap.json`,
      JSON.stringify({ bootstrap: [seed.multiaddrs[0]] }),
    );
    await Deno.writeTextFile(
      `${dir}/node.json`,
      JSON.stringify({ bootstrap: [], bootstrap_file: `${dir}/bootstrap.json` }),
    );
    await using node = await NodeProcess.spawn([
      ...["--mode", "private", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
      ...["--no-worker", "--config", `${dir}/node.json`],
    ]);
    await node.waitForLog((l) => l.event === "peer_connected" && l.peer_id === seed.peerId);
    // Only the file's peer was dialled: no failed dial of any other (such as the default list).
    assert.deepEqual(node.logs.filter((l) => l.event === "bootstrap_dial_failed"), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: a bad bootstrap file exits 2 with one line naming it", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/peers.json`, '{"peers":[]}');
    await Deno.writeTextFile(`${dir}/bad.json`, '{"bootstrap":["nowhere"]}');
    await Deno.writeTextFile(`${dir}/config.json`, `{"bootstrap_file":"${dir}/missing.json"}`);
    const base = ["--mode", "internet", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    await auditCli(
      t,
      "start",
      [
        {
          name: "unknown key",
          args: [...base, "--bootstrap-file", `${dir}/peers.json`],
          code: 2,
          line:
            /^start: Cannot use bootstrap file '.*peers\.json': unknown key 'peers' \(see start --help\)$/,
        },
        {
          name: "bad multiaddr",
          args: [...base, "--bootstrap-file", `${dir}/bad.json`],
          code: 2,
          line: /^start: Cannot use bootstrap file '.*bad\.json': cannot parse multiaddr 'nowhere'/,
        },
        {
          name: "missing file named by the config",
          args: [...base, "--config", `${dir}/config.json`],
          code: 2,
          line: /^start: Cannot read bootstrap file '.*missing\.json': no such file/,
        },
      ].map((c) => ({ ...c, flags: () => execStartFlags() })),
      { NO_COLOR: "1" },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
