import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import wabtInit from "wabt";
import { runJob } from "./run_job.ts";
import { _WarmSandbox, SandboxPool } from "./sandbox_pool.ts";
import { checkSandboxConfinement } from "./sandbox_spawn.ts";
import { decodeFileTree, encodeFileTree, makeFileTree } from "./file_tree.ts";
import { MAX_FRAME_BYTES } from "./sandbox_frames.ts";
import { sleep } from "../util/sleep.ts";
import { generateKeyPair, signMessage } from "./ed25519.ts";

const here = (path: string) => new URL(path, import.meta.url);
const HELLO = await Deno.readFile(here("../examples/hello.wasm"));
const LOOP = await Deno.readFile(here("./testdata/infinite_loop.wasm"));
const TRAP = await Deno.readFile(here("./testdata/trap.wasm"));
const GROW = await Deno.readFile(here("./testdata/grow.wasm"));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * A probe of what one job leaves for the next: it reports, as 12 bytes on stdout, memory byte
 * 1024, a mutable global, its table's size, argc, the environment's size, the bytes read from
 * stdin and (u32le at 8) the job's process-time clock in ms; then it leaves traces of its own
 * (byte 1024 = 0x42, the global = 7, the table grown by 3, stdin echoed to stderr) and keeps
 * calling the host until its clock passes 300 ms.
 */
const PROBE_WAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (table $t 1 funcref)
  (func $clock_ms (result i32)
    (drop (call $clock (i32.const 2) (i64.const 0) (i32.const 512)))
    (i32.wrap_i64 (i64.div_u (i64.load (i32.const 512)) (i64.const 1000000))))
  (func (export "_start")
    (i32.store8 (i32.const 64) (i32.load8_u (i32.const 1024)))
    (i32.store8 (i32.const 65) (global.get $g))
    (i32.store8 (i32.const 66) (table.size $t))
    (drop (call $args (i32.const 256) (i32.const 260)))
    (i32.store8 (i32.const 67) (i32.load (i32.const 256)))
    (drop (call $env (i32.const 256) (i32.const 260)))
    (i32.store8 (i32.const 68) (i32.load (i32.const 256)))
    (i32.store (i32.const 16) (i32.const 2048))
    (i32.store (i32.const 20) (i32.const 1000))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 32)))
    (i32.store8 (i32.const 69) (i32.load (i32.const 32)))
    (i32.store (i32.const 72) (call $clock_ms))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
    (i32.store8 (i32.const 1024) (i32.const 0x42))
    (global.set $g (i32.const 7))
    (drop (table.grow $t (ref.null func) (i32.const 3)))
    (i32.store (i32.const 16) (i32.const 2048))
    (i32.store (i32.const 20) (i32.load8_u (i32.const 69)))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 32)))
    (loop $spin (br_if $spin (i32.lt_u (call $clock_ms) (i32.const 300))))))`;

async function wat(source: string): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const module = wabt.parseWat("probe.wat", source);
  try {
    return module.toBinary({}).buffer;
  } finally {
    module.destroy();
  }
}

const PROBE = await wat(PROBE_WAT);

/** The probe's report. */
function report(stdout: Uint8Array) {
  assert.equal(stdout.length, 12, `12 bytes of report, got ${stdout.length}`);
  const [memory, global, table, argc, envc, stdin] = stdout;
  const clockMs = new DataView(stdout.buffer, stdout.byteOffset).getUint32(8, true);
  return { memory, global, table, argc, envc, stdin, clockMs };
}

/** Wait (without a time limit of its own) until `ok()` holds. */
async function until(ok: () => boolean): Promise<void> {
  while (!ok()) await sleep(20);
}

Deno.test("SandboxPool: a job sees nothing of an earlier job in the same warm sandbox", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const first = await runJob(PROBE, {
    sandbox: "process",
    pool,
    input: enc("secret-one"),
    args: ["a", "b"],
    env: { X: "1", Y: "2" },
  });
  assert.equal(first.completion, "stop", first.error?.message ?? "");
  assert.deepEqual({ ...report(first.stdout), clockMs: 0 }, {
    memory: 0,
    global: 0,
    table: 1,
    argc: 3,
    envc: 2,
    stdin: 10,
    clockMs: 0,
  });
  assert.equal(dec(first.stderr), "secret-one");
  const second = await runJob(PROBE, { sandbox: "process", pool });
  assert.equal(second.completion, "stop", second.error?.message ?? "");
  const seen = report(second.stdout);
  // Fresh memory, globals and table; a fresh WASI host: its own args, env, stdin, clock.
  assert.deepEqual({ ...seen, clockMs: 0 }, {
    memory: 0,
    global: 0,
    table: 1,
    argc: 1,
    envc: 0,
    stdin: 0,
    clockMs: 0,
  });
  // The first job's clock ran past 300 ms; a clock carried over would start there.
  assert.ok(seen.clockMs < 300, `the second job's clock starts afresh, read ${seen.clockMs} ms`);
  assert.equal(second.stderr.length, 0);
  // Same process, and the module crossed the pipe once: the second job ran the cached module.
  assert.equal(pool.started, 1);
  assert.equal(pool.moduleBytesSent, PROBE.length);
});

