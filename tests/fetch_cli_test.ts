/**
 * `fetch` as its own process with the deno.json task's flags: every bad argument, unusable
 * file, denied grant and unreachable provider is answered by its exit code and one line.
 */
import { auditCli } from "./_cli_audit.ts";
import { publisher, tempDir } from "./fetch_testlib.ts";

Deno.test("fetch answers each bad argument, unusable file, denied grant and dead provider with one line", async (t) => {
  await using tmp = await tempDir();
  const d = tmp.path;
  const keys = await publisher(d, "release");
  await Deno.writeTextFile(`${d}/file`, "x");
  // A port nothing listens on: the provider is unreachable.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `http://127.0.0.1:${listener.addr.port}/`;
  listener.close();
  const base = ["--provider", dead, "--out", `${d}/out`, "--trusted-keys", keys.trustedKeysFile];
  await auditCli(t, "fetch", [
    {
      name: "no --provider",
      args: ["--out", `${d}/out`],
      code: 2,
      line: /^fetch: Cannot fetch: give at least one --provider URL \(see fetch --help\)$/,
    },
    {
      name: "an unknown flag",
      args: [...base, "--bogus"],
      code: 2,
      line: /^fetch: Unknown option '--bogus' \(see fetch --help\)$/,
    },
    {
      name: "a flag without its value",
      args: [...base, "--out"],
      code: 2,
      line: /^fetch: Option '--out <value>' needs a value \(see fetch --help\)$/,
    },
    {
      name: "no --out",
      args: ["--provider", dead],
      code: 2,
      line: /^fetch: Cannot fetch: --out DIR is required /,
    },
    {
      name: "no --trusted-keys",
      args: ["--provider", dead, "--out", `${d}/out`],
      code: 2,
      line: /^fetch: Cannot fetch: --trusted-keys FILE is required /,
    },
    {
      name: "a bad --retries",
      args: [...base, "--retries", "x"],
      code: 2,
      line: /^fetch: Cannot fetch: --retries must be a whole number >= 0, got 'x' /,
    },
    {
      name: "a zero --stall-timeout",
      args: [...base, "--stall-timeout", "0"],
      code: 2,
      line: /^fetch: Cannot fetch: --stall-timeout must be above zero /,
    },
    {
      name: "a bad --segment-size",
      args: [...base, "--segment-size", "big"],
      code: 2,
      line: /^fetch: Cannot fetch: Cannot parse size 'big'/,
    },
    {
      name: "a provider that is not a URL",
      args: [...base.slice(2), "--provider", "nonsense"],
      code: 2,
      line: /^fetch: error: Cannot use provider 'nonsense': not a URL$/,
    },
    {
      name: "a missing trusted-keys file",
      args: [...base.slice(0, 4), "--trusted-keys", `${d}/none`],
      code: 2,
      line: new RegExp(`^fetch: error: Cannot read trusted keys '${d}/none': no such file$`),
    },
    {
      name: "a secret key as trusted keys",
      args: [...base.slice(0, 4), "--trusted-keys", keys.keyFile],
      code: 2,
      line: new RegExp(
        `^fetch: error: Cannot read trusted keys '${keys.keyFile}': this is a secret key file; give the \\.pub$`,
      ),
    },
    {
      name: "a file as --out",
      args: [...base.slice(0, 2), "--out", `${d}/file`, ...base.slice(4)],
      code: 2,
      line: new RegExp(`^fetch: error: Cannot use --out '${d}/file': not a directory$`),
    },
    {
      name: "--out outside a narrowed write grant",
      flags: (f) => f.map((x) => x === "--allow-write" ? `--allow-write=${d}/elsewhere` : x),
      args: base,
      code: 2,
      line: new RegExp(`^fetch: error: Cannot use '${d}/out': run with --allow-write=${d}/out$`),
    },
    {
      name: "an unreachable provider",
      args: [...base, "--retries", "0"],
      code: 1,
      line: new RegExp(
        `^fetch: error: Cannot fetch manifest: no provider served a manifest that verifies \\(${dead}: Cannot fetch '${dead}stable/x86_64/manifest\\.json': connection refused\\)$`,
      ),
    },
  ]);
});
