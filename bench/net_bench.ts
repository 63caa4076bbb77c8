// deno run --allow-read --allow-run --allow-env --allow-net=127.0.0.1 bench/net_bench.ts
//   [--runs 3] [--discover-runs 1] [--mdns-only] [--nodes 30] [--lookups 20]
//
// Runs `ps` for process memory.
// 1. mDNS: three `start` processes (separate processes, mode private, listen on 127.0.0.1);
//    time from the third node's `started` line until every node has seen both others, and the
//    wall time of `discover --mdns` (--discover-runs times per trio), whether it found all three,
//    split by its `-v` records: process start until its node started (`search_started`), the
//    search (`search_done`), then stop and exit; next to it, in the same run, the wall time of a
//    bare `deno run` of an empty script. Resident memory (VmRSS) of each `start` process.
// 2. DHT: an N-node Kademlia network (one process, real TCP + Noise + Yamux over loopback;
//    tests/dht_network.ts), ten keys each advertised by one node as `start` does, right after
//    the joins; each lookup runs from a fresh client-mode node that bootstraps from one random
//    server, as `discover --dht` does. Reports provide time (to the first `provided` record),
//    join time, findProviders latency to the first provider (p50/p95), how many lookups found
//    the provider, and memory per node.
/**
 * Network benchmark; prints one JSON object. See the header for what is measured.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { NodeProcess, runDiscover } from "../tests/net_spawn.ts";
import { advertiseAndWait, lookupFromFreshClient, startDhtNetwork } from "../tests/dht_network.ts";

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50_ms: Math.round(percentile(sorted, 50)),
    p95_ms: Math.round(percentile(sorted, 95)),
    min_ms: Math.round(sorted[0]!),
    max_ms: Math.round(sorted[sorted.length - 1]!),
  };
}

async function rssOf(pid: number): Promise<number> {
  // /proc needs --allow-all in Deno; ps reports the same VmRSS.
  const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim()) * 1024;
}

async function mdnsRun(discoverRuns: number) {
  const nodes: NodeProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await NodeProcess.spawn(["--mode", "private", "--listen", "/ip4/127.0.0.1/tcp/0"]),
      );
    }
    const t0 = performance.now();
    await Promise.all(
      nodes.flatMap((node) =>
        nodes.filter((other) => other !== node).map((other) =>
          node.waitForLog((l) => l.event === "mdns_peer" && l.peer_id === other.peerId, 30_000)
        )
      ),
    );
    const allFound = performance.now() - t0;
    const discovers = [];
    for (let i = 0; i < discoverRuns; i++) {
      const e0 = performance.now();
      await new Deno.Command(Deno.execPath(), {
        args: ["run", new URL("./empty.ts", import.meta.url).pathname],
        stdout: "null",
        stderr: "null",
      }).output();
      const emptyMs = performance.now() - e0;
      const wallStart = Date.now();
      const discover = await runDiscover(["--mdns", "--timeout", "10s", "--json", "-v"]);
      const seen = JSON.parse(discover.stdout || "[]").map((p: { peer_id: string }) => p.peer_id);
      const records = discover.stderr.split("\n").flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
      const at = (event: string) => {
        const ts = records.find((r) => r.event === event)?.ts;
        return ts === undefined ? NaN : Date.parse(String(ts)) - wallStart;
      };
      discovers.push({
        emptyMs,
        discoverMs: discover.ms,
        untilNodeStarted: at("search_started"),
        search: at("search_done") - at("search_started"),
        stopAndExit: discover.ms - at("search_done"),
        foundAll: nodes.every((n) => seen.includes(n.peerId)),
      });
    }
    const rss = await Promise.all(nodes.map((n) => rssOf(n.child.pid)));
    return { allFound, discovers, rss };
  } finally {
    for (const node of nodes) await node.stop();
  }
}

async function dhtRun(count: number, lookups: number) {
  const base = Deno.memoryUsage().rss;
  await using network = await startDhtNetwork(count);
  const { servers } = network;
  const keys = Array.from({ length: 10 }, (_, i) => `/phase/bench${i}/x86_64/manifest`);
  const providers = new Map<string, string>();
  const provideTimes: number[] = [];
  const storedOn: number[] = [];
  // Provide as `start` does (PhaseNode.advertise), at once: no settling time after the joins.
  for (const key of keys) {
    const node = servers[Math.floor(Math.random() * servers.length)]!;
    const { peers, ms } = await advertiseAndWait(node, key, {
      signal: AbortSignal.timeout(120_000),
    });
    provideTimes.push(ms);
    storedOn.push(peers);
    providers.set(key, node.peerId);
  }
  const rssServers = Deno.memoryUsage().rss;
  const joins: number[] = [];
  const latencies: number[] = [];
  let correct = 0;
  for (let i = 0; i < lookups; i++) {
    const entry = servers[Math.floor(Math.random() * servers.length)]!;
    const key = keys[i % keys.length]!;
    const { found, joinMs, lookupMs } = await lookupFromFreshClient(entry, key, {
      signal: AbortSignal.timeout(30_000),
    });
    joins.push(joinMs);
    latencies.push(lookupMs);
    if (found[0] === providers.get(key)) correct++;
  }
  return {
    startAll: network.startMs,
    provide: summary(provideTimes),
    storedOn: { min: Math.min(...storedOn), max: Math.max(...storedOn) },
    join: summary(joins),
    findProviders: summary(latencies),
    correct,
    perNodeBytes: (rssServers - base) / count,
  };
}

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      "discover-runs": { type: "string", default: "1" },
      "mdns-only": { type: "boolean", default: false },
      nodes: { type: "string", default: "30" },
      lookups: { type: "string", default: "20" },
    },
  });
  const runs = Number(values.runs);
  const mdns = [];
  for (let i = 0; i < runs; i++) mdns.push(await mdnsRun(Number(values["discover-runs"])));
  const discovers = mdns.flatMap((m) => m.discovers);
  const rss = mdns.flatMap((m) => m.rss);
  const mdnsResult = {
    runs,
    all_pairs_found: summary(mdns.map((m) => m.allFound)),
    discover_cli_wall: summary(discovers.map((d) => d.discoverMs)),
    discover_found_all: `${discovers.filter((d) => d.foundAll).length}/${discovers.length}`,
    discover_until_node_started: summary(discovers.map((d) => d.untilNodeStarted)),
    discover_search: summary(discovers.map((d) => d.search)),
    discover_stop_and_exit: summary(discovers.map((d) => d.stopAndExit)),
    empty_deno_run_wall: summary(discovers.map((d) => d.emptyMs)),
    start_process_rss_mib: Math.round(rss.reduce((a, b) => a + b, 0) / rss.length / 2 ** 20),
  };
  const dht = values["mdns-only"]
    ? undefined
    : await dhtRun(Number(values.nodes), Number(values.lookups));
  console.log(JSON.stringify(
    {
      mdns_3_nodes: mdnsResult,
      dht: dht && {
        nodes: Number(values.nodes),
        start_all_ms: Math.round(dht.startAll),
        provide: dht.provide,
        provide_stored_on_peers: dht.storedOn,
        client_join: dht.join,
        find_providers_first: dht.findProviders,
        lookups_correct: `${dht.correct}/${values.lookups}`,
        in_process_rss_per_node_mib: Math.round(dht.perNodeBytes / 2 ** 20 * 10) / 10,
      },
    },
    null,
    2,
  ));
}
