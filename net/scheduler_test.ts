import assert from "node:assert/strict";
import { type Dispatcher, localDispatcher, Scheduler, type SchedulerOptions } from "./scheduler.ts";
import type { JobWorker } from "./job_worker.ts";
import { JobStore } from "./job_store.ts";
import { generateKeyPair, type KeyPair } from "../runtime/ed25519.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";
import { makeWorker, setupScheduler } from "./testdata/scheduler_world.ts";
import { type JobResult, signReceipt } from "../runtime/receipt.ts";
import type { ExecDone } from "./job_exec_protocol.ts";
import { decodeFileTree, encodeFileTree, makeFileTree } from "../runtime/file_tree.ts";
import { commitChunksAsync, stdoutChunks } from "../runtime/output_commitment.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

const setup = setupScheduler;

/**
 * A scheduler whose one worker, `good`, holds every job it executes until `release()`, with five
 * jobs submitted. `onExec` and `onExecEnd` see each job start and end there; `offer`, given the
 * worker's own dispatcher, may answer offers in its place.
 */
async function setupHeldJobs(
  good: { peerId: string; worker: JobWorker },
  hooks: {
    offer?: (local: Dispatcher) => Dispatcher["offer"];
    onExec?: () => void;
    onExecEnd: () => void;
  },
  options: Partial<SchedulerOptions> = {},
) {
  const gate = Promise.withResolvers<void>();
  const s = await setup((key) => {
    const local = localDispatcher({ [good.peerId]: good.worker }, key);
    return {
      ...local,
      ...(hooks.offer ? { offer: hooks.offer(local) } : {}),
      exec: async (peer, request, signal) => {
        hooks.onExec?.();
        try {
          await gate.promise;
          return await local.exec(peer, request, signal);
        } finally {
          hooks.onExecEnd();
        }
      },
    };
  }, options);
  const ids = await Promise.all(
    [1, 2, 3, 4, 5].map((i) => s.scheduler.submit(HELLO, { input: enc(`job ${i}`) })),
  );
  return { ...s, ids, release: () => gate.resolve() };
}

/**
 * A scheduler whose one worker is `good`, except that `early` answers an offer in its place
 * whenever it returns an answer.
 */
function setupOffers(
  good: { peerId: string; worker: JobWorker },
  early: (offer: Parameters<Dispatcher["offer"]>[1]) => ReturnType<Dispatcher["offer"]> | undefined,
) {
  return setup((key) => {
    const local = localDispatcher({ [good.peerId]: good.worker }, key);
    return {
      ...local,
      offer: (peer, offer, signal) => early(offer) ?? local.offer(peer, offer, signal),
    };
  });
}

/**
 * A scheduler whose `workers` answer as they would, except that each Done answer's receipt is
 * signed again, by that worker's own key, after `tamper(peer, result)` changed the result; the
 * fields `tamper` returns replace those of the answer.
 */
async function setupResigned(
  workers: { peerId: string; worker: JobWorker; keyPair: KeyPair }[],
  tamper: (peer: string, result: JobResult) => Partial<ExecDone>,
  options: Partial<SchedulerOptions> = {},
) {
  const byPeer = new Map(workers.map((w) => [w.peerId, w]));
  return await setup((key) => {
    const local = localDispatcher(
      Object.fromEntries(workers.map((w) => [w.peerId, w.worker])),
      key,
    );
    return {
      ...local,
      async exec(peer, request, signal) {
        const answer = await local.exec(peer, request, signal);
        if (!("Done" in answer)) return answer;
        const result = structuredClone(answer.Done.receipt.result);
        const fields = tamper(peer, result);
        const receipt = await signReceipt(result, {
          jobId: answer.Done.job_id,
          keyPair: byPeer.get(peer)!.keyPair,
        });
        return { Done: { ...answer.Done, ...fields, receipt } };
      },
    };
  }, options);
}

