/**
 * `serve` as its own process (the deno.json task's flags) against hostile clients and files:
 * hundreds of connections that never read an artifact, clients that stop reading, and a state
 * dir holding a node key other users can read.
 */
import assert from "node:assert/strict";
import { runTask } from "./_task.ts";
import { publisher, startServe, tempDir } from "./fetch_testlib.ts";

const MiB = 1024 * 1024;

/** The serve process's resident memory (VmRSS, as `ps` reads it from /proc), in bytes. */
async function rss(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] })
    .output();
  return Number(new TextDecoder().decode(stdout).trim()) * 1024;
}

/** Open a connection, ask for `path`, and never read the answer. */
async function stalledGet(port: number, path: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  return conn;
}

async function status(url: string) {
  return (await (await fetch(`${url}status`)).json()).metrics;
}

async function setup(dir: string, size: number) {
  const keys = await publisher(dir, "release");
  await Deno.mkdir(`${dir}/art/stable/x86_64`, { recursive: true });
  const kernel = new Uint8Array(size);
  crypto.getRandomValues(kernel.subarray(0, 65536));
  await Deno.writeFile(`${dir}/art/stable/x86_64/kernel`, kernel);
  return keys;
}

Deno.test("serve holds a bounded amount of memory for 500 clients that never read a 50 MB artifact, and answers /health", async () => {
  await using tmp = await tempDir();
  const keys = await setup(tmp.path, 50 * MiB);
  await using serve = await startServe(`${tmp.path}/art`, keys.keyFile, `${tmp.path}/state`);
  const port = Number(new URL(serve.url).port);
  assert.equal((await fetch(`${serve.url}health`)).status, 200);
  await (await fetch(`${serve.url}manifest.json`)).text();
  const before = await rss(serve.child.pid);
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 500; i++) conns.push(await stalledGet(port, "/stable/x86_64/kernel"));
    // Wait until the provider has taken every request (started or refused), then let the
    // started bodies fill what the sockets take.
    for (;;) {
      const m = await status(serve.url);
      if (m.downloads_total + (m.downloads_refused_total ?? 0) >= 500) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const health = await fetch(`${serve.url}health`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const grown = (await rss(serve.child.pid)) - before;
    // Before download slots and the read budget: about 310 MiB here (3.7 MB pulled per client).
    assert.ok(grown < 128 * MiB, `serve grew by ${(grown / MiB).toFixed(1)} MiB`);
    const m = await status(serve.url);
    assert.equal(m.downloads_active, 16); // --max-downloads-per-client: all come from 127.0.0.1
    assert.equal(m.downloads_refused_total, 484);
  } finally {
    for (const c of conns) c.close();
  }
});

Deno.test("serve answers 503 with Retry-After while a client that stopped reading holds the last download slot, and frees it when that client goes", async () => {
  await using tmp = await tempDir();
  const keys = await setup(tmp.path, 32 * MiB);
  await using serve = await startServe(`${tmp.path}/art`, keys.keyFile, `${tmp.path}/state`, {
    args: ["--max-downloads", "1"],
  });
  const port = Number(new URL(serve.url).port);
  const hog = await stalledGet(port, "/stable/x86_64/kernel");
  try {
    for (;;) {
      if ((await status(serve.url)).downloads_total === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const busy = await fetch(`${serve.url}stable/x86_64/kernel`);
    assert.equal(busy.status, 503);
    assert.equal(busy.headers.get("retry-after"), "5");
    assert.deepEqual(await busy.json(), {
      error: "Cannot serve artifact: too many downloads in flight (1), retry later",
      status: 503,
    });
    // Manifests, health and HEAD are not downloads: never refused.
    assert.equal(
      (await fetch(`${serve.url}health`).then((r) => (r.body?.cancel(), r))).status,
      200,
    );
  } finally {
    hog.close();
  }
  for (let attempt = 0;; attempt++) {
    const res = await fetch(`${serve.url}stable/x86_64/kernel`, {
      headers: { range: "bytes=0-9" },
    });
    if (res.status === 206) {
      assert.equal((await res.arrayBuffer()).byteLength, 10);
      break;
    }
    await res.body?.cancel();
    assert.ok(attempt < 100, `still ${res.status} after the client went`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

Deno.test("serve ends a download whose client takes nothing for --idle-timeout", async () => {
  await using tmp = await tempDir();
  const keys = await setup(tmp.path, 32 * MiB);
  await using serve = await startServe(`${tmp.path}/art`, keys.keyFile, `${tmp.path}/state`, {
    args: ["--idle-timeout", "1s"],
  });
  const hog = await stalledGet(Number(new URL(serve.url).port), "/stable/x86_64/kernel");
  try {
    let m = await status(serve.url);
    while (m.downloads_total === 0 || m.downloads_active > 0) {
      await new Promise((r) => setTimeout(r, 100));
      m = await status(serve.url);
    }
    assert.equal(m.downloads_total, 1);
    assert.equal(m.downloads_aborted_total, 1);
  } finally {
    hog.close();
  }
});

Deno.test("serve refuses a node key other users can read in one line, and bad download limits", async () => {
  await using tmp = await tempDir();
  const state = `${tmp.path}/state`;
  await Deno.mkdir(`${tmp.path}/art/stable/x86_64`, { recursive: true });
  await Deno.mkdir(state, { mode: 0o755 });
  await Deno.chmod(state, 0o755);
  await Deno.writeFile(`${state}/node.key`, new Uint8Array(32).fill(1), { mode: 0o644 });
  await Deno.chmod(`${state}/node.key`, 0o644);
  const base = ["--artifacts", `${tmp.path}/art`, "--state-dir", state, "--no-dht", "--no-mdns"];
  const res = await runTask("serve", [...base, "--port", "0", "--bind", "127.0.0.1"]);
  assert.equal(res.code, 1, res.err);
  assert.equal(
    res.err,
    `serve: error: Cannot load node key '${state}/node.key': other users can read it (mode 0644); ` +
      `if it may have leaked make a new one, else run chmod 600 '${state}/node.key'\n`,
  );
  assert.equal((await Deno.stat(`${state}/node.key`)).mode! & 0o777, 0o644);
  for (const [flag, value] of [["--max-downloads", "0"], ["--max-downloads-per-client", "x"]]) {
    const bad = await runTask("serve", [...base, flag!, value!]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.err,
      new RegExp(`^serve: Cannot use ${flag} '${value}': expected a number`),
    );
    assert.equal(bad.err.trimEnd().split("\n").length, 1);
  }
});
