import assert from "node:assert/strict";
import { verifyBootManifest } from "../provider/boot_manifest.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { peerIdFromString } from "@libp2p/peer-id";
import { runTask, taskArgs } from "./_task.ts";
import {
  type AuditCase,
  auditCli,
  badDurationCase,
  stateDirInUseCase,
  unknownOptionCase,
} from "./_cli_audit.ts";
import { withTempDir } from "./_temp_dir.ts";

/** A running `serve` process started with exactly the deno.json task's flags. */
interface Served extends AsyncDisposable {
  url: string;
  home: string;
  child: Deno.ChildProcess;
  banner: string[];
  /** Resolves when the process has exited: code and all of stderr. */
  exited: Promise<{ code: number; err: string }>;
}

/**
 * Start `serve` with exactly the `serve` task's flags on 127.0.0.1 port 0, its state dir under a
 * temp home (PLASM_HOME, unless `env` says otherwise). HOME itself stays, so Deno keeps its
 * module cache.
 */
async function startServe(
  home: string,
  args: string[],
  env: Record<string, string> = { PLASM_HOME: `${home}/.local/share/plasm` },
): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: await taskArgs("serve", ["--bind", "127.0.0.1", "--port", "0", ...args]),
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const banner: string[] = [];
  let buffered = "";
  let url: string | undefined;
  while (url === undefined) {
    const { value, done } = await lines.read();
    if (done) break;
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    banner.push(...parts);
    url = banner.find((l) => l.startsWith("Listening on "))?.slice("Listening on ".length);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  const drained = (async () => {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      banner.push(...value.split("\n").filter((l) => l !== ""));
    }
  })();
  const exited = (async () => {
    const status = await child.status;
    await drained;
    return { code: status.code, err: await err };
  })();
  if (url === undefined) {
    const { code, err: text } = await exited;
    throw new Error(`serve exited with ${code} before listening: ${text}`);
  }
  // Let the banner's remaining lines arrive.
  while (!banner.some((l) => l.startsWith("  mDNS"))) await new Promise((r) => setTimeout(r, 5));
  return {
    url,
    home,
    child,
    banner,
    exited,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await exited;
    },
  };
}

/** Every stderr line of serve, parsed: each must be a JSON object with an RFC 3339 `ts`. */
function jsonLines(err: string): Record<string, unknown>[] {
  return err.split("\n").filter((line) => line !== "").map((line) => {
    const record = JSON.parse(line);
    assert.match(record.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, line);
    return record;
  });
}

const withHome = <T>(fn: (dir: string) => Promise<T>): Promise<T> =>
  withTempDir("plasm-serve-", fn);

async function artifacts(home: string, files: Record<string, Uint8Array | string>) {
  const dir = `${home}/artifacts/stable/x86_64`;
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, data] of Object.entries(files)) {
    if (typeof data === "string") await Deno.writeTextFile(`${dir}/${name}`, data);
    else await Deno.writeFile(`${dir}/${name}`, data);
  }
  return `${home}/artifacts`;
}

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

Deno.test("serve prints its banner, serves a manifest signed by the node key, ranges and health", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { vmlinuz: "KERNEL-BYTES", "initrd.img": "INITRD" });
    await using served = await startServe(home, ["--artifacts", dir, "--arch", "x86_64"]);
    assert.match(served.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const banner = served.banner.join("\n");
    assert.match(banner, /^ {2}channel {4}stable$/m);
    assert.match(banner, /^ {2}arch {7}x86_64$/m);
    const p2p = `on \\(as 12D3KooW\\w+ at ${served.url.replaceAll(".", "\\.")}\\)`;
    assert.match(banner, new RegExp(`^ {2}DHT {8}${p2p}$`, "m"));
    assert.match(banner, new RegExp(`^ {2}mDNS {7}${p2p}$`, "m"));
    const nodeKey = await Deno.readFile(`${home}/.local/share/plasm/node.key`);
    const { publicKey } = await generateKeyPair(nodeKey);
    assert.match(banner, new RegExp(`^  key        ${toHex(publicKey)} \\(node identity`, "m"));

    const manifest = await verifyBootManifest(
      await (await fetch(`${served.url}manifest.json`)).json(),
      { trustedKeys: [publicKey] },
    );
    assert.equal(manifest.artifacts.kernel!.hash, sha256Tag("KERNEL-BYTES"));
    assert.equal(manifest.artifacts.initramfs!.filename, "initrd.img");

    const part = await fetch(`${served.url}stable/x86_64/kernel`, {
      headers: { range: "bytes=-5" },
    });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), "bytes 7-11/12");
    assert.equal(await part.text(), "BYTES");

    const health = await fetch(`${served.url}health`);
    assert.equal(health.status, 200);
    const body = await health.json();
    assert.deepEqual(body.checks, { artifacts_readable: true, disk_space_ok: true });
    assert.ok(body.disk_free_bytes > 0, "statfs really ran");

    served.child.kill("SIGTERM");
    const { code, err } = await within(10_000, served.exited, "exit after SIGTERM");
    assert.equal(code, 0, err);
    assert.equal(jsonLines(err).find((l) => l.event === "shutting_down")?.reason, "SIGTERM");
  });
});

