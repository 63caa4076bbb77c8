import assert from "node:assert/strict";
import { generateKeyPair } from "../runtime/ed25519.ts";
import {
  type BootManifest,
  bootManifestSignedBytes,
  ManifestRejectedError,
  MAX_BOOT_SIGNATURES,
  parseBootManifestJson,
  signBootManifest,
  verifyBootManifest,
} from "./boot_manifest.ts";
import { toHex } from "../runtime/digest.ts";

const NOW = new Date("2026-11-24T19:00:00Z");
const UNSIGNED: BootManifest = {
  manifest_version: 1,
  version: "2026.11.24",
  sequence: 7,
  channel: "stable",
  arch: "x86_64",
  created_at: "2026-11-24T00:00:00Z",
  expires_at: "2026-12-24T00:00:00Z",
  artifacts: {
    kernel: {
      filename: "kernel",
      size_bytes: 3,
      hash: `sha256:${"ab".repeat(32)}`,
      download_url: "/stable/x86_64/kernel",
    },
  },
  signatures: [],
};

function rejects(reason: ManifestRejectedError["reason"], pattern: RegExp) {
  return (e: unknown) =>
    e instanceof ManifestRejectedError && e.reason === reason && pattern.test(e.message);
}

Deno.test("bootManifestSignedBytes() leaves out signatures and nothing else", () => {
  const text = new TextDecoder().decode(
    bootManifestSignedBytes({ ...UNSIGNED, signatures: [{ any: 1 }] } as never),
  );
  assert.ok(text.startsWith('phase-boot-manifest:v1:{"arch":"x86_64","artifacts":{"kernel":'));
  assert.ok(!text.includes("signatures"));
});

Deno.test("verifyBootManifest() counts distinct trusted keys against the threshold", async () => {
  const [a, b, c] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
  const twice = await signBootManifest(await signBootManifest(UNSIGNED, a!), b!);
  const verifyTwoOf = (manifest: BootManifest, trustedKeys: Uint8Array[]) =>
    verifyBootManifest(manifest, { trustedKeys, threshold: 2, now: NOW });
  await verifyTwoOf(twice, [a!.publicKey, b!.publicKey]);
  await assert.rejects(
    () => verifyTwoOf(twice, [a!.publicKey, c!.publicKey]),
    rejects("threshold", /1 valid signature\(s\) by trusted keys, need 2/),
  );
  // The same key signing twice never counts twice: the manifest is refused as malformed.
  const dup = { ...twice, signatures: [twice.signatures[0]!, twice.signatures[0]!] };
  await assert.rejects(
    () => verifyTwoOf(dup, [a!.publicKey, b!.publicKey]),
    rejects(
      "shape",
      /^Cannot accept manifest: malformed: signatures\[1\] repeats the key of signatures\[0\]$/,
    ),
  );
});

Deno.test("verifyBootManifest() refuses untrusted signers, tampering, expiry and rollback", async () => {
  const keys = await generateKeyPair();
  const stranger = await generateKeyPair();
  const signed = await signBootManifest(UNSIGNED, keys);
  const trustedKeys = [keys.publicKey];
  await assert.rejects(
    () => verifyBootManifest(signed, { trustedKeys: [stranger.publicKey], now: NOW }),
    rejects("threshold", /signed by no trusted key/),
  );
  const tampered = structuredClone(signed);
  tampered.artifacts.kernel!.size_bytes = 4;
  await assert.rejects(
    () => verifyBootManifest(tampered, { trustedKeys, now: NOW }),
    rejects("signature", /bad signature by trusted key/),
  );
  await assert.rejects(
    () => verifyBootManifest(signed, { trustedKeys, now: new Date("2026-12-24T00:00:00Z") }),
    rejects("expired", /expired at 2026-12-24T00:00:00Z/),
  );
  await assert.rejects(
    () => verifyBootManifest(signed, { trustedKeys, now: NOW, minSequence: 8 }),
    rejects("rollback", /sequence 7 is lower than the last accepted 8/),
  );
  await verifyBootManifest(signed, { trustedKeys, now: NOW, minSequence: 7 });
});

Deno.test("verifyBootManifest() names malformed fields and unknown versions", async () => {
  const keys = await generateKeyPair();
  const trustedKeys = [keys.publicKey];
  const cases: [unknown, ManifestRejectedError["reason"], RegExp][] = [
    [[], "shape", /not an object/],
    [{ ...UNSIGNED, manifest_version: 2 }, "version", /unknown manifest_version 2/],
    [{ ...UNSIGNED, sequence: -1 }, "shape", /sequence/],
    [{ ...UNSIGNED, expires_at: "tomorrow" }, "shape", /expires_at/],
    [
      { ...UNSIGNED, artifacts: { kernel: { ...UNSIGNED.artifacts.kernel, hash: "md5:x" } } },
      "shape",
      /hash/,
    ],
    [
      { ...UNSIGNED, artifacts: { kernel: { ...UNSIGNED.artifacts.kernel, filename: "../x" } } },
      "shape",
      /filename/,
    ],
    [{ ...UNSIGNED, signatures: [{ algorithm: "rsa" }] }, "shape", /algorithm/],
    [{ ...UNSIGNED, expires_at: "2099-13-01T00:00:00Z" }, "shape", /expires_at/],
    [
      { ...UNSIGNED, created_at: "2026-02-30T00:00:00Z" },
      "shape",
      /created_at '2026-02-30T00:00:00Z' is not a real date/,
    ],
    [
      {
        ...UNSIGNED,
        artifacts: { kernel: { ...UNSIGNED.artifacts.kernel, download_url: "file:///etc/passwd" } },
      },
      "shape",
      /download_url/,
    ],
    [
      {
        ...UNSIGNED,
        artifacts: { kernel: { ...UNSIGNED.artifacts.kernel, download_url: "//evil/kernel" } },
      },
      "shape",
      /download_url/,
    ],
    [
      {
        ...UNSIGNED,
        artifacts: { kernel: UNSIGNED.artifacts.kernel, vmlinuz: UNSIGNED.artifacts.kernel },
      },
      "shape",
      /artifacts kernel and vmlinuz share the filename 'kernel'/,
    ],
  ];
  for (const [value, reason, pattern] of cases) {
    await assert.rejects(
      () => verifyBootManifest(value, { trustedKeys, now: NOW }),
      rejects(reason, pattern),
    );
  }
  await assert.rejects(
    () => verifyBootManifest(UNSIGNED, { trustedKeys, threshold: 0 }),
    RangeError,
  );
});

