/**
 * `keygen` as its own process with the deno.json task's flags: key files, modes, refusal to
 * overwrite, and a key pair that the real provider and `verify` accept together.
 */
import assert from "node:assert/strict";
import { publicKeyFromRaw } from "@libp2p/crypto/keys";
import { peerIdFromPublicKey } from "@libp2p/peer-id";
import { readSecretKeyFile } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { type Finished, runTask, runVerifyReceipt } from "./_task.ts";
import { auditCli } from "./_cli_audit.ts";
import { startServe, tempDir } from "./fetch_testlib.ts";

const HELLO = new URL("../examples/hello.wasm", import.meta.url).pathname;

/** No 3-byte run of the secret, raw or as hex (either case), is in the output. */
function assertNoSecret(res: Finished & { stderr?: Uint8Array }, secret: Uint8Array) {
  const text = res.out + res.err;
  const raw = new TextEncoder().encode(text);
  for (let i = 0; i + 3 <= secret.length; i++) {
    const window = secret.subarray(i, i + 3);
    const hex = toHex(window);
    assert.ok(!text.toLowerCase().includes(hex), `hex of secret bytes ${i}..${i + 2} printed`);
    const found = raw.findIndex((_, j) => window.every((b, k) => raw[j + k] === b));
    assert.equal(found, -1, `raw secret bytes ${i}..${i + 2} printed`);
    const latin1 = String.fromCharCode(...window);
    assert.ok(!text.includes(latin1), `secret bytes ${i}..${i + 2} printed as text`);
  }
}

Deno.test("keygen writes BASE.key (32 bytes, 0600) and BASE.pub (hex) and refuses to overwrite", async () => {
  await using tmp = await tempDir();
  const base = `${tmp.path}/release`;
  const res = await runTask("keygen", ["--out", base]);
  assert.equal(res.code, 0, res.err);
  const key = await Deno.readFile(`${base}.key`);
  assert.equal(key.length, 32);
  assert.equal((await Deno.stat(`${base}.key`)).mode! & 0o777, 0o600);
  const pub = await Deno.readTextFile(`${base}.pub`);
  const derived = toHex((await readSecretKeyFile(`${base}.key`)).publicKey);
  assert.equal(pub, `${derived}\n`);
  assert.match(res.out, new RegExp(`Public key \\(add to a trusted-keys file\\): ${derived}`));

  const again = await runTask("keygen", ["--out", base]);
  assert.equal(again.code, 1);
  assert.equal(
    again.err,
    `keygen: error: Cannot make keys: '${base}.key' exists; a key file is never overwritten\n`,
  );
  assert.deepEqual(await Deno.readFile(`${base}.key`), key, "the old key is untouched");

  await Deno.remove(`${base}.key`);
  const pubOnly = await runTask("keygen", ["--out", base]);
  assert.equal(pubOnly.code, 1, "a stray .pub is not overwritten either");
  assert.equal(
    pubOnly.err,
    `keygen: error: Cannot make keys: '${base}.pub' exists; a key file is never overwritten\n`,
  );

  const usage = await runTask("keygen", []);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /^keygen: Cannot make keys: --out BASE is required/);
});

Deno.test("a keygen key signs the real provider's manifests that verify manifest accepts", async () => {
  await using tmp = await tempDir();
  const base = `${tmp.path}/publisher`;
  assert.equal((await runTask("keygen", ["--out", base, "--json"])).code, 0);
  await Deno.copyFile(`${base}.pub`, `${tmp.path}/trusted-keys`);
  await Deno.mkdir(`${tmp.path}/art/stable/x86_64`, { recursive: true });
  await Deno.writeTextFile(`${tmp.path}/art/stable/x86_64/kernel`, "kernel");
  await using serve = await startServe(`${tmp.path}/art`, `${base}.key`, `${tmp.path}/state`);
  const manifest = await (await fetch(`${serve.url}stable/x86_64/manifest.json`)).text();
  await Deno.writeTextFile(`${tmp.path}/manifest.json`, manifest);
  await Deno.mkdir(`${tmp.path}/boot`);
  await Deno.writeTextFile(`${tmp.path}/boot/kernel`, "kernel");
  const res = await runTask("verify", [
    "manifest",
    `${tmp.path}/manifest.json`,
    "--trusted-keys",
    `${tmp.path}/trusted-keys`,
    "--artifacts",
    `${tmp.path}/boot`,
  ]);
  assert.equal(res.code, 0, res.err);
  assert.match(res.out, /^OK kernel /m);
});

