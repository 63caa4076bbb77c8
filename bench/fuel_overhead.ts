/**
 * Metering overhead, measured robustly on a shared machine: runs the plain module, the metered
 * one, the metered one with interrupts and the one with interrupt checks only (what in-process
 * `run` uses without `--fuel`) in turn, ROUNDS times each, and reports the minimum and the median
 * of wall time and of process CPU time per run, and their ratios to plain.
 *
 *     deno run --allow-read bench/fuel_overhead.ts ROUNDS FILE.wasm [ARGS...]
 *     deno run --allow-read bench/fuel_overhead.ts 15 runtime/testdata/fuel/sha256.wasm 8
 *
 * @module
 */
import { cpuUsage } from "node:process";
import { instrumentFuel } from "../runtime/fuel.ts";
import { runWasiStub } from "../runtime/testdata/fuel/wasi_stub.ts";

async function main(argv: string[]): Promise<void> {
  const [roundsText = "", name = "", ...args] = argv;
  const rounds = Number(roundsText);
  if (!Number.isInteger(rounds) || rounds < 1 || name === "") {
    throw new TypeError("Usage: fuel_overhead.ts ROUNDS FILE.wasm [ARGS...]");
  }
  const bytes = await Deno.readFile(name);
  const t0 = performance.now();
  const instrumented = instrumentFuel(bytes);
  const instrumentMs = performance.now() - t0;
  const modules = {
    plain: new WebAssembly.Module(bytes),
    metered: new WebAssembly.Module(instrumented),
    interrupts: new WebAssembly.Module(instrumentFuel(bytes, { interrupts: true })),
    checks: new WebAssembly.Module(instrumentFuel(bytes, { meter: false })),
  };
  const kinds = Object.keys(modules);
  const wall: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k, []]));
  let expected: string | undefined;
  let fuel = 0n;
  for (let r = -2; r < rounds; r++) {
    for (const [kind, module] of Object.entries(modules)) {
      const c0 = cpuUsage();
      const w0 = performance.now();
      const run = await runWasiStub(module, {
        args,
        ...(kind === "metered" || kind === "interrupts" ? { fuel: 10n ** 15n } : {}),
      });
      const w = performance.now() - w0;
      const c = cpuUsage(c0);
      expected ??= run.stdout;
      if (run.stdout !== expected) throw new Error("Cannot benchmark: outputs differ");
      if (run.fuel && kind === "metered") fuel = run.fuel.used;
      if (r < 0) continue; // warm-up: let V8 tier the code up
      wall[kind]!.push(w);
      cpu[kind]!.push((c.user + c.system) / 1000);
    }
  }
  const min = (a: number[]) => Math.min(...a);
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const row = (label: string, f: (a: number[]) => number, m: Record<string, number[]>) =>
    `${label.padEnd(12)} ` + kinds.map((k) =>
      `${k} ${f(m[k]!).toFixed(1).padStart(7)} ms` +
      (k === "plain" ? "" : ` (${(f(m[k]!) / f(m.plain!)).toFixed(3)}x)`)
    ).join("  ");
  console.log(`${name} ${args.join(" ")}: ${rounds} rounds, fuel used ${fuel}`);
  console.log(`instrumentation: ${instrumentMs.toFixed(1)} ms for ${bytes.length} bytes (cold)`);
  console.log(row("wall min", min, wall));
  console.log(row("wall median", median, wall));
  console.log(row("cpu min", min, cpu));
  console.log(row("cpu median", median, cpu));
}

if (import.meta.main) await main(Deno.args);
