import assert from "node:assert/strict";
import { createLocalApiHandler, type JobService, MAX_API_BODY_BYTES } from "./local_api.ts";
import type { JobRecord } from "./job_store.ts";

const TOKEN = "t".repeat(32);
const ID = "ab".repeat(32);
const auth = { authorization: `Bearer ${TOKEN}` };

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

Deno.test("POST /jobs decodes module, input and limits", async () => {
  const jobs = service();
  const handler = createLocalApiHandler({ token: TOKEN, jobs });
  const response = await handler(
    new Request("http://127.0.0.1/jobs", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({
        module: btoa("\0asm"),
        input: btoa("hi"),
        cpu: 2,
        timeout_ms: 500,
        replicas: 3,
      }),
    }),
  );
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
      receipt: { job_id: ID } as never,
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
    output: btoa("out"),
    stderr: "",
    receipt: { job_id: ID },
    worker_peer_id: "peer",
    module_hash: "sha256:m",
    input_hash: "sha256:i",
  });
});
