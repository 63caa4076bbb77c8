/**
 * The command-line flag parser of every subcommand. It is ours rather than `node:util`'s
 * `parseArgs` because `run` sits on the hot start path, where loading `node:util` costs ~12 ms
 * of Node-compat start-up per process (measured; see BENCHMARKS.md), and one parser means one
 * set of messages. The spec also carries what the generated usage text shows.
 *
 * @module
 */

/** How one flag is read, and how the usage text shows it. */
export interface FlagSpec {
  /** `boolean` flags take no value; `string` flags take the next argument or `=value`. */
  readonly type: "boolean" | "string";
  /** A string flag that may repeat, collected in order. */
  readonly multiple?: boolean;
  /** One-letter alias (`-h`). */
  readonly short?: string;
  /** The value of a string flag that is not given. */
  readonly default?: string;
  /** The placeholder of the value in the usage text. @default {"VALUE"} */
  readonly value?: string;
  /** One line for the usage text. */
  readonly description?: string;
  /** Shown without brackets in the usage line (the command checks it). */
  readonly required?: boolean;
}

/** The values {@linkcode parseFlags} gives for one spec. */
export type FlagValue<S extends FlagSpec> = S["type"] extends "boolean" ? boolean
  : S["multiple"] extends true ? string[]
  : S["default"] extends string ? string
  : string | undefined;

/** The values {@linkcode parseFlags} gives for a set of specs. */
export type FlagValues<T extends Record<string, FlagSpec>> = {
  -readonly [K in keyof T]: FlagValue<T[K]>;
};

/** What {@linkcode parseFlags} gives back. */
export interface ParsedFlags<T extends Record<string, FlagSpec>> {
  /** Flag values by name: booleans `false` and lists `[]` when absent, else the default. */
  values: FlagValues<T>;
  /** Arguments that are not flags, in order (everything after `--` included). */
  positionals: string[];
}

/**
 * Parse `argv` against flag specs. `--name value`, `--name=value`, `-x`, `--` ends flags; a
 * lone `-` is a positional.
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
 *   timeout: { type: "string", default: "30s" },
 * });
 * assert.deepEqual(values, { arg: ["a", "b"], json: true, timeout: "30s" });
 * assert.deepEqual(positionals, ["job.wasm"]);
 * ```
 */
export function parseFlags<const T extends Record<string, FlagSpec>>(
  argv: readonly string[],
  specs: T,
): ParsedFlags<T> {
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, spec] of Object.entries(specs)) {
    values[name] = spec.type === "boolean" ? false : spec.multiple ? [] : spec.default;
  }
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
    if (spec.multiple) (values[name] as string[]).push(value);
    else values[name] = value;
  }
  return { values: values as FlagValues<T>, positionals };
}
