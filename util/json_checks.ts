/**
 * The one validation layer for JSON that comes from outside: peers' messages (offers, job
 * requests and answers, node info) and the local API's request bodies. Each check returns the
 * value typed, or throws a `TypeError` whose message starts with the caller's prefix, so every
 * parser reports a bad field the same way: `Cannot accept job message: job_id is malformed`.
 *
 * Size caps stay with the callers: a message is capped before it is parsed at all.
 *
 * @module
 */

/** Checks of JSON values; see {@linkcode jsonChecks}. */
export interface JsonChecks {
  /** A plain object (not null, not an array). */
  object(value: unknown, what: string): Record<string, unknown>;
  /** A safe integer from 0 to `max` (default: any non-negative). */
  count(value: unknown, what: string, max?: number): number;
  /** A safe integer from 1 up (a positive count, such as a limit). */
  positive(value: unknown, what: string): number;
  /** A string matching `pattern`. */
  match(value: unknown, pattern: RegExp, what: string): string;
  /** A string of at most `maxLength` characters. */
  string(value: unknown, what: string, maxLength: number): string;
  /** A list of at most `max` strings. */
  strings(value: unknown, what: string, max: number): string[];
  /** An object of at most `max` entries, each a name without `=` mapped to a string. */
  env(value: unknown, what: string, max: number): Record<string, string>;
  /** A boolean. */
  boolean(value: unknown, what: string): boolean;
  /** Throw the prefix's `TypeError` with `text` after it. */
  fail(text: string): never;
}

/**
 * Make the checks for one kind of message; every error reads `<prefix>: <field> <why>`.
 *
 * @example
 * ```ts
 * import { jsonChecks } from "./json_checks.ts";
 * import assert from "node:assert/strict";
 *
 * const check = jsonChecks("Cannot accept job message");
 * const obj = check.object(JSON.parse('{"n":3,"id":"ab"}'), "message");
 * assert.equal(check.count(obj.n, "n", 10), 3);
 * assert.equal(check.match(obj.id, /^[a-f]+$/, "id"), "ab");
 * assert.throws(() => check.count(obj.n, "n", 2), {
 *   name: "TypeError",
 *   message: "Cannot accept job message: n must be an integer from 0 to 2",
 * });
 * ```
 */
export function jsonChecks(prefix: string): JsonChecks {
  const fail = (text: string): never => {
    throw new TypeError(`${prefix}: ${text}`);
  };
  const object = (value: unknown, what: string) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(`${what} must be an object`);
    }
    return value as Record<string, unknown>;
  };
  return {
    fail,
    object,
    count(value, what, max) {
      if (
        typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 ||
        (max !== undefined && value > max)
      ) {
        fail(
          max === undefined
            ? `${what} must be a non-negative integer`
            : `${what} must be an integer from 0 to ${max}`,
        );
      }
      return value as number;
    },
    positive(value, what) {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
        fail(`${what} must be a positive integer`);
      }
      return value as number;
    },
    match(value, pattern, what) {
      if (typeof value !== "string" || !pattern.test(value)) fail(`${what} is malformed`);
      return value as string;
    },
    string(value, what, maxLength) {
      if (typeof value !== "string" || value.length > maxLength) {
        fail(`${what} must be a string of at most ${maxLength} characters`);
      }
      return value as string;
    },
    strings(value, what, max) {
      if (
        !Array.isArray(value) || value.length > max || !value.every((a) => typeof a === "string")
      ) {
        fail(`${what} must be a list of at most ${max} strings`);
      }
      return [...value as string[]];
    },
    env(value, what, max) {
      const entries = Object.entries(object(value, what));
      if (
        entries.length > max ||
        !entries.every(([k, v]) => k.length > 0 && !k.includes("=") && typeof v === "string")
      ) {
        fail(`${what} must map at most ${max} names (no '=') to strings`);
      }
      return Object.fromEntries(entries) as Record<string, string>;
    },
    boolean(value, what) {
      if (typeof value !== "boolean") fail(`${what} must be a boolean`);
      return value as boolean;
    },
  };
}
