/**
 * The text of anything thrown, for logs and one-line errors.
 *
 * @module
 */

/**
 * The message of an error (or of anything with a string `message`), else the value as a string.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./error_message.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errorMessage(new RangeError("Cannot use x: too big")), "Cannot use x: too big");
 * assert.equal(errorMessage("plain"), "plain");
 * assert.equal(errorMessage(undefined), "undefined");
 * ```
 */
export function errorMessage(error: unknown): string {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === "string" ? message : String(error);
}

/**
 * The first line of {@linkcode errorMessage} that is not blank, trimmed: what a CLI prints on
 * its one error line (`failed` for an error without a message).
 *
 * @example
 * ```ts
 * import { errorLine } from "./error_message.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errorLine(new Error("\nCannot open 'x': no such file\n  at y")), "Cannot open 'x': no such file");
 * assert.equal(errorLine(new Error("")), "failed");
 * ```
 */
export function errorLine(error: unknown): string {
  return errorMessage(error).split("\n").map((line) => line.trim()).find((line) => line !== "") ??
    "failed";
}
