// deno run --allow-read --allow-write --allow-run --allow-net=127.0.0.1 boot/loop.ts
//     [--build boot/build]
/**
 * The self-hosting loop, end to end under qemu (TCG): the host's `serve` provides a serving
 * stage; VM 1 boots the stub, verifies and kexecs into it, and runs `serve` itself; VM 2 boots
 * the stub from VM 1 (through a forwarded port) and kexecs into the marker second stage.
 *
 * The serving stage is the built stub plus an appended cpio: `/init` = `boot/serve_stage_init`,
 * `/phase/serve.js` (`deno bundle cli/serve.ts`), `/srv/stable/x86_64/{kernel,initramfs}` and the
 * publisher key (a throwaway key made for this run). Two VMs run at once (VM 1 mostly idles).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runVm } from "./qemu.ts";
import { serveBootStage } from "./serve_process.ts";
import { writeInitrdOverlay } from "./initrd_overlay.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** Options of {@linkcode runBootLoop}. */
export interface BootLoopOptions {
  /** The build directory (with `build.json`). */
  build: string;
  /** Progress lines. @default {() => {}} */
  log?: (line: string) => void;
}

/** What {@linkcode runBootLoop} saw. */
export interface BootLoopResult {
  /** Milliseconds until VM 1 served. */
  servingMs: number;
  /** Milliseconds until VM 2 printed its marker. */
  totalMs: number;
  /** VM 2's marker line (with its command line, which names VM 1's forwarded port). */
  marker: string;
  /** The host port forwarded to VM 1's `serve`. */
  port: number;
}

/**
 * Run the self-hosting loop once.
 *
 * @throws {Error} With the console tail of the VM that failed.
 *
 * @example
 * ```ts ignore
 * import { runBootLoop } from "./loop.ts";
 *
 * const result = await runBootLoop({ build: "boot/build", log: console.log });
 * console.log(result.marker);
 * ```
 */
export async function runBootLoop(options: BootLoopOptions): Promise<BootLoopResult> {
  const { build: buildDir, log = () => {} } = options;
  const build = JSON.parse(await Deno.readTextFile(`${buildDir}/build.json`));
  const dir = await Deno.makeTempDir({ prefix: "phase-boot-loop-" });
  const started = performance.now();
  const t = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  try {
    const keys = await writeKeyPairFiles(`${dir}/publisher`);
    const trusted = `${toHex(keys.publicKey)} loop\n`;
    const bundle = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform=deno", "--output", `${dir}/serve.js`, "cli/serve.ts"],
      cwd: ROOT,
      stdin: "null",
    }).output();
    if (!bundle.success) throw new Error(new TextDecoder().decode(bundle.stderr));
    const stub = `${dir}/stub.img`;
    await writeInitrdOverlay(build.stub, [{ path: "etc/phase/trusted-keys", data: trusted }], stub);
    const servingStage = `${dir}/serving-stage.img`;
    await writeInitrdOverlay(build.stub, [
      { path: "init", data: await Deno.readFile(`${ROOT}/boot/serve_stage_init`), mode: 0o755 },
      { path: "phase/serve.js", data: await Deno.readFile(`${dir}/serve.js`) },
      {
        path: "etc/phase/publisher.key",
        data: await Deno.readFile(`${dir}/publisher.key`),
        mode: 0o600,
      },
      { path: "srv/stable/x86_64/kernel", data: await Deno.readFile(build.kernel) },
      { path: "srv/stable/x86_64/initramfs", data: await Deno.readFile(build.secondStage) },
    ], servingStage);
    const serve = await serveBootStage(dir, build.kernel, servingStage);
    const url = serve.origin;
    const vm1Stop = new AbortController();
    let vm1: Promise<unknown> | undefined;
    try {
      log(`[${t()}] host serve at ${url}; booting VM 1 (stub -> serving stage)`);
      const port = _freePort();
      let ready!: () => void;
      let failed!: (e: Error) => void;
      const vm1Ready = new Promise<void>((resolve, reject) => {
        ready = resolve;
        failed = reject;
      });
      let vm1Output = "";
      vm1 = runVm({
        kernel: build.kernel,
        initrd: stub,
        append: `console=ttyS0 panic=-1 phase.mode=private phase.provider=${
          url.replace("127.0.0.1", "10.0.2.2")
        } phase.test=1`,
        hostForwards: [{ host: port, guest: 8080 }],
        timeoutMs: 900_000,
        signal: vm1Stop.signal,
        onOutput(text) {
          vm1Output += text;
          if (/Listening on http/.test(vm1Output)) ready();
          if (/PHASE-BOOT-RESCUE/.test(vm1Output)) {
            failed(new Error(`VM 1 failed:\n${vm1Output.split("\n").slice(-15).join("\n")}`));
          }
        },
      }).then((run) => {
        failed(
          new Error(`VM 1 ended (${run.ended}):\n${run.output.split("\n").slice(-15).join("\n")}`),
        );
      }, () => {});
      await vm1Ready;
      const servingMs = Math.round(performance.now() - started);
      log(`[${t()}] VM 1 serves on host port ${port}; booting VM 2 from it`);
      const run2 = await runVm({
        kernel: build.kernel,
        initrd: stub,
        append:
          `console=ttyS0 panic=-1 phase.mode=private phase.provider=http://10.0.2.2:${port} phase.test=1`,
        until: /PHASE-SECOND-STAGE-OK.*\n|PHASE-BOOT-RESCUE/,
        timeoutMs: 600_000,
      });
      const marker = /PHASE-SECOND-STAGE-OK.*/.exec(run2.output)?.[0];
      if (marker === undefined) {
        throw new Error(`VM 2 failed:\n${run2.output.split("\n").slice(-15).join("\n")}`);
      }
      log(`[${t()}] VM 2 booted from VM 1: ${marker.trim()}`);
      return {
        servingMs,
        totalMs: Math.round(performance.now() - started),
        marker: marker.trim(),
        port,
      };
    } finally {
      vm1Stop.abort();
      await vm1;
      await serve.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** CLI: run the loop; resolves with the exit code. */
async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { build: { type: "string", default: `${ROOT}/boot/build` } },
  });
  try {
    await runBootLoop({ build: values.build, log: console.log });
    console.log("self-hosting loop: OK");
    return 0;
  } catch (error) {
    console.error(`boot:loop: error: ${(error as Error).message}`);
    return 1;
  }
}

function _freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