Deno.test("a secret key file where a public key belongs is refused in one line that quotes none of it", async () => {
  await using tmp = await tempDir();
  // A keygen secret, and one that is mostly printable (the old error quoted such bytes).
  const made = await runTask("keygen", ["--out", `${tmp.path}/random`]);
  assert.equal(made.code, 0, made.err);
  const printable = new TextEncoder().encode("\x01Qz7#Kx9!Vb2@Wm4$Jr6%Tn8^Ly3&Hd5");
  assert.equal(printable.length, 32);
  await Deno.writeFile(`${tmp.path}/printable.key`, printable, { mode: 0o600 });
  await Deno.writeTextFile(`${tmp.path}/receipt.json`, "{}");
  await Deno.writeTextFile(`${tmp.path}/manifest.json`, "{}");
  for (const name of ["random", "printable"]) {
    const keyFile = `${tmp.path}/${name}.key`;
    const secret = await Deno.readFile(keyFile);
    const said = `'${keyFile}': this is a secret key file; give the .pub`;
    for (
      const [args, err] of [
        [
          ["receipt", `${tmp.path}/receipt.json`, "--key", keyFile],
          `verify receipt: error: Cannot read public key ${said}\n`,
        ],
        [
          ["manifest", `${tmp.path}/manifest.json`, "--trusted-keys", keyFile],
          `verify manifest: error: Cannot read trusted keys ${said}\n`,
        ],
      ] as const
    ) {
      const res = await runTask("verify", [...args]);
      assert.equal(res.code, 2);
      assert.equal(res.err, err);
      assertNoSecret(res, secret);
    }
    const fetched = await runTask("fetch", [
      ...["--provider", "http://127.0.0.1:9/", "--out", `${tmp.path}/out`],
      ...["--trusted-keys", keyFile, "--json"],
    ]);
    assert.equal(fetched.code, 2);
    assert.equal(fetched.err, `fetch: error: Cannot read trusted keys ${said}\n`);
    assert.equal(JSON.parse(fetched.out).error, `Cannot read trusted keys ${said}`);
    assertNoSecret(fetched, secret);
  }
});

Deno.test("verify receipt --key takes the worker's PeerId, its hex key or its .pub file", async () => {
  await using tmp = await tempDir();
  const state = `${tmp.path}/state`;
  const run = await runTask("run", [HELLO, "--receipt", `${tmp.path}/r.json`], {
    stdin: "abc",
    env: { PLASM_HOME: state },
  });
  assert.equal(run.code, 0, run.err);
  const receipt = JSON.parse(await Deno.readTextFile(`${tmp.path}/r.json`));
  const raw = (await readSecretKeyFile(`${state}/node.key`)).publicKey;
  const peerId = peerIdFromPublicKey(publicKeyFromRaw(raw));
  await Deno.writeTextFile(`${tmp.path}/worker.pub`, `${toHex(raw)}\n`);
  for (
    const key of [
      peerId.toString(),
      peerId.toCID().toString(),
      toHex(raw),
      `${tmp.path}/worker.pub`,
    ]
  ) {
    const ok = await runTask("verify", ["receipt", `${tmp.path}/r.json`, "--key", key]);
    assert.equal(ok.code, 0, `${key}: ${ok.err}`);
    assert.equal(
      ok.out,
      `receipt OK: job ${receipt.job_id}, completion stop, signed by ${toHex(raw)}\n`,
    );
  }
  const other = peerIdFromPublicKey(publicKeyFromRaw((await generateKeyPair()).publicKey));
  const wrong = await runVerifyReceipt(`${tmp.path}/r.json`, other.toString());
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /^verify receipt: FAILED: .*\n$/);
  const typo = peerId.toString().slice(0, -1);
  const bad = await runTask("verify", ["receipt", `${tmp.path}/r.json`, "--key", typo]);
  assert.equal(bad.code, 2);
  assert.equal(bad.err, `verify receipt: error: Cannot use --key: Cannot parse PeerId '${typo}'\n`);
});