Deno.test("SandboxPool: a different memory cap, or another module, is sent and compiled anew", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const run = (module: Uint8Array, memoryBytes?: number) =>
    runJob(module, {
      sandbox: "process",
      pool,
      input: enc("xy"),
      ...(memoryBytes ? { memoryBytes } : {}),
    });
  assert.equal(dec((await run(HELLO)).stdout), "yx");
  assert.equal(dec((await run(HELLO)).stdout), "yx");
  assert.equal(pool.moduleBytesSent, HELLO.length);
  assert.equal(dec((await run(HELLO, 1 << 20)).stdout), "yx");
  assert.equal(pool.moduleBytesSent, 2 * HELLO.length);
  // The same bytes in another array: keyed by content, not by array.
  assert.equal(dec((await run(HELLO.slice())).stdout), "yx");
  assert.equal(pool.moduleBytesSent, 2 * HELLO.length);
  assert.equal(pool.started, 1);
});

for (
  const [what, module, options, kind] of [
    ["times out", LOOP, { timeoutMs: 500 }, "timeout"],
    ["traps", TRAP, {}, "trap"],
    ["exceeds its memory cap", GROW, { memoryBytes: 1 << 20 }, "memory_limit"],
  ] as const
) {
  Deno.test(`SandboxPool: a job that ${what} gets its sandbox replaced; a job beside it finishes`, async () => {
    await using pool = new SandboxPool({ size: 2 });
    await until(() => pool.idle === 2);
    const before = pool.pids;
    const [bad, good] = await Promise.all([
      runJob(module, { sandbox: "process", pool, ...options }),
      runJob(PROBE, { sandbox: "process", pool, input: enc("fine") }),
    ]);
    assert.equal(bad.error?.kind, kind);
    assert.equal(good.completion, "stop", good.error?.message ?? "");
    assert.equal(dec(good.stderr), "fine");
    await until(() => pool.pids.length === 2 && pool.idle === 2);
    const after = pool.pids;
    assert.equal(pool.started, 3, "one replacement");
    assert.equal(after.filter((pid) => before.includes(pid)).length, 1, "one process kept");
    const next = await runJob(HELLO, { sandbox: "process", pool, input: enc("ok") });
    assert.equal(dec(next.stdout), "ko");
  });
}

Deno.test("SandboxPool recycles a sandbox after jobsPerSandbox jobs", async () => {
  {
    await using pool = new SandboxPool({ size: 1, jobsPerSandbox: 3 });
    for (let i = 0; i < 7; i++) {
      const outcome = await runJob(HELLO, { sandbox: "process", pool, input: enc(`j${i}`) });
      assert.equal(dec(outcome.stdout), `${i}j`);
    }
    assert.ok(pool.started >= 3, `7 jobs at 3 a process need 3 processes, started ${pool.started}`);
  }
  {
    await using pool = new SandboxPool({ size: 1 });
    for (let i = 0; i < 7; i++) await runJob(HELLO, { sandbox: "process", pool });
    assert.equal(pool.started, 1);
  }
});