Deno.test("Scheduler retries on another worker when the first rejects the offer", async () => {
  const good = await makeWorker();
  const busy = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
  await using s = await setup((key) => {
    const local = localDispatcher({ [good.peerId]: good.worker }, key);
    return {
      candidates: () => Promise.resolve([busy, good.peerId]),
      offer: (peer, offer, signal) =>
        peer === busy
          ? Promise.resolve({ Rejected: { job_id: offer.job_id, reason: "QueueFull" } })
          : local.offer(peer, offer, signal),
      exec: local.exec,
    };
  });
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(dec(job.stdout), "cba");
  assert.equal(job.workerPeerId, good.peerId);
  assert.equal(job.attempts, 2);
  good.worker.stop();
});

Deno.test("Scheduler never returns a tampered result: the job fails with the mismatch", async () => {
  const bad = await makeWorker({ tamper: true });
  await using s = await setup((key) => localDispatcher({ [bad.peerId]: bad.worker }, key));
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /output_commitment/);
  assert.equal(job.errorKind, "not_verified");
  assert.equal(job.stdout, undefined);
  assert.equal(job.receipt, undefined);
  bad.worker.stop();
});

Deno.test("Scheduler rejects a receipt signed by a key other than the worker's PeerId", async () => {
  const real = await makeWorker();
  const impostor = await makeWorker();
  // The impostor's PeerId answers, but the work (and receipt) comes from another key.
  await using s = await setup((key) => localDispatcher({ [impostor.peerId]: real.worker }, key));
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /signed for key/);
  real.worker.stop();
  impostor.worker.stop();
});

Deno.test("Scheduler with replicas: agreeing workers give one result, a consistent liar fails it", async () => {
  const one = await makeWorker();
  const two = await makeWorker();
  {
    await using s = await setup((key) =>
      localDispatcher({ [one.peerId]: one.worker, [two.peerId]: two.worker }, key)
    );
    const id = await s.scheduler.submit(HELLO, { input: enc("abc"), replicas: 2 });
    const job = await s.scheduler.wait(id);
    assert.equal(job.status, "done", job.error ?? "");
    assert.deepEqual(job.workerPeerId!.split(",").sort(), [one.peerId, two.peerId].sort());
    assert.equal(s.store.receipts(id).length, 2);
    assert.deepEqual(
      s.scheduler.workers(id).map((w) => w.peerId).sort(),
      [one.peerId, two.peerId].sort(),
    );
  }
  // `two` lies consistently: other output, with a receipt it signs over that output.
  await using s = await setup((key) => {
    const local = localDispatcher({ [one.peerId]: one.worker, [two.peerId]: two.worker }, key);
    return {
      ...local,
      async exec(peer, request, signal) {
        const answer = await local.exec(peer, request, signal);
        if (peer !== two.peerId || !("Done" in answer)) return answer;
        const stdout = enc("lies");
        const chunks = stdoutChunks(stdout);
        const result = structuredClone(answer.Done.receipt.result);
        result.output_commitment = Array.from(await commitChunksAsync(chunks));
        result.output_chunk_count = chunks.length;
        const receipt = await signReceipt(result, {
          jobId: answer.Done.job_id,
          keyPair: two.keyPair,
        });
        return { Done: { ...answer.Done, stdout, receipt } };
      },
    };
  });
  const id = await s.scheduler.submit(HELLO, { input: enc("xyz"), replicas: 2 });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.match(job.error!, /replicas disagree/);
  assert.equal(job.errorKind, "replicas_disagree");
  // Both verified receipts are kept, so a caller can see who said what.
  assert.deepEqual(
    s.scheduler.workers(id).map((w) => w.peerId).sort(),
    [one.peerId, two.peerId].sort(),
  );
  one.worker.stop();
  two.worker.stop();
});

