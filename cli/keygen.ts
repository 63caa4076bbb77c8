// deno run --allow-read --allow-write cli/keygen.ts --out BASE
// Narrowest form: --allow-read=<dir of BASE> --allow-write=<dir of BASE>. No net, run, env.
/**
 * `keygen --out BASE`: make a publisher key pair, `BASE.key` (raw 32-byte secret, created 0600)
 * and `BASE.pub` (hex public key, one line, ready to append to a trusted-keys file). Refuses to
 * overwrite either file. Exit codes: 0 written, 1 refused or failed, 2 usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { writeKeyPairFiles } from "../provider/key_files.ts";
import { toHex } from "../runtime/digest.ts";
import { fsErrorReason } from "../util/fs_error.ts";
import { dirname } from "node:path";

const USAGE = `Usage: keygen --out BASE [--json]

Writes BASE.key (the raw 32-byte secret, 0600: keep it private) and BASE.pub (the hex public
key: give it to those who verify). Never overwrites either file.`;

/**
 * Run `keygen`; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./keygen.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const log = console.log;
 * console.log = () => {};
 * try {
 *   assert.equal(await main(["--out", `${dir}/release`]), 0);
 * } finally {
 *   console.log = log;
 * }
 * assert.equal((await Deno.stat(`${dir}/release.key`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        out: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    const message = (error as Error).message.split("\n")[0]!;
    console.error(
      `${message.replace(/\. To specify a positional .*$|\.$/, "")} (see keygen --help)`,
    );
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const base = values.out;
  if (base === undefined || base === "" || base.endsWith("/")) {
    console.error(
      "Cannot make keys: --out BASE is required (a path without extension, e.g. keys/release)",
    );
    return 2;
  }
  try {
    if ((await Deno.stat(base)).isDirectory) {
      console.error(
        `Cannot make keys: '${base}' is a directory; give a base name inside it, e.g. ${base}/release`,
      );
      return 2;
    }
  } catch {
    // Not there: the usual case.
  }
  for (const path of [`${base}.key`, `${base}.pub`]) {
    try {
      await Deno.lstat(path);
      console.error(`Cannot make keys: '${path}' exists; a key file is never overwritten`);
      return 1;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        console.error(`Cannot make keys: cannot check '${path}': ${fsErrorReason(error)}`);
        return 1;
      }
    }
  }
  let keys;
  try {
    keys = await writeKeyPairFiles(base);
  } catch (error) {
    const message = error instanceof Deno.errors.AlreadyExists
      ? `'${base}.key' exists; a key file is never overwritten`
      : error instanceof Deno.errors.NotFound
      ? `directory '${dirname(base)}' does not exist`
      : `cannot write '${base}.key': ${fsErrorReason(error)}`;
    console.error(`Cannot make keys: ${message}`);
    return 1;
  }
  const pub = toHex(keys.publicKey);
  if (values.json) {
    console.log(
      JSON.stringify({
        secret_key_file: `${base}.key`,
        public_key_file: `${base}.pub`,
        public_key: pub,
      }),
    );
  } else {
    console.log(`Wrote ${base}.key (secret, 0600) and ${base}.pub`);
    console.log(`Public key (add to a trusted-keys file): ${pub}`);
  }
  return 0;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
