/**
 * Benchmark: `fetch` of a 512 MiB artifact from the local provider (download + verify) against
 * `curl -o` followed by `sha256sum` on the same file, in one hyperfine run.
 *
 * Run with: deno task bench:fetch [--size-mib 512] [--runs 5]
 * (deno run --allow-read --allow-write --allow-run --allow-net=127.0.0.1 bench/fetch_bench.ts)
 *
 * Starts `cli/serve.ts` (twice, for the two-provider case) as real processes on 127.0.0.1,
 * runs hyperfine, prints the means and the ratio fetch / (curl + sha256sum), and writes the
 * hyperfine JSON to `.bench/fetch.json`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { taskCommand } from "../tests/_task.ts";
import { publisher, startServe } from "../tests/fetch_testlib.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Run the benchmark; returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "./fetch_bench.ts";
 *
 * Deno.exitCode = await main(["--size-mib", "64", "--runs", "2"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "size-mib": { type: "string", default: "512" },
      runs: { type: "string", default: "5" },
    },
  });
  const sizeMiB = Number(values["size-mib"]);
  const runs = Number(values.runs);
  const dir = await Deno.makeTempDir({ prefix: "phase-fetch-bench-" });
  try {
    const keys = await publisher(dir, "bench");
    const art = `${dir}/art/stable/x86_64`;
    await Deno.mkdir(art, { recursive: true });
    await _randomFile(`${art}/kernel`, sizeMiB << 20);
    console.error(`Artifact: ${sizeMiB} MiB of random bytes; starting two providers...`);
    await using a = await startServe(`${dir}/art`, keys.keyFile, `${dir}/state-a`);
    await using b = await startServe(`${dir}/art`, keys.keyFile, `${dir}/state-b`);
    const { flags, script } = await taskCommand("fetch");
    const fetchCmd = (providers: string[], extra = "") =>
      `${Deno.execPath()} run ${flags.join(" ")} ${ROOT}${script} ${
        providers.map((p) => `--provider ${p}`).join(" ")
      } --out ${dir}/out --trusted-keys ${keys.trustedKeysFile} --only kernel --json${extra} >/dev/null`;
    const commands: [string, string][] = [
      [
        "curl -o + sha256sum",
        `curl -sSf -o ${dir}/curl.out ${a.url}stable/x86_64/kernel && sha256sum ${dir}/curl.out`,
      ],
      ["curl -o (download only)", `curl -sSf -o ${dir}/curl.out ${a.url}stable/x86_64/kernel`],
      ["fetch (1 provider)", fetchCmd([a.url])],
      ["fetch (1 provider, --no-fsync)", fetchCmd([a.url], " --no-fsync")],
      ["fetch (2 providers, parallel ranges)", fetchCmd([a.url, b.url])],
    ];
    await Deno.mkdir(`${ROOT}.bench`, { recursive: true });
    const exportPath = `${ROOT}.bench/fetch.json`;
    const hyperfine = [
      "--warmup",
      "1",
      "--runs",
      String(runs),
      "--prepare",
      `rm -rf ${dir}/out ${dir}/curl.out; sync`,
      "--export-json",
      exportPath,
      ...commands.flatMap(([name, cmd]) => ["-n", name, cmd]),
    ];
    console.error(`hyperfine ${hyperfine.map((a) => JSON.stringify(a)).join(" ")}`);
    const { code } = await new Deno.Command("hyperfine", {
      args: hyperfine,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) return code;
    const results: { command: string; mean: number; stddev: number }[] =
      JSON.parse(await Deno.readTextFile(exportPath)).results;
    const mean = (name: string) => results.find((r) => r.command === name)!.mean;
    const base = mean("curl -o + sha256sum");
    console.log(`\n${sizeMiB} MiB, ${runs} runs each (mean ± stddev):`);
    for (const r of results) {
      console.log(
        `  ${r.command.padEnd(38)} ${r.mean.toFixed(3)} s ± ${r.stddev.toFixed(3)}  ratio ${
          (r.mean / base).toFixed(2)
        }x  ${(sizeMiB / r.mean).toFixed(0)} MiB/s`,
      );
    }
    return 0;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function _randomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(1 << 20);
  for (let done = 0; done < size; done += block.length) {
    for (let i = 0; i < block.length; i += 65536) {
      crypto.getRandomValues(block.subarray(i, i + 65536));
    }
    let written = 0;
    const want = Math.min(block.length, size - done);
    while (written < want) written += await file.write(block.subarray(written, want));
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