Deno.test("serve notices a file replaced while serving: new hash, higher sequence, never stale", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "old kernel" });
    await using served = await startServe(home, ["--artifacts", dir, "--arch", "x86_64"]);
    const before = await (await fetch(`${served.url}manifest.json`)).json();
    const path = `${dir}/stable/x86_64/kernel`;
    for (const version of ["new kernel 1", "new kernel 22", "new kernel 333"]) {
      await Deno.writeTextFile(`${path}.tmp`, version);
      await Deno.rename(`${path}.tmp`, path);
      const res = await fetch(`${served.url}stable/x86_64/kernel`);
      assert.equal(res.headers.get("etag"), `"${sha256Tag(version).slice(7)}"`);
      assert.equal(await res.text(), version);
      const m = await (await fetch(`${served.url}stable/x86_64/manifest.json`)).json();
      assert.equal(m.artifacts.kernel.hash, sha256Tag(version));
      assert.ok(m.sequence > before.sequence);
      before.sequence = m.sequence;
    }
    // The sequence survives a restart of the provider.
    served.child.kill("SIGTERM");
    assert.equal((await served.exited).code, 0);
    await using again = await startServe(home, ["--artifacts", dir, "--arch", "x86_64"]);
    const after = await (await fetch(`${again.url}manifest.json`)).json();
    assert.equal(after.sequence, before.sequence);
  });
});

Deno.test("serve answers /manifest.json and /health from built bytes with Content-Length, ETag, 304 and HEAD", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "KERNEL" });
    await using served = await startServe(home, [
      ...["--artifacts", dir, "--arch", "x86_64", "--no-dht", "--no-mdns", "--min-free", "0"],
    ]);
    const bytes = async (res: Response) => new Uint8Array(await res.arrayBuffer());
    for (const path of ["manifest.json", "stable/x86_64/manifest.json"]) {
      const get = await fetch(`${served.url}${path}`);
      const body = await bytes(get);
      assert.equal(get.status, 200, path);
      assert.equal(get.headers.get("content-length"), String(body.length), path);
      assert.equal(get.headers.get("content-type"), "application/json; charset=utf-8");
      assert.equal(get.headers.get("cache-control"), "no-cache");
      const etag = get.headers.get("etag")!;
      assert.equal(etag, `"${sha256Tag(body).slice(7)}"`, "the ETag is the sha256 of the body");
      const head = await fetch(`${served.url}${path}`, { method: "HEAD" });
      assert.equal(head.headers.get("content-length"), String(body.length));
      assert.equal(head.headers.get("etag"), etag);
      assert.equal((await bytes(head)).length, 0);
      const same = await fetch(`${served.url}${path}`, { headers: { "if-none-match": etag } });
      assert.equal(same.status, 304);
      assert.equal(same.headers.get("etag"), etag);
      assert.equal((await bytes(same)).length, 0);
    }
    const health = await fetch(`${served.url}health`);
    const body = await bytes(health);
    assert.equal(health.status, 200);
    assert.equal(health.headers.get("content-length"), String(body.length));
    assert.equal(health.headers.get("cache-control"), "no-store");
    assert.equal(JSON.parse(new TextDecoder().decode(body)).status, "healthy");
    const head = await fetch(`${served.url}health`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(body.length));
    assert.equal((await bytes(head)).length, 0);
  });
});

