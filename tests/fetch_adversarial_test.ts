/**
 * `downloadArtifact` / `fetchArtifacts` against misbehaving providers on 127.0.0.1: truncated
 * bodies, wrong Content-Length and Content-Range, stalls, redirect loops, tampered bytes,
 * servers that ignore Range, and bad manifests. The real provider never misbehaves, so these
 * servers are small Deno.serve handlers.
 */
import assert from "node:assert/strict";
import {
  ArtifactFetchError,
  downloadArtifact,
  type DownloadArtifactOptions,
  type DownloadResult,
} from "../provider/download_artifact.ts";
import { fetchArtifacts } from "../provider/fetch_artifacts.ts";
import { sha256Tag } from "../runtime/digest.ts";
import { DigestMismatchError } from "../runtime/errors.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import {
  artifactEntry,
  pseudoRandomBytes,
  rangeResponse,
  signedManifest,
  slowResponse,
  startServer,
  tempDir,
} from "./fetch_testlib.ts";

const FAST = { retryDelayMs: 5, stallTimeoutMs: 400, sync: false };
const BYTES = pseudoRandomBytes(300_000, 7);
const HASH = sha256Tag(BYTES);

/** `downloadArtifact()` of BYTES from `sources` into `<dir>/vmlinuz`, with the FAST timings. */
function download(
  dir: string,
  sources: string[],
  options: Partial<DownloadArtifactOptions> = {},
): Promise<DownloadResult> {
  return downloadArtifact("kernel", {
    ...FAST,
    sources,
    size: BYTES.length,
    hash: HASH,
    path: `${dir}/vmlinuz`,
    ...options,
  });
}

/** {@linkcode download}, and the warnings it gave. */
async function downloadWarned(dir: string, sources: string[]) {
  const warnings: string[] = [];
  const result = await download(dir, sources, { onWarning: (w) => warnings.push(w) });
  return { result, warnings };
}

/** `downloadArtifact()` of `bytes` into `<dir>/rootfs` in ranges of 256 KiB, with the FAST timings. */
function downloadRanges(
  bytes: Uint8Array,
  dir: string,
  options: Partial<DownloadArtifactOptions> & { sources: string[] },
): Promise<DownloadResult> {
  return downloadArtifact("rootfs", {
    ...FAST,
    parallelThreshold: 1 << 20,
    segmentSize: 256 << 10,
    size: bytes.length,
    hash: sha256Tag(bytes),
    path: `${dir}/rootfs`,
    ...options,
  });
}

/**
 * {@linkcode downloadRanges} of `bytes` from one server per handler (each at `<url>/r`), in a
 * temporary dir: what it returned, warned and wrote, the sources and each server's log.
 */
async function downloadRangesFrom(
  bytes: Uint8Array,
  handlers: ((req: Request) => Response)[],
) {
  await using dir = await tempDir();
  const servers = handlers.map((handler) => startServer(handler));
  try {
    const sources = servers.map((server) => `${server.url}/r`);
    const warnings: string[] = [];
    const result = await downloadRanges(bytes, dir.path, {
      sources,
      onWarning: (w) => warnings.push(w),
    });
    const written = await Deno.readFile(`${dir.path}/rootfs`);
    return { result, warnings, written, sources, logs: servers.map((server) => server.log) };
  } finally {
    for (const server of servers) await server.stop();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) names.push(e.name);
  return names.sort();
}

Deno.test("downloadArtifact() resumes with Range after a truncated response", async () => {
  let first = true;
  await using server = startServer((req) => {
    if (first && !req.headers.has("range")) {
      first = false;
      // Declares the whole size but dies after 100000 bytes.
      return slowResponse(BYTES, {
        failAfter: 100_000,
        headers: { "content-length": `${BYTES.length}` },
      });
    }
    return rangeResponse(req, BYTES);
  });
  await using dir = await tempDir();
  const { result, warnings } = await downloadWarned(dir.path, [`${server.url}/k`]);
  assert.equal(result.status, "downloaded");
  assert.deepEqual(await Deno.readFile(`${dir.path}/vmlinuz`), BYTES);
  assert.deepEqual(await listDir(dir.path), ["vmlinuz"]);
  assert.equal(server.log.length, 2);
  assert.match(server.log[1]!, /^GET \/k bytes=\d+-$/);
  assert.notEqual(server.log[1], "GET /k bytes=0-");
  assert.equal(warnings.length, 1);
});

