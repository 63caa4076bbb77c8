import assert from "node:assert/strict";
import { sha256Tag } from "../runtime/digest.ts";
import { runScript, runTask, runVerifyReceipt, taskCommand } from "./_task.ts";
import { wat } from "../runtime/testdata/hostile_modules.ts";
import { auditCli, badDurationCase, usageCases } from "./_cli_audit.ts";
import { withTempDir } from "./_temp_dir.ts";
import { runVerifyReceiptFiles } from "./_verify_receipt_files.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const HELLO = `${ROOT}examples/hello.wasm`;

const withHome = <T>(fn: (dir: string) => Promise<T>): Promise<T> => withTempDir("plasm-home-", fn);

Deno.test("run reverses stdin with hello.wasm, writes --receipt FILE and verifies with the node key", async () => {
  await withHome(async (home) => {
    const receiptPath = `${home}/receipt.json`;
    const run = await runTask("run", [HELLO, "--receipt", receiptPath], {
      stdin: "Hello, World",
      env: { PLASM_HOME: `${home}/state` },
    });
    assert.equal(run.code, 0, run.err);
    assert.equal(run.out, "dlroW ,olleH");
    assert.match(run.err, /; full receipt: .*\.json \(copy: .*\/receipt\.json\)\n$/);
    const receipt = JSON.parse(await Deno.readTextFile(receiptPath));
    assert.equal(receipt.result.completion, "stop");
    assert.equal(receipt.result.metrics.extra.exit_code, "0");
    assert.equal(receipt.result.metrics.extra.module_hash, sha256Tag(await Deno.readFile(HELLO)));
    assert.equal(receipt.result.metrics.extra.input_hash, sha256Tag("Hello, World"));
    // The node key was made on first use, 0600, and the receipt is signed by it.
    const key = await Deno.stat(`${home}/state/node.key`);
    assert.equal(key.mode! & 0o777, 0o600);

    const ok = await runVerifyReceiptFiles(receiptPath, receipt.worker_pubkey, {
      dir: home,
      module: HELLO,
      input: "Hello, World",
      output: "dlroW ,olleH",
    });
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^receipt OK: job [0-9a-f]{64}, completion stop/);

    const bad = await runVerifyReceiptFiles(receiptPath, receipt.worker_pubkey, {
      dir: home,
      output: "dlroW ,olleh",
    });
    assert.equal(bad.code, 1);
    assert.match(bad.err, /FAILED: Receipt does not match: output_commitment/);
  });
});

Deno.test("run prints a two-line receipt summary on stderr and keeps the full receipt in its state dir", async () => {
  await withHome(async (home) => {
    const state = `${home}/state`;
    const run = await runTask("run", [HELLO], {
      stdin: "Hello, World",
      env: { PLASM_HOME: state },
    });
    assert.equal(run.code, 0, run.err);
    assert.equal(run.out, "dlroW ,olleH");
    const files = [...Deno.readDirSync(`${state}/receipts`)].map((e) => e.name);
    assert.equal(files.length, 1);
    const path = `${state}/receipts/${files[0]}`;
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const receipt = JSON.parse(await Deno.readTextFile(path));
    assert.equal(files[0], `${receipt.job_id}-${receipt.worker_pubkey.slice(0, 16)}.json`);
    // A blank line first: the job's output did not end its line.
    assert.equal(
      run.err,
      `\n--- receipt: job ${receipt.job_id}, completion stop, exit 0, output ${
        sha256Tag("dlroW ,olleH")
      }\n--- signed by ${receipt.worker_pubkey}; full receipt: ${path}\n`,
    );
    // The kept receipt is the whole signed one: it verifies with the node key.
    await Deno.writeTextFile(`${home}/out`, "dlroW ,olleH");
    const ok = await runVerifyReceipt(path, receipt.worker_pubkey, ["--output", `${home}/out`]);
    assert.equal(ok.code, 0, ok.err);

    // A failed job's receipt is kept and summarised too, after the one error line.
    const trap = await runTask("run", [`${ROOT}runtime/testdata/trap.wasm`], {
      env: { PLASM_HOME: state },
    });
    assert.equal(trap.code, 121);
    const lines = trap.err.split("\n");
    assert.equal(lines.length, 4, trap.err);
    assert.match(lines[0]!, /^run: error: /);
    const m = /^--- receipt: job ([0-9a-f]{64}), completion error \(trap\), output sha256:/.exec(
      lines[1]!,
    );
    assert.ok(m, String(lines[1]));
    assert.equal([...Deno.readDirSync(`${state}/receipts`)].length, 2);
    assert.ok(
      lines[2]!.endsWith(`${state}/receipts/${m[1]}-${receipt.worker_pubkey.slice(0, 16)}.json`),
    );
  });
});

