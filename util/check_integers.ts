/**
 * Up-front validation of whole-number options.
 *
 * @module
 */

/**
 * Check that every value is a safe integer of at least `min` (1 by default), naming the first
 * that is not: `Cannot use maxAttempts 0: expected a positive integer`.
 *
 * @throws {RangeError} If a value is not a safe integer or is below `min`.
 *
 * @example
 * ```ts
 * import { checkIntegers } from "./check_integers.ts";
 * import assert from "node:assert/strict";
 *
 * checkIntegers({ retries: 3, slots: 1 });
 * assert.throws(() => checkIntegers({ slots: 0 }), {
 *   message: "Cannot use slots 0: expected a positive integer",
 * });
 * assert.throws(() => checkIntegers({ queue: -1 }, { min: 0 }), {
 *   message: "Cannot use queue -1: expected an integer >= 0",
 * });
 * ```
 */
export function checkIntegers(
  values: Record<string, number>,
  options: { min?: 0 | 1 } = {},
): void {
  const { min = 1 } = options;
  for (const [name, value] of Object.entries(values)) {
    if (!Number.isSafeInteger(value) || value < min) {
      const expected = min === 1 ? "a positive integer" : `an integer >= ${min}`;
      throw new RangeError(`Cannot use ${name} ${value}: expected ${expected}`);
    }
  }
}
