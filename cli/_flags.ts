/**
 * A small command-line flag parser for the entrypoints on the hot start path (`run`), where
 * `node:util`'s `parseArgs` would cost ~12 ms of Node-compat start-up per process (measured;
 * see BENCHMARKS.md). Same shape of result as `parseArgs` for the subset we use.
 *
 * @module
 */

/** How one flag is read. */
export interface FlagSpec {
  /** `boolean` flags take no value; `string` flags take the next argument or `=value`. */
  type: "boolean" | "string";
  /** A string flag that may repeat, collected in order. */
  multiple?: boolean;
  /** One-letter alias (`-h`). */
  short?: string;
}

/** What {@linkcode parseFlags} gives back. */
export interface ParsedFlags {
  /** Flag values by name: `true` for booleans, the string or the list of strings. */
  values: Record<string, string | boolean | string[] | undefined>;
  /** Arguments that are not flags, in order (everything after `--` included). */
  positionals: string[];
}

/**
 * Parse `argv` against flag specs. `--name value`, `--name=value`, `-x`, `--` ends flags.
 *
 * @throws {SyntaxError} For an unknown flag, a missing value, or a value given to a boolean.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./_flags.ts";
 * import assert from "node:assert/strict";
 *
 * const { values, positionals } = parseFlags(["job.wasm", "--arg", "a", "--arg=b", "--json"], {
 *   arg: { type: "string", multiple: true },
 *   json: { type: "boolean" },
 * });
 * assert.deepEqual(values, { arg: ["a", "b"], json: true });
 * assert.deepEqual(positionals, ["job.wasm"]);
 * ```
 */
export function parseFlags(argv: string[], specs: Record<string, FlagSpec>): ParsedFlags {
  const values: ParsedFlags["values"] = {};
  const positionals: string[] = [];
  const shorts = new Map(
    Object.entries(specs).filter(([, s]) => s.short).map(([name, s]) => [s.short!, name]),
  );
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const long = arg.startsWith("--");
    const raw = long ? arg.slice(2, eq === -1 ? undefined : eq) : shorts.get(arg.slice(1));
    const name = raw ?? arg;
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec || (!long && eq !== -1)) throw new SyntaxError(`Unknown option '${arg}'`);
    if (spec.type === "boolean") {
      if (eq !== -1) throw new SyntaxError(`Option '--${name}' does not take a value`);
      values[name] = true;
      continue;
    }
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i]!;
    else throw new SyntaxError(`Option '--${name} <value>' needs a value`);
    if (spec.multiple) ((values[name] ??= []) as string[]).push(value);
    else values[name] = value;
  }
  return { values, positionals };
}