Deno.test("downloadArtifact() keeps the .part and names the cause when every attempt is truncated", async () => {
  await using server = startServer((req) => {
    const start = Number(/bytes=(\d+)-/.exec(req.headers.get("range") ?? "")?.[1] ?? 0);
    const rest = BYTES.subarray(start);
    // Each response sends 1000 bytes, then dies.
    return slowResponse(rest, {
      failAfter: 1000,
      status: start > 0 ? 206 : 200,
      headers: start > 0
        ? { "content-range": `bytes ${start}-${BYTES.length - 1}/${BYTES.length}` }
        : {},
    });
  });
  await using dir = await tempDir();
  await assert.rejects(
    () =>
      download(dir.path, [`${server.url}/k`], {
        retries: 2,
      }),
    (error: Error) => {
      assert.ok(error instanceof ArtifactFetchError);
      assert.match(
        error.message,
        /^Cannot fetch 'kernel': every source failed: http:\/\/127\.0\.0\.1:\d+\/k: /,
      );
      assert.doesNotMatch(error.message, /\n/);
      return true;
    },
  );
  assert.deepEqual(await listDir(dir.path), ["vmlinuz.part"]);
  assert.equal((await Deno.stat(`${dir.path}/vmlinuz.part`)).size, 3000);
  assert.equal(server.log.length, 3);
});

Deno.test("downloadArtifact() refuses a wrong Content-Length and fails over", async () => {
  await using liar = startServer(() => new Response(BYTES.subarray(0, BYTES.length - 1)) // Content-Length: size - 1
  );
  await using good = startServer((req) => rangeResponse(req, BYTES));
  await using dir = await tempDir();
  const { result, warnings } = await downloadWarned(dir.path, [`${liar.url}/k`, `${good.url}/k`]);
  assert.deepEqual(result.sources, [`${good.url}/k`]);
  assert.match(warnings[0]!, /wrong Content-Length 299999, expected 300000; dropping this source/);
  assert.equal(liar.log.length, 1, "a source that declares the wrong size is not retried");
});

Deno.test("downloadArtifact() refuses a wrong Content-Range when resuming", async () => {
  await using server = startServer((req) => {
    const res = rangeResponse(req, BYTES);
    if (res.status !== 206) return res;
    return new Response(res.body, {
      status: 206,
      headers: { "content-range": `bytes 0-${BYTES.length - 1}/${BYTES.length}` },
    });
  });
  await using dir = await tempDir();
  await Deno.writeFile(`${dir.path}/vmlinuz.part`, BYTES.subarray(0, 5000));
  await assert.rejects(
    () => download(dir.path, [`${server.url}/k`]),
    /wrong Content-Range 'bytes 0-299999\/300000', expected 'bytes 5000-299999\/300000'/,
  );
  assert.equal(await exists(`${dir.path}/vmlinuz`), false);
});

Deno.test("downloadArtifact() abandons a stalled provider after the stall timeout and fails over", async () => {
  const stop = new AbortController();
  await using slow = startServer(() =>
    slowResponse(BYTES, { chunk: 1000, delayMs: 5_000, signal: stop.signal })
  );
  await using good = startServer((req) => rangeResponse(req, BYTES));
  await using dir = await tempDir();
  const warnings: string[] = [];
  const started = performance.now();
  try {
    const result = await download(dir.path, [`${slow.url}/k`, `${good.url}/k`], {
      stallTimeoutMs: 300,
      onWarning: (w) => warnings.push(w),
    });
    assert.equal(result.status, "downloaded");
  } finally {
    stop.abort();
  }
  assert.ok(performance.now() - started < 4000);
  assert.match(warnings[0]!, /stalled: no data for 300 ms/);
  assert.deepEqual(await Deno.readFile(`${dir.path}/vmlinuz`), BYTES);
});

Deno.test("downloadArtifact() reports a redirect loop in one line and does not follow it forever", async () => {
  await using server = startServer((req) => {
    const path = new URL(req.url).pathname;
    return new Response(null, { status: 302, headers: { location: path === "/a" ? "/b" : "/a" } });
  });
  await using dir = await tempDir();
  await assert.rejects(
    () => download(dir.path, [`${server.url}/a`]),
    (error: Error) => {
      assert.match(
        error.message,
        /redirect loop: http:\/\/127\.0\.0\.1:\d+\/a -> http:\/\/127\.0\.0\.1:\d+\/b -> http:\/\/127\.0\.0\.1:\d+\/a/,
      );
      assert.doesNotMatch(error.message, /\n/);
      return true;
    },
  );
  assert.equal(server.log.length, 2, "a loop is detected, not retried");
});

