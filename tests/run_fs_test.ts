/**
 * `run --dir` end to end, as real processes: the project's WASI filesystem conformance programs
 * (runtime/testdata/wasi_fs/*.c, written from the WASI preview1 spec) built with clang +
 * wasi-libc into a temporary directory and run through `run --dir tmp::/`; `--out` and
 * `--out-changed`; the caps' exit codes and receipts; `verify receipt --inputs --outputs`.
 *
 * Skips only when clang with wasi-libc is missing and CI is not set; with CI=true it fails.
 */
import assert from "node:assert/strict";
import { runTask, runVerifyReceipt } from "./_task.ts";
import { withTempDir } from "./_temp_dir.ts";

const SOURCES = new URL("../runtime/testdata/wasi_fs/", import.meta.url).pathname;
const IN_CI = Deno.env.get("CI") === "true";
const HAVE_CLANG = await _haveWasiClang();
if (!HAVE_CLANG && !IN_CI) {
  console.log(
    "run_fs_test: SKIPPED: clang with wasi-libc is missing (apt-get install clang lld wasi-libc)",
  );
}

Deno.test({
  name: "run --dir tests have clang and wasi-libc when CI=true",
  ignore: !IN_CI,
  fn() {
    assert.ok(HAVE_CLANG, "clang + wasi-libc missing in CI: apt-get install clang lld wasi-libc");
  },
});

