// deno run -A bench/dht_netsim_bench.ts [--nodes 10] [--delay-ms 10] [--lookups 10]
//
// Needs root, iproute2 and nftables (tests/netsim). N `start` processes (mode private, DHT
// servers) on N hosts of the simulator's public segment, each host's link delayed by --delay-ms
// each way (host to host: 4 x delay round trip, 40 ms by default); one of them advertises a
// riscv64 wasm capability. From another host, bench/_dht_lookup_probe.ts looks the capability key
// up from fresh client-mode nodes bootstrapped from a random server (as `discover --dht` does).
// Prints one JSON object: lookup time p50/p95 in ms and in round trips, found count, and the
// resident memory of the `start` processes.
/**
 * DHT lookups over the network simulator with delay; see the header.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createWorld } from "../tests/netsim/create_world.ts";
import { missingPrerequisites, SKIP_HINT } from "../tests/netsim/missing_prerequisites.ts";
import { DISCOVER_FLAGS, execStartFlags, NodeProcess, ROOT } from "../tests/net_spawn.ts";
import { writeProviderConfig } from "../tests/_provider_config.ts";

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1))]!;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nodes: { type: "string", default: "10" },
      "delay-ms": { type: "string", default: "10" },
      lookups: { type: "string", default: "10" },
    },
  });
  const missing = await missingPrerequisites();
  if (missing.length > 0) {
    console.error(`dht_netsim_bench: ${SKIP_HINT}; missing: ${missing.join(", ")}`);
    Deno.exit(1);
  }
  const count = Number(values.nodes);
  const delayMs = Number(values["delay-ms"]);
  const dir = await Deno.makeTempDir();
  const nodes: NodeProcess[] = [];
  try {
    await using world = await createWorld({ name: "dht-rtt" });
    const config = await writeProviderConfig(dir);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const host = await world.addHost(`n${i}`, { link: { delayMs } });
      const bootstrap = i === 0 ? [] : [
        ...new Set([nodes[0]!, nodes[Math.floor(Math.random() * i)]!].map((n) => n.multiaddrs[0]!)),
      ].flatMap((m) => ["--bootstrap", m]);
      nodes.push(
        await NodeProcess.spawn([
          ...["--mode", "private", "--no-mdns", "--listen", `/ip4/${host.address}/tcp/4001`],
          ...bootstrap,
          ...(i === Math.floor(count / 2) ? ["--config", config] : []),
        ], {
          flags: execStartFlags(),
          spawn: (command, options) => host.spawn(command, options),
        }),
      );
    }
    const startAll = performance.now() - t0;
    const provider = nodes[Math.floor(count / 2)]!;
    const provided = await provider.waitForLog(
      (l) => l.event === "provided" && l.key === "/phase/capability/riscv64/wasm",
      120_000,
    );
    // From the provider's own `started` record to its first `provided` one.
    const startedAt = provider.logs.find((l) => l.event === "started")?.ts;
    const provideMs = Date.parse(String(provided.ts)) - Date.parse(String(startedAt));
    const client = await world.addHost("client", { link: { delayMs } });
    const entry = nodes[(Math.floor(count / 2) + 3) % count]!;
    const probe = await client.run(Deno.execPath(), {
      args: [
        "run",
        ...DISCOVER_FLAGS,
        "bench/_dht_lookup_probe.ts",
        entry.multiaddrs[0]!,
        "/phase/capability/riscv64/wasm",
        values.lookups!,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    });
    if (probe.code !== 0) throw new Error(`Cannot run the probe: ${probe.err.trim()}`);
    const rows = probe.out.trim().split("\n").map((l) => JSON.parse(l)) as {
      join_ms: number;
      lookup_ms: number;
      found: string[];
    }[];
    const lookups = rows.map((r) => r.lookup_ms).sort((a, b) => a - b);
    const joins = rows.map((r) => r.join_ms).sort((a, b) => a - b);
    const rtt = 4 * delayMs;
    const rss = [];
    for (const node of nodes) {
      const out = await new Deno.Command("ps", {
        args: ["-o", "rss=", "-p", String(node.child.pid)],
      })
        .output();
      rss.push(Number(new TextDecoder().decode(out.stdout).trim()) * 1024);
    }
    console.log(JSON.stringify(
      {
        nodes: count,
        rtt_ms: rtt,
        start_all_ms: Math.round(startAll),
        provide_after_start_ms: provideMs,
        provided_on_peers: provided.peers,
        client_join_p50_ms: percentile(joins, 50),
        lookup_p50_ms: percentile(lookups, 50),
        lookup_p95_ms: percentile(lookups, 95),
        lookup_p50_round_trips: Math.round(percentile(lookups, 50) / rtt * 10) / 10,
        lookup_p95_round_trips: Math.round(percentile(lookups, 95) / rtt * 10) / 10,
        found: `${rows.filter((r) => r.found[0] === provider.peerId).length}/${rows.length}`,
        start_process_rss_mib: Math.round(rss.reduce((a, b) => a + b, 0) / rss.length / 2 ** 20),
      },
      null,
      2,
    ));
  } finally {
    await Promise.all(nodes.map((node) => node[Symbol.asyncDispose]()));
    await Deno.remove(dir, { recursive: true });
  }
}
