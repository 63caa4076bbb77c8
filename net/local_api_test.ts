import assert from "node:assert/strict";
import { createLocalApiHandler, type JobService, MAX_API_BODY_BYTES } from "./local_api.ts";
import type { JobRecord } from "./job_store.ts";
import { testJobResult } from "../runtime/testdata/job_result.ts";
import type { Receipt } from "../runtime/receipt.ts";

const TOKEN = "t".repeat(32);
const ID = "ab".repeat(32);
const auth = { authorization: `Bearer ${TOKEN}` };
const RECEIPT: Receipt = {
  schema_version: 1,
  job_id: ID,
  worker_pubkey: "cd".repeat(32),
  signature: "00".repeat(64),
  completed_at: "2026-01-01T00:00:00Z",
  result: testJobResult({ output_commitment: Array(32).fill(7) }),
};

function service(record?: Partial<JobRecord>): JobService & { submitted: unknown[] } {
  const submitted: unknown[] = [];
  const job = record
    ? {
      jobId: ID,
      status: "running",
      manifest: { payload: { module_cid: "sha256:m", input: "sha256:i" } },
      options: { cpu: 1, replicas: 1 },
      createdAt: 0,
      updatedAt: 0,
      attempts: 1,
      ...record,
    } as JobRecord
    : undefined;
  return {
    submitted,
    submit(module, options) {
      submitted.push({ module, options });
      return Promise.resolve(ID);
    },
    get: (id) => (id === ID ? job : undefined),
    wait: (_id, options) =>
      new Promise((resolve) =>
        options?.signal?.addEventListener("abort", () => resolve(job!), { once: true })
      ),
  };
}

/** POST `fields` (with a module) to /jobs of `handler`, authorised. */
function postJob(
  handler: (request: Request) => Promise<Response>,
  fields: Record<string, unknown>,
): Promise<Response> {
  const body = JSON.stringify({ module: btoa("\0asm"), ...fields });
  return handler(new Request("http://127.0.0.1/jobs", { method: "POST", headers: auth, body }));
}

Deno.test("POST /jobs decodes module, input and limits", async () => {
  const jobs = service();
  const handler = createLocalApiHandler({ token: TOKEN, jobs });
  const response = await postJob(handler, {
    input: btoa("hi"),
    cpu: 2,
    timeout_ms: 500,
    replicas: 3,
  });
  assert.equal(response.status, 201);
  assert.deepEqual(await response.json(), { job_id: ID, status: "queued" });
  assert.deepEqual(jobs.submitted, [{
    module: new TextEncoder().encode("\0asm"),
    options: { input: new TextEncoder().encode("hi"), cpu: 2, timeoutMs: 500, replicas: 3 },
  }]);
});

Deno.test("POST /jobs answers 400 for bad JSON and fields, 413 over the cap, 401 without token", async () => {
  const handler = createLocalApiHandler({ token: TOKEN, jobs: service() });
  const post = (body: string, headers: Record<string, string> = auth) =>
    handler(new Request("http://127.0.0.1/jobs", { method: "POST", headers, body }));
  for (const body of ["{", '{"module": 1}', `{"module":"AA==","cpu":"2"}`]) {
    const response = await post(body);
    assert.equal(response.status, 400, body);
    assert.match((await response.json()).error, /^Cannot/);
  }
  const big = await post("x", { ...auth, "content-length": String(MAX_API_BODY_BYTES + 1) });
  assert.equal(big.status, 413);
  await big.body?.cancel();
  const denied = await post("{}", { authorization: `Bearer ${"x".repeat(32)}` });
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
});

Deno.test("GET /jobs/:id/result answers 202 while running, after waiting up to ?wait", async () => {
  const handler = createLocalApiHandler({ token: TOKEN, jobs: service({ status: "running" }) });
  const t0 = performance.now();
  const response = await handler(
    new Request(`http://127.0.0.1/jobs/${ID}/result?wait=50`, { headers: auth }),
  );
  assert.equal(response.status, 202);
  assert.equal((await response.json()).status, "running");
  assert.ok(performance.now() - t0 >= 45);
});

Deno.test("GET /jobs/:id/result answers 409 with the error for a failed job, 404 for unknown", async () => {
  const handler = createLocalApiHandler({
    token: TOKEN,
    jobs: service({ status: "failed", error: "Cannot run job: no worker" }),
  });
  const failed = await handler(
    new Request(`http://127.0.0.1/jobs/${ID}/result`, { headers: auth }),
  );
  assert.equal(failed.status, 409);
  assert.equal((await failed.json()).error, "Cannot run job: no worker");
  const unknown = await handler(
    new Request(`http://127.0.0.1/jobs/${"cd".repeat(32)}`, { headers: auth }),
  );
  assert.equal(unknown.status, 404);
  await unknown.body?.cancel();
});

Deno.test("GET /jobs/:id/result returns output and receipt of a done job", async () => {
  const handler = createLocalApiHandler({
    token: TOKEN,
    jobs: service({
      status: "done",
      exitCode: 0,
      completion: "stop",
      stdout: new TextEncoder().encode("out"),
      stderr: new Uint8Array(),
      receipt: RECEIPT,
      workerPeerId: "peer",
    }),
  });
  const response = await handler(
    new Request(`http://127.0.0.1/jobs/${ID}/result`, { headers: auth }),
  );
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {
    job_id: ID,
    status: "done",
    exit_code: 0,
    completion: "stop",
    error: null,
    output: btoa("out"),
    stderr: "",
    receipt: RECEIPT,
    worker_peer_id: "peer",
    workers: [{ peer_id: "peer", output_commitment: "07".repeat(32), receipt: RECEIPT }],
    replicas_agree: true,
    module_hash: "sha256:m",
    input_hash: "sha256:i",
  });
});

