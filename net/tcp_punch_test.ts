import assert from "node:assert/strict";
import net from "node:net";
import { multiaddr } from "@multiformats/multiaddr";
import { tcpPunch } from "./tcp_punch.ts";
import { startNode } from "./node.ts";

/** A TCP port nothing listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The TCP port the next connection `node` accepts comes from, once it is open. */
function nextRemotePort(node: Awaited<ReturnType<typeof startNode>>): Promise<number> {
  return new Promise((resolve) => {
    node.libp2p.addEventListener("connection:open", (event) => {
      resolve(Number(/\/tcp\/(\d+)/.exec(String(event.detail.remoteAddr))?.[1]));
    }, { once: true });
  });
}

Deno.test("tcpPunch() refuses a port outside 1-65535", () => {
  assert.throws(() => tcpPunch({ port: 0 }), {
    name: "RangeError",
    message: "Cannot use punch port 0: expected 1 to 65535",
  });
  assert.throws(() => tcpPunch({ port: 65536 }), { name: "RangeError" });
});

Deno.test("tcpPunch() transport makes every outgoing TCP connection from the fixed port, to several peers at once", async () => {
  const port = freePort();
  const punch = tcpPunch({ port, host: "127.0.0.1" });
  await using a = await startNode({ mdns: false, dht: false });
  await using c = await startNode({ mdns: false, dht: false });
  await using b = await startNode({
    mdns: false,
    dht: false,
    transports: [punch.transport],
    services: { punch: punch.service },
  });
  const seen = [nextRemotePort(a), nextRemotePort(c)];
  await Promise.all([a, c].map((peer) => b.libp2p.dial(peer.libp2p.getMultiaddrs()[0]!)));
  assert.deepEqual(await Promise.all(seen), [port, port]);
  // It never listens: the node's listen addresses are the default TCP transport's.
  assert.ok(b.libp2p.getMultiaddrs().every((m) => !String(m).includes(`/tcp/${port}/`)));
});

Deno.test("tcpPunch() transport dials from an ephemeral port when the fixed port is already connected to that address", async () => {
  const port = freePort();
  const punch = tcpPunch({ port, host: "127.0.0.1" });
  await using a = await startNode({ mdns: false, dht: false });
  await using b = await startNode({ mdns: false, dht: false, transports: [punch.transport] });
  const target = a.libp2p.getMultiaddrs()[0]!;
  const targetPort = Number(/\/tcp\/(\d+)/.exec(String(target))![1]);
  // A plain socket holds the 4-tuple (fixed port -> a's address).
  const holder = net.connect({
    host: "127.0.0.1",
    port: targetPort,
    localAddress: "127.0.0.1",
    localPort: port,
  });
  await new Promise((resolve, reject) => holder.once("connect", resolve).once("error", reject));
  try {
    const seen = nextRemotePort(a);
    const connection = await b.libp2p.dial(target);
    assert.equal(connection.status, "open");
    assert.notEqual(await seen, port);
  } finally {
    holder.destroy();
  }
});

/** `punch.service` on a fake event target; returns its `identify(detail)` and `stop()`. */
function observer(punch: ReturnType<typeof tcpPunch>) {
  const events = new EventTarget();
  const service = (punch.service as (c: unknown) => { start(): void; stop(): void })({ events });
  service.start();
  return {
    identify: (detail: Record<string, unknown>) =>
      events.dispatchEvent(new CustomEvent("peer:identify", { detail })),
    disconnect: (peer: string) =>
      events.dispatchEvent(new CustomEvent("peer:disconnect", { detail: peer })),
    stop: () => service.stop(),
  };
}

