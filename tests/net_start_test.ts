import assert from "node:assert/strict";
import { peerIdFromString } from "@libp2p/peer-id";
import { NodeProcess, ROOT, START_FLAGS } from "./net_spawn.ts";
import {
  type AuditCase,
  auditCli,
  spawn,
  stateDirInUseCase,
  unknownOptionCase,
} from "./_cli_audit.ts";
import { Client } from "../net/client.ts";
import { toHex } from "../runtime/digest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { withTempDir } from "./_temp_dir.ts";

/**
 * The `start` task's flags, its `--allow-run="$(deno eval ...)"` resolved as the task's shell
 * resolves it (the deno binary).
 */
async function startTaskFlags(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task: string = config.tasks.start;
  const resolved = task.replace(
    `--allow-run="$(deno eval --quiet 'console.log(Deno.execPath())')"`,
    `--allow-run=${Deno.execPath()}`,
  );
  assert.notEqual(resolved, task, "the start task computes --allow-run as expected");
  const words = resolved.split(/\s+/);
  return words.slice(2, words.indexOf("cli/start.ts"));
}

const LOCAL = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

Deno.test("start: a restart keeps the PeerId, from a 0600 node key in the state dir", async () => {
  await withTempDir("plasm-test-", async (home) => {
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
  });
});

