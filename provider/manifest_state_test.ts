import assert from "node:assert/strict";
import {
  lastAcceptedSequence,
  readManifestState,
  recordAcceptedManifest,
} from "./manifest_state.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

Deno.test("recordAcceptedManifest() keeps the highest sequence per channel and arch", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const path = `${dir}/state.json`;
    const now = new Date("2026-11-24T20:00:00Z");
    await recordAcceptedManifest(path, {
      channel: "stable",
      arch: "x86_64",
      sequence: 4,
      version: "a",
    }, { now });
    await recordAcceptedManifest(path, {
      channel: "stable",
      arch: "aarch64",
      sequence: 1,
      version: "b",
    }, { now });
    await recordAcceptedManifest(path, {
      channel: "stable",
      arch: "x86_64",
      sequence: 2,
      version: "c",
    }, { now });
    const state = await readManifestState(path);
    assert.deepEqual(state, {
      state_version: 1,
      accepted: {
        stable: {
          x86_64: { sequence: 4, version: "a", accepted_at: "2026-11-24T20:00:00Z" },
          aarch64: { sequence: 1, version: "b", accepted_at: "2026-11-24T20:00:00Z" },
        },
      },
    });
    assert.equal(lastAcceptedSequence(state, "beta", "x86_64"), undefined);
    assert.equal(lastAcceptedSequence(state, "constructor", "x86_64"), undefined);
  });
});

Deno.test("readManifestState() refuses a state file that is not a state", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const path = `${dir}/state.json`;
    for (
      const [text, message] of [
        ["[]", /not a state_version 1 object/],
        ['{"state_version":2,"accepted":{}}', /not a state_version 1 object/],
        ['{"state_version":1}', /accepted is not an object/],
        [
          '{"state_version":1,"accepted":{"stable":{"x86_64":{"sequence":-1}}}}',
          /accepted\.stable\.x86_64\.sequence is not a whole number/,
        ],
      ] as const
    ) {
      await Deno.writeTextFile(path, text);
      await assert.rejects(() => readManifestState(path), message);
      await assert.rejects(
        () => recordAcceptedManifest(path, { channel: "s", arch: "a", sequence: 1, version: "1" }),
        SyntaxError,
        "a broken state is never overwritten",
      );
      assert.equal(await Deno.readTextFile(path), text);
    }
  });
});

Deno.test("readManifestState() refuses a state file with a key twice or a float sequence", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    const path = `${dir}/state.json`;
    const entry = (seq: string) =>
      `{"x86_64":{"sequence":${seq},"version":"9","accepted_at":"2026-01-01T00:00:00Z"}}`;
    await Deno.writeTextFile(
      path,
      `{"state_version":1,"accepted":{"stable":${entry("9")},"stable":${entry("1")}}}`,
    );
    await assert.rejects(() => readManifestState(path), {
      name: "SyntaxError",
      message:
        `Cannot read state file '${path}': duplicate key 'stable' at accepted (delete it only on purpose)`,
    });
    await Deno.writeTextFile(path, `{"state_version":1,"accepted":{"stable":${entry("9.0")}}}`);
    await assert.rejects(
      () => readManifestState(path),
      /non-integer number 9\.0 at accepted\.stable\.x86_64\.sequence/,
    );
    await Deno.writeTextFile(path, `\ufeff{"state_version":1,"accepted":{}}`);
    await assert.rejects(
      () => readManifestState(path),
      /: not JSON \(delete it only on purpose\)$/,
    );
  });
});
