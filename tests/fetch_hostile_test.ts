/**
 * `fetch` as its own process (the deno.json task's exact flags) against hostile files and
 * providers: links planted in the output dir, providers that trickle bytes (for the manifest and
 * for an artifact) and a second fetch into the same dir.
 */
import assert from "node:assert/strict";
import { runTask, taskArgs } from "./_task.ts";
import {
  artifactEntry,
  fetchArgs,
  pseudoRandomBytes,
  publisher,
  signedManifest,
  slowResponse,
  startServer,
  tempDir,
} from "./fetch_testlib.ts";

const KERNEL = pseudoRandomBytes(3000, 7);

/** A key pair, a trusted-keys file and a manifest listing KERNEL as `vmlinuz`. */
async function setup(dir: string) {
  const keys = await publisher(dir, "release");
  const manifest = await signedManifest([keys], {
    kernel: artifactEntry("vmlinuz", KERNEL, "/stable/x86_64/kernel"),
  });
  return { keys, manifest, body: new TextEncoder().encode(JSON.stringify(manifest)) };
}

/** A provider serving `manifest` and KERNEL as every artifact. */
function serveKernel(manifest: unknown) {
  return startServer((req) =>
    req.url.endsWith("manifest.json") ? Response.json(manifest) : new Response(KERNEL)
  );
}

/** The error line: the last on stderr, after at most the progress line of the artifact. */
function lastLine(err: string): string {
  const lines = err.trimEnd().split("\n");
  assert.ok(lines.length <= 2, `expected at most two lines on stderr, got:\n${err}`);
  if (lines.length === 2) assert.match(lines[0]!, /^Fetching kernel /);
  return lines.at(-1)!;
}

/** Runs `fetch ARGS --no-fsync`, which must exit 1; its error line (see {@linkcode lastLine}). */
async function fetchFails(args: string[]): Promise<string> {
  const res = await runTask("fetch", [...args, "--no-fsync"]);
  assert.equal(res.code, 1, res.err);
  return lastLine(res.err);
}

