import assert from "node:assert/strict";
import {
  parseTrustedKeys,
  readPublicKeyFile,
  readTrustedKeysFile,
  writeKeyPairFiles,
} from "./key_files.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

Deno.test("parseTrustedKeys() refuses binary text without quoting it, and quotes only printable lines", () => {
  const secretish = "Ab3 \u0001\uFFFDzz";
  assert.throws(
    () => parseTrustedKeys(secretish),
    (e: Error) =>
      e instanceof SyntaxError &&
      e.message ===
        "Cannot read trusted keys: binary data, not hex keys (a secret key file? give the .pub)",
  );
  assert.throws(() => parseTrustedKeys("caf\u00e9\n"), /line 1 is not a 32-byte hex key$/);
  assert.throws(() => parseTrustedKeys("oops\n"), /line 1 is not a 32-byte hex key: 'oops'$/);
});

Deno.test("readTrustedKeysFile() and readPublicKeyFile() name a secret key file and print none of it", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const keys = await writeKeyPairFiles(`${dir}/k`);
    for (const read of [readTrustedKeysFile, readPublicKeyFile]) {
      const error = await read(`${dir}/k.key`).catch((e) => e as Error);
      assert.ok(error instanceof SyntaxError);
      assert.match(
        error.message,
        /^Cannot read (trusted|public) keys? '.*\/k\.key': this is a secret key file; give the \.pub$/,
      );
    }
    // A seed whose every line starts with '#' (about 1 random seed in 300) is still named.
    const hashes = new Uint8Array(32).fill(0x01);
    hashes.set([0x23, 0x02, 0x0a, 0x23], 0);
    await Deno.writeFile(`${dir}/h.key`, hashes);
    for (const read of [readTrustedKeysFile, readPublicKeyFile]) {
      await assert.rejects(
        () => read(`${dir}/h.key`),
        /this is a secret key file; give the \.pub$/,
      );
    }
    assert.deepEqual(await readPublicKeyFile(`${dir}/k.pub`), keys.publicKey);
    await Deno.writeTextFile(`${dir}/empty`, "# none\n");
    await assert.rejects(() => readPublicKeyFile(`${dir}/empty`), /expected one hex key, found 0$/);
    await assert.rejects(
      () => readTrustedKeysFile(`${dir}/none`),
      /^Error: Cannot read trusted keys '.*\/none': no such file$/,
    );
  });
});

Deno.test("writeKeyPairFiles() leaves no half pair when the .pub cannot be written", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.mkdir(`${dir}/k.pub`); // in the way
    await assert.rejects(() => writeKeyPairFiles(`${dir}/k`));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["k.pub"]);
  });
});