Deno.test("start: private mode writes nothing (runs under --deny-write) and gets a fresh PeerId", async () => {
  await withTempDir("plasm-test-", async (home) => {
    const env = { PLASM_HOME: `${home}/state` };
    const flags = [...START_FLAGS, "--deny-write"];
    const a = await NodeProcess.spawn(["--mode", "private", ...LOCAL], { env, flags });
    const b = await NodeProcess.spawn(["--mode", "private", ...LOCAL], { env, flags });
    assert.equal((await a.stop()).code, 0);
    assert.equal((await b.stop()).code, 0);
    assert.notEqual(a.peerId, b.peerId);
    assert.deepEqual([...Deno.readDirSync(home)], []);
  });
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

Deno.test("start: bad flags, files, grants, ports and a busy state dir fail with one line", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-start-audit-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = taken.addr.port;
  const flags = await startTaskFlags();
  const without = (prefix: string) => (f: string[]) => f.filter((x) => !x.startsWith(prefix));
  const local = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
  await using running = await NodeProcess.spawn([...local, "--state-dir", `${dir}/busy`], {
    flags: [...START_FLAGS, `--allow-run=${Deno.execPath()}`],
  });
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, '{"listen": "not-a-list"}');
    await Deno.writeTextFile(`${dir}/broken.json`, "{nope");
    await Deno.writeTextFile(`${dir}/file`, "");
    const cases: AuditCase[] = [
      unknownOptionCase("start"),
      { name: "missing value", args: ["--listen"], code: 2, line: /^start: Option '--listen/ },
      {
        name: "bad mode",
        args: ["--mode", "galactic"],
        code: 2,
        line:
          /^start: Cannot use --mode 'galactic': expected internet, local or private \(see start --help\)$/,
      },
      {
        name: "bad listen multiaddr",
        args: ["--listen", "/ip4/127.0.0.1/tcp/not-a-port"],
        code: 2,
        line: /^start: Cannot parse multiaddr '\/ip4\/127\.0\.0\.1\/tcp\/not-a-port'/,
      },
      {
        name: "bad bootstrap multiaddr",
        args: ["--bootstrap", "nowhere"],
        code: 2,
        line: /^start: Cannot parse multiaddr 'nowhere'/,
      },
      {
        name: "bad exec flag",
        args: ["--max-jobs", "x"],
        code: 2,
        line: /^start: Cannot use --max-jobs 'x'/,
      },
      {
        name: "missing config",
        args: ["--config", `${dir}/missing.json`],
        code: 2,
        line: /^start: Cannot read config '.*missing\.json': no such file \(see start --help\)$/,
      },
      {
        name: "config is a directory",
        args: ["--config", dir],
        code: 2,
        line: /^start: Cannot read config '.*': it is a directory \(see start --help\)$/,
      },
      {
        name: "config not JSON",
        args: ["--config", `${dir}/broken.json`],
        code: 2,
        line: /^start: Cannot parse config: /,
      },
      {
        name: "config of the wrong shape",
        args: ["--config", `${dir}/bad.json`],
        code: 2,
        line:
          /^start: Cannot use config listen: expected an array of multiaddr strings \(see start --help\)$/,
      },
      {
        name: "state dir is a file",
        args: [...local, "--state-dir", `${dir}/file`],
        code: 1,
        line: /^start: error: Cannot use state dir '.*\/file': not a directory$/,
      },
      stateDirInUseCase("start", {
        what: "node",
        args: local,
        dir: `${dir}/busy`,
        pid: running.child.pid,
      }),
      {
        name: "listen port in use",
        args: ["--no-mdns", "--listen", `/ip4/127.0.0.1/tcp/${busy}`, "--state-dir", `${dir}/a`],
        code: 1,
        line: new RegExp(
          `^start: error: Cannot listen on /ip4/127\\.0\\.0\\.1/tcp/${busy}: address already in use$`,
        ),
      },
      {
        name: "no net grant",
        args: [...local, "--state-dir", `${dir}/c`],
        flags: without("--allow-net"),
        code: 1,
        line: /^start: error: Cannot listen on \/ip4\/127\.0\.0\.1\/tcp\/0: requires net access/,
      },
      {
        name: "no sys grant, with mDNS",
        args: ["--listen", "/ip4/127.0.0.1/tcp/0", "--state-dir", `${dir}/d`],
        flags: without("--allow-sys"),
        code: 1,
        line: /^start: error: Cannot use mDNS: requires --allow-sys=networkInterfaces$/,
      },
      {
        name: "write grant elsewhere",
        args: [...local, "--state-dir", `${dir}/e`],
        flags: (f) => [...without("--allow-write")(f), `--allow-write=${dir}/other`],
        code: 1,
        line:
          /^start: error: Requires write access to ".*\/e", run again with the --allow-write flag$/,
      },
    ];
    await auditCli(
      t,
      "start",
      cases.map((c) => ({ ...c, flags: c.flags ? () => c.flags!(flags) : () => flags })),
      { NO_COLOR: "1", PLASM_HOME: `${dir}/home` },
    );
    await t.step(
      "start: API port in use -> exit 1, JSON logs of the node's stop, one error line",
      async () => {
        const res = await spawn(flags, "cli/start.ts", [
          ...[...local, "--api-port", String(busy), "--state-dir", `${dir}/b`],
        ], { env: { NO_COLOR: "1" } });
        assert.equal(res.code, 1);
        const lines = res.err.trimEnd().split("\n");
        assert.equal(
          lines.pop(),
          `start: error: Cannot listen on 127.0.0.1:${busy} (--api-port): address already in use`,
        );
        for (const line of lines) assert.ok(JSON.parse(line).ts, line);
      },
    );
  } finally {
    taken.close();
    await running[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: the lock of a start that crashed is detected as stale and taken over", async () => {
  await withTempDir("plasm-test-", async (home) => {
    const args = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--state-dir", `${home}/s`];
    const first = await NodeProcess.spawn(args);
    const pid = first.child.pid;
    const lock = JSON.parse(await Deno.readTextFile(`${home}/s/state.lock`));
    assert.equal(lock.pid, pid);
    assert.equal(lock.command, "start");
    await first[Symbol.asyncDispose](); // SIGKILL: no chance to release
    const second = await NodeProcess.spawn(args);
    assert.equal(second.peerId, first.peerId);
    const stale = second.logs.find((l) => l.event === "stale_lock_taken_over");
    assert.equal(stale?.pid, pid);
    assert.equal(stale?.level, "warn");
    assert.equal((await second.stop()).code, 0);
    await assert.rejects(Deno.stat(`${home}/s/state.lock`), Deno.errors.NotFound);
  });
});

Deno.test("start: the started line and log give the public key hex next to the PeerId", async () => {
  await withTempDir("plasm-test-", async (home) => {
    const node = await NodeProcess.spawn([
      ...["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--state-dir", home],
    ]);
    assert.equal((await node.stop()).code, 0);
    const { publicKey } = await generateKeyPair(await Deno.readFile(`${home}/node.key`));
    assert.deepEqual(Object.keys(node.started).slice(0, 3), ["event", "peer_id", "public_key"]);
    assert.equal(node.started.public_key, toHex(publicKey));
    assert.equal(toHex(peerIdFromString(node.peerId).publicKey!.raw), toHex(publicKey));
    const logged = node.logs.find((l) => l.event === "started");
    assert.equal(logged?.peer_id, node.peerId);
    assert.equal(logged?.public_key, toHex(publicKey));
  });
});

Deno.test("start: every log line is JSON with ts, also while the local API waits for a job", async () => {
  await withTempDir("plasm-test-", async (home) => {
    const node = await NodeProcess.spawn([
      ...["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--state-dir", home, "--no-worker"],
    ], { flags: [...START_FLAGS, `--allow-run=${Deno.execPath()}`] });
    try {
      const url = JSON.parse(await Deno.readTextFile(`${home}/api.json`)).url;
      const token = (await Deno.readTextFile(`${home}/api.token`)).trim();
      const client = new Client({ url, token });
      const id = await client.submit(await Deno.readFile(`${ROOT}examples/hello.wasm`));
      // Nobody runs it (no worker anywhere): this request waits, then answers 202.
      const res = await fetch(`${url}jobs/${id}/result?wait=200`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await res.body?.cancel();
      assert.equal(res.status, 202);
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
    assert.ok(node.logs.length > 3);
    for (const line of node.logs) {
      assert.ok(!("raw" in line), `not JSON: ${line.raw}`);
      assert.match(String(line.ts), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
  });
});
