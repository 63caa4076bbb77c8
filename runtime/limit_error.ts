/**
 * The one shape of the runtime's cap errors: the message says what went over which cap, `kind`
 * names the cap for code.
 *
 * @module
 */

/**
 * A cap was exceeded; `kind` says which. Each cap error extends it with its own `name` and its
 * own kinds, so callers catch the subclass they expect (`instanceof`) and read `kind`.
 *
 * @example
 * ```ts
 * import { LimitError } from "./limit_error.ts";
 * import assert from "node:assert/strict";
 *
 * class DiskLimitError extends LimitError<"bytes"> {
 *   override name = "DiskLimitError";
 * }
 * const error = new DiskLimitError("bytes", "Cannot write 'f': it would pass the 10 byte cap");
 * assert.ok(error instanceof DiskLimitError && error instanceof LimitError);
 * assert.equal(error.name, "DiskLimitError");
 * assert.equal(error.kind, "bytes");
 * ```
 */
export class LimitError<K extends string> extends Error {
  /** Which cap was exceeded. */
  readonly kind: K;
  /** Make the error. */
  constructor(kind: K, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LimitError";
    this.kind = kind;
  }
}
