/**
 * Remote execution between real `start` processes on loopback: a requester A (no worker), honest
 * workers B and C (C with one slot and no queue) and a tampering worker T.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { execStartFlags, type NodeProcess, ROOT, spawnLocalNode } from "./net_spawn.ts";
import { Client, JobFailedError } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { TAMPER_ENV } from "../cli/_exec.ts";

const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));
const SLOW = await Deno.readFile(join(ROOT, "tests/testdata/slow.wasm"));
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const CLI_FLAGS = [
  "--allow-read",
  "--allow-net=127.0.0.1",
  "--allow-env=PLASM_HOME,XDG_DATA_HOME,HOME",
];

async function spawnNode(
  dir: string,
  args: string[],
  options: { tamper?: boolean } = {},
): Promise<NodeProcess> {
  const flags = options.tamper
    ? execStartFlags().map((f) => f.startsWith("--allow-env=") ? `${f},${TAMPER_ENV}` : f)
    : execStartFlags();
  return await spawnLocalNode(dir, args, {
    flags,
    env: options.tamper ? { [TAMPER_ENV]: "flip-output-byte" } : {},
  });
}

async function cli(
  name: "submit" | "result",
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_FLAGS, `cli/${name}.ts`, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  return { code: out.code, stdout: dec(out.stdout), stderr: dec(out.stderr) };
}

async function waitFor(check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Send offers to `node` on the wire from a separate process (see testdata/offer_flood.ts). */
async function offers(node: NodeProcess, count: number) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--ignore-env",
      "tests/testdata/offer_flood.ts",
      node.multiaddrs[0]!,
      String(count),
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  assert.equal(out.code, 0, dec(out.stderr));
  return JSON.parse(dec(out.stdout));
}

