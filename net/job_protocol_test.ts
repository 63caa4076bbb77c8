import assert from "node:assert/strict";
import { streamPair } from "@libp2p/utils";
import {
  encodeOfferMessage,
  type JobOffer,
  MAX_OFFER_BYTES,
  NonceGuard,
  parseJobOffer,
  parseOfferResponse,
  sendJobOffer,
  serveJobOffer,
} from "./job_protocol.ts";
import { readStreamMessage } from "./node_info.ts";
import { testOffer } from "./testdata/job_offer.ts";

const OFFER: JobOffer = testOffer({
  job_id: "ab".repeat(32),
  nonce: "nonce-0123456789",
  module_hash: `sha256:${"cd".repeat(32)}`,
  requirements: { memory_mb: 64 },
});
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

Deno.test("parseJobOffer() rejects each malformed field with TypeError", () => {
  const req = OFFER.requirements;
  for (
    const bad of [
      { ...OFFER, job_id: "AB".repeat(32) },
      { ...OFFER, nonce: "short" },
      { ...OFFER, module_hash: "md5:00" },
      { ...OFFER, requirements: { ...req, cpu_cores: -1 } },
      { ...OFFER, requirements: { ...req, memory_mb: 1.5 } },
      { ...OFFER, requirements: { ...req, arch: "x86 64" } },
      { ...OFFER, requirements: null },
      [],
    ]
  ) {
    assert.throws(() => parseJobOffer(bytes(bad)), TypeError, JSON.stringify(bad));
  }
  assert.throws(() => parseJobOffer(new TextEncoder().encode("{")), SyntaxError);
  assert.throws(() => parseJobOffer(new Uint8Array(MAX_OFFER_BYTES + 1)), RangeError);
});

Deno.test("parseOfferResponse() reads every reject reason of the reference", () => {
  const reasons = [
    { InsufficientResources: { missing: "memory" } },
    { ArchMismatch: { required: "riscv64", available: "x86_64" } },
    { RuntimeNotSupported: { required: "wasi-p2" } },
    "QueueFull",
    { InvalidRequest: { details: "bad" } },
  ];
  for (const reason of reasons) {
    const answer = { Rejected: { job_id: OFFER.job_id, reason } };
    assert.deepEqual(parseOfferResponse(bytes(answer)), answer);
  }
  assert.throws(
    () => parseOfferResponse(bytes({ Rejected: { job_id: "x", reason: "Busy" } })),
    TypeError,
  );
  assert.throws(
    () => parseOfferResponse(bytes({ Accepted: { job_id: OFFER.job_id }, Rejected: {} })),
    TypeError,
  );
});

Deno.test("serveJobOffer() answers a malformed offer with InvalidRequest naming its job", async () => {
  const [requester, worker] = await streamPair();
  const reading = readStreamMessage(requester, { maxBytes: MAX_OFFER_BYTES });
  requester.send(bytes({ ...OFFER, nonce: 5 }));
  await requester.close();
  await serveJobOffer(worker, () => {
    throw new Error("must not be called");
  });
  const answer = parseOfferResponse(await reading);
  assert.ok("Rejected" in answer);
  assert.equal(answer.Rejected.job_id, OFFER.job_id);
  assert.match(JSON.stringify(answer.Rejected.reason), /InvalidRequest.*nonce is malformed/);
});

Deno.test("serveJobOffer() resets the stream for an offer over 64 KiB", async () => {
  const [requester, worker] = await streamPair();
  const reading = readStreamMessage(requester, { maxBytes: MAX_OFFER_BYTES });
  requester.send(new Uint8Array(MAX_OFFER_BYTES + 10).fill(0x20));
  await assert.rejects(serveJobOffer(worker, () => "QueueFull" as never), RangeError);
  await assert.rejects(reading);
});

Deno.test("sendJobOffer() rejects an answer about another job", async () => {
  const [requester, worker] = await streamPair();
  const serving = serveJobOffer(worker, () => ({
    Rejected: { job_id: "ee".repeat(32), reason: "QueueFull" },
  }));
  await assert.rejects(sendJobOffer(requester, OFFER), /names job eeee/);
  await serving.catch(() => {});
});

Deno.test("NonceGuard forgets the oldest nonce past maxEntries and expired ones", () => {
  const guard = new NonceGuard({ windowMs: 100, maxEntries: 2 });
  assert.equal(guard.check("nonce-a", 0), true);
  assert.equal(guard.check("nonce-b", 1), true);
  assert.equal(guard.check("nonce-c", 2), true);
  assert.equal(guard.size, 2);
  assert.equal(guard.check("nonce-b", 3), false);
  assert.equal(guard.check("nonce-a", 4), true); // forgotten: the set is bounded
  assert.equal(guard.check("nonce-x", 500), true);
  assert.equal(guard.size, 1); // the others expired
});

Deno.test("encodeOfferMessage() refuses more than 64 KiB", () => {
  assert.throws(
    () =>
      encodeOfferMessage({
        Rejected: {
          job_id: "",
          reason: { InvalidRequest: { details: "x".repeat(MAX_OFFER_BYTES) } },
        },
      }),
    RangeError,
  );
});

Deno.test("parseJobOffer() reads a peer's JSON one way: a duplicate key is refused", () => {
  const text = JSON.stringify(OFFER).replace('{"job_id"', '{"nonce":"x","job_id"');
  assert.ok(text.includes('"nonce":"x"'), "the duplicate was planted");
  assert.throws(
    () => parseJobOffer(new TextEncoder().encode(text)),
    /^SyntaxError: Cannot parse job offer: duplicate key 'nonce'/,
  );
});
