/**
 * Parsers for the units the CLI accepts: durations (`30s`) and sizes (`256MiB`).
 *
 * @module
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
};

/**
 * Parse a duration such as `30s`, `500ms`, `2m`, `1h` or `1.5s` into whole milliseconds.
 * A bare number means seconds.
 *
 * @throws {SyntaxError} If the text is not a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./_units.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseDuration("1.5s"), 1500);
 * assert.equal(parseDuration("250ms"), 250);
 * assert.equal(parseDuration("10"), 10000);
 * ```
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) {
    throw new SyntaxError(`Cannot parse duration '${text}': use e.g. 500ms, 30s, 2m or 1h`);
  }
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? "s"]!);
}

/**
 * Parse a size such as `256MiB`, `16M`, `512KiB`, `1GB` or `4096` into bytes. `K`, `M`, `G`
 * and `KiB`, `MiB`, `GiB` are binary; `kB`, `MB`, `GB` are decimal. Case does not matter.
 *
 * @throws {SyntaxError} If the text is not a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "./_units.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseSize("256MiB"), 268435456);
 * assert.equal(parseSize("1MB"), 1000000);
 * assert.equal(parseSize("4096"), 4096);
 * ```
 */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new SyntaxError(`Cannot parse size '${text}': use e.g. 4096, 512KiB, 256MiB or 1GiB`);
  }
  return Math.floor(Number(match[1]) * unit);
}

/**
 * Format a byte count for people: `512 B`, `1.5 KiB`, `35.5 MiB`, `2.0 GiB`.
 *
 * @example
 * ```ts
 * import { formatSize } from "./_units.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSize(512), "512 B");
 * assert.equal(formatSize(37224448), "35.5 MiB");
 * ```
 */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
