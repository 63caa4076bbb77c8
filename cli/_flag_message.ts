/**
 * The one-line text of a flag error, shared by the subcommands that parse with `parseArgs`.
 *
 * @module
 */
import { errorLine } from "../util/error_message.ts";

/**
 * The first line of a flag error without `node:util`'s advice on positionals; a `parseArgs`
 * error (code `ERR_PARSE_ARGS_*`) also points at `<command> --help`.
 *
 * @example
 * ```ts
 * import { flagMessage } from "./_flag_message.ts";
 * import { parseArgs } from "node:util";
 * import assert from "node:assert/strict";
 *
 * let error: unknown;
 * try {
 *   parseArgs({ args: ["--nope"], options: {}, strict: true });
 * } catch (e) {
 *   error = e;
 * }
 * assert.match(flagMessage(error, "serve"), /^Unknown option '--nope' \(see serve --help\)$/);
 * assert.equal(flagMessage(new TypeError("Cannot use --port 'x'"), "serve"), "Cannot use --port 'x'");
 * ```
 */
export function flagMessage(error: unknown, command: string): string {
  const text = errorLine(error)
    .replace(/\. To specify a positional argument.*$/, "")
    .replace(/\. This command does not take positional arguments$/, "");
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")
    ? `${text} (see ${command} --help)`
    : text;
}
