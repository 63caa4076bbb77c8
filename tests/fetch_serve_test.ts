/**
 * `fetch` end to end against the project's real provider, `cli/serve.ts`, run as its own
 * process: the deno.json `fetch` task's exact flags, resume, state, `--only`, failover when a
 * provider process is killed mid-download, parallel ranges from two providers, a tampering proxy
 * and SIGINT.
 */
import assert from "node:assert/strict";
import { fetchArtifacts } from "../provider/fetch_artifacts.ts";
import { sha256Tag } from "../runtime/digest.ts";
import { runTask, taskArgs } from "./_task.ts";
import {
  fetchArgs,
  pseudoRandomBytes,
  publisher,
  startServe,
  startServer,
  tempDir,
  type TestServer,
} from "./fetch_testlib.ts";

const ROOT = new URL("../", import.meta.url);

async function setup(dir: string, kernelSize: number) {
  const keys = await publisher(dir, "release");
  const art = `${dir}/art/stable/x86_64`;
  await Deno.mkdir(art, { recursive: true });
  const kernel = pseudoRandomBytes(kernelSize, 3);
  const initramfs = pseudoRandomBytes(70_000, 4);
  await Deno.writeFile(`${art}/kernel`, kernel);
  await Deno.writeFile(`${art}/initramfs`, initramfs);
  return { keys, art: `${dir}/art`, kernel, initramfs };
}

async function names(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(path)) out.push(e.name);
  return out.sort();
}

/** Runs `fetch ARGS --only kernel --json`, which must succeed; its report on the kernel. */
async function fetchKernel(args: string[]) {
  const res = await runTask("fetch", [...args, "--only", "kernel", "--json"]);
  assert.equal(res.code, 0, res.err);
  return JSON.parse(res.out).artifacts[0];
}

/** `out` holds the verified `kernel` and nothing else: no `.part`, no other artifact. */
async function assertOnlyKernel(out: string, kernel: Uint8Array): Promise<void> {
  assert.deepEqual(await Deno.readFile(`${out}/kernel`), kernel);
  assert.deepEqual(await names(out), ["kernel"]);
}

/** A proxy in front of `target` that can rewrite artifact bodies. */
function proxy(
  target: string,
  transform: (body: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>,
): TestServer {
  return startServer(async (req) => {
    const url = new URL(req.url);
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    const range = req.headers.get("range");
    if (range) headers.range = range;
    const res = await fetch(new URL(url.pathname.slice(1), target), { headers });
    const body = url.pathname.endsWith("manifest.json") || res.body === null
      ? res.body
      : transform(res.body);
    return new Response(body, { status: res.status, headers: res.headers });
  });
}

Deno.test("fetch downloads and verifies every artifact from the real provider and records the state", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel, initramfs } = await setup(dir.path, 3 << 20);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  const served = await (await fetch(`${serve.url}manifest.json`)).json();
  const out = `${dir.path}/out`;
  const state = `${dir.path}/client-state.json`;
  const args = fetchArgs([serve.url], out, keys.trustedKeysFile);

  const first = await runTask("fetch", [...args, "--state", state, "--json"]);
  assert.equal(first.code, 0, first.err);
  assert.equal(first.err, "", "--json prints no progress");
  const result = JSON.parse(first.out);
  assert.equal(result.ok, true);
  assert.equal(result.manifest.sequence, served.sequence);
  assert.deepEqual(
    result.artifacts.map((a: { name: string; status: string }) => [a.name, a.status]),
    [
      ["initramfs", "downloaded"],
      ["kernel", "downloaded"],
    ],
  );
  assert.deepEqual(await names(out), ["initramfs", "kernel"]);
  assert.deepEqual(await Deno.readFile(`${out}/kernel`), kernel);
  assert.deepEqual(await Deno.readFile(`${out}/initramfs`), initramfs);
  const saved = JSON.parse(await Deno.readTextFile(state));
  assert.equal(saved.accepted.stable.x86_64.sequence, served.sequence);

  const again = await runTask("fetch", [...args, "--state", state]);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /kernel: already present sha256:/);
  assert.match(
    again.err,
    /^OK stable\/x86_64 version .* sequence \d+ from http:\/\/127\.0\.0\.1:\d+\/: 2 artifact\(s\)/m,
  );

  const only = await runTask("fetch", [
    ...fetchArgs([serve.url], `${dir.path}/only`, keys.trustedKeysFile),
    "--only",
    "kernel",
  ]);
  assert.equal(only.code, 0, only.err);
  assert.deepEqual(await names(`${dir.path}/only`), ["kernel"]);
  // Not a terminal: plain progress lines, no bar.
  assert.match(
    only.err,
    /^Fetching kernel \(3\.0 MiB\) from http:\/\/127\.0\.0\.1:\d+\/stable\/x86_64\/kernel$/m,
  );
  assert.match(only.err, /^kernel: verified sha256:[0-9a-f]{64}$/m);
  assert.ok(!only.err.includes("\r") && !only.err.includes("\u001b["), "no terminal control codes");

  const unknown = await runTask("fetch", [...args, "--only", "rootfs"]);
  assert.equal(unknown.code, 2);
  assert.match(
    unknown.err,
    /^fetch: error: Cannot select artifact 'rootfs': not in the manifest \(has: initramfs, kernel\)$/m,
  );
});