Deno.test("tcpPunch(): the punch address is the public address peers connected from the fixed port observe, none when they disagree", async () => {
  const port = freePort();
  const logs: Record<string, unknown>[] = [];
  const punch = tcpPunch({ port, host: "127.0.0.1", onLog: (r) => logs.push(r) });
  await using a = await startNode({ mdns: false, dht: false });
  await using b = await startNode({ mdns: false, dht: false, transports: [punch.transport] });
  const fromFixedPort = await b.libp2p.dial(a.libp2p.getMultiaddrs()[0]!);
  const events = observer(punch);
  try {
    const self = b.peerId;
    // Only connections this transport made from the fixed port count, and only public addresses.
    events.identify({
      peerId: "P1",
      observedAddr: multiaddr("/ip4/11.0.0.2/tcp/9/p2p/" + self),
      connection: {},
    });
    events.identify({
      peerId: "P1",
      observedAddr: multiaddr(`/ip4/10.0.0.2/tcp/${port}`),
      connection: fromFixedPort,
    });
    assert.equal(punch.address, undefined);
    events.identify({
      peerId: "P1",
      observedAddr: multiaddr(`/ip4/11.0.0.2/tcp/${port}/p2p/${self}`),
      connection: fromFixedPort,
    });
    assert.equal(punch.address, `/ip4/11.0.0.2/tcp/${port}`);
    // Identify push says nothing about the address: it stays.
    events.identify({ peerId: "P1", connection: fromFixedPort });
    assert.equal(punch.address, `/ip4/11.0.0.2/tcp/${port}`);
    // A second peer sees another port (the NAT maps each destination apart): no punch address.
    events.identify({
      peerId: "P2",
      observedAddr: multiaddr("/ip4/11.0.0.2/tcp/5555"),
      connection: fromFixedPort,
    });
    assert.equal(punch.address, undefined);
    events.disconnect("P2");
    assert.equal(punch.address, `/ip4/11.0.0.2/tcp/${port}`);
    assert.deepEqual(logs.map((l) => [l.event, l.address, l.reason]), [
      ["punch_address", `/ip4/11.0.0.2/tcp/${port}`, undefined],
      ["punch_address", null, "peers observe different ports"],
      ["punch_address", `/ip4/11.0.0.2/tcp/${port}`, undefined],
    ]);
  } finally {
    events.stop();
  }
});

/** What `punch.forDcutr()` hands a service factory, given these components. */
function dcutrView(punch: ReturnType<typeof tcpPunch>, components: Record<string, unknown>) {
  let seen: Record<string, unknown> | undefined;
  (punch.forDcutr((c: never) => (seen = c)) as (c: unknown) => unknown)(components);
  return seen!;
}

Deno.test("tcpPunch().forDcutr(): DCUtR's address list ends with the punch address once known", async () => {
  const port = freePort();
  const punch = tcpPunch({ port, host: "127.0.0.1" });
  await using a = await startNode({ mdns: false, dht: false });
  await using b = await startNode({ mdns: false, dht: false, transports: [punch.transport] });
  const connection = await b.libp2p.dial(a.libp2p.getMultiaddrs()[0]!);
  const listen = multiaddr("/ip4/10.1.0.2/tcp/4001");
  const view = dcutrView(punch, {
    addressManager: { getAddresses: () => [listen], other: () => "bound" },
    peerId: b.peerId,
  }) as { addressManager: { getAddresses(): unknown[]; other(): string } };
  assert.deepEqual(view.addressManager.getAddresses().map(String), [String(listen)]);
  const events = observer(punch);
  events.identify({
    peerId: "P1",
    observedAddr: multiaddr(`/ip4/11.0.0.2/tcp/${port}`),
    connection,
  });
  events.stop();
  assert.deepEqual(view.addressManager.getAddresses().map(String), [
    String(listen),
    `/ip4/11.0.0.2/tcp/${port}/p2p/${b.peerId}`,
  ]);
  assert.equal(view.addressManager.other(), "bound");
});