Deno.test("downloadArtifact() stops after maxRedirects and follows a good redirect chain", async () => {
  await using endless = startServer((req) => {
    const n = Number(new URL(req.url).pathname.slice(1));
    return new Response(null, { status: 301, headers: { location: `/${n + 1}` } });
  });
  await using good = startServer((req) => rangeResponse(req, BYTES));
  await using hop = startServer(() =>
    new Response(null, { status: 307, headers: { location: `${good.url}/k` } })
  );
  await using dir = await tempDir();
  await assert.rejects(
    () =>
      download(dir.path, [`${endless.url}/0`], {
        maxRedirects: 3,
      }),
    /too many redirects \(more than 3\)/,
  );
  assert.equal(endless.log.length, 4);
  const result = await download(dir.path, [`${hop.url}/k`]);
  assert.equal(result.status, "downloaded");
});

Deno.test("downloadArtifact() never renames tampered bytes and deletes the part", async () => {
  const tampered = BYTES.slice();
  tampered[150_000]! ^= 1;
  await using server = startServer((req) => rangeResponse(req, tampered));
  await using dir = await tempDir();
  await assert.rejects(
    () => download(dir.path, [`${server.url}/k`]),
    (error: Error) => {
      assert.ok(error instanceof DigestMismatchError);
      assert.equal(
        error.message,
        `Cannot accept 'kernel': sha256 mismatch: expected ${HASH}, got ${sha256Tag(tampered)}`,
      );
      return true;
    },
  );
  assert.deepEqual(await listDir(dir.path), []);
});

Deno.test("downloadArtifact() drops a provider serving tampered bytes and uses the next", async () => {
  const tampered = BYTES.slice();
  tampered[0]! ^= 0xff;
  await using bad = startServer((req) => rangeResponse(req, tampered));
  await using good = startServer((req) => rangeResponse(req, BYTES));
  await using dir = await tempDir();
  const { result, warnings } = await downloadWarned(dir.path, [`${bad.url}/k`, `${good.url}/k`]);
  assert.deepEqual(result.sources, [`${good.url}/k`]);
  assert.match(
    warnings.join("\n"),
    new RegExp(`Dropping ${bad.url}/k: served 'kernel' with sha256`),
  );
  assert.deepEqual(await Deno.readFile(`${dir.path}/vmlinuz`), BYTES);
});

Deno.test("downloadArtifact() starts over when a server ignores Range", async () => {
  await using server = startServer(() => new Response(BYTES));
  await using dir = await tempDir();
  await Deno.writeFile(`${dir.path}/vmlinuz.part`, BYTES.subarray(0, 1234));
  const { result, warnings } = await downloadWarned(dir.path, [`${server.url}/k`]);
  assert.equal(result.resumed_from, 1234);
  assert.match(warnings[0]!, /ignored the Range request; restarting 'kernel' from byte 0/);
  assert.deepEqual(await Deno.readFile(`${dir.path}/vmlinuz`), BYTES);
});

Deno.test("downloadArtifact() discards a .part that does not match and downloads again", async () => {
  await using server = startServer((req) => rangeResponse(req, BYTES));
  await using dir = await tempDir();
  await Deno.writeFile(`${dir.path}/vmlinuz.part`, new Uint8Array(5000)); // zeros: wrong prefix
  const { result, warnings } = await downloadWarned(dir.path, [`${server.url}/k`]);
  assert.equal(result.status, "downloaded");
  assert.match(warnings[0]!, /Discarding '.*vmlinuz\.part': it does not match the manifest/);
  assert.deepEqual(server.log, ["GET /k bytes=5000-", "GET /k"]);
  assert.deepEqual(await Deno.readFile(`${dir.path}/vmlinuz`), BYTES);
});

Deno.test("downloadArtifact() refuses a body longer than the signed size", async () => {
  const longer = new Uint8Array(BYTES.length + 10);
  longer.set(BYTES);
  await using server = startServer(() =>
    // No Content-Length: a chunked body that runs past the end.
    slowResponse(longer, { chunk: 100_000 })
  );
  await using dir = await tempDir();
  await assert.rejects(
    () => download(dir.path, [`${server.url}/k`]),
    /sent more than the 300000 bytes of 'kernel'/,
  );
  assert.equal(await exists(`${dir.path}/vmlinuz`), false);
});

