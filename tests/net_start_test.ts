import assert from "node:assert/strict";
import { NodeProcess, ROOT, START_FLAGS } from "./net_spawn.ts";

const LOCAL = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

Deno.test("start: a restart keeps the PeerId, from a 0600 node key in the state dir", async () => {
  const home = await Deno.makeTempDir();
  try {
    const env = { PLASM_HOME: `${home}/state` };
    const first = await NodeProcess.spawn(LOCAL, { env });
    assert.equal((await first.stop()).code, 0);
    const second = await NodeProcess.spawn(LOCAL, { env });
    assert.equal((await second.stop()).code, 0);
    assert.equal(second.peerId, first.peerId);
    assert.match(first.peerId, /^12D3KooW/);
    assert.equal((await Deno.stat(`${home}/state/node.key`)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${home}/state`)).mode! & 0o777, 0o700);
    const third = await NodeProcess.spawn([...LOCAL, "--state-dir", `${home}/other`], { env });
    assert.equal((await third.stop()).code, 0);
    assert.notEqual(third.peerId, first.peerId);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("start: private mode writes nothing (runs under --deny-write) and gets a fresh PeerId", async () => {
  const home = await Deno.makeTempDir();
  try {
    const env = { PLASM_HOME: `${home}/state` };
    const flags = [...START_FLAGS, "--deny-write"];
    const a = await NodeProcess.spawn(["--mode", "private", ...LOCAL], { env, flags });
    const b = await NodeProcess.spawn(["--mode", "private", ...LOCAL], { env, flags });
    assert.equal((await a.stop()).code, 0);
    assert.equal((await b.stop()).code, 0);
    assert.notEqual(a.peerId, b.peerId);
    assert.deepEqual([...Deno.readDirSync(home)], []);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`start: a node with DHT peers exits by itself within 3 s of ${signal}`, async () => {
    await using a = await NodeProcess.spawn(["--mode", "private", ...LOCAL]);
    await using b = await NodeProcess.spawn([
      "--mode",
      "private",
      ...LOCAL,
      "--bootstrap",
      a.multiaddrs[0]!,
    ]);
    await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === b.peerId);
    // Let identify, the routing table and the first provide run, so their timers are live.
    await b.waitForLog((l) => l.event === "provided");
    const { code, ms } = await a.stop(signal);
    assert.equal(code, 0);
    assert.ok(ms < 3000, `exit took ${Math.round(ms)} ms`);
    assert.ok(a.logs.some((l) => l.event === "stopped"));
    const other = await b.stop(signal);
    assert.equal(other.code, 0);
    assert.ok(other.ms < 3000, `exit took ${Math.round(other.ms)} ms`);
  });
}

Deno.test("start: bad flags and a bad config file fail with one line and exit code 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, '{"listen": "not-a-list"}');
    for (
      const [args, message] of [
        [
          ["--mode", "galactic"],
          "error: Cannot use --mode 'galactic': expected internet, local or private",
        ],
        [
          ["--config", `${dir}/bad.json`],
          "error: Cannot use config listen: expected an array of multiaddr strings",
        ],
        [["--frobnicate"], "error: Unknown option '--frobnicate'"],
      ] as const
    ) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...START_FLAGS, "cli/start.ts", ...args],
        cwd: ROOT,
        env: { PLASM_HOME: `${dir}/state`, NO_COLOR: "1" },
        stdin: "null",
      }).output();
      assert.equal(out.code, 2);
      const lines = new TextDecoder().decode(out.stderr).split("\n");
      assert.ok(lines[0]!.startsWith(message), lines[0]!);
    }
    await assert.rejects(Deno.stat(`${dir}/state`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: a listen address that cannot be bound fails with one line and exit code 1", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...START_FLAGS,
      "cli/start.ts",
      "--mode",
      "private",
      "--no-mdns",
      "--listen",
      "/ip4/127.0.0.1/tcp/not-a-port",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  assert.equal(out.code, 1);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.match(stderr, /^error: Cannot parse multiaddr '\/ip4\/127\.0\.0\.1\/tcp\/not-a-port'/);
});
