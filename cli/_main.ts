/**
 * What every subcommand shares: its option spec (from which the usage text is generated), one
 * flag parser, `--help`/`-h`, one error style and one signature,
 * `main(args, { signal, stdout, stderr })`.
 *
 * Error lines, the same for every subcommand, `<sub>` being the spec's whole name (`fetch`,
 * `verify receipt`):
 * - a usage error is `<sub>: <message> (see <sub> --help)` and exits 2;
 * - a runtime failure is exactly one line `<sub>: error: <message>` and exits 1 (or the code
 *   the subcommand gives).
 *
 * The one other line on stderr with the subcommand's name is a verdict, not an error of the
 * tool: `verify receipt: FAILED: <why>` says that a check ran and the receipt did not pass it.
 *
 * @module
 */
import { errorLine } from "../util/error_message.ts";
import { type FlagSpec, type FlagValue, type FlagValues, parseFlags } from "./_flags.ts";

export type { FlagSpec, FlagValue, FlagValues };

/** Where a subcommand writes: `Deno.stdout`, `Deno.stderr`, or anything with `writeSync`. */
export interface CliWriter {
  /** Write some of `bytes`; returns how many were written. */
  writeSync(bytes: Uint8Array): number;
}

/** The second argument of every subcommand's `main`. */
export interface CliContext {
  /** Stops a long-running subcommand like SIGINT/SIGTERM does. @default {undefined} */
  signal?: AbortSignal | undefined;
  /** Where output goes. @default {Deno.stdout} */
  stdout?: CliWriter | undefined;
  /** Where logs and errors go. @default {Deno.stderr} */
  stderr?: CliWriter | undefined;
}

/** A subcommand: its name, positional arguments, description and options. */
export interface CommandSpec<T extends Record<string, FlagSpec> = Record<string, FlagSpec>> {
  /** The name in the usage line and error lines (`fetch`, `verify receipt`). */
  name: string;
  /** The positional part of the usage line (`<module.wasm>`); none: positionals are refused. */
  args?: string;
  /** The text after the usage line: what it does, exit codes. */
  about: string;
  /** The options; `--help`/`-h` is added. */
  options: T;
}

/** Thrown by a subcommand for bad arguments: printed as a usage error, exit code 2. */
export class UsageError extends Error {
  /** `"UsageError"`. */
  override name = "UsageError";
}

const HELP = { type: "boolean", short: "h", description: "show this help" } as const;

/**
 * A subcommand's output and error lines (see the module doc for their form).
 *
 * @example
 * ```ts
 * import { CommandIo } from "./_main.ts";
 * import assert from "node:assert/strict";
 *
 * const chunks: string[] = [];
 * const sink = { writeSync: (b: Uint8Array) => (chunks.push(new TextDecoder().decode(b)), b.length) };
 * const io = new CommandIo({ name: "demo", about: "", options: {} }, { stderr: sink });
 * assert.equal(io.usage("Cannot use --x 'y': expected z"), 2);
 * assert.equal(io.fail("Cannot read 'f': no such file"), 1);
 * assert.deepEqual(chunks, [
 *   "demo: Cannot use --x 'y': expected z (see demo --help)\n",
 *   "demo: error: Cannot read 'f': no such file\n",
 * ]);
 * ```
 */
export class CommandIo {
  /** The `signal` of the context. */
  readonly signal: AbortSignal | undefined;
  /** The subcommand's name, which begins its error lines (`fetch`, `verify receipt`). */
  readonly name: string;
  #stdout: CliWriter | undefined;
  #stderr: CliWriter | undefined;
  #encoder = new TextEncoder();

  /** Output and error lines of `spec`, written where `context` says. */
  constructor(spec: CommandSpec<Record<string, FlagSpec>>, context: CliContext = {}) {
    this.signal = context.signal;
    this.name = spec.name;
    this.#stdout = context.stdout;
    this.#stderr = context.stderr;
  }