Deno.test("downloadArtifact() refuses a compressed response", async () => {
  await using server = startServer(() =>
    new Response(BYTES, { headers: { "content-encoding": "br" } })
  );
  await using dir = await tempDir();
  await assert.rejects(
    () => download(dir.path, [`${server.url}/k`]),
    /unexpected Content-Encoding 'br'/,
  );
});

Deno.test("downloadArtifact() fails over from a 404 and retries a 503", async () => {
  let calls = 0;
  await using flaky = startServer((
    req,
  ) => (++calls === 1 ? new Response("busy", { status: 503 }) : rangeResponse(req, BYTES)));
  await using missing = startServer(() => new Response("no", { status: 404 }));
  await using dir = await tempDir();
  const result = await download(dir.path, [`${missing.url}/k`, `${flaky.url}/k`]);
  assert.deepEqual(result.sources, [`${flaky.url}/k`]);
  assert.equal(missing.log.length, 1);
  assert.equal(flaky.log.length, 2);
});

Deno.test("downloadArtifact() splits a large artifact over several providers and verifies it", async () => {
  const big = pseudoRandomBytes(3 << 20, 11);
  const split = await downloadRangesFrom(big, [
    (req) => rangeResponse(req, big),
    (req) => rangeResponse(req, big),
  ]);
  assert.equal(split.result.parallel, true);
  assert.deepEqual(split.written, big);
  const [a, b] = split.logs as [string[], string[]];
  assert.ok(a.length > 1 && b.length > 1, `${a.length} / ${b.length}`);
  assert.ok([...a, ...b].every((l) => /^GET \/r bytes=\d+-\d+$/.test(l)));
});

Deno.test("downloadArtifact() in parallel drops a provider without Range and a tampering one still fails the hash", async () => {
  const big = pseudoRandomBytes(2 << 20, 12);
  const good = (req: Request) => rangeResponse(req, big);
  const noRange = await downloadRangesFrom(big, [() => new Response(big), good]);
  assert.equal(noRange.result.status, "downloaded");
  assert.deepEqual(noRange.written, big);
  assert.match(
    noRange.warnings.join("\n"),
    /does not support Range requests; dropping this source/,
  );

  const tampered = big.slice();
  for (let i = 1000; i < tampered.length; i += 100_000) tampered[i]! ^= 1; // in every range
  const mixed = await downloadRangesFrom(big, [(req) => rangeResponse(req, tampered), good]);
  // The mixed parallel result fails the hash; one source at a time finds the good one.
  assert.match(mixed.warnings.join("\n"), /from parallel ranges: sha256 mismatch/);
  assert.deepEqual(mixed.result.sources.at(-1), mixed.sources[1]);
  assert.deepEqual(mixed.written, big);
});

Deno.test("downloadArtifact() in parallel asks another provider for a range a slow one holds", async () => {
  const big = pseudoRandomBytes(2 << 20, 13);
  const stop = new AbortController();
  let first = true;
  await using slow = startServer((req) => {
    if (first) {
      first = false; // The first range hangs forever.
      return slowResponse(big.subarray(0, 1000), {
        delayMs: 60_000,
        signal: stop.signal,
        status: 206,
        headers: { "content-range": `bytes 0-${(256 << 10) - 1}/${big.length}` },
      });
    }
    return rangeResponse(req, big);
  });
  await using good = startServer((req) => rangeResponse(req, big));
  await using dir = await tempDir();
  const started = performance.now();
  try {
    const result = await downloadRanges(big, dir.path, {
      stallTimeoutMs: 30_000,
      hedgeAfterMs: 200,
      sources: [`${slow.url}/r`, `${good.url}/r`],
    });
    assert.equal(result.parallel, true);
  } finally {
    stop.abort();
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 200 && elapsed < 10_000, `took ${elapsed} ms`);
  assert.ok(slow.log.length > 1, "the slow provider kept serving other ranges");
  assert.ok(good.log.includes(`GET /r bytes=0-${(256 << 10) - 1}`), "range 0 was asked of both");
  assert.deepEqual(await Deno.readFile(`${dir.path}/rootfs`), big);
});

