/**
 * Test helper: talk to a spawned child process over its pipes.
 *
 * @module
 */

/**
 * Write `value` as JSON to a child's piped stdin, close it, and wait for its exit code, stdout
 * and stderr (both piped) as text.
 *
 * @example
 * ```ts
 * import { sendJson } from "./_child_io.ts";
 * import assert from "node:assert/strict";
 *
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", "console.log(JSON.parse(await new Response(Deno.stdin.readable).text()).n + 1)"],
 *   stdin: "piped",
 *   stdout: "piped",
 *   stderr: "piped",
 * }).spawn();
 * const { code, out } = await sendJson(child, { n: 41 });
 * assert.equal(code, 0);
 * assert.equal(out, "42\n");
 * ```
 */
export async function sendJson(
  child: Deno.ChildProcess,
  value: unknown,
): Promise<{ code: number; out: string; err: string }> {
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(value)));
  await writer.close();
  const [out, err, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  return { code: status.code, out, err };
}