Deno.test("run keeps one node identity across runs", async () => {
  await withHome(async (home) => {
    const env = { PLASM_HOME: `${home}/state` };
    const keys = [];
    for (let i = 0; i < 2; i++) {
      const run = await runTask("run", [HELLO, "--json"], { stdin: "ab", env });
      assert.equal(run.code, 0, run.err);
      const result = JSON.parse(run.out);
      assert.equal(result.stdout, "ba");
      keys.push(result.receipt.worker_pubkey);
    }
    assert.equal(keys[0], keys[1]);
  });
});

Deno.test("run --json reports stdout, exit code, manifest and receipt in one object", async () => {
  await withHome(async (home) => {
    const run = await runTask("run", [HELLO, "--json"], {
      stdin: "xyz",
      env: { PLASM_HOME: home },
    });
    assert.equal(run.code, 0, run.err);
    assert.equal(run.err, "");
    const result = JSON.parse(run.out);
    assert.equal(result.stdout, "zyx");
    assert.equal(result.stdout_base64, btoa("zyx"));
    assert.equal(result.exit_code, 0);
    assert.equal(result.completion, "stop");
    assert.equal(result.error, null);
    assert.equal(
      result.manifest.payload.module_cid,
      result.receipt.result.metrics.extra.module_hash,
    );
    assert.equal(result.job_id, result.receipt.job_id);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(result.receipt_file)), result.receipt);
    assert.ok(result.receipt_file.startsWith(`${home}/receipts/${result.job_id}-`));
  });
});

Deno.test("run gives one clear line and exit 2 for bad arguments, 1 for a missing module", async () => {
  await withHome(async (home) => {
    const env = { PLASM_HOME: home };
    const none = await runTask("run", [], { env });
    assert.equal(none.code, 2);
    assert.match(none.err, /^run: Missing <module\.wasm>/);
    const badSize = await runTask("run", [HELLO, "--memory", "lots"], { env });
    assert.equal(badSize.code, 2);
    assert.match(badSize.err, /^run: Cannot parse size 'lots'/);
    const missing = await runTask("run", [`${home}/nope.wasm`], { env });
    assert.equal(missing.code, 1);
    assert.equal(missing.err, `run: error: Cannot read module '${home}/nope.wasm': no such file\n`);
    assert.ok(!missing.err.includes("    at "), "no stack trace");
  });
});

