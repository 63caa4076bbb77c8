import assert from "node:assert/strict";
import { planKexec } from "./kexec_plan.ts";
import {
  type BootManifest,
  ManifestRejectedError,
  signBootManifest,
} from "../provider/boot_manifest.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import { DigestMismatchError } from "../runtime/errors.ts";

const FILES: Record<string, string> = { kernel: "kernel-bytes", initramfs: "initramfs-bytes" };

async function setup(
  edit: (m: BootManifest) => void = () => {},
  signer?: KeyPair,
): Promise<{ dir: string; keys: KeyPair; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir();
  const keys = await generateKeyPair();
  const manifest: BootManifest = {
    manifest_version: 1,
    version: "1",
    sequence: 7,
    channel: "stable",
    arch: "x86_64",
    created_at: "2026-01-01T00:00:00Z",
    expires_at: "2099-01-01T00:00:00Z",
    artifacts: {},
    cmdline: "quiet loglevel=3",
    signatures: [],
  };
  for (const [name, body] of Object.entries(FILES)) {
    await Deno.writeTextFile(`${dir}/${name}`, body);
    manifest.artifacts[name] = {
      filename: name,
      size_bytes: body.length,
      hash: sha256Tag(body),
      download_url: `/stable/x86_64/${name}`,
    };
  }
  edit(manifest);
  const signed = await signBootManifest(manifest, signer ?? keys);
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(signed));
  return {
    dir,
    keys,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const plan = (dir: string, keys: KeyPair, extra: Partial<Parameters<typeof planKexec>[0]> = {}) =>
  planKexec({
    dir,
    trustedKeys: `# test\n${toHex(keys.publicKey)} test\n`,
    channel: "stable",
    arch: "x86_64",
    ...extra,
  });

Deno.test("planKexec() returns the verified files and the manifest cmdline plus phase.*", async () => {
  await using s = await setup();
  const result = await plan(s.dir, s.keys, { append: " console=ttyS0 phase.mode=private " });
  assert.equal(result.kernel, `${s.dir}/kernel`);
  assert.equal(result.initrd, `${s.dir}/initramfs`);
  assert.equal(result.cmdline, "quiet loglevel=3 console=ttyS0 phase.mode=private");
  assert.equal(result.manifest.sequence, 7);
});

Deno.test("planKexec() records what it verified: manifest hash, sequence, trusted signers, artifact hashes, providers", async () => {
  await using s = await setup();
  const result = await plan(s.dir, s.keys, { providers: ["http://10.1.0.2:8080"] });
  assert.deepEqual(result.provenance, {
    provenance_version: 1,
    boot_manifest_hash: sha256Tag(await Deno.readFile(`${s.dir}/manifest.json`)),
    boot_sequence: 7,
    version: "1",
    channel: "stable",
    arch: "x86_64",
    signer_key_ids: [toHex(s.keys.publicKey)],
    artifacts: { kernel: sha256Tag(FILES.kernel!), initramfs: sha256Tag(FILES.initramfs!) },
    providers: ["http://10.1.0.2:8080"],
  });
});

Deno.test("phase-kexec-plan prints the provenance as a fourth line of JSON", async () => {
  await using s = await setup();
  await Deno.writeTextFile(`${s.dir}/keys`, toHex(s.keys.publicKey));
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", `--allow-read=${s.dir}`, new URL("./kexec_plan.ts", import.meta.url).pathname],
      ...["--dir", s.dir, "--trusted-keys", `${s.dir}/keys`, "--channel", "stable"],
      ...["--arch", "x86_64", "--provider", "http://a:1", "--provider", "http://b:2"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  assert.equal(lines.length, 5);
  assert.equal(lines[2], "quiet loglevel=3");
  const provenance = JSON.parse(lines[3]!);
  assert.equal(provenance.boot_sequence, 7);
  assert.deepEqual(provenance.providers, ["http://a:1", "http://b:2"]);
});

Deno.test("planKexec() refuses a kernel whose bytes changed after fetch", async () => {
  await using s = await setup();
  await Deno.writeTextFile(`${s.dir}/kernel`, "kernel-bytez");
  await assert.rejects(() => plan(s.dir, s.keys), DigestMismatchError);
});

Deno.test("planKexec() refuses an initramfs of the wrong size", async () => {
  await using s = await setup();
  await Deno.writeTextFile(`${s.dir}/initramfs`, "initramfs-bytes!");
  await assert.rejects(
    () => plan(s.dir, s.keys),
    /'initramfs': size mismatch: expected 15, got 16/,
  );
});

Deno.test("planKexec() refuses a manifest signed by an untrusted key", async () => {
  const other = await generateKeyPair();
  await using s = await setup(undefined, other);
  await assert.rejects(() => plan(s.dir, s.keys), /signed by no trusted key/);
});

Deno.test("planKexec() refuses an expired manifest", async () => {
  await using s = await setup((m) => m.expires_at = "2026-02-01T00:00:00Z");
  await assert.rejects(
    () => plan(s.dir, s.keys, { now: new Date("2026-03-01T00:00:00Z") }),
    (e) => e instanceof ManifestRejectedError && e.reason === "expired",
  );
});

Deno.test("planKexec() refuses a manifest edited after signing", async () => {
  await using s = await setup();
  const m = JSON.parse(await Deno.readTextFile(`${s.dir}/manifest.json`));
  m.cmdline = "init=/bin/sh";
  await Deno.writeTextFile(`${s.dir}/manifest.json`, JSON.stringify(m));
  await assert.rejects(() => plan(s.dir, s.keys), /bad signature by trusted key/);
});

Deno.test("planKexec() refuses a manifest for another channel or arch", async () => {
  await using s = await setup();
  await assert.rejects(
    () => plan(s.dir, s.keys, { channel: "beta" }),
    /channel 'stable', not 'beta'/,
  );
  await assert.rejects(
    () => plan(s.dir, s.keys, { arch: "aarch64" }),
    /arch 'x86_64', not 'aarch64'/,
  );
});

Deno.test("planKexec() refuses a manifest without an initramfs", async () => {
  await using s = await setup((m) => delete m.artifacts.initramfs);
  await assert.rejects(() => plan(s.dir, s.keys), /has no 'initramfs' artifact/);
});

Deno.test("planKexec() refuses a cmdline with a newline", async () => {
  await using s = await setup((m) => m.cmdline = "quiet\ninit=/x");
  await assert.rejects(() => plan(s.dir, s.keys), /cmdline contains a control character/);
  await using t = await setup();
  await assert.rejects(() => plan(t.dir, t.keys, { append: "a\nb" }), /control character/);
});

Deno.test("planKexec() fails clearly when the manifest is missing or not JSON", async () => {
  await using s = await setup();
  await Deno.writeTextFile(`${s.dir}/manifest.json`, "{nope");
  await assert.rejects(() => plan(s.dir, s.keys), SyntaxError);
  await Deno.remove(`${s.dir}/manifest.json`);
  await assert.rejects(() => plan(s.dir, s.keys), /Cannot read manifest/);
});

Deno.test("planKexec() refuses when no key is trusted", async () => {
  await using s = await setup();
  await assert.rejects(
    () => planKexec({ dir: s.dir, trustedKeys: "# none\n", channel: "stable", arch: "x86_64" }),
    /signed by no trusted key/,
  );
});

Deno.test("planKexec() reads the manifest strictly: a sequence given twice is refused", async () => {
  await using s = await setup();
  const path = `${s.dir}/manifest.json`;
  const text = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, text.replace('"sequence":7', '"sequence":1,"sequence":7'));
  await assert.rejects(() => plan(s.dir, s.keys), {
    name: "SyntaxError",
    message: `Cannot read manifest '${path}': duplicate key 'sequence' at top level`,
  });
});