function oneLine(err: string): string {
  const lines = err.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${err}`);
  return lines[0]!;
}

Deno.test("fetch refuses a symbolic link planted at OUT/vmlinuz.part in one line and leaves its target alone", async () => {
  await using tmp = await tempDir();
  const { keys, manifest } = await setup(tmp.path);
  await using server = serveKernel(manifest);
  const out = `${tmp.path}/out`;
  await Deno.mkdir(out);
  await Deno.writeTextFile(`${tmp.path}/victim`, "precious");
  await Deno.symlink(`${tmp.path}/victim`, `${out}/vmlinuz.part`);
  assert.equal(
    await fetchFails(fetchArgs([server.url], out, keys.trustedKeysFile)),
    `fetch: error: Cannot open '${out}/vmlinuz.part': it is a symbolic link, which is never followed`,
  );
  assert.equal(await Deno.readTextFile(`${tmp.path}/victim`), "precious");
  assert.equal((await Deno.lstat(`${out}/vmlinuz.part`)).isSymlink, true);
  await assert.rejects(Deno.lstat(`${out}/vmlinuz`), Deno.errors.NotFound);
});

Deno.test("fetch refuses a symbolic link planted at the final name or at the lock file", async () => {
  await using tmp = await tempDir();
  const { keys, manifest } = await setup(tmp.path);
  await using server = serveKernel(manifest);
  // The link names a file that already holds the right bytes: fetch must not take it as present.
  await Deno.writeFile(`${tmp.path}/elsewhere`, KERNEL);
  for (const name of ["vmlinuz", ".fetch.lock"]) {
    const out = `${tmp.path}/out-${name}`;
    await Deno.mkdir(out);
    await Deno.symlink(`${tmp.path}/elsewhere`, `${out}/${name}`);
    assert.match(
      await fetchFails(fetchArgs([server.url], out, keys.trustedKeysFile)),
      new RegExp(
        `^fetch: error: Cannot open '${out}/${name.replace(".", "\\.")}': it is a symbolic link`,
      ),
    );
    assert.deepEqual(await Deno.readFile(`${tmp.path}/elsewhere`), KERNEL);
  }
});

Deno.test("fetch treats an artifact trickled at 10 bytes/s as stalled and takes it from the next provider", async () => {
  await using tmp = await tempDir();
  const { keys, body } = await setup(tmp.path);
  const stop = new AbortController();
  // The slow provider serves the manifest at once (so it is the first source of the artifact),
  // then the artifact one byte every 100 ms: never silent for a whole --stall-timeout.
  await using slow = startServer((req) =>
    req.url.endsWith("manifest.json")
      ? new Response(body)
      : slowResponse(KERNEL, { chunk: 1, delayMs: 100, signal: stop.signal })
  );
  await using good = startServer((req) =>
    req.url.endsWith("manifest.json") ? new Response(body) : new Response(KERNEL)
  );
  try {
    const res = await runTask("fetch", [
      ...fetchArgs([slow.url, good.url], `${tmp.path}/out`, keys.trustedKeysFile),
      ...["--stall-timeout", "1s", "--json", "--no-fsync"],
    ]);
    assert.equal(res.code, 0, res.err);
    const report = JSON.parse(res.out);
    assert.equal(report.provider, slow.url);
    assert.deepEqual(report.artifacts[0].sources, [`${good.url}/stable/x86_64/kernel`]);
    assert.ok(
      report.warnings.some((w: string) =>
        w.startsWith(`Cannot fetch '${slow.url}/stable/x86_64/kernel': too slow: `) &&
        w.includes("below the floor of 16 KiB/s")
      ),
      JSON.stringify(report.warnings),
    );
    assert.deepEqual(await Deno.readFile(`${tmp.path}/out/vmlinuz`), KERNEL);
  } finally {
    stop.abort();
  }
});

Deno.test("fetch treats a manifest trickled at 10 bytes/s as stalled and asks the next provider", async () => {
  await using tmp = await tempDir();
  const { keys, body } = await setup(tmp.path);
  const stop = new AbortController();
  await using slow = startServer(() =>
    slowResponse(body, { chunk: 1, delayMs: 100, signal: stop.signal })
  );
  await using good = startServer((req) =>
    req.url.endsWith("manifest.json") ? new Response(body) : new Response(KERNEL)
  );
  try {
    const res = await runTask("fetch", [
      ...fetchArgs([slow.url, good.url], `${tmp.path}/out`, keys.trustedKeysFile),
      ...["--stall-timeout", "1s", "--min-rate", "1KiB/s", "--json", "--no-fsync"],
    ]);
    assert.equal(res.code, 0, res.err);
    const report = JSON.parse(res.out);
    assert.equal(report.provider, good.url);
    assert.match(report.warnings[0], /too slow: \d+ bytes in \d+ ms, below the floor of 1 KiB\/s/);
    assert.deepEqual(await Deno.readFile(`${tmp.path}/out/vmlinuz`), KERNEL);
  } finally {
    stop.abort();
  }
});

Deno.test("fetch --min-rate 0 turns the floor off, and a bad --min-rate is a usage error", async () => {
  await using tmp = await tempDir();
  const { keys } = await setup(tmp.path);
  const small = new Uint8Array(40);
  const manifest = await signedManifest([keys], {
    kernel: artifactEntry("vmlinuz", small, "/stable/x86_64/kernel"),
  });
  const stop = new AbortController();
  await using slow = startServer((req) =>
    req.url.endsWith("manifest.json")
      ? Response.json(manifest)
      : slowResponse(small, { chunk: 1, delayMs: 50, signal: stop.signal })
  );
  try {
    const res = await runTask("fetch", [
      ...fetchArgs([slow.url], `${tmp.path}/out`, keys.trustedKeysFile),
      ...["--stall-timeout", "1s", "--min-rate", "0", "--no-fsync"],
    ]);
    assert.equal(res.code, 0, res.err);
    const bad = await runTask("fetch", [
      ...fetchArgs([slow.url], `${tmp.path}/out`, keys.trustedKeysFile),
      ...["--min-rate", "fast"],
    ]);
    assert.equal(bad.code, 2);
    assert.match(oneLine(bad.err), /^fetch: Cannot fetch: Cannot parse size 'fast'/);
  } finally {
    stop.abort();
  }
});

Deno.test("a second fetch into the same dir fails in one line naming the first, which still succeeds", async () => {
  await using tmp = await tempDir();
  const { keys, body } = await setup(tmp.path);
  const requested = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  // The artifact's body waits until the second fetch has run, so the first holds the dir.
  await using server = startServer((req) => {
    if (req.url.endsWith("manifest.json")) return new Response(body);
    requested.resolve();
    return new Response(
      new ReadableStream<Uint8Array>({
        async start(controller) {
          await release.promise;
          controller.enqueue(KERNEL);
          controller.close();
        },
      }),
    );
  });
  const out = `${tmp.path}/out`;
  const args = fetchArgs([server.url], out, keys.trustedKeysFile);
  const first = new Deno.Command(Deno.execPath(), {
    args: await taskArgs("fetch", [...args, "--no-fsync"]),
    stdout: "piped",
    stderr: "piped",
    env: {},
  }).spawn();
  try {
    await requested.promise;
    const second = await runTask("fetch", [...args, "--no-fsync"]);
    assert.equal(second.code, 1, second.err);
    assert.equal(
      oneLine(second.err),
      `fetch: error: Cannot use output dir '${out}': fetch is already running there (PID ${first.pid})`,
    );
  } finally {
    release.resolve();
  }
  const done = await first.output();
  assert.equal(done.code, 0, new TextDecoder().decode(done.stderr));
  assert.deepEqual(await Deno.readFile(`${out}/vmlinuz`), KERNEL);
  // The lock is gone with the first fetch: nothing but the artifact is left.
  const names: string[] = [];
  for await (const e of Deno.readDir(out)) names.push(e.name);
  assert.deepEqual(names, ["vmlinuz"]);
});
