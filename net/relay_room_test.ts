import assert from "node:assert/strict";
import { ensureRelayRoom, JOB_OVERHEAD_BYTES, type RoutedConnection } from "./relay_room.ts";

const RELAYED = "/ip4/11.0.0.1/tcp/4001/p2p/R/p2p-circuit/p2p/W";
const relayed = (bytes: bigint): RoutedConnection => ({ remoteAddr: RELAYED, limits: { bytes } });
const direct: RoutedConnection = { remoteAddr: "/ip4/10.1.0.2/tcp/4001" };

Deno.test("ensureRelayRoom() lets a job through a direct connection whatever its size", async () => {
  await ensureRelayRoom(() => [relayed(10n), direct], 1 << 30, { waitMs: 0 });
});

Deno.test("ensureRelayRoom() lets a job through when the peer has no connection yet", async () => {
  await ensureRelayRoom(() => [], 1 << 30, { waitMs: 0 });
});

Deno.test("ensureRelayRoom() lets a job through a relayed connection with room for it", async () => {
  const room = BigInt(1000 + JOB_OVERHEAD_BYTES);
  await ensureRelayRoom(() => [relayed(room)], 1000, { waitMs: 0 });
});

Deno.test("ensureRelayRoom() refuses a job larger than the relay's limit with one clear line", async () => {
  const room = BigInt(1000 + JOB_OVERHEAD_BYTES);
  await assert.rejects(ensureRelayRoom(() => [relayed(room)], 1001, { waitMs: 0 }), {
    message: `Cannot send job: job too large for a relayed connection (${
      1001 + JOB_OVERHEAD_BYTES
    } bytes > relay limit ${room}); no direct connection`,
  });
});

Deno.test("ensureRelayRoom() waits for a direct connection to appear (DCUtR) and then lets the job through", async () => {
  let calls = 0;
  await ensureRelayRoom(() => ++calls < 3 ? [relayed(10n)] : [relayed(10n), direct], 1 << 20, {
    waitMs: 60_000,
  });
  assert.equal(calls, 3);
});

Deno.test("ensureRelayRoom() ignores closed connections", async () => {
  await assert.rejects(
    ensureRelayRoom(() => [relayed(10n), { ...direct, status: "closed" }], 1, { waitMs: 0 }),
    { message: /job too large for a relayed connection/ },
  );
});

Deno.test("ensureRelayRoom() stops waiting when its signal aborts", async () => {
  const controller = new AbortController();
  controller.abort(new Error("stopped"));
  await assert.rejects(
    ensureRelayRoom(() => [relayed(10n)], 1 << 20, { waitMs: 60_000, signal: controller.signal }),
    { message: "stopped" },
  );
});