Deno.test("SandboxPool recycles a sandbox after compiledBytesPerSandbox bytes", async () => {
  await using pool = new SandboxPool({ size: 1, compiledBytesPerSandbox: HELLO.length + 1 });
  await runJob(HELLO, { sandbox: "process", pool });
  await runJob(HELLO, { sandbox: "process", pool }); // cached: nothing compiled
  assert.equal(pool.started, 1);
  await runJob(HELLO, { sandbox: "process", pool, memoryBytes: 1 << 20 }); // compiled: over M
  await runJob(HELLO, { sandbox: "process", pool });
  assert.equal(pool.started, 2);
  assert.throws(() => new SandboxPool({ jobsPerSandbox: 0 }), /jobsPerSandbox must be/);
});

Deno.test("SandboxPool replaces a sandbox killed -9 while idle", async () => {
  await using pool = new SandboxPool({ size: 1 });
  assert.equal(
    dec((await runJob(HELLO, { sandbox: "process", pool, input: enc("ab") })).stdout),
    "ba",
  );
  const [pid] = pool.pids;
  assert.ok(pid);
  Deno.kill(pid, "SIGKILL");
  await until(() => pool.pids.length === 1 && pool.pids[0] !== pid);
  const outcome = await runJob(HELLO, { sandbox: "process", pool, input: enc("cd") });
  assert.equal(dec(outcome.stdout), "dc");
  assert.equal(pool.started, 2);
});

Deno.test("SandboxPool runs a job handed a warm sandbox that had just died on a fresh one", async () => {
  // Unconfined, the PID is deno's own: once killed it can say nothing more. (Confined, it is the
  // launcher's, and deno inside may still take the job before bubblewrap's parent-death signal.)
  await using pool = new SandboxPool({ size: 1, confinement: "off" });
  await runJob(HELLO, { sandbox: "process", pool });
  const [pid] = pool.pids;
  Deno.kill(pid!, "SIGKILL");
  // At once: the pool has not seen the death yet and hands out the dead process.
  const outcome = await runJob(PROBE, { sandbox: "process", pool, input: enc("again") });
  assert.equal(outcome.completion, "stop", outcome.error?.message ?? "");
  assert.equal(dec(outcome.stderr), "again");
  assert.ok(!pool.pids.includes(pid!));
});

Deno.test("SandboxPool: pool size defaults to the number of cores", async () => {
  await using pool = new SandboxPool();
  assert.equal(pool.pids.length, Math.min(navigator.hardwareConcurrency, 64));
});

Deno.test("SandboxPool.close() waits for a busy job, ends every process, and refuses after", async () => {
  const pool = new SandboxPool({ size: 2 });
  const busy = runJob(LOOP, { sandbox: "process", pool, timeoutMs: 400 });
  await sleep(50);
  const closing = pool.close();
  assert.equal((await busy).error?.kind, "timeout");
  await closing;
  await pool.close();
  assert.equal(pool.idle, 0);
  assert.deepEqual(pool.pids, []);
  assert.throws(() => pool.take(), /pool is closed/);
  await assert.rejects(() => runJob(HELLO, { sandbox: "process", pool }), /pool is closed/);
  assert.throws(() => new SandboxPool({ size: -1 }), RangeError);
});

Deno.test("SandboxPool: a sandbox that sends a frame over the cap is killed, its job fails", async () => {
  await using pool = new SandboxPool({ size: 0, _entry: here("testdata/probe_big_frame.ts") });
  const outcome = await runJob(HELLO, { sandbox: "process", pool });
  assert.equal(outcome.error?.kind, "trap");
  assert.match(outcome.error?.message ?? "", /over the 1048576 byte cap/);
});

Deno.test("SandboxPool: a warm sandbox that dies at its heap limit reports memory_limit", async () => {
  await using pool = new SandboxPool({ size: 0, _entry: here("testdata/probe_heap.ts") });
  const outcome = await runJob(HELLO, { sandbox: "process", pool });
  assert.equal(outcome.error?.kind, "memory_limit");
  assert.match(outcome.error?.message ?? "", /engine heap limit \(Fatal JavaScript out of memory/);
});

/**
 * What the kernel says of the `deno` processes below `pid` (Deno guards /proc, so a shell reads
 * it): lines `host <ns> <link>`, then per deno `deno <ns> <link>` and its status flags.
 */
async function inspectSandbox(pid: number): Promise<string> {
  const script = `
    for ns in net mnt pid user; do echo "host $ns $(readlink /proc/$$/ns/$ns)"; done
    pids=$1; all=""
    while [ -n "$pids" ]; do
      next=""
      for p in $pids; do next="$next $(cat /proc/$p/task/$p/children 2>/dev/null)"; done
      all="$all $next"; pids=$(echo $next)
    done
    for p in $all; do
      [ "$(readlink /proc/$p/exe)" = "$2" ] || continue
      for ns in net mnt pid user; do echo "deno $ns $(readlink /proc/$p/ns/$ns)"; done
      grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/$p/status
    done`;
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", script, "sh", String(pid), Deno.execPath()],
  }).output();
  return new TextDecoder().decode(out.stdout);
}

