import assert from "node:assert/strict";
import { runJob } from "./run_job.ts";
import { SandboxPool } from "./sandbox_pool.ts";
import { checkSandboxConfinement } from "./sandbox_spawn.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const LOOP = await Deno.readFile(new URL("./testdata/infinite_loop.wasm", import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("SandboxPool runs jobs one per process, concurrently, and refills itself", async () => {
  await using pool = new SandboxPool({ size: 2 });
  const outcomes = await Promise.all(
    ["one", "two", "three", "four", "five"].map((word) =>
      runJob(HELLO, { input: enc(word), sandbox: "process", pool })
    ),
  );
  assert.deepEqual(outcomes.map((o) => dec(o.stdout)), ["eno", "owt", "eerht", "ruof", "evif"]);
  assert.ok(outcomes.every((o) => o.completion === "stop" && o.exitCode === 0));
  assert.equal(pool.idle, 2);
});

Deno.test("SandboxPool: a pooled sandbox is still killed on timeout", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const outcome = await runJob(LOOP, { sandbox: "process", pool, timeoutMs: 300 });
  assert.equal(outcome.error?.kind, "timeout");
  const next = await runJob(HELLO, { input: enc("ok"), sandbox: "process", pool });
  assert.equal(dec(next.stdout), "ko");
});

Deno.test("SandboxPool keeps serving after a sandbox it handed out was killed", async () => {
  await using pool = new SandboxPool({ size: 1 });
  const victim = pool.take(); // the caller owns it now: kill it like a crash would
  victim.kill("SIGKILL");
  await victim.status;
  await Promise.all([victim.stdout.cancel(), victim.stderr.cancel(), victim.stdin.close()]);
  const outcome = await runJob(HELLO, { input: enc("abc"), sandbox: "process", pool });
  assert.equal(dec(outcome.stdout), "cba");
});

Deno.test("SandboxPool.close() ends its idle processes, and take() after close refuses", async () => {
  const pool = new SandboxPool({ size: 3 });
  assert.equal(pool.idle, 3);
  await pool.close();
  await pool.close();
  assert.equal(pool.idle, 0);
  assert.throws(() => pool.take(), /pool is closed/);
  assert.throws(() => new SandboxPool({ size: -1 }), RangeError);
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
  console.log(`sandbox_pool_test: confinement skipped: ${confined.reason}`);
}

Deno.test({
  name: "SandboxPool processes run in their own network, mount and PID namespaces",
  ignore: !confined.confined && !ci,
  async fn() {
    await using pool = new SandboxPool({ size: 1 });
    assert.deepEqual(pool.confinement, { confined: true });
    const child = pool.take();
    try {
      // Wait for the sandbox's "ready" frame: deno is running inside by then.
      const reader = child.stdout.getReader();
      await reader.read();
      reader.releaseLock();
      const report = await inspectSandbox(child.pid);
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
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await Promise.allSettled([child.stdout.cancel(), child.stderr.cancel(), child.stdin.close()]);
    }
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