Deno.test("fetch refuses a manifest whose sequence is below the recorded one", async () => {
  await using dir = await tempDir();
  const { keys, art } = await setup(dir.path, 1000);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  const served = await (await fetch(`${serve.url}manifest.json`)).json();
  const state = `${dir.path}/client-state.json`;
  await Deno.writeTextFile(
    state,
    JSON.stringify({
      state_version: 1,
      accepted: {
        stable: {
          x86_64: {
            sequence: served.sequence + 1,
            version: "x",
            accepted_at: "2026-01-01T00:00:00Z",
          },
        },
      },
    }),
  );
  const res = await runTask("fetch", [
    ...fetchArgs([serve.url], `${dir.path}/out`, keys.trustedKeysFile),
    "--state",
    state,
  ]);
  assert.equal(res.code, 1);
  const lines = res.err.trim().split("\n");
  assert.match(
    lines.at(-1)!,
    new RegExp(
      `^fetch: error: Cannot fetch manifest: no provider served a manifest that verifies \\(http://127.0.0.1:\\d+/: Cannot accept manifest: sequence ${served.sequence} is lower than the last accepted ${
        served.sequence + 1
      } \\(rollback\\)\\)$`,
    ),
  );
});

Deno.test("fetch resumes a .part left by an earlier run with Range", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 2 << 20);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  const out = `${dir.path}/out`;
  await Deno.mkdir(out);
  await Deno.writeFile(`${out}/kernel.part`, kernel.subarray(0, 777_777));
  const kernelResult = await fetchKernel(fetchArgs([serve.url], out, keys.trustedKeysFile));
  assert.equal(kernelResult.resumed_from, 777_777);
  await assertOnlyKernel(out, kernel);
});

Deno.test("fetch reports a tampered artifact in one line and leaves neither file nor part", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 1 << 20);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  let flipped = false;
  await using evil = proxy(
    serve.url,
    (body) =>
      body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            if (!flipped && chunk.length > 0) {
              chunk = chunk.slice();
              chunk[0]! ^= 0x20;
              flipped = true;
            }
            controller.enqueue(chunk);
          },
        }),
      ),
  );
  const out = `${dir.path}/out`;
  const res = await runTask("fetch", [
    ...fetchArgs([evil.url], out, keys.trustedKeysFile),
    "--only",
    "kernel",
  ]);
  assert.equal(res.code, 1);
  const last = res.err.trim().split("\n").at(-1)!;
  assert.match(
    last,
    new RegExp(
      `^fetch: error: Cannot accept 'kernel': sha256 mismatch: expected ${
        sha256Tag(kernel)
      }, got sha256:[0-9a-f]{64}$`,
    ),
  );
  assert.deepEqual(await names(out), []);
});

Deno.test("fetchArtifacts() fails over when a real provider process is killed mid-download", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 48 << 20);
  await using a = await startServe(art, keys.keyFile, `${dir.path}/state-a`);
  await using b = await startServe(art, keys.keyFile, `${dir.path}/state-b`);
  for (const parallel of [false, true]) {
    const out = `${dir.path}/out-${parallel}`;
    const victim = parallel ? await startServe(art, keys.keyFile, `${dir.path}/state-v`) : a;
    const warnings: string[] = [];
    let killed = false;
    const result = await fetchArtifacts({
      providers: [victim.url, b.url],
      out,
      trustedKeys: [keys.publicKey],
      only: ["kernel"],
      retryDelayMs: 10,
      retries: 1,
      stallTimeoutMs: 2000,
      sync: false,
      parallelThreshold: parallel ? 8 << 20 : Infinity,
      onProgress: (_name, received) => {
        if (!killed && received >= 4 << 20) {
          killed = true;
          victim.kill();
        }
      },
      onWarning: (w) => warnings.push(w),
    });
    await victim.kill();
    assert.ok(killed);
    const k = result.artifacts[0]!;
    assert.equal(k.parallel, parallel);
    assert.ok(k.sources.includes(`${b.url}stable/x86_64/kernel`), JSON.stringify(k.sources));
    assert.ok(warnings.some((w) => w.includes(victim.url)), warnings.join("\n"));
    await assertOnlyKernel(out, kernel);
  }
});

