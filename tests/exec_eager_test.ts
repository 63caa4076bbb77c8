/**
 * The eager execution protocol (`/phase/job-exec/2.1.0`) between real `start` processes: a
 * requester B and a worker A on loopback.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, spawnWorkerAndRequester } from "./net_spawn.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";

const HELLO = await Deno.readFile(join(ROOT, "examples/hello.wasm"));
const enc = (text: string) => new TextEncoder().encode(text);

Deno.test("start: a worker that has the module runs the next job with its input sent eagerly (no Send round trip)", async () => {
  const root = await Deno.makeTempDir({ prefix: "plasm-eager-" });
  await using nodes = await spawnWorkerAndRequester(root, { removeRoot: true });
  const { a, b } = nodes;
  await b.waitForLog((l) => l.event === "peer_connected" && l.peer_id === a.peerId);
  const client = new Client(await readApiEndpoint(`${root}/b`));
  const accepted = (id: string) =>
    a.waitForLog((l) => l.event === "job_accepted" && l.job_id === id);
  // The first job: the worker has no module yet, so it asks for it (NeedModule, then a plain
  // request with the module).
  const first = await client.submit(HELLO, { input: enc("one"), worker: a.peerId });
  const one = await client.result(first, { waitMs: 60_000 });
  assert.equal(one.verified, true);
  assert.equal(new TextDecoder().decode(one.output), "eno");
  assert.equal((await accepted(first)).input_sent, undefined);
  // The second: the input came with the header.
  const second = await client.submit(HELLO, { input: enc("two"), worker: a.peerId });
  const two = await client.result(second, { waitMs: 60_000 });
  assert.equal(two.verified, true);
  assert.equal(new TextDecoder().decode(two.output), "owt");
  assert.equal((await accepted(second)).input_sent, true);
});
