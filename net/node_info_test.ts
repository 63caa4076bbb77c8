import assert from "node:assert/strict";
import { streamPair } from "@libp2p/utils";
import {
  encodeNodeInfo,
  MAX_INFO_BYTES,
  type NodeInfo,
  parseNodeInfo,
  readStreamMessage,
  requestInfo,
  serveInfo,
} from "./node_info.ts";

const PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
const INFO: NodeInfo = {
  peer_id: PEER,
  arch: "x86_64",
  http_url: "http://127.0.0.1:8080/",
  channel: "stable",
  manifest_sequence: 12,
  capabilities: { wasm: { max_memory_bytes: 1 << 20, max_duration_ms: 1000 } },
};
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

Deno.test("parseNodeInfo() round-trips every field and drops unknown ones", () => {
  assert.deepEqual(parseNodeInfo(encodeNodeInfo(INFO)), INFO);
  assert.deepEqual(parseNodeInfo(bytes({ ...INFO, extra: [1, 2] })), INFO);
});

Deno.test("parseNodeInfo() rejects malformed fields with TypeError", () => {
  for (
    const bad of [
      [],
      { ...INFO, peer_id: "not a peer id" },
      { ...INFO, arch: "x86 64" },
      { ...INFO, http_url: "file:///etc/passwd" },
      { ...INFO, http_url: "not a url" },
      { ...INFO, channel: "../etc" },
      { ...INFO, manifest_sequence: -1 },
      { ...INFO, manifest_sequence: 1.5 },
      { ...INFO, capabilities: null },
      { ...INFO, capabilities: { wasm: { max_memory_bytes: "1", max_duration_ms: 1 } } },
    ]
  ) {
    assert.throws(() => parseNodeInfo(bytes(bad)), TypeError, JSON.stringify(bad));
  }
});

Deno.test("parseNodeInfo() rejects non-JSON and invalid UTF-8 with SyntaxError", () => {
  assert.throws(() => parseNodeInfo(new TextEncoder().encode("{")), SyntaxError);
  assert.throws(() => parseNodeInfo(new Uint8Array([0x7b, 0xff, 0x7d])), SyntaxError);
});

Deno.test("encodeNodeInfo() and parseNodeInfo() refuse more than 8 KiB", () => {
  const big = { ...INFO, http_url: `http://h/${"a".repeat(MAX_INFO_BYTES)}` };
  assert.throws(() => encodeNodeInfo(big), RangeError);
  assert.throws(() => parseNodeInfo(new Uint8Array(MAX_INFO_BYTES + 1)), RangeError);
});

Deno.test("requestInfo() gets what serveInfo() sends over a yamux stream pair", async () => {
  const [asker, node] = await streamPair();
  const [got] = await Promise.all([requestInfo(asker), serveInfo(node, INFO)]);
  assert.deepEqual(got, INFO);
});

Deno.test("requestInfo() rejects an answer over the cap with RangeError", async () => {
  const [asker, evil] = await streamPair();
  evil.send(new Uint8Array(MAX_INFO_BYTES + 1).fill(0x20));
  await evil.close();
  await assert.rejects(requestInfo(asker), RangeError);
});

Deno.test("requestInfo() rejects a malformed answer with TypeError", async () => {
  const [asker, evil] = await streamPair();
  evil.send(bytes({ peer_id: PEER, arch: "x86_64" }));
  await evil.close();
  await assert.rejects(requestInfo(asker), /capabilities must be an object/);
});

Deno.test("requestInfo() gives up when the peer never answers", async () => {
  const [asker, silent] = await streamPair();
  await assert.rejects(
    requestInfo(asker, { signal: AbortSignal.timeout(50) }),
    (error: Error) => error.name === "TimeoutError",
  );
  silent.abort(new Error("done"));
});

Deno.test("serveInfo() refuses a request over 1 KiB and sends nothing", async () => {
  const [asker, node] = await streamPair();
  const reading = readStreamMessage(asker, { maxBytes: MAX_INFO_BYTES });
  asker.send(new Uint8Array(2000));
  await assert.rejects(serveInfo(node, INFO), RangeError);
  await assert.rejects(reading, /the stream was reset/);
});

Deno.test("readStreamMessage() sees an end that happened before it was called", async () => {
  const [a, b] = await streamPair();
  a.send(new Uint8Array([1, 2, 3]));
  await a.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(await readStreamMessage(b, { maxBytes: 10 }), new Uint8Array([1, 2, 3]));
  await b.close();
});

Deno.test("parseNodeInfo() reads a peer's JSON one way: duplicate keys and lone surrogates are refused", () => {
  const text = (s: string) => new TextEncoder().encode(s);
  const good = JSON.stringify(INFO);
  assert.throws(
    () => parseNodeInfo(text(good.replace('{"peer_id"', '{"arch":"riscv64","peer_id"'))),
    /^SyntaxError: Cannot parse node info: duplicate key 'arch'/,
  );
  assert.throws(
    () => parseNodeInfo(text(good.replace('"stable"', '"st\\ud800able"'))),
    /^SyntaxError: Cannot parse node info: .*surrogate/,
  );
});
