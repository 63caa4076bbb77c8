/**
 * Test helpers: the exact `deno` flags of a deno.json task, and running a CLI entrypoint with
 * them as its own process.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

/**
 * The `--allow-*` and other flags a deno.json task passes to `deno run`, in order, and the
 * entrypoint it runs.
 *
 * @example
 * ```ts
 * import { taskCommand } from "./_task.ts";
 * import assert from "node:assert/strict";
 *
 * const { script } = await taskCommand("run");
 * assert.equal(script, "cli/run.ts");
 * ```
 */
export async function taskCommand(task: string): Promise<{ flags: string[]; script: string }> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const command: string | undefined = config.tasks?.[task];
  if (!command) throw new TypeError(`Cannot find task '${task}' in deno.json`);
  const words = command.split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new TypeError(`Cannot use task '${task}': not a 'deno run' command: ${command}`);
  }
  const index = words.findIndex((w) => w.endsWith(".ts"));
  return { flags: words.slice(2, index), script: words[index]! };
}

/**
 * The `deno` arguments that run a deno.json task's entrypoint with exactly the task's flags
 * (plus `--no-prompt`), then `args`.
 *
 * @example
 * ```ts
 * import { taskArgs } from "./_task.ts";
 * import assert from "node:assert/strict";
 *
 * const args = await taskArgs("verify", ["--help"]);
 * assert.deepEqual(args.slice(0, 3), ["run", "--no-prompt", "--allow-read"]);
 * assert.ok(args.at(-2)!.endsWith("/cli/verify.ts"));
 * ```
 */
export async function taskArgs(task: string, args: string[]): Promise<string[]> {
  const { flags, script } = await taskCommand(task);
  return _scriptArgs(flags, script, args);
}

function _scriptArgs(flags: string[], script: string, args: string[]): string[] {
  return ["run", "--no-prompt", ...flags, new URL(script, ROOT).pathname, ...args];
}

/** What a finished process gave. */
export interface Finished {
  /** Exit code. */
  code: number;
  /** Standard output as bytes. */
  stdout: Uint8Array;
  /** Standard output as text. */
  out: string;
  /** Standard error as text. */
  err: string;
}

/**
 * Run a deno.json task's entrypoint as its own process with exactly the task's flags (plus
 * `--no-prompt`), feeding `stdin` and returning its output.
 *
 * @example
 * ```ts
 * import { runTask } from "./_task.ts";
 * import assert from "node:assert/strict";
 *
 * const { code, err } = await runTask("run", ["--help"]);
 * assert.equal(code, 0);
 * assert.equal(err, "");
 * ```
 */
export async function runTask(
  task: string,
  args: string[],
  options: { stdin?: Uint8Array | string; env?: Record<string, string>; cwd?: string } = {},
): Promise<Finished> {
  const { flags, script } = await taskCommand(task);
  return await runScript(flags, script, args, options);
}

/**
 * Run a project script as its own process with these flags (plus `--no-prompt`), optionally
 * feeding `stdin`; resolves with its exit code and output.
 *
 * @example
 * ```ts ignore
 * import { runScript } from "./_task.ts";
 *
 * const res = await runScript(["--allow-read"], "cli/verify.ts", ["--help"]);
 * ```
 */
export async function runScript(
  flags: string[],
  script: string,
  args: string[],
  options: { stdin?: Uint8Array | string; env?: Record<string, string>; cwd?: string } = {},
): Promise<Finished> {
  const { stdin, env = {}, cwd = new URL(".", ROOT).pathname } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: _scriptArgs(flags, script, args),
    cwd,
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/**
 * `verify receipt RECEIPT --key KEY` with the `verify` task's exact flags, then `args`.
 *
 * @example
 * ```ts
 * import { runVerifyReceipt } from "./_task.ts";
 * import assert from "node:assert/strict";
 *
 * const { code, err } = await runVerifyReceipt("/nonexistent/receipt.json", "00".repeat(32));
 * assert.equal(code, 2, err);
 * ```
 */
export async function runVerifyReceipt(
  receipt: string,
  key: string,
  args: string[] = [],
): Promise<Finished> {
  return await runTask("verify", ["receipt", receipt, "--key", key, ...args]);
}
