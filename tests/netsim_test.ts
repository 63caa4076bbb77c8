/**
 * The network simulator (tests/netsim/) for real: namespaces, bridges, nft NAT gateways and
 * impaired links, observed with small probe processes run inside the simulated hosts.
 *
 * Needs root, iproute2 and nftables. Skips with one line when they are missing and CI is not
 * set; with CI=true a missing prerequisite fails.
 */
import assert from "node:assert/strict";
import { createWorld, type Host } from "./netsim/create_world.ts";
import { missingPrerequisites, SKIP_HINT } from "./netsim/missing_prerequisites.ts";
import { processStartTime, sweepWorlds, worldNamespaces } from "./netsim/sweep_worlds.ts";

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

Deno.test({
  name: "netsim: two hosts on one LAN reach each other over UDP and TCP by their LAN addresses",
  ignore,
  async fn() {
    await using world = await createWorld({ name: "lan" });
    await world.addLan("home");
    const a = await world.addHost("a", { lan: "home" });
    const b = await world.addHost("b", { lan: "home" });
    assert.equal(a.address, "10.1.0.2");
    assert.equal(b.address, "10.1.0.3");
    assert.deepEqual(await b.addresses(), ["10.1.0.3"]);
    await echo(b);
    const [asked] = await probe(a, ["udp-ask", `${b.address}:${UDP_PORT}`]);
    assert.match(String(asked?.observed), /^10\.1\.0\.2:\d+$/);
    const [connected] = await probe(a, ["tcp-connect", `${b.address}:${TCP_PORT}`]);
    assert.equal(connected?.connected, true);
    assert.match(String(connected?.observed), /^10\.1\.0\.2:\d+$/);
  },
});

Deno.test({
  name: "netsim: a LAN host reaches a public host through the NAT, seen as the gateway's address",
  ignore,
  async fn() {
    await using world = await createWorld({ name: "nat" });
    const server = await world.addHost("server");
    const lan = await world.addLan("home");
    const laptop = await world.addHost("laptop", { lan: "home" });
    assert.equal(server.address, "198.51.100.1");
    assert.equal(lan.gateway.address, "198.51.100.2");
    await echo(server);
    const [asked] = await probe(laptop, ["udp-ask", `${server.address}:${UDP_PORT}`]);
    assert.match(String(asked?.observed), /^198\.51\.100\.2:\d+$/);
    const [connected] = await probe(laptop, ["tcp-connect", `${server.address}:${TCP_PORT}`]);
    assert.match(String(connected?.observed), /^198\.51\.100\.2:\d+$/);
  },
});

Deno.test({
  name: "netsim: a public host cannot initiate to a LAN host, by its private or public address",
  ignore,
  async fn() {
    await using world = await createWorld({ name: "inbound" });
    const server = await world.addHost("server");
    const lan = await world.addLan("home", { nat: "endpoint-independent" });
    const laptop = await world.addHost("laptop", { lan: "home" });
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
  },
});

/** From one socket on `laptop`, ask two public echo servers what they see. */
async function mappings(nat: "endpoint-independent" | "port-restricted" | "symmetric") {
  await using world = await createWorld({ name: nat.slice(0, 8) });
  const p1 = await world.addHost("p1");
  const p2 = await world.addHost("p2");
  const lan = await world.addLan("home", { nat });
  const laptop = await world.addHost("laptop", { lan: "home" });
  await echo(p1);
  await echo(p2);
  const answers = await probe(laptop, [
    "udp-ask",
    "--port",
    "40000",
    `${p1.address}:${UDP_PORT}`,
    `${p2.address}:${UDP_PORT}`,
  ]);
  return { gateway: lan.gateway.address, observed: answers.map((a) => String(a.observed)) };
}

/** Linux masquerade keeps the source port when it is free: both peers see it. */
function sameMapping(gateway: string, observed: string[]): void {
  assert.deepEqual(observed, [`${gateway}:40000`, `${gateway}:40000`]);
}

for (
  const [nat, behaviour, check] of [
    ["endpoint-independent", "maps one socket to the same ip:port for every peer", sameMapping],
    ["port-restricted", "maps one socket to the same ip:port for every peer", sameMapping],
    [
      "symmetric",
      "maps one socket to a different port for each peer",
      (gateway: string, observed: string[]) => {
        const [first, second] = observed;
        assert.ok(first?.startsWith(`${gateway}:`), String(first));
        assert.ok(second?.startsWith(`${gateway}:`), String(second));
        assert.notEqual(first, second);
      },
    ],
  ] as const
) {
  Deno.test({
    name: `netsim: ${nat} NAT ${behaviour}`,
    ignore,
    async fn() {
      const { gateway, observed } = await mappings(nat);
      check(gateway, observed);
    },
  });
}

