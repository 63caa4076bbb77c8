import assert from "node:assert/strict";
import { QueueFullError, WorkerPolicy } from "./worker_policy.ts";
import type { JobOffer } from "./job_protocol.ts";
import { testOffer } from "./testdata/job_offer.ts";

const PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
const KEY = "ab".repeat(32);
const offer = (id: number, over: Partial<JobOffer["requirements"]> = {}): JobOffer =>
  testOffer({
    job_id: id.toString(16).padStart(64, "0"),
    nonce: `nonce-${id}-xxxx`,
    module_hash: `sha256:${"cd".repeat(32)}`,
    requirements: { timeout_seconds: 1, ...over },
  });

Deno.test("decideOffer() rejects with the reason that applies", () => {
  const policy = new WorkerPolicy({ maxMemoryBytes: 32 * 2 ** 20, maxCpuCores: 2 });
  const reason = (o: JobOffer) => {
    const answer = policy.decideOffer(o, KEY, PEER);
    return "Rejected" in answer ? answer.Rejected.reason : "Accepted";
  };
  assert.deepEqual(reason(offer(1, { memory_mb: 64 })), {
    InsufficientResources: { missing: "memory_mb 64 > 32" },
  });
  assert.deepEqual(reason(offer(2, { cpu_cores: 3 })), {
    InsufficientResources: { missing: "cpu_cores 3 > 2" },
  });
  assert.deepEqual(reason(offer(3, { wasm_runtime: "wasi-p3" })), {
    RuntimeNotSupported: { required: "wasi-p3" },
  });
  assert.equal(reason(offer(4)), "Accepted");
  policy.clear();
});

Deno.test("decideOffer() refuses requesters off the allow-list", () => {
  const policy = new WorkerPolicy({ allowedRequesters: ["cd".repeat(32)] });
  const answer = policy.decideOffer(offer(1), KEY, PEER);
  assert.deepEqual(answer, {
    Rejected: {
      job_id: offer(1).job_id,
      reason: { InvalidRequest: { details: "requester is not on the allow-list" } },
    },
  });
  assert.equal(policy.allows("cd".repeat(32)), true);
});

Deno.test("accepted offers hold places: QueueFull when slots and queue are taken", () => {
  const policy = new WorkerPolicy({ maxConcurrentJobs: 1, maxQueuedJobs: 1, maxReservations: 2 });
  assert.ok("Accepted" in policy.decideOffer(offer(1), KEY, PEER));
  assert.ok("Accepted" in policy.decideOffer(offer(2), "ef".repeat(32), PEER));
  // A requester holding as many as any other cannot take another's place.
  assert.deepEqual(policy.decideOffer(offer(3), KEY, PEER), {
    Rejected: { job_id: offer(3).job_id, reason: "QueueFull" },
  });
  policy.clear();
  assert.ok("Accepted" in policy.decideOffer(offer(4), KEY, PEER));
  policy.clear();
});

Deno.test("one requester holds at most maxReservationsPerRequester places", () => {
  const policy = new WorkerPolicy({ maxQueuedJobs: 100, maxReservationsPerRequester: 2 });
  assert.ok("Accepted" in policy.decideOffer(offer(1), KEY, PEER));
  assert.ok("Accepted" in policy.decideOffer(offer(2), KEY, PEER));
  assert.deepEqual(policy.decideOffer(offer(3), KEY, PEER), {
    Rejected: { job_id: offer(3).job_id, reason: "QueueFull" },
  });
  assert.ok("Accepted" in policy.decideOffer(offer(4), "ef".repeat(32), PEER));
  policy.clear();
});

Deno.test("an accepted offer's place is freed when its reservation times out", async () => {
  const policy = new WorkerPolicy({ maxConcurrentJobs: 1, maxQueuedJobs: 0, reservationMs: 30 });
  assert.ok("Accepted" in policy.decideOffer(offer(1), KEY, PEER));
  assert.ok("Rejected" in policy.decideOffer(offer(2), KEY, PEER));
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.ok("Accepted" in policy.decideOffer(offer(3), KEY, PEER));
  policy.clear();
});

Deno.test("run() keeps at most maxConcurrentJobs running and bounds the queue", async () => {
  const policy = new WorkerPolicy({ maxConcurrentJobs: 2, maxQueuedJobs: 1 });
  let running = 0;
  let peak = 0;
  const gate = Promise.withResolvers<void>();
  const job = async () => {
    running++;
    peak = Math.max(peak, running);
    await gate.promise;
    running--;
    return "ok";
  };
  const runs = [1, 2, 3].map((i) => policy.run(`job${i}`, job));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(policy.running, 2);
  assert.equal(policy.queued, 1);
  await assert.rejects(policy.run("job4", job), QueueFullError);
  gate.resolve();
  assert.deepEqual(await Promise.all(runs), ["ok", "ok", "ok"]);
  assert.equal(peak, 2);
  assert.equal(policy.running, 0);
});

Deno.test("clamp() never exceeds the operator's ceilings", () => {
  const policy = new WorkerPolicy({ maxMemoryBytes: 2 ** 20, maxDurationMs: 500 });
  const base = { kind: "wasm" as const, module_cid: "", input: "" };
  assert.deepEqual(policy.clamp({ ...base, max_duration_ms: 100, max_memory_bytes: 2 ** 19 }), {
    memoryBytes: 2 ** 19,
    timeoutMs: 100,
  });
  assert.deepEqual(policy.clamp({ ...base, max_duration_ms: 10 ** 9, max_memory_bytes: 2 ** 40 }), {
    memoryBytes: 2 ** 20,
    timeoutMs: 500,
  });
});

Deno.test("throwaway identities filling every reservation cannot lock out an honest requester", () => {
  // The defaults: 2 slots, 16 queued, so 9 reservations at most.
  const policy = new WorkerPolicy();
  const attackers = Array.from({ length: 5 }, (_, i) => `a${i}`.padEnd(64, "0"));
  let n = 100;
  for (let round = 0; round < 3; round++) {
    for (const attacker of attackers) {
      for (let i = 0; i < 4; i++) policy.decideOffer(offer(n++), attacker, PEER);
    }
  }
  assert.equal(policy.reservations, 9);
  const honest = policy.decideOffer(offer(1), KEY, PEER);
  assert.ok("Accepted" in honest, JSON.stringify(honest));
  assert.equal(policy.claim(offer(1).job_id, KEY), true);
  // The attackers keep offering: the claimed place stays the honest requester's.
  for (const attacker of attackers) {
    for (let i = 0; i < 4; i++) policy.decideOffer(offer(n++), attacker, PEER);
  }
  assert.equal(policy.claim(offer(1).job_id, KEY), false); // claimed once only
  policy.release(offer(1).job_id);
  assert.equal(policy.claim(offer(1).job_id, KEY), true);
  policy.clear();
});

Deno.test("claim() needs the requester's own unexpired reservation", async () => {
  const policy = new WorkerPolicy({ reservationMs: 30 });
  assert.ok("Accepted" in policy.decideOffer(offer(1), KEY, PEER));
  assert.equal(policy.claim(offer(1).job_id, "ef".repeat(32)), false);
  assert.equal(policy.claim(offer(2).job_id, KEY), false);
  assert.ok("Accepted" in policy.decideOffer(offer(3), KEY, PEER));
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(policy.claim(offer(1).job_id, KEY), false);
  assert.equal(policy.reservations, 0);
  policy.clear();
});
