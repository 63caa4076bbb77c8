/**
 * `submit` and `result` as a user runs them (their deno.json tasks' exact flags) against real
 * `start` processes: they report like `run` (output, stderr, exit code, one `submit: error:` line naming
 * the kind), take what `run` takes, write receipts, list replicas, run a job pinned to the node
 * itself, bound the search for a worker, and fail cleanly in one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeProcess, ROOT, START_FLAGS } from "./net_spawn.ts";
import { runTask } from "./_task.ts";
import { auditCli, usageCases } from "./_cli_audit.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint, writeApiEndpoint } from "../net/api_token.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { receiptPath } from "../runtime/receipt_store.ts";

const FLAGS = [...START_FLAGS, `--allow-run=${Deno.execPath()}`];
const PROBE = join(ROOT, "runtime/testdata/wasi_probe.wasm");
const TESTDATA = join(ROOT, "runtime/testdata");

function spawnNode(dir: string, args: string[]): Promise<NodeProcess> {
  return NodeProcess.spawn(
    ["--state-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", ...args],
    { flags: FLAGS },
  );
}

async function waitFor(check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The last line of `text` (without the final newline). */
const lastLine = (text: string) => text.trimEnd().split("\n").at(-1) ?? "";

Deno.test({
  name: "submit --wait and result report like run, take what run takes, and keep every receipt",
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "plasm-exec-cli-" });
    const dirs = { a: `${root}/a`, b: `${root}/b`, c: `${root}/c` };
    await using b = await spawnNode(dirs.b, []);
    await using c = await spawnNode(dirs.c, []);
    await using a = await spawnNode(dirs.a, [
      "--no-worker",
      "--worker-search-timeout",
      "5s",
      ...[b, c].flatMap((n) => ["--bootstrap", n.multiaddrs[0]!]),
    ]);
    const submit = (args: string[], stdin?: string) =>
      runTask("submit", [...args, "--state-dir", dirs.a], stdin === undefined ? {} : { stdin });
    try {
      await a.waitForLog((l) => l.event === "api_listening");
      const connected = (n: NodeProcess) =>
        a.logs.some((l) => l.event === "peer_connected" && l.peer_id === n.peerId);
      await waitFor(() => connected(b) && connected(c));
      const onB = ["--worker", b.peerId, "--wait"];

      await t.step("--arg, --env and piped stdin reach the job", async () => {
        const args = await submit([PROBE, ...onB, "--arg", "args", "--arg", "two words"]);
        assert.equal(args.code, 0, args.err);
        assert.equal(args.out, "module.wasm\nargs\ntwo words\n");
        const env = await submit([PROBE, ...onB, "--arg", "env", "--env", "GREETING=hi"]);
        assert.equal(env.out, "GREETING=hi\n");
        const piped = await submit([PROBE, ...onB, "--arg", "cat"], "piped in");
        assert.equal(piped.code, 0, piped.err);
        assert.equal(piped.out, "piped in");
      });

      await t.step("the job's own exit code, and its stderr on stderr", async () => {
        const seven = await submit([PROBE, ...onB, "--arg", "exit", "--arg", "7"]);
        assert.equal(seven.code, 7, seven.err);
        assert.equal(seven.err, "");
        const both = await submit([PROBE, ...onB, "--arg", "stderr"]);
        assert.equal(both.code, 0);
        assert.equal(both.out, "to stdout");
        assert.equal(both.err, "to stderr");
      });

      await t.step("a job that did not run to its end: run's code and one error line", async () => {
        const notWasm = `${root}/not.wasm`;
        await Deno.writeTextFile(notWasm, "this is not WebAssembly");
        const cases: [string[], number, string][] = [
          [[join(TESTDATA, "trap.wasm"), ...onB], 121, "trap"],
          [[notWasm, ...onB], 120, "invalid_module"],
          [[PROBE, ...onB, "--arg", "spin", "--timeout", "1s"], 124, "timeout"],
          [
            [join(TESTDATA, "huge_output.wasm"), ...onB, "--max-output", "1KiB"],
            125,
            "output_limit",
          ],
          [
            [join(TESTDATA, "infinite_loop.wasm"), ...onB, "--fuel", "10000"],
            118,
            "fuel_exhausted",
          ],
        ];
        for (const [args, code, kind] of cases) {
          const out = await submit(args);
          assert.equal(out.code, code, `${kind}: ${out.err}`);
          assert.match(lastLine(out.err), new RegExp(`^submit: error: ${kind}: `), out.err);
          assert.equal(out.err.split("\n").filter((l) => l.startsWith("submit: error:")).length, 1);
        }
        const json = await submit([join(TESTDATA, "trap.wasm"), ...onB, "--json"]);
        assert.equal(json.code, 121);
        const parsed = JSON.parse(json.out);
        assert.equal(parsed.error.kind, "trap");
        assert.equal(typeof parsed.error.message, "string");
        assert.equal(parsed.exit_code, null);
        assert.equal(parsed.stdout, "");
        assert.equal(parsed.stdout_base64, "");
        assert.equal(parsed.receipt.result.metrics.extra.error, "trap");
      });

      await t.step(
        "--receipt FILE: the receipt, signed by the worker's PeerId key; kept by both nodes",
        async () => {
          const file = `${root}/receipt.json`;
          const out = await submit([PROBE, ...onB, "--arg", "args", "--json", "--receipt", file]);
          assert.equal(out.code, 0, out.err);
          const { job_id: id } = JSON.parse(out.out);
          const receipt = JSON.parse(await Deno.readTextFile(file));
          await verifyReceipt(receipt, { publicKey: peerPublicKey(b.peerId), jobId: id });
          // The signed job carries the arguments: its receipt says the worker ran with them.
          assert.equal(receipt.job_id, id);
          const again = `${root}/again.json`;
          const result = await runTask("result", [id, "--receipt", again, "--state-dir", dirs.a]);
          assert.equal(result.code, 0, result.err);
          assert.equal(result.out, "module.wasm\nargs\n");
          assert.deepEqual(JSON.parse(await Deno.readTextFile(again)), receipt);
          // Each node writes its receipt file just after its answer (off the answer path).
          for (const dir of [dirs.a, dirs.b]) {
            assert.deepEqual(JSON.parse(await _readSoon(receiptPath(dir, receipt))), receipt);
          }
        },
      );

      await t.step(
        "--replicas 2: every worker's PeerId and receipt, and whether they agreed",
        async () => {
          const file = `${root}/replicas.json`;
          const out = await submit([
            PROBE,
            "--arg",
            "args",
            "--arg",
            "replicas",
            "--replicas",
            "2",
            "--wait",
            "--json",
            "--receipt",
            file,
          ]);
          assert.equal(out.code, 0, out.err);
          const json = JSON.parse(out.out);
          assert.equal(json.replicas_agree, true);
          assert.deepEqual(
            json.workers.map((w: { peer_id: string }) => w.peer_id).sort(),
            [b.peerId, c.peerId].sort(),
          );
          assert.equal(json.workers[0].output_commitment, json.workers[1].output_commitment);
          const written = JSON.parse(await Deno.readTextFile(file));
          assert.equal(written.length, 2);
          for (const { peer_id, receipt } of written) {
            await verifyReceipt(receipt, { publicKey: peerPublicKey(peer_id), jobId: json.job_id });
          }
        },
      );

      await t.step(
        "--worker <own PeerId>: runs on the node itself, or is refused in one line",
        async () => {
          const own = await runTask("submit", [
            PROBE,
            "--arg",
            "args",
            "--worker",
            b.peerId,
            "--wait",
            "--state-dir",
            dirs.b,
          ]);
          assert.equal(own.code, 0, own.err);
          assert.equal(own.out, "module.wasm\nargs\n");
          assert.equal(b.logs.some((l) => /dial self/i.test(JSON.stringify(l))), false);
          const none = await submit([PROBE, "--worker", a.peerId, "--wait"]);
          assert.equal(none.code, 1);
          assert.match(
            none.err,
            /^submit: error: Cannot submit job: worker 12D3KooW\w+ is this node, which runs no jobs/,
          );
          assert.equal(none.err.split("\n").length, 2, none.err);
        },
      );

      await t.step("an unreachable pinned worker: one line, no worker found", async () => {
        const absent = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
        const out = await submit([PROBE, "--worker", absent, "--wait"]);
        assert.equal(out.code, 1);
        assert.match(
          out.err,
          /^submit: error: Job [0-9a-f]{64} failed: Cannot run job: no worker found \(last reason: 12D3KooW/,
        );
        assert.equal(out.err.split("\n").length, 2, out.err);
      });
    } finally {
      await Promise.allSettled([a.stop(), b.stop(), c.stop()]);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("a node alone fails a job with no worker found after its search bound, and says why meanwhile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-exec-cli-" });
  try {
    // Default mode (DHT on), no bootstrap peer, no mDNS: nobody to run the job.
    await using node = await spawnNode(dir, ["--worker-search-timeout", "3s"]);
    await node.waitForLog((l) => l.event === "api_listening");
    const submitted = await runTask("submit", [PROBE, "--state-dir", dir]);
    assert.equal(submitted.code, 0, submitted.err);
    const id = submitted.out.trim();
    const client = new Client(await readApiEndpoint(dir));
    const status = await client.status(id);
    assert.equal(status.state, "waiting_for_workers", JSON.stringify(status));
    assert.equal(status.lastReason, "no peer that runs jobs was found");
    assert.equal(status.attempts, 0);
    assert.match(status.searchDeadline ?? "", /^\d{4}-\d\d-\d\dT/);
    const result = await runTask("result", [id, "--wait", "--state-dir", dir]);
    assert.equal(result.code, 1);
    assert.equal(
      result.err,
      `result: error: Job ${id} failed: Cannot run job: no worker found within 3 s (last reason: no peer that runs jobs was found)\n`,
    );
    const json = await runTask("result", [id, "--json", "--state-dir", dir]);
    assert.equal(json.code, 1);
    assert.deepEqual(JSON.parse(json.out).error.kind, "no_worker_found");
    assert.ok(node.logs.some((l) => l.event === "job_waiting_for_workers" && l.job_id === id));
    assert.ok(node.logs.some((l) => l.event === "job_failed" && l.kind === "no_worker_found"));
    assert.equal((await node.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("submit and result fail cleanly in one line", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-exec-cli-" });
  const dead = `${dir}/dead`;
  const empty = `${dir}/empty`;
  try {
    // A state dir whose node has stopped: api.json names a port nobody listens on.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    await Deno.mkdir(dead);
    await Deno.mkdir(empty);
    await writeApiEndpoint(dead, `http://127.0.0.1:${port}/`);
    await Deno.writeTextFile(`${dead}/api.token`, "t".repeat(64));
    const notAnswering = (sub: string) =>
      new RegExp(
        `^${sub}: error: node API at http://127\\.0\\.0\\.1:${port}/ is not answering \\(is start running with this state dir\\?\\)$`,
      );
    const id = "ab".repeat(32);
    await auditCli(t, "submit", [
      ...usageCases("submit", [
        ["bad --cpu", [PROBE, "--cpu", "x"], "Cannot use --cpu 'x'"],
        ["unknown flag", [PROBE, "--nope"], "Unknown option '--nope'"],
        ["no module", [], "Cannot submit: give exactly one module"],
        ["bad --env", [PROBE, "--env", "X"], "Cannot parse --env 'X'"],
        ["bad --fuel", [PROBE, "--fuel", "1e9"], "Cannot parse --fuel"],
        [
          "--receipt without --wait",
          [PROBE, "--receipt", `${dir}/r.json`],
          "Cannot use --receipt without --wait",
        ],
      ]),
      {
        name: "missing module",
        args: [`${dir}/nope.wasm`, "--state-dir", dead],
        code: 1,
        line: /^submit: error: Cannot read module '.*nope\.wasm': no such file$/,
      },
      {
        name: "module is a directory",
        args: [dir, "--state-dir", dead],
        code: 1,
        line: /^submit: error: Cannot read module '.*': is a directory$/,
      },
      {
        name: "missing input",
        args: [PROBE, "--input", `${dir}/nope.txt`, "--state-dir", dead],
        code: 1,
        line: /^submit: error: Cannot read input '.*nope\.txt': no such file$/,
      },
      {
        name: "no node ever ran in the state dir",
        args: [PROBE, "--state-dir", empty],
        code: 1,
        line:
          /^submit: error: Cannot find the node's API in '.*empty': no node has recorded one there \(is start running with this state dir\?\)$/,
      },
      {
        name: "node not running",
        args: [PROBE, "--state-dir", dead],
        code: 1,
        line: notAnswering("submit"),
      },
    ]);
    await auditCli(t, "result", [
      {
        name: "bad job id",
        args: ["xyz"],
        code: 2,
        line: /^result: Cannot get result: give one job id/,
      },
      {
        name: "unknown flag",
        args: [id, "--nope"],
        code: 2,
        line: /^result: Unknown option '--nope'/,
      },
      {
        name: "no node ever ran in the state dir",
        args: [id, "--state-dir", empty],
        code: 1,
        line: /^result: error: Cannot find the node's API in '.*empty'/,
      },
      {
        name: "node not running",
        args: [id, "--state-dir", dead],
        code: 1,
        line: notAnswering("result"),
      },
      {
        name: "node not running, --wait --json",
        args: [id, "--wait", "--json", "--state-dir", dead],
        code: 1,
        line: notAnswering("result"),
      },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A file's text once it exists (within 10 s): for files written just after an answer. */
async function _readSoon(path: string): Promise<string> {
  for (let waited = 0;; waited += 50) {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || waited >= 10_000) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