Deno.test("fetchArtifacts() skips a provider whose manifest does not verify", async () => {
  const publisher = await generateKeyPair();
  const stranger = await generateKeyPair();
  const artifacts = { kernel: artifactEntry("vmlinuz", BYTES, "/stable/x86_64/kernel") };
  const good = await signedManifest([publisher], artifacts);
  const forged = await signedManifest([stranger], artifacts);
  const handler = (manifest: unknown) => (req: Request) =>
    new URL(req.url).pathname.endsWith("manifest.json")
      ? Response.json(manifest)
      : rangeResponse(req, BYTES);
  await using evil = startServer(handler(forged));
  await using honest = startServer(handler(good));
  await using dir = await tempDir();
  const warnings: string[] = [];
  const result = await fetchArtifacts({
    ...FAST,
    providers: [evil.url, honest.url],
    out: `${dir.path}/out`,
    trustedKeys: [publisher.publicKey],
    onWarning: (w) => warnings.push(w),
  });
  assert.equal(result.provider, honest.url);
  assert.match(
    warnings[0]!,
    new RegExp(`^Skipping provider ${evil.url}: Cannot accept manifest: signed by no trusted key`),
  );
  assert.deepEqual(await Deno.readFile(`${dir.path}/out/vmlinuz`), BYTES);
  // Artifacts may still come from the untrusted mirror: its bytes are checked against the hash.
  assert.deepEqual(result.artifacts[0]!.sources, [`${honest.url}/stable/x86_64/kernel`]);
});

Deno.test("fetchArtifacts() refuses a rolled-back, foreign-channel or expired manifest from every provider", async () => {
  const publisher = await generateKeyPair();
  const artifacts = { kernel: artifactEntry("vmlinuz", BYTES, "/stable/x86_64/kernel") };
  await using dir = await tempDir();
  const state = `${dir.path}/state.json`;
  await Deno.writeTextFile(
    state,
    JSON.stringify({
      state_version: 1,
      accepted: {
        stable: { x86_64: { sequence: 9, version: "9", accepted_at: "2026-01-01T00:00:00Z" } },
      },
    }),
  );
  const old = await signedManifest([publisher], artifacts, { sequence: 8 });
  const beta = await signedManifest([publisher], artifacts, { channel: "beta", sequence: 10 });
  const expired = await signedManifest([publisher], artifacts, {
    sequence: 11,
    expires_at: "2026-01-02T00:00:00Z",
  });
  const servers = [old, beta, expired].map((m) => startServer(() => Response.json(m)));
  try {
    await assert.rejects(
      () =>
        fetchArtifacts({
          ...FAST,
          providers: servers.map((s) => s.url),
          out: `${dir.path}/out`,
          trustedKeys: [publisher.publicKey],
          statePath: state,
        }),
      (error: Error) => {
        assert.match(
          error.message,
          /^Cannot fetch manifest: no provider served a manifest that verifies/,
        );
        assert.match(error.message, /sequence 8 is lower than the last accepted 9 \(rollback\)/);
        assert.match(error.message, /channel is 'beta', expected 'stable'/);
        assert.match(error.message, /expired at 2026-01-02T00:00:00Z/);
        return true;
      },
    );
  } finally {
    for (const s of servers) await s.stop();
  }
  assert.equal(await exists(`${dir.path}/out`), false);
});

Deno.test("fetchArtifacts() asks again for the manifest when a provider is briefly unavailable", async () => {
  const publisher = await generateKeyPair();
  const manifest = await signedManifest([publisher], {
    kernel: artifactEntry("vmlinuz", BYTES, "/stable/x86_64/kernel"),
  });
  let calls = 0;
  await using server = startServer((req) => {
    if (new URL(req.url).pathname.endsWith("manifest.json")) {
      return ++calls <= 2 ? new Response("starting", { status: 503 }) : Response.json(manifest);
    }
    return rangeResponse(req, BYTES);
  });
  await using dir = await tempDir();
  const warnings: string[] = [];
  const result = await fetchArtifacts({
    ...FAST,
    providers: [server.url],
    out: dir.path,
    trustedKeys: [publisher.publicKey],
    onWarning: (w) => warnings.push(w),
  });
  assert.equal(result.manifest.sequence, 5);
  assert.equal(calls, 3);
  assert.match(
    warnings[0]!,
    /Skipping provider .*: Cannot fetch '.*\/stable\/x86_64\/manifest\.json': HTTP 503 \(will retry\)$/,
  );

  calls = -100; // Never recovers: the error names the last reason.
  await using dir2 = await tempDir();
  await assert.rejects(
    () =>
      fetchArtifacts({
        ...FAST,
        retries: 1,
        providers: [server.url],
        out: dir2.path,
        trustedKeys: [publisher.publicKey],
      }),
    /^Error: Cannot fetch manifest: no provider served a manifest that verifies \(http:\/\/127\.0\.0\.1:\d+: Cannot fetch '.*': HTTP 503\)$/,
  );
  assert.equal(calls, -98, "one try and one retry");
});
