import assert from "node:assert/strict";
import { fromHex, sha256Tag, toHex } from "./digest.ts";
import { generateKeyPair } from "./ed25519.ts";
import { SignatureError } from "./errors.ts";
import { commitChunks, stdoutChunks } from "./output_commitment.ts";
import { testJobResult } from "./testdata/job_result.ts";
import {
  MAX_RECEIPT_BYTES,
  parseReceipt,
  parseReceiptJson,
  type Receipt,
  ReceiptMismatchError,
  receiptSignedBytes,
  signReceipt,
  verifyReceipt,
} from "./receipt.ts";

const VECTOR = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/receipt_v1_vector.json", import.meta.url)),
);

Deno.test("receiptSignedBytes() reproduces the shared vector's signed message byte for byte", () => {
  const bytes = receiptSignedBytes(VECTOR.receipt);
  assert.equal(new TextDecoder().decode(bytes), VECTOR.signed_message);
});

Deno.test("signReceipt() reproduces the shared vector's signature from its fixed key", async () => {
  const keyPair = await generateKeyPair(fromHex(VECTOR.secret_key_hex, 32));
  assert.equal(toHex(keyPair.publicKey), VECTOR.public_key_hex);
  const receipt = await signReceipt(VECTOR.receipt.result, {
    jobId: VECTOR.receipt.job_id,
    keyPair,
    completedAt: new Date(VECTOR.receipt.completed_at),
  });
  assert.deepEqual(receipt, VECTOR.receipt);
  assert.equal(JSON.stringify(receipt), JSON.stringify(VECTOR.receipt));
});

Deno.test("verifyReceipt() accepts the shared vector with its pinned key", async () => {
  const checked = await verifyReceipt(VECTOR.receipt, {
    publicKey: fromHex(VECTOR.public_key_hex, 32),
  });
  assert.equal(checked.job_id, VECTOR.receipt.job_id);
});

Deno.test("verifyReceipt() rejects a receipt signed by a key other than the pinned one", async () => {
  const other = await generateKeyPair();
  await assert.rejects(
    () => verifyReceipt(VECTOR.receipt, { publicKey: other.publicKey }),
    (e: unknown) => e instanceof SignatureError && /expected/.test(e.message),
  );
});

Deno.test("verifyReceipt() rejects a re-keyed receipt whose signature is not by the named key", async () => {
  const other = await generateKeyPair();
  const forged = { ...VECTOR.receipt, worker_pubkey: toHex(other.publicKey) };
  await assert.rejects(
    () => verifyReceipt(forged, { publicKey: other.publicKey }),
    (e: unknown) =>
      e instanceof SignatureError && e.message === "Cannot verify receipt: bad signature",
  );
});

/** Every signed leaf of the vector receipt, changed by one unit. */
const TAMPERS: [string, (r: Receipt) => void][] = [
  ["completed_at", (r) => r.completed_at = "2026-11-24T19:00:01Z"],
  ["job_id", (r) => r.job_id = (r.job_id[0] === "f" ? "e" : "f") + r.job_id.slice(1)],
  ["result.job_spec_hash[31]", (r) => r.result.job_spec_hash[31]! ^= 1],
  ["result.output_commitment[0]", (r) => r.result.output_commitment[0]! ^= 1],
  ["result.output_chunk_count", (r) => r.result.output_chunk_count = 2],
  ["result.completion", (r) => r.result.completion = "error"],
  ["result.metrics.total_duration_ms", (r) => r.result.metrics.total_duration_ms = 13],
  ["result.metrics.extra.exit_code", (r) => r.result.metrics.extra.exit_code = "1"],
  ["result.metrics.extra added key", (r) => r.result.metrics.extra.fuel_used = "0"],
];

for (const [field, tamper] of TAMPERS) {
  Deno.test(`verifyReceipt() rejects a receipt with tampered ${field}`, async () => {
    const receipt = structuredClone(VECTOR.receipt) as Receipt;
    tamper(receipt);
    await assert.rejects(
      () => verifyReceipt(receipt, { publicKey: fromHex(VECTOR.public_key_hex, 32) }),
      SignatureError,
    );
  });
}

Deno.test("verifyReceipt() rejects a flipped signature bit", async () => {
  const receipt = structuredClone(VECTOR.receipt) as Receipt;
  receipt.signature = (receipt.signature[0] === "e" ? "f" : "e") + receipt.signature.slice(1);
  await assert.rejects(
    () => verifyReceipt(receipt, { publicKey: fromHex(VECTOR.public_key_hex, 32) }),
    SignatureError,
  );
});

