/**
 * `serve --mirror DIR`, as its own process with the `serve` task's flags: the publisher's signed
 * manifest served byte for byte (as `serve` itself wrote it), the files it names with ranges,
 * nothing signed; a mirror whose files or manifest do not match is refused with one line.
 */
import assert from "node:assert/strict";
import { ArtifactStore } from "../provider/artifact_store.ts";
import { createProviderHandler } from "../provider/provider_handler.ts";
import { verifyBootManifest } from "../provider/boot_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { toHex } from "../runtime/digest.ts";
import { runTask, taskArgs } from "./_task.ts";
import { withTempDir } from "./_temp_dir.ts";
import { readTextUntil } from "../util/read_text_until.ts";

const KERNEL = new Uint8Array(70_000).map((_, i) => (i * 7) % 251);

/**
 * A publisher's release in `<dir>/mirror/stable/x86_64`: kernel, initramfs and the manifest
 * exactly as `serve`'s handler answers it. Returns the manifest bytes and the publisher key.
 */
async function release(dir: string) {
  const art = `${dir}/publisher/stable/x86_64`;
  await Deno.mkdir(art, { recursive: true });
  await Deno.writeFile(`${art}/kernel`, KERNEL);
  await Deno.writeTextFile(`${art}/initramfs`, "initramfs bytes");
  const keyPair = await generateKeyPair();
  const store = new ArtifactStore(`${dir}/publisher`, { keyPair });
  const handler = createProviderHandler({ store, channel: "stable", arch: "x86_64" });
  const res = await handler(new Request("http://publisher/stable/x86_64/manifest.json"));
  assert.equal(res.status, 200);
  const manifest = new Uint8Array(await res.arrayBuffer());
  const mirror = `${dir}/mirror/stable/x86_64`;
  await Deno.mkdir(mirror, { recursive: true });
  await Deno.writeFile(`${mirror}/kernel`, KERNEL);
  await Deno.writeTextFile(`${mirror}/initramfs`, "initramfs bytes");
  await Deno.writeFile(`${mirror}/manifest.json`, manifest);
  return { manifest, keyPair, mirror: `${dir}/mirror` };
}

const MIRROR_ARGS = ["--arch", "x86_64", "--min-free", "0", "--no-dht", "--no-mdns"];

Deno.test("serve --mirror serves the publisher's manifest byte for byte and its files with ranges, signing nothing", async () => {
  await withTempDir("plasm-serve-mirror-", async (dir) => {
    const { manifest, keyPair, mirror } = await release(dir);
    const child = new Deno.Command(Deno.execPath(), {
      args: await taskArgs("serve", [
        ...["--mirror", mirror, "--bind", "127.0.0.1", "--port", "0"],
        ...["--state-dir", `${dir}/state`, ...MIRROR_ARGS],
      ]),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const err = new Response(child.stderr).text();
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      const banner = await readTextUntil(out, (text) => /^ {2}mDNS /m.test(text));
      const url = /^Listening on (\S+)$/m.exec(banner)?.[1];
      assert.ok(url, `no banner: ${banner}`);
      assert.match(banner, new RegExp(`^ {2}key +${toHex(keyPair.publicKey)} \\(publisher's`, "m"));
      for (const path of ["manifest.json", "stable/x86_64/manifest.json"]) {
        const res: Response = await fetch(`${url}${path}`);
        assert.equal(res.status, 200);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), manifest);
      }
      const served = JSON.parse(new TextDecoder().decode(manifest));
      await verifyBootManifest(served, { trustedKeys: [keyPair.publicKey] });
      const range = await fetch(`${url}stable/x86_64/kernel`, {
        headers: { range: "bytes=1000-1009" },
      });
      assert.equal(range.status, 206);
      assert.equal(range.headers.get("content-range"), `bytes 1000-1009/${KERNEL.length}`);
      assert.deepEqual(new Uint8Array(await range.arrayBuffer()), KERNEL.slice(1000, 1010));
      const metrics = await (await fetch(`${url}metrics`)).text();
      assert.match(metrics, /^plasm_provider_manifests_signed_total 0$/m);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      for (;;) if ((await out.read()).done) break;
      await err;
    }
  });
});

Deno.test("serve --mirror refuses a file that is not the one the manifest names, in one line", async () => {
  await withTempDir("plasm-serve-mirror-", async (dir) => {
    const { mirror } = await release(dir);
    const tampered = KERNEL.slice();
    tampered[5] = tampered[5]! ^ 1;
    await Deno.writeFile(`${mirror}/stable/x86_64/kernel`, tampered);
    const { code, err } = await runTask("serve", [
      ...["--mirror", mirror, "--bind", "127.0.0.1", "--port", "0"],
      ...["--state-dir", `${dir}/state`, ...MIRROR_ARGS],
    ]);
    assert.equal(code, 1);
    const lines = err.trim().split("\n");
    assert.equal(lines.length, 1, err);
    assert.match(
      lines[0]!,
      /^serve: error: Cannot mirror 'kernel': \S+ is not the file the manifest names \(expected sha256:/,
    );
  });
});

Deno.test("serve --mirror refuses a manifest it could not serve byte for byte, in one line", async () => {
  await withTempDir("plasm-serve-mirror-", async (dir) => {
    const { manifest, mirror } = await release(dir);
    const compact = JSON.stringify(JSON.parse(new TextDecoder().decode(manifest)));
    await Deno.writeTextFile(`${mirror}/stable/x86_64/manifest.json`, compact);
    const { code, err } = await runTask("serve", [
      ...["--mirror", mirror, "--bind", "127.0.0.1", "--port", "0"],
      ...["--state-dir", `${dir}/state`, ...MIRROR_ARGS],
    ]);
    assert.equal(code, 1);
    assert.match(
      err,
      /^serve: error: Cannot mirror '.*manifest\.json': not laid out as serve writes/,
    );
    assert.equal(err.trim().split("\n").length, 1, err);
  });
});

Deno.test("serve --mirror with --key or --artifacts is a usage error", async () => {
  await withTempDir("plasm-serve-mirror-", async (dir) => {
    for (const extra of [["--key", `${dir}/x.key`], ["--artifacts", dir]]) {
      const { code, err } = await runTask("serve", [
        ...["--mirror", dir, "--state-dir", `${dir}/state`, ...MIRROR_ARGS, ...extra],
      ]);
      assert.equal(code, 2);
      assert.match(err, new RegExp(`Cannot use ${extra[0]} with --mirror`));
    }
  });
});