/** `laptop` sends to p1, then p2 (never contacted) sends to the mapped address. */
async function unsolicited(nat: "endpoint-independent" | "port-restricted" | "symmetric") {
  await using world = await createWorld({ name: `in-${nat.slice(0, 8)}` });
  const p1 = await world.addHost("p1");
  const p2 = await world.addHost("p2");
  await world.addLan("home", { nat });
  const laptop = await world.addHost("laptop", { lan: "home" });
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
  return { received, p2 };
}

for (
  const [nat, behaviour, check] of [
    [
      "endpoint-independent",
      "lets any public host send to a mapped port",
      (received: unknown, p2: Host) => {
        assert.deepEqual(received, { from: `${p2.address}:5555`, data: "knock" });
      },
    ],
    [
      "port-restricted",
      "drops what a host the socket never contacted sends",
      (received: unknown) => assert.equal(received, null),
    ],
  ] as const
) {
  Deno.test({
    name: `netsim: ${nat} NAT ${behaviour}`,
    ignore,
    async fn() {
      const { received, p2 } = await unsolicited(nat);
      check(received, p2);
    },
  });
}

Deno.test({
  name: "netsim: an impaired link adds its delay to every round trip and drops packets",
  ignore,
  async fn() {
    await using world = await createWorld({ name: "delay" });
    const a = await world.addHost("a", { link: { delayMs: 20 } });
    const b = await world.addHost("b");
    const c = await world.addHost("c", { link: { delayMs: 5 } });
    await echo(b);
    const [delayed] = await probe(a, [
      "udp-ping",
      "--count",
      "5",
      "--timeout-ms",
      "300",
      `${b.address}:${UDP_PORT}`,
    ]);
    assert.equal(delayed?.received, 5);
    for (const rtt of delayed?.rttsMs as number[]) assert.ok(rtt >= 40, `RTT ${rtt} ms < 40 ms`);
    // Resolve ARP before the loss starts, so lost ARP frames cannot stall the pings.
    const [primed] = await probe(c, ["udp-ask", `${b.address}:${UDP_PORT}`]);
    assert.match(String(primed?.observed), /^198\.51\.100\.3:/);
    await c.setLink({ delayMs: 5, lossPercent: 30 });
    // 30% loss each way: about half of 100 pings come back; none lost is out of the question.
    const [lossy] = await probe(c, [
      "udp-ping",
      "--count",
      "100",
      "--interval-ms",
      "2",
      "--timeout-ms",
      "300",
      `${b.address}:${UDP_PORT}`,
    ]);
    assert.ok((lossy?.received as number) <= 80, `${lossy?.received} of 100 came back`);
    assert.ok((lossy?.received as number) >= 1, "no ping came back");
    for (const rtt of lossy?.rttsMs as number[]) assert.ok(rtt >= 10, `RTT ${rtt} ms < 10 ms`);
    // Changing the link takes effect.
    await a.setLink({ delayMs: 40 });
    const [slower] = await probe(a, [
      "udp-ping",
      "--count",
      "3",
      "--timeout-ms",
      "300",
      `${b.address}:${UDP_PORT}`,
    ]);
    assert.equal(slower?.received, 3);
    for (const rtt of slower?.rttsMs as number[]) assert.ok(rtt >= 80, `RTT ${rtt} ms < 80 ms`);
    assert.ok(world.impairmentEngine === "netem" || world.impairmentEngine === "tap");
  },
});

Deno.test({
  name: "netsim: the TAP delay line adds delay and jitter when asked for explicitly",
  ignore,
  async fn() {
    await using world = await createWorld({ name: "tap", impairment: "tap" });
    const lan = await world.addLan("home", { link: { delayMs: 15, jitterMs: 5 } });
    const server = await world.addHost("server");
    const laptop = await world.addHost("laptop", { lan: "home" });
    await echo(server);
    assert.equal(world.impairmentEngine, "tap");
    const [ping] = await probe(laptop, [
      "udp-ping",
      "--count",
      "5",
      "--timeout-ms",
      "300",
      `${server.address}:${UDP_PORT}`,
    ]);
    assert.equal(ping?.received, 5);
    for (const rtt of ping?.rttsMs as number[]) assert.ok(rtt >= 20, `RTT ${rtt} ms < 20 ms`);
    const [asked] = await probe(laptop, ["udp-ask", `${server.address}:${UDP_PORT}`]);
    assert.match(String(asked?.observed), new RegExp(`^${lan.gateway.address}:`));
  },
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
    const creator = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = creator.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    creator.kill("SIGKILL");
    await creator.status;
    await reader.cancel();
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
