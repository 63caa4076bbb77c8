/**
 * Test helper, run as its own process (libp2p keeps process-wide state that a test's sanitizers
 * would flag): from a fresh node, send job offers to `<multiaddr>` on the wire and print what
 * came back as one JSON line: a first offer, the same offer replayed, an offer for riscv64,
 * then `<count>` offers at once (each on its own stream, half with a replayed nonce).
 *
 *   deno run --allow-net=127.0.0.1 --allow-read --ignore-env tests/testdata/offer_flood.ts <multiaddr> <count>
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

const [target, countText = "0"] = Deno.args;
(await import("../../net/node_compat.ts")).applyNodeCompat(); // a node under deno run
await using node = await startNode({ mdns: false, dht: false, listen: [] });
const send = async (offer: JobOffer) => {
  const signal = AbortSignal.timeout(20_000);
  const stream = await node.libp2p.dialProtocol(multiaddr(target!), JOB_OFFER_PROTOCOL, { signal });
  return await sendJobOffer(stream, offer, { signal });
};
const offer = (nonce = crypto.randomUUID(), arch = "x86_64"): JobOffer =>
  testOffer({ nonce, requirements: { arch } });
const first = offer();
const summary: Record<string, unknown> = {
  first: await send(first),
  replay: await send({ ...first }),
  riscv: await send(offer(undefined, "riscv64")),
};
const tally: Record<string, number> = {};
const replayed = crypto.randomUUID();
await Promise.all(Array.from({ length: Number(countText) }, async (_, i) => {
  let key: string;
  try {
    const answer = await send(offer(i % 2 ? replayed : undefined));
    key = "Accepted" in answer ? "Accepted" : describeReason(answer.Rejected.reason);
  } catch {
    key = "stream_error";
  }
  key = `${i % 2 ? "replayed" : "fresh"} ${key}`;
  tally[key] = (tally[key] ?? 0) + 1;
}));
summary.flood = tally;
console.log(JSON.stringify(summary));
