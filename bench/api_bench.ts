// deno run --allow-read --allow-write --allow-env --allow-run --allow-net=127.0.0.1
//   bench/api_bench.ts [--rounds 100] [--jobs 512] [--inflight 64] [--cpu-prof DIR]
/**
 * The node's hot path through the local API (issue 16), side by side with the local reference
 * in the same run. Every node is a real `start` process on loopback, spawned with its task's
 * flags (tests/net_spawn.ts), so sandboxes are confined where bubblewrap runs.
 *
 * 1. Round trip, 2 nodes (requester A with no worker, worker B), one job at a time:
 *    `Client.submit` of hello.wasm -> verified `Client.result` (the client re-verifies the
 *    receipt), p50/p95 over `--rounds`. Reference: `runSignedJob` through a warm
 *    `SandboxPool` in this process, one at a time, p50/p95.
 * 2. Throughput, 3 workers (B plus C and D, which join A): `--jobs` jobs, `--inflight` at a time
 *    (submit then result with wait each), jobs/s. Reference: `runSignedJob` through the warm
 *    pool (one process per core), the same number of jobs, as many in flight as the pool has
 *    processes (more would each wait for a fresh process).
 *
 * With `--cpu-prof DIR`, every node writes a V8 CPU profile of its whole life into `DIR/<name>/`
 * (`a` the requester, `b`, `c`, `d` the workers) when it stops; run this process itself with
 * `--cpu-prof` for the client's. bench/cpu_profile_summary.ts sums one by library.
 *
 * Prints one JSON object. Part of `deno task bench` (`deno task bench:api`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { join } from "node:path";
import { execStartFlags, type NodeProcess, ROOT, spawnLocalNode } from "../tests/net_spawn.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { runSignedJob } from "../runtime/run_signed_job.ts";
import { SandboxPool } from "../runtime/sandbox_pool.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";

function summary(values: number[]): { n: number; p50_ms: number; p95_ms: number; max_ms: number } {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;
  return {
    n: sorted.length,
    p50_ms: +at(0.5).toFixed(1),
    p95_ms: +at(0.95).toFixed(1),
    max_ms: +sorted.at(-1)!.toFixed(1),
  };
}

/** CPU time (user + system, ms) of each process and its reaped children, from /proc. */
function cpuTimes(nodes: NodeProcess[]): Map<NodeProcess, number> {
  const tick = 10; // ms per clock tick (USER_HZ 100)
  const times = new Map<NodeProcess, number>();
  for (const node of nodes) {
    const stat = new TextDecoder().decode(
      new Deno.Command("cat", { args: [`/proc/${node.child.pid}/stat`] }).outputSync().stdout,
    );
    // Fields after the command name: utime, stime, cutime, cstime are 14-17 (1-based).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]));
    times.set(node, (utime! + stime! + cutime! + cstime!) * tick);
  }
  return times;
}

/** Run `job(i)` for i in 0..total-1, `inflight` at a time; jobs/s. */
/** Run `job` 10 times to warm up, then `rounds` times one at a time; the timed runs' summary. */
async function timeRounds(
  rounds: number,
  job: (label: string) => Promise<unknown>,
): Promise<ReturnType<typeof summary>> {
  for (let i = 0; i < 10; i++) await job(`warm ${i}`);
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await job(`round ${i}`);
    times.push(performance.now() - t0);
  }
  return summary(times);
}

