import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type JobOutcome, runJob, type RunJobOptions } from "./run_job.ts";
import { _spawnSandboxProcess, _startSandboxWorker, SANDBOX_HEAP_MIB } from "./sandbox_spawn.ts";
import type { SandboxPool } from "./sandbox_pool.ts";
import {
  alternatingWrites,
  exitWith,
  gcBomb,
  manyIovecs,
  multiMemory,
  tableGrower,
  wat,
} from "./testdata/hostile_modules.ts";
import { sendJson } from "../tests/_child_io.ts";
import { countingListener } from "../tests/_counting_listener.ts";

const here = (path: string) => new URL(path, import.meta.url);
const load = (path: string) => Deno.readFile(here(path));
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (s: string) => new TextEncoder().encode(s);

const HELLO = await load("../examples/hello.wasm");
const PROBE = await load("testdata/wasi_probe.wasm");
const SANDBOXES = ["worker", "process"] as const;

function assertError(outcome: JobOutcome, kind: string, pattern: RegExp): void {
  assert.equal(outcome.error?.kind, kind, `outcome: ${JSON.stringify(outcome.error)}`);
  assert.match(outcome.error.message, pattern);
  assert.doesNotMatch(outcome.error.message, /\n|\.$/, "one line, no trailing period");
  assert.equal(outcome.completion, kind === "output_limit" ? "length" : "error");
}

