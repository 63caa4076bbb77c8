/**
 * One short, lower-case reason for a failed file operation, for one-line errors:
 * `Cannot read module 'x.wasm': no such file`.
 *
 * @module
 */
import { errorMessage } from "./error_message.ts";

/**
 * Why a file operation failed, in a few words: `no such file`, `is a directory`, `permission
 * denied`, a Deno permission hint (`run with --allow-read`), or the first line of any other
 * error's message without its `(os error N)` noise.
 *
 * @example
 * ```ts
 * import { fsErrorReason } from "./fs_error.ts";
 * import assert from "node:assert/strict";
 *
 * const error = await Deno.readFile("/no/such/file").catch((e) => e);
 * assert.equal(fsErrorReason(error), "no such file");
 * ```
 */
export function fsErrorReason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Deno.errors.NotADirectory) return "not a directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.AlreadyExists) return "already exists";
  const message = errorMessage(error).split("\n")[0]!;
  if (error instanceof Deno.errors.NotCapable) {
    // `Requires read access to "/x", run again with the --allow-read flag`
    const flag = /--allow-[a-z]+/.exec(message)?.[0];
    return flag ? `not allowed: run with ${flag}` : message;
  }
  return message.replace(/ \(os error \d+\)(: .*)?$/, "").replace(/^./, (c) => c.toLowerCase());
}

/**
 * A one-line description of any error: for a Deno file-system error, `Cannot <op> '<path>':
 * <reason>` (the operation and path Deno names, the reason of {@linkcode fsErrorReason});
 * otherwise the first line of its message.
 *
 * @example
 * ```ts
 * import { describeError } from "./fs_error.ts";
 * import assert from "node:assert/strict";
 *
 * const error = await Deno.mkdir("/no/such/dir/x").catch((e) => e);
 * assert.equal(describeError(error), "Cannot mkdir '/no/such/dir/x': no such file");
 * assert.equal(describeError(new TypeError("Cannot use x\nmore")), "Cannot use x");
 * ```
 */
export function describeError(error: unknown): string {
  const message = errorMessage(error).split("\n")[0]!;
  const fs = /\(os error \d+\): (\w+) '([^']*)'/.exec(message);
  if (fs) return `Cannot ${fs[1]} '${fs[2]}': ${fsErrorReason(error)}`;
  return message;
}

/**
 * Read a whole file as bytes; a failure becomes one line naming what the file is for, the path
 * and the {@linkcode fsErrorReason}: `Cannot read module 'x.wasm': no such file` (the original
 * error as its `cause`).
 *
 * @example
 * ```ts
 * import { readFileNamed } from "./fs_error.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(
 *   readFileNamed("/no/such/file", "module"),
 *   { message: "Cannot read module '/no/such/file': no such file" },
 * );
 * ```
 */
export async function readFileNamed(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw new Error(`Cannot read ${what} '${path}': ${fsErrorReason(error)}`, { cause: error });
  }
}
