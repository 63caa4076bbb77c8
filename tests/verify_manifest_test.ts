/**
 * `verify manifest` and `verify artifact` as their own processes, with the deno.json `verify`
 * task's flags (plus `--allow-write=<dir>` where `--state` must record): one case for every way
 * a manifest can be bad, each answered by exit code 1 or 2 and one line naming what failed.
 */
import assert from "node:assert/strict";
import type { BootManifest } from "../provider/boot_manifest.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { taskCommand } from "./_task.ts";
import { artifactEntry, signedManifest, tempDir } from "./fetch_testlib.ts";

const ROOT = new URL("../", import.meta.url);
const KERNEL = new TextEncoder().encode("kernel bytes, not really a kernel");

async function verify(
  args: string[],
  options: { write?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const { flags, script } = await taskCommand("verify");
  assert.deepEqual(flags, ["--allow-read"], "verify runs with --allow-read only");
  const extra = options.write ? [`--allow-write=${options.write}`] : [];
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, ...extra, new URL(script, ROOT).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code, out: d.decode(stdout), err: d.decode(stderr) };
}

interface World {
  dir: string;
  a: KeyPair;
  b: KeyPair;
  stranger: KeyPair;
  trusted: string;
  good: BootManifest;
  write(name: string, value: unknown): Promise<string>;
}

async function world(dir: string): Promise<World> {
  const [a, b, stranger] = [
    await generateKeyPair(),
    await generateKeyPair(),
    await generateKeyPair(),
  ];
  const trusted = `${dir}/trusted-keys`;
  await Deno.writeTextFile(
    trusted,
    `# release keys\n${toHex(a.publicKey)} release-a\n\n${toHex(b.publicKey)} release-b\n`,
  );
  const good = await signedManifest([a], {
    kernel: artifactEntry("vmlinuz", KERNEL, "/stable/x86_64/kernel"),
  });
  let n = 0;
  const write = async (name: string, value: unknown) => {
    const path = `${dir}/${name}-${n++}.json`;
    await Deno.writeTextFile(path, typeof value === "string" ? value : JSON.stringify(value));
    return path;
  };
  return { dir, a, b, stranger, trusted, good, write };
}

/** `verify manifest` of `manifest`, written to a file, against the world's trusted keys. */
async function verifyManifest(
  w: World,
  manifest: unknown,
  options: { args?: string[]; write?: string } = {},
) {
  const { args = [], ...rest } = options;
  return await verify(
    ["manifest", await w.write("m", manifest), "--trusted-keys", w.trusted, ...args],
    rest,
  );
}

/** Re-sign `fields` over the good manifest's content with `signers`. */
async function resigned(w: World, signers: KeyPair[], fields: Partial<BootManifest>) {
  return await signedManifest(signers, w.good.artifacts, fields);
}

Deno.test("verify manifest accepts a well-signed manifest and says what it checked", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const res = await verifyManifest(w, w.good);
  assert.equal(res.code, 0, res.err);
  assert.equal(
    res.out,
    "OK manifest stable/x86_64 version 2026.11.1 sequence 5: 1 trusted signature(s), threshold 1, expires 2099-01-01T00:00:00Z\n",
  );
  assert.equal(res.err, "");
  const json = await verifyManifest(w, w.good, { args: ["--json"] });
  assert.equal(json.code, 0);
  assert.deepEqual(JSON.parse(json.out).manifest.trusted_signers, [toHex(w.a.publicKey)]);
});

