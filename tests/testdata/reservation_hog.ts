/**
 * Test helper, run as its own process (libp2p keeps process-wide state that a test's sanitizers
 * would flag): a throwaway identity that hogs a worker's offer reservations. From a fresh node
 * (a new key on every run) it sends job offers to `<multiaddr>`, one at a time every
 * `<interval_ms>` (default 100), for as long as it runs: it takes every place the worker gives
 * it and takes each one again once it expires or is taken away, and it never sends a job.
 *
 * Prints JSON lines on stdout: `{"event":"started","peer_id":...}` once, then
 * `{"event":"tally","peer_id":...,"sent":N,"answers":{"Accepted":N,"QueueFull":N,...}}` each time
 * an answer of another kind than the last one comes back, and at most every 250 ms in between.
 * Ends (stopping its node) when its stdin closes.
 *
 *   deno run --allow-net=127.0.0.1 --allow-read --ignore-env tests/testdata/reservation_hog.ts <multiaddr> [interval_ms]
 */
import { multiaddr } from "@multiformats/multiaddr";
import { startNode } from "../../net/node.ts";
import {
  describeReason,
  JOB_OFFER_PROTOCOL,
  type JobOffer,
  sendJobOffer,
} from "../../net/job_protocol.ts";
import { testOffer } from "../../net/testdata/job_offer.ts";

const [target, intervalText = "100"] = Deno.args;
const interval = Number(intervalText);
if (!target || !Number.isSafeInteger(interval) || interval < 1) {
  console.error("usage: reservation_hog.ts <multiaddr> [interval_ms]");
  Deno.exit(2);
}
(await import("../../net/node_compat.ts")).applyNodeCompat(); // a node under deno run
const stop = new AbortController();
// The test ends the hog by closing its stdin.
const stdinDone = (async () => {
  for await (const _ of Deno.stdin.readable);
  stop.abort(new Error("stdin closed"));
})();
await using node = await startNode({ mdns: false, dht: false, listen: [] });
const peerId = node.libp2p.peerId.toString();
const print = (line: Record<string, unknown>) => console.log(JSON.stringify(line));
print({ event: "started", peer_id: peerId });

const offer = (): JobOffer => testOffer();
const answers: Record<string, number> = {};
let sent = 0;
let last = "";
let printedAt = 0;
while (!stop.signal.aborted) {
  let kind: string;
  try {
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]);
    const stream = await node.libp2p.dialProtocol(multiaddr(target), JOB_OFFER_PROTOCOL, {
      signal,
    });
    sent++;
    const answer = await sendJobOffer(stream, offer(), { signal });
    kind = "Accepted" in answer ? "Accepted" : describeReason(answer.Rejected.reason);
  } catch {
    if (stop.signal.aborted) break;
    kind = "stream_error";
  }
  answers[kind] = (answers[kind] ?? 0) + 1;
  if (kind !== last || Date.now() - printedAt >= 250) {
    print({ event: "tally", peer_id: peerId, sent, answers });
    last = kind;
    printedAt = Date.now();
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, interval);
    stop.signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      stop.signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
await stdinDone;
