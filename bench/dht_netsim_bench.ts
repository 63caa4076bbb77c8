// deno run -A bench/dht_netsim_bench.ts [--nodes 10[,30,100]] [--delay-ms 10] [--lookups 10]
//   [--trace]                                  (deno task bench:dht runs --nodes 10,30)
//
// Needs root, iproute2 and nftables (tests/netsim); without them it says so in one line and
// exits 0 (so `deno task bench` runs anywhere). For each size N, in a fresh world: N `start`
// processes (mode private, DHT servers) on N hosts of the simulator's public segment, each
// host's link delayed by --delay-ms each way (host to host: 4 x delay round trip, 40 ms by
// default), started one after another (each waits for the previous one's `started` line, so 2
// cores cope). One of them, in the middle of the start order, advertises a riscv64 wasm
// capability; the others run with --no-worker --no-api (a DHT-only node: no job service, no
// sandbox pool, no HTTP API). From another host, bench/_dht_lookup_probe.ts looks the
// capability key up from fresh client-mode nodes (as `discover --dht` does), each bootstrapped
// from a different server other than the provider. Prints one JSON object per size: start time
// (all nodes, and one node p50), provide time (first publication, and until min(N-1, 20) peers
// hold the record), client join and lookup time p50/p95 in ms and in round trips, found count,
// resident memory per `start` process (DHT-only nodes and the provider), and the host's
// MemAvailable before and after starting them.
//
// It refuses to start (or stops adding nodes) when MemAvailable would drop under 4 GiB, and
// tears every process and namespace down on the way out, also after a failure or SIGINT/SIGTERM.
/**
 * DHT lookups over the network simulator with delay; see the header.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createWorld, type World } from "../tests/netsim/create_world.ts";
import { missingPrerequisites, SKIP_HINT } from "../tests/netsim/missing_prerequisites.ts";
import { DISCOVER_FLAGS, execStartFlags, NodeProcess, ROOT } from "../tests/net_spawn.ts";
import { writeProviderConfig } from "../tests/_provider_config.ts";

const KEY = "/phase/capability/riscv64/wasm";
const MEMORY_FLOOR = 4 * 2 ** 30;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1))]!;
}

async function output(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout);
}

/** MemAvailable of the host, in bytes (`cat`: Deno wants --allow-all to read /proc). */
async function memAvailable(): Promise<number> {
  const text = await output("cat", ["/proc/meminfo"]);
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
}

