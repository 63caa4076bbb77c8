/**
 * What the sandbox probes (probe_permissions.ts, probe_confined.ts) share: one attempt at
 * something the sandbox must deny, as a word for the report. A probe imports it statically: the
 * sandbox worker, the permissionless sandbox process and the confinement (which shows the
 * runtime folder read-only) all load a module's static imports.
 *
 * @module
 */

/**
 * Run `fn`; "ALLOWED" when it succeeds (closing what it opened), else the error's name, or with
 * `detail` its name and the first line of its message (an errno says more than its class).
 *
 * @example
 * ```ts
 * import { probeAttempt } from "./probe_attempt.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await probeAttempt(() => 1), "ALLOWED");
 * assert.equal(await probeAttempt(() => JSON.parse("{")), "SyntaxError");
 * assert.match(await probeAttempt(() => JSON.parse("{"), { detail: true }), /^SyntaxError: \S/);
 * ```
 */
export async function probeAttempt(
  fn: () => Promise<unknown> | unknown,
  options: { detail?: boolean } = {},
): Promise<string> {
  try {
    const result = await fn();
    if (result && typeof result === "object" && "close" in result) {
      (result as { close(): void }).close();
    }
    return "ALLOWED";
  } catch (error) {
    if (!(error instanceof Error)) return String(error);
    return options.detail ? `${error.name}: ${error.message}`.split("\n")[0]! : error.name;
  }
}
