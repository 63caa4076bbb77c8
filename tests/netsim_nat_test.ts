/**
 * NAT traversal in the network simulator: a public bootstrap node that runs a relay, workers
 * behind an endpoint-independent NAT (A) and a symmetric NAT (C), and a requester behind NAT B.
 * The workers reserve a slot on the relay and advertise `/p2p-circuit` addresses; the requester
 * finds a worker through the DHT, runs hello.wasm there through the relay and verifies the
 * receipt; a job larger than the relay's data limit fails with one clear line. Then hole
 * punching (`--punch-port`): two nodes behind endpoint-independent or port-restricted NATs upgrade
 * their relayed connection to a direct one (DCUtR, TCP simultaneous open) and run such a job;
 * behind symmetric NATs the punch fails and the job runs over the relay.
 *
 * Needs root, iproute2 and nftables: skips with one line without them unless CI=true.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createWorld, type Host, type World } from "./netsim/create_world.ts";
import { missingPrerequisites, SKIP_HINT } from "./netsim/missing_prerequisites.ts";
import { execStartFlags, NodeProcess, ROOT } from "./net_spawn.ts";
import { taskArgs } from "./_task.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { toHex } from "../runtime/digest.ts";
import { DEFAULT_RELAY_LIMITS } from "../net/nat_services.ts";

const MISSING = await missingPrerequisites();
const IN_CI = Deno.env.get("CI") === "true";
const ignore = MISSING.length > 0;
if (ignore && !IN_CI) {
  console.log(`netsim_nat: SKIPPED: ${SKIP_HINT}; missing: ${MISSING.join(", ")}`);
}

const HELLO_PATH = join(ROOT, "examples/hello.wasm");

Deno.test({
  name: "netsim_nat has root, iproute2 and nftables when CI=true",
  ignore: !IN_CI,
  fn() {
    assert.deepEqual(MISSING, [], `netsim is missing ${MISSING.join(", ")} in CI: ${SKIP_HINT}`);
  },
});

Deno.test("start --punch-port refuses a port outside 1-65535 and the port it listens on, with one line", async () => {
  for (
    const [args, line] of [
      [["--punch-port", "0"], "Cannot use --punch-port '0': expected a port from 1 to 65535"],
      [
        ["--punch-port", "4002x"],
        "Cannot use --punch-port '4002x': expected a port from 1 to 65535",
      ],
      [
        ["--punch-port", "4002", "--listen", "/ip4/127.0.0.1/tcp/4002"],
        "Cannot use --punch-port '4002': the node listens on that port; pick another",
      ],
    ] as const
  ) {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...execStartFlags(), "cli/start.ts", ...args, "--no-mdns"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 2, err);
    assert.equal(err, `start: ${line} (see start --help)\n`);
  }
});

/** Spawn `start` inside `host`, state in `<root>/<name>`, and wait for its `started` line. */
/**
 * A netsim test (skipped as `ignore` says) in a fresh world named `name`, whose public segment
 * is 11.0.0.0/24 (outside every reserved range, so libp2p treats its addresses as public), with
 * a temp dir; every node `body` pushes onto `nodes` is stopped afterwards, last first.
 */
