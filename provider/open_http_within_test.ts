import assert from "node:assert/strict";
import { openHttpWithin } from "./open_http_within.ts";
import { SourceError } from "./fetch_http.ts";

/** A server whose body sends one chunk, then nothing until the request is aborted. */
function stallingServer() {
  const aborted = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    req.signal.addEventListener("abort", () => aborted.resolve());
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new Uint8Array([1, 2, 3]));
        },
      }),
    );
  });
  return { server, url: `http://127.0.0.1:${server.addr.port}/`, aborted: aborted.promise };
}

Deno.test("openHttpWithin() body fails a stalled body with a retryable SourceError and ends the request", async () => {
  const { server, url, aborted } = stallingServer();
  await using _ = server;
  const { body } = await openHttpWithin(url, { timeoutMs: 200 });
  const got: number[] = [];
  const error = await (async () => {
    for await (const chunk of body()) got.push(...chunk);
  })().catch((e) => e);
  assert.deepEqual(got, [1, 2, 3]);
  assert.ok(error instanceof SourceError);
  assert.equal(error.retryable, true);
  assert.equal(error.message, `Cannot fetch '${url}': stalled: no data for 200 ms`);
  await aborted;
});

Deno.test("openHttpWithin() body throws the signal's reason when the caller aborts", async () => {
  const { server, url, aborted } = stallingServer();
  await using _ = server;
  const stop = new AbortController();
  const { body } = await openHttpWithin(url, { timeoutMs: 10_000, signal: stop.signal });
  const reading = (async () => {
    for await (const _chunk of body()) stop.abort(new Error("cancelled by the caller"));
  })();
  await assert.rejects(reading, /^Error: cancelled by the caller$/);
  await aborted;
});