  /** Write bytes to stdout. */
  write(bytes: Uint8Array): void {
    _writeAll(this.#stdout ?? Deno.stdout, bytes);
  }

  /** Write bytes to stderr. */
  writeError(bytes: Uint8Array): void {
    _writeAll(this.#stderr ?? Deno.stderr, bytes);
  }

  /** Write one line to stdout. */
  print(line: string): void {
    this.write(this.#encoder.encode(line + "\n"));
  }

  /** Write one line to stderr. */
  log(line: string): void {
    this.writeError(this.#encoder.encode(line + "\n"));
  }

  /** Print a usage error, `<sub>: <message> (see <sub> --help)`; returns exit code 2. */
  usage(message: string): number {
    this.log(`${this.name}: ${message} (see ${this.name} --help)`);
    return 2;
  }

  /** Print a runtime failure, `<sub>: error: <message>`; returns `code`. */
  fail(message: string, code = 1): number {
    this.log(`${this.name}: error: ${message}`);
    return code;
  }
}

/**
 * Run a subcommand: parse `args` against `spec` (a parser error is a usage error), answer
 * `--help` with the generated usage, then call `body`. A {@linkcode UsageError} from `body`
 * exits 2, any other error 1, each as one line.
 *
 * @example
 * ```ts
 * import { runCommand } from "./_main.ts";
 * import assert from "node:assert/strict";
 *
 * const spec = {
 *   name: "greet",
 *   args: "<name>",
 *   about: "Greets.",
 *   options: { loud: { type: "boolean", description: "shout" } },
 * } as const;
 * const out: string[] = [];
 * const stdout = { writeSync: (b: Uint8Array) => (out.push(new TextDecoder().decode(b)), b.length) };
 * const code = await runCommand(spec, ["ann", "--loud"], { stdout }, (values, positionals, io) => {
 *   io.print(values.loud ? `HELLO ${positionals[0]!.toUpperCase()}` : `hello ${positionals[0]}`);
 *   return 0;
 * });
 * assert.equal(code, 0);
 * assert.deepEqual(out, ["HELLO ANN\n"]);
 * ```
 */
export async function runCommand<const T extends Record<string, FlagSpec>>(
  spec: CommandSpec<T>,
  args: readonly string[],
  context: CliContext,
  body: (
    values: FlagValues<T>,
    positionals: string[],
    io: CommandIo,
  ) => number | Promise<number>,
): Promise<number> {
  const io = new CommandIo(spec, context);
  let parsed;
  try {
    parsed = parseFlags(args, { ...spec.options, help: HELP });
    if (spec.args === undefined && parsed.positionals.length > 0) {
      throw new SyntaxError(`Unexpected argument '${parsed.positionals[0]}'`);
    }
  } catch (error) {
    return io.usage(errorLine(error));
  }
  if (parsed.values.help) {
    io.print(usageText(spec));
    return 0;
  }
  try {
    return await body(parsed.values as FlagValues<T>, parsed.positionals, io);
  } catch (error) {
    if (error instanceof UsageError) return io.usage(error.message);
    return io.fail(errorLine(error));
  }
}

/**
 * The usage text of a subcommand, generated from its spec: the usage line (wrapped at 100
 * columns), the description, then one line per option with its default.
 *
 * @example
 * ```ts
 * import { usageText } from "./_main.ts";
 * import assert from "node:assert/strict";
 *
 * const text = usageText({
 *   name: "demo",
 *   args: "<file>",
 *   about: "Does a demo.",
 *   options: {
 *     tag: { type: "string", multiple: true, value: "T", description: "a tag" },
 *     verbose: { type: "boolean", short: "v", description: "say more" },
 *   },
 * });
 * assert.equal(text.split("\n")[0], "Usage: demo <file> [--tag T]... [-v|--verbose] [-h|--help]");
 * assert.match(text, /^ {2}-v, --verbose {2}say more$/m);
 * ```
 */
export function usageText(spec: CommandSpec<Record<string, FlagSpec>>): string {
  const options = Object.entries({ ...spec.options, help: HELP } as Record<string, FlagSpec>);
  const head = `Usage: ${spec.name}`;
  const tokens = [
    ...(spec.args === undefined ? [] : [spec.args]),
    ...options.map(([name, s]) => {
      const flag = `${s.short ? `-${s.short}|` : ""}--${name}${_value(s)}`;
      return `${s.required ? flag : `[${flag}]`}${s.multiple ? "..." : ""}`;
    }),
  ];
  const lines = [head];
  for (const token of tokens) {
    const last = lines.length - 1;
    if (lines[last]!.length + 1 + token.length > 100 && lines[last]!.trim() !== "") {
      lines.push(" ".repeat(head.length));
    }
    lines[lines.length - 1] += ` ${token}`;
  }
  const rows = options.map(([name, s]) => [
    `${s.short ? `-${s.short}, ` : ""}--${name}${_value(s)}`,
    `${s.description ?? ""}${s.default ? ` (default: ${s.default})` : ""}`,
  ]);
  const width = Math.max(...rows.map(([flag]) => flag!.length));
  return [
    ...lines,
    "",
    spec.about,
    "",
    "Options:",
    ...rows.map(([flag, text]) => `  ${flag!.padEnd(width)}  ${text}`.trimEnd()),
  ].join("\n");
}

function _value(spec: FlagSpec): string {
  return spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : "";
}

function _writeAll(writer: CliWriter, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length;) at += writer.writeSync(bytes.subarray(at));
}