function natWorldTest(
  testName: string,
  name: string,
  body: (world: World, root: string, nodes: NodeProcess[]) => Promise<void>,
) {
  Deno.test({
    name: testName,
    ignore,
    async fn() {
      const root = await Deno.makeTempDir({ prefix: "plasm-netsim-nat-" });
      await using world = await createWorld({ name, publicPrefix: "11.0.0.0/24" });
      const nodes: NodeProcess[] = [];
      try {
        await body(world, root, nodes);
      } finally {
        for (const node of nodes.reverse()) await node.stop();
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}

/** The public relay (and bootstrap peer) on `host`, pushed onto `nodes`, and its multiaddr. */
async function startRelay(host: Host, root: string, nodes: NodeProcess[]) {
  const relay = await startIn(host, root, "relay", [
    ...["--relay", "--reachability", "public", "--no-worker", "--no-api"],
  ]);
  nodes.push(relay);
  return { relay, seed: `/ip4/${host.address}/tcp/4001/p2p/${relay.peerId}` };
}

/** A node's log line saying at least one peer stored its capability record in the DHT. */
function providedCapability(l: Record<string, unknown>): boolean {
  return l.event === "provided" && String(l.key).startsWith("/phase/capability/") &&
    Number(l.peers) > 0;
}

function startIn(host: Host, root: string, name: string, args: string[]): Promise<NodeProcess> {
  return NodeProcess.spawn([
    ...["--state-dir", `${root}/${name}`, "--no-mdns"],
    ...["--listen", `/ip4/${host.address}/tcp/4001`],
    ...args,
  ], {
    flags: execStartFlags(),
    spawn: (command, options) => host.spawn(command, options),
  });
}

/** Run `submit --wait` inside `host` against the node whose state is `stateDir`. */
async function submitIn(host: Host, stateDir: string, args: string[]) {
  return await host.run(Deno.execPath(), {
    args: await taskArgs("submit", [HELLO_PATH, "--state-dir", stateDir, ...args]),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
  });
}

/** `GET /status` of the node whose state is `stateDir`, asked from inside `host`. */
async function statusIn(host: Host, stateDir: string): Promise<Record<string, unknown>> {
  const script = `
    const { url } = JSON.parse(await Deno.readTextFile(${JSON.stringify(`${stateDir}/api.json`)}));
    const token = (await Deno.readTextFile(${JSON.stringify(`${stateDir}/api.token`)})).trim();
    const response = await fetch(new URL("status", url), { headers: { authorization: "Bearer " + token } });
    console.log(await response.text());`;
  const { code, out, err } = await host.run(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    env: { NO_COLOR: "1" },
  });
  assert.equal(code, 0, err);
  return JSON.parse(out);
}

natWorldTest(
  "private workers behind NATs reserve on a public relay; a requester behind another NAT finds one through the DHT, runs hello.wasm over the relay and verifies the receipt; an oversized job fails with one clear line; a public requester gets a direct connection and the large job runs",
  "nat",
  async (world, root, nodes) => {
    const relayHost = await world.addHost("relay");
    await world.addLan("a", { nat: "endpoint-independent" });
    await world.addLan("b", { nat: "endpoint-independent" });
    await world.addLan("c", { nat: "symmetric" });
    const workerAHost = await world.addHost("worker-a", { lan: "a" });
    const requesterHost = await world.addHost("requester", { lan: "b" });
    const workerCHost = await world.addHost("worker-c", { lan: "c" });

    const { relay, seed } = await startRelay(relayHost, root, nodes);
    const workerA = await startIn(workerAHost, root, "worker-a", [
      ...["--reachability", "private", "--bootstrap", seed],
    ]);
    nodes.push(workerA);
    const workerC = await startIn(workerCHost, root, "worker-c", [
      ...["--reachability", "private", "--bootstrap", seed],
    ]);
    nodes.push(workerC);
    // Each worker reserves on the relay and advertises a relayed address.
    const circuit = (l: Record<string, unknown>) =>
      l.event === "addresses_changed" &&
      (l.multiaddrs as string[]).some((a) => a.includes(`${relay.peerId}/p2p-circuit`));
    await workerA.waitForLog(circuit, 30_000);
    await workerC.waitForLog(circuit, 30_000);
    for (const worker of [workerA, workerC]) await worker.waitForLog(providedCapability, 60_000);

    const requester = await startIn(requesterHost, root, "requester", [
      ...["--no-worker", "--reachability", "public", "--bootstrap", seed],
    ]);
    nodes.push(requester);
    await requester.waitForLog((l) => l.event === "api_listening");
    await requester.waitForLog((l) => l.event === "peer_connected" && l.peer_id === relay.peerId);

    const reqDir = `${root}/requester`;
    const workers = new Map([[workerA.peerId, "a"], [workerC.peerId, "c"]]);
    const used = new Set<string>();
    for (const pin of [undefined, "other"] as const) {
      const text = `through the relay ${used.size}`;
      const inputPath = `${root}/input-${used.size}.txt`;
      const receiptPath = `${root}/receipt-${used.size}.json`;
      await Deno.writeTextFile(inputPath, text);
      // First found through the DHT; then pinned to the worker not used yet.
      const other = [...workers.keys()].find((id) => !used.has(id))!;
      const run = await submitIn(requesterHost, reqDir, [
        ...["--input", inputPath, "--wait", "--receipt", receiptPath],
        ...(pin ? ["--worker", other] : []),
      ]);
      assert.equal(run.code, 0, `submit failed: ${run.err}`);
      assert.equal(run.out, [...text].reverse().join(""));
      const receipt = JSON.parse(await Deno.readTextFile(receiptPath));
      const worker = [...workers.keys()].find((id) =>
        receipt.worker_pubkey === toHex(peerPublicKey(id))
      );
      assert.ok(worker, "the receipt is signed by one of the workers");
      used.add(worker);
      await verifyReceipt(receipt, {
        publicKey: peerPublicKey(worker),
        module: await Deno.readFile(HELLO_PATH),
        input: new TextEncoder().encode(text),
      });
    }
    assert.equal(used.size, 2, "both workers ran a job");

    // Both workers are reached through the relay, and /status and the log say so.
    const status = await statusIn(requesterHost, reqDir);
    const peers = status.peers as { peer_id: string; connection: string }[];
    for (const id of workers.keys()) {
      assert.equal(peers.find((p) => p.peer_id === id)?.connection, "relayed", id);
      await requester.waitForLog((l) =>
        l.event === "peer_connected" && l.peer_id === id && l.connection === "relayed"
      );
    }
    assert.equal(peers.find((p) => p.peer_id === relay.peerId)?.connection, "direct");

    // A job bigger than the relay's data limit: one clear line, not a reset mid-transfer.
    const bigPath = `${root}/big.bin`;
    await Deno.writeFile(bigPath, new Uint8Array(DEFAULT_RELAY_LIMITS.dataLimitBytes + 1));
    const big = await submitIn(requesterHost, reqDir, [
      ...["--input", bigPath, "--wait", "--worker", workerA.peerId],
    ]);
    assert.equal(big.code, 1, big.err);
    assert.match(
      big.err,
      /job too large for a relayed connection \(\d+ bytes > relay limit \d+\); no direct connection/,
    );
    assert.equal(big.err.trim().split("\n").length, 1, big.err);

    // A public requester (it vouches for its address): the NATed worker, reached through the
    // relay, dials it back directly (DCUtR's unilateral upgrade from the relayed connection's
    // inbound end, or a DHT dial), so the same large job gets a direct connection and runs.
    const publicHost = await world.addHost("public-requester");
    const pub = await startIn(publicHost, root, "public-requester", [
      ...["--no-worker", "--reachability", "public", "--bootstrap", seed],
    ]);
    nodes.push(pub);
    await pub.waitForLog((l) => l.event === "api_listening");
    const direct = await submitIn(publicHost, `${root}/public-requester`, [
      ...["--input", bigPath, "--wait", "--worker", workerA.peerId],
    ]);
    assert.equal(direct.code, 0, direct.err);
    assert.equal(direct.stdout.length, DEFAULT_RELAY_LIMITS.dataLimitBytes + 1);
    // Reached through the relay first, then directly (the relayed connection may close just
    // before or just after the direct one opens).
    const firstDirect = await pub.waitForLog((l) =>
      l.peer_id === workerA.peerId && (l.event === "peer_connection_direct" ||
        (l.event === "peer_connected" && l.connection === "direct"))
    );
    const relayedFirst = pub.logs.findIndex((l) =>
      l.event === "peer_connected" && l.peer_id === workerA.peerId && l.connection === "relayed"
    );
    assert.ok(relayedFirst >= 0 && relayedFirst < pub.logs.indexOf(firstDirect), "relayed first");
    const pubStatus = await statusIn(publicHost, `${root}/public-requester`);
    const pubPeers = pubStatus.peers as { peer_id: string; connection: string }[];
    assert.equal(pubPeers.find((p) => p.peer_id === workerA.peerId)?.connection, "direct");
  },
);

type NatKind = "endpoint-independent" | "port-restricted" | "symmetric";

/**
 * A hole-punch world: a public relay (bootstrap), a worker behind NAT A and a requester behind
 * NAT B, both `--punch-port 4002`, the worker providing its capability in the DHT, the requester
 * knowing its punch address. `nodes` are stopped by the caller.
 */
async function punchPair(world: World, root: string, nat: NatKind, nodes: NodeProcess[]) {
  const relayHost = await world.addHost("relay");
  // 10 ms each way on each NAT's uplink: a peer is 20 ms away, as on a real internet, so the two
  // SYNs of the punch cross on the wire (through a NAT that lets anything in, a SYN that arrives
  // before the other host's own SYN has left is answered with a reset: measured without delay).
  const a = await world.addLan("a", { nat, link: { delayMs: 10 } });
  const b = await world.addLan("b", { nat, link: { delayMs: 10 } });
  const workerHost = await world.addHost("worker", { lan: "a" });
  const requesterHost = await world.addHost("requester", { lan: "b" });
  const { seed } = await startRelay(relayHost, root, nodes);
  const punched = (gateway: string) => (l: Record<string, unknown>) =>
    l.event === "punch_address" &&
    String(l.address).startsWith(`/ip4/${gateway}/tcp/`) &&
    (nat === "symmetric" || l.address === `/ip4/${gateway}/tcp/4002`);
  const worker = await startIn(workerHost, root, "worker", [
    ...["--reachability", "private", "--punch-port", "4002", "--bootstrap", seed],
  ]);
  nodes.push(worker);
  // What the relay observes for the worker's fixed port, through NAT A, is its punch address
  // (behind a symmetric NAT: a port that only the relay's connection uses).
  await worker.waitForLog(punched(a.gateway.address), 30_000);
  await worker.waitForLog(providedCapability, 60_000);
  // The requester only dials: declared public, it needs no relay slot of its own.
  const requester = await startIn(requesterHost, root, "requester", [
    ...["--no-worker", "--reachability", "public", "--punch-port", "4002", "--bootstrap", seed],
  ]);
  nodes.push(requester);
  await requester.waitForLog((l) => l.event === "api_listening");
  await requester.waitForLog(punched(b.gateway.address), 30_000);
  return { a, worker, requester, requesterHost, reqDir: `${root}/requester` };
}

/** Submit `input` from the requester (the worker found through the DHT); check the receipt. */
async function runVerified(
  pair: Awaited<ReturnType<typeof punchPair>>,
  root: string,
  input: Uint8Array,
): Promise<void> {
  const inputPath = `${root}/input.bin`;
  const receiptPath = `${root}/receipt.json`;
  await Deno.writeFile(inputPath, input);
  const run = await submitIn(pair.requesterHost, pair.reqDir, [
    ...["--input", inputPath, "--wait", "--receipt", receiptPath],
  ]);
  assert.equal(run.code, 0, `submit failed: ${run.err}`);
  assert.deepEqual(run.stdout, input.slice().reverse());
  const receipt = JSON.parse(await Deno.readTextFile(receiptPath));
  assert.equal(receipt.worker_pubkey, toHex(peerPublicKey(pair.worker.peerId)));
  await verifyReceipt(receipt, {
    publicKey: peerPublicKey(pair.worker.peerId),
    module: await Deno.readFile(HELLO_PATH),
    input,
  });
}

/** How the requester's `/status` says it is connected to the worker. */
async function workerConnection(pair: Awaited<ReturnType<typeof punchPair>>) {
  const status = await statusIn(pair.requesterHost, pair.reqDir);
  const peers = status.peers as { peer_id: string; connection: string }[];
  return peers.find((p) => p.peer_id === pair.worker.peerId)?.connection;
}

for (const nat of ["endpoint-independent", "port-restricted"] as const) {
  natWorldTest(
    `two nodes with --punch-port behind ${nat} NATs punch a direct TCP connection (DCUtR): a requester finds the worker through the DHT and runs a job larger than the relay allows, with a verified receipt`,
    `punch-${nat.slice(0, 4)}`,
    async (world, root, nodes) => {
      const pair = await punchPair(world, root, nat, nodes);
      const { worker, requester } = pair;
      // Larger than the relay lets one connection carry: it runs only over a direct one.
      const input = new Uint8Array(DEFAULT_RELAY_LIMITS.dataLimitBytes + 1).fill(0x61);
      await runVerified(pair, root, input);
      // Reached through the relay first, then directly at the worker's punch address: NAT A's
      // public address and the fixed port (no listener there: TCP simultaneous open).
      const relayed = requester.logs.findIndex((l) =>
        l.event === "peer_connected" && l.peer_id === worker.peerId &&
        l.connection === "relayed"
      );
      assert.ok(relayed >= 0, "the worker was first reached through the relay");
      const direct = await requester.waitForLog((l) =>
        l.event === "peer_connection_direct" && l.peer_id === worker.peerId
      );
      assert.ok(relayed < requester.logs.indexOf(direct), "relayed first");
      assert.equal(
        direct.multiaddr,
        `/ip4/${pair.a.gateway.address}/tcp/4002/p2p/${worker.peerId}`,
      );
      assert.equal(await workerConnection(pair), "direct");
    },
  );
}

natWorldTest(
  "two nodes with --punch-port behind symmetric NATs cannot punch: the job runs over the relay, with a verified receipt, and the worker stays relayed",
  "punch-symm",
  async (world, root, nodes) => {
    const pair = await punchPair(world, root, "symmetric", nodes);
    await runVerified(pair, root, new TextEncoder().encode("through the relay"));
    assert.equal(await workerConnection(pair), "relayed");
    assert.ok(
      !pair.requester.logs.some((l) =>
        l.event === "peer_connection_direct" && l.peer_id === pair.worker.peerId
      ),
    );
  },
);
