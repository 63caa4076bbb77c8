/**
 * Phase Boot end to end under qemu (TCG): the stub initramfs boots, finds the project's own
 * `serve` on the host (10.0.2.2 from inside the VM), fetches and verifies the manifest and the
 * artifacts, and kexecs into a second stage that prints a marker; a tampered kernel, an expired
 * manifest and an untrusted key each stop before kexec with the right one-line error; and the
 * self-hosting loop (a VM booted by the stub serves the next VM).
 *
 * Builds the images (`boot/build.ts`) when they are missing or older than their sources.
 * Skips only when qemu is not installed and CI is not set; with CI=true a missing qemu fails.
 * Runs one VM at a time.
 */
import assert from "node:assert/strict";
import { qemuAvailable, runVm, type RunVmOptions, type VmRun } from "../boot/qemu.ts";
import { runBootLoop } from "../boot/loop.ts";
import { VIRTIO_NET_MODULES } from "../boot/build.ts";
import { startServe as startServeProcess } from "./fetch_testlib.ts";
import {
  type BootFixture as Fixture,
  BUILD,
  prepareBootFixture as prepare,
  removeBootFixture,
  ROOT,
} from "./_boot_fixture.ts";

const VM_TIMEOUT_MS = 300_000;
const HAVE_QEMU = await qemuAvailable();
const IN_CI = Deno.env.get("CI") === "true";
if (!HAVE_QEMU && !IN_CI) {
  console.log(
    "boot_vm_test: SKIPPED: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)",
  );
}

Deno.test({
  name: "boot VM tests have qemu-system-x86_64 when CI=true",
  ignore: !IN_CI,
  fn() {
    assert.ok(HAVE_QEMU, "qemu-system-x86_64 is missing in CI: apt-get install qemu-system-x86");
  },
});

/**
 * Start the project's `serve` on 127.0.0.1 with an ephemeral port; `url` without the trailing
 * slash (`http://127.0.0.1:PORT`), as the provider URLs below are written.
 */
async function startServe(
  f: Fixture,
  key: string,
  args: string[] = [],
): Promise<{ url: string; stop(): Promise<void> }> {
  const state = await Deno.makeTempDir({ dir: f.dir, prefix: "serve-state-" });
  const serve = await startServeProcess(f.artifacts, key, state, { args });
  return { url: serve.url.replace(/\/$/, ""), stop: serve.stop };
}

/** A mirror that passes everything through but flips the first byte of the kernel. */
function startTamperingMirror(upstream: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const headers = new Headers();
    const range = req.headers.get("range");
    if (range) headers.set("range", range);
    const res = await fetch(`${upstream}${url.pathname}`, { method: req.method, headers });
    if (!url.pathname.endsWith("/kernel") || res.body === null) return res;
    let first = true;
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          if (first && chunk.length > 0) {
            chunk = chunk.slice();
            chunk[0] = chunk[0]! ^ 0xff;
            first = false;
          }
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: res.status, headers: res.headers });
  });
}

function stubAppend(provider: string, mode = "private"): string {
  return `console=ttyS0 panic=-1 phase.mode=${mode} phase.channel=stable ` +
    `phase.provider=${provider} phase.test=1`;
}

/** Boots the stub with `append` until it reaches the second stage or rescue. */
function bootStub(
  f: Fixture,
  append: string,
  options: Pick<RunVmOptions, "until" | "rtcBase"> = {},
): Promise<VmRun> {
  return runVm({
    kernel: f.kernel,
    initrd: f.initrd,
    append,
    until: /PHASE-BOOT-RESCUE|PHASE-SECOND-STAGE-OK/,
    timeoutMs: VM_TIMEOUT_MS,
    ...options,
  });
}

function vmFailure(run: VmRun): string {
  return `VM ended by ${run.ended} after ${run.ms} ms; console tail:\n` +
    run.output.split("\n").slice(-25).join("\n");
}

