/**
 * Private helpers of the network simulator: run `ip`, `nft`, `tc` and friends and fail with one
 * clear line when they fail.
 *
 * @module
 */

/** What a finished command gave. */
export interface _Ran {
  /** Exit code. */
  code: number;
  /** Standard output as text. */
  out: string;
  /** Standard error as text. */
  err: string;
}

/**
 * Run `command` with `args`, feeding `stdin`, and return its exit code and output.
 *
 * @example
 * ```ts
 * import { _run } from "./_exec.ts";
 * import assert from "node:assert/strict";
 *
 * const { code, out } = await _run("echo", ["hi"]);
 * assert.equal(code, 0);
 * assert.equal(out, "hi\n");
 * ```
 */
export async function _run(
  command: string,
  args: string[],
  options: { stdin?: string; signal?: AbortSignal } = {},
): Promise<_Ran> {
  const { stdin, signal } = options;
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(signal ? { signal } : {}),
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(stdin));
    } finally {
      await writer.close().catch(() => {});
    }
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/**
 * Run `command` with `args` and throw `Cannot <what>: <its stderr>` unless it exits 0.
 *
 * @example
 * ```ts
 * import { _must } from "./_exec.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await _must("say hi", "echo", ["hi"]), "hi\n");
 * await assert.rejects(_must("fail", "false", []), /^Error: Cannot fail: exit code 1$/);
 * ```
 */
export async function _must(
  what: string,
  command: string,
  args: string[],
  options: { stdin?: string; signal?: AbortSignal } = {},
): Promise<string> {
  const { code, out, err } = await _run(command, args, options);
  if (code !== 0) {
    const why = err.trim().split("\n").filter((l) => l !== "").slice(-2).join("; ");
    throw new Error(`Cannot ${what}: ${why === "" ? `exit code ${code}` : why}`);
  }
  return out;
}
