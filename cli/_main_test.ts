import assert from "node:assert/strict";
import { type CommandSpec, runCommand, UsageError } from "./_main.ts";

function sink() {
  let text = "";
  return {
    writeSync: (bytes: Uint8Array) => {
      text += new TextDecoder().decode(bytes);
      return bytes.length;
    },
    get text() {
      return text;
    },
  };
}

const SPEC = {
  name: "demo",
  about: "Does a demo.",
  options: { port: { type: "string", default: "8080", value: "N", description: "the port" } },
} as const satisfies CommandSpec;

Deno.test("runCommand() prints usage errors and failures in the uniform style", async () => {
  const stderr = sink();
  assert.equal(await runCommand(SPEC, ["--nope"], { stderr }, () => 0), 2);
  assert.equal(await runCommand(SPEC, ["x"], { stderr }, () => 0), 2);
  assert.equal(
    await runCommand(SPEC, [], { stderr }, () => {
      throw new UsageError("Cannot use --port 'x': expected a number");
    }),
    2,
  );
  assert.equal(
    await runCommand(SPEC, [], { stderr }, () => {
      throw new Error("Cannot listen on 0.0.0.0:8080: address already in use\nmore");
    }),
    1,
  );
  assert.equal(
    stderr.text,
    [
      "demo: Unknown option '--nope' (see demo --help)",
      "demo: Unexpected argument 'x' (see demo --help)",
      "demo: Cannot use --port 'x': expected a number (see demo --help)",
      "demo: error: Cannot listen on 0.0.0.0:8080: address already in use",
      "",
    ].join("\n"),
  );
});

Deno.test("runCommand() names a two-word subcommand whole in every error line", async () => {
  const spec = { ...SPEC, name: "verify demo" } as const;
  const stderr = sink();
  await runCommand(spec, ["--port"], { stderr }, () => 0);
  await runCommand(spec, [], { stderr }, () => {
    throw new UsageError("Cannot use --port 'x'");
  });
  await runCommand(spec, [], { stderr }, () => {
    throw new Error("Cannot start");
  });
  assert.equal(
    stderr.text,
    "verify demo: Option '--port <value>' needs a value (see verify demo --help)\n" +
      "verify demo: Cannot use --port 'x' (see verify demo --help)\n" +
      "verify demo: error: Cannot start\n",
  );
});

Deno.test("runCommand() answers --help and -h with the generated usage, exit 0", async () => {
  for (const flag of ["--help", "-h"]) {
    const stdout = sink();
    let ran = false;
    const code = await runCommand(SPEC, [flag], { stdout }, () => (ran = true, 0));
    assert.equal(code, 0);
    assert.equal(ran, false);
    assert.equal(
      stdout.text,
      [
        "Usage: demo [--port N] [-h|--help]",
        "",
        "Does a demo.",
        "",
        "Options:",
        "  --port N    the port (default: 8080)",
        "  -h, --help  show this help",
        "",
      ].join("\n"),
    );
  }
});