Deno.test("fetch splits a large artifact over two real providers", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 24 << 20);
  await using a = await startServe(art, keys.keyFile, `${dir.path}/state-a`);
  await using b = await startServe(art, keys.keyFile, `${dir.path}/state-b`);
  const out = `${dir.path}/out`;
  const k = await fetchKernel([
    ...fetchArgs([a.url, b.url], out, keys.trustedKeysFile),
    "--segment-size",
    "1MiB",
  ]);
  assert.equal(k.parallel, true);
  assert.deepEqual(
    k.sources.sort(),
    [`${a.url}stable/x86_64/kernel`, `${b.url}stable/x86_64/kernel`].sort(),
  );
  assert.deepEqual(await Deno.readFile(`${out}/kernel`), kernel);
});

Deno.test("fetch interrupted with SIGINT leaves only .part files, and the next run resumes", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 8 << 20);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  // A slow path to the provider: 128 KiB every 20 ms.
  await using slow = proxy(serve.url, (body) => {
    const reader = body.getReader();
    let pending = new Uint8Array(0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (pending.length < 128 << 10) {
          const { done, value } = await reader.read();
          if (done) break;
          const next = new Uint8Array(pending.length + value.length);
          next.set(pending);
          next.set(value, pending.length);
          pending = next;
        }
        if (pending.length === 0) return controller.close();
        await new Promise((r) => timer = setTimeout(r, 20));
        controller.enqueue(pending.slice(0, 128 << 10));
        pending = pending.slice(128 << 10);
      },
      async cancel(reason) {
        clearTimeout(timer);
        await reader.cancel(reason);
      },
    });
  });
  const out = `${dir.path}/out`;
  const child = new Deno.Command(Deno.execPath(), {
    args: await taskArgs("fetch", [
      ...fetchArgs([slow.url], out, keys.trustedKeysFile),
      "--only",
      "kernel",
    ]),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  for (let i = 0;; i++) {
    const size = await Deno.stat(`${out}/kernel.part`).then((s) => s.size, () => 0);
    if (size >= 1 << 20) break;
    assert.ok(i < 400, "the download started");
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGINT");
  const { code, stderr } = await output;
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 130, err);
  assert.match(
    err.trim().split("\n").at(-1)!,
    /^fetch: error: Interrupted: partial downloads kept as \.part files in /,
  );
  assert.deepEqual(await names(out), ["kernel.part"]);
  const partSize = (await Deno.stat(`${out}/kernel.part`)).size;
  assert.ok(partSize > 0 && partSize < kernel.length);

  const resumed = await fetchKernel(fetchArgs([serve.url], out, keys.trustedKeysFile));
  assert.equal(resumed.resumed_from, partSize);
  await assertOnlyKernel(out, kernel);
});

Deno.test("fetch runs with read and write narrowed to its paths, and names a missing grant", async () => {
  await using dir = await tempDir();
  const { keys, art, kernel } = await setup(dir.path, 100_000);
  await using serve = await startServe(art, keys.keyFile, `${dir.path}/serve-state`);
  const out = `${dir.path}/out`;
  const state = `${dir.path}/var/state.json`;
  await Deno.mkdir(`${dir.path}/var`);
  const run = async (flags: string[]) => {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        ...flags,
        new URL("cli/fetch.ts", ROOT).pathname,
        ...fetchArgs([serve.url], out, keys.trustedKeysFile),
        "--state",
        state,
      ],
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
    }).output();
    return { code, err: new TextDecoder().decode(stderr) };
  };
  const narrow = await run([
    "--allow-net=127.0.0.1",
    `--allow-read=${out},${keys.trustedKeysFile},${dir.path}/var`,
    `--allow-write=${out},${dir.path}/var`,
  ]);
  assert.equal(narrow.code, 0, narrow.err);
  assert.deepEqual(await Deno.readFile(`${out}/kernel`), kernel);
  assert.deepEqual(await names(`${dir.path}/var`), ["state.json"]);

  const noState = await run([
    "--allow-net=127.0.0.1",
    `--allow-read=${out},${keys.trustedKeysFile},${dir.path}/var`,
    `--allow-write=${out}`,
  ]);
  assert.equal(noState.code, 2);
  assert.equal(
    noState.err,
    `fetch: error: Cannot use '${state}': run with --allow-write=${dir.path}/var\n`,
  );
});