Deno.test("verifyReceipt() binds module, input, output and job id when given", async () => {
  const keyPair = await generateKeyPair();
  const module = new TextEncoder().encode("module bytes");
  const input = new TextEncoder().encode("Hello, World");
  const output = new TextEncoder().encode("dlroW ,olleH");
  const chunks = stdoutChunks(output);
  const receipt = await signReceipt({
    job_spec_hash: Array(32).fill(7),
    output_commitment: Array.from(commitChunks(chunks)),
    output_chunk_count: chunks.length,
    completion: "stop",
    resumption: null,
    metrics: {
      total_duration_ms: 3,
      prompt_tokens: 0,
      completion_tokens: 0,
      extra: { module_hash: sha256Tag(module), input_hash: sha256Tag(input), exit_code: "0" },
    },
  }, { jobId: "ab".repeat(32), keyPair });
  const publicKey = keyPair.publicKey;
  await verifyReceipt(receipt, { publicKey, module, input, output, jobId: "ab".repeat(32) });
  const other = new TextEncoder().encode("other");
  for (
    const [options, field] of [
      [{ module: other }, "module_hash"],
      [{ input: other }, "input_hash"],
      [{ output: other }, "output_commitment"],
      [{ jobId: "cd".repeat(32) }, "job_id"],
    ] as const
  ) {
    await assert.rejects(
      () => verifyReceipt(receipt, { publicKey, ...options }),
      (e: unknown) => e instanceof ReceiptMismatchError && e.field === field,
    );
  }
});

Deno.test("parseReceipt() names the malformed field", () => {
  const cases: [unknown, RegExp][] = [
    [null, /receipt is not an object/],
    [{ ...VECTOR.receipt, schema_version: 2 }, /schema_version 2/],
    [{ ...VECTOR.receipt, job_id: "xyz" }, /job_id/],
    [{ ...VECTOR.receipt, signature: "00" }, /signature/],
    [{ ...VECTOR.receipt, completed_at: "yesterday" }, /completed_at/],
    [
      { ...VECTOR.receipt, result: { ...VECTOR.receipt.result, job_spec_hash: [1] } },
      /job_spec_hash/,
    ],
    [{ ...VECTOR.receipt, result: { ...VECTOR.receipt.result, completion: "done" } }, /completion/],
    [
      {
        ...VECTOR.receipt,
        result: {
          ...VECTOR.receipt.result,
          metrics: { ...VECTOR.receipt.result.metrics, extra: { exit_code: 0 } },
        },
      },
      /extra\.exit_code/,
    ],
  ];
  for (const [value, pattern] of cases) assert.throws(() => parseReceipt(value), pattern);
});

async function stopReceipt(): Promise<{ receipt: Receipt; publicKey: Uint8Array }> {
  const keyPair = await generateKeyPair();
  const receipt = await signReceipt(
    testJobResult({ job_spec_hash: Array(32).fill(7), output_commitment: Array(32).fill(9) }),
    { jobId: "ab".repeat(32), keyPair },
  );
  return { receipt, publicKey: keyPair.publicKey };
}

Deno.test("parseReceiptJson() refuses a completion given twice, which JSON.parse reads as the last", async () => {
  const { receipt, publicKey } = await stopReceipt();
  const text = JSON.stringify(receipt).replace(
    '"completion":"stop"',
    '"completion":"error","completion":"stop"',
  );
  assert.ok(text.includes('"completion":"error","completion":"stop"'));
  // The hole: a loose reading verifies, while a first-key reader sees "error".
  await verifyReceipt(JSON.parse(text), { publicKey });
  assert.throws(() => parseReceiptJson(text), {
    name: "StrictJsonError",
    message: "Cannot parse receipt: duplicate key 'completion' at result",
  });
});

Deno.test("parseReceiptJson() refuses 1.0 where an integer is signed, and lone surrogates", async () => {
  const { receipt, publicKey } = await stopReceipt();
  const text = JSON.stringify(receipt).replace(
    '"output_chunk_count":1',
    '"output_chunk_count":1.0',
  );
  await verifyReceipt(JSON.parse(text), { publicKey }); // the hole, read loosely
  assert.throws(() => parseReceiptJson(text), {
    message: "Cannot parse receipt: non-integer number 1.0 at result.output_chunk_count",
  });
  const surrogate = JSON.stringify(receipt).replace('"extra":{}', '"extra":{"n":"\\udfff"}');
  assert.throws(() => parseReceiptJson(surrogate), {
    message: "Cannot parse receipt: lone surrogate in a string at result.metrics.extra.n",
  });
  assert.throws(() => parseReceiptJson(" ".repeat(MAX_RECEIPT_BYTES) + "{}"), {
    message: `Cannot parse receipt: larger than ${MAX_RECEIPT_BYTES} bytes`,
  });
});

Deno.test("parseReceiptJson() reads the shared vector's receipt, from text or bytes, and it verifies", async () => {
  const text = JSON.stringify(VECTOR.receipt);
  for (const input of [text, new TextEncoder().encode(text)]) {
    const receipt = parseReceiptJson(input);
    await verifyReceipt(receipt, { publicKey: fromHex(VECTOR.public_key_hex, 32) });
  }
  assert.throws(() => parseReceiptJson('{"schema_version":2}'), TypeError);
});