Deno.test("serve --recheck: 0 shows a replaced artifact in the next manifest; with 60s a download of it does", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "old kernel" });
    const path = `${dir}/stable/x86_64/kernel`;
    const replace = async (text: string) => {
      await Deno.writeTextFile(`${path}.tmp`, text);
      await Deno.rename(`${path}.tmp`, path);
    };
    const base = ["--artifacts", dir, "--arch", "x86_64", "--no-dht", "--no-mdns"];
    const manifest = async (url: string) => await (await fetch(`${url}manifest.json`)).json();
    {
      await using served = await startServe(home, [...base, "--recheck", "0"]);
      const before = await manifest(served.url);
      await replace("new kernel 1");
      const after = await manifest(served.url);
      assert.equal(after.artifacts.kernel.hash, sha256Tag("new kernel 1"));
      assert.ok(after.sequence > before.sequence);
      served.child.kill("SIGTERM");
      assert.equal((await served.exited).code, 0);
    }
    await using served = await startServe(home, [...base, "--recheck", "60s"]);
    const before = await manifest(served.url);
    assert.equal(before.artifacts.kernel.hash, sha256Tag("new kernel 1"));
    await replace("new kernel 22");
    const res = await fetch(`${served.url}stable/x86_64/kernel`, {
      headers: { "if-none-match": `"${before.artifacts.kernel.hash.slice(7)}"` },
    });
    assert.equal(res.status, 200, "never 304 for the old hash");
    assert.equal(res.headers.get("etag"), `"${sha256Tag("new kernel 22").slice(7)}"`);
    assert.equal(await res.text(), "new kernel 22");
    const after = await manifest(served.url);
    assert.equal(after.artifacts.kernel.hash, sha256Tag("new kernel 22"));
    assert.ok(after.sequence > before.sequence);
  });
});

Deno.test("serve finishes an in-flight download on SIGTERM, then exits by itself", async () => {
  await withHome(async (home) => {
    const big = new Uint8Array(32 * 1024 * 1024).map((_, i) => i % 251);
    const dir = await artifacts(home, { rootfs: big });
    await using served = await startServe(home, ["--artifacts", dir, "--arch", "x86_64"]);
    const res = await fetch(`${served.url}stable/x86_64/rootfs`);
    const reader = res.body!.getReader();
    let received = (await reader.read()).value!.length;
    served.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value.length;
    }
    assert.equal(received, big.length, `got ${received} of ${big.length} bytes`);
    const { code, err } = await within(10_000, served.exited, "exit after the download");
    assert.equal(code, 0, err);
    assert.equal(
      jsonLines(err).find((l) => l.event === "shutting_down")?.downloads_in_flight,
      1,
    );
  });
});

Deno.test("serve ends a stalled download after --shutdown-timeout and still exits cleanly", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { rootfs: new Uint8Array(64 * 1024 * 1024) });
    await using served = await startServe(home, [
      "--artifacts",
      dir,
      "--arch",
      "x86_64",
      "--shutdown-timeout",
      "300ms",
    ]);
    const res = await fetch(`${served.url}stable/x86_64/rootfs`);
    const reader = res.body!.getReader();
    await reader.read(); // then stall: never read again until the provider gives up
    served.child.kill("SIGTERM");
    const { code, err } = await within(10_000, served.exited, "exit after the shutdown timeout");
    assert.equal(code, 0, err);
    assert.ok(jsonLines(err).some((l) => l.event === "shutdown_timeout"), err);
    let total = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        total += value.length;
      }
    } catch {
      // A cut connection is the expected way for the stalled body to end.
    }
    assert.ok(total < 64 * 1024 * 1024, "the stalled body was cut short");
  });
});

Deno.test("serve never leaves the artifacts dir for raw traversal request targets", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "K" });
    await Deno.writeTextFile(`${home}/secret.txt`, "TOP SECRET");
    await using served = await startServe(home, ["--artifacts", dir, "--arch", "x86_64"]);
    const port = Number(new URL(served.url).port);
    const targets = [
      "/stable/x86_64/../../../secret.txt",
      "/stable/x86_64/..%2f..%2f..%2fsecret.txt",
      "/stable/x86_64/%2e%2e/%2e%2e/%2e%2e/secret.txt",
      "/stable/x86_64/..\\..\\..\\secret.txt",
      "/stable/x86_64/%252e%252e%252f%252e%252e%252fsecret.txt",
      "/stable/x86_64/kernel%00",
      `/${home}/secret.txt`,
      "//etc/passwd",
      "/%2fetc%2fpasswd",
    ];
    for (const target of targets) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(
        new TextEncoder().encode(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
      );
      const text = await new Response(conn.readable).text();
      const status = Number(text.slice(9, 12));
      assert.ok([400, 404].includes(status), `${target} -> ${text.slice(0, 40)}`);
      assert.doesNotMatch(text, /TOP SECRET/, target);
    }
  });
});

