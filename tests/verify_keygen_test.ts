/**
 * `keygen` as its own process with the deno.json task's flags: key files, modes, refusal to
 * overwrite, and a key pair that the real provider and `verify` accept together.
 */
import assert from "node:assert/strict";
import { readSecretKeyFile } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { runTask } from "./_task.ts";
import { startServe, tempDir } from "./fetch_testlib.ts";

Deno.test("keygen writes BASE.key (32 bytes, 0600) and BASE.pub (hex) and refuses to overwrite", async () => {
  await using tmp = await tempDir();
  const base = `${tmp.path}/release`;
  const res = await runTask("keygen", ["--out", base]);
  assert.equal(res.code, 0, res.err);
  const key = await Deno.readFile(`${base}.key`);
  assert.equal(key.length, 32);
  assert.equal((await Deno.stat(`${base}.key`)).mode! & 0o777, 0o600);
  const pub = await Deno.readTextFile(`${base}.pub`);
  const derived = toHex((await readSecretKeyFile(`${base}.key`)).publicKey);
  assert.equal(pub, `${derived}\n`);
  assert.match(res.out, new RegExp(`Public key \\(add to a trusted-keys file\\): ${derived}`));

  const again = await runTask("keygen", ["--out", base]);
  assert.equal(again.code, 1);
  assert.equal(
    again.err,
    `Cannot make keys: '${base}.key' exists; a key file is never overwritten\n`,
  );
  assert.deepEqual(await Deno.readFile(`${base}.key`), key, "the old key is untouched");

  await Deno.remove(`${base}.key`);
  const pubOnly = await runTask("keygen", ["--out", base]);
  assert.equal(pubOnly.code, 1, "a stray .pub is not overwritten either");
  assert.equal(
    pubOnly.err,
    `Cannot make keys: '${base}.pub' exists; a key file is never overwritten\n`,
  );

  const usage = await runTask("keygen", []);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /^Cannot make keys: --out BASE is required/);
});

Deno.test("a keygen key signs the real provider's manifests that verify manifest accepts", async () => {
  await using tmp = await tempDir();
  const base = `${tmp.path}/publisher`;
  assert.equal((await runTask("keygen", ["--out", base, "--json"])).code, 0);
  await Deno.copyFile(`${base}.pub`, `${tmp.path}/trusted-keys`);
  await Deno.mkdir(`${tmp.path}/art/stable/x86_64`, { recursive: true });
  await Deno.writeTextFile(`${tmp.path}/art/stable/x86_64/kernel`, "kernel");
  await using serve = await startServe(`${tmp.path}/art`, `${base}.key`, `${tmp.path}/state`);
  const manifest = await (await fetch(`${serve.url}stable/x86_64/manifest.json`)).text();
  await Deno.writeTextFile(`${tmp.path}/manifest.json`, manifest);
  await Deno.mkdir(`${tmp.path}/boot`);
  await Deno.writeTextFile(`${tmp.path}/boot/kernel`, "kernel");
  const res = await runTask("verify", [
    "manifest",
    `${tmp.path}/manifest.json`,
    "--trusted-keys",
    `${tmp.path}/trusted-keys`,
    "--artifacts",
    `${tmp.path}/boot`,
  ]);
  assert.equal(res.code, 0, res.err);
  assert.match(res.out, /^OK kernel /m);
});