Deno.test("GET /jobs/:id/result names the kind of a job that did not run to its end", async () => {
  const receipt = structuredClone(RECEIPT);
  receipt.result.metrics.extra.error = "trap";
  const handler = createLocalApiHandler({
    token: TOKEN,
    jobs: service({
      status: "done",
      exitCode: null,
      completion: "error",
      error: "trap: wasm trap: unreachable",
      stdout: new Uint8Array(),
      stderr: new Uint8Array(),
      receipt,
      workerPeerId: "peer",
    }),
  });
  const response = await handler(
    new Request(`http://127.0.0.1/jobs/${ID}/result`, { headers: auth }),
  );
  const json = await response.json();
  assert.equal(response.status, 200);
  assert.deepEqual(json.error, { kind: "trap", message: "wasm trap: unreachable" });
  assert.equal(json.exit_code, null);
});

Deno.test("GET /jobs/:id says why a running job waits: state, attempts, last reason, deadline", async () => {
  const jobs = service({ status: "running", attempts: 2 });
  jobs.progress = () => ({
    state: "waiting_for_workers",
    lastReason: "peer: Offer rejected: QueueFull",
    searchDeadline: Date.parse("2030-01-01T00:00:00Z"),
  });
  const handler = createLocalApiHandler({ token: TOKEN, jobs });
  const response = await handler(new Request(`http://127.0.0.1/jobs/${ID}`, { headers: auth }));
  const json = await response.json();
  assert.equal(json.status, "running");
  assert.equal(json.state, "waiting_for_workers");
  assert.equal(json.attempts, 2);
  assert.equal(json.last_reason, "peer: Offer rejected: QueueFull");
  assert.equal(json.search_deadline, "2030-01-01T00:00:00.000Z");
});

Deno.test("GET /jobs/:id/result of replicas that disagreed lists every worker and receipt", async () => {
  const other = structuredClone(RECEIPT);
  other.result.output_commitment = Array(32).fill(8);
  const jobs = service({
    status: "failed",
    error: "Cannot accept job result: replicas disagree (...)",
    errorKind: "replicas_disagree",
  });
  jobs.workers = () => [{ peerId: "one", receipt: RECEIPT }, { peerId: "two", receipt: other }];
  const handler = createLocalApiHandler({ token: TOKEN, jobs });
  const response = await handler(
    new Request(`http://127.0.0.1/jobs/${ID}/result`, { headers: auth }),
  );
  const json = await response.json();
  assert.equal(response.status, 409);
  assert.equal(json.error_kind, "replicas_disagree");
  assert.equal(json.replicas_agree, false);
  assert.deepEqual(json.workers.map((w: { peer_id: string }) => w.peer_id), ["one", "two"]);
  assert.equal(json.workers[1].output_commitment, "08".repeat(32));
});

Deno.test("POST /jobs passes args, env, fuel, output cap and search timeout on", async () => {
  const jobs = service();
  const handler = createLocalApiHandler({ token: TOKEN, jobs });
  const response = await postJob(handler, {
    args: ["a", "b"],
    env: { K: "V" },
    fuel: "1000",
    max_output_bytes: 100,
    search_timeout_ms: 2000,
  });
  assert.equal(response.status, 201);
  await response.body?.cancel();
  assert.deepEqual(jobs.submitted, [{
    module: new TextEncoder().encode("\0asm"),
    options: {
      args: ["a", "b"],
      env: { K: "V" },
      fuel: "1000",
      maxOutputBytes: 100,
      searchTimeoutMs: 2000,
    },
  }]);
  for (const bad of [{ args: "a" }, { env: { K: 1 } }, { fuel: true }]) {
    const refused = await postJob(handler, bad);
    assert.equal(refused.status, 400, JSON.stringify(bad));
    assert.match((await refused.json()).error, /^Cannot accept job/);
  }
});

Deno.test("GET /status answers the node's status (peers direct or relayed), 405 for POST, 401 without token, 404 without a source", async () => {
  const status = {
    peer_id: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
    multiaddrs: [],
    reachability: "private" as const,
    relay: null,
    peers: [{
      peer_id: "W",
      connection: "relayed" as const,
      transport: "tcp",
      multiaddr: "/ip4/11.0.0.1/tcp/4001/p2p/R/p2p-circuit/p2p/W",
      direction: "outbound",
      connections: 1,
    }],
  };
  const handler = createLocalApiHandler({ token: TOKEN, jobs: service(), status: () => status });
  const ok = await handler(new Request("http://127.0.0.1/status", { headers: auth }));
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), status);
  const post = await handler(
    new Request("http://127.0.0.1/status", { method: "POST", headers: auth, body: "x" }),
  );
  assert.equal(post.status, 405);
  await post.body?.cancel();
  const denied = await handler(new Request("http://127.0.0.1/status"));
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
  const none = createLocalApiHandler({ token: TOKEN, jobs: service() });
  const missing = await none(new Request("http://127.0.0.1/status", { headers: auth }));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});
