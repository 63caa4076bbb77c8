import assert from "node:assert/strict";
import { fromHex } from "./digest.ts";
import { generateKeyPair } from "./ed25519.ts";
import { SignatureError } from "./errors.ts";
import {
  jobIdOf,
  type JobManifest,
  jobManifestSignedBytes,
  signJobManifest,
  verifyJobManifest,
  type WasmJobPayload,
} from "./job_manifest.ts";

const PAYLOAD: WasmJobPayload = {
  kind: "wasm",
  module_cid: `sha256:${"ab".repeat(32)}`,
  input: `sha256:${"cd".repeat(32)}`,
  max_duration_ms: 30000,
  max_memory_bytes: 268435456,
};
const SEED = fromHex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", 32);

Deno.test("jobManifestSignedBytes() is the prefix plus canonical JSON, expires_at only when set", () => {
  const base = { schema_version: 1 as const, payload: PAYLOAD, created_at: "2026-11-24T19:00:00Z" };
  const text = new TextDecoder().decode(jobManifestSignedBytes(base));
  assert.equal(
    text,
    'phase-manifest:v1:{"created_at":"2026-11-24T19:00:00Z","payload":{"input":"sha256:' +
      "cd".repeat(32) + '","kind":"wasm","max_duration_ms":30000,"max_memory_bytes":268435456,' +
      '"module_cid":"sha256:' + "ab".repeat(32) + '"},"schema_version":1}',
  );
  const expiring = new TextDecoder().decode(
    jobManifestSignedBytes({ ...base, expires_at: "2026-11-25T19:00:00Z" }),
  );
  assert.match(expiring, /"expires_at":"2026-11-25T19:00:00Z","payload"/);
});

Deno.test("signJobManifest() is deterministic and its job id is the sha256 of the signed bytes", async () => {
  const keyPair = await generateKeyPair(SEED);
  const createdAt = new Date("2026-11-24T19:00:00Z");
  const a = await signJobManifest(PAYLOAD, { keyPair, createdAt });
  const b = await signJobManifest(PAYLOAD, { keyPair, createdAt });
  assert.deepEqual(a, b);
  const id = await verifyJobManifest(a, { publicKey: keyPair.publicKey, now: createdAt });
  assert.equal(id, jobIdOf(a));
  assert.match(id, /^[0-9a-f]{64}$/);
});

Deno.test("verifyJobManifest() rejects tampered payloads, foreign keys and expired manifests", async () => {
  const keyPair = await generateKeyPair(SEED);
  const createdAt = new Date("2026-11-24T19:00:00Z");
  const expiresAt = new Date("2026-11-24T20:00:00Z");
  const manifest = await signJobManifest(PAYLOAD, { keyPair, createdAt, expiresAt });
  const tampered: JobManifest = {
    ...manifest,
    payload: { ...manifest.payload, max_memory_bytes: 2 ** 40 },
  };
  await assert.rejects(() => verifyJobManifest(tampered, { now: createdAt }), SignatureError);
  const other = await generateKeyPair();
  await assert.rejects(
    () => verifyJobManifest(manifest, { publicKey: other.publicKey, now: createdAt }),
    /signed for key/,
  );
  await assert.rejects(
    () => verifyJobManifest(manifest, { now: new Date("2026-11-24T20:00:00Z") }),
    /expired at 2026-11-24T20:00:00Z/,
  );
});

Deno.test("signJobManifest() signs args, env, output cap and fuel when given, and only then", async () => {
  const keyPair = await generateKeyPair(SEED);
  const createdAt = new Date("2026-11-24T19:00:00Z");
  const plain = await signJobManifest(PAYLOAD, { keyPair, createdAt });
  const full = await signJobManifest({
    ...PAYLOAD,
    args: ["-v", "x"],
    env: { B: "2", A: "1" },
    max_output_bytes: 1024,
    fuel: "9007199254740993",
  }, { keyPair, createdAt });
  const text = new TextDecoder().decode(jobManifestSignedBytes(full));
  assert.match(
    text,
    /"payload":\{"args":\["-v","x"\],"env":\{"A":"1","B":"2"\},"fuel":"9007199254740993","input":/,
  );
  assert.match(text, /"max_memory_bytes":268435456,"max_output_bytes":1024,"module_cid"/);
  assert.notEqual(jobIdOf(full), jobIdOf(plain));
  await verifyJobManifest(full, { now: createdAt });
  // Changing what the job gets breaks the signature.
  for (
    const payload of [
      { ...full.payload, args: ["-v"] },
      { ...full.payload, env: { A: "1" } },
      { ...full.payload, fuel: "1" },
      { ...full.payload, max_output_bytes: 1 << 30 },
    ]
  ) {
    await assert.rejects(
      () => verifyJobManifest({ ...full, payload }, { now: createdAt }),
      SignatureError,
    );
  }
});
