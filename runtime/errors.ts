/**
 * Errors that callers of Phase are expected to catch. Caller mistakes use the built-in
 * `TypeError`, `RangeError` and `SyntaxError` instead.
 *
 * @module
 */

/**
 * A signature did not verify, or was made by a key that is not trusted.
 *
 * @example
 * ```ts
 * import { SignatureError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SignatureError("Cannot verify receipt: bad signature").name, "SignatureError");
 * ```
 */
export class SignatureError extends Error {
  /** Make the error; `options.cause` carries the underlying error, if any. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SignatureError";
  }
}

/**
 * Bytes did not hash to what a signed document says they should.
 *
 * @example
 * ```ts
 * import { DigestMismatchError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new DigestMismatchError("kernel", "sha256:aa", "sha256:bb");
 * assert.equal(err.message, "Cannot accept 'kernel': sha256 mismatch: expected sha256:aa, got sha256:bb");
 * ```
 */
export class DigestMismatchError extends Error {
  /** What was checked, e.g. an artifact name or `module`. */
  readonly subject: string;
  /** The hash the signed document names. */
  readonly expected: string;
  /** The hash of the bytes at hand. */
  readonly actual: string;
  /** Make the error for `subject`, which should hash to `expected` but hashes to `actual`. */
  constructor(subject: string, expected: string, actual: string, options?: ErrorOptions) {
    super(
      `Cannot accept '${subject}': sha256 mismatch: expected ${expected}, got ${actual}`,
      options,
    );
    this.name = "DigestMismatchError";
    this.subject = subject;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A WebAssembly module uses a feature, import or declaration that jobs may not use (see
 * `checkModule`); a job with such a module ends as `invalid_module`.
 *
 * @example
 * ```ts
 * import { UnsupportedModuleError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new UnsupportedModuleError("Cannot run module: it uses GC types", "GC types");
 * assert.equal(err.name, "UnsupportedModuleError");
 * assert.equal(err.feature, "GC types");
 * ```
 */
export class UnsupportedModuleError extends Error {
  /** What was refused, e.g. `GC types (type form 0x5f)` or `import`. */
  readonly feature: string;
  /** Make the error; `feature` names what was refused. */
  constructor(message: string, feature: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnsupportedModuleError";
    this.feature = feature;
  }
}
