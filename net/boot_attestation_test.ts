import assert from "node:assert/strict";
import {
  type BootAttestation,
  type BootProvenance,
  bootReceiptExtra,
  bootRequirementProblem,
  readBootProvenance,
  signBootAttestation,
  verifyBootAttestation,
} from "./boot_attestation.ts";
import { SignatureError } from "../runtime/errors.ts";
import { encodeNodeInfo, parseNodeInfo } from "./node_info.ts";
import { localDispatcher } from "./scheduler.ts";
import { makeWorker, setupScheduler, testNode } from "./testdata/scheduler_world.ts";

const PUBLISHER = "b".repeat(64);

function provenance(): BootProvenance {
  return {
    provenance_version: 1,
    boot_manifest_hash: `sha256:${"a".repeat(64)}`,
    boot_sequence: 1796012997,
    version: "1796012997",
    channel: "stable",
    arch: "x86_64",
    signer_key_ids: [PUBLISHER],
    artifacts: { kernel: `sha256:${"c".repeat(64)}`, initramfs: `sha256:${"d".repeat(64)}` },
    providers: ["http://10.1.0.2:8080"],
  };
}

const node = testNode;

Deno.test("signBootAttestation() signs what verifyBootAttestation() accepts for that PeerId", async () => {
  const { keyPair, peerId } = await node();
  const attestation = await signBootAttestation(provenance(), {
    keyPair,
    peerId,
    signedAt: new Date(Date.UTC(2026, 10, 30, 7, 0, 0)),
  });
  assert.equal(attestation.attestation_version, 1);
  assert.equal(attestation.signed_at, "2026-11-30T07:00:00Z");
  assert.match(attestation.signature, /^[0-9a-f]{128}$/);
  // Through the wire format (JSON) and back, as a peer gets it.
  const wire = JSON.parse(JSON.stringify(attestation));
  assert.deepEqual(await verifyBootAttestation(wire, { peerId }), attestation);
});

Deno.test("verifyBootAttestation() refuses a changed provenance, another key and another peer", async () => {
  const { keyPair, peerId } = await node();
  const other = await node();
  const attestation = await signBootAttestation(provenance(), { keyPair, peerId });
  const changed = (patch: Partial<BootProvenance>): BootAttestation => ({
    ...attestation,
    provenance: { ...attestation.provenance, ...patch },
  });
  await assert.rejects(
    verifyBootAttestation(changed({ boot_sequence: 1796012998 }), { peerId }),
    SignatureError,
  );
  await assert.rejects(
    verifyBootAttestation(changed({ signer_key_ids: ["e".repeat(64)] }), { peerId }),
    SignatureError,
  );
  await assert.rejects(
    verifyBootAttestation({ ...attestation, signed_at: "2026-01-01T00:00:00Z" }, { peerId }),
    SignatureError,
  );
  // Signed by another node's key but naming this peer.
  const forged = await signBootAttestation(provenance(), other);
  await assert.rejects(
    verifyBootAttestation({ ...forged, peer_id: peerId }, { peerId }),
    SignatureError,
  );
  // Shown by another peer: the attestation names someone else.
  await assert.rejects(verifyBootAttestation(attestation, { peerId: other.peerId }), {
    name: "TypeError",
    message: `Cannot accept boot attestation of ${other.peerId}: it names ${peerId}`,
  });
  // The signer must be the PeerId's key.
  await assert.rejects(
    signBootAttestation(provenance(), { keyPair, peerId: other.peerId }),
    TypeError,
  );
});

Deno.test("verifyBootAttestation() refuses unknown fields and a malformed provenance", async () => {
  const { keyPair, peerId } = await node();
  const attestation = await signBootAttestation(provenance(), { keyPair, peerId });
  await assert.rejects(verifyBootAttestation({ ...attestation, extra: 1 }, { peerId }), TypeError);
  await assert.rejects(
    verifyBootAttestation({
      ...attestation,
      provenance: { ...attestation.provenance, boot_sequence: 1.5 },
    }, { peerId }),
    TypeError,
  );
  await assert.rejects(
    verifyBootAttestation({
      ...attestation,
      provenance: { ...attestation.provenance, providers: Array(9).fill("http://x") },
    }, { peerId }),
    TypeError,
  );
});

Deno.test("bootRequirementProblem() needs the signer and a high enough sequence", async () => {
  const { keyPair, peerId } = await node();
  const attestation = await signBootAttestation(provenance(), { keyPair, peerId });
  const seq = attestation.provenance.boot_sequence;
  assert.equal(
    bootRequirementProblem(attestation, { signer: PUBLISHER, minSequence: seq }),
    undefined,
  );
  assert.equal(
    bootRequirementProblem(attestation, { signer: PUBLISHER, minSequence: seq + 1 }),
    `its boot sequence is ${seq}, below ${seq + 1}`,
  );
  assert.match(
    bootRequirementProblem(attestation, { signer: "e".repeat(64), minSequence: 0 })!,
    /names signers bbbbbbbbbbbbbbbb, not eeeeeeeeeeeeeeee/,
  );
  assert.deepEqual(bootReceiptExtra(attestation), {
    boot_manifest_hash: `sha256:${"a".repeat(64)}`,
    boot_sequence: String(seq),
  });
});

