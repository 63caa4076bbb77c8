import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FUEL_EXHAUSTED_EXPORT, FUEL_GLOBAL_EXPORT, FUEL_START_EXPORT } from "./fuel.ts";
import { FuelCache, FuelExhaustedError, instrumentFuel, readFuel, startFuel } from "./fuel.ts";
import { runWasiStub } from "./testdata/fuel/wasi_stub.ts";
import { wat } from "./testdata/hostile_modules.ts";
import wabtInit from "wabt";

const DIR = new URL("./testdata/fuel/", import.meta.url);
const fixture = (name: string) => Deno.readFile(new URL(name, DIR));
const STDIN = "the quick brown fox jumps over the lazy dog\nthe end of the fox\n";
const BIG = 10n ** 15n;

/** Run fixture `<name>.wasm` on STDIN as it is and instrumented with BIG fuel. */
async function runPlainAndMetered(name: string, args: readonly string[]) {
  const input = await fixture(`${name}.wasm`);
  const plain = await runWasiStub(input, { stdin: STDIN, args: [...args] });
  const metered = await runWasiStub(instrumentFuel(input), {
    stdin: STDIN,
    args: [...args],
    fuel: BIG,
  });
  return { input, plain, metered };
}

Deno.test("instrumentFuel() output passes WebAssembly.validate and wabt's validator", async () => {
  const wabt = await wabtInit();
  for (const name of ["words", "spin", "sha256", "fib", "simd", "features", "costs", "nostart"]) {
    const out = instrumentFuel(await fixture(`${name}.wasm`));
    assert.ok(WebAssembly.validate(out), name);
    const module = wabt.readWasm(out, { readDebugNames: false, tail_call: true, threads: true });
    try {
      assert.doesNotThrow(() => module.validate(), name);
    } finally {
      module.destroy();
    }
  }
});

Deno.test("wabt's validator, as used above, rejects a well-formed but ill-typed module", async () => {
  const wabt = await wabtInit();
  // One function of type () -> i32 whose body is empty: it parses, but does not validate.
  const broken = new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f],
    ...[0x03, 0x02, 0x01, 0x00],
    ...[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b],
  ]);
  assert.equal(WebAssembly.validate(broken), false);
  assert.throws(() => {
    const module = wabt.readWasm(broken, { readDebugNames: false });
    try {
      module.validate();
    } finally {
      module.destroy();
    }
  });
});

Deno.test("instrumentFuel() is deterministic and leaves its input untouched", async () => {
  const input = await fixture("words.wasm");
  const copy = input.slice();
  const a = instrumentFuel(input);
  const b = instrumentFuel(input);
  assert.deepEqual(a, b);
  assert.deepEqual(input, copy);
  assert.ok(a.length > input.length);
});

Deno.test("instrumentFuel() adds the fuel globals and exports, and no imports", async () => {
  const input = await fixture("words.wasm");
  const before = new WebAssembly.Module(input);
  const after = new WebAssembly.Module(instrumentFuel(input));
  assert.deepEqual(WebAssembly.Module.imports(after), WebAssembly.Module.imports(before));
  assert.deepEqual(WebAssembly.Module.exports(after), [
    ...WebAssembly.Module.exports(before),
    { name: FUEL_GLOBAL_EXPORT, kind: "global" },
    { name: FUEL_EXHAUSTED_EXPORT, kind: "global" },
  ]);
  // A module with no global, export or start section gets them made.
  const bare = new WebAssembly.Module(instrumentFuel(await fixture("nostart.wasm")));
  assert.deepEqual(WebAssembly.Module.exports(bare).map((e) => e.name), [
    FUEL_GLOBAL_EXPORT,
    FUEL_EXHAUSTED_EXPORT,
  ]);
});

Deno.test("instrumented C programs print exactly what the originals print", async () => {
  for (
    const [name, args] of [["words", []], ["simd", []], ["sha256", ["1"]], ["fib", ["25"]]] as const
  ) {
    const { plain, metered } = await runPlainAndMetered(name, args);
    assert.equal(plain.trap, undefined, name);
    assert.equal(plain.exitCode, 0, name);
    assert.ok(plain.stdout.length > 0, name);
    assert.equal(metered.stdout, plain.stdout, name);
    assert.equal(metered.stderr, plain.stderr, name);
    assert.equal(metered.exitCode, plain.exitCode, name);
    assert.equal(metered.fuel?.exhausted, false, name);
    assert.ok(metered.fuel!.used > 1000n, name);
  }
});