Deno.test("serve --key FILE signs with that publisher key", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "K" });
    const keys = await writeKeyPairFiles(`${home}/publisher`);
    await using served = await startServe(home, [
      "--artifacts",
      dir,
      "--arch",
      "x86_64",
      "--key",
      `${home}/publisher.key`,
    ]);
    const m = await (await fetch(`${served.url}manifest.json`)).json();
    await verifyBootManifest(m, { trustedKeys: [keys.publicKey] });
    assert.match(served.banner.join("\n"), /\(--key .*publisher\.key\)/);
  });
});

Deno.test("serve: bad flags, files, grants, ports and a busy state dir fail with one line", async (t) => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "K" });
    await Deno.writeTextFile(`${home}/bad.key`, "not a key");
    await Deno.writeTextFile(`${home}/file`, "");
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await using running = await startServe(home, [
      ...["--artifacts", dir, "--state-dir", `${home}/busy`, "--no-dht", "--no-mdns"],
    ]);
    const ok = ["--artifacts", dir, "--bind", "127.0.0.1", "--port", "0", "--no-dht", "--no-mdns"];
    const without = (prefix: string) => (f: string[]) => f.filter((x) => !x.startsWith(prefix));
    const cases: AuditCase[] = [
      unknownOptionCase("serve"),
      {
        name: "port out of range",
        args: ["--port", "99999"],
        code: 2,
        line:
          /^serve: Cannot use --port '99999': expected a number from 0 to 65535 \(see serve --help\)$/,
      },
      {
        name: "unsafe channel",
        args: ["--channel", "../etc"],
        code: 2,
        line: /^serve: Cannot use --channel '\.\.\/etc'/,
      },
      {
        name: "bad validity",
        args: ["--validity-days", "0"],
        code: 2,
        line: /^serve: Cannot use --validity-days '0': expected 1 to 3650 \(see serve --help\)$/,
      },
      {
        name: "recheck too long",
        args: ["--recheck", "2m"],
        code: 2,
        line: /^serve: Cannot use --recheck '2m': expected 0 to 60s \(see serve --help\)$/,
      },
      badDurationCase("serve", ["--recheck"], { name: "recheck not a duration" }),
      {
        name: "bad bootstrap multiaddr",
        args: ["--bootstrap", "nowhere"],
        code: 2,
        line: /^serve: Cannot use --bootstrap 'nowhere': /,
      },
      {
        name: "bad p2p listen multiaddr",
        args: ["--p2p-listen", "/ip4/1.2.3.4/tcp/x"],
        code: 2,
        line: /^serve: Cannot use --p2p-listen '\/ip4\/1\.2\.3\.4\/tcp\/x': /,
      },
      {
        name: "missing artifacts dir",
        args: [...ok, "--artifacts", `${home}/nope`],
        code: 1,
        line: new RegExp(
          `^serve: error: Cannot serve '${home}/nope': not a directory \\(pass --artifacts DIR\\)$`,
        ),
      },
      {
        name: "missing key file",
        args: [...ok, "--key", `${home}/none.key`],
        code: 1,
        line: new RegExp(`^serve: error: Cannot read key '${home}/none\\.key': no such file$`),
      },
      {
        name: "malformed key file",
        args: [...ok, "--key", `${home}/bad.key`],
        code: 1,
        line: new RegExp(`^serve: error: Cannot read secret key '${home}/bad\\.key'`),
      },
      {
        name: "state dir is a file",
        args: [...ok, "--state-dir", `${home}/file`],
        code: 1,
        line: new RegExp(`^serve: error: Cannot use state dir '${home}/file': not a directory$`),
      },
      stateDirInUseCase("serve", {
        what: "provider",
        args: ok,
        dir: `${home}/busy`,
        pid: running.child.pid,
      }),
      {
        name: "write grant for another dir",
        args: [...ok, "--state-dir", `${home}/s`],
        flags: (f) => [...without("--allow-write")(f), `--allow-write=${home}/other`],
        code: 1,
        line: new RegExp(
          `^serve: error: Cannot write state dir '${home}/s': run with --allow-write=${home}/s$`,
        ),
      },
      {
        name: "port in use",
        args: [...ok, "--port", String(taken.addr.port), "--state-dir", `${home}/s`],
        code: 1,
        line: new RegExp(
          `^serve: error: Cannot listen on 127\\.0\\.0\\.1:${taken.addr.port}: address already in use$`,
        ),
      },
      {
        name: "no net grant",
        args: [...ok, "--state-dir", `${home}/s`],
        flags: without("--allow-net"),
        code: 1,
        line: /^serve: error: Cannot listen on 127\.0\.0\.1:0: Requires net access/,
      },
    ];
    try {
      await auditCli(t, "serve", cases, { PLASM_HOME: `${home}/state`, NO_COLOR: "1" });
    } finally {
      taken.close();
    }
  });
});