async function rate(
  total: number,
  inflight: number,
  job: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (next < total) await job(next++);
  }));
  return +(total / ((performance.now() - t0) / 1000)).toFixed(1);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "100" },
      jobs: { type: "string", default: "512" },
      inflight: { type: "string", default: "64" },
      "cpu-prof": { type: "string" },
    },
  });
  const profileDir = values["cpu-prof"];
  const rounds = Number(values.rounds);
  const total = Number(values.jobs);
  const inflight = Number(values.inflight);
  const hello = await Deno.readFile(join(ROOT, "examples/hello.wasm"));
  const enc = (text: string) => new TextEncoder().encode(text);
  const root = await Deno.makeTempDir({ prefix: "plasm-api-bench-" });
  const nodes: NodeProcess[] = [];
  const spawn = async (name: string, args: string[]) => {
    const flags = profileDir === undefined
      ? execStartFlags()
      : [...execStartFlags(), "--cpu-prof", `--cpu-prof-dir=${join(profileDir, name)}`];
    const node = await spawnLocalNode(`${root}/${name}`, args, { flags });
    nodes.push(node);
    return node;
  };
  // The 1-minute load average (others' work on the same cores); /proc needs --allow-all.
  const load = () =>
    new TextDecoder().decode(
      new Deno.Command("cat", { args: ["/proc/loadavg"] }).outputSync().stdout,
    )
      .split(" ")[0];
  const out: Record<string, unknown> = { cores: navigator.hardwareConcurrency, load_start: load() };
  try {
    const b = await spawn("b", []);
    const a = await spawn("a", ["--no-worker", "--bootstrap", b.multiaddrs[0]!]);
    await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === b.peerId, 30_000);
    const client = new Client(await readApiEndpoint(`${root}/a`));
    const roundTrip = async (label: string) => {
      const result = await client.result(await client.submit(hello, { input: enc(label) }), {
        waitMs: 60_000,
      });
      if (!result.verified) throw new Error("unverified result");
    };
    out.api_round_trip_2_nodes = await timeRounds(rounds, roundTrip);

    // Two more workers join A; every one has run the module before the clock starts.
    for (const name of ["c", "d"]) {
      const worker = await spawn(name, ["--bootstrap", a.multiaddrs[0]!]);
      await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === worker.peerId);
    }
    for (const worker of nodes.filter((n) => n !== a)) {
      await client.result(
        await client.submit(hello, { input: enc(`warm ${worker.peerId}`), worker: worker.peerId }),
        { waitMs: 60_000 },
      );
    }
    const cpu0 = cpuTimes(nodes);
    const self0 = process.cpuUsage();
    out.api_jobs_per_s_3_workers = await rate(total, inflight, (i) => roundTrip(`load ${i}`));
    // CPU spent per job: where the cores went (sandboxes are the workers' children).
    const cpu1 = cpuTimes(nodes);
    const self1 = process.cpuUsage(self0);
    const per = (ms: number) => +(ms / total).toFixed(2);
    out.cpu_ms_per_job = {
      requester: per(cpu1.get(a)! - cpu0.get(a)!),
      workers_with_sandboxes: per(
        nodes.filter((n) => n !== a).reduce((sum, n) => sum + cpu1.get(n)! - cpu0.get(n)!, 0),
      ),
      client: per((self1.user + self1.system) / 1000),
    };
    out.api_jobs = total;
    out.inflight = inflight;

    // The local reference: the worker's own path, in this process, same machine, same run.
    const keyPair = await generateKeyPair();
    await using pool = new SandboxPool();
    const local = (label: string) =>
      runSignedJob(hello, { keyPair, input: enc(label), sandbox: "process", pool });
    out.local_round_trip = await timeRounds(rounds, local);
    // As many in flight as the pool has processes: more would each wait for a fresh `deno`.
    out.local_inflight = navigator.hardwareConcurrency;
    out.local_jobs_per_s = await rate(
      total,
      navigator.hardwareConcurrency,
      (i) => local(`load ${i}`),
    );
    out.load_end = load();
    // Waits the hot path should not have: peers dropped for too many streams, QueueFull backoffs.
    const count = (event: string) => nodes.flatMap((n) => n.logs).filter((l) => l.event === event);
    out.peer_dropped = count("peer_dropped").length;
    out.job_backoffs = count("job_backoff").length;
    out.jobs_waiting_for_workers = count("job_waiting_for_workers").length;
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await Deno.remove(root, { recursive: true });
  }
  console.log(JSON.stringify(out, null, 2));
}
