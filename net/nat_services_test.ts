import assert from "node:assert/strict";
import { DEFAULT_RELAY_LIMITS, natServices } from "./nat_services.ts";

Deno.test("natServices() refuses an unknown reachability and out-of-range relay limits", () => {
  assert.throws(() => natServices({ reachability: "maybe" as never }), {
    name: "TypeError",
    message: "Cannot use reachability 'maybe': expected auto, public or private",
  });
  assert.throws(() => natServices({ relay: { dataLimitBytes: 0 } }), {
    name: "RangeError",
    message: "Cannot use dataLimitBytes 0: expected a positive integer",
  });
});

Deno.test("natServices(): a private node listens on /p2p-circuit, only auto runs AutoNAT, relay only on request", () => {
  const priv = natServices({ reachability: "private" });
  assert.deepEqual(priv.listen, ["/p2p-circuit"]);
  assert.deepEqual(Object.keys(priv.services).sort(), ["dcutr", "identifyPush", "reachability"]);
  assert.equal(priv.relayLimits, undefined);
  assert.equal(priv.transports.length, 1);
  const auto = natServices({ relay: true });
  assert.deepEqual(auto.listen, []);
  assert.deepEqual(Object.keys(auto.services).sort(), [
    "autonat",
    "dcutr",
    "identifyPush",
    "reachability",
    "relay",
  ]);
  assert.deepEqual(auto.relayLimits, DEFAULT_RELAY_LIMITS);
});

/** The reachability service of `natServices({ reachability: "auto" })` on fake components. */
async function decide(addresses: { multiaddr: string; verified: boolean }[]) {
  const logged = Promise.withResolvers<Record<string, unknown>>();
  const listened: string[] = [];
  const { services } = natServices({ autoGraceMs: 1, onLog: (r) => logged.resolve(r) });
  const service = (services.reachability as (c: unknown) => {
    start(): void;
    stop(): void;
    state: string;
  })({
    addressManager: { getAddressesWithMetadata: () => addresses },
    transportManager: {
      listen: (addrs: unknown[]) => {
        listened.push(...addrs.map(String));
        return Promise.resolve();
      },
    },
  });
  assert.equal(service.state, "unknown");
  service.start();
  try {
    const record = await logged.promise;
    await Promise.resolve();
    return { record, listened, state: service.state };
  } finally {
    service.stop();
  }
}

Deno.test("reachability auto: no confirmed public address means private, and the node listens on /p2p-circuit", async () => {
  const { record, listened, state } = await decide([
    { multiaddr: "/ip4/10.1.0.2/tcp/4001", verified: true },
    { multiaddr: "/ip4/11.0.0.7/tcp/4001", verified: false },
  ]);
  assert.equal(state, "private");
  assert.deepEqual(record, { level: "info", event: "reachability", reachability: "private" });
  assert.deepEqual(listened, ["/p2p-circuit"]);
});

Deno.test("reachability auto: an address AutoNAT confirmed public means public, no relay", async () => {
  const { record, listened, state } = await decide([
    { multiaddr: "/ip4/11.0.0.7/tcp/4001", verified: true },
  ]);
  assert.equal(state, "public");
  assert.deepEqual(record.confirmed, ["/ip4/11.0.0.7/tcp/4001"]);
  assert.deepEqual(listened, []);
});

Deno.test("reachability public: the node vouches for its public listen addresses, now and as listeners start", () => {
  const { services } = natServices({ reachability: "public" });
  const addresses = [
    { multiaddr: "/ip4/11.0.0.7/tcp/4001", verified: false, type: "transport" },
    { multiaddr: "/ip4/10.1.0.2/tcp/4001", verified: true, type: "transport" },
    { multiaddr: "/ip4/11.0.0.9/tcp/5555", verified: false, type: "observed" },
  ];
  const confirmed: string[] = [];
  const events = new EventTarget();
  const service = (services.reachability as (c: unknown) => {
    afterStart(): void;
    stop(): void;
    state: string;
  })({
    addressManager: {
      getAddressesWithMetadata: () => addresses,
      confirmObservedAddr: (addr: string, options: { type: string }) => {
        assert.equal(options.type, "transport");
        confirmed.push(addr);
        addresses.find((a) => a.multiaddr === addr)!.verified = true;
      },
    },
    transportManager: { listen: () => Promise.reject(new Error("unused")) },
    events,
  });
  assert.equal(service.state, "public");
  service.afterStart();
  assert.deepEqual(confirmed, ["/ip4/11.0.0.7/tcp/4001"]);
  addresses.push({ multiaddr: "/ip4/11.0.0.7/tcp/4002/ws", verified: false, type: "transport" });
  events.dispatchEvent(new Event("transport:listening"));
  assert.deepEqual(confirmed, ["/ip4/11.0.0.7/tcp/4001", "/ip4/11.0.0.7/tcp/4002/ws"]);
  service.stop();
  addresses.push({ multiaddr: "/ip4/11.0.0.8/tcp/1", verified: false, type: "transport" });
  events.dispatchEvent(new Event("transport:listening"));
  assert.equal(confirmed.length, 2);
});

Deno.test("natServices({ punchPort }) adds the punch transport and service and wraps DCUtR", () => {
  const plain = natServices({ reachability: "public" });
  const nat = natServices({ reachability: "public", punchPort: 4002 });
  assert.equal(nat.transports.length, 2);
  assert.equal(plain.transports.length, 1);
  assert.deepEqual(Object.keys(nat.services).sort(), [
    "dcutr",
    "identifyPush",
    "punch",
    "reachability",
  ]);
  assert.notEqual(nat.services.dcutr, plain.services.dcutr);
  assert.throws(() => natServices({ punchPort: 0 }), {
    name: "RangeError",
    message: "Cannot use punch port 0: expected 1 to 65535",
  });
});
