/**
 * The shared fixture of the Phase Boot VM tests (`boot_vm_test.ts`, `boot_lan_test.ts`,
 * `boot_node_test.ts`): the boot images built once (`boot/build.ts --level 12`, only when missing or older than their sources),
 * a trusted and an untrusted publisher key, the stub with the trusted key overlaid, and an
 * artifacts dir whose `stable/x86_64/{kernel,initramfs}` are the test second stage.
 *
 * @module
 */
import assert from "node:assert/strict";
import { writeInitrdOverlay } from "../boot/initrd_overlay.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { type Host, missingPrerequisites, type World } from "./netsim/mod.ts";
import { qemuAvailable } from "../boot/qemu.ts";

/** The project root, without a trailing slash. */
export const ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** Where the boot images are built. */
export const BUILD: string = `${ROOT}/boot/build`;

/** Kernel parameters for TCG on a busy machine: no timer check, and a panic powers off. */
export const TCG_CMDLINE = "no_timer_check panic=-1";

/**
 * Whether a suite of VMs on a simulated LAN can run here (root, iproute2, nftables, qemu). When
 * something is missing it prints one `<suite>: SKIPPED` line outside CI; it also registers the
 * test `<what> tests have root, iproute2, nftables and qemu when CI=true`, which fails in CI when
 * something is missing. Use as `ignore: !(await lanVmSuite(...))` for the suite's tests.
 */
export async function lanVmSuite(suite: string, what: string): Promise<boolean> {
  const missing = [...await missingPrerequisites(), ...(await qemuAvailable() ? [] : ["qemu"])];
  const inCi = Deno.env.get("CI") === "true";
  if (missing.length > 0 && !inCi) {
    console.log(
      `${suite}: SKIPPED: needs root, iproute2, nftables and qemu ` +
        "(apt-get install iproute2 nftables qemu-system-x86)",
    );
  }
  Deno.test({
    name: `${what} tests have root, iproute2, nftables and qemu when CI=true`,
    ignore: !inCi,
    fn() {
      assert.deepEqual(
        missing,
        [],
        "apt-get install iproute2 nftables qemu-system-x86; run as root",
      );
    },
  });
  return missing.length === 0;
}

/** What {@linkcode prepareBootFixture} made. */
export interface BootFixture {
  /** A temporary directory holding everything below; {@linkcode removeBootFixture} removes it. */
  dir: string;
  /** The built kernel (stub and second stage). */
  kernel: string;
  /** The built stub with `etc/phase/trusted-keys` = the trusted key's public half. */
  initrd: string;
  /** `<artifacts>/stable/x86_64/{kernel,initramfs}`: the kernel and the test second stage. */
  artifacts: string;
  /** The trusted publisher's secret key file. */
  trustedKey: string;
  /** A publisher key the stub does not trust. */
  untrustedKey: string;
}

let fixture: Promise<BootFixture> | undefined;

/**
 * Build the images if needed and prepare keys, the overlaid stub and the artifacts dir, once per
 * test module.
 *
 * @example
 * ```ts ignore
 * import { prepareBootFixture, removeBootFixture } from "./_boot_fixture.ts";
 *
 * const f = await prepareBootFixture();
 * console.log(f.initrd);
 * await removeBootFixture();
 * ```
 */
export function prepareBootFixture(): Promise<BootFixture> {
  fixture ??= (async () => {
    await ensureBootImages();
    const dir = await Deno.makeTempDir({ prefix: "phase-boot-vm-" });
    const trusted = await writeKeyPairFiles(`${dir}/trusted`);
    await writeKeyPairFiles(`${dir}/untrusted`);
    const build = JSON.parse(await Deno.readTextFile(`${BUILD}/build.json`));
    const initrd = `${dir}/stub-with-test-key.img`;
    await writeInitrdOverlay(build.stub, [{
      path: "etc/phase/trusted-keys",
      data: `${toHex(trusted.publicKey)} boot-vm-test\n`,
    }], initrd);
    const artifacts = `${dir}/artifacts`;
    await Deno.mkdir(`${artifacts}/stable/x86_64`, { recursive: true });
    await Deno.copyFile(build.kernel, `${artifacts}/stable/x86_64/kernel`);
    await Deno.copyFile(build.secondStage, `${artifacts}/stable/x86_64/initramfs`);
    return {
      dir,
      kernel: build.kernel,
      initrd,
      artifacts,
      trustedKey: `${dir}/trusted.key`,
      untrustedKey: `${dir}/untrusted.key`,
    };
  })();
  return fixture;
}

/**
 * Remove the fixture's temporary directory, if one was made.
 *
 * @example
 * ```ts ignore
 * import { removeBootFixture } from "./_boot_fixture.ts";
 *
 * await removeBootFixture();
 * ```
 */
export async function removeBootFixture(): Promise<void> {
  if (fixture === undefined) return;
  const f = await fixture;
  fixture = undefined;
  await Deno.remove(f.dir, { recursive: true });
}

/** The project's own files the stub's tools are bundled from (their local import graphs). */
async function _toolSources(): Promise<string[]> {
  const files = new Set<string>();
  for (
    const root of [
      "cli/fetch.ts",
      "cli/verify.ts",
      "cli/discover.ts",
      "boot/kexec_plan.ts",
      // The node stage's bundles and the sandbox modules they load at run time.
      "cli/start.ts",
      "cli/serve.ts",
      "runtime/sandbox_main.ts",
      "runtime/sandbox_worker.ts",
    ]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) continue; // a tool that has not landed is reported by the build itself
    const info: { modules?: { specifier?: string }[] } = JSON.parse(
      new TextDecoder().decode(out.stdout),
    );
    for (const { specifier = "" } of info.modules ?? []) {
      if (specifier.startsWith(`file://${ROOT}/`)) {
        files.add(specifier.slice(`file://${ROOT}/`.length));
      }
    }
  }
  return [...files];
}

