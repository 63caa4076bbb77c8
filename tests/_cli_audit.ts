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

/** Run a script as its own process with these flags (plus `--no-prompt`). */
export const spawn = runScript;