Deno.test({
  name: "remote execution between real nodes: run, verify, reject tampering, reschedule, queue",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "plasm-exec-" });
    const dirs = { a: `${root}/a`, b: `${root}/b`, c: `${root}/c`, t: `${root}/t` };
    await using b = await spawnNode(dirs.b, []);
    await using c = await spawnNode(dirs.c, ["--max-jobs", "1", "--max-queue", "0"]);
    await using tamper = await spawnNode(dirs.t, [], { tamper: true });
    const aArgs = [
      "--no-worker",
      ...[b, c, tamper].flatMap((n) => ["--bootstrap", n.multiaddrs[0]!]),
    ];
    let firstJob = "";
    await using a = await spawnNode(dirs.a, aArgs);
    try {
      await tamper.waitForLog((l) => l.event === "tamper_results_enabled");
      await a.waitForLog((l) => l.event === "api_listening");
      const client = new Client(await readApiEndpoint(dirs.a));
      const connected = (n: NodeProcess) =>
        a.logs.some((l) => l.event === "peer_connected" && l.peer_id === n.peerId);
      await waitFor(() => connected(b) && connected(c) && connected(tamper));

      await t.step(
        "a job submitted on A with cli/submit.ts runs on B; the receipt verifies",
        async () => {
          const input = `${root}/input.txt`;
          await Deno.writeTextFile(input, "Hello, World");
          const out = await cli("submit", [
            join(ROOT, "examples/hello.wasm"),
            "--input",
            input,
            "--worker",
            b.peerId,
            "--wait",
            "--json",
            "--state-dir",
            dirs.a,
          ]);
          assert.equal(out.code, 0, out.stderr);
          const json = JSON.parse(out.stdout);
          assert.equal(json.stdout, "dlroW ,olleH");
          assert.equal(atob(json.stdout_base64), "dlroW ,olleH");
          assert.equal(json.worker_peer_id, b.peerId);
          assert.equal(json.verified, true);
          firstJob = json.job_id;
          // Independently: B's PeerId key signed it, for this job, this module, input and output.
          await verifyReceipt(json.receipt, {
            publicKey: peerPublicKey(b.peerId),
            jobId: json.job_id,
            module: HELLO,
            input: enc("Hello, World"),
            output: enc("dlroW ,olleH"),
          });
          const again = await cli("result", [json.job_id, "--state-dir", dirs.a]);
          assert.equal(again.code, 0, again.stderr);
          assert.equal(again.stdout, "dlroW ,olleH");
        },
      );

      await t.step("a result from a tampering worker is rejected, never returned", async () => {
        const id = await client.submit(HELLO, { input: enc("abc"), worker: tamper.peerId });
        const error = await client.result(id, { waitMs: 30_000 }).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(error instanceof JobFailedError, String(error));
        assert.match(error.message, /output_commitment/);
        const out = await cli("result", [id, "--state-dir", dirs.a]);
        assert.equal(out.code, 1);
        assert.equal(out.stdout, "");
        assert.match(out.stderr, /failed/);
      });

      await t.step(
        "offers on the wire: replayed nonce and bad arch are rejected; a flood of 400 offers leaves B serving",
        async () => {
          const summary = await offers(b, 400);
          assert.ok("Accepted" in summary.first, JSON.stringify(summary));
          assert.equal(summary.first.Accepted.node_peer_id, b.peerId);
          assert.deepEqual(summary.replay, {
            Rejected: {
              job_id: summary.first.Accepted.job_id,
              reason: { InvalidRequest: { details: "nonce replayed" } },
            },
          });
          assert.deepEqual(summary.riscv.Rejected.reason, {
            ArchMismatch: { required: "riscv64", available: "x86_64" },
          });
          const flood: Record<string, number> = summary.flood;
          assert.equal(Object.values(flood).reduce((x, y) => x + y, 0), 400);
          // Streams past the per-connection cap are reset; of those answered, one requester holds
          // at most 4 places and a replayed nonce is accepted at most once.
          const count = (suffix: string) =>
            Object.entries(flood).filter(([k]) => k.endsWith(suffix)).reduce(
              (n, [, v]) => n + v,
              0,
            );
          assert.ok(count("Accepted") <= 4, JSON.stringify(flood));
          assert.ok((flood["replayed Accepted"] ?? 0) <= 1, JSON.stringify(flood));
          assert.ok(count("stream_error") < 400, JSON.stringify(flood));
          // B is still up and runs A's job.
          const id = await client.submit(HELLO, { input: enc("flood"), worker: b.peerId });
          const result = await client.result(id, { waitMs: 30_000 });
          assert.equal(dec(result.output), "doolf");
        },
      );

      await t.step(
        "a full worker answers QueueFull; the requester backs off and retries",
        async () => {
          const first = await client.submit(SLOW, { input: enc("1"), worker: c.peerId });
          await c.waitForLog((l) => l.event === "job_started" && l.job_id === first);
          // On the wire: C (one slot, no queue) is full.
          const probe = await offers(c, 0);
          assert.equal(probe.first.Rejected?.reason, "QueueFull", JSON.stringify(probe));
          // Through the scheduler: the job waits for C instead of failing.
          const second = await client.submit(SLOW, { input: enc("2"), worker: c.peerId });
          await a.waitForLog((l) =>
            l.event === "job_backoff" && l.job_id === second && /QueueFull/.test(String(l.error))
          );
          assert.equal(dec((await client.result(first, { waitMs: 30_000 })).output), "slept\n");
          assert.equal(dec((await client.result(second, { waitMs: 30_000 })).output), "slept\n");
        },
      );

      await t.step("a worker killed mid-job: the job is rescheduled on another", async () => {
        const id = await client.submit(SLOW, { input: enc("kill") });
        let victim: NodeProcess | undefined;
        await waitFor(() => {
          victim = [b, c].find((n) =>
            n.logs.some((l) => l.event === "job_started" && l.job_id === id)
          );
          return victim !== undefined;
        });
        await victim!.stop("SIGKILL");
        const result = await client.result(id, { waitMs: 60_000 });
        assert.equal(dec(result.output), "slept\n");
        assert.notEqual(result.workerPeerId, victim!.peerId);
        const status = await client.status(id);
        assert.ok(status.attempts >= 2, JSON.stringify(status));
      });

      await t.step("a restarted requester still has every result", async () => {
        assert.equal((await a.stop()).code, 0);
        await using again = await spawnNode(dirs.a, aArgs);
        await again.waitForLog((l) => l.event === "api_listening");
        const out = await cli("result", [firstJob, "--json", "--state-dir", dirs.a]);
        assert.equal(out.code, 0, out.stderr);
        const json = JSON.parse(out.stdout);
        assert.equal(json.worker_peer_id, b.peerId);
        assert.equal(json.verified, true);
        assert.equal(json.stdout, "dlroW ,olleH");
        await again.stop();
      });
    } finally {
      await Promise.allSettled([a.stop(), b.stop(), c.stop(), tamper.stop()]);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("the tamper switch stays off when start's flags do not grant its variable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-exec-" });
  try {
    await using node = await spawnLocalNode(dir, ["--mode", "local"], {
      env: { [TAMPER_ENV]: "flip-output-byte" },
    });
    await node.waitForLog((l) => l.event === "api_listening");
    assert.equal(node.logs.some((l) => l.event === "tamper_results_enabled"), false);
    assert.equal(node.logs.some((l) => l.event === "worker_disabled"), false);
    assert.equal((await node.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
