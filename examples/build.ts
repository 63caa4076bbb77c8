#!/usr/bin/env -S deno run --allow-run=clang,wat2wasm --allow-read=examples,runtime/testdata --allow-write=examples,runtime/testdata
/**
 * Build the example jobs and the runtime's WASM test fixtures from their sources, with Debian's
 * clang + wasi-libc (C) and wabt's `wat2wasm` (WAT).
 *
 * Run from the repository root: `deno task build:examples` builds every `.wasm` in place;
 * `--native` also builds native binaries of the examples under `examples/build/` (never
 * committed; the benchmark uses them); `--check` rebuilds into `examples/build/check/` and fails
 * when a committed `.wasm` differs from its rebuild.
 *
 * Permissions: `--allow-run=clang,wat2wasm --allow-read=examples,runtime/testdata
 * --allow-write=examples,runtime/testdata`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { errorMessage } from "../util/error_message.ts";

/** One WebAssembly output and how to make it. */
interface BuildTarget {
  /** Source file, relative to the repository root. */
  source: string;
  /** Output `.wasm`, relative to the repository root. */
  output: string;
  /** Native binary to build with `--native`, if any. */
  native?: string;
}

/** The sysroot of Debian's `wasi-libc` package (headers in /usr/include/wasm32-wasi). */
const WASI_SYSROOT = "/usr";

/** Everything the script builds. */
const TARGETS: readonly BuildTarget[] = [
  { source: "examples/hello.c", output: "examples/hello.wasm", native: "examples/build/hello" },
  { source: "examples/sha256.c", output: "examples/sha256.wasm", native: "examples/build/sha256" },
  ...["memory_bomb", "huge_output", "wasi_probe"].map((n) => ({
    source: `runtime/testdata/${n}.c`,
    output: `runtime/testdata/${n}.wasm`,
  })),
  ...["trap", "stack_overflow", "infinite_loop", "no_start", "big_memory", "grow"].map((n) => ({
    source: `runtime/testdata/${n}.wat`,
    output: `runtime/testdata/${n}.wasm`,
  })),
];

/**
 * The command line that builds `source` into `output`.
 *
 * @example
 * ```ts
 * import { buildCommand } from "./build.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(buildCommand("t.wat", "t.wasm"), ["wat2wasm", "t.wat", "-o", "t.wasm"]);
 * assert.equal(buildCommand("t.c", "t.wasm")[0], "clang");
 * assert.ok(buildCommand("t.c", "t", true).includes("-O2"));
 * ```
 */
export function buildCommand(source: string, output: string, native = false): string[] {
  if (source.endsWith(".wat")) return ["wat2wasm", source, "-o", output];
  if (native) return ["clang", "-O2", "-o", output, source];
  return [
    "clang",
    "--target=wasm32-wasi",
    `--sysroot=${WASI_SYSROOT}`,
    "-O2",
    "-s",
    "-o",
    output,
    source,
  ];
}

async function _run(argv: string[]): Promise<void> {
  const [cmd, ...args] = argv;
  const { code, stderr } = await new Deno.Command(cmd!, {
    args,
    stdout: "inherit",
    stderr: "piped",
  })
    .output();
  if (code !== 0) {
    throw new Error(
      `Cannot build: '${argv.join(" ")}' exited with ${code}\n` +
        new TextDecoder().decode(stderr),
    );
  }
}

async function _same(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Build everything; `--native` adds native binaries, `--check` compares with committed files.
 *
 * @returns The process exit code.
 */
async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { native: { type: "boolean" }, check: { type: "boolean" } },
  });
  await Deno.mkdir("examples/build/check", { recursive: true });
  let differ = 0;
  for (const t of TARGETS) {
    const output = values.check
      ? `examples/build/check/${t.output.replaceAll("/", "_")}`
      : t.output;
    await _run(buildCommand(t.source, output));
    if (values.check) {
      const same = await _same(output, t.output);
      if (!same) differ++;
      console.log(`${same ? "same" : "DIFFERS"} ${t.output}`);
    } else {
      console.log(`built ${t.output}`);
    }
    if (values.native && t.native) {
      await _run(buildCommand(t.source, t.native, true));
      console.log(`built ${t.native}`);
    }
  }
  if (differ > 0) {
    console.error(`Cannot confirm the committed WASM: ${differ} file(s) differ from a rebuild`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exitCode = await main(Deno.args);
  } catch (error) {
    console.error(errorMessage(error));
    Deno.exitCode = 1;
  }
}