Deno.test("run answers each bad argument, unreadable file and denied grant with one line", async (t) => {
  await withHome(async (home) => {
    const state = `${home}/state`;
    const mkdir = (path: string) => async () => void await Deno.mkdir(path, { recursive: true });
    const write = (path: string, text: string) => async () => await Deno.writeTextFile(path, text);
    await auditCli(t, "run", [
      {
        name: "no module",
        args: [],
        code: 2,
        line: /^run: Missing <module\.wasm> \(see run --help\)$/,
      },
      { name: "two modules", args: [HELLO, HELLO], code: 2, line: /^run: Too many arguments / },
      {
        name: "an unknown flag",
        args: [HELLO, "--bogus"],
        code: 2,
        line: /^run: Unknown option '--bogus' \(see run --help\)$/,
      },
      ...usageCases("run", [
        [
          "a flag without its value",
          [HELLO, "--memory"],
          "Option '--memory <value>' needs a value ",
        ],
        [
          "a value for a boolean flag",
          [HELLO, "--json=yes"],
          "Option '--json' does not take a value ",
        ],
        ["a bad size", [HELLO, "--max-output", "lots"], "Cannot parse size 'lots'"],
        ["a bad --fuel", [HELLO, "--fuel", "-1"], "Cannot parse --fuel '-1'"],
        ["a bad --env", [HELLO, "--env", "NOEQ"], "Cannot parse --env 'NOEQ': use K=V"],
      ]),
      badDurationCase("run", [HELLO, "--timeout"], { name: "a bad duration" }),
      {
        name: "a missing module",
        args: [`${home}/nope.wasm`],
        code: 1,
        line: new RegExp(`^run: error: Cannot read module '${home}/nope\\.wasm': no such file$`),
      },
      {
        name: "a directory as module",
        args: [home],
        code: 1,
        line: new RegExp(`^run: error: Cannot read module '${home}': not a file$`),
      },
      {
        name: "a missing --input",
        args: [HELLO, "--input", `${home}/nope`],
        code: 1,
        line: new RegExp(`^run: error: Cannot read input '${home}/nope': no such file$`),
      },
      {
        name: "a directory as --input",
        args: [HELLO, "--input", home],
        code: 1,
        line: new RegExp(`^run: error: Cannot read input '${home}': is a directory$`),
      },
      {
        name: "a file as --state-dir",
        setup: write(`${home}/file`, "x"),
        args: [HELLO, "--state-dir", `${home}/file`],
        code: 1,
        line: new RegExp(`^run: error: Cannot use state dir '${home}/file': not a directory$`),
      },
      {
        name: "a node key of the wrong size",
        setup: async () => {
          await mkdir(`${home}/bad-state`)();
          await write(`${home}/bad-state/node.key`, "abc")();
        },
        args: [HELLO, "--state-dir", `${home}/bad-state`],
        code: 1,
        line: /^run: error: Cannot load node key '.*node\.key': expected 32 bytes, got 3$/,
      },
      {
        name: "--receipt in a missing directory",
        args: [HELLO, "--receipt", `${home}/no/dir/r.json`],
        code: 1,
        line: new RegExp(
          `^run: error: Cannot write receipt '${home}/no/dir/r\\.json': no such file$`,
        ),
      },
      {
        name: "--receipt naming a directory",
        args: [HELLO, "--receipt", home],
        code: 1,
        line: new RegExp(`^run: error: Cannot write receipt '${home}': is a directory$`),
      },
      {
        name: "--receipt outside a narrowed write grant",
        flags: (f) => f.map((x) => x === "--allow-write" ? `--allow-write=${state}` : x),
        args: [HELLO, "--receipt", `${home}/r.json`],
        code: 1,
        line: new RegExp(
          `^run: error: Cannot write receipt '${home}/r\\.json': not allowed: run with --allow-write$`,
        ),
      },
      {
        name: "a module outside a narrowed read grant",
        flags: (f) => f.map((x) => x === "--allow-read" ? `--allow-read=${state}` : x),
        args: [HELLO],
        code: 1,
        line: new RegExp(
          `^run: error: Cannot read module '${HELLO}': not allowed: run with --allow-read$`,
        ),
      },
    ], { PLASM_HOME: state });
  });
});

Deno.test("run refuses a non-WASM file with exit 120 and still signs a receipt of the failure", async () => {
  await withHome(async (home) => {
    await Deno.writeTextFile(`${home}/not.wasm`, "#!/bin/sh\necho hi\n");
    const run = await runTask("run", [`${home}/not.wasm`, "--json"], { env: { PLASM_HOME: home } });
    assert.equal(run.code, 120);
    const result = JSON.parse(run.out);
    assert.equal(result.error.kind, "invalid_module");
    assert.equal(result.receipt.result.completion, "error");
    assert.equal(result.receipt.result.metrics.extra.error, "invalid_module");
  });
});

Deno.test("run refuses a module over --max-module before reading it", async () => {
  await withHome(async (home) => {
    const run = await runTask("run", [HELLO, "--max-module", "100"], { env: { PLASM_HOME: home } });
    assert.equal(run.code, 120);
    assert.match(
      run.err,
      /^run: error: Cannot run '.*hello\.wasm': module is \d+ bytes, over the 100-byte limit/,
    );
  });
});