/** A failure case: the console shows the error line, the rescue marker, and no kexec. */
function assertStoppedBeforeKexec(run: VmRun, error: RegExp): void {
  assert.notEqual(run.ended, "timeout", vmFailure(run));
  assert.match(run.output, /PHASE-BOOT-RESCUE/, vmFailure(run));
  assert.match(run.output, error, vmFailure(run));
  const errors = run.output.split("\n").filter((l) => l.startsWith("phase-boot: error:"));
  assert.equal(errors.length, 1, `expected exactly one error line, got: ${errors.join(" / ")}`);
  console.log(errors[0]!.trim());
  assert.doesNotMatch(run.output, /phase-boot: \[[\d.]+\] kexec:/);
  assert.doesNotMatch(run.output, /kexec_core: Starting new kernel/);
  assert.doesNotMatch(run.output, /PHASE-SECOND-STAGE-OK/);
}

const vmTest = (name: string, fn: (f: Fixture) => Promise<void>) =>
  Deno.test({
    name,
    ignore: !HAVE_QEMU,
    async fn() {
      await fn(await prepare());
    },
  });

/** The files of a newc archive (regular files and symlinks), by path. */
function readCpio(bytes: Uint8Array): Map<string, { mode: number; data: Uint8Array }> {
  const text = new TextDecoder();
  const files = new Map<string, { mode: number; data: Uint8Array }>();
  let at = 0;
  while (at < bytes.length) {
    assert.equal(text.decode(bytes.subarray(at, at + 6)), "070701", `cpio header at ${at}`);
    const field = (i: number) =>
      parseInt(text.decode(bytes.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    const nameSize = field(11);
    const size = field(6);
    const name = text.decode(bytes.subarray(at + 110, at + 110 + nameSize - 1));
    const dataAt = Math.ceil((at + 110 + nameSize) / 4) * 4;
    if (name === "TRAILER!!!") break;
    files.set(name, { mode: field(1), data: bytes.subarray(dataAt, dataAt + size) });
    at = Math.ceil((dataAt + size) / 4) * 4;
  }
  return files;
}

Deno.test("stub image runs each tool offline with exactly its declared permissions", async () => {
  await prepare();
  const build = JSON.parse(await Deno.readTextFile(`${BUILD}/build.json`));
  const out = await new Deno.Command(build.compression === "xz" ? "xz" : "zstd", {
    args: ["-dc", build.stub],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const files = readCpio(out.stdout);
  const text = (path: string) => {
    const file = files.get(path);
    assert.ok(file, `${path} is in the stub`);
    return new TextDecoder().decode(file.data);
  };
  const expected: Record<string, string> = {
    "phase-fetch": "--allow-net --allow-read --allow-write /phase/fetch.js",
    "phase-verify": "--allow-read /phase/verify.js",
    "phase-discover": "--allow-net --allow-sys=networkInterfaces --ignore-env /phase/discover.js",
    "phase-kexec-plan": "--allow-read=/run/phase,/etc/phase /phase/kexec-plan.js",
  };
  for (const [tool, flags] of Object.entries(expected)) {
    const wrapper = text(`bin/${tool}`);
    const exec = wrapper.split("\n").find((l) => l.startsWith("exec "));
    assert.equal(
      exec,
      `exec /bin/deno run --cached-only --no-config ${flags} "$@"`,
      `${tool} wrapper`,
    );
    assert.doesNotMatch(wrapper, /(^|\s)(-A|--allow-all|--allow-run|--allow-ffi)(\s|=|$)/);
    assert.equal(files.get(`bin/${tool}`)!.mode & 0o777, 0o755);
    assert.ok(files.has(`phase/${tool.slice("phase-".length)}.js`), `${tool} bundle`);
  }
  assert.equal(text("init"), await Deno.readTextFile(`${ROOT}/boot/init`));
  assert.deepEqual(text("etc/phase/modules").trim().split("\n"), [...VIRTIO_NET_MODULES]);
  for (const m of VIRTIO_NET_MODULES) assert.ok(files.has(`lib/modules/${m}.ko`), m);
  for (const path of ["bin/deno", "bin/busybox", "sbin/kexec", "lib64/ld-linux-x86-64.so.2"]) {
    assert.ok(files.has(path), `${path} is in the stub`);
  }
  assert.ok(files.has("lib/x86_64-linux-gnu/libxenctrl.so.4.17"), "kexec's libraries");
});

vmTest("stub boots, fetches and verifies from serve, kexecs into the second stage", async (f) => {
  const serve = await startServe(f, f.trustedKey);
  try {
    const provider = serve.url.replace("127.0.0.1", "10.0.2.2");
    const run = await bootStub(f, stubAppend(provider), {
      until: /PHASE-SECOND-STAGE-OK.*\n|PHASE-BOOT-RESCUE/,
    });
    assert.notEqual(run.ended, "timeout", vmFailure(run));
    assert.doesNotMatch(run.output, /phase-boot: error:/, vmFailure(run));
    assert.match(run.output, /phase-boot: \[[\d.]+\] fetched and verified: .*kernel/);
    assert.match(run.output, /kexec_core: Starting new kernel/);
    const marker = /PHASE-SECOND-STAGE-OK cmdline: (.*)/.exec(run.output);
    assert.ok(marker, vmFailure(run));
    // The next stage gets the console and every phase.* parameter of the stub.
    assert.match(marker[1]!, /console=ttyS0/);
    assert.match(marker[1]!, /phase\.mode=private/);
    assert.match(marker[1]!, new RegExp(`phase\\.provider=${provider.replaceAll(".", "\\.")}`));
  } finally {
    await serve.stop();
  }
});

vmTest("stub refuses a kernel tampered with by a mirror and does not kexec", async (f) => {
  const serve = await startServe(f, f.trustedKey);
  const mirror = startTamperingMirror(serve.url);
  try {
    const provider = `http://10.0.2.2:${mirror.addr.port}`;
    const run = await bootStub(f, stubAppend(provider));
    assertStoppedBeforeKexec(
      run,
      /phase-boot: error: fetch failed: (?!fetch: ).*'kernel'.*sha256 mismatch/,
    );
  } finally {
    await mirror.shutdown();
    await serve.stop();
  }
});

vmTest("stub refuses an expired manifest and does not kexec", async (f) => {
  // serve signs manifests valid for one day; the VM's clock is three days ahead.
  const serve = await startServe(f, f.trustedKey, ["--validity-days", "1"]);
  try {
    const ahead = new Date(Date.now() + 3 * 86_400_000).toISOString().slice(0, 19);
    const run = await bootStub(f, stubAppend(serve.url.replace("127.0.0.1", "10.0.2.2")), {
      rtcBase: ahead,
    });
    assertStoppedBeforeKexec(run, /phase-boot: error: fetch failed: (?!fetch: ).*expired/);
  } finally {
    await serve.stop();
  }
});

vmTest("stub refuses a manifest signed by an untrusted key and does not kexec", async (f) => {
  const serve = await startServe(f, f.untrustedKey);
  try {
    const run = await bootStub(f, stubAppend(serve.url.replace("127.0.0.1", "10.0.2.2")));
    assertStoppedBeforeKexec(run, /phase-boot: error: fetch failed: (?!fetch: ).*no trusted key/);
  } finally {
    await serve.stop();
  }
});

vmTest("stub rejects an unknown phase.mode with one error line, before the network", async (f) => {
  const run = await bootStub(f, "console=ttyS0 panic=-1 phase.mode=bogus phase.test=1");
  assertStoppedBeforeKexec(run, /phase-boot: error: unknown phase\.mode 'bogus'/);
  assert.doesNotMatch(run.output, /network up/);
});

vmTest("stub in local mode runs phase-discover and stops when no provider answers", async (f) => {
  // User-mode networking carries no multicast, so mDNS finds nothing: the stub must say so.
  const run = await bootStub(f, "console=ttyS0 panic=-1 phase.mode=local phase.test=1");
  assert.match(run.output, /discovering a provider of stable\/x86_64 \(--mdns\)/);
  assertStoppedBeforeKexec(run, /phase-boot: error: no provider found \(local\): (?!discover: )/);
});

vmTest("self-hosting loop: a VM booted by the stub serves the next VM's boot", async () => {
  // VM 1: stub -> serving stage running `serve`; VM 2: stub fetching from VM 1 -> marker.
  const result = await runBootLoop({ build: BUILD });
  assert.match(result.marker, /^PHASE-SECOND-STAGE-OK /);
  assert.match(
    result.marker,
    new RegExp(`phase\\.provider=http://10\\.0\\.2\\.2:${result.port}( |$)`),
  );
  console.log(`loop: VM 1 served after ${result.servingMs} ms, VM 2 up after ${result.totalMs} ms`);
});

Deno.test({
  name: "boot VM fixture is removed",
  ignore: !HAVE_QEMU,
  async fn() {
    await removeBootFixture();
  },
});