Deno.test("readBootProvenance() reads a good file and refuses bad ones in one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/provenance.json`;
    await Deno.writeTextFile(path, JSON.stringify(provenance()) + "\n");
    assert.deepEqual(await readBootProvenance(path), provenance());
    const cases: [string, string | Uint8Array, RegExp][] = [
      ["dup.json", '{"provenance_version":1,"provenance_version":1}', /duplicate key/],
      ["float.json", JSON.stringify({ ...provenance(), boot_sequence: 1.5 }), /boot_sequence/],
      [
        "unknown.json",
        JSON.stringify({ ...provenance(), tpm: "yes" }),
        /'tpm' is not a provenance field/,
      ],
      ["big.json", " ".repeat(5000), /over the 4096 byte cap/],
      ["text.json", "not json", /boot provenance/],
      ["nosigner.json", JSON.stringify({ ...provenance(), signer_key_ids: [] }), /signer_key_ids/],
    ];
    for (const [name, body, why] of cases) {
      const file = `${dir}/${name}`;
      if (typeof body === "string") await Deno.writeTextFile(file, body);
      else await Deno.writeFile(file, body);
      await assert.rejects(readBootProvenance(file), (error: Error) => {
        assert.ok(error instanceof TypeError, name);
        assert.match(error.message, new RegExp(`^Cannot use boot provenance '${file}': `));
        assert.match(error.message, why, name);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
    }
    await assert.rejects(readBootProvenance(`${dir}/missing.json`), {
      message: `Cannot use boot provenance '${dir}/missing.json': no such file`,
    });
    await assert.rejects(readBootProvenance(dir), /it is not a regular file/);
    // A FIFO is refused before it is opened (opening it would wait for a writer).
    const fifo = `${dir}/fifo`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0);
    await assert.rejects(readBootProvenance(fifo), /it is not a regular file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseNodeInfo() keeps a well-formed boot attestation and refuses a malformed one", async () => {
  const { keyPair, peerId } = await node();
  const attestation = await signBootAttestation(provenance(), { keyPair, peerId });
  const info = { peer_id: peerId, arch: "x86_64", capabilities: {}, boot_attestation: attestation };
  assert.deepEqual(parseNodeInfo(encodeNodeInfo(info)).boot_attestation, attestation);
  const bad = { ...info, boot_attestation: { ...attestation, signature: "zz" } };
  assert.throws(
    () => parseNodeInfo(new TextEncoder().encode(JSON.stringify(bad))),
    /Cannot accept boot attestation: signature is malformed/,
  );
});

async function schedulerWith(receiptExtra: Record<string, string> | undefined) {
  const worker = await makeWorker(receiptExtra ? { receiptExtra } : {});
  const attestation = await signBootAttestation(provenance(), worker);
  const s = await setupScheduler((key) => ({
    ...localDispatcher({ [worker.peerId]: worker.worker }, key),
    bootAttestation: () => Promise.resolve(attestation),
  }));
  return {
    scheduler: s.scheduler,
    attestation,
    async [Symbol.asyncDispose]() {
      await s[Symbol.asyncDispose]();
      worker.worker.stop();
    },
  };
}

const HELLO = new URL("../examples/hello.wasm", import.meta.url);

Deno.test("Scheduler refuses a receipt whose boot fields differ from the worker's attestation", async () => {
  // The worker shows sequence 1796012997 but signs another into its receipts.
  await using s = await schedulerWith({
    boot_manifest_hash: provenance().boot_manifest_hash,
    boot_sequence: "5",
  });
  const id = await s.scheduler.submit(await Deno.readFile(HELLO), {
    requireBootSigner: PUBLISHER,
    minBootSequence: 1,
  });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "failed");
  assert.equal(job.errorKind, "not_verified");
  assert.match(
    job.error!,
    /the receipt's boot_sequence is 5, not the worker's boot attestation's 1796012997/,
  );
});

Deno.test("Scheduler accepts a receipt with the attestation's boot fields", async () => {
  await using s = await schedulerWith(bootReceiptExtra({ provenance: provenance() }));
  const id = await s.scheduler.submit(await Deno.readFile(HELLO), {
    input: new TextEncoder().encode("abc"),
    requireBootSigner: PUBLISHER.toUpperCase(),
    minBootSequence: 1796012997,
  });
  const job = await s.scheduler.wait(id);
  assert.equal(job.status, "done", job.error ?? "");
  assert.equal(job.receipt!.result.metrics.extra.boot_sequence, "1796012997");
  assert.deepEqual(job.options.boot, { signer: PUBLISHER, minSequence: 1796012997 });
});

Deno.test("Scheduler gives the same job with another boot requirement its own job id", async () => {
  await using s = await schedulerWith(undefined);
  const module = await Deno.readFile(HELLO);
  const low = { requireBootSigner: PUBLISHER, minBootSequence: 1, searchTimeoutMs: 50 };
  const high = { ...low, minBootSequence: 2 };
  const [a, b] = [await s.scheduler.submit(module, low), await s.scheduler.submit(module, high)];
  assert.notEqual(a, b);
  assert.equal(s.scheduler.get(b)!.options.boot!.minSequence, 2);
  await s.scheduler.wait(a);
  await s.scheduler.wait(b);
});