Deno.test("Scheduler.resume() finishes a job a previous run left queued", async () => {
  const good = await makeWorker();
  const requester = await generateKeyPair();
  using store = JobStore.open(":memory:");
  const none: Dispatcher = {
    candidates: () => new Promise(() => {}),
    offer: () => Promise.reject(new Error("unused")),
    exec: () => Promise.reject(new Error("unused")),
  };
  // The first scheduler stops (as a node would) before any worker is found.
  const first = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: {
      ...none,
      candidates: (signal) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    },
  });
  const id = await first.submit(HELLO, { input: enc("later") });
  await new Promise((resolve) => setTimeout(resolve, 20));
  await first.stop();
  assert.equal(store.get(id)!.status, "running");
  const second = new Scheduler({
    store,
    keyPair: requester,
    dispatcher: localDispatcher({ [good.peerId]: good.worker }, toHex(requester.publicKey)),
  });
  assert.deepEqual(second.resume(), [id]);
  const job = await second.wait(id);
  assert.equal(dec(job.stdout), "retal");
  await second.stop();
  good.worker.stop();
});

const PROBE = await Deno.readFile(new URL("../runtime/testdata/wasi_probe.wasm", import.meta.url));
const LOOP = await Deno.readFile(
  new URL("../runtime/testdata/infinite_loop.wasm", import.meta.url),
);
const HUGE = await Deno.readFile(new URL("../runtime/testdata/huge_output.wasm", import.meta.url));
const nobody: Dispatcher = {
  candidates: () => Promise.resolve([]),
  offer: () => Promise.reject(new Error("unused")),
  exec: () => Promise.reject(new Error("unused")),
};

Deno.test("Scheduler fails a job no worker takes after its search bound, saying why meanwhile", async () => {
  const logs: Record<string, unknown>[] = [];
  await using s = await setup(() => nobody, { onLog: (r) => logs.push(r) });
  const id = await s.scheduler.submit(HELLO, { searchTimeoutMs: 400 });
  // While it waits, the scheduler says so.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const progress = s.scheduler.progress(id);
  assert.equal(progress?.state, "waiting_for_workers");
  assert.equal(progress?.lastReason, "no peer that runs jobs was found");
  assert.ok(progress.searchDeadline! > Date.now());
  assert.ok(logs.some((l) => l.event === "job_waiting_for_workers" && l.job_id === id));
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.equal(job.errorKind, "no_worker_found");
  assert.equal(
    job.error,
    "Cannot run job: no worker found within 400 ms (last reason: no peer that runs jobs was found)",
  );
  assert.equal(job.attempts, 0);
  assert.equal(s.scheduler.progress(id), undefined);
});

Deno.test("Scheduler bounds a worker lookup that never answers by the search timeout", async () => {
  // Like a DHT lookup with nobody to ask: it ends only when its signal aborts.
  const hanging: Dispatcher = {
    ...nobody,
    candidates: (signal) =>
      new Promise((resolve) => signal.addEventListener("abort", () => resolve([]))),
  };
  await using s = await setup(() => hanging, { workerSearchTimeoutMs: 300 });
  const job = await s.scheduler.wait(await s.scheduler.submit(HELLO));
  assert.equal(job.status, "failed");
  assert.equal(job.errorKind, "no_worker_found");
  assert.match(job.error!, /no worker found within 300 ms/);
});