const confined = checkSandboxConfinement();
const ci = Deno.env.get("CI") === "true";
if (!confined.confined && !ci) {
  console.log(
    `sandbox_pool_test: confinement skipped: ${confined.reason} (apt-get install bubblewrap)`,
  );
}

Deno.test({
  name: "SandboxPool warm processes run in their own network, mount and PID namespaces",
  ignore: !confined.confined && !ci,
  async fn() {
    await using pool = new SandboxPool({ size: 1 });
    assert.deepEqual(pool.confinement, { confined: true });
    // After a job: deno is running inside by then, and stays for the next one.
    await runJob(HELLO, { sandbox: "process", pool });
    const [pid] = pool.pids;
    const report = await inspectSandbox(pid!);
    const link = (who: string, ns: string) =>
      [...report.matchAll(new RegExp(`^${who} ${ns} (.+)$`, "gm"))].map((m) => m[1]);
    for (const ns of ["net", "mnt", "pid", "user"]) {
      const inside = link("deno", ns);
      assert.equal(inside.length, 1, `one deno inside the sandbox:\n${report}`);
      assert.notEqual(inside[0], link("host", ns)[0], `${ns} namespace`);
    }
    assert.match(report, /^NoNewPrivs:\s+1$/m);
    assert.match(report, /^Seccomp:\s+2$/m);
    assert.match(report, /^CapEff:\s+0+$/m);
  },
});

Deno.test("SandboxPool with confinement off runs jobs in the host's namespaces", async () => {
  await using pool = new SandboxPool({ size: 1, confinement: "off" });
  assert.deepEqual(pool.confinement, { confined: false, reason: 'confinement is "off"' });
  const outcome = await runJob(HELLO, { input: enc("abc"), sandbox: "process", pool });
  assert.equal(dec(outcome.stdout), "cba");
  assert.throws(
    () => new SandboxPool({ confinement: "maybe" as "auto" }),
    /confinement must be "auto", "require" or "off"/,
  );
});

/** Copies `in.txt` of its preopen to `out.txt`; exits 3 without one (see its .wat). */
const COPY = await Deno.readFile(here("./testdata/copy_file.wasm"));

/** A job's `files`: `entries` preopened at `/`, under caps of 8 MiB and 16 entries. */
function files(entries: Parameters<typeof makeFileTree>[0]) {
  return {
    tree: encodeFileTree(makeFileTree(entries)),
    preopens: [{ name: "/", path: "" }],
    maxBytes: 8 << 20,
    maxFiles: 16,
  };
}

Deno.test("SandboxPool runs a job with files and returns its output tree; the next job sees none of them", async () => {
  await using pool = new SandboxPool({ size: 1 });
  // Over 1 MiB each way: the result frame is larger than a job without files may send.
  const data = new Uint8Array(1536 * 1024).map((_, i) => i % 251);
  assert.ok(2 * data.length > MAX_FRAME_BYTES);
  const first = await runJob(COPY, {
    sandbox: "process",
    pool,
    files: files([{ path: "in.txt", type: "file", executable: false, data }]),
  });
  assert.equal(first.completion, "stop", first.error?.message ?? "");
  assert.equal(first.exitCode, 0);
  assert.deepEqual(decodeFileTree(first.files!).entries, [
    { path: "in.txt", type: "file", executable: false, data },
    { path: "out.txt", type: "file", executable: false, data },
  ]);
  // Same warm process, an empty tree: neither file of the first job is there.
  const second = await runJob(COPY, { sandbox: "process", pool, files: files([]) });
  assert.equal(second.exitCode, 3);
  assert.deepEqual(decodeFileTree(second.files!).entries, []);
  assert.equal(pool.started, 1);
  // A one-shot process (no pool) takes files too.
  const alone = await runJob(COPY, {
    sandbox: "process",
    files: files([{ path: "in.txt", type: "file", executable: false, data: enc("hi") }]),
  });
  assert.equal(alone.exitCode, 0);
  assert.deepEqual(decodeFileTree(alone.files!).entries.map((e) => e.path), ["in.txt", "out.txt"]);
});

