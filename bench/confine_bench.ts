/**
 * What OS confinement (bubblewrap, seccomp, prlimit: runtime/confine.ts) costs per sandbox start:
 * N hello.wasm jobs, each in a freshly spawned sandbox process (a pool of size 0, so every job
 * pays the whole start), confined and not, interleaved; prints the medians and their ratio.
 * Then the node's case: N jobs back to back through a pool of 1 (the next sandbox starts while a
 * job runs), confined and not, as jobs per second.
 *
 * ```
 * deno run --allow-read --allow-env --allow-run bench/confine_bench.ts [N=30]
 * ```
 *
 * @module
 */
import { runJob } from "../runtime/run_job.ts";
import { SandboxPool } from "../runtime/sandbox_pool.ts";

const n = Number(Deno.args[0] ?? 30);
const hello = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const input = new TextEncoder().encode("Hello, World");

await using confined = new SandboxPool({ size: 0, confinement: "require" });
await using plain = new SandboxPool({ size: 0, confinement: "off" });

async function once(pool: SandboxPool): Promise<number> {
  const start = performance.now();
  const outcome = await runJob(hello, { input, sandbox: "process", pool });
  if (new TextDecoder().decode(outcome.stdout) !== "dlroW ,olleH") {
    throw new Error(`Cannot bench: unexpected outcome ${JSON.stringify(outcome.error)}`);
  }
  return performance.now() - start;
}

const times = { confined: [] as number[], plain: [] as number[] };
await once(confined); // warm the emit cache and the checks
await once(plain);
for (let i = 0; i < n; i++) {
  times.confined.push(await once(confined));
  times.plain.push(await once(plain));
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const c = median(times.confined);
const p = median(times.plain);
console.log(`hello.wasm job in a fresh sandbox process, median of ${n}:`);
console.log(`  confined (bwrap + seccomp + prlimit): ${c.toFixed(1)} ms`);
console.log(`  Deno permissions only:                ${p.toFixed(1)} ms`);
console.log(`  ratio ${(c / p).toFixed(2)}x, +${(c - p).toFixed(1)} ms per start`);

async function throughput(confinement: "require" | "off"): Promise<number> {
  await using pool = new SandboxPool({ size: 1, confinement });
  await once(pool);
  const start = performance.now();
  for (let i = 0; i < n; i++) await once(pool);
  return n / ((performance.now() - start) / 1000);
}
const tc = await throughput("require");
const tp = await throughput("off");
console.log(`${n} jobs back to back through a pool of 1:`);
console.log(`  confined ${tc.toFixed(1)} jobs/s, Deno permissions only ${tp.toFixed(1)} jobs/s`);
console.log(`  ratio ${(tc / tp).toFixed(2)}x`);