Deno.test("verify answers each bad argument and unreadable file with one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  await Deno.writeTextFile(`${d}/r.json`, "{}");
  await Deno.writeTextFile(`${d}/bad.json`, "{ nope");
  await Deno.writeTextFile(`${d}/two.pub`, `${"ab".repeat(32)}\n${"cd".repeat(32)}\n`);
  await Deno.writeFile(`${d}/binary.pub`, new Uint8Array(40).fill(1));
  const key = "ab".repeat(32);
  const hash = `sha256:${"0".repeat(64)}`;
  const narrowRead = (f: string[]) =>
    f.map((x) => x === "--allow-read" ? `--allow-read=${d}/r.json` : x);
  await auditCli(t, "verify", [
    {
      name: "nothing to verify",
      args: [],
      code: 2,
      line:
        /^verify: Cannot verify: give what to verify: manifest, artifact or receipt \(see verify --help\)$/,
    },
    {
      name: "an unknown kind",
      args: ["thing"],
      code: 2,
      line: /^verify: Cannot verify 'thing': unknown kind/,
    },
    {
      name: "manifest: an unknown flag",
      args: ["manifest", "m", "--bogus"],
      code: 2,
      line: /^verify manifest: Unknown option '--bogus' \(see verify manifest --help\)$/,
    },
    {
      name: "manifest: no file",
      args: ["manifest", "--trusted-keys", "k"],
      code: 2,
      line: /^verify manifest: Cannot verify manifest: give exactly one file /,
    },
    {
      name: "manifest: a missing manifest",
      args: ["manifest", `${d}/none.json`, "--trusted-keys", `${d}/two.pub`],
      code: 2,
      line: new RegExp(
        `^verify manifest: error: Cannot read manifest '${d}/none\\.json': no such file$`,
      ),
    },
    {
      name: "manifest: a directory as manifest",
      args: ["manifest", d, "--trusted-keys", `${d}/two.pub`],
      code: 2,
      line: new RegExp(`^verify manifest: error: Cannot read manifest '${d}': is a directory$`),
    },
    {
      name: "manifest: a directory as trusted keys",
      args: ["manifest", `${d}/r.json`, "--trusted-keys", d],
      code: 2,
      line: new RegExp(`^verify manifest: error: Cannot read trusted keys '${d}': is a directory$`),
    },
    {
      name: "manifest: binary trusted keys",
      args: ["manifest", `${d}/r.json`, "--trusted-keys", `${d}/binary.pub`],
      code: 2,
      line: new RegExp(
        `^verify manifest: error: Cannot read trusted keys '${d}/binary\\.pub': binary data, not hex keys$`,
      ),
    },
    {
      name: "manifest: trusted keys outside the read grant",
      flags: narrowRead,
      args: ["manifest", `${d}/r.json`, "--trusted-keys", `${d}/two.pub`],
      code: 2,
      line: new RegExp(
        `^verify manifest: error: Cannot read trusted keys '${d}/two\\.pub': not allowed: run with --allow-read$`,
      ),
    },
    {
      name: "artifact: a bad hash",
      args: ["artifact", `${d}/r.json`, "--hash", "x"],
      code: 2,
      line: /^verify artifact: Cannot verify artifact: --hash must be sha256:<64 lowercase hex> /,
    },
    {
      name: "artifact: a bad size",
      args: ["artifact", `${d}/r.json`, "--hash", hash, "--size", "1.5"],
      code: 2,
      line: /^verify artifact: Cannot verify artifact: --size must be /,
    },
    {
      name: "artifact: a missing file",
      args: ["artifact", `${d}/none`, "--hash", hash],
      code: 2,
      line: new RegExp(
        `^verify artifact: error: Cannot verify artifact '${d}/none': no such file$`,
      ),
    },
    {
      name: "artifact: a directory",
      args: ["artifact", d, "--hash", hash],
      code: 2,
      line: new RegExp(`^verify artifact: error: Cannot verify artifact '${d}': is a directory$`),
    },
    {
      name: "receipt: an unknown flag",
      args: ["receipt", "r", "--bogus"],
      code: 2,
      line: /^verify receipt: Unknown option '--bogus' \(see verify receipt --help\)$/,
    },
    {
      name: "receipt: no --key",
      args: ["receipt", `${d}/r.json`],
      code: 2,
      line: /^verify receipt: --key is required /,
    },
    {
      name: "receipt: no receipt",
      args: ["receipt", "--key", key],
      code: 2,
      line: /^verify receipt: expected one <receipt\.json> /,
    },
    {
      name: "receipt: a missing receipt",
      args: ["receipt", `${d}/none.json`, "--key", key],
      code: 2,
      line: new RegExp(
        `^verify receipt: error: Cannot read receipt '${d}/none\\.json': no such file$`,
      ),
    },
    {
      name: "receipt: not JSON",
      args: ["receipt", `${d}/bad.json`, "--key", key],
      code: 2,
      line: new RegExp(`^verify receipt: error: Cannot read receipt '${d}/bad\\.json': not JSON$`),
    },
    {
      name: "receipt: a missing key file",
      args: ["receipt", `${d}/r.json`, "--key", `${d}/none.pub`],
      code: 2,
      line: new RegExp(
        `^verify receipt: error: Cannot read public key '${d}/none\\.pub': no such file$`,
      ),
    },
    {
      name: "receipt: a key file with two keys",
      args: ["receipt", `${d}/r.json`, "--key", `${d}/two.pub`],
      code: 2,
      line: new RegExp(
        `^verify receipt: error: Cannot read public key '${d}/two\\.pub': expected one hex key, found 2$`,
      ),
    },
    {
      name: "receipt: a missing --module",
      args: ["receipt", `${d}/r.json`, "--key", key, "--module", `${d}/none.wasm`],
      code: 2,
      line: new RegExp(
        `^verify receipt: error: Cannot read module '${d}/none\\.wasm': no such file$`,
      ),
    },
    {
      name: "receipt: a --output outside the read grant",
      flags: narrowRead,
      args: ["receipt", `${d}/r.json`, "--key", key, "--output", `${d}/bad.json`],
      code: 2,
      line: new RegExp(
        `^verify receipt: error: Cannot read output '${d}/bad\\.json': not allowed: run with --allow-read$`,
      ),
    },
    {
      name: "receipt: not a receipt",
      args: ["receipt", `${d}/r.json`, "--key", key],
      code: 1,
      line: /^verify receipt: FAILED: /,
    },
  ]);
});