Deno.test("SandboxPool: a sandbox whose result tree is over the job's file caps is killed, its job fails", async () => {
  await using pool = new SandboxPool({ size: 0, _entry: here("testdata/probe_big_tree.ts") });
  const outcome = await runJob(HELLO, {
    sandbox: "process",
    pool,
    files: { ...files([]), maxBytes: 1000, maxFiles: 1 },
  });
  assert.equal(outcome.error?.kind, "trap");
  assert.match(outcome.error?.message ?? "", /over the 1057795 byte cap/);
  assert.equal(outcome.files, undefined);
});

Deno.test("SandboxPool._own() keeps a bounded copy per array, and copies an array whose bytes changed", async () => {
  await using pool = new SandboxPool({ size: 0 });
  const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
  const module = HELLO.slice();
  const first = pool._own(module);
  assert.notEqual(first.bytes, module);
  assert.deepEqual(first.bytes, HELLO);
  assert.equal(first.hash, hex(HELLO));
  // The same bytes in the same array: the same copy, not hashed again.
  assert.equal(pool._own(module), first);
  // Changed bytes in the same array: a new copy of the new bytes; the old copy is untouched.
  module[module.length - 1]! ^= 1;
  const changed = pool._own(module);
  assert.notEqual(changed.bytes, first.bytes);
  assert.deepEqual(changed.bytes, module);
  assert.equal(changed.hash, hex(module));
  assert.deepEqual(first.bytes, HELLO);
  // Bounded by count: 16 other arrays push this one out (its copy is made again).
  const others = Array.from({ length: 16 }, (_, i) => new Uint8Array([i]));
  for (const other of others) pool._own(other);
  assert.notEqual(pool._own(module), changed);
  // Bounded by bytes: two arrays of 40 MiB do not both fit in 64 MiB.
  const big = [new Uint8Array(40 * 2 ** 20), new Uint8Array(40 * 2 ** 20)];
  const bigFirst = pool._own(big[0]!);
  pool._own(big[1]!);
  assert.notEqual(pool._own(big[0]!), bigFirst);
  // One over the bound is copied and hashed, never kept.
  const huge = new Uint8Array(65 * 2 ** 20);
  assert.notEqual(pool._own(huge), pool._own(huge));
});

Deno.test("SandboxPool._sign() gives Web Crypto's Ed25519 signature, for whichever key it is given", async () => {
  await using pool = new SandboxPool({ size: 0 });
  const message = enc("phase-receipt:v1:{}");
  const a = await generateKeyPair();
  const b = await generateKeyPair();
  for (const keys of [a, b, a]) {
    assert.deepEqual(
      pool._sign(message, keys.secretKey),
      await signMessage(message, keys.secretKey),
    );
  }
  // The same array with other bytes signs with the new bytes.
  const secret = a.secretKey.slice();
  pool._sign(message, secret);
  secret.set(b.secretKey);
  assert.deepEqual(pool._sign(message, secret), await signMessage(message, b.secretKey));
  assert.throws(() => pool._sign(message, new Uint8Array(31)), {
    name: "RangeError",
    message: "Cannot use Ed25519 secret key: expected 32 bytes, got 31",
  });
});

Deno.test("a warm sandbox that exits while a process it left holds its pipes open is done with them soon", async () => {
  // As a confined sandbox killed during bubblewrap's set-up: the inner bwrap keeps the pipes.
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command("bash", {
    args: ["-c", `sleep 60 & echo $! > ${dir}/pid; exit 3`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const box = new _WarmSandbox(child, () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // A bound far beyond the grace period, so that a box that waits for the pipes fails.
    const ended = await Promise.race([
      box.exited.then(() => "exited"),
      new Promise((resolve) => timer = setTimeout(() => resolve("still waiting"), 30_000)),
    ]);
    assert.equal(ended, "exited");
    assert.equal((await child.status).code, 3);
  } finally {
    clearTimeout(timer);
    Deno.kill(Number(await Deno.readTextFile(`${dir}/pid`)), "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});
