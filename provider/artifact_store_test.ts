import assert from "node:assert/strict";
import { ArtifactStore, PROVIDER_STATE_FILE } from "./artifact_store.ts";
import { bootManifestSignedBytes, verifyBootManifest } from "./boot_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { sha256Tag } from "../runtime/digest.ts";
import { dirname } from "node:path";
import { withTempDir } from "../tests/_temp_dir.ts";
import { concatBytes } from "../util/concat_bytes.ts";

const SEED = new Uint8Array(32).fill(7);

const withDir = <T>(fn: (dir: string) => Promise<T>): Promise<T> => withTempDir("plasm-store-", fn);

async function put(path: string, data: string | Uint8Array, mtimeSeconds?: number) {
  await Deno.mkdir(dirname(path), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
  if (mtimeSeconds !== undefined) await Deno.utime(path, mtimeSeconds, mtimeSeconds);
}

/** Replace a file the way deployments do: write a new file, rename it over the old one. */
async function replace(path: string, data: string, mtimeSeconds?: number) {
  await put(`${path}.new`, data, mtimeSeconds);
  await Deno.rename(`${path}.new`, path);
}

const fixedNow = (iso: string) => () => new Date(iso);

Deno.test("ArtifactStore.scan() maps vmlinuz, initrd.img and rootfs.squashfs to canonical names", async () => {
  await withDir(async (dir) => {
    await put(`${dir}/stable/x86_64/vmlinuz`, "K");
    await put(`${dir}/stable/x86_64/initrd.img`, "II");
    await put(`${dir}/stable/x86_64/rootfs.squashfs`, "RRR");
    await put(`${dir}/stable/x86_64/notes.txt`, "ignored");
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    const set = (await store.scan("stable", "x86_64"))!;
    assert.deepEqual(
      set.artifacts.map((a) => [a.name, a.filename, a.size, a.hash]),
      [
        ["initramfs", "initrd.img", 2, sha256Tag("II")],
        ["kernel", "vmlinuz", 1, sha256Tag("K")],
        ["rootfs", "rootfs.squashfs", 3, sha256Tag("RRR")],
      ],
    );
    assert.equal(await store.scan("stable", "arm64"), undefined);
    assert.equal(await store.scan("..", "x86_64"), undefined);
    assert.deepEqual(await store.channels(), [{ channel: "stable", arch: "x86_64" }]);
  });
});

Deno.test("ArtifactStore.scan() prefers the canonical file name over an alias", async () => {
  await withDir(async (dir) => {
    await put(`${dir}/stable/x86_64/bzImage`, "alias");
    await put(`${dir}/stable/x86_64/kernel`, "canonical");
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    const set = (await store.scan("stable", "x86_64"))!;
    assert.equal(set.artifacts.length, 1);
    assert.equal(set.artifacts[0]!.filename, "kernel");
    assert.equal(set.artifacts[0]!.hash, sha256Tag("canonical"));
  });
});

Deno.test("ArtifactStore hashes a file once per version and recomputes after it is replaced", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stable/x86_64/kernel`;
    await put(path, "version one");
    // A clock ahead of the file's ctime: its hash is not too recent to keep (see _racy).
    const store = new ArtifactStore(dir, {
      keyPair: await generateKeyPair(SEED),
      now: () => new Date(Date.now() + 5000),
    });
    assert.equal(
      (await store.scan("stable", "x86_64"))!.artifacts[0]!.hash,
      sha256Tag("version one"),
    );
    await store.scan("stable", "x86_64");
    assert.equal(store.metrics().hashes_computed_total, 1);
    // Same size, same mtime as before: only the inode tells them apart.
    const before = await Deno.stat(path);
    await replace(path, "version two", before.mtime!.getTime() / 1000);
    assert.equal(
      (await store.scan("stable", "x86_64"))!.artifacts[0]!.hash,
      sha256Tag("version two"),
    );
    assert.equal(store.metrics().hashes_computed_total, 2);
  });
});

Deno.test("ArtifactStore notices an in-place rewrite with the same size and a reset mtime", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stable/x86_64/kernel`;
    await put(path, "AAAA", 1_700_000_000);
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    assert.equal((await store.scan("stable", "x86_64"))!.artifacts[0]!.hash, sha256Tag("AAAA"));
    await new Promise((r) => setTimeout(r, 1100)); // Deno reports ctime in whole seconds
    await put(path, "BBBB", 1_700_000_000); // same inode, size and mtime; ctime changes
    assert.equal((await store.scan("stable", "x86_64"))!.artifacts[0]!.hash, sha256Tag("BBBB"));
  });
});