Deno.test("tcpPunch().forDcutr(): forced dials go to the transport manager with DCUtR's options and a signal that outlives the dial only as long as the dial", async () => {
  const punch = tcpPunch({ port: 40001 });
  const queued: unknown[] = [];
  const dialled: { ma: string; options: { initiator?: boolean; signal: AbortSignal } }[] = [];
  const view = dcutrView(punch, {
    connectionManager: {
      openConnection: (target: unknown) => {
        queued.push(target);
        return Promise.resolve("queued");
      },
    },
    transportManager: {
      dial: (ma: unknown, options: { initiator?: boolean; signal: AbortSignal }) => {
        dialled.push({ ma: String(ma), options });
        if (String(ma).includes("/tcp/1")) return Promise.reject(new Error("refused"));
        return Promise.resolve("direct");
      },
    },
  }) as { connectionManager: { openConnection(t: unknown, o?: unknown): Promise<unknown> } };
  assert.equal(await view.connectionManager.openConnection("peer"), "queued");
  const dcutrSignal = new AbortController();
  const addrs = [multiaddr("/ip4/11.0.0.3/tcp/1"), multiaddr("/ip4/11.0.0.3/tcp/2")];
  const result = await view.connectionManager.openConnection(addrs, {
    force: true,
    initiator: false,
    signal: dcutrSignal.signal,
  });
  assert.equal(result, "direct");
  assert.deepEqual(queued, ["peer"]);
  assert.deepEqual(dialled.map((d) => [d.ma, d.options.initiator]), [
    ["/ip4/11.0.0.3/tcp/1", false],
    ["/ip4/11.0.0.3/tcp/2", false],
  ]);
  // DCUtR's timeout firing later must not reach the connection made.
  dcutrSignal.abort();
  assert.equal(dialled[1]!.options.signal.aborted, false);
});

Deno.test("tcpPunch().forDcutr(): a relayed connection DCUtR closes stays open until only DCUtR's stream is left", async () => {
  const punch = tcpPunch({ port: 40002 });
  const closed = Promise.withResolvers<void>();
  const relayed = {
    status: "open",
    streams: [{ protocol: "/libp2p/dcutr" }, { protocol: "/phase/job-offer/1.0.0" }],
    close: () => {
      relayed.status = "closed";
      closed.resolve();
      return Promise.resolve();
    },
  };
  let onConnect: ((peer: unknown, c: unknown) => void) | undefined;
  let handler: ((stream: unknown, c: unknown) => void) | undefined;
  const view = dcutrView(punch, {
    registrar: {
      register: (_: string, topology: { onConnect(p: unknown, c: unknown): void }) => {
        onConnect = topology.onConnect;
      },
      handle: (_: string, h: (s: unknown, c: unknown) => void) => {
        handler = h;
      },
    },
  }) as {
    registrar: {
      register(p: string, t: { onConnect(p: unknown, c: { close(): Promise<void> }): void }): void;
      handle(p: string, h: (s: unknown, c: { close(): Promise<void> }) => void): void;
    };
  };
  const handed: { close(): Promise<void> }[] = [];
  view.registrar.register("/libp2p/dcutr", { onConnect: (_, c) => handed.push(c) });
  view.registrar.handle("/libp2p/dcutr", (_, c) => handed.push(c));
  onConnect!("peer", relayed);
  handler!("stream", relayed);
  assert.equal(handed.length, 2);
  await handed[0]!.close();
  assert.equal(relayed.status, "open", "the job offer still runs on it");
  relayed.streams.pop();
  await closed.promise;
  assert.equal(relayed.status, "closed");
});

Deno.test("tcpPunch() transport dials IPv4 TCP addresses only and never listens", () => {
  const log = Object.assign(() => {}, { error() {}, trace() {} });
  const transport = (tcpPunch({ port: 40003 }).transport as (c: unknown) => {
    dialFilter(a: unknown[]): unknown[];
    listenFilter(a: unknown[]): unknown[];
  })({ logger: { forComponent: () => log } });
  const addrs = [
    "/ip4/11.0.0.2/tcp/4001",
    "/ip6/::1/tcp/4001",
    "/dns4/example.test/tcp/4001",
    "/ip4/11.0.0.2/tcp/4001/ws",
    "/ip4/11.0.0.2/tcp/4001/p2p/12D3KooWEBi1HuNTTDbcVj86iyzyqfG4H2KJSUvB8VoL2aFVTxH1",
  ].map((a) => multiaddr(a));
  assert.deepEqual(transport.dialFilter(addrs).map(String), [
    "/ip4/11.0.0.2/tcp/4001",
    "/ip4/11.0.0.2/tcp/4001/p2p/12D3KooWEBi1HuNTTDbcVj86iyzyqfG4H2KJSUvB8VoL2aFVTxH1",
  ]);
  assert.deepEqual(transport.listenFilter(addrs), []);
});