Deno.test("keygen answers each bad argument, unwritable place and denied grant with one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  await Deno.writeTextFile(`${d}/taken.key`, "x");
  await Deno.writeTextFile(`${d}/file`, "x");
  await auditCli(t, "keygen", [
    {
      name: "no --out",
      args: [],
      code: 2,
      line: /^keygen: Cannot make keys: --out BASE is required /,
    },
    {
      name: "an unknown flag",
      args: ["--out", `${d}/a`, "--bogus"],
      code: 2,
      line: /^keygen: Unknown option '--bogus' \(see keygen --help\)$/,
    },
    {
      name: "--out without a value",
      args: ["--out"],
      code: 2,
      line: /^keygen: Option '--out <value>' needs a value \(see keygen --help\)$/,
    },
    {
      name: "a positional argument",
      args: ["x"],
      code: 2,
      line: /^keygen: Unexpected argument 'x'/,
    },
    {
      name: "a directory as BASE",
      args: ["--out", d],
      code: 2,
      line: new RegExp(
        `^keygen: Cannot make keys: '${d}' is a directory; give a base name inside it, e\\.g\\. ${d}/release \\(see keygen --help\\)$`,
      ),
    },
    {
      name: "a missing directory",
      args: ["--out", `${d}/no/release`],
      code: 1,
      line: new RegExp(`^keygen: error: Cannot make keys: directory '${d}/no' does not exist$`),
    },
    {
      name: "a file as directory",
      args: ["--out", `${d}/file/release`],
      code: 1,
      line: new RegExp(
        `^keygen: error: Cannot make keys: cannot check '${d}/file/release\\.key': not a directory$`,
      ),
    },
    {
      name: "an existing key",
      args: ["--out", `${d}/taken`],
      code: 1,
      line: new RegExp(
        `^keygen: error: Cannot make keys: '${d}/taken\\.key' exists; a key file is never overwritten$`,
      ),
    },
    {
      name: "a place outside the write grant",
      flags: (f) => f.map((x) => x === "--allow-write" ? `--allow-write=${d}/elsewhere` : x),
      args: ["--out", `${d}/release`],
      code: 1,
      line: new RegExp(
        `^keygen: error: Cannot make keys: cannot write '${d}/release\\.key': not allowed: run with --allow-write$`,
      ),
    },
  ]);
  // Nothing was left behind by the refusals.
  const left = [...Deno.readDirSync(d)].map((e) => e.name).sort();
  assert.deepEqual(left, ["file", "taken.key"]);
});