/**
 * Build the boot images (`boot/build.ts --level 12`) unless `boot/build/build.json` names a stub
 * newer than every source it is made from (the build's inputs and every project file the tools
 * import).
 *
 * @example
 * ```ts ignore
 * import { ensureBootImages } from "./_boot_fixture.ts";
 *
 * await ensureBootImages();
 * ```
 */
export async function ensureBootImages(): Promise<void> {
  const sources = [
    "boot/build.ts",
    "boot/cpio.ts",
    "boot/init",
    "boot/udhcpc.script",
    "boot/second_stage_init",
    "boot/node_stage_init",
    "boot/kexec_plan.ts",
    "cli/fetch.ts",
    "cli/verify.ts",
    "cli/discover.ts",
    ...await _toolSources(),
  ];
  let built = 0;
  try {
    const info = JSON.parse(await Deno.readTextFile(`${BUILD}/build.json`));
    built = (await Deno.stat(info.stub)).mtime?.getTime() ?? 0;
    await Deno.stat(info.secondStage);
    await Deno.stat(info.node);
    await Deno.stat(info.kernel);
  } catch {
    built = 0;
  }
  let newest = 0;
  for (const source of sources) {
    try {
      newest = Math.max(newest, (await Deno.stat(`${ROOT}/${source}`)).mtime?.getTime() ?? 0);
    } catch {
      // a tool that has not landed is reported by the build itself
    }
  }
  if (built > newest) return;
  console.log("boot VM tests: building the boot images (boot/build.ts --level 12)");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write=boot/build",
      "--allow-run",
      "--allow-env=DENORT_BIN",
      "boot/build.ts",
      "--out",
      "boot/build",
      "--level",
      "12",
      "--quiet",
    ],
    cwd: ROOT,
    stdin: "null",
  }).output();
  assert.ok(
    out.success,
    `boot build failed: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}`,
  );
}

/** A process in a netsim host whose output lines are kept (and drained, so pipes never fill). */
export interface Logged {
  lines: string[];
  /** Resolves with the first line (stdout or stderr) matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves once both streams ended (after the world killed the process). */
  drained: Promise<void>;
  /** Send SIGTERM and wait until the process has exited and its output ended. */
  stop(): Promise<void>;
}

/**
 * Spawn `deno <args>` (cwd = the project root) in a netsim host, keeping its output lines.
 *
 * @example
 * ```ts ignore
 * import { spawnLogged } from "./_boot_fixture.ts";
 *
 * const serve = spawnLogged(host, ["run", "cli/serve.ts", "--help"]);
 * await serve.waitFor(/Usage/, 10_000);
 * ```
 */
export function spawnLogged(host: Host, args: string[]): Logged {
  return _logged(host.spawn(Deno.execPath(), { args, cwd: ROOT, env: { NO_COLOR: "1" } }));
}

/** Keep a child's output lines (at most 2,000), and wait for one or stop the child. */
function _logged(child: Deno.ChildProcess): Logged {
  const lines: string[] = [];
  const wakers = new Set<() => void>();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    let rest = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      rest += text;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      // Keep at most 2,000 lines: a chatty process cannot grow the test's memory.
      for (const line of parts) if (lines.length < 2_000) lines.push(line);
      for (const wake of wakers) wake();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() => {
    for (const wake of wakers) wake();
  });
  let ended = false;
  drained.then(() => ended = true);
  const waitFor = (pattern: RegExp, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => pattern.test(l));
        if (hit !== undefined || ended) {
          clearTimeout(timer);
          wakers.delete(check);
          if (hit !== undefined) resolve(hit);
          else reject(new Error(`process ended before ${pattern}:\n${lines.join("\n")}`));
        }
      };
      const timer = setTimeout(() => {
        wakers.delete(check);
        reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${lines.slice(-20).join("\n")}`));
      }, timeoutMs);
      wakers.add(check);
      check();
    });
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await drained;
  };
  return { lines, waitFor, drained, stop };
}

/**
 * busybox `udhcpd` (from the boot build's `pkgroot`) on the LAN side (`lan0`) of `lan`'s
 * gateway, leasing .100 to .200, its files in `dir`. The world ends it.
 *
 * @example
 * ```ts ignore
 * import { startDhcp } from "./_boot_fixture.ts";
 *
 * const dhcp = await startDhcp(world, "home", dir);
 * await dhcp.drained; // after the world is disposed
 * ```
 */
export async function startDhcp(world: World, lan: string, dir: string): Promise<Logged> {
  const gateway = world.lan(lan).gateway;
  const prefix = gateway.lanAddress!.replace(/\.\d+$/, "");
  const conf = `${dir}/udhcpd-${lan}.conf`;
  await Deno.writeTextFile(`${dir}/udhcpd-${lan}.leases`, "");
  await Deno.writeTextFile(
    conf,
    [
      "interface lan0",
      `start ${prefix}.100`,
      `end ${prefix}.200`,
      `lease_file ${dir}/udhcpd-${lan}.leases`,
      `pidfile ${dir}/udhcpd-${lan}.pid`,
      `opt router ${gateway.lanAddress}`,
      "opt subnet 255.255.255.0",
      "opt lease 3600",
      "",
    ].join("\n"),
  );
  return _logged(
    gateway.spawn(`${BUILD}/pkgroot/bin/busybox`, { args: ["udhcpd", "-f", conf] }),
  );
}
