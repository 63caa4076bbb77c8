import assert from "node:assert/strict";
import type { Stream } from "@libp2p/interface";
import { startNode } from "../net/node.ts";
import { INFO_PROTOCOL, MAX_INFO_BYTES } from "../net/node_info.ts";

const OPTIONS = { mdns: false, dht: false } as const;

/** A node whose info handler answers `reply` (over real TCP on 127.0.0.1). */
async function evilNode(reply: (peerId: string) => Uint8Array | null) {
  const node = await startNode(OPTIONS);
  await node.libp2p.handle(INFO_PROTOCOL, (stream: Stream) => {
    const bytes = reply(node.peerId);
    if (bytes === null) return; // never answers
    stream.send(bytes);
    stream.close().catch(() => {});
  }, { force: true });
  return node;
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

Deno.test("queryInfo() over TCP returns the peer's validated info", async () => {
  await using a = await startNode({
    ...OPTIONS,
    arch: "aarch64",
    capabilities: { wasm: { max_memory_bytes: 4096, max_duration_ms: 10 } },
  });
  a.updateInfo({ http_url: "http://127.0.0.1:9/", channel: "edge", manifest_sequence: 3 });
  await using b = await startNode(OPTIONS);
  assert.deepEqual(await b.queryInfo(a.peerId, { multiaddrs: a.multiaddrs }), {
    peer_id: a.peerId,
    arch: "aarch64",
    http_url: "http://127.0.0.1:9/",
    channel: "edge",
    manifest_sequence: 3,
    capabilities: { wasm: { max_memory_bytes: 4096, max_duration_ms: 10 } },
  });
});

Deno.test("queryInfo() rejects a malformed info message with SyntaxError", async () => {
  await using evil = await evilNode(() => new TextEncoder().encode('{"peer_id": '));
  await using asker = await startNode(OPTIONS);
  await assert.rejects(asker.queryInfo(evil.peerId, { multiaddrs: evil.multiaddrs }), SyntaxError);
});

Deno.test("queryInfo() rejects an oversized info message with RangeError", async () => {
  await using evil = await evilNode((id) =>
    json({ peer_id: id, arch: "x86_64", capabilities: {}, pad: "x".repeat(MAX_INFO_BYTES) })
  );
  await using asker = await startNode(OPTIONS);
  await assert.rejects(
    asker.queryInfo(evil.peerId, { multiaddrs: evil.multiaddrs }),
    /more than the 8192 byte cap/,
  );
});

Deno.test("queryInfo() rejects info that claims another PeerId", async () => {
  await using other = await startNode(OPTIONS);
  await using evil = await evilNode(() =>
    json({ peer_id: other.peerId, arch: "x86_64", capabilities: {} })
  );
  await using asker = await startNode(OPTIONS);
  await assert.rejects(
    asker.queryInfo(evil.peerId, { multiaddrs: evil.multiaddrs }),
    new RegExp(`it claims to be ${other.peerId}`),
  );
});

Deno.test("queryInfo() times out on a peer that never answers", async () => {
  await using evil = await evilNode(() => null);
  await using asker = await startNode({ ...OPTIONS, streamTimeoutMs: 300 });
  const t0 = performance.now();
  await assert.rejects(
    asker.queryInfo(evil.peerId, { multiaddrs: evil.multiaddrs }),
    (error: Error) => error.name === "TimeoutError",
  );
  assert.ok(performance.now() - t0 < 3000);
});

Deno.test("startNode() derives the PeerId from the node's Ed25519 seed", async () => {
  const { generateKeyPair } = await import("../runtime/ed25519.ts");
  const { peerIdFromString } = await import("@libp2p/peer-id");
  const keys = await generateKeyPair();
  await using node = await startNode({ ...OPTIONS, secretKey: keys.secretKey });
  const publicKey = peerIdFromString(node.peerId).publicKey!.raw;
  assert.deepEqual(publicKey, keys.publicKey);
  await using again = await startNode({ ...OPTIONS, secretKey: keys.secretKey });
  assert.equal(again.peerId, node.peerId);
});

Deno.test("startNode() rejects bad options with one-line errors", async () => {
  await assert.rejects(startNode({ secretKey: new Uint8Array(31) }), /expected 32 bytes, got 31/);
  await assert.rejects(startNode({ listen: ["nonsense"] }), /Cannot parse multiaddr 'nonsense'/);
  await assert.rejects(startNode({ maxConnections: 0 }), RangeError);
  await assert.rejects(startNode({ arch: "x86 64" }), TypeError);
});

Deno.test("PhaseNode start() and stop() are idempotent", async () => {
  const node = await startNode(OPTIONS);
  await node.start();
  await Promise.all([node.stop(), node.stop()]);
  await node.stop();
  assert.throws(() => node.updateInfo({ channel: "../x" }), TypeError);
});