Deno.test("serve honours --state-dir and PLASM_HOME through its task: one PeerId per state dir", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "K" });
    const p2p = ["--no-mdns", "--p2p-listen", "/ip4/127.0.0.1/tcp/0"];
    await using x = await startServe(home, [
      ...["--artifacts", dir, "--state-dir", `${home}/x`, ...p2p],
    ]);
    await using y = await startServe(home, ["--artifacts", dir, ...p2p], {
      PLASM_HOME: `${home}/y`,
    });
    const line = (banner: string[], name: string) =>
      banner.find((l) => l.startsWith(`  ${name.padEnd(10)} `))?.slice(13);
    assert.equal(line(x.banner, "state dir"), `${home}/x`);
    assert.equal(line(y.banner, "state dir"), `${home}/y`);
    const peers = [line(x.banner, "peer id"), line(y.banner, "peer id")];
    assert.match(peers[0]!, /^12D3KooW\w+$/);
    assert.match(peers[1]!, /^12D3KooW\w+$/);
    assert.notEqual(peers[0], peers[1]);
    for (const [state, peer] of [[`${home}/x`, peers[0]], [`${home}/y`, peers[1]]]) {
      const { publicKey } = await generateKeyPair(await Deno.readFile(`${state}/node.key`));
      assert.equal(toHex(peerIdFromString(peer!).publicKey!.raw), toHex(publicKey));
    }
  });
});

Deno.test("serve shows its PeerId and libp2p addresses (banner, /status, provider status) and logs JSON lines", async () => {
  await withHome(async (home) => {
    const dir = await artifacts(home, { kernel: "K" });
    const served = await startServe(home, [
      ...["--artifacts", dir, "--no-mdns", "--p2p-listen", "/ip4/127.0.0.1/tcp/0"],
    ]);
    try {
      const peer = /^ {2}peer id {4}(12D3KooW\w+)$/m.exec(served.banner.join("\n"))?.[1];
      assert.ok(peer, served.banner.join("\n"));
      const p2p = served.banner.find((l) => l.startsWith("  p2p        "))!.slice(13);
      assert.match(p2p, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${peer}$`));
      const status = await (await fetch(`${served.url}status`)).json();
      assert.equal(status.peer_id, peer);
      assert.deepEqual(status.p2p_listen, [p2p]);
      const cli = await runTask("provider", ["status", "--addr", served.url]);
      assert.equal(cli.code, 0, cli.err);
      assert.match(cli.out, new RegExp(`^ {2}peer id {4}${peer}$`, "m"));
      assert.match(cli.out, new RegExp(`^ {2}p2p {8}${p2p.replaceAll(".", "\\.")}$`, "m"));
    } finally {
      served.child.kill("SIGTERM");
    }
    const { code, err } = await within(10_000, served.exited, "exit after SIGTERM");
    assert.equal(code, 0, err);
    const logs = jsonLines(err);
    const warned = logs.filter((l) => l.event === "dht_without_bootstrap");
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.level, "warn");
    assert.ok(logs.some((l) => l.event === "stopped" && l.requests === 2), err);
  });
});