async function _haveWasiClang(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("clang", {
      args: ["--target=wasm32-wasi", "--sysroot=/usr", "-print-libgcc-file-name"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success && (await Deno.stat("/usr/include/wasm32-wasi/wasi/api.h")).isFile;
  } catch {
    return false;
  }
}

/** Build `runtime/testdata/wasi_fs/<name>.c` into `dir`; the path of the module. */
async function build(name: string, dir: string): Promise<string> {
  const output = `${dir}/${name}.wasm`;
  const { success, stderr } = await new Deno.Command("clang", {
    args: ["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", output, `${SOURCES}${name}.c`],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(success, new TextDecoder().decode(stderr));
  return output;
}

/** A fresh directory `name` in `dir` holding `files` (path -> text). */
async function tree(
  dir: string,
  name: string,
  files: Record<string, string> = {},
): Promise<string> {
  const root = `${dir}/${name}`;
  await Deno.mkdir(root);
  for (const [path, text] of Object.entries(files)) {
    const full = `${root}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, text);
  }
  return root;
}

/**
 * A test that needs clang (skipped without it outside CI): `program` built into a fresh temp
 * `dir`, and a tree `root` there holding `files`.
 */
function fsTest(
  name: string,
  program: string,
  files: Record<string, string>,
  fn: (t: { dir: string; wasm: string; root: string }) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: !HAVE_CLANG,
    async fn() {
      await withTempDir("plasm-fs-", async (dir) => {
        const wasm = await build(program, dir);
        await fn({ dir, wasm, root: await tree(dir, "root", files) });
      });
    },
  });
}

function run(dir: string, args: string[]) {
  return runTask("run", [...args, "--state-dir", `${dir}/state`, "--input", "/dev/null"]);
}

/** The parts of a stored receipt the tests read. */
interface _Receipt {
  worker_pubkey: string;
  result: { completion: string; metrics: { extra: Record<string, string | undefined> } };
}

/** The receipt `run` stored, from its summary line. */
async function storedReceipt(err: string): Promise<{ path: string; json: _Receipt }> {
  const path = /full receipt: (\S+)/.exec(err)?.[1];
  assert.ok(path, err);
  return { path, json: JSON.parse(await Deno.readTextFile(path)) };
}

const CONFORMANCE: Record<string, { files?: Record<string, string>; checks: number }> = {
  files: { files: { "in.txt": "hello\n" }, checks: 7 },
  dirs: { checks: 5 },
  links: { checks: 5 },
  fds: { files: { "in.txt": "hello\n" }, checks: 6 },
  std_patterns: { checks: 6 },
};

for (const [name, { files, checks }] of Object.entries(CONFORMANCE)) {
  fsTest(
    `run --dir: the ${name} conformance program passes all ${checks} checks`,
    name,
    files ?? {},
    async ({ dir, wasm, root }) => {
      const res = await run(dir, [wasm, "--dir", `${root}::/`]);
      const lines = res.out.trimEnd().split("\n");
      assert.equal(res.code, 0, res.out + res.err);
      assert.equal(lines.length, checks, res.out);
      assert.ok(lines.every((l) => l.startsWith("ok ")), res.out);
    },
  );
}

fsTest(
  "run --dir --out writes the final files, never the host dir; verify receipt checks both",
  "files",
  { "in.txt": "hello\n" },
  async ({ dir, wasm, root }) => {
    const res = await run(dir, [
      wasm,
      "--dir",
      `${root}::/`,
      "--out",
      `${dir}/out`,
      "--out-changed",
      `${dir}/changed`,
    ]);
    assert.equal(res.code, 0, res.err);
    // The host tree is read once and never written.
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["in.txt"]);
    const names = (d: string) => [...Deno.readDirSync(d)].map((e) => e.name).sort();
    assert.deepEqual(names(`${dir}/out`), ["in.txt", "log.txt", "new.txt", "result.txt"]);
    assert.deepEqual(names(`${dir}/changed`), ["log.txt", "new.txt", "result.txt"]);
    assert.equal(await Deno.readTextFile(`${dir}/out/result.txt`), "files: all passed\n");
    assert.equal(await Deno.readTextFile(`${dir}/out/log.txt`), "one\ntwo\n");
    const { path, json } = await storedReceipt(res.err);
    const extra = json.result.metrics.extra;
    assert.match(extra.inputs_hash ?? "", /^sha256:[0-9a-f]{64}$/);
    assert.match(extra.outputs_hash ?? "", /^sha256:[0-9a-f]{64}$/);
    const key = json.worker_pubkey;
    const ok = await runVerifyReceipt(path, key, [
      "--inputs",
      `${root}::/`,
      "--outputs",
      `${dir}/out`,
    ]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /matches inputs, outputs/);
    await Deno.writeTextFile(`${dir}/out/result.txt`, "forged\n");
    const bad = await runVerifyReceipt(path, key, ["--outputs", `${dir}/out`]);
    assert.equal(bad.code, 1, bad.err);
    assert.match(bad.err, /^verify receipt: FAILED: Receipt does not match: outputs_hash: /);
    const wrongIn = await runVerifyReceipt(path, key, ["--inputs", `${dir}/changed::/`]);
    assert.equal(wrongIn.code, 1, wrongIn.err);
    // An --out that exists and is not empty is refused before the job runs.
    const again = await run(dir, [wasm, "--dir", `${root}::/`, "--out", `${dir}/out`]);
    assert.equal(again.code, 1);
    assert.equal(
      again.err,
      `run: error: Cannot write files to '${dir}/out': it exists and is not empty\n`,
    );
  },
);

fsTest(
  "run --dir: a job writing over --fs-max-bytes exits 116 with one line and a receipt",
  "fill",
  {},
  async ({ dir, wasm, root }) => {
    const args = [wasm, "--dir", `${root}::/`, "--fs-max-bytes", "100KiB", "--arg", "bytes"];
    const fits = await run(dir, [...args, "--arg", "102400"]);
    assert.equal(fits.code, 0, fits.err);
    const res = await run(dir, [...args, "--arg", "102401", "--out", `${dir}/out`]);
    assert.equal(res.code, 116, res.err);
    // The write that would cross the cap is refused whole; the files up to it are kept.
    assert.equal((await Deno.stat(`${dir}/out/big`)).size, 65536);
    const lines = res.err.trimEnd().split("\n");
    assert.equal(
      lines[0],
      "run: error: Cannot finish job: its files exceeded the 102400 byte cap",
    );
    assert.equal(lines.length, 3); // the error and the two receipt lines
    const { json } = await storedReceipt(res.err);
    assert.equal(json.result.metrics.extra.error, "fs_bytes_limit");
    assert.match(json.result.metrics.extra.outputs_hash ?? "", /^sha256:/);
    assert.equal(json.result.completion, "error");
  },
);

fsTest(
  "run --dir: a job making more than --fs-max-files entries exits 117 with a receipt",
  "fill",
  { "a": "" },
  async ({ dir, wasm, root }) => {
    const args = [wasm, "--dir", `${root}::/`, "--fs-max-files", "10", "--arg", "files"];
    assert.equal((await run(dir, [...args, "--arg", "9"])).code, 0);
    const res = await run(dir, [...args, "--arg", "10"]);
    assert.equal(res.code, 117, res.err);
    assert.match(
      res.err,
      /^run: error: Cannot finish job: its files exceeded the 10 entry cap\n/,
    );
    const { json } = await storedReceipt(res.err);
    assert.equal(json.result.metrics.extra.error, "fs_files_limit");
  },
);

Deno.test("run --dir: input files over the caps are refused before the job runs", async () => {
  await withTempDir("plasm-fs-", async (dir) => {
    const root = await tree(dir, "root", { "a.txt": "12345", "b.txt": "6" });
    const wasm = new URL("../examples/hello.wasm", import.meta.url).pathname;
    const bytes = await run(dir, [wasm, "--dir", `${root}::/`, "--fs-max-bytes", "5"]);
    assert.equal(bytes.code, 116, bytes.err);
    assert.match(
      bytes.err,
      /^run: error: Cannot read '.*\/root\/b\.txt': the files would pass the 5 byte cap \(--fs-max-bytes\)\n$/,
    );
    const files = await run(dir, [wasm, "--dir", `${root}::/`, "--fs-max-files", "1"]);
    assert.equal(files.code, 117, files.err);
    assert.equal(
      files.err,
      `run: error: Cannot read '${root}/b.txt': more than 1 files, directories and links (--fs-max-files)\n`,
    );
    const ok = await run(dir, [wasm, "--dir", `${root}::/`, "--fs-max-bytes", "6"]);
    assert.equal(ok.code, 0, ok.err);
  });
});

Deno.test("run: file flags without --dir, or a bad --dir, are usage errors", async () => {
  await withTempDir("plasm-fs-", async (dir) => {
    const wasm = new URL("../examples/hello.wasm", import.meta.url).pathname;
    const out = await run(dir, [wasm, "--out", `${dir}/o`]);
    assert.equal(out.code, 2);
    assert.match(out.err, /^run: --out needs --dir \(see run --help\)\n$/);
    const up = await run(dir, [wasm, "--dir", `${dir}::../x`]);
    assert.equal(up.code, 2);
    const big = await run(dir, [
      wasm,
      "--dir",
      `${dir}::/`,
      "--memory",
      "1MiB",
      "--fs-max-bytes",
      "2MiB",
    ]);
    assert.equal(big.code, 2, big.err);
    // Without --dir, the receipt has no file hashes at all.
    const plain = await run(dir, [wasm]);
    assert.equal(plain.code, 0, plain.err);
    const { json } = await storedReceipt(plain.err);
    assert.equal(json.result.metrics.extra.inputs_hash, undefined);
    assert.equal(json.result.metrics.extra.outputs_hash, undefined);
  });
});

Deno.test("runJob({ files }) gives the final tree back, in the process sandbox too", async () => {
  const { runJob } = await import("../runtime/run_job.ts");
  const { decodeFileTree, encodeFileTree } = await import("../runtime/file_tree.ts");
  const module = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
  const files = {
    tree: encodeFileTree({ entries: [{ path: "d", type: "dir" }] }),
    preopens: [{ name: "/", path: "" }],
    maxBytes: 1024,
    maxFiles: 10,
  };
  const outcome = await runJob(module, { input: new TextEncoder().encode("ab"), files });
  assert.equal(new TextDecoder().decode(outcome.stdout), "ba");
  assert.deepEqual(decodeFileTree(outcome.files!).entries, [{ path: "d", type: "dir" }]);
  const plain = await runJob(module, { input: new TextEncoder().encode("ab") });
  assert.equal(plain.files, undefined);
  const boxed = await runJob(module, { files, sandbox: "process" });
  assert.deepEqual(decodeFileTree(boxed.files!).entries, [{ path: "d", type: "dir" }]);
});