Deno.test("ArtifactStore notices an in-place rewrite in the same second of ctime as the hash (same size, mtime put back)", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stable/x86_64/kernel`;
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    // Deno reports ctime in whole seconds: rewrite within the second the first version got, so
    // size, mtime, ctime and inode all look the same. Retried if a second boundary came between.
    for (let attempt = 0;; attempt++) {
      await put(path, "AAAA", 1_700_000_000);
      const before = (await Deno.stat(path)).ctime!.getTime();
      assert.equal(
        (await store.manifest("stable", "x86_64"))!.artifacts.kernel!.hash,
        sha256Tag("AAAA"),
      );
      await put(path, "BBBB", 1_700_000_000);
      if ((await Deno.stat(path)).ctime!.getTime() !== before && attempt < 5) continue;
      assert.equal(
        (await store.manifest("stable", "x86_64"))!.artifacts.kernel!.hash,
        sha256Tag("BBBB"),
      );
      using opened = (await store.open("stable", "x86_64", "kernel"))!;
      assert.equal(opened.entry.hash, sha256Tag("BBBB"));
      break;
    }
  });
});

Deno.test("ArtifactStore.open() serves and hashes exactly the file it opened", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stable/x86_64/initrd`;
    await put(path, "old initrd");
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    using opened = (await store.open("stable", "x86_64", "initramfs"))!;
    await replace(path, "new initrd!");
    assert.equal(opened.entry.hash, sha256Tag("old initrd"));
    assert.equal(opened.entry.filename, "initrd");
    assert.equal(new TextDecoder().decode(await readAll(opened.file)), "old initrd");
    using fresh = (await store.open("stable", "x86_64", "initrd"))!;
    assert.equal(fresh.entry.hash, sha256Tag("new initrd!"));
    assert.equal(await store.open("stable", "x86_64", "passwd"), undefined);
    assert.equal(await store.open("stable", "x86_64", "rootfs"), undefined);
  });
});

Deno.test("ArtifactStore ignores a symlinked artifact that points outside the artifacts dir", async () => {
  await withDir(async (dir) => {
    await put(`${dir}/secret`, "do not serve");
    await put(`${dir}/art/stable/x86_64/initrd`, "inside");
    await Deno.symlink(`${dir}/secret`, `${dir}/art/stable/x86_64/kernel`);
    await Deno.symlink(`${dir}/art/stable/x86_64/initrd`, `${dir}/art/stable/x86_64/rootfs`);
    const store = new ArtifactStore(`${dir}/art`, { keyPair: await generateKeyPair(SEED) });
    const set = (await store.scan("stable", "x86_64"))!;
    assert.deepEqual(set.artifacts.map((a) => a.name), ["initramfs", "rootfs"]);
    assert.equal(await store.open("stable", "x86_64", "kernel"), undefined);
  });
});

Deno.test("ArtifactStore.manifest() is signed, verifies, and gives the same bytes for the same artifacts, key and day", async () => {
  await withDir(async (dir) => {
    await put(`${dir}/stable/x86_64/kernel`, "K", 1_790_000_000);
    await put(`${dir}/stable/x86_64/initramfs`, "I", 1_790_000_500);
    await put(`${dir}/stable/x86_64/cmdline`, "console=ttyS0\n");
    await put(`${dir}/stable/x86_64/VERSION`, "2026.11.1\nnotes\n");
    const keyPair = await generateKeyPair(SEED);
    const a = new ArtifactStore(dir, { keyPair, now: fixedNow("2026-11-24T10:00:00Z") });
    const b = new ArtifactStore(dir, { keyPair, now: fixedNow("2026-11-24T23:59:59Z") });
    const ma = (await a.manifest("stable", "x86_64"))!;
    const mb = (await b.manifest("stable", "x86_64"))!;
    assert.deepEqual(bootManifestSignedBytes({ ...ma }), bootManifestSignedBytes({ ...mb }));
    assert.deepEqual(ma.signatures, mb.signatures);
    assert.equal(ma.created_at, "2026-11-24T00:00:00Z");
    assert.equal(ma.expires_at, "2026-12-24T00:00:00Z");
    assert.equal(ma.sequence, 1_790_000_500);
    assert.equal(ma.version, "2026.11.1");
    assert.equal(ma.cmdline, "console=ttyS0");
    assert.deepEqual(ma.artifacts.initramfs, {
      filename: "initramfs",
      size_bytes: 1,
      hash: sha256Tag("I"),
      download_url: "/stable/x86_64/initramfs",
    });
    await verifyBootManifest(ma, {
      trustedKeys: [keyPair.publicKey],
      now: new Date("2026-12-23T23:59:59Z"),
    });
    await assert.rejects(
      verifyBootManifest(ma, {
        trustedKeys: [keyPair.publicKey],
        now: new Date("2026-12-24T00:00:00Z"),
      }),
      /expired/,
    );
  });
});

