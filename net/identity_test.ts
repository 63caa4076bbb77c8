import assert from "node:assert/strict";
import { defaultStateDir, loadOrCreateIdentity } from "./identity.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

Deno.test("loadOrCreateIdentity() creates the dir 0700 and the key 0600, and reuses it", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = `${root}/state/plasm`;
    const first = await loadOrCreateIdentity(dir);
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${dir}/node.key`)).mode! & 0o777, 0o600);
    assert.deepEqual(await Deno.readFile(`${dir}/node.key`), first.secretKey);
    const again = await loadOrCreateIdentity(dir);
    assert.deepEqual(again.publicKey, first.publicKey);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["node.key"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadOrCreateIdentity() racing first starts agree on one key", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(dir)));
    for (const k of keys) assert.deepEqual(k.publicKey, keys[0]!.publicKey);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["node.key"]);
  });
});

Deno.test("loadOrCreateIdentity() refuses a key file of the wrong size", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.writeFile(`${dir}/node.key`, new Uint8Array(31));
    await assert.rejects(() => loadOrCreateIdentity(dir), /expected 32 bytes, got 31/);
  });
});

Deno.test("defaultStateDir() prefers PLASM_HOME, then XDG_DATA_HOME, then HOME", () => {
  const env = (vars: Record<string, string>) => (k: string) => vars[k];
  assert.equal(defaultStateDir(env({ PLASM_HOME: "/p", HOME: "/h" })), "/p");
  assert.equal(defaultStateDir(env({ XDG_DATA_HOME: "/x", HOME: "/h" })), "/x/plasm");
  assert.equal(defaultStateDir(env({ HOME: "/h" })), "/h/.local/share/plasm");
  assert.throws(() => defaultStateDir(env({})), /set PLASM_HOME/);
});

Deno.test("loadOrCreateIdentity() refuses a key file other users can read or write, and keeps it", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const first = await loadOrCreateIdentity(dir);
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      await Deno.chmod(`${dir}/node.key`, mode);
      await assert.rejects(
        () => loadOrCreateIdentity(dir),
        (error: Error) => {
          assert.ok(error instanceof Deno.errors.PermissionDenied);
          assert.equal(error.message.split("\n").length, 1);
          assert.match(
            error.message,
            new RegExp(
              `^Cannot load node key '${dir}/node\\.key': other users can (read|write) it \\(mode 0${
                mode.toString(8)
              }\\)`,
            ),
          );
          return true;
        },
      );
      // Neither rewritten nor chmod'ed.
      assert.deepEqual(await Deno.readFile(`${dir}/node.key`), first.secretKey);
      assert.equal((await Deno.stat(`${dir}/node.key`)).mode! & 0o777, mode);
    }
    await Deno.chmod(`${dir}/node.key`, 0o400);
    assert.deepEqual((await loadOrCreateIdentity(dir)).publicKey, first.publicKey);
  });
});
