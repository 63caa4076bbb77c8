/**
 * Signed data is read one way, end to end: `verify receipt`, `verify manifest` and `fetch` as
 * their own processes (the deno.json tasks' exact flags) refuse, in one line, receipts and
 * manifests that `JSON.parse` would read one way and another parser another (a key twice, `1.0`
 * where an integer is signed, a lone surrogate, a byte order mark), and a manifest carrying one
 * valid signature thousands of times.
 */
import assert from "node:assert/strict";
import type { BootManifest } from "../provider/boot_manifest.ts";
import { toHex } from "../runtime/digest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { signReceipt } from "../runtime/receipt.ts";
import { testJobResult } from "../runtime/testdata/job_result.ts";
import { auditCli } from "./_cli_audit.ts";
import { runTask } from "./_task.ts";
import { artifactEntry, publisher, signedManifest, startServer, tempDir } from "./fetch_testlib.ts";

const KERNEL = new TextEncoder().encode("kernel bytes, not really a kernel");

/** Replace `from` (which must occur exactly once) in `text` by `to`. */
function edit(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `'${from}' occurs once`);
  return text.replace(from, to);
}

Deno.test("verify receipt refuses a receipt that JSON.parse would read one way, in one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  const worker = await generateKeyPair();
  const key = toHex(worker.publicKey);
  const receipt = await signReceipt(testJobResult(), { jobId: "cd".repeat(32), keyPair: worker });
  const text = JSON.stringify(receipt);
  const write = async (name: string, body: string) => {
    await Deno.writeTextFile(`${d}/${name}.json`, body);
    return `${d}/${name}.json`;
  };
  const good = await runTask("verify", ["receipt", await write("good", text), "--key", key]);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /^receipt OK: job c/);

  const refused = (name: string, body: string, line: RegExp, code = 1) => ({
    name,
    args: ["receipt", `${d}/${name}.json`, "--key", key],
    code,
    line,
    setup: async () => void await write(name, body),
  });
  await auditCli(t, "verify", [
    refused(
      "completion-twice",
      edit(text, '"completion":"stop"', '"completion":"error","completion":"stop"'),
      /^verify receipt: FAILED: Cannot parse receipt: duplicate key 'completion' at result$/,
    ),
    refused(
      "float-count",
      edit(text, '"output_chunk_count":1', '"output_chunk_count":1.0'),
      /^verify receipt: FAILED: Cannot parse receipt: non-integer number 1\.0 at result\.output_chunk_count$/,
    ),
    refused(
      "lone-surrogate",
      edit(text, '"extra":{}', '"extra":{"note":"\\udbff"}'),
      /^verify receipt: FAILED: Cannot parse receipt: lone surrogate in a string at result\.metrics\.extra\.note$/,
    ),
    refused(
      "bom",
      `\ufeff${text}`,
      new RegExp(`^verify receipt: error: Cannot read receipt '${d}/bom\\.json': not JSON$`),
      2,
    ),
  ]);
});

Deno.test("verify manifest refuses keys given twice, 1.0 and a flood of one signature, in one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  const keys = await publisher(d, "release");
  const manifest = await signedManifest([keys], {
    kernel: artifactEntry("vmlinuz", KERNEL, "/stable/x86_64/kernel"),
  });
  const text = JSON.stringify(manifest);
  const hash = manifest.artifacts.kernel!.hash;
  const flood = (n: number) =>
    JSON.stringify({ ...manifest, signatures: Array(n).fill(manifest.signatures[0]) });
  const args = (name: string) => [
    "manifest",
    `${d}/${name}.json`,
    "--trusted-keys",
    keys.trustedKeysFile,
  ];
  await Deno.writeTextFile(`${d}/good.json`, text);
  const good = await runTask("verify", args("good"));
  assert.equal(good.code, 0, good.err);

  const cases: [string, string, string][] = [
    [
      "sequence-twice",
      edit(text, '"sequence":5', '"sequence":500,"sequence":5'),
      "duplicate key 'sequence' at top level",
    ],
    [
      "hash-twice",
      edit(text, `"hash":"${hash}"`, `"hash":"sha256:${"0".repeat(64)}","hash":"${hash}"`),
      "duplicate key 'hash' at artifacts\\.kernel",
    ],
    [
      "float-sequence",
      edit(text, '"sequence":5', '"sequence":5.0'),
      "non-integer number 5\\.0 at sequence",
    ],
    ["3000-copies", flood(3000), "3000 signatures, at most 16 allowed"],
    ["4000-copies", flood(4000), "larger than 1048576 bytes"],
    ["two-copies", flood(2), "signatures\\[1\\] repeats the key of signatures\\[0\\]"],
  ];
  await auditCli(
    t,
    "verify",
    cases.map(([name, body, reason]) => ({
      name,
      args: args(name),
      code: 1,
      line: new RegExp(`^verify manifest: error: Cannot accept manifest: malformed: ${reason}$`),
      setup: () => Deno.writeTextFile(`${d}/${name}.json`, body),
    })),
  );
});

/** A provider that serves `manifest` (text) and the kernel. */
function provider(manifest: string) {
  return startServer((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/stable/x86_64/manifest.json") {
      return new Response(manifest, { headers: { "content-type": "application/json" } });
    }
    if (path === "/stable/x86_64/kernel") return new Response(KERNEL);
    return new Response("not found", { status: 404 });
  });
}

Deno.test("fetch refuses a provider's manifest with a key twice or a signature flood, in one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  const keys = await publisher(d, "release");
  const manifest: BootManifest = await signedManifest([keys], {
    kernel: artifactEntry("vmlinuz", KERNEL, "/stable/x86_64/kernel"),
  });
  const text = JSON.stringify(manifest);
  const flood = JSON.stringify({
    ...manifest,
    signatures: Array(3000).fill(manifest.signatures[0]),
  });
  await using twice = provider(edit(text, '"sequence":5', '"sequence":9,"sequence":5'));
  await using flooded = provider(flood);
  await using bom = provider(`\ufeff${text}`);
  const args = (url: string, out: string) => [
    "--provider",
    url,
    "--out",
    `${d}/${out}`,
    "--trusted-keys",
    keys.trustedKeysFile,
    "--retries",
    "0",
  ];
  const line = (url: string, reason: string) =>
    new RegExp(
      `^fetch: error: Cannot fetch manifest: no provider served a manifest that verifies \\(${url}: Cannot accept manifest: malformed: ${reason}\\)$`,
    );
  await auditCli(t, "fetch", [
    {
      name: "a sequence given twice",
      args: args(twice.url, "a"),
      code: 1,
      line: line(twice.url, "duplicate key 'sequence' at top level"),
    },
    {
      name: "a byte order mark",
      args: args(bom.url, "bom"),
      code: 1,
      line: line(bom.url, "not JSON \\(starts with a byte order mark\\)"),
    },
    {
      name: "3000 copies of one signature",
      args: args(flooded.url, "b"),
      code: 1,
      line: line(flooded.url, "3000 signatures, at most 16 allowed"),
    },
  ]);

  // The hostile provider is skipped, with a warning naming why, and the next one is used.
  await using honest = provider(text);
  const res = await runTask("fetch", [
    "--provider",
    twice.url,
    ...args(honest.url, "c"),
  ]);
  assert.equal(res.code, 0, res.err);
  assert.match(res.err, /duplicate key 'sequence' at top level/);
  assert.deepEqual(await Deno.readFile(`${d}/c/vmlinuz`), KERNEL);
});