Deno.test("verifyBootManifest() refuses 4,000 copies of one valid signature before verifying any", async () => {
  const key = await generateKeyPair();
  const signed = await signBootManifest(UNSIGNED, key);
  const flood = { ...signed, signatures: Array(4000).fill(signed.signatures[0]) };
  await assert.rejects(
    () => verifyBootManifest(flood, { trustedKeys: [key.publicKey], now: NOW }),
    {
      name: "ManifestRejectedError",
      message:
        `Cannot accept manifest: malformed: 4000 signatures, at most ${MAX_BOOT_SIGNATURES} allowed`,
    },
  );
  // Two copies are refused too, by shape: a key is verified at most once.
  const two = { ...signed, signatures: [signed.signatures[0]!, signed.signatures[0]!] };
  await assert.rejects(
    () => verifyBootManifest(two, { trustedKeys: [key.publicKey], now: NOW }),
    rejects("shape", /repeats the key of signatures\[0\]/),
  );
});

Deno.test("boot manifests carry at most MAX_BOOT_SIGNATURES signatures, by distinct keys", async () => {
  const keys = await Promise.all(
    Array.from({ length: MAX_BOOT_SIGNATURES + 1 }, () => generateKeyPair()),
  );
  let manifest = UNSIGNED;
  for (const key of keys.slice(0, MAX_BOOT_SIGNATURES)) {
    manifest = await signBootManifest(manifest, key);
  }
  const all = keys.map((k) => k.publicKey);
  await verifyBootManifest(manifest, {
    trustedKeys: all,
    threshold: MAX_BOOT_SIGNATURES,
    now: NOW,
  });
  // Re-signing by a key already there replaces its signature; a new key is one too many.
  await signBootManifest(manifest, keys[0]!);
  await assert.rejects(() => signBootManifest(manifest, keys.at(-1)!), {
    name: "RangeError",
    message: `Cannot sign manifest: it would carry more than ${MAX_BOOT_SIGNATURES} signatures`,
  });
  const extra = {
    ...manifest,
    signatures: [...manifest.signatures, {
      ...manifest.signatures[0]!,
      key_id: toHex(keys.at(-1)!.publicKey),
    }],
  };
  await assert.rejects(
    () => verifyBootManifest(extra, { trustedKeys: all, now: NOW }),
    rejects("shape", /17 signatures, at most 16 allowed/),
  );
});

Deno.test("parseBootManifestJson() refuses a sequence or an artifact hash given twice, and 1.0", async () => {
  const key = await generateKeyPair();
  const signed = await signBootManifest(UNSIGNED, key);
  const text = JSON.stringify(signed);
  const verifyLoosely = (t: string) =>
    verifyBootManifest(JSON.parse(t), { trustedKeys: [key.publicKey], now: NOW });
  const hash = UNSIGNED.artifacts.kernel!.hash;
  const cases: [string, string][] = [
    [
      text.replace('"sequence":7', '"sequence":99,"sequence":7'),
      "duplicate key 'sequence' at top level",
    ],
    [
      text.replace(`"hash":"${hash}"`, `"hash":"sha256:${"66".repeat(32)}","hash":"${hash}"`),
      "duplicate key 'hash' at artifacts.kernel",
    ],
    [text.replace('"sequence":7', '"sequence":7.0'), "non-integer number 7.0 at sequence"],
    [
      text.replace('"size_bytes":3', '"size_bytes":3e0'),
      "non-integer number 3e0 at artifacts.kernel.size_bytes",
    ],
  ];
  for (const [bad, reason] of cases) {
    assert.notEqual(bad, text);
    await verifyLoosely(bad); // the hole: JSON.parse keeps the last key and reads 7.0 as 7
    assert.throws(() => parseBootManifestJson(bad), {
      name: "ManifestRejectedError",
      message: `Cannot accept manifest: malformed: ${reason}`,
    });
  }
  assert.throws(
    () => parseBootManifestJson(`\ufeff${text}`),
    /malformed: not JSON \(starts with a byte order mark\)$/,
  );
  assert.equal(parseBootManifestJson(new TextEncoder().encode(text)).sequence, 7);
});