Deno.test("ArtifactStore.manifest() is never expired, even for files last changed years ago", async () => {
  await withDir(async (dir) => {
    await put(`${dir}/stable/x86_64/kernel`, "old", 1_000_000_000); // 2001
    const keyPair = await generateKeyPair(SEED);
    const now = new Date("2026-11-24T20:00:00Z");
    const store = new ArtifactStore(dir, { keyPair, validityDays: 1, now: () => now });
    const m = (await store.manifest("stable", "x86_64"))!;
    assert.ok(Date.parse(m.expires_at) > now.getTime());
    await verifyBootManifest(m, { trustedKeys: [keyPair.publicKey], now });
  });
});

Deno.test("ArtifactStore.manifest() raises the sequence when content changes and keeps it across restarts", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/art/stable/x86_64/kernel`;
    const stateDir = `${dir}/state`;
    await put(path, "one", 1_000);
    const keyPair = await generateKeyPair(SEED);
    const first = new ArtifactStore(`${dir}/art`, { keyPair, stateDir });
    const s1 = (await first.manifest("stable", "x86_64"))!.sequence;
    assert.equal(s1, 1_000);
    assert.equal((await first.manifest("stable", "x86_64"))!.sequence, s1, "unchanged content");
    // Replaced by a file with an *older* mtime: the sequence still goes up.
    await replace(path, "two", 500);
    const s2 = (await first.manifest("stable", "x86_64"))!.sequence;
    assert.equal(s2, s1 + 1);
    // A restart with the same content keeps the sequence; new content goes on from it.
    const second = new ArtifactStore(`${dir}/art`, { keyPair, stateDir });
    assert.equal((await second.manifest("stable", "x86_64"))!.sequence, s2);
    await replace(path, "three", 600);
    assert.equal((await second.manifest("stable", "x86_64"))!.sequence, s2 + 1);
    const state = JSON.parse(await Deno.readTextFile(`${stateDir}/${PROVIDER_STATE_FILE}`));
    assert.equal(state.channels["stable/x86_64"].sequence, s2 + 1);
    assert.equal((await Deno.stat(`${stateDir}/${PROVIDER_STATE_FILE}`)).mode! & 0o777, 0o600);
  });
});

Deno.test("ArtifactStore: concurrent callers share scans but none gets a scan older than its call", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stable/x86_64/kernel`;
    await put(path, "first");
    const store = new ArtifactStore(dir, { keyPair: await generateKeyPair(SEED) });
    const early = Array.from({ length: 10 }, () => store.scan("stable", "x86_64"));
    await replace(path, "second");
    const late = Array.from({ length: 10 }, () => store.scan("stable", "x86_64"));
    for (const set of await Promise.all(late)) {
      assert.equal(set!.artifacts[0]!.hash, sha256Tag("second"));
    }
    await Promise.all(early);
    // Each group of 10 synchronous callers needs at most two scans (one running, one queued).
    assert.ok(store.metrics().scans_total <= 4, `scans: ${store.metrics().scans_total}`);
  });
});

Deno.test("ArtifactStore refuses bad options with clear errors", async () => {
  const keyPair = await generateKeyPair(SEED);
  assert.throws(() => new ArtifactStore("", { keyPair }), /dir must be a non-empty path/);
  assert.throws(
    () => new ArtifactStore("/x", { keyPair, validityDays: 0 }),
    /validityDays must be a whole number from 1 to 3650, got 0/,
  );
  assert.throws(
    () =>
      new ArtifactStore("/x", {
        keyPair: { secretKey: new Uint8Array(3), publicKey: new Uint8Array(3) },
      }),
    /keyPair must hold 32-byte keys/,
  );
});

async function readAll(file: Deno.FsFile): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(1024);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concatBytes(chunks);
}
