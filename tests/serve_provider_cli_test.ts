import assert from "node:assert/strict";
import { ArtifactStore } from "../provider/artifact_store.ts";
import { createProviderHandler } from "../provider/provider_handler.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import { runTask } from "./_task.ts";
import { auditCli, badDurationCase, unknownOptionCase } from "./_cli_audit.ts";

/** A real provider handler on 127.0.0.1 (in this process) for the `provider` CLI to query. */
async function withProvider(fn: (url: string, publicKey: Uint8Array) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "plasm-provider-cli-" });
  await Deno.mkdir(`${dir}/stable/x86_64`, { recursive: true });
  await Deno.mkdir(`${dir}/beta/aarch64`, { recursive: true });
  await Deno.writeTextFile(`${dir}/stable/x86_64/vmlinuz`, "KERNEL");
  await Deno.writeTextFile(`${dir}/stable/x86_64/initrd`, "INITRD!");
  await Deno.writeTextFile(`${dir}/beta/aarch64/kernel`, "ARMKERNEL");
  const keyPair = await generateKeyPair(new Uint8Array(32).fill(3));
  const store = new ArtifactStore(dir, { keyPair });
  const handler = createProviderHandler({
    store,
    channel: "stable",
    arch: "x86_64",
    info: { dht: "off (test)", mdns: "off (test)" },
    diskSpace: () => Promise.resolve({ freeBytes: 5 * 1024 ** 3, totalBytes: 10 * 1024 ** 3 }),
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, keyPair.publicKey);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("provider status prints a readable summary of a running provider", async () => {
  await withProvider(async (url, publicKey) => {
    const { code, out, err } = await runTask("provider", ["status", "--addr", url]);
    assert.equal(code, 0, err);
    assert.match(out, new RegExp(`^Provider   ${url}/\n`));
    assert.match(out, /^ {2}name {7}plasm 0\.1\.0$/m);
    assert.match(out, /^ {2}default {4}stable\/x86_64$/m);
    assert.match(out, new RegExp(`^  key        ${toHex(publicKey)}$`, "m"));
    assert.match(
      out,
      /^ {2}health {5}healthy \(artifacts readable: yes, disk space ok: yes, 5\.0 GiB free\)$/m,
    );
    assert.match(out, /^ {2}DHT {8}off \(test\)$/m);
    assert.match(out, /^ {2}channels {3}beta\/aarch64, stable\/x86_64$/m);
  });
});

Deno.test("provider status --json prints the provider's /status document", async () => {
  await withProvider(async (url) => {
    const { code, out, err } = await runTask("provider", ["status", "--addr", url, "--json"]);
    assert.equal(code, 0, err);
    const status = JSON.parse(out);
    assert.equal(status.channel, "stable");
    assert.equal(status.health.status, "healthy");
    assert.equal(typeof status.metrics.requests_total, "number");
  });
});

Deno.test("provider list prints every channel's artifacts in a table", async () => {
  await withProvider(async (url) => {
    const { code, out, err } = await runTask("provider", ["list", "--addr", url]);
    assert.equal(code, 0, err);
    const lines = out.trimEnd().split("\n");
    assert.match(
      lines[0]!,
      /^CHANNEL\s+ARCH\s+ARTIFACT\s+FILE\s+SIZE\s+SHA256\s+SEQUENCE\s+EXPIRES$/,
    );
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, /^beta\s+aarch64\s+kernel\s+kernel\s+9 B\s+[0-9a-f]{16}\s+\d+\s+\S+Z$/);
    assert.match(lines[2]!, /^stable\s+x86_64\s+initramfs\s+initrd\s+7 B\s/);
    assert.match(
      lines[3]!,
      new RegExp(
        `^stable\\s+x86_64\\s+kernel\\s+vmlinuz\\s+6 B\\s+${sha256Tag("KERNEL").slice(7, 23)}\\s`,
      ),
    );
  });
});

Deno.test("provider list --json gives channels with sequence, signers and artifacts", async () => {
  await withProvider(async (url, publicKey) => {
    const { code, out, err } = await runTask("provider", ["list", "--addr", `${url}/`, "--json"]);
    assert.equal(code, 0, err);
    const list = JSON.parse(out);
    assert.equal(list.provider, `${url}/`);
    assert.deepEqual(list.channels.map((c: { channel: string }) => c.channel), ["beta", "stable"]);
    const stable = list.channels[1];
    assert.deepEqual(stable.signers, [toHex(publicKey)]);
    assert.equal(stable.artifacts.kernel.hash, sha256Tag("KERNEL"));
    assert.ok(Number.isSafeInteger(stable.sequence));
  });
});

Deno.test("provider reports an unreachable provider in one line with exit code 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  for (const command of ["status", "list"]) {
    const { code, out, err } = await runTask("provider", [
      command,
      "--addr",
      `127.0.0.1:${port}`,
    ]);
    assert.equal(code, 1);
    assert.equal(out, "");
    assert.equal(
      err,
      `provider: error: Cannot reach provider at http://127.0.0.1:${port}/: Connection refused\n`,
    );
  }
});

Deno.test("provider refuses unknown commands and bad addresses with exit code 2", async () => {
  const unknown = await runTask("provider", ["restart"]);
  assert.equal(unknown.code, 2);
  assert.match(
    unknown.err,
    /^provider: Cannot run 'restart': expected 'status' or 'list' \(see provider --help\)\n/,
  );
  const badAddr = await runTask("provider", ["status", "--addr", "ftp://x"]);
  assert.equal(badAddr.code, 2);
  assert.equal(
    badAddr.err,
    "provider: Cannot use --addr 'ftp://x': expected a URL like http://127.0.0.1:8080 (see provider --help)\n",
  );
});

Deno.test("provider: bad flags, grants, unreachable and malformed providers fail with one line", async (t) => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = listener.addr.port;
  listener.close();
  // A provider whose answers have the wrong shape.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    return Response.json(
      path === "/status" ? { channels: [{ channel: "stable", arch: "x86_64" }] } : null,
    );
  });
  const odd = `http://127.0.0.1:${server.addr.port}/`;
  try {
    await auditCli(t, "provider", [
      {
        name: "no command",
        args: [],
        code: 2,
        line: /^provider: Cannot run: expected 'status' or 'list' \(see provider --help\)$/,
      },
      {
        name: "unknown command",
        args: ["restart"],
        code: 2,
        line:
          /^provider: Cannot run 'restart': expected 'status' or 'list' \(see provider --help\)$/,
      },
      unknownOptionCase("provider", ["status"]),
      badDurationCase("provider", ["status", "--timeout"], { name: "bad timeout" }),
      {
        name: "unreachable",
        args: ["list", "--addr", `127.0.0.1:${dead}`],
        code: 1,
        line: new RegExp(
          `^provider: error: Cannot reach provider at http://127\\.0\\.0\\.1:${dead}/: Connection refused$`,
        ),
      },
      {
        name: "no net grant for the address",
        args: ["status", "--addr", odd],
        flags: () => ["--allow-net=127.0.0.1:1"],
        code: 1,
        line:
          /^provider: error: Cannot reach provider at .*: Requires net access to "127\.0\.0\.1:\d+"/,
      },
      {
        name: "malformed manifest",
        args: ["list", "--addr", odd],
        code: 1,
        line: new RegExp(
          `^provider: error: Cannot read ${
            odd.replaceAll(".", "\\.")
          }stable/x86_64/manifest\\.json: ` +
            "not a boot manifest$",
        ),
      },
    ], { NO_COLOR: "1" });
  } finally {
    await server.shutdown();
  }
});
