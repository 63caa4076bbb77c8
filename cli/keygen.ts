// deno run --allow-read --allow-write cli/keygen.ts --out BASE
// Narrowest form: --allow-read=<dir of BASE> --allow-write=<dir of BASE>. No net, run, env.
/**
 * `keygen --out BASE`: make a publisher key pair, `BASE.key` (raw 32-byte secret, created 0600)
 * and `BASE.pub` (hex public key, one line, ready to append to a trusted-keys file). Refuses to
 * overwrite either file. Exit codes: 0 written, 1 refused or failed, 2 usage.
 *
 * @module
 */
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { dirname } from "node:path";
import { type CliContext, runCommand, UsageError } from "./_main.ts";
export type { CliContext, CliWriter } from "./_main.ts";

/** The options of `keygen`. */
export const KEYGEN_COMMAND = {
  name: "keygen",
  about:
    `Writes BASE.key (the raw 32-byte secret, 0600: keep it private) and BASE.pub (the hex public
key: give it to those who verify). Never overwrites either file.`,
  options: {
    out: { type: "string", value: "BASE", required: true, description: "path without extension" },
    json: { type: "boolean", description: "print the file names and key as JSON" },
  },
} as const;

/**
 * Run `keygen`; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./keygen.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const quiet = { writeSync: (bytes: Uint8Array) => bytes.length };
 * assert.equal(await main(["--out", `${dir}/release`], { stdout: quiet }), 0);
 * assert.equal((await Deno.stat(`${dir}/release.key`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function main(args: string[], context: CliContext = {}): Promise<number> {
  return runCommand(KEYGEN_COMMAND, args, context, async (values, _, io) => {
    const base = values.out;
    if (base === undefined || base === "" || base.endsWith("/")) {
      throw new UsageError(
        "Cannot make keys: --out BASE is required (a path without extension, e.g. keys/release)",
      );
    }
    if (await _isDirectory(base)) {
      throw new UsageError(
        `Cannot make keys: '${base}' is a directory; give a base name inside it, e.g. ${base}/release`,
      );
    }
    for (const path of [`${base}.key`, `${base}.pub`]) {
      try {
        await Deno.lstat(path);
        return io.fail(`Cannot make keys: '${path}' exists; a key file is never overwritten`);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          return io.fail(`Cannot make keys: cannot check '${path}': ${fsErrorReason(error)}`);
        }
      }
    }
    let keys;
    try {
      keys = await writeKeyPairFiles(base);
    } catch (error) {
      return io.fail(
        "Cannot make keys: " +
          (error instanceof Deno.errors.AlreadyExists
            ? `'${base}.key' exists; a key file is never overwritten`
            : error instanceof Deno.errors.NotFound
            ? `directory '${dirname(base)}' does not exist`
            : `cannot write '${base}.key': ${fsErrorReason(error)}`),
      );
    }
    const pub = toHex(keys.publicKey);
    if (values.json) {
      io.print(JSON.stringify({
        secret_key_file: `${base}.key`,
        public_key_file: `${base}.pub`,
        public_key: pub,
      }));
    } else {
      io.print(`Wrote ${base}.key (secret, 0600) and ${base}.pub`);
      io.print(`Public key (add to a trusted-keys file): ${pub}`);
    }
    return 0;
  });
}

async function _isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false; // Not there: the usual case.
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