Deno.test("the run task has no net, run, sys or ffi permission, and its flags cannot reach the net", async () => {
  const { flags, script } = await taskCommand("run");
  assert.equal(script, "cli/run.ts");
  for (const flag of flags) {
    assert.ok(
      !/^(-A|--allow-all|--allow-net|--allow-run|--allow-sys|--allow-ffi|--allow-import)/.test(
        flag,
      ),
      `unexpected flag ${flag}`,
    );
  }
  // The entrypoint's header names the same flags the task uses.
  const header = await Deno.readTextFile(`${ROOT}cli/run.ts`);
  for (const flag of flags) assert.ok(header.includes(flag), `cli/run.ts header lacks ${flag}`);

  // A probe run with exactly those flags is refused a TCP connection to a live local listener.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const probe = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      probe,
      `try { (await Deno.connect({ hostname: "127.0.0.1", port: ${listener.addr.port} })).close(); console.log("connected"); }
       catch (e) { console.log(e.name); }
       try { await fetch("http://127.0.0.1:${listener.addr.port}/"); console.log("fetched"); }
       catch (e) { console.log(e.name); }`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...flags, probe],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout), "NotCapable\nNotCapable\n");
  } finally {
    await Deno.remove(probe);
  }
});

const TESTDATA = `${ROOT}runtime/testdata`;

/** Each breach of a limit: its module, extra flags, exit code, error kind and completion. */
const BREACHES: [string, string[], number, string, string][] = [
  ["trap.wasm", [], 121, "trap", "error"],
  ["stack_overflow.wasm", [], 122, "stack_overflow", "error"],
  ["memory_bomb.wasm", ["--memory", "4MiB"], 123, "memory_limit", "error"],
  ["infinite_loop.wasm", ["--timeout", "500ms"], 124, "timeout", "error"],
  ["huge_output.wasm", ["--max-output", "1KiB"], 125, "output_limit", "length"],
  ["infinite_loop.wasm", ["--fuel", "100000"], 118, "fuel_exhausted", "error"],
  ["no_start.wasm", [], 120, "no_start", "error"],
];

for (const [file, flags, code, kind, completion] of BREACHES) {
  Deno.test(`run ${file} ${flags.join(" ")} exits ${code} with one line and a '${completion}' receipt`, async () => {
    await withHome(async (home) => {
      const env = { PLASM_HOME: home };
      const plain = await runTask("run", [`${TESTDATA}/${file}`, ...flags], { env });
      assert.equal(plain.code, code, plain.err);
      const errorLines = plain.err.split("\n").filter((l) => l.startsWith("run: error: "));
      assert.equal(errorLines.length, 1, plain.err);
      assert.match(
        plain.err,
        new RegExp(`\n--- receipt: job [0-9a-f]{64}, completion ${completion} \\(${kind}\\), `),
      );
      assert.ok(!plain.err.includes("    at "), "no stack trace");

      const json = await runTask("run", [`${TESTDATA}/${file}`, ...flags, "--json"], { env });
      assert.equal(json.code, code);
      const result = JSON.parse(json.out);
      assert.equal(result.error.kind, kind);
      assert.equal(result.receipt.result.completion, completion);
      assert.equal(result.receipt.result.metrics.extra.error, kind);
      if (kind === "output_limit") {
        assert.equal(result.stdout, "y\n".repeat(512));
      }
    });
  });
}