Deno.test("verify manifest refuses each kind of bad manifest with one line", async (t) => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const aHex = toHex(w.a.publicKey);
  const withSig = (m: BootManifest, f: (s: Record<string, unknown>) => void) => {
    const copy = structuredClone(m) as unknown as { signatures: Record<string, unknown>[] };
    f(copy.signatures[0]!);
    return copy;
  };
  const cases: [string, () => Promise<unknown> | unknown, string[], number, RegExp][] = [
    [
      "a trusted key's signature that does not verify",
      // Flip the lowest bit of the last byte: always a change (replacing it with a fixed
      // value would change nothing when the signature already ended in that value).
      () =>
        withSig(w.good, (s) => {
          const sig = s.signature as string;
          const last = (parseInt(sig.slice(126), 16) ^ 0x01).toString(16).padStart(2, "0");
          s.signature = `${sig.slice(0, 126)}${last}`;
          assert.notEqual(s.signature, sig);
        }),
      [],
      1,
      new RegExp(
        `^verify manifest: error: Cannot accept manifest: bad signature by trusted key ${aHex}$`,
      ),
    ],
    [
      "content changed after signing",
      () => ({ ...w.good, version: "2026.11.2" }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: bad signature by trusted key [0-9a-f]{64}$/,
    ],
    [
      "an artifact hash changed after signing",
      () => {
        const m = structuredClone(w.good);
        m.artifacts.kernel!.hash = sha256Tag("evil");
        return m;
      },
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: bad signature by trusted key/,
    ],
    [
      "signed only by an untrusted key",
      () => resigned(w, [w.stranger], {}),
      [],
      1,
      new RegExp(
        `^verify manifest: error: Cannot accept manifest: signed by no trusted key \\(signers: ${
          toHex(w.stranger.publicKey).slice(0, 16)
        }\\)$`,
      ),
    ],
    [
      "no signatures",
      () => ({ ...w.good, signatures: [] }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: 0 valid signature\(s\) by trusted keys, need 1$/,
    ],
    [
      "fewer trusted signers than the threshold",
      () => resigned(w, [w.a, w.stranger], {}),
      ["--threshold", "2"],
      1,
      /^verify manifest: error: Cannot accept manifest: 1 valid signature\(s\) by trusted keys, need 2$/,
    ],
    [
      "one key's signature repeated to reach the threshold",
      () => ({ ...w.good, signatures: [w.good.signatures[0], w.good.signatures[0]] }),
      ["--threshold", "2"],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: signatures\[1\] repeats the key of signatures\[0\]$/,
    ],
    [
      "a threshold above the number of trusted keys",
      () => w.good,
      ["--threshold", "3"],
      2,
      /^verify manifest: error: Cannot verify manifest: threshold 3 is more than the 2 trusted key\(s\)$/,
    ],
    [
      "expired",
      () => resigned(w, [w.a], { expires_at: "2026-01-02T00:00:00Z" }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: expired at 2026-01-02T00:00:00Z$/,
    ],
    [
      "an unknown manifest_version",
      () => ({ ...w.good, manifest_version: 2 }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: unknown manifest_version 2$/,
    ],
    [
      "no manifest_version",
      () => {
        const { manifest_version: _, ...rest } = w.good;
        return rest;
      },
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: unknown manifest_version undefined$/,
    ],
    [
      "not JSON",
      () => "{ nope",
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: not JSON \(/,
    ],
    [
      "not an object",
      () => [w.good],
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: not an object$/,
    ],
    [
      "a missing sequence",
      () => {
        const { sequence: _, ...rest } = w.good;
        return rest;
      },
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: sequence is not a whole number$/,
    ],
    [
      "a fractional sequence",
      () => ({ ...w.good, sequence: 5.5 }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: non-integer number 5\.5 at sequence$/,
    ],
    [
      "a negative size",
      () => {
        const m = structuredClone(w.good);
        m.artifacts.kernel!.size_bytes = -1;
        return m;
      },
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: artifacts\.kernel\.size_bytes is not a size$/,
    ],
    [
      "a hash that is not sha256:<hex>",
      () => {
        const m = structuredClone(w.good);
        m.artifacts.kernel!.hash = "md5:abc";
        return m;
      },
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: artifacts\.kernel\.hash is not sha256:<64 hex>$/,
    ],
    [
      "a file name with a path in it",
      () =>
        resigned(w, [w.a], {
          artifacts: { kernel: artifactEntry("../../etc/passwd", KERNEL, "/k") },
        }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: artifacts\.kernel\.filename is not a plain file name$/,
    ],
    [
      "two artifacts with one file name",
      () =>
        resigned(w, [w.a], {
          artifacts: {
            kernel: artifactEntry("boot.img", KERNEL, "/k"),
            initramfs: artifactEntry("boot.img", KERNEL, "/i"),
          },
        }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: artifacts kernel and initramfs share the filename 'boot\.img'$/,
    ],
    [
      "a download_url that is not http(s)",
      () =>
        resigned(w, [w.a], {
          artifacts: { kernel: artifactEntry("vmlinuz", KERNEL, "file:///etc/passwd") },
        }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: artifacts\.kernel\.download_url 'file:\/\/\/etc\/passwd' is not http\(s\)$/,
    ],
    [
      "a calendar date that does not exist",
      () => resigned(w, [w.a], { created_at: "2026-02-30T00:00:00Z" }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: created_at '2026-02-30T00:00:00Z' is not a real date and time$/,
    ],
    [
      "an expiry month 13 (which would never expire)",
      () => resigned(w, [w.a], { expires_at: "2099-13-01T00:00:00Z" }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: expires_at '2099-13-01T00:00:00Z' is not a real date and time$/,
    ],
    [
      "a time that is not RFC 3339 UTC",
      () => ({ ...w.good, expires_at: "2099-01-01 00:00:00+02:00" }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: expires_at is not an RFC 3339 UTC time$/,
    ],
    [
      "a signature algorithm other than ed25519",
      () => withSig(w.good, (s) => s.algorithm = "rsa"),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: signatures\[0\]\.algorithm is not ed25519$/,
    ],
    [
      "a key_id that is not a key",
      () => withSig(w.good, (s) => s.key_id = "zz"),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: signatures\[0\]\.key_id is not a 32-byte hex key$/,
    ],
    [
      "a signature of the wrong length",
      () => withSig(w.good, (s) => s.signature = "ab"),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: signatures\[0\]\.signature is not 64 bytes of hex$/,
    ],
    [
      "signatures that are not a list",
      () => ({ ...w.good, signatures: {} }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: signatures is not an array$/,
    ],
    [
      "a float anywhere in the signed content",
      () => ({ ...w.good, extra: 1.5 }),
      [],
      1,
      /^verify manifest: error: Cannot accept manifest: malformed: non-integer number 1\.5 at extra$/,
    ],
  ];
  for (const [name, make, args, code, message] of cases) {
    await t.step(`refuses ${name}`, async () => {
      const path = await w.write("bad", await make());
      const res = await verify(["manifest", path, "--trusted-keys", w.trusted, ...args]);
      assert.equal(res.code, code, res.err);
      assert.equal(res.out, "");
      assert.equal(res.err.split("\n").length, 2, `one line: ${res.err}`);
      assert.match(res.err.trim(), message);
    });
  }
});

Deno.test("verify manifest needs two distinct trusted keys for --threshold 2", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const both = await resigned(w, [w.a, w.b], {});
  const res = await verifyManifest(w, both, { args: ["--threshold", "2"] });
  assert.equal(res.code, 0, res.err);
  assert.match(res.out, /: 2 trusted signature\(s\), threshold 2,/);
});

Deno.test("verify manifest --state refuses a rollback and records the highest sequence atomically", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const state = `${tmp.path}/state/boot-state.json`;
  await Deno.mkdir(`${tmp.path}/state`);
  const run = async (sequence: number) =>
    await verifyManifest(w, await resigned(w, [w.a], { sequence }), {
      args: ["--state", state],
      write: `${tmp.path}/state`,
    });
  const recorded = async () =>
    JSON.parse(await Deno.readTextFile(state)).accepted.stable.x86_64.sequence;

  assert.equal((await run(5)).code, 0);
  assert.equal(await recorded(), 5);
  assert.equal((await run(7)).code, 0);
  assert.equal(await recorded(), 7);
  assert.equal((await run(7)).code, 0, "the same sequence again is not a rollback");
  const back = await run(6);
  assert.equal(back.code, 1);
  assert.equal(
    back.err,
    "verify manifest: error: Cannot accept manifest: sequence 6 is lower than the last accepted 7 (rollback)\n",
  );
  assert.equal(await recorded(), 7);
  const files = [];
  for await (const e of Deno.readDir(`${tmp.path}/state`)) files.push(e.name);
  assert.deepEqual(files, ["boot-state.json"], "no temporary files left");

  // Another channel has its own sequence.
  const beta = await verifyManifest(w, await resigned(w, [w.a], { sequence: 1, channel: "beta" }), {
    args: ["--state", state],
    write: `${tmp.path}/state`,
  });
  assert.equal(beta.code, 0, beta.err);

  await Deno.writeTextFile(state, "{ torn");
  const torn = await run(8);
  assert.equal(torn.code, 2);
  assert.match(
    torn.err,
    /^verify manifest: error: Cannot read state file '.*boot-state\.json': not JSON \(delete it only on purpose\)\n$/,
  );
});

Deno.test("verify manifest --state without write access names the flag it needs", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const res = await verifyManifest(w, w.good, { args: ["--state", `${tmp.path}/s.json`] });
  assert.equal(res.code, 2);
  assert.equal(
    res.err,
    `verify manifest: error: Cannot use --state '${tmp.path}/s.json': run with --allow-write=${tmp.path}\n`,
  );
});

Deno.test("verify manifest --artifacts checks the size and sha256 of each file", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const m = await w.write("m", w.good);
  const dir = `${tmp.path}/boot`;
  await Deno.mkdir(dir);
  const run = () => verify(["manifest", m, "--trusted-keys", w.trusted, "--artifacts", dir]);

  const missing = await run();
  assert.equal(missing.code, 1);
  assert.equal(
    missing.err,
    `verify manifest: error: Cannot check 'kernel': file '${dir}/vmlinuz' not found\n`,
  );

  await Deno.writeFile(`${dir}/vmlinuz`, KERNEL.subarray(1));
  const short = await run();
  assert.equal(short.code, 1);
  assert.equal(
    short.err,
    `verify manifest: error: Cannot accept 'kernel': size mismatch: expected ${KERNEL.length} bytes, got ${
      KERNEL.length - 1
    }\n`,
  );

  const flipped = KERNEL.slice();
  flipped[3]! ^= 1;
  await Deno.writeFile(`${dir}/vmlinuz`, flipped);
  const bad = await run();
  assert.equal(bad.code, 1);
  assert.equal(
    bad.err,
    `verify manifest: error: Cannot accept 'kernel': sha256 mismatch: expected ${
      sha256Tag(KERNEL)
    }, got ${sha256Tag(flipped)}\n`,
  );

  await Deno.writeFile(`${dir}/vmlinuz`, KERNEL);
  const ok = await run();
  assert.equal(ok.code, 0, ok.err);
  assert.match(
    ok.out,
    new RegExp(`^OK kernel ${dir}/vmlinuz ${KERNEL.length} bytes ${sha256Tag(KERNEL)}$`, "m"),
  );
});

Deno.test("verify manifest refuses unusable trusted-keys files and bad flags", async () => {
  await using tmp = await tempDir();
  const w = await world(tmp.path);
  const m = await w.write("m", w.good);
  await Deno.writeTextFile(`${tmp.path}/empty`, "# nobody\n");
  await Deno.writeTextFile(`${tmp.path}/broken`, `${toHex(w.a.publicKey)}\nnot-a-key\n`);
  const empty = await verify(["manifest", m, "--trusted-keys", `${tmp.path}/empty`]);
  assert.equal(empty.code, 2);
  assert.equal(
    empty.err,
    "verify manifest: error: Cannot verify manifest: no trusted keys given\n",
  );
  const broken = await verify(["manifest", m, "--trusted-keys", `${tmp.path}/broken`]);
  assert.equal(broken.code, 2);
  assert.equal(
    broken.err,
    `verify manifest: error: Cannot read trusted keys '${tmp.path}/broken': line 2 is not a 32-byte hex key: 'not-a-key'\n`,
  );
  const none = await verify(["manifest", m, "--trusted-keys", `${tmp.path}/none`]);
  assert.equal(none.code, 2);
  assert.equal(
    none.err,
    `verify manifest: error: Cannot read trusted keys '${tmp.path}/none': no such file\n`,
  );
  const zero = await verify(["manifest", m, "--trusted-keys", w.trusted, "--threshold", "0"]);
  assert.equal(zero.code, 2);
  assert.equal(
    zero.err,
    "verify manifest: Cannot verify manifest: --threshold must be a whole number >= 1 (see verify manifest --help)\n",
  );
  const noKeys = await verify(["manifest", m]);
  assert.equal(noKeys.code, 2);
  assert.equal(
    noKeys.err,
    "verify manifest: Cannot verify manifest: --trusted-keys FILE is required (see verify manifest --help)\n",
  );
});

Deno.test("verify artifact checks one file against a hash and size", async () => {
  await using tmp = await tempDir();
  const path = `${tmp.path}/blob`;
  await Deno.writeFile(path, KERNEL);
  const ok = await verify([
    "artifact",
    path,
    "--hash",
    sha256Tag(KERNEL),
    "--size",
    `${KERNEL.length}`,
  ]);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(ok.out, `OK ${path} ${KERNEL.length} bytes ${sha256Tag(KERNEL)}\n`);
  const bad = await verify(["artifact", path, "--hash", sha256Tag("other"), "--size", "3"]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.err,
    `verify artifact: error: Cannot accept '${path}': size mismatch: expected 3 bytes, got ${KERNEL.length}; sha256 mismatch: expected ${
      sha256Tag("other")
    }, got ${sha256Tag(KERNEL)}\n`,
  );
  const usage = await verify(["artifact", path, "--hash", "abc"]);
  assert.equal(usage.code, 2);
  const unknown = await verify(["nothing"]);
  assert.equal(unknown.code, 2);
  assert.equal(
    unknown.err,
    "verify: Cannot verify 'nothing': unknown kind (manifest, artifact or receipt) (see verify --help)\n",
  );
});
