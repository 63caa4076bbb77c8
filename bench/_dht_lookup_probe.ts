// deno run --allow-net --allow-sys=networkInterfaces --ignore-env bench/_dht_lookup_probe.ts
//   <entry multiaddr>[,<entry multiaddr>...] <key> <lookups> [--trace]
//
// Run by bench/dht_netsim_bench.ts inside a netsim host: each lookup from a fresh client-mode
// node (as `discover --dht`) bootstrapped from one entry (lookup i from entry i mod the number
// of entries); prints one JSON line per lookup:
// {"join_ms":..., "lookup_ms":..., "found":[PeerId...]} (both times null when the client did
// not join within 30 s). With --trace, each line also has
// "trace": every step with its time in ms from the client's start (connections opened, identify,
// routing table additions, each kad message sent and answered, to which peer, and whether a
// connection to it was already open).
/**
 * Lookup probe for the netsim DHT benchmark; see the header.
 *
 * @module
 */
import { startNode } from "../net/node.ts";

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  const trace = Deno.args.includes("--trace");
  const [entryList, key, count = "10"] = Deno.args.filter((a) => a !== "--trace");
  if (!entryList || !key) throw new TypeError("Cannot probe: give an entry multiaddr and a key");
  const entries = entryList.split(",");
  for (let i = 0; i < Number(count); i++) {
    const entry = entries[i % entries.length]!;
    const tj = performance.now();
    const steps: Record<string, unknown>[] = [];
    const step = (event: string, fields: Record<string, unknown> = {}) => {
      if (trace) steps.push({ t: Math.round(performance.now() - tj), event, ...fields });
    };
    const short = (id: unknown) => String(id).slice(-6);
    await using client = await startNode({
      mdns: false,
      dhtClientMode: true,
      listen: [],
      bootstrap: [entry],
      onLog: (r) => {
        if (r.event === "peer_connected") step("peer_connected", { peer: short(r.peer_id) });
      },
    });
    const libp2p = client.libp2p;
    const dht = libp2p.services.dht as unknown as {
      routingTable: EventTarget & { size: number };
    };
    if (trace) {
      libp2p.addEventListener(
        "peer:identify",
        (e) => step("identified", { peer: short(e.detail.peerId) }),
      );
      dht.routingTable.addEventListener(
        "peer:add",
        (e) => step("table_add", { peer: short((e as CustomEvent).detail) }),
      );
    }
    step("node_started");
    const joinBy = performance.now() + 30_000;
    while (dht.routingTable.size === 0 && performance.now() < joinBy) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    if (dht.routingTable.size === 0) {
      // Never joined (the entry unreachable, or the machine too busy): a miss, not a hang.
      console.log(JSON.stringify({ join_ms: null, lookup_ms: null, found: [] }));
      continue;
    }
    const joinMs = performance.now() - tj;
    step("joined");
    const tl = performance.now();
    const found = await client.findProviders(key, {
      limit: 1,
      signal: AbortSignal.timeout(60_000),
      ...(trace
        ? {
          onProgress: (e: CustomEvent) => {
            const d = (e.detail ?? {}) as Record<string, unknown> & {
              providers?: unknown[];
              closer?: unknown[];
              error?: unknown;
            };
            const peer = d.to ?? d.from ?? d.peer;
            step(e.type, {
              ...(peer
                ? { peer: short(peer), open: libp2p.getConnections(peer as never).length > 0 }
                : {}),
              ...(d.providers ? { providers: d.providers.length, closer: d.closer?.length } : {}),
              ...(d.error ? { error: String(d.error) } : {}),
            });
          },
        }
        : {}),
    });
    const lookupMs = performance.now() - tl;
    step("lookup_done");
    console.log(JSON.stringify({
      join_ms: Math.round(joinMs),
      lookup_ms: Math.round(lookupMs),
      found: found.map((p) => p.peerId),
      ...(trace ? { trace: steps } : {}),
    }));
  }
}