Deno.test("run --fuel reports the same fuel_used in separate processes, and output is unchanged", async () => {
  await withHome(async (home) => {
    const env = { PLASM_HOME: home };
    const args = [`${ROOT}examples/sha256.wasm`, "--arg", "1", "--arg", "2", "--json"];
    const plain = JSON.parse((await runTask("run", args, { env })).out);
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const run = await runTask("run", [...args, "--fuel", "10000000000"], { env });
      assert.equal(run.code, 0, run.err);
      runs.push(JSON.parse(run.out));
    }
    const [a, b] = runs;
    assert.equal(a.stdout, plain.stdout);
    assert.equal(b.stdout, plain.stdout);
    assert.match(a.receipt.result.metrics.extra.fuel_used, /^[1-9]\d+$/);
    assert.equal(
      a.receipt.result.metrics.extra.fuel_used,
      b.receipt.result.metrics.extra.fuel_used,
    );
    assert.equal(a.receipt.result.metrics.extra.fuel_limit, "10000000000");
    // The instrumented module was cached under the state dir by module hash.
    const cached = [...Deno.readDirSync(`${home}/fuel-cache`)].map((e) => e.name);
    assert.equal(cached.length, 1);

    // One unit less than a run needs is exhausted, deterministically.
    const used = BigInt(a.receipt.result.metrics.extra.fuel_used);
    const short = await runTask("run", [...args, "--fuel", String(used - 1n)], { env });
    assert.equal(short.code, 118);
    const exact = await runTask("run", [...args, "--fuel", String(used)], { env });
    assert.equal(exact.code, 0, exact.err);
  });
});

Deno.test("run runs the job in its own process: it needs no worker (works without --unstable-worker-options)", async () => {
  await withHome(async (home) => {
    const { flags, script } = await taskCommand("run");
    const run = await runScript(
      flags.filter((f) => f !== "--unstable-worker-options"),
      script,
      [HELLO],
      { stdin: "Hello, World", env: { PLASM_HOME: home } },
    );
    assert.equal(run.code, 0, run.err);
    assert.equal(run.out, "dlroW ,olleH");
  });
});

