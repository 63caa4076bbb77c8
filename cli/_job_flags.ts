/**
 * The job flags `run` and `submit` share: what the job gets (input, arguments, environment)
 * and its limits, with their parsers.
 *
 * @module
 */

/** The option specs of the job flags. */
export const JOB_FLAGS = {
  input: { type: "string", value: "FILE|-", description: "the job's stdin" },
  arg: { type: "string", multiple: true, value: "A", description: "an argument of the job" },
  env: { type: "string", multiple: true, value: "K=V", description: "an environment variable" },
  memory: { type: "string", value: "SIZE", description: "memory limit" },
  timeout: { type: "string", value: "DURATION", description: "time limit" },
  "max-output": { type: "string", value: "SIZE", description: "output cap" },
  fuel: { type: "string", value: "N", description: "instruction budget (deterministic stop)" },
} as const;

/**
 * The environment of `--env K=V` flags.
 *
 * @throws {SyntaxError} For a pair without `=` or with an empty name.
 *
 * @example
 * ```ts
 * import { parseJobEnv } from "./_job_flags.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseJobEnv(["A=1", "B=x=y"]), { A: "1", B: "x=y" });
 * assert.throws(() => parseJobEnv(["NOEQ"]), /Cannot parse --env 'NOEQ': use K=V/);
 * ```
 */
export function parseJobEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new SyntaxError(`Cannot parse --env '${pair}': use K=V`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/**
 * Check a `--fuel` value: a whole number of instructions (up to 19 digits).
 *
 * @throws {SyntaxError} If it is not one.
 *
 * @example
 * ```ts
 * import { checkFuel } from "./_job_flags.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkFuel("1000"), "1000");
 * assert.equal(checkFuel(undefined), undefined);
 * assert.throws(() => checkFuel("-1"), /Cannot parse --fuel '-1'/);
 * ```
 */
export function checkFuel(text: string | undefined): string | undefined {
  if (text !== undefined && !/^\d{1,19}$/.test(text)) {
    throw new SyntaxError(`Cannot parse --fuel '${text}': use a whole number of instructions`);
  }
  return text;
}
