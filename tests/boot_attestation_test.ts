/**
 * Boot attestations between real `start` processes on loopback: worker W1 started with
 * `--boot-provenance` (a record the test writes, as the boot stub would), worker W2 without, a
 * requester R (no worker) bootstrapped from both. `submit --require-boot-signer` runs only on
 * W1 and its receipt carries W1's boot fields; unmet requirements fail with one line; W1 shows
 * the attestation in `GET /status` and to `discover`; a bad record stops `start` with exit 2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  execStartFlags,
  type NodeProcess,
  ROOT,
  runDiscover,
  spawnLocalNode,
} from "./net_spawn.ts";
import { runScript, runTask, runVerifyReceipt } from "./_task.ts";
import { auditCli } from "./_cli_audit.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { parseReceiptJson, verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { toHex } from "../runtime/digest.ts";
import type { BootProvenance } from "../net/boot_attestation.ts";

const HELLO = join(ROOT, "examples/hello.wasm");
const SIGNER = toHex(crypto.getRandomValues(new Uint8Array(32)));
const SEQUENCE = 1796012997;
const PROVENANCE: BootProvenance = {
  provenance_version: 1,
  boot_manifest_hash: `sha256:${toHex(crypto.getRandomValues(new Uint8Array(32)))}`,
  boot_sequence: SEQUENCE,
  version: String(SEQUENCE),
  channel: "stable",
  arch: "x86_64",
  signer_key_ids: [SIGNER],
  artifacts: { kernel: `sha256:${"1".repeat(64)}`, initramfs: `sha256:${"2".repeat(64)}` },
  providers: ["http://10.1.0.2:8080"],
};

async function waitFor(check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test({
  name: "submit --require-boot-signer runs only on a worker whose signed boot attestation meets it",
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "plasm-boot-attest-" });
    const dirs = { w1: `${root}/w1`, w2: `${root}/w2`, r: `${root}/r` };
    const provenance = `${root}/provenance.json`;
    await Deno.writeTextFile(provenance, JSON.stringify(PROVENANCE) + "\n");
    await using w1 = await spawnLocalNode(dirs.w1, ["--boot-provenance", provenance]);
    await using w2 = await spawnLocalNode(dirs.w2, ["--bootstrap", w1.multiaddrs[0]!]);
    await using r = await spawnLocalNode(dirs.r, [
      "--no-worker",
      ...[w1, w2].flatMap((n) => ["--bootstrap", n.multiaddrs[0]!]),
    ]);
    // The same module and input within a second is the same job (unless the boot requirement
    // differs): steps that need a job of their own send their own input.
    const submit = (args: string[], stdin = "abc") =>
      runTask("submit", [HELLO, ...args, "--state-dir", dirs.r], { stdin });
    try {
      await r.waitForLog((l) => l.event === "api_listening");
      const connected = (n: NodeProcess) =>
        r.logs.some((l) => l.event === "peer_connected" && l.peer_id === n.peerId);
      await waitFor(() => connected(w1) && connected(w2));

      await t.step(
        "the attested worker runs the job; its receipt carries its boot fields",
        async () => {
          // Two jobs: with two workers and no requirement, the rotation would put one on W2.
          for (const i of [1, 2]) {
            const receiptFile = `${root}/receipt${i}.json`;
            const out = await submit([
              ...["--require-boot-signer", SIGNER, "--min-boot-sequence", String(SEQUENCE)],
              ...["--wait", "--receipt", receiptFile],
            ]);
            assert.equal(out.code, 0, out.err);
            assert.equal(out.out, "cba");
            const receipt = parseReceiptJson(await Deno.readTextFile(receiptFile));
            await verifyReceipt(receipt, {
              publicKey: peerPublicKey(w1.peerId),
              output: new TextEncoder().encode("cba"),
            });
            assert.equal(receipt.worker_pubkey, w1.started.public_key);
            assert.equal(
              receipt.result.metrics.extra.boot_manifest_hash,
              PROVENANCE.boot_manifest_hash,
            );
            assert.equal(receipt.result.metrics.extra.boot_sequence, String(SEQUENCE));
          }
          // The receipt file is what `verify receipt` checks with W1's key.
          const verified = await runVerifyReceipt(
            `${root}/receipt1.json`,
            String(w1.started.public_key),
          );
          assert.equal(verified.code, 0, verified.err);
        },
      );

      await t.step("a worker without provenance signs receipts without boot fields", async () => {
        const receiptFile = `${root}/plain.json`;
        const out = await submit(
          ["--worker", w2.peerId, "--wait", "--receipt", receiptFile],
          "plain",
        );
        assert.equal(out.code, 0, out.err);
        const extra = parseReceiptJson(await Deno.readTextFile(receiptFile)).result.metrics.extra;
        assert.equal(extra.boot_manifest_hash, undefined);
        assert.equal(extra.boot_sequence, undefined);
      });

      await t.step("a higher --min-boot-sequence finds no worker, in one line", async () => {
        const out = await submit([
          ...["--require-boot-signer", SIGNER, "--min-boot-sequence", String(SEQUENCE + 1)],
          ...["--search-timeout", "2s", "--wait"],
        ]);
        assert.equal(out.code, 1, out.err);
        assert.equal(out.out, "");
        assert.equal(out.err.trimEnd().split("\n").length, 1, out.err);
        assert.match(
          out.err,
          new RegExp(
            `no worker shows a boot attestation signed by ${SIGNER} with sequence >= ${
              SEQUENCE + 1
            }`,
          ),
        );
      });

      await t.step("--worker names an unattested worker: the job fails naming why", async () => {
        const out = await submit([
          ...["--worker", w2.peerId, "--require-boot-signer", SIGNER, "--wait"],
        ]);
        assert.equal(out.code, 1, out.err);
        assert.equal(out.err.trimEnd().split("\n").length, 1, out.err);
        assert.match(
          out.err,
          new RegExp(
            `worker ${w2.peerId} does not show a boot attestation signed by ${SIGNER} with sequence >= 0: it shows no boot attestation`,
          ),
        );
      });

      await t.step("GET /status shows how W1 booted, and nothing for W2", async () => {
        for (const [node, dir] of [[w1, dirs.w1], [w2, dirs.w2]] as const) {
          const { url, token } = await readApiEndpoint(dir);
          const response = await fetch(new URL("/status", url), {
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(response.status, 200);
          const status = await response.json();
          assert.equal(status.peer_id, node.peerId);
          if (node === w2) {
            assert.equal(status.boot, undefined);
            continue;
          }
          assert.equal(status.boot.boot_manifest_hash, PROVENANCE.boot_manifest_hash);
          assert.equal(status.boot.boot_sequence, SEQUENCE);
          assert.deepEqual(status.boot.signer_key_ids, [SIGNER]);
          assert.match(status.boot.signed_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
        }
      });

      await t.step(
        "discover shows W1's verified attestation (JSON) and a short boot field",
        async () => {
          await w1.waitForLog(
            (l) =>
              l.event === "provided" && String(l.key).endsWith("/wasm") && Number(l.peers) >= 1,
            30_000,
          );
          const args = ["--dht", "--bootstrap", w2.multiaddrs[0]!, "--capability", "wasm"];
          const json = await runDiscover([
            ...args,
            "--arch",
            "x86_64",
            "--timeout",
            "10s",
            "--json",
          ]);
          assert.equal(json.code, 0, json.stderr);
          const found: { peer_id: string; boot_attestation?: Record<string, unknown> }[] = JSON
            .parse(json.stdout);
          const one = found.find((p) => p.peer_id === w1.peerId);
          assert.ok(one, json.stdout);
          assert.equal(one.boot_attestation?.peer_id, w1.peerId);
          assert.deepEqual(one.boot_attestation?.provenance, PROVENANCE);
          const two = found.find((p) => p.peer_id === w2.peerId);
          if (two) assert.equal(two.boot_attestation, undefined);
          const text = await runDiscover([...args, "--arch", "x86_64", "--timeout", "10s"]);
          assert.equal(text.code, 0, text.stderr);
          const line = text.stdout.split("\n").find((l) => l.startsWith(w1.peerId));
          assert.ok(
            line?.includes(` boot=seq:${SEQUENCE},signer:${SIGNER.slice(0, 16)} `),
            text.stdout,
          );
        },
      );
    } finally {
      await r.stop();
      await w2.stop();
      await w1.stop();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("start --boot-provenance with a bad record exits 2 with one line", async () => {
  const root = await Deno.makeTempDir({ prefix: "plasm-boot-attest-bad-" });
  try {
    const cases: [string, string, RegExp][] = [
      ["missing", "", /no such file/],
      ["unsigned", JSON.stringify({ ...PROVENANCE, signer_key_ids: [] }), /signer_key_ids/],
      ["float", JSON.stringify(PROVENANCE).replace(`${SEQUENCE}`, `${SEQUENCE}.5`), /number/],
      ["unknown", JSON.stringify({ ...PROVENANCE, tpm_quote: "trust me" }), /'tpm_quote'/],
    ];
    for (const [name, body, why] of cases) {
      const file = `${root}/${name}.json`;
      if (name !== "missing") await Deno.writeTextFile(file, body);
      const out = await runScript(execStartFlags(), "cli/start.ts", [
        ...["--state-dir", `${root}/state`, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"],
        ...["--mode", "local", "--boot-provenance", file],
      ]);
      assert.equal(out.code, 2, `${name}: ${out.err}`);
      assert.equal(out.out, "", name);
      const lines = out.err.trimEnd().split("\n");
      assert.equal(lines.length, 1, `${name}: ${out.err}`);
      assert.ok(
        lines[0]!.startsWith(`start: Cannot use boot provenance '${file}': `),
        out.err,
      );
      assert.match(lines[0]!, why, name);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("submit refuses a malformed boot requirement with exit 2 and one line", async (t) => {
  await auditCli(t, "submit", [
    {
      name: "bad key id",
      args: [HELLO, "--require-boot-signer", "abc"],
      code: 2,
      line:
        /^submit: Cannot use --require-boot-signer 'abc': expected a hex public key \(64 hex digits\) \(see submit --help\)$/,
    },
    {
      name: "sequence without signer",
      args: [HELLO, "--min-boot-sequence", "5"],
      code: 2,
      line: /^submit: Cannot use --min-boot-sequence without --require-boot-signer/,
    },
    {
      name: "fractional sequence",
      args: [HELLO, "--require-boot-signer", SIGNER, "--min-boot-sequence", "1.5"],
      code: 2,
      line: /^submit: Cannot use --min-boot-sequence '1\.5': expected a whole number/,
    },
  ]);
});
