/**
 * The network simulator (tests/netsim/) for real: namespaces, bridges, nft NAT gateways and
 * impaired links, observed with small probe processes run inside the simulated hosts.
 *
 * Needs root, iproute2 and nftables. Skips with one line when they are missing and CI is not
 * set; with CI=true a missing prerequisite fails.
 */
import assert from "node:assert/strict";
import {
  createWorld,
  type Host,
  type LanOptions,
  type NatKind,
  type World,
  type WorldOptions,
} from "./netsim/create_world.ts";
import { missingPrerequisites, SKIP_HINT } from "./netsim/missing_prerequisites.ts";
import { processStartTime, sweepWorlds, worldNamespaces } from "./netsim/sweep_worlds.ts";
import { killAtOutput } from "./_kill_at_output.ts";

const MISSING = await missingPrerequisites();
const IN_CI = Deno.env.get("CI") === "true";
const ignore = MISSING.length > 0;
if (ignore && !IN_CI) console.log(`netsim: SKIPPED: ${SKIP_HINT}; missing: ${MISSING.join(", ")}`);

const PROBE = new URL("./netsim/probe.ts", import.meta.url).pathname;
const UDP_PORT = 7000;
const TCP_PORT = 7001;

Deno.test({
  name: "netsim has root, iproute2 and nftables when CI=true",
  ignore: !IN_CI,
  fn() {
    assert.deepEqual(MISSING, [], `netsim is missing ${MISSING.join(", ")} in CI: ${SKIP_HINT}`);
  },
});

/** A probe process inside `host` whose JSON lines can be awaited one by one. */
class Probe {
  readonly child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  #buffered: string[] = [];

  constructor(host: Host, args: string[]) {
    this.child = host.spawn(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-net", PROBE, ...args],
      stderr: "inherit",
    });
    this.#lines = this.#read()[Symbol.asyncIterator]();
  }

  async *#read(): AsyncGenerator<string> {
    let rest = "";
    for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      yield* lines;
    }
  }

  /** The next JSON line; fails when the probe exits first. */
  async next(): Promise<Record<string, unknown>> {
    const line = this.#buffered.shift() ?? (await this.#lines.next()).value;
    if (line === undefined) {
      throw new Error(`Cannot read probe output: it exited with ${(await this.child.status).code}`);
    }
    return JSON.parse(line);
  }

  /** Read to the end and wait for exit. */
  async finish(): Promise<void> {
    while (!(await this.#lines.next()).done) { /* drain */ }
    await this.child.status;
  }
}

/** Run a probe to completion and return its JSON lines. */
async function probe(host: Host, args: string[]): Promise<Record<string, unknown>[]> {
  const { code, out, err } = await host.run(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-net", PROBE, ...args],
  });
  assert.equal(code, 0, `probe ${args.join(" ")} in ${host.name} failed: ${err}`);
  return out.trim().split("\n").map((line) => JSON.parse(line));
}

/** Start a UDP and a TCP echo server in `host`. */
async function echo(host: Host): Promise<void> {
  for (const args of [["udp-echo", `${UDP_PORT}`], ["tcp-echo", `${TCP_PORT}`]]) {
    const server = new Probe(host, args);
    assert.deepEqual(await server.next(), { ready: true });
  }
}

/** A netsim test (skipped without its prerequisites) in a fresh world made with `options`. */
function worldTest(name: string, options: WorldOptions, fn: (world: World) => Promise<void>) {
  Deno.test({
    name: `netsim: ${name}`,
    ignore,
    async fn() {
      await using world = await createWorld(options);
      await fn(world);
    },
  });
}

/** In `world`: a public host `server`, then the LAN `home` (with `options`) and `laptop` on it. */
async function serverAndLaptop(world: World, options: LanOptions = {}) {
  const server = await world.addHost("server");
  const lan = await world.addLan("home", options);
  const laptop = await world.addHost("laptop", { lan: "home" });
  return { server, lan, laptop };
}

/**
 * What `to`'s UDP and TCP echo servers (started here) see as the address of `from`, and whether
 * the TCP connection was made.
 */
async function seenBy(to: Host, from: Host) {
  await echo(to);
  const [asked] = await probe(from, ["udp-ask", `${to.address}:${UDP_PORT}`]);
  const [connected] = await probe(from, ["tcp-connect", `${to.address}:${TCP_PORT}`]);
  return {
    udp: String(asked?.observed),
    tcp: String(connected?.observed),
    connected: connected?.connected,
  };
}