for (const sandbox of SANDBOXES) {
  const run = (module: Uint8Array, options: RunJobOptions = {}) =>
    runJob(module, { sandbox, ...options });

  Deno.test(`runJob() [${sandbox}] runs hello.wasm: reverses stdin, exit 0, stop`, async () => {
    const outcome = await run(HELLO, { input: bytes("Hello, World") });
    assert.equal(text(outcome.stdout), "dlroW ,olleH");
    assert.equal(outcome.stderr.length, 0);
    assert.equal(outcome.exitCode, 0);
    assert.equal(outcome.completion, "stop");
    assert.equal(outcome.error, undefined);
    assert.ok(Number.isInteger(outcome.durationMs) && outcome.durationMs >= 0);
    // Linear memory (whole pages) plus 24 bytes per table entry.
    assert.ok(outcome.peakMemoryBytes >= 65536, String(outcome.peakMemoryBytes));
    assert.equal(outcome.peakMemoryBytes % 65536 % 24, 0);
  });

  Deno.test(`runJob() [${sandbox}] returns the proc_exit code with completion stop`, async () => {
    const outcome = await run(PROBE, { args: ["exit", "42"] });
    assert.equal(outcome.exitCode, 42);
    assert.equal(outcome.completion, "stop");
    assert.equal(outcome.error, undefined);
  });

  Deno.test(`runJob() [${sandbox}] passes exactly the given args and env`, async () => {
    const args = await run(PROBE, { args: ["args", "two words", "ünï"], argv0: "probe" });
    assert.equal(text(args.stdout), "probe\nargs\ntwo words\nünï\n");
    const env = await run(PROBE, { args: ["env"], env: { A: "1", B: "x=y" } });
    assert.equal(text(env.stdout), "A=1\nB=x=y\n");
    const none = await run(PROBE, { args: ["env"] });
    assert.equal(text(none.stdout), "", "nothing inherited from the host");
  });

  Deno.test(`runJob() [${sandbox}] keeps stdout and stderr apart`, async () => {
    const outcome = await run(PROBE, { args: ["stderr"] });
    assert.equal(text(outcome.stdout), "to stdout");
    assert.equal(text(outcome.stderr), "to stderr");
  });

  Deno.test(`runJob() [${sandbox}] round-trips 1 MiB of binary stdin`, async () => {
    const input = new Uint8Array(1 << 20).map((_, i) => (i * 7919) & 0xff);
    const outcome = await run(PROBE, { args: ["cat"], input });
    assert.deepEqual(outcome.stdout, input);
  });

  Deno.test(`runJob() [${sandbox}] gives clocks, random and poll_oneoff sleeps`, async () => {
    assert.equal(text((await run(PROBE, { args: ["clock"] })).stdout), "realtime ok\n");
    const [a, b] = await Promise.all([
      run(PROBE, { args: ["random"] }),
      run(PROBE, { args: ["random"] }),
    ]);
    assert.match(text(a.stdout), /^[0-9a-f]{64}\n$/);
    assert.notEqual(text(a.stdout), text(b.stdout));
    const slept = await run(PROBE, { args: ["sleep", "30"] });
    assert.equal(text(slept.stdout), "sleeping 30 ms\nslept >= 30 ms\n");
    assert.ok(slept.durationMs >= 30);
  });

  Deno.test(`runJob() [${sandbox}] gives the module no filesystem`, async () => {
    const outcome = await run(PROBE, { args: ["fs"] });
    const lines = text(outcome.stdout).trim().split("\n");
    assert.equal(lines.length, 5);
    for (const line of lines) assert.match(line, /: failed/);
    assert.equal(outcome.exitCode, 0);
    for (const path of ["probe-created.txt", "/tmp/probe-created.txt"]) {
      await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    }
  });

  Deno.test(`runJob() [${sandbox}] reports a trap`, async () => {
    const outcome = await run(await load("testdata/trap.wasm"));
    assertError(outcome, "trap", /^Cannot finish job: module trapped: unreachable/);
    assert.equal(outcome.exitCode, null);
  });

  Deno.test(`runJob() [${sandbox}] reports a stack overflow`, async () => {
    const outcome = await run(await load("testdata/stack_overflow.wasm"));
    assertError(outcome, "stack_overflow", /stack overflow/);
  });

  Deno.test(`runJob() [${sandbox}] reports a module without _start`, async () => {
    const outcome = await run(await load("testdata/no_start.wasm"));
    assertError(outcome, "no_start", /exports no '_start' function/);
  });

  Deno.test(`runJob() [${sandbox}] reports non-WASM, truncated and empty bytes`, async () => {
    assertError(await run(bytes("#!/bin/sh\necho hi\n")), "invalid_module", /bad magic number/);
    assertError(await run(HELLO.slice(0, 1000)), "invalid_module", /truncated binary/);
    assertError(await run(new Uint8Array()), "invalid_module", /not a WebAssembly binary/);
    // Well-framed, but its one function body pops from an empty stack: fails validation.
    const invalid = new Uint8Array([
      ...[0, 97, 115, 109, 1, 0, 0, 0],
      ...[1, 4, 1, 0x60, 0, 0],
      ...[3, 2, 1, 0],
      ...[10, 5, 1, 3, 0, 0x6a, 0x0b],
    ]);
    assertError(await run(invalid), "invalid_module", /^Cannot compile module: /);
  });

  Deno.test(`runJob() [${sandbox}] refuses a module whose initial memory is over the cap`, async () => {
    const outcome = await run(await load("testdata/big_memory.wasm"));
    assertError(outcome, "memory_limit", /initial memory of 314572800 bytes exceeds/);
  });

  Deno.test(`runJob() [${sandbox}] caps a memory bomb at the cap (malloc until NULL)`, async () => {
    const cap = 16 * 2 ** 20;
    const outcome = await run(await load("testdata/memory_bomb.wasm"), { memoryBytes: cap });
    assertError(outcome, "memory_limit", /reached the 16777216 byte cap.*exit code 1/);
    assert.equal(outcome.exitCode, 1);
    // The cap of linear memory, plus its small function table (24 bytes an entry).
    assert.ok(outcome.peakMemoryBytes - cap >= 0 && outcome.peakMemoryBytes - cap < 24 * 64);
    assert.equal((outcome.peakMemoryBytes - cap) % 24, 0);
    assert.match(text(outcome.stderr), /^out of memory after \d+ KiB\n$/);
  });

  Deno.test(`runJob() [${sandbox}] caps an imported memory without a maximum`, async () => {
    const outcome = await run(await load("testdata/grow.wasm"), { memoryBytes: 1 << 20 });
    assert.equal(outcome.exitCode, 16, "grew to exactly 16 pages, then memory.grow returned -1");
    assert.equal(outcome.peakMemoryBytes, 1 << 20);
    assertError(outcome, "memory_limit", /reached the 1048576 byte cap/);
  });

  Deno.test(`runJob() [${sandbox}] stops at the output cap with exactly the cap`, async () => {
    const outcome = await run(await load("testdata/huge_output.wasm"), {
      maxOutputBytes: 100_001,
    });
    assertError(outcome, "output_limit", /output exceeded the 100001 byte cap/);
    assert.equal(outcome.stdout.length, 100_001);
    assert.equal(text(outcome.stdout.subarray(0, 4)), "y\ny\n");
    assert.equal(outcome.exitCode, null);
  });

  Deno.test(`runJob() [${sandbox}] does not count output exactly at the cap as a breach`, async () => {
    const outcome = await run(HELLO, { input: bytes("abc"), maxOutputBytes: 3 });
    assert.equal(outcome.completion, "stop");
    assert.equal(text(outcome.stdout), "cba");
  });

  Deno.test(`runJob() [${sandbox}] times out a sleeping job and keeps its output`, async () => {
    // 1.5 s leaves a loaded machine time to start the sandbox and reach the print.
    const outcome = await run(PROBE, { args: ["sleep", "60000"], timeoutMs: 1500 });
    assertError(outcome, "timeout", /^Cannot finish job: timed out after 1500 ms$/);
    assert.equal(text(outcome.stdout), "sleeping 60000 ms\n");
    assert.equal(outcome.exitCode, null);
    assert.ok(outcome.durationMs >= 1495 && outcome.durationMs < 10_000);
  });

  Deno.test(`runJob() [${sandbox}] is cancelled by its signal`, async () => {
    const controller = new AbortController();
    const pending = run(PROBE, { args: ["sleep", "60000"], signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    const outcome = await pending;
    assert.equal(outcome.completion, "cancelled");
    assert.equal(outcome.error?.kind, "cancelled");
    const before = await run(HELLO, { signal: AbortSignal.abort() });
    assert.equal(before.completion, "cancelled");
  });

  Deno.test(`runJob() [${sandbox}] keeps concurrent jobs apart`, async () => {
    const inputs = ["one", "two", "three", "four"];
    const outcomes = await Promise.all(inputs.map((s) => run(HELLO, { input: bytes(s) })));
    assert.deepEqual(
      outcomes.map((o) => text(o.stdout)),
      inputs.map((s) => [...s].reverse().join("")),
    );
  });
}

// Only the process sandbox: Deno 2.9's worker.terminate() does not stop a worker that never
// yields (its thread keeps spinning), see docs/runtime.md "Sandbox model".
Deno.test("runJob() [process] kills a busy infinite loop at the timeout", async () => {
  const module = await load("testdata/infinite_loop.wasm");
  const outcome = await runJob(module, { sandbox: "process", timeoutMs: 500 });
  assertError(outcome, "timeout", /timed out after 500 ms/);
  assert.ok(outcome.durationMs >= 495 && outcome.durationMs < 10_000);
});

Deno.test("runJob() [process] keeps the output written before a busy loop is killed", async () => {
  const outcome = await runJob(PROBE, { sandbox: "process", args: ["spin"], timeoutMs: 1500 });
  assertError(outcome, "timeout", /timed out after 1500 ms/);
  assert.equal(text(outcome.stdout), "spinning\n");
});

Deno.test("runJob() reverses UTF-8 by code point and adds no newline", async () => {
  const outcome = await runJob(HELLO, { input: bytes("añb€c😀\n") });
  assert.equal(text(outcome.stdout), "\n😀c€bña");
});

Deno.test("runJob() refuses a module over maxModuleBytes before compiling", async () => {
  const outcome = await runJob(HELLO, { maxModuleBytes: 1000 });
  assertError(outcome, "module_too_large", /16977 bytes exceed the 1000 byte cap|exceed the 1000/);
});

Deno.test("runJob() runs the sha256 example to the value node:crypto computes", async () => {
  const mib = 1;
  const rounds = 3;
  const data = new Uint8Array(mib << 20);
  let x = 1;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  let d: Uint8Array = new Uint8Array(32);
  for (let r = 0; r < rounds; r++) d = createHash("sha256").update(d).update(data).digest();
  const hex = d.toHex();
  const outcome = await runJob(await load("../examples/sha256.wasm"), {
    args: [String(mib), String(rounds)],
  });
  assert.equal(text(outcome.stdout), `${hex}  ${rounds} x ${mib} MiB\n`);
});

Deno.test("runJob() throws for bad options", async () => {
  await assert.rejects(runJob(HELLO, { memoryBytes: 1000 }), RangeError);
  await assert.rejects(runJob(HELLO, { memoryBytes: 2 ** 33 }), RangeError);
  await assert.rejects(runJob(HELLO, { timeoutMs: 0 }), RangeError);
  await assert.rejects(runJob(HELLO, { maxOutputBytes: -1 }), RangeError);
  await assert.rejects(runJob(HELLO, { args: ["a\0b"] }), TypeError);
  await assert.rejects(runJob(HELLO, { env: { "A=B": "1" } }), TypeError);
  await assert.rejects(runJob(HELLO, { sandbox: "vm" as "worker" }), TypeError);
  await assert.rejects(runJob("x" as unknown as Uint8Array), TypeError);
});

// The sandbox's own JavaScript context: the probe runs where sandbox code runs, started by the
// same functions run_job.ts uses, and must be denied everything this test process is allowed.
async function withProbeTargets(
  fn: (params: { file: string; port: number }, accepted: () => number) => Promise<void>,
): Promise<void> {
  const listener = countingListener();
  const dir = await Deno.makeTempDir();
  const file = `${dir}/secret.txt`;
  await Deno.writeTextFile(file, "secret");
  try {
    assert.equal(await Deno.readTextFile(file), "secret", "this process itself may read");
    await fn({ file, port: listener.port }, listener.accepted);
    await assert.rejects(Deno.stat(`${file}.probe-written`), Deno.errors.NotFound);
  } finally {
    await listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function assertDeniedEverything(report: Record<string, string>): void {
  for (const what of ["read", "write", "connect", "listen", "env", "run", "fetch"]) {
    assert.ok(
      report[what] === "NotCapable" || report[what] === "PermissionDenied",
      `${what} must be denied, got ${report[what]}`,
    );
  }
  for (const name of ["read", "write", "net", "env", "run", "ffi", "sys", "import"]) {
    assert.notEqual(report[`query_${name}`], "granted", `permission ${name} must not be granted`);
  }
}

Deno.test("sandbox worker has no permission: cannot read, write, connect, run", async () => {
  await withProbeTargets(async (params, accepted) => {
    const worker = _startSandboxWorker(here("testdata/probe_permissions.ts"));
    try {
      const report = await new Promise<Record<string, string>>((resolve, reject) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => (e.preventDefault(), reject(new Error(e.message)));
        worker.postMessage(params);
      });
      assertDeniedEverything(report);
      assert.equal(accepted(), 0, "no connection reached the listener");
    } finally {
      worker.terminate();
    }
  });
});

Deno.test("sandbox process has no permission: cannot read, write, connect, run", async () => {
  await withProbeTargets(async (params, accepted) => {
    const child = _spawnSandboxProcess(here("testdata/probe_permissions.ts"));
    const { code, out, err } = await sendJson(child, params);
    assert.equal(code, 0, err);
    assertDeniedEverything(JSON.parse(out));
    assert.equal(accepted(), 0, "no connection reached the listener");
  });
});

// Engine bounds (issue 15): hostile modules that are valid WebAssembly.
for (const sandbox of SANDBOXES) {
  const run = (module: Uint8Array, options: RunJobOptions = {}) =>
    runJob(module, { sandbox, ...options });

  Deno.test(`runJob() [${sandbox}] refuses a WasmGC module as invalid_module before it runs`, async () => {
    const outcome = await run(gcBomb(), { memoryBytes: 16 * 2 ** 20 });
    assertError(outcome, "invalid_module", /^Cannot run module: it uses GC types/);
    assert.equal(outcome.peakMemoryBytes, 0);
  });

  Deno.test(`runJob() [${sandbox}] refuses 32 memories as invalid_module`, async () => {
    const outcome = await run(multiMemory(32), { memoryBytes: 16 * 2 ** 20 });
    assertError(outcome, "invalid_module", /multiple memories/);
  });

  Deno.test(`runJob() [${sandbox}] refuses env and non-WASI imports as invalid_module, never a trap`, async () => {
    for (
      const [module, name] of [
        ["env", "abort"],
        ["wasi_snapshot_preview1", "constructor"],
        ["wasi_snapshot_preview1", "toString"],
        ["wasi_snapshot_preview1", "__proto__"],
        ["wasi_snapshot_preview1", "hasOwnProperty"],
      ]
    ) {
      const bytes = await wat(`(module
        (import "${module}" "${name}" (func $f (result i32)))
        (func (export "_start") (drop (call $f))))`);
      assertError(await run(bytes), "invalid_module", new RegExp(`'${module}\\.${name}'`));
    }
  });

  Deno.test(`runJob() [${sandbox}] answers fd_write with 4 million iovecs with EINVAL`, async () => {
    const outcome = await run(await manyIovecs(4_000_000));
    assert.equal(outcome.exitCode, 28, JSON.stringify(outcome.error));
    assert.equal(outcome.stdout.length, 0);
  });

  Deno.test(`runJob() [${sandbox}] answers absurd random_get and poll_oneoff lengths with EFAULT`, async () => {
    const random = await run(await exitWith("(call $random_get (i32.const 0) (i32.const -1))"));
    assert.equal(random.exitCode, 21);
    const poll = await run(
      await exitWith("(call $poll (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 0))"),
    );
    assert.equal(poll.exitCode, 21);
  });

  Deno.test(`runJob() [${sandbox}] gets 1-byte writes alternating stdout and stderr whole`, async () => {
    const outcome = await run(await alternatingWrites(300_000));
    assert.equal(outcome.completion, "stop");
    assert.equal(outcome.stdout.length, 300_000);
    assert.equal(outcome.stderr.length, 300_000);
    assert.ok(outcome.stdout.every((b) => b === 0x6f) && outcome.stderr.every((b) => b === 0x65));
  });

  Deno.test(`runJob() [${sandbox}] caps a table and counts it in peakMemoryBytes`, async () => {
    const cap = 16 * 2 ** 20;
    const tableCap = Math.floor(cap / 16 / 24);
    const outcome = await run(await tableGrower(), { memoryBytes: cap });
    const size = new DataView(outcome.stdout.buffer, outcome.stdout.byteOffset).getUint32(0, true);
    assert.ok(size <= tableCap && size > tableCap - 1000, `table grew to ${size}`);
    assertError(outcome, "memory_limit", /its table reached the 43690 entry cap/);
    assert.equal(outcome.peakMemoryBytes, 65536 + size * 24);
  });

  Deno.test(`runJob() [${sandbox}] refuses an initial table over the table cap as memory_limit`, async () => {
    const outcome = await run(
      await wat(`(module (table 100000 funcref) (func (export "_start")))`),
      {
        memoryBytes: 2 ** 20,
      },
    );
    assertError(outcome, "memory_limit", /initial table of 100000 entries exceeds the 2730 entry/);
  });
}

Deno.test("sandbox process runs with a bounded V8 heap and dies at it", async () => {
  const child = _spawnSandboxProcess(here("testdata/probe_heap.ts"));
  await child.stdin.close();
  const [, err, status] = await Promise.all([
    new Response(child.stdout).arrayBuffer(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  const limit = Number(/heap_size_limit (\d+)/.exec(err)?.[1]);
  assert.ok(limit > 0 && limit <= 2 * SANDBOX_HEAP_MIB * 2 ** 20, `heap limit ${limit}`);
  assert.notEqual(status.code, 0);
  assert.match(err, /Fatal JavaScript out of memory/);
});

Deno.test("runJob() [process] reports a sandbox that dies at its heap limit as memory_limit", async () => {
  // A stand-in pool hands out the heap probe instead of a real sandbox process.
  const closing: Promise<void>[] = [];
  const pool = {
    take: () => _spawnSandboxProcess(here("testdata/probe_heap.ts")),
    _track: (p: Promise<void>) => void closing.push(p),
  } as unknown as SandboxPool;
  const outcome = await runJob(HELLO, { sandbox: "process", pool });
  await Promise.all(closing);
  assertError(
    outcome,
    "memory_limit",
    /reached its 128 MiB engine heap limit \(Fatal JavaScript out of memory/,
  );
});
