/**
 * Table-driven checks that a CLI entrypoint, run as its own process with its deno.json task's
 * exact flags, answers each bad input with its exit code and exactly one line on stderr: no
 * usage dump, no stack trace.
 *
 * @module
 */
import assert from "node:assert/strict";
import { runScript, taskCommand } from "./_task.ts";

/** One bad input and the answer expected. */
export interface AuditCase {
  /** What is wrong, for the step name. */
  name: string;
  /** The arguments (made when the case runs, so they can name files `setup` wrote). */
  args: string[];
  /** The exit code. */
  code: number;
  /** The one line on stderr, without its newline. */
  line: RegExp;
  /** Prepare files before the run. */
  setup?: () => Promise<void>;
  /** Change the task's flags (e.g. narrow a grant, as a launcher may). @default {undefined} */
  flags?: (flags: string[]) => string[];
  /** Standard input. @default {undefined} (none) */
  stdin?: string;
  /** Expected standard output. @default {""} */
  out?: string;
}

/**
 * Run `task`'s entrypoint once per case (with `env` and only the task's flags, or the case's
 * change of them) and assert the exit code, the one stderr line and the output.
 *
 * @example
 * ```ts ignore
 * import { auditCli } from "./_cli_audit.ts";
 *
 * Deno.test("keygen fails cleanly", async (t) => {
 *   await auditCli(t, "keygen", [{ name: "no --out", args: [], code: 2, line: /^keygen: Cannot make keys/ }]);
 * });
 * ```
 */
export async function auditCli(
  t: Deno.TestContext,
  task: string,
  cases: AuditCase[],
  env: Record<string, string> = {},
): Promise<void> {
  const { flags, script } = await taskCommand(task);
  for (const c of cases) {
    await t.step(`${task}: ${c.name} -> exit ${c.code}, one line`, async () => {
      await c.setup?.();
      const res = await spawn([...(c.flags ? c.flags(flags) : flags)], script, c.args, {
        env,
        ...(c.stdin === undefined ? {} : { stdin: c.stdin }),
      });
      assert.equal(res.code, c.code, res.err);
      const lines = res.err.split("\n");
      assert.equal(lines.length, 2, `exactly one line on stderr, got:\n${res.err}`);
      assert.match(lines[0]!, c.line);
      assert.ok(!/^\s+at /m.test(res.err), "no stack trace");
      assert.equal(res.out, c.out ?? "");
    });
  }
}

/**
 * The case every CLI shares: an unknown option `--frobnicate` after `args` exits 2 with one line
 * that names it and points to `--help`.
 *
 * @example
 * ```ts
 * import { unknownOptionCase } from "./_cli_audit.ts";
 * import assert from "node:assert/strict";
 *
 * const c = unknownOptionCase("serve");
 * assert.match("serve: Unknown option '--frobnicate' (see serve --help)", c.line);
 * ```
 */
export function unknownOptionCase(task: string, args: string[] = []): AuditCase {
  return {
    name: "unknown flag",
    args: [...args, "--frobnicate"],
    code: 2,
    line: new RegExp(`^${task}: Unknown option '--frobnicate' \\(see ${task} --help\\)$`),
  };
}

/**
 * The case of a duration flag (the last of `args`) given `soon`: exit 2 with the one line every
 * CLI's duration parser writes, pointing to `--help`.
 *
 * @example
 * ```ts
 * import { badDurationCase } from "./_cli_audit.ts";
 * import assert from "node:assert/strict";
 *
 * const c = badDurationCase("serve", ["--recheck"]);
 * assert.deepEqual(c.args, ["--recheck", "soon"]);
 * assert.match(
 *   "serve: Cannot parse duration 'soon': use e.g. 500ms, 30s, 2m or 1h (see serve --help)",
 *   c.line,
 * );
 * ```
 */
export function badDurationCase(
  task: string,
  args: string[],
  options: { name?: string } = {},
): AuditCase {
  const { name = "bad duration" } = options;
  return {
    name,
    args: [...args, "soon"],
    code: 2,
    line: new RegExp(
      `^${task}: Cannot parse duration 'soon': use e\\.g\\. 500ms, 30s, 2m or 1h ` +
        `\\(see ${task} --help\\)$`,
    ),
  };
}

/**
 * The case of `--state-dir dir` after `args` while another process of `task` (PID `pid`) holds
 * that dir: exit 1 with one line naming the dir and the PID and telling to stop it or give this
 * `what` (node, provider) another `--state-dir`.
 *
 * @example
 * ```ts
 * import { stateDirInUseCase } from "./_cli_audit.ts";
 * import assert from "node:assert/strict";
 *
 * const c = stateDirInUseCase("start", {
 *   what: "node",
 *   args: ["--no-mdns"],
 *   dir: "/tmp/x/busy",
 *   pid: 42,
 * });
 * assert.deepEqual(c.args, ["--no-mdns", "--state-dir", "/tmp/x/busy"]);
 * assert.match(
 *   "start: error: Cannot use state dir '/tmp/x/busy': start is already running there " +
 *     "(PID 42); stop it first or give this node another --state-dir",
 *   c.line,
 * );
 * ```
 */
export function stateDirInUseCase(
  task: string,
  holder: { what: string; args: string[]; dir: string; pid: number },
): AuditCase {
  const { what, args, dir, pid } = holder;
  return {
    name: "state dir in use",
    args: [...args, "--state-dir", dir],
    code: 1,
    line: new RegExp(
      `^${task}: error: Cannot use state dir '${_escape(dir)}': ${task} is already running there ` +
        `\\(PID ${pid}\\); stop it first or give this ${what} another --state-dir$`,
    ),
  };
}

/**
 * Usage errors from a table: each row `[name, args, start]` is a case that exits 2 with one line
 * beginning `<task>: <start>` (taken literally, not as a pattern).
 *
 * @example
 * ```ts
 * import { usageCases } from "./_cli_audit.ts";
 * import assert from "node:assert/strict";
 *
 * const [c] = usageCases("run", [["bad --env", ["--env", "X"], "Cannot parse --env 'X'"]]);
 * assert.equal(c!.code, 2);
 * assert.match("run: Cannot parse --env 'X': use K=V", c!.line);
 * assert.doesNotMatch("run: Cannot parse --env 'Y'", c!.line);
 * ```
 */
export function usageCases(
  task: string,
  rows: readonly (readonly [name: string, args: string[], start: string])[],
): AuditCase[] {
  return rows.map(([name, args, start]) => ({
    name,
    args,
    code: 2,
    line: new RegExp(`^${task}: ${_escape(start)}`),
  }));
}

function _escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Run a script as its own process with these flags (plus `--no-prompt`). */
export const spawn = runScript;
