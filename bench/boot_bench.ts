// deno run --allow-read --allow-write --allow-run --allow-net=127.0.0.1 bench/boot_bench.ts
//     [--build boot/build] [--runs 1]
/**
 * Phase Boot benchmark: image sizes from `build.json`, and under qemu TCG the time from VM start
 * to the stub's init, to network up, to fetched + verified, to kexec and to the second stage's
 * marker, with the project's own `serve` on the host. Needs a built image (`deno task boot:build`).
 * Runs one VM at a time.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runVm } from "../boot/qemu.ts";
import { serveBootStage } from "../boot/serve_process.ts";
import { writeInitrdOverlay } from "../boot/initrd_overlay.ts";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    build: { type: "string", default: `${ROOT}/boot/build` },
    runs: { type: "string", default: "1" },
  },
});
const build = JSON.parse(await Deno.readTextFile(`${values.build}/build.json`));
const dir = await Deno.makeTempDir({ prefix: "phase-boot-bench-" });
try {
  const keys = await writeKeyPairFiles(`${dir}/publisher`);
  const initrd = `${dir}/stub.img`;
  await writeInitrdOverlay(build.stub, [{
    path: "etc/phase/trusted-keys",
    data: `${toHex(keys.publicKey)}\n`,
  }], initrd);
  const serve = await serveBootStage(dir, build.kernel, build.secondStage);
  const url = serve.origin;
  try {
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
    console.log(`stub initramfs (${build.compression}, ${build.toolForm}): ${mb(build.stubBytes)}`);
    if (build.stubWithoutDenoBytes) {
      console.log(`stub without deno and tools: ${mb(build.stubWithoutDenoBytes)}`);
    }
    console.log(`uncompressed cpio: ${mb(build.stubCpioBytes)}`);
    console.log(`kernel: ${mb((await Deno.stat(build.kernel)).size)}`);
    for (let i = 0; i < Number(values.runs); i++) {
      const run = await runVm({
        kernel: build.kernel,
        initrd,
        append: `console=ttyS0 panic=-1 phase.mode=private phase.provider=${
          url.replace("127.0.0.1", "10.0.2.2")
        } phase.test=1`,
        until: /PHASE-SECOND-STAGE-OK.*\n|PHASE-BOOT-RESCUE/,
        timeoutMs: 300_000,
        marks: {
          unpacked: /Freeing initrd memory/,
          init: /Phase Boot stub/,
          network: /phase-boot: \[[\d.]+\] network up/,
          fetched: /phase-boot: \[[\d.]+\] fetched and verified/,
          kexec: /phase-boot: \[[\d.]+\] kexec:/,
          second: /PHASE-SECOND-STAGE-OK/,
        },
      });
      if (!/PHASE-SECOND-STAGE-OK/.test(run.output)) {
        throw new Error(`boot failed: ${run.output.split("\n").slice(-10).join("\n")}`);
      }
      const s = (name: string) => `${((run.marks[name] ?? NaN) / 1000).toFixed(1)} s`;
      console.log(
        `run ${i + 1}: initramfs unpacked ${s("unpacked")}, init ${s("init")}, network ${
          s("network")
        }, fetched+verified ${s("fetched")}, kexec ${s("kexec")}, second stage ${s("second")}`,
      );
      const guest = [...run.output.matchAll(/phase-boot: \[([\d.]+)\] (\S+ ?\S*)/g)]
        .map((m) => `${m[2]} ${m[1]}`).join(", ");
      console.log(`  guest clock: ${guest}`);
    }
  } finally {
    await serve.stop();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