Deno.test("Scheduler fails at once when the pinned worker rejects, naming its reason", async () => {
  const good = await makeWorker();
  await using s = await setup((key) => {
    const local = localDispatcher({ [good.peerId]: good.worker }, key);
    return {
      ...local,
      offer: (_peer, offer) =>
        Promise.resolve({
          Rejected: { job_id: offer.job_id, reason: { InsufficientResources: { missing: "ram" } } },
        }),
    };
  }, { workerSearchTimeoutMs: 3_600_000 });
  const job = await s.scheduler.wait(await s.scheduler.submit(HELLO, { worker: good.peerId }));
  assert.equal(job.status, "failed");
  assert.equal(job.errorKind, "no_worker_found");
  assert.match(
    job.error!,
    /^Cannot run job: no worker found \(last reason: 12D3KooW\w+: Offer rejected/,
  );
  good.worker.stop();
});

Deno.test("Scheduler signs args, env, fuel and output cap into the job; the worker runs with them", async () => {
  const good = await makeWorker();
  const kept: string[] = [];
  await using s = await setup(
    (key) => localDispatcher({ [good.peerId]: good.worker }, key),
    { keepReceipt: (r) => Promise.resolve(kept.push(r.job_id)) },
  );
  const args = await s.scheduler.submit(PROBE, { args: ["args", "two words"] });
  const env = await s.scheduler.submit(PROBE, { args: ["env"], env: { GREETING: "hi" } });
  const fuel = await s.scheduler.submit(LOOP, { fuel: 5000n });
  const capped = await s.scheduler.submit(HUGE, { maxOutputBytes: 100 });
  const [a, e, f, c] = await Promise.all(
    [args, env, fuel, capped].map((id) => s.scheduler.wait(id)),
  );
  assert.equal(a!.status, "done", a!.error ?? "");
  assert.equal(dec(a!.stdout), "module.wasm\nargs\ntwo words\n");
  assert.deepEqual(a!.manifest.payload.args, ["args", "two words"]);
  assert.equal(dec(e!.stdout), "GREETING=hi\n");
  assert.deepEqual(e!.manifest.payload.env, { GREETING: "hi" });
  assert.equal(f!.status, "done", f!.error ?? "");
  assert.equal(f!.manifest.payload.fuel, "5000");
  assert.equal(f!.receipt!.result.metrics.extra.error, "fuel_exhausted");
  assert.equal(f!.receipt!.result.metrics.extra.fuel_limit, "5000");
  assert.equal(c!.completion, "length");
  assert.equal(c!.manifest.payload.max_output_bytes, 100);
  assert.ok(c!.stdout!.length + c!.stderr!.length <= 100);
  assert.equal(c!.receipt!.result.metrics.extra.max_output_bytes, "100");
  // Same module and input, other arguments: another job.
  assert.notEqual(args, await s.scheduler.submit(PROBE, { args: ["args", "other"] }));
  assert.deepEqual(kept.sort(), [args, env, fuel, capped].sort());
  good.worker.stop();
});

Deno.test("Scheduler.submit() refuses bad args, env, fuel and worker options up front", async () => {
  await using s = await setup(() => nobody, {
    self: { peerId: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq", runsJobs: false },
  });
  await assert.rejects(s.scheduler.submit(HELLO, { env: { "A=B": "x" } }), TypeError);
  await assert.rejects(s.scheduler.submit(HELLO, { args: [1 as never] }), TypeError);
  await assert.rejects(s.scheduler.submit(HELLO, { fuel: "1e9" }), RangeError);
  await assert.rejects(s.scheduler.submit(HELLO, { maxOutputBytes: 2 ** 30 }), RangeError);
  await assert.rejects(s.scheduler.submit(HELLO, { worker: "not-a-peer" }), /worker Cannot parse/);
  await assert.rejects(
    s.scheduler.submit(HELLO, {
      worker: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
    }),
    /is this node, which runs no jobs/,
  );
  await assert.rejects(
    s.scheduler.submit(HELLO, {
      worker: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
      replicas: 2,
    }),
    /a pinned worker runs one replica/,
  );
});

Deno.test("Scheduler keeps at most maxPerWorker jobs at one worker; the others wait for one to end", async () => {
  const good = await makeWorker();
  let active = 0;
  let most = 0;
  await using s = await setupHeldJobs(good, {
    onExec: () => most = Math.max(most, ++active),
    onExecEnd: () => active--,
  }, { maxPerWorker: 2 });
  const { ids } = s;
  // Two run at the worker; three wait for one of them to end (no offer, no backoff).
  const states = () => ids.map((id) => s.scheduler.progress(id));
  for (let i = 0; i < 500; i++) {
    const waiting = states().filter((p) =>
      p?.state === "waiting_for_workers" && /as many of this node's jobs/.test(p.lastReason ?? "")
    );
    if (active === 2 && waiting.length === 3) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  try {
    assert.deepEqual(
      states().map((p) => p?.state).sort(),
      [
        "executing",
        "executing",
        "waiting_for_workers",
        "waiting_for_workers",
        "waiting_for_workers",
      ],
    );
  } finally {
    s.release();
  }
  for (const id of ids) {
    const job = await s.scheduler.wait(id);
    assert.equal(job.status, "done", job.error ?? "");
    assert.equal(job.attempts, 1);
  }
  assert.equal(most, 2);
  await good.worker.stop();
});

Deno.test("Scheduler acknowledges a result without waiting for its receipt file; stop() waits for the file", async () => {
  const good = await makeWorker();
  const release = Promise.withResolvers<void>();
  let kept = 0;
  await using s = await setup(
    (key) => localDispatcher({ [good.peerId]: good.worker }, key),
    { keepReceipt: () => release.promise.then(() => kept++) },
  );
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id, { signal: AbortSignal.timeout(20_000) });
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(kept, 0);
  setTimeout(() => release.resolve(), 50);
  await s.scheduler.stop();
  assert.equal(kept, 1);
  await good.worker.stop();
});

Deno.test("Scheduler rejects a receipt that names another module or input than the job's", async () => {
  const worker = await makeWorker();
  for (const field of ["module_hash", "input_hash"] as const) {
    // Signed by the right key, for the right job and output: only the hash differs.
    await using s = await setupResigned([worker], (_peer, result) => {
      result.metrics.extra[field] = `sha256:${"0".repeat(64)}`;
      return {};
    }, { maxAttempts: 1 });
    const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
    const job = await s.scheduler.wait(id);
    assert.equal(job.status, "failed", field);
    assert.equal(job.errorKind, "not_verified");
    assert.match(job.error!, new RegExp(field));
  }
  await worker.worker.stop();
});

Deno.test("Scheduler offers a worker that answered QueueFull no more jobs until one of its own ends", async () => {
  const good = await makeWorker();
  let running = 0;
  let full = 0;
  await using s = await setupHeldJobs(good, {
    // This worker takes two jobs at once.
    offer: (local) => (peer, offer, signal) => {
      if (running >= 2) {
        full++;
        return Promise.resolve({ Rejected: { job_id: offer.job_id, reason: "QueueFull" } });
      }
      running++;
      return local.offer(peer, offer, signal);
    },
    onExecEnd: () => running--,
  });
  const { ids } = s;
  const waiting = () =>
    ids.filter((id) => s.scheduler.progress(id)?.state === "waiting_for_workers").length;
  for (let i = 0; i < 500 && (waiting() < 3 || full < 1); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seen = full;
  try {
    assert.ok(seen >= 1 && seen <= 3, `${seen} offers answered QueueFull`);
    // Longer than any backoff: a scheduler that polled would offer again meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(full, seen);
    assert.equal(waiting(), 3);
  } finally {
    s.release();
  }
  for (const id of ids) assert.equal((await s.scheduler.wait(id)).status, "done");
  await good.worker.stop();
});

Deno.test("Scheduler offers a resumed job again to a worker still holding its place from before a restart", async () => {
  const good = await makeWorker();
  let refused = 0;
  // The worker still holds the place this job's offer took before the requester was killed.
  await using s = await setupOffers(good, (offer) =>
    refused++ < 2
      ? Promise.resolve({
        Rejected: {
          job_id: offer.job_id,
          reason: { InvalidRequest: { details: "job already offered" } },
        },
      })
      : undefined);
  const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(dec(job.stdout), "cba");
  assert.equal(refused, 3);
  await good.worker.stop();
});

Deno.test("Scheduler offers a job again to a worker whose offer was lost in transit, a bounded number of times", async () => {
  const good = await makeWorker();
  for (const [losses, status] of [[2, "done"], [3, "failed"]] as const) {
    let offers = 0;
    // The connection the offer went over closed before the worker answered.
    await using s = await setupOffers(
      good,
      () =>
        offers++ < losses
          ? Promise.reject(new Error("Remote closed connection during opening"))
          : undefined,
    );
    const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
    const job = await s.scheduler.wait(id);
    assert.equal(job.status, status, job.error ?? "");
    if (status === "done") {
      assert.equal(dec(job.stdout), "cba");
      assert.equal(job.attempts, 1);
      assert.equal(offers, 3);
    } else {
      assert.match(job.error ?? "", /Remote closed connection during opening/);
      assert.equal(offers, 3);
    }
  }
  await good.worker.stop();
});

Deno.test("Scheduler refuses an output tree that does not match the receipt's outputs_hash", async () => {
  const worker = await makeWorker();
  const tree = new Uint8Array([1, 2, 3]);
  const cases = [
    { signed: undefined, sent: tree, ok: false },
    { signed: sha256Tag(tree), sent: new Uint8Array([1, 2, 4]), ok: false },
    { signed: sha256Tag(tree), sent: undefined, ok: false },
    { signed: sha256Tag(tree), sent: tree, ok: true },
  ];
  for (const { signed, sent, ok } of cases) {
    // Signed by the worker's key for this job and output; only the files differ.
    await using s = await setupResigned([worker], (_peer, result) => {
      if (signed) result.metrics.extra.outputs_hash = signed;
      return sent ? { files: sent } : {};
    }, { maxAttempts: 1 });
    const id = await s.scheduler.submit(HELLO, { input: enc("abc") });
    const job = await s.scheduler.wait(id);
    const what = JSON.stringify({ signed, sent });
    if (ok) {
      assert.equal(job.status, "done", `${what}: ${job.error}`);
      continue;
    }
    assert.equal(job.status, "failed", what);
    assert.equal(job.errorKind, "not_verified", what);
    assert.match(job.error!, /the output tree does not match the receipt's outputs_hash/, what);
  }
  await worker.worker.stop();
});

Deno.test("Scheduler with replicas: same stdout but different output trees disagree", async () => {
  const one = await makeWorker();
  const two = await makeWorker();
  // Each worker signs a tree of its own: stdout agrees, the files do not.
  await using s = await setupResigned([one, two], (peer, result) => {
    const files = new Uint8Array([peer === one.peerId ? 1 : 2]);
    result.metrics.extra.outputs_hash = sha256Tag(files);
    return { files };
  });
  const id = await s.scheduler.submit(HELLO, { input: enc("abc"), replicas: 2 });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed", job.error ?? "");
  assert.equal(job.errorKind, "replicas_disagree");
  assert.match(job.error!, /replicas disagree.*files/);
  await one.worker.stop();
  await two.worker.stop();
});

Deno.test("Scheduler runs a job with an input tree on replicas and keeps the verified output tree", async () => {
  const copy = await Deno.readFile(new URL("../runtime/testdata/copy_file.wasm", import.meta.url));
  const one = await makeWorker();
  const two = await makeWorker();
  await using s = await setup((key) =>
    localDispatcher({ [one.peerId]: one.worker, [two.peerId]: two.worker }, key)
  );
  const data = enc("tree data");
  const inputs = encodeFileTree(
    makeFileTree([{ path: "in.txt", type: "file", executable: false, data }]),
  );
  const id = await s.scheduler.submit(copy, { inputs, replicas: 2 });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(job.manifest.payload.inputs, sha256Tag(inputs));
  const hashes = s.scheduler.workers(id).map((w) => w.receipt.result.metrics.extra.outputs_hash);
  assert.equal(hashes.length, 2);
  assert.equal(hashes[0], hashes[1]);
  assert.deepEqual(decodeFileTree(s.store.getModule(hashes[0]!)!).entries, [
    { path: "in.txt", type: "file", executable: false, data },
    { path: "out.txt", type: "file", executable: false, data },
  ]);
  await assert.rejects(
    s.scheduler.submit(copy, { inputs: new Uint8Array([1, 2]) }),
    /Cannot submit job: Cannot decode file tree/,
  );
  await one.worker.stop();
  await two.worker.stop();
});
