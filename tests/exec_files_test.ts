/**
 * Jobs with files across the mesh, with real processes: `submit --dir` on a requester node sends
 * the tree to a worker node, `result --out` writes the output tree checked against the receipt.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, spawnWorkerAndRequester } from "./net_spawn.ts";
import { runTask } from "./_task.ts";
import { encodeFileTree, makeFileTree } from "../runtime/file_tree.ts";
import { readHostTree } from "../runtime/host_tree.ts";
import { sha256Tag } from "../runtime/digest.ts";
import { parseReceipt, verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";

/** Copies `in.txt` of its preopen to `out.txt` (see runtime/testdata/copy_file.wat). */
const COPY = join(ROOT, "runtime/testdata/copy_file.wasm");
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test({
  name:
    "submit --dir runs a job with files on a peer; result --out writes the verified output tree",
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "plasm-files-" });
    await using nodes = await spawnWorkerAndRequester(root, { removeRoot: true });
    const { a } = nodes;
    const input = join(root, "in");
    await Deno.mkdir(input);
    await Deno.writeTextFile(join(input, "in.txt"), "files across the mesh\n");
    const requester = ["--state-dir", join(root, "b")];
    const submitted = await runTask("submit", [
      COPY,
      "--dir",
      `${input}::/`,
      "--worker",
      a.peerId,
      "--json",
      ...requester,
    ]);
    assert.equal(submitted.code, 0, submitted.err);
    const { job_id: id } = JSON.parse(dec(submitted.stdout));
    const out = join(root, "out");
    const receiptFile = join(root, "receipt.json");
    const result = await runTask("result", [
      id,
      "--wait",
      "--out",
      out,
      "--receipt",
      receiptFile,
      ...requester,
    ]);
    assert.equal(result.code, 0, result.err);
    assert.equal(await Deno.readTextFile(join(out, "in.txt")), "files across the mesh\n");
    assert.equal(await Deno.readTextFile(join(out, "out.txt")), "files across the mesh\n");
    // The worker signed both trees: the one sent and the one written.
    const receipt = parseReceipt(JSON.parse(await Deno.readTextFile(receiptFile)));
    await verifyReceipt(receipt, { publicKey: peerPublicKey(a.peerId), jobId: id });
    const extra = receipt.result.metrics.extra;
    const limits = { maxBytes: 1 << 20, maxFiles: 10 };
    const sent = await readHostTree([{ host: input, at: "" }], limits);
    assert.equal(extra.inputs_hash, sha256Tag(encodeFileTree(sent)));
    const written = await readHostTree([{ host: out, at: "" }], limits);
    assert.equal(extra.outputs_hash, sha256Tag(encodeFileTree(makeFileTree(written.entries))));
    // An existing, non-empty --out is refused in one line; nothing is written there.
    const again = await runTask("result", [id, "--out", input, ...requester]);
    assert.equal(again.code, 1);
    assert.match(
      again.err,
      /^result: error: Cannot write files to '.*': it exists and is not empty\n$/,
    );
    assert.deepEqual([...Deno.readDirSync(input)].map((e) => e.name), ["in.txt"]);
  },
});

Deno.test("submit --dir refuses a bad spec (exit 2) and files over the mesh's caps (exit 1), in one line", async () => {
  const root = await Deno.makeTempDir({ prefix: "plasm-files-" });
  try {
    const state = ["--state-dir", root];
    const bad = await runTask("submit", [COPY, "--dir", "::x", ...state]);
    assert.equal(bad.code, 2);
    assert.equal(
      bad.err,
      "submit: Cannot use --dir '::x': no host directory (see submit --help)\n",
    );
    await Deno.mkdir(join(root, "big"));
    await Deno.writeFile(join(root, "big", "f"), new Uint8Array(2 << 20));
    const big = await runTask("submit", [
      COPY,
      "--dir",
      join(root, "big"),
      "--memory",
      "1MiB",
      ...state,
    ]);
    assert.equal(big.code, 1);
    assert.equal(
      big.err,
      "submit: error: Cannot send --dir: its files pass the 1048576 byte cap of a job on the mesh (64 MiB, never more than --memory)\n",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
