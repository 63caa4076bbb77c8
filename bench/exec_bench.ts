/**
 * Remote execution benchmark: a requester node A (no worker) and 3 worker nodes as real `start`
 * processes on loopback, connected before measuring.
 *
 * 1. Round trip of hello.wasm, one job at a time: `Client.submit` -> verified `Client.result`
 *    (the client re-verifies the receipt), p50/p95.
 * 2. Throughput with 32 jobs in flight across the 3 workers, jobs/s.
 * 3. Local baseline: `runSignedJob` with the process sandbox in this process, sequential and 2
 *    at a time (what one worker does per job).
 *
 *   deno run --allow-read --allow-write --allow-env --allow-run --allow-net=127.0.0.1 \
 *     bench/exec_bench.ts [--rounds N] [--jobs N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { ROOT, spawnLocalNode, START_FLAGS } from "../tests/net_spawn.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "60" }, jobs: { type: "string", default: "128" } },
});
const rounds = Number(values.rounds);
const total = Number(values.jobs);
const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));
const enc = (text: string) => new TextEncoder().encode(text);
const flags = [...START_FLAGS, `--allow-run=${Deno.execPath()}`];
const root = await Deno.makeTempDir({ prefix: "plasm-exec-bench-" });
const spawn = (name: string, args: string[]) => spawnLocalNode(`${root}/${name}`, args, { flags });

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

const workers = await Promise.all(["b", "c", "d"].map((n) => spawn(n, ["--max-jobs", "2"])));
const a = await spawn("a", [
  "--no-worker",
  ...workers.flatMap((w) => ["--bootstrap", w.multiaddrs[0]!]),
]);
try {
  await a.waitForLog((l) => l.event === "api_listening");
  for (const w of workers) {
    await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === w.peerId);
  }
  const client = new Client(await readApiEndpoint(`${root}/a`));
  // Warm up: every worker compiles and caches the module once.
  for (let i = 0; i < 6; i++) {
    await client.result(await client.submit(HELLO, { input: enc(`warm ${i}`) }), {
      waitMs: 30_000,
    });
  }

  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const id = await client.submit(HELLO, { input: enc(`round ${i}`) });
    const result = await client.result(id, { waitMs: 30_000 });
    times.push(performance.now() - t0);
    if (!result.verified) throw new Error("unverified result");
  }
  times.sort((x, y) => x - y);

  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < total) {
      const i = next++;
      const id = await client.submit(HELLO, { input: enc(`load ${i}`) });
      await client.result(id, { waitMs: 60_000 });
    }
  }));
  const remoteRate = total / ((performance.now() - t0) / 1000);

  const keyPair = await generateKeyPair();
  const local: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await runSignedJob(HELLO, { keyPair, input: enc(`local ${i}`), sandbox: "process" });
    local.push(performance.now() - t);
  }
  local.sort((x, y) => x - y);
  let k = 0;
  const t1 = performance.now();
  await Promise.all(Array.from({ length: 2 }, async () => {
    while (k < 40) {
      k++;
      await runSignedJob(HELLO, { keyPair, input: enc(`local2 ${k}`), sandbox: "process" });
    }
  }));
  const localRate = 40 / ((performance.now() - t1) / 1000);

  console.log(JSON.stringify({
    round_trip_ms: {
      p50: +pct(times, 0.5).toFixed(1),
      p95: +pct(times, 0.95).toFixed(1),
      n: rounds,
    },
    remote_jobs_per_s_32_in_flight_3_workers: +remoteRate.toFixed(1),
    remote_jobs: total,
    local_process_sandbox_ms: {
      p50: +pct(local, 0.5).toFixed(1),
      p95: +pct(local, 0.95).toFixed(1),
    },
    local_jobs_per_s_2_at_a_time: +localRate.toFixed(1),
    cores: navigator.hardwareConcurrency,
  }));
} finally {
  await Promise.allSettled([a.stop(), ...workers.map((w) => w.stop())]);
  await Deno.remove(root, { recursive: true });
}