async function rssOf(pid: number): Promise<number> {
  return Number((await output("ps", ["-o", "rss=", "-p", String(pid)])).trim()) * 1024;
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

async function runSize(
  count: number,
  options: { delayMs: number; lookups: number; trace: boolean; dir: string; track: Set<World> },
) {
  const { delayMs, lookups, trace, dir, track } = options;
  // --delay-ms 0: plain veth links, no delay line. (At 100 hosts dials timed out with and without
  // it until the simulator made room in the kernel's shared ARP table, docs/netsim.md "Large
  // worlds"; the delay line at 100 hosts has not been measured since.)
  const link = delayMs > 0 ? { link: { delayMs } } : {};
  const memBefore = await memAvailable();
  const world = await createWorld({ name: `dht${count}` });
  track.add(world);
  const nodes: NodeProcess[] = [];
  try {
    const config = await writeProviderConfig(dir);
    const providerIndex = Math.floor(count / 2);
    const startTimes: number[] = [];
    let perNode = 0;
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      // Stop before the machine runs short: others work on it too.
      const available = await memAvailable();
      perNode = i > 0 ? Math.max(perNode, (memBefore - available) / i) : 160 * 2 ** 20;
      if (available - perNode < MEMORY_FLOOR) {
        throw new Error(
          `Cannot start node ${i + 1} of ${count}: ${mib(available)} MiB available, ` +
            `~${mib(perNode)} MiB per node, keeping ${mib(MEMORY_FLOOR)} MiB free`,
        );
      }
      const host = await world.addHost(`n${i}`, link);
      const bootstrap = i === 0 ? [] : [
        // Two random earlier nodes: with every node bootstrapping from the first one, at 100 nodes
        // that one was at its connection limit and later nodes' dials to it timed out.
        ...new Set(
          [0, 1].map(() => nodes[Math.floor(Math.random() * i)]!.multiaddrs[0]!),
        ),
      ].flatMap((m) => ["--bootstrap", m]);
      const ts = performance.now();
      nodes.push(
        await NodeProcess.spawn([
          ...["--mode", "private", "--no-mdns", "--listen", `/ip4/${host.address}/tcp/4001`],
          ...bootstrap,
          ...(i === providerIndex ? ["--config", config] : ["--no-worker", "--no-api"]),
        ], {
          flags: execStartFlags(),
          spawn: (command, spawnOptions) => host.spawn(command, spawnOptions),
        }),
      );
      startTimes.push(performance.now() - ts);
    }
    const startAll = performance.now() - t0;
    const memAfter = await memAvailable();
    const provider = nodes[providerIndex]!;
    const isKey = (l: Record<string, unknown>) => l.event === "provided" && l.key === KEY;
    const provided = await provider.waitForLog(isKey, 120_000);
    // From the provider's own `started` record to its first `provided` one.
    const startedAt = Date.parse(String(provider.logs.find((l) => l.event === "started")?.ts));
    // Steady state: the provider publishes again as later nodes join among the k closest; wait
    // (up to 60 s) until every node, or k = 20 of them, holds the record.
    const everywhere = await provider.waitForLog(
      (l) => isKey(l) && Number(l.peers) >= Math.min(count - 1, 20),
      60_000,
    ).catch(() => undefined);
    const client = await world.addHost("client", link);
    const entries = nodes.filter((n) => n !== provider).map((n) => n.multiaddrs[0]!);
    // A different entry for each lookup, spread over the start order.
    const step = Math.max(1, Math.floor(entries.length / lookups));
    const picked = Array.from({ length: lookups }, (_, i) => entries[(i * step) % entries.length]!);
    const probe = await client.run(Deno.execPath(), {
      args: [
        "run",
        ...DISCOVER_FLAGS,
        "bench/_dht_lookup_probe.ts",
        picked.join(","),
        KEY,
        String(lookups),
        ...(trace ? ["--trace"] : []),
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    });
    if (probe.code !== 0) throw new Error(`Cannot run the probe: ${probe.err.trim()}`);
    if (trace) console.error(probe.out.trim());
    const rows = probe.out.trim().split("\n").map((l) => JSON.parse(l)) as {
      join_ms: number | null;
      lookup_ms: number | null;
      found: string[];
    }[];
    const joined = rows.filter((r) => r.join_ms !== null);
    if (joined.length === 0) throw new Error("Cannot measure lookups: no client joined");
    const lookupMs = joined.map((r) => r.lookup_ms!).sort((a, b) => a - b);
    const joins = joined.map((r) => r.join_ms!).sort((a, b) => a - b);
    const rtt = 4 * delayMs;
    const rss = await Promise.all(nodes.map((n) => rssOf(n.child.pid)));
    const dhtOnly = rss.filter((_, i) => i !== providerIndex).sort((a, b) => a - b);
    const rtts = (ms: number) => rtt > 0 ? Math.round(ms / rtt * 10) / 10 : null;
    return {
      nodes: count,
      rtt_ms: rtt,
      start_all_ms: Math.round(startAll),
      start_one_p50_ms: Math.round(percentile([...startTimes].sort((a, b) => a - b), 50)),
      provide_after_start_ms: Date.parse(String(provided.ts)) - startedAt,
      provided_on_peers: provided.peers,
      provided_everywhere_after_start_ms: everywhere
        ? Date.parse(String(everywhere.ts)) - startedAt
        : null,
      provided_history: provider.logs.filter(isKey).map((l) => l.peers),
      client_join_p50_ms: percentile(joins, 50),
      client_join_p95_ms: percentile(joins, 95),
      lookup_p50_ms: percentile(lookupMs, 50),
      lookup_p95_ms: percentile(lookupMs, 95),
      lookup_p50_round_trips: rtts(percentile(lookupMs, 50)),
      lookup_p95_round_trips: rtts(percentile(lookupMs, 95)),
      found: `${rows.filter((r) => r.found[0] === provider.peerId).length}/${rows.length}`,
      clients_not_joined: rows.length - joined.length,
      rss_dht_only_p50_mib: mib(percentile(dhtOnly, 50)),
      rss_dht_only_max_mib: mib(dhtOnly[dhtOnly.length - 1] ?? 0),
      rss_provider_mib: mib(rss[providerIndex]!),
      mem_available_used_per_node_mib: mib((memBefore - memAfter) / count),
      mem_available_before_mib: mib(memBefore),
      mem_available_after_mib: mib(memAfter),
    };
  } finally {
    track.delete(world);
    await Promise.all(nodes.map((node) => node[Symbol.asyncDispose]()));
    await world[Symbol.asyncDispose]();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nodes: { type: "string", default: "10" },
      "delay-ms": { type: "string", default: "10" },
      lookups: { type: "string", default: "10" },
      trace: { type: "boolean", default: false },
    },
  });
  const missing = await missingPrerequisites();
  if (missing.length > 0) {
    console.error(`dht_netsim_bench: skipped: ${SKIP_HINT}; missing: ${missing.join(", ")}`);
    Deno.exit(0);
  }
  const sizes = values.nodes!.split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 2 || n > 250)) {
    console.error(`dht_netsim_bench: Cannot use --nodes '${values.nodes}': 2 to 250 each`);
    Deno.exit(2);
  }
  const dir = await Deno.makeTempDir();
  const live = new Set<World>();
  // Deno's default for these signals ends the process without `finally`: tear down first.
  const onSignal = async () => {
    for (const world of live) await world[Symbol.asyncDispose]().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    for (const count of sizes) {
      const load = (await output("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
      const result = await runSize(count, {
        delayMs: Number(values["delay-ms"]),
        lookups: Number(values.lookups),
        trace: values.trace!,
        dir,
        track: live,
      });
      console.log(JSON.stringify({ ...result, load_average_at_start: load }, null, 2));
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await Deno.remove(dir, { recursive: true });
  }
}
