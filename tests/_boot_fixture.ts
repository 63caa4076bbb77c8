/**
 * The shared fixture of the Phase Boot VM tests (`boot_vm_test.ts`, `boot_lan_test.ts`): the boot
 * images built once (`boot/build.ts --level 12`, only when missing or older than their sources),
 * a trusted and an untrusted publisher key, the stub with the trusted key overlaid, and an
 * artifacts dir whose `stable/x86_64/{kernel,initramfs}` are the test second stage.
 *
 * @module
 */
import assert from "node:assert/strict";
import { writeInitrdOverlay } from "../boot/initrd_overlay.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";

/** The project root, without a trailing slash. */
export const ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** Where the boot images are built. */
export const BUILD: string = `${ROOT}/boot/build`;

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
  for (const root of ["cli/fetch.ts", "cli/verify.ts", "cli/discover.ts", "boot/kexec_plan.ts"]) {
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
