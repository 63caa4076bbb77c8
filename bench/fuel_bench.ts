/**
 * Fuel metering benchmarks: the CPU fixture (SHA-256 of 8 MiB, C built with clang -O2 for
 * wasm32-wasi) with and without metering, a worst case (tiny recursive calls), and the
 * instrumentation itself.
 *
 *     deno bench --allow-read bench/fuel_bench.ts
 *
 * @module
 */
import { FuelCache, instrumentFuel } from "../runtime/fuel.ts";
import { runWasiStub } from "../runtime/testdata/fuel/wasi_stub.ts";

const dir = new URL("../runtime/testdata/fuel/", import.meta.url);
const sha = await Deno.readFile(new URL("sha256.wasm", dir));
const words = await Deno.readFile(new URL("words.wasm", dir));
const plain = new WebAssembly.Module(sha);
const metered = new WebAssembly.Module(instrumentFuel(sha));
const args = ["8"];
const expected = (await runWasiStub(plain, { args })).stdout;

Deno.bench("sha256 8 MiB, plain", { group: "cpu", baseline: true, n: 10, warmup: 2 }, async () => {
  const run = await runWasiStub(plain, { args });
  if (run.stdout !== expected) throw new Error("Cannot benchmark: wrong output");
});

Deno.bench("sha256 8 MiB, metered", { group: "cpu", n: 10, warmup: 2 }, async () => {
  const run = await runWasiStub(metered, { args, fuel: 10n ** 15n });
  if (run.stdout !== expected || run.fuel!.exhausted) {
    throw new Error("Cannot benchmark: wrong output");
  }
});

const fib = await Deno.readFile(new URL("fib.wasm", dir));
const fibPlain = new WebAssembly.Module(fib);
const fibMetered = new WebAssembly.Module(instrumentFuel(fib));
const fibArgs = ["32"];
const fibExpected = (await runWasiStub(fibPlain, { args: fibArgs })).stdout;

Deno.bench(
  "fib(32) + sieve, plain",
  { group: "worst", baseline: true, n: 20, warmup: 3 },
  async () => {
    const run = await runWasiStub(fibPlain, { args: fibArgs });
    if (run.stdout !== fibExpected) throw new Error("Cannot benchmark: wrong output");
  },
);

Deno.bench("fib(32) + sieve, metered", { group: "worst", n: 20, warmup: 3 }, async () => {
  const run = await runWasiStub(fibMetered, { args: fibArgs, fuel: 10n ** 15n });
  if (run.stdout !== fibExpected || run.fuel!.exhausted) {
    throw new Error("Cannot benchmark: wrong output");
  }
});

Deno.bench(
  `instrumentFuel() words.wasm (${words.length >> 10} KiB)`,
  { group: "instrument" },
  () => {
    instrumentFuel(words);
  },
);

Deno.bench(
  `instrumentFuel() sha256.wasm (${sha.length >> 10} KiB)`,
  { group: "instrument" },
  () => {
    instrumentFuel(sha);
  },
);

const cache = new FuelCache();
await cache.instrument(words);
Deno.bench("FuelCache hit, words.wasm", { group: "instrument" }, async () => {
  await cache.instrument(words);
});