/**
 * Send `count` UDP pings (`intervalMs` apart, each waited for 300 ms) from `from` to the echo
 * server of `to`; every round trip must take at least `minRttMs`. How many came back.
 */
async function ping(
  from: Host,
  to: Host,
  count: number,
  minRttMs: number,
  intervalMs?: number,
): Promise<number> {
  const [result] = await probe(from, [
    ...["udp-ping", "--count", String(count), "--timeout-ms", "300"],
    ...(intervalMs === undefined ? [] : ["--interval-ms", String(intervalMs)]),
    `${to.address}:${UDP_PORT}`,
  ]);
  for (const rtt of result?.rttsMs as number[]) {
    assert.ok(rtt >= minRttMs, `RTT ${rtt} ms < ${minRttMs} ms`);
  }
  return result?.received as number;
}

function namespacesInKernel(): string[] {
  try {
    return [...Deno.readDirSync("/run/netns")].map((e) => e.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

async function processAlive(pid: number): Promise<boolean> {
  return await processStartTime(pid) !== undefined;
}

worldTest("two hosts on one LAN reach each other over UDP and TCP by their LAN addresses", {
  name: "lan",
}, async (world) => {
  await world.addLan("home");
  const a = await world.addHost("a", { lan: "home" });
  const b = await world.addHost("b", { lan: "home" });
  assert.equal(a.address, "10.1.0.2");
  assert.equal(b.address, "10.1.0.3");
  assert.deepEqual(await b.addresses(), ["10.1.0.3"]);
  const seen = await seenBy(b, a);
  assert.match(seen.udp, /^10\.1\.0\.2:\d+$/);
  assert.equal(seen.connected, true);
  assert.match(seen.tcp, /^10\.1\.0\.2:\d+$/);
});

worldTest("a LAN host reaches a public host through the NAT, seen as the gateway's address", {
  name: "nat",
}, async (world) => {
  const { server, lan, laptop } = await serverAndLaptop(world);
  assert.equal(server.address, "198.51.100.1");
  assert.equal(lan.gateway.address, "198.51.100.2");
  const seen = await seenBy(server, laptop);
  assert.match(seen.udp, /^198\.51\.100\.2:\d+$/);
  assert.match(seen.tcp, /^198\.51\.100\.2:\d+$/);
});

worldTest("a public host cannot initiate to a LAN host, by its private or public address", {
  name: "inbound",
}, async (world) => {
  const { server, lan, laptop } = await serverAndLaptop(world, { nat: "endpoint-independent" });
  await echo(laptop);
  // The LAN's private range is not routed on the public segment: unreachable at once.
  const [direct] = await probe(server, ["tcp-connect", `${laptop.address}:${TCP_PORT}`]);
  assert.deepEqual(direct, { connected: false, error: "NetworkUnreachable" });
  // The gateway's public address without a mapping: dropped (no answer at all).
  const [viaGateway, udp] = await Promise.all([
    probe(server, ["tcp-connect", "--timeout-ms", "1000", `${lan.gateway.address}:${TCP_PORT}`]),
    probe(server, ["udp-ask", "--timeout-ms", "1000", `${lan.gateway.address}:${UDP_PORT}`]),
  ]);
  assert.deepEqual(viaGateway[0], { connected: false, error: "timeout" });
  assert.deepEqual(udp[0], { target: `${lan.gateway.address}:${UDP_PORT}`, observed: null });
});

/** The hosts of a {@linkcode natTest}: public p1 and p2, and `laptop` behind the gateway. */
interface NatHosts {
  p1: Host;
  p2: Host;
  laptop: Host;
  /** The gateway's public address. */
  gateway: string;
}

/**
 * A test of a NAT kind in a fresh world `world`: public hosts p1 and p2, then the LAN `home`
 * behind a `nat` gateway with `laptop` on it.
 */
function natTest(
  nat: NatKind,
  behaviour: string,
  world: string,
  fn: (hosts: NatHosts) => Promise<void>,
): void {
  worldTest(`${nat} NAT ${behaviour}`, { name: world }, async (w) => {
    const p1 = await w.addHost("p1");
    const p2 = await w.addHost("p2");
    const lan = await w.addLan("home", { nat });
    const laptop = await w.addHost("laptop", { lan: "home" });
    await fn({ p1, p2, laptop, gateway: lan.gateway.address });
  });
}

/** From one socket on `laptop` (port 40000), ask both public echo servers what they see. */
async function mappings({ p1, p2, laptop }: NatHosts): Promise<string[]> {
  await echo(p1);
  await echo(p2);
  const answers = await probe(laptop, [
    "udp-ask",
    "--port",
    "40000",
    `${p1.address}:${UDP_PORT}`,
    `${p2.address}:${UDP_PORT}`,
  ]);
  return answers.map((a) => String(a.observed));
}

// Linux masquerade keeps the source port when it is free: both peers see it.
for (const nat of ["endpoint-independent", "port-restricted"] as const) {
  natTest(nat, "maps one socket to the same ip:port for every peer", nat.slice(0, 8), async (h) => {
    assert.deepEqual(await mappings(h), [`${h.gateway}:40000`, `${h.gateway}:40000`]);
  });
}

natTest("symmetric", "maps one socket to a different port for each peer", "symmetri", async (h) => {
  const [first, second] = await mappings(h);
  assert.ok(first?.startsWith(`${h.gateway}:`), String(first));
  assert.ok(second?.startsWith(`${h.gateway}:`), String(second));
  assert.notEqual(first, second);
});

/** `laptop` sends to p1, then p2 (never contacted) sends to the mapped address: what arrived. */
async function unsolicited({ p1, p2, laptop }: NatHosts): Promise<unknown> {
  await echo(p1);
  const asker = new Probe(laptop, [
    "udp-ask",
    "--receive",
    "--timeout-ms",
    "1500",
    `${p1.address}:${UDP_PORT}`,
  ]);
  const { observed } = await asker.next();
  assert.equal(typeof observed, "string");
  assert.deepEqual(await asker.next(), { listening: true });
  await probe(p2, ["udp-send", "--port", "5555", "--count", "5", String(observed), "knock"]);
  const { received } = await asker.next();
  await asker.finish();
  return received;
}

natTest(
  "endpoint-independent",
  "lets any public host send to a mapped port",
  "in-endpoint",
  async (h) => {
    assert.deepEqual(await unsolicited(h), { from: `${h.p2.address}:5555`, data: "knock" });
  },
);

natTest(
  "port-restricted",
  "drops what a host the socket never contacted sends",
  "in-port-res",
  async (h) => assert.equal(await unsolicited(h), null),
);

worldTest("an impaired link adds its delay to every round trip and drops packets", {
  name: "delay",
}, async (world) => {
  const a = await world.addHost("a", { link: { delayMs: 20 } });
  const b = await world.addHost("b");
  const c = await world.addHost("c", { link: { delayMs: 5 } });
  await echo(b);
  assert.equal(await ping(a, b, 5, 40), 5);
  // Resolve ARP before the loss starts, so lost ARP frames cannot stall the pings.
  const [primed] = await probe(c, ["udp-ask", `${b.address}:${UDP_PORT}`]);
  assert.match(String(primed?.observed), /^198\.51\.100\.3:/);
  await c.setLink({ delayMs: 5, lossPercent: 30 });
  // 30% loss each way: about half of 100 pings come back; none lost is out of the question.
  const lossy = await ping(c, b, 100, 10, 2);
  assert.ok(lossy <= 80, `${lossy} of 100 came back`);
  assert.ok(lossy >= 1, "no ping came back");
  // Changing the link takes effect.
  await a.setLink({ delayMs: 40 });
  assert.equal(await ping(a, b, 3, 80), 3);
  assert.ok(world.impairmentEngine === "netem" || world.impairmentEngine === "tap");
});

worldTest("the TAP delay line adds delay and jitter when asked for explicitly", {
  name: "tap",
  impairment: "tap",
}, async (world) => {
  const lan = await world.addLan("home", { link: { delayMs: 15, jitterMs: 5 } });
  const server = await world.addHost("server");
  const laptop = await world.addHost("laptop", { lan: "home" });
  await echo(server);
  assert.equal(world.impairmentEngine, "tap");
  assert.equal(await ping(laptop, server, 5, 20), 5);
  const [asked] = await probe(laptop, ["udp-ask", `${server.address}:${UDP_PORT}`]);
  assert.match(String(asked?.observed), new RegExp(`^${lan.gateway.address}:`));
});

worldTest("60 public hosts all resolve each other at once (the neighbour table is shared)", {
  name: "arp60",
}, async (world) => {
  const hosts: Host[] = [];
  for (let i = 1; i <= 60; i++) hosts.push(await world.addHost(`h${i}`));
  const all = hosts.map((h) => h.address).join(" ");
  // One datagram from every host to every other, all at once: 3,540 ARP entries within a second
  // or two. The kernel keeps one ARP table for all namespaces, by default capped at 1,024 entries
  // (gc_thresh3) that are at most 5 s old; past that, new neighbours fail ("neighbor table
  // overflow!") and their packets are dropped, as 100 DHT nodes' dials were.
  await Promise.all(hosts.map(async (host) => {
    const send = `for a in ${all}; do [ $a = ${host.address} ] || echo x > /dev/udp/$a/9; done`;
    await host.run("bash", { args: ["-c", `${send} 2>/dev/null; true`] });
  }));
  const unresolved = async (host: Host) => {
    const { out } = await host.run("ip", { args: ["-j", "-4", "neigh", "show", "dev", "eth0"] });
    const entries: { dst: string; state?: string[] }[] = JSON.parse(out || "[]");
    const resolved = new Set(
      entries.filter((e) => !e.state?.some((s) => s === "FAILED" || s === "INCOMPLETE"))
        .map((e) => e.dst),
    );
    return hosts.filter((h) => h !== host && !resolved.has(h.address)).length;
  };
  let missing = -1;
  for (let attempt = 0; attempt < 20 && missing !== 0; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 250));
    missing = (await Promise.all(hosts.map(unresolved))).reduce((a, b) => a + b, 0);
  }
  assert.equal(missing, 0, `${missing} of ${60 * 59} neighbours unresolved`);
});

Deno.test({
  name: "netsim: disposing of a world removes its namespaces and processes, even after a throw",
  ignore,
  async fn() {
    let names: string[] = [];
    let pid = 0;
    await assert.rejects(async () => {
      await using world = await createWorld({ name: "throws" });
      await world.addLan("home");
      const host = await world.addHost("a", { lan: "home", link: { delayMs: 1 } });
      pid = host.spawn("sleep", { args: ["1000"] }).pid;
      names = world.namespaces;
      assert.equal(names.length, 3);
      for (const name of names) assert.ok(namespacesInKernel().includes(name), name);
      assert.ok(await processAlive(pid));
      throw new Error("boom");
    }, /^Error: boom$/);
    for (const name of names) assert.ok(!namespacesInKernel().includes(name), name);
    assert.ok(!await processAlive(pid), `process ${pid} survived its world`);
  },
});

Deno.test({
  name: "netsim: a new world sweeps away the leftovers of a world whose creator was killed",
  ignore,
  async fn() {
    const script = `
      import { createWorld } from ${
      JSON.stringify(new URL("./netsim/create_world.ts", import.meta.url).href)
    };
      const world = await createWorld({ name: "orphan" });
      const host = await world.addHost("a", { link: { delayMs: 1 } });
      const child = host.spawn("sleep", { args: ["1000"], stdout: "null", stderr: "null" });
      console.log(JSON.stringify({ names: world.namespaces, pid: child.pid }));
      await new Promise(() => {});
    `;
    // Its creator is killed the moment the world stands.
    const text = await killAtOutput(["eval", "--quiet", script], (t) => t.includes("\n"));
    const { names, pid } = JSON.parse(text) as { names: string[]; pid: number };
    assert.equal(names.length, 2);
    for (const name of names) assert.ok((await worldNamespaces()).includes(name), name);
    assert.ok(await processAlive(pid));
    // A live world of this process is left alone.
    await using mine = await createWorld({ name: "sweeper" });
    for (const name of names) assert.ok(!namespacesInKernel().includes(name), name);
    assert.ok(!await processAlive(pid), `process ${pid} survived the sweep`);
    assert.ok(!(await sweepWorlds()).includes(mine.hubNamespace));
    assert.ok(namespacesInKernel().includes(mine.hubNamespace));
  },
});
