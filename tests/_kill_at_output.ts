/**
 * Test helper: kill a process the moment it has printed what a crash test waits for.
 *
 * @module
 */
import { readTextUntil } from "../util/read_text_until.ts";

/**
 * Run `deno <args>` (stdin closed, stderr inherited), read its stdout until `found` holds for
 * the text so far, then kill it with SIGKILL and wait for it to end. Returns the text read
 * (check it: the process may have exited before printing it).
 *
 * @example
 * ```ts
 * import { killAtOutput } from "./_kill_at_output.ts";
 * import assert from "node:assert/strict";
 *
 * const text = await killAtOutput(
 *   ["eval", "console.log('ready'); await new Promise(() => setInterval(() => {}, 1000));"],
 *   (t) => t.includes("\n"),
 * );
 * assert.equal(text, "ready\n");
 * ```
 */
export async function killAtOutput(
  args: string[],
  found: (text: string) => boolean,
): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    return await readTextUntil(reader, found);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* it exited already */ }
    await child.status;
    await reader.cancel();
  }
}
