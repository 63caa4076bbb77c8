// deno run --allow-net --allow-sys=networkInterfaces --ignore-env bench/_dht_lookup_probe.ts
//   <entry multiaddr> <key> <lookups>
//
// Run by bench/dht_netsim_bench.ts inside a netsim host: each lookup from a fresh client-mode
// node (as `discover --dht`) bootstrapped from <entry>; prints one JSON line per lookup:
// {"join_ms":..., "lookup_ms":..., "found":[PeerId...]}.
/**
 * Lookup probe for the netsim DHT benchmark; see the header.
 *
 * @module
 */
import { startNode } from "../net/node.ts";

if (import.meta.main) {
  (await import("../net/node_compat.ts")).applyNodeCompat(); // see docs/network.md
  const [entry, key, count = "10"] = Deno.args;
  if (!entry || !key) throw new TypeError("Cannot probe: give an entry multiaddr and a key");
  for (let i = 0; i < Number(count); i++) {
    const tj = performance.now();
    await using client = await startNode({
      mdns: false,
      dhtClientMode: true,
      listen: [],
      bootstrap: [entry],
    });
    const dht = client.libp2p.services.dht as unknown as { routingTable: { size: number } };
    while (dht.routingTable.size === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    const joinMs = performance.now() - tj;
    const tl = performance.now();
    const found = await client.findProviders(key, {
      limit: 1,
      signal: AbortSignal.timeout(60_000),
    });
    const lookupMs = performance.now() - tl;
    console.log(JSON.stringify({
      join_ms: Math.round(joinMs),
      lookup_ms: Math.round(lookupMs),
      found: found.map((p) => p.peerId),
    }));
  }
}