Deno.test("run revokes every permission of its process, and the job still gets a stored receipt", async () => {
  await withHome(async (home) => {
    await Deno.writeTextFile(`${home}/in`, "Hello, World");
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const probe = `${home}/probe.ts`;
    // main() of cli/run.ts in a process started with every permission; then each kind is tried.
    await Deno.writeTextFile(
      probe,
      `import { main } from ${JSON.stringify(`${ROOT}cli/run.ts`)};
const code = await main([${JSON.stringify(HELLO)}, "--input", ${JSON.stringify(`${home}/in`)}]);
const tries = {
  read: () => Deno.readTextFileSync(${JSON.stringify(`${home}/in`)}),
  write: () => Deno.writeTextFileSync(${JSON.stringify(`${home}/new`)}, "x"),
  net: () => Deno.connect({ hostname: "127.0.0.1", port: ${listener.addr.port} }),
  env: () => Deno.env.get("HOME"),
  run: () => new Deno.Command("true").outputSync(),
  ffi: () => Deno.dlopen("libc.so.6", {}),
  sys: () => Deno.hostname(),
  import: () => import("http://127.0.0.1:${listener.addr.port}/x.js"),
};
const seen = [];
for (const [name, fn] of Object.entries(tries)) {
  let outcome = "allowed";
  try {
    await fn();
  } catch (error) {
    outcome = error.name;
  }
  seen.push(name + " " + Deno.permissions.querySync({ name }).state + " " + outcome);
}
console.error("exit " + code);
console.error(seen.join("\\n"));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      // Every permission, and the task's --no-remote (the module loader ignores revocation).
      args: ["run", "-A", "--no-remote", "--no-prompt", "--config", `${ROOT}deno.json`, probe],
      env: { PLASM_HOME: `${home}/state` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(new TextDecoder().decode(out.stdout), "dlroW ,olleH", err);
    const lines = err.split("\n");
    assert.ok(lines.includes("exit 0"), err);
    for (const name of ["read", "write", "net", "env", "run", "ffi", "sys"]) {
      assert.ok(lines.includes(`${name} prompt NotCapable`), `${name}: ${err}`);
    }
    assert.ok(lines.includes("import prompt TypeError"), err);
    await assert.rejects(Deno.stat(`${home}/new`), Deno.errors.NotFound);
    // The receipt was opened before the revocation and written after the job.
    const stored = [...Deno.readDirSync(`${home}/state/receipts`)];
    assert.equal(stored.length, 1);
    const receipt = JSON.parse(
      await Deno.readTextFile(`${home}/state/receipts/${stored[0]!.name}`),
    );
    assert.equal(receipt.result.completion, "stop");
  });
});

/** Modules that never call the host, each stopped only by the checks the run adds. */
const SILENT_SPINNERS: [string, string, string[]][] = [
  ["an endless loop under a large --fuel", `(func (export "_start") (loop (br 0)))`, [
    "--fuel",
    "1000000000000000",
  ]],
  [
    "loop-free recursion (2^60 calls)",
    `(func $f (param i32) (result i32)
       (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
         (else (i32.add (call $f (i32.sub (local.get 0) (i32.const 1)))
                        (call $f (i32.sub (local.get 0) (i32.const 1)))))))
     (func (export "_start") (drop (call $f (i32.const 60))))`,
    [],
  ],
  ["an endless start function", `(func $s (loop (br 0))) (start $s) (func (export "_start"))`, []],
  [
    "an endless loop of 60 MiB memory.fill",
    `(func (export "_start") (loop (memory.fill (i32.const 0) (i32.const 1) (i32.const 62914560))
       (br 0)))`,
    ["--memory", "64MiB"],
  ],
  [
    "an endless loop of 60 MiB memory.fill under a large --fuel",
    `(func (export "_start") (loop (memory.fill (i32.const 0) (i32.const 1) (i32.const 62914560))
       (br 0)))`,
    ["--memory", "64MiB", "--fuel", "1000000000000000"],
  ],
];

for (const [what, body, flags] of SILENT_SPINNERS) {
  Deno.test(`run stops ${what} at --timeout: exit 124, one line, a 'timeout' receipt`, async () => {
    await withHome(async (home) => {
      await Deno.writeFile(
        `${home}/m.wasm`,
        await wat(`(module (memory (export "memory") 960) ${body})`),
      );
      const run = await runTask(
        "run",
        [`${home}/m.wasm`, "--timeout", "300ms", "--json", ...flags],
        {
          stdin: "",
          env: { PLASM_HOME: home },
        },
      );
      assert.equal(run.code, 124, run.err);
      assert.equal(run.err, "");
      const result = JSON.parse(run.out);
      assert.equal(result.error.kind, "timeout");
      assert.equal(result.error.message, "Cannot finish job: timed out after 300 ms");
      assert.equal(result.receipt.result.metrics.extra.error, "timeout");
    });
  });
}

Deno.test("run --receipt replaces a longer existing file with exactly the new receipt", async () => {
  await withHome(async (home) => {
    const path = `${home}/receipt.json`;
    await Deno.writeTextFile(path, "x".repeat(100_000));
    const run = await runTask("run", [HELLO, "--receipt", path, "--json"], {
      stdin: "Hello, World",
      env: { PLASM_HOME: `${home}/state` },
    });
    assert.equal(run.code, 0, run.err);
    const text = await Deno.readTextFile(path);
    assert.deepEqual(JSON.parse(text), JSON.parse(run.out).receipt);
    assert.equal(text, JSON.stringify(JSON.parse(run.out).receipt, null, 2) + "\n");
  });
});

Deno.test("run leaves no --receipt file behind when the state dir cannot keep the receipt", async () => {
  await withHome(async (home) => {
    const env = { PLASM_HOME: `${home}/state` };
    assert.equal((await runTask("run", [HELLO], { stdin: "", env })).code, 0);
    await Deno.remove(`${home}/state/receipts`, { recursive: true });
    await Deno.writeTextFile(`${home}/state/receipts`, "not a directory");
    const run = await runTask("run", [HELLO, "--receipt", `${home}/r.json`], { stdin: "", env });
    assert.equal(run.code, 1, run.err);
    assert.match(run.err, /^run: error: Cannot store receipt in '.*\/state\/receipts': /);
    assert.equal(run.err.split("\n").filter((l) => l !== "").length, 1, run.err);
    await assert.rejects(Deno.stat(`${home}/r.json`), Deno.errors.NotFound);
  });
});