Deno.test("the sha256 fixture computes the real SHA-256, metered", async () => {
  const data = new Uint8Array(1 << 20);
  let x = 2463534242;
  for (let i = 0; i < data.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    data[i] = x & 0xff;
  }
  const expected = createHash("sha256").update(data).digest("hex");
  const run = await runWasiStub(instrumentFuel(await fixture("sha256.wasm")), {
    args: ["1"],
    fuel: BIG,
  });
  assert.equal(run.stdout, `${expected}\n`);
});

Deno.test("the same module and input use the same fuel on every run", async () => {
  const module = new WebAssembly.Module(instrumentFuel(await fixture("words.wasm")));
  const a = await runWasiStub(module, { stdin: STDIN, fuel: BIG });
  const b = await runWasiStub(module, { stdin: STDIN, fuel: BIG });
  const c = await runWasiStub(module, { stdin: `${STDIN}more words`, fuel: BIG });
  assert.equal(a.fuel!.used, b.fuel!.used);
  assert.notEqual(c.fuel!.used, a.fuel!.used);
});

Deno.test("the same module and input use the same fuel in separate deno processes", async () => {
  const file = new URL("words.wasm", DIR).pathname;
  const script = new URL("measure.ts", DIR).pathname;
  const runs = await Promise.all([0, 1].map(async () => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${file}`, script, file, String(BIG), STDIN],
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    return JSON.parse(new TextDecoder().decode(stdout));
  }));
  const here = await runWasiStub(instrumentFuel(await Deno.readFile(file)), {
    stdin: STDIN,
    fuel: BIG,
  });
  assert.equal(runs[0].used, runs[1].used);
  assert.equal(runs[0].used, String(here.fuel!.used));
  assert.equal(runs[0].stdout, here.stdout);
  assert.equal(runs[0].exhausted, false);
});

Deno.test("an infinite C loop stops by fuel, at the same point every time", async () => {
  const module = new WebAssembly.Module(instrumentFuel(await fixture("spin.wasm")));
  const runs = [];
  for (let i = 0; i < 2; i++) runs.push(await runWasiStub(module, { fuel: 5_000_000n }));
  for (const run of runs) {
    assert.equal(run.stdout, "spinning\n");
    assert.equal(run.exitCode, undefined);
    assert.ok(run.trap instanceof WebAssembly.RuntimeError);
    assert.equal(run.fuel!.exhausted, true);
    assert.equal(run.fuel!.used, 5_000_000n);
  }
  assert.ok(runs[0]!.fuel!.remaining < 0n);
  assert.equal(runs[0]!.fuel!.remaining, runs[1]!.fuel!.remaining);
});

Deno.test("a limit equal to the fuel used is enough, one less is exhausted", async () => {
  const module = new WebAssembly.Module(instrumentFuel(await fixture("words.wasm")));
  const need = (await runWasiStub(module, { stdin: STDIN, fuel: BIG })).fuel!.used;
  const exact = await runWasiStub(module, { stdin: STDIN, fuel: need });
  assert.deepEqual(exact.fuel, { used: need, remaining: 0n, exhausted: false });
  assert.equal(exact.exitCode, 0);
  const short = await runWasiStub(module, { stdin: STDIN, fuel: need - 1n });
  assert.equal(short.fuel!.exhausted, true);
  assert.equal(short.fuel!.used, need - 1n);
});

Deno.test("fuel is exactly one unit per executed instruction, structure and dead code free", async () => {
  const { instance } = await WebAssembly.instantiate(instrumentFuel(await fixture("costs.wasm")));
  const e = instance.exports as Record<string, (n?: number) => number>;
  const cost = (f: () => unknown) => {
    startFuel(instance, 1000n);
    f();
    const reading = readFuel(instance, 1000n);
    assert.equal(reading.exhausted, false);
    return reading.used;
  };
  assert.equal(cost(() => e.straight!()), 2n);
  assert.equal(cost(() => e.count!(1)), 7n);
  assert.equal(cost(() => e.count!(5)), 35n);
  assert.equal(cost(() => assert.equal(e.branch!(1), 1)), 3n);
  assert.equal(cost(() => assert.equal(e.branch!(0), 5)), 5n);
  assert.equal(cost(() => assert.equal(e.early!(), 7)), 2n);
  assert.equal(cost(() => e.down!(0)), 2n);
  assert.equal(cost(() => e.down!(10)), 62n);
});

Deno.test("a wasm infinite loop traps with the exhausted flag set", async () => {
  const { instance } = await WebAssembly.instantiate(instrumentFuel(await fixture("costs.wasm")));
  startFuel(instance, 100n);
  assert.throws(() => (instance.exports.spin as () => void)(), WebAssembly.RuntimeError);
  assert.equal((instance.exports[FUEL_EXHAUSTED_EXPORT] as WebAssembly.Global).value, 1);
  assert.deepEqual(readFuel(instance, 100n), { used: 100n, remaining: -1n, exhausted: true });
  // startFuel() resets both the counter and the flag.
  startFuel(instance, 7n);
  assert.deepEqual(readFuel(instance, 7n), { used: 0n, remaining: 7n, exhausted: false });
});

Deno.test("the counter kept in a local reaches the global on every way out: return, br out, trap", async () => {
  const module = await wat(`(module
    (func (export "exits") (param i32) (result i32)
      i32.const 1 i32.const 2 i32.add drop
      local.get 0 i32.const 1 i32.eq
      if i32.const 10 return end
      i32.const 20 local.get 0 i32.const 2 i32.eq br_if 0
      drop i32.const 30 br 0
      i32.const 99)
    (func (export "boom") i32.const 1 drop unreachable)
    (func (export "caller") (param i32) (result i32)
      local.get 0 call 0 drop local.get 0 call 0))`);
  const { instance } = await WebAssembly.instantiate(instrumentFuel(module));
  const e = instance.exports as Record<string, (n?: number) => number>;
  const used = (f: () => unknown) => {
    startFuel(instance, 1000n);
    f();
    return readFuel(instance, 1000n);
  };
  // 8 units to the if, then `i32.const 10; return`, or 5 more to a br_if out of the function,
  // or 3 more to a br out of it (the rest is dead code, never charged).
  assert.deepEqual(used(() => assert.equal(e.exits!(1), 10)).used, 10n);
  assert.deepEqual(used(() => assert.equal(e.exits!(2), 20)).used, 13n);
  assert.deepEqual(used(() => assert.equal(e.exits!(3), 30)).used, 16n);
  // A caller's own units, charged before each call, and the callee's, read back after it.
  assert.deepEqual(used(() => assert.equal(e.caller!(2), 20)).used, 5n + 13n + 13n);
  // A trap pays for its segment: `i32.const 1; drop; unreachable`.
  assert.deepEqual(used(() => assert.throws(() => e.boom!(), WebAssembly.RuntimeError)), {
    used: 3n,
    remaining: 997n,
    exhausted: false,
  });
});

Deno.test("an endless loop in a callee that calls nothing stops at the limit, metered or by interrupts", async () => {
  const module = await wat(`(module
    (func $spin (loop (br 0)))
    (func (export "outer") (loop (call $spin) (br 0))))`);
  const { instance } = await WebAssembly.instantiate(instrumentFuel(module));
  startFuel(instance, 100n);
  assert.throws(() => (instance.exports.outer as () => void)(), WebAssembly.RuntimeError);
  // 2 for the outer loop's first pass, then 1 per turn of the inner one; the last turn is the
  // one that finds the counter below zero, and writes it back before trapping.
  assert.deepEqual(readFuel(instance, 100n), { used: 100n, remaining: -1n, exhausted: true });

  let yields = 0;
  const checked = await WebAssembly.instantiate(instrumentFuel(module, { meter: false }), {
    wasi_snapshot_preview1: {
      sched_yield: () => {
        if (++yields === 3) throw new Error("deadline");
        return 0;
      },
    },
  });
  assert.throws(() => (checked.instance.exports.outer as () => void)(), /deadline/);
  assert.equal(yields, 3);
});

Deno.test("recursion without loops is metered exactly and stops at the limit, before the stack", async () => {
  const module = await wat(`(module
    (func $down (export "down") (param i32) (result i32)
      local.get 0 i32.eqz
      if (result i32) i32.const 0
      else local.get 0 i32.const 1 i32.sub call $down i32.const 1 i32.add end)
    (func $forever (export "forever") (call $forever)))`);
  const { instance } = await WebAssembly.instantiate(instrumentFuel(module));
  const e = instance.exports as Record<string, (n?: number) => number>;
  // down(0) = 3 + 1; each level adds 3 + 6.
  startFuel(instance, BIG);
  assert.equal(e.down!(1000), 1000);
  assert.equal(readFuel(instance, BIG).used, 9n * 1000n + 4n);
  startFuel(instance, 9003n);
  e.down!(1000);
  assert.equal(readFuel(instance, 9003n).exhausted, true);
  // Endless recursion runs out of fuel at a function entry, long before the stack does.
  startFuel(instance, 1000n);
  assert.throws(() => e.forever!(), WebAssembly.RuntimeError);
  assert.equal((instance.exports[FUEL_EXHAUSTED_EXPORT] as WebAssembly.Global).value, 1);
  assert.deepEqual(readFuel(instance, 1000n), { used: 1000n, remaining: -1n, exhausted: true });
});

Deno.test("a call's function index is written back in its shortest form", () => {
  // (func $f) (func (call $f)) with the call's index padded to 5 bytes, as compilers leave it.
  const padded = new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00],
    ...[0x03, 0x03, 0x02, 0x00, 0x00],
    ...[0x0a, 0x0d, 0x02, 0x02, 0x00, 0x0b, 0x08, 0x00, 0x10, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b],
  ]);
  assert.ok(WebAssembly.validate(padded));
  const out = instrumentFuel(padded);
  assert.ok(WebAssembly.validate(out));
  assert.ok(padded.toHex().includes("1080808080"));
  assert.ok(!out.toHex().includes("1080808080"), "the padded call was left in place");
  assert.ok(out.toHex().includes("1000"), "call 0 in one byte");
});

Deno.test("other traps are not reported as fuel exhaustion", async () => {
  const { instance } = await WebAssembly.instantiate(instrumentFuel(await fixture("costs.wasm")));
  startFuel(instance, BIG);
  assert.throws(() => (instance.exports.down as (n: number) => void)(1e7), RangeError);
  const reading = readFuel(instance, BIG);
  assert.equal(reading.exhausted, false);
  assert.ok(reading.used > 0n);
});

Deno.test("a start section runs metered, from startFuel(), and every feature survives", async () => {
  const input = await fixture("features.wasm");
  const logged: number[] = [];
  const imports = { env: { base: 11, log: (n: number) => logged.push(n) } };
  const plain = (await WebAssembly.instantiate(input, imports)).instance;
  const expected = (plain.exports.run as () => number)();
  // The start function ran: `run` added 1000 to what it logged.
  assert.equal((logged[0]! + 1000) | 0, expected);

  const { instance } = await WebAssembly.instantiate(instrumentFuel(input), imports);
  assert.equal(typeof instance.exports[FUEL_START_EXPORT], "function");
  // The start function costs 2 units and finds 0: it traps at its entry check.
  assert.throws(() => startFuel(instance, 0n), WebAssembly.RuntimeError);
  assert.deepEqual(readFuel(instance, 0n), { used: 0n, remaining: -2n, exhausted: true });

  const fresh = (await WebAssembly.instantiate(instrumentFuel(input), imports)).instance;
  startFuel(fresh, 10_000n);
  assert.equal(readFuel(fresh, 10_000n).used, 2n);
  assert.equal((fresh.exports.run as () => number)(), expected);
  assert.deepEqual(logged, [logged[0], logged[0]]);
  assert.equal(readFuel(fresh, 10_000n).exhausted, false);
});

Deno.test("instrumentFuel() rejects what it cannot instrument with a clear error", async () => {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const withBody = (...code: number[]) =>
    new Uint8Array([
      ...header,
      ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00],
      ...[0x0a, code.length + 3, 0x01, code.length + 1, 0x00, ...code],
    ]);
  assert.throws(() => instrumentFuel("wasm" as unknown as Uint8Array), TypeError);
  assert.throws(() => instrumentFuel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), {
    name: "SyntaxError",
    message: "Cannot instrument module: not a WebAssembly binary (bad magic)",
  });
  assert.throws(() => instrumentFuel(new Uint8Array([...header.slice(0, 4), 0x0d, 0, 1, 0])), {
    name: "SyntaxError",
    message: /unsupported binary version/,
  });
  assert.throws(() => instrumentFuel(new Uint8Array([...header, 0x01, 0x05, 0x01])), {
    name: "SyntaxError",
    message: "Cannot instrument module: unexpected end of data at byte 10",
  });
  // try (exception handling) is refused, not passed through.
  assert.throws(() => instrumentFuel(withBody(0x06, 0x40, 0x0b, 0x0b)), {
    name: "SyntaxError",
    message: "Cannot instrument module: unsupported opcode 0x06 at byte 23",
  });
  assert.throws(() => instrumentFuel(withBody(0xfc, 0x7f, 0x0b)), {
    name: "SyntaxError",
    message: /unsupported opcode 0xfc 127/,
  });
  // Decodes fine but does not type-check.
  assert.throws(() => instrumentFuel(withBody(0x41, 0x01, 0x0b)), {
    name: "SyntaxError",
    message: "Cannot instrument module: it is not valid WebAssembly",
  });
  assert.throws(() => instrumentFuel(withBody(0x0b, 0x01)), {
    name: "SyntaxError",
    message: /code after the end of a function body/,
  });
  const once = instrumentFuel(await fixture("costs.wasm"));
  assert.throws(() => instrumentFuel(once), {
    name: "SyntaxError",
    message: "Cannot instrument module: it already exports '__phase_fuel' (instrumented twice?)",
  });
});

Deno.test("startFuel() and readFuel() refuse uninstrumented instances and bad limits", async () => {
  const { instance } = await WebAssembly.instantiate(await fixture("costs.wasm"));
  assert.throws(() => startFuel(instance, 10n), {
    name: "TypeError",
    message: "Cannot meter instance: it does not export '__phase_fuel' (not instrumented?)",
  });
  assert.throws(() => readFuel(instance, 10n), TypeError);
  const metered = await WebAssembly.instantiate(instrumentFuel(await fixture("costs.wasm")));
  assert.throws(() => startFuel(metered.instance, -1n), RangeError);
  assert.throws(() => startFuel(metered.instance, 2n ** 63n), RangeError);
  assert.throws(() => startFuel(metered.instance, 5 as unknown as bigint), RangeError);
});

Deno.test("FuelExhaustedError carries the limit and the trap", () => {
  const trap = new WebAssembly.RuntimeError("unreachable");
  const err = new FuelExhaustedError(42n, { cause: trap });
  assert.ok(err instanceof Error);
  assert.equal(err.cause, trap);
  assert.equal(err.message, "Cannot finish job: fuel exhausted after 42 units");
});

Deno.test("FuelCache instruments a module once, in memory and on disk", async () => {
  const dir = await mkdtemp(join(tmpdir(), "fuel-cache-"));
  try {
    const input = await fixture("costs.wasm");
    const expected = instrumentFuel(input);
    const cache = new FuelCache({ dir: join(dir, "sub") });
    const [a, b] = await Promise.all([cache.instrument(input), cache.instrument(input.slice())]);
    assert.equal(a, b);
    assert.deepEqual(a, expected);
    assert.equal(cache.instrumented, 1);
    const files = await readdir(join(dir, "sub"));
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^fuel-v2-[0-9a-f]{64}\.wasm$/);

    const second = new FuelCache({ dir: join(dir, "sub") });
    assert.deepEqual(await second.instrument(input), expected);
    assert.equal(second.instrumented, 0);

    // A damaged file is replaced, not used.
    await writeFile(join(dir, "sub", files[0]!), new Uint8Array([0, 97, 115, 109, 9]));
    const third = new FuelCache({ dir: join(dir, "sub") });
    assert.deepEqual(await third.instrument(input), expected);
    assert.equal(third.instrumented, 1);
    assert.deepEqual(await Deno.readFile(join(dir, "sub", files[0]!)), expected);
  } finally {
    await rm(dir, { recursive: true });
  }
});

Deno.test("FuelCache keeps at most maxEntries modules and rejects bad options", async () => {
  const cache = new FuelCache({ maxEntries: 1 });
  const costs = await fixture("costs.wasm");
  const bare = await fixture("nostart.wasm");
  await cache.instrument(costs);
  await cache.instrument(bare);
  await cache.instrument(costs);
  assert.equal(cache.instrumented, 3);
  await assert.rejects(() => cache.instrument(new Uint8Array([1])), SyntaxError);
  assert.throws(() => new FuelCache({ maxEntries: 0 }), RangeError);
  assert.throws(() => new FuelCache({ dir: "" }), TypeError);
  const aborted = AbortSignal.abort();
  await assert.rejects(() => cache.instrument(costs, { signal: aborted }), { name: "AbortError" });
  await assert.rejects(() => cache.instrument("x" as unknown as Uint8Array), TypeError);
});

Deno.test("instrumentFuel() with interrupts: same output, same fuel, and regular sched_yield calls", async () => {
  const wabt = await wabtInit();
  for (const [name, args] of [["words", []], ["sha256", ["1"]], ["fib", ["25"]]] as const) {
    const { input, plain, metered } = await runPlainAndMetered(name, args);
    let yields = 0;
    const interrupted = await runWasiStub(instrumentFuel(input, { interrupts: true }), {
      stdin: STDIN,
      args: [...args],
      fuel: BIG,
      onYield: () => yields++,
    });
    let checks = 0;
    const checked = await runWasiStub(instrumentFuel(input, { meter: false }), {
      stdin: STDIN,
      args: [...args],
      onYield: () => checks++,
    });
    for (const run of [interrupted, checked]) {
      assert.equal(run.trap, undefined, name);
      assert.equal(run.stdout, plain.stdout, name);
      assert.equal(run.exitCode, plain.exitCode, name);
    }
    // Interrupts change nothing in the count: fuel_used stays deterministic across modes.
    assert.deepEqual(interrupted.fuel, metered.fuel, name);
    // The first check point calls the hook, then one call per 2^22 units (2^16 check points).
    assert.ok(yields >= 1 && yields <= Number(metered.fuel!.used >> 22n) + 1, `${name} ${yields}`);
    assert.ok(checks >= 1, name);
    for (
      const out of [
        instrumentFuel(input, { interrupts: true }),
        instrumentFuel(input, { meter: false }),
      ]
    ) {
      const module = wabt.readWasm(out, { readDebugNames: false, tail_call: true, threads: true });
      try {
        assert.doesNotThrow(() => module.validate(), name);
      } finally {
        module.destroy();
      }
    }
  }
  // sha256 of 1 MiB runs long enough to be interrupted many times, metered or not.
  let yields = 0;
  await runWasiStub(instrumentFuel(await fixture("sha256.wasm"), { interrupts: true }), {
    args: ["1"],
    fuel: BIG,
    onYield: () => yields++,
  });
  assert.ok(yields > 2, String(yields));
});

Deno.test("an interrupt hook that throws stops an endless loop, metered or not", async () => {
  for (const options of [{ interrupts: true }, { meter: false }]) {
    let calls = 0;
    const run = await runWasiStub(instrumentFuel(await fixture("spin.wasm"), options), {
      ...("meter" in options ? {} : { fuel: BIG }),
      onYield: () => {
        if (++calls === 5) throw new Error("deadline");
      },
    });
    assert.equal(run.stdout, "spinning\n");
    assert.equal((run.trap as Error).message, "deadline");
    assert.equal(calls, 5);
  }
});

Deno.test("interrupts shift function indexes everywhere and keep the start function's place", async () => {
  const input = await fixture("features.wasm");
  const logged: number[] = [];
  let yields = 0;
  const imports = {
    env: { base: 11, log: (n: number) => logged.push(n) },
    wasi_snapshot_preview1: { sched_yield: () => (yields++, 0) },
  };
  const plain = (await WebAssembly.instantiate(input, imports)).instance;
  const expected = (plain.exports.run as () => number)();

  // Interrupts only: the start section stays (it ran during instantiation, with checks).
  const checked = instrumentFuel(input, { meter: false });
  const importsOf = (bytes: Uint8Array<ArrayBuffer>) =>
    WebAssembly.Module.imports(new WebAssembly.Module(bytes)).map((i) => `${i.module}.${i.name}`);
  assert.deepEqual(importsOf(checked), [
    "env.base",
    "env.log",
    "wasi_snapshot_preview1.sched_yield",
  ]);
  const a = (await WebAssembly.instantiate(checked, imports)).instance;
  assert.equal(a.exports[FUEL_START_EXPORT], undefined);
  assert.equal((a.exports.run as () => number)(), expected);
  assert.ok(yields >= 1);

  // Metered with interrupts: the start function is exported and runs from startFuel().
  const metered =
    (await WebAssembly.instantiate(instrumentFuel(input, { interrupts: true }), imports))
      .instance;
  startFuel(metered, 10_000n);
  assert.equal(readFuel(metered, 10_000n).used, 2n);
  assert.equal((metered.exports.run as () => number)(), expected);
  assert.equal(readFuel(metered, 10_000n).exhausted, false);

  // A module that imports sched_yield already keeps its imports: the hook is that import.
  const wabt = await wabtInit();
  const wat = wabt.parseWat(
    "own.wat",
    `(module
    (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
    (func (export "spin") (loop (br 0))))`,
  );
  const own = new Uint8Array(wat.toBinary({}).buffer);
  wat.destroy();
  const hooked = instrumentFuel(own, { meter: false });
  assert.deepEqual(importsOf(hooked), ["wasi_snapshot_preview1.sched_yield"]);
  let calls = 0;
  const { instance } = await WebAssembly.instantiate(hooked, {
    wasi_snapshot_preview1: {
      sched_yield: () => {
        if (++calls === 2) throw new Error("stop");
        return 0;
      },
    },
  });
  assert.throws(() => (instance.exports.spin as () => void)(), /stop/);
  // One of another type is refused rather than called wrongly.
  const wrong = wabt.parseWat(
    "wrong.wat",
    `(module
    (import "wasi_snapshot_preview1" "sched_yield" (func $y (param i32) (result i32))))`,
  );
  const bad = new Uint8Array(wrong.toBinary({}).buffer);
  wrong.destroy();
  assert.throws(() => instrumentFuel(bad, { meter: false }), /sched_yield is not \(\) -> i32/);
  assert.ok(WebAssembly.validate(instrumentFuel(bad)), "without interrupts it is left alone");
});

Deno.test("FuelCache runs a gate once per module and gate version, and keeps nothing it refused", async () => {
  const dir = await mkdtemp(join(tmpdir(), "fuel-gate-"));
  try {
    const input = await fixture("spin.wasm");
    const checked: Uint8Array[] = [];
    const gate = (version: string) => ({ version, check: (m: Uint8Array) => void checked.push(m) });
    const first = await new FuelCache({ dir }).instrument(input, { meter: false, gate: gate("7") });
    assert.deepEqual(first, instrumentFuel(input, { meter: false }));
    assert.deepEqual(checked, [input]);
    // Found again (another cache, as in a new process): the entry is the gate's verdict.
    const again = new FuelCache({ dir });
    assert.deepEqual(await again.instrument(input, { meter: false, gate: gate("7") }), first);
    assert.equal(again.instrumented, 0);
    assert.equal(checked.length, 1);
    // New rules: checked again; an entry made without a gate is never taken for a verdict.
    await again.instrument(input, { meter: false, gate: gate("8") });
    await again.instrument(input, { meter: false });
    assert.equal(checked.length, 2);
    const names = (await readdir(dir)).sort().map((n) => n.replace(/-[0-9a-f]{64}\.wasm$/, ""));
    assert.deepEqual(names, ["checks-gate7-v2.3", "checks-gate8-v2.3", "checks-v2.3"]);

    // A module the gate refuses: its error, nothing instrumented, nothing kept.
    const refusing = {
      version: "9",
      check: () => {
        throw new RangeError("Cannot run module: refused");
      },
    };
    const cache = new FuelCache({ dir });
    await assert.rejects(
      cache.instrument(input, { gate: refusing }),
      /^RangeError: Cannot run module: refused$/,
    );
    assert.equal(cache.instrumented, 0);
    assert.equal((await readdir(dir)).length, 3);
    await assert.rejects(
      cache.instrument(input, { gate: { version: "a/b", check: () => {} } }),
      /^TypeError: Cannot use gate version 'a\/b': not 1-32 word characters$/,
    );
  } finally {
    await rm(dir, { recursive: true });
  }
});

Deno.test("FuelCache keeps each instrumentation kind under its own versioned name", async () => {
  const dir = await mkdtemp(join(tmpdir(), "fuel-kinds-"));
  try {
    const cache = new FuelCache({ dir });
    const input = await fixture("spin.wasm");
    const metered = await cache.instrument(input);
    const interrupted = await cache.instrument(input, { interrupts: true });
    const checked = await cache.instrument(input, { meter: false });
    assert.deepEqual(metered, instrumentFuel(input));
    assert.deepEqual(interrupted, instrumentFuel(input, { interrupts: true }));
    assert.deepEqual(checked, instrumentFuel(input, { meter: false }));
    assert.equal(cache.instrumented, 3);
    const names = (await readdir(dir)).sort().map((n) => n.replace(/-[0-9a-f]{64}\.wasm$/, ""));
    assert.deepEqual(names, ["checks-v2.3", "fuel-interrupts-v2.3", "fuel-v2"]);
  } finally {
    await rm(dir, { recursive: true });
  }
});
