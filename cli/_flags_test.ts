import assert from "node:assert/strict";
import { parseFlags } from "./_flags.ts";

const SPECS = {
  input: { type: "string" },
  arg: { type: "string", multiple: true },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

Deno.test("parseFlags() reads values, repeats, short aliases, '-' and '--'", () => {
  const { values, positionals } = parseFlags(
    ["m.wasm", "--input", "-", "--arg", "--json", "-h", "--arg=x=y", "--", "--json"],
    SPECS,
  );
  assert.deepEqual(values, { input: "-", arg: ["--json", "x=y"], json: false, help: true });
  assert.deepEqual(positionals, ["m.wasm", "--json"]);
});

Deno.test("parseFlags() refuses unknown flags, missing values and values on booleans", () => {
  assert.throws(() => parseFlags(["--nope"], SPECS), /Unknown option '--nope'/);
  assert.throws(() => parseFlags(["-x"], SPECS), /Unknown option '-x'/);
  assert.throws(() => parseFlags(["--input"], SPECS), /'--input <value>' needs a value/);
  assert.throws(() => parseFlags(["--json=1"], SPECS), /does not take a value/);
  assert.throws(() => parseFlags(["--constructor"], SPECS), /Unknown option/);
});

Deno.test("parseFlags() gives defaults, false and [] for flags not given", () => {
  const { values } = parseFlags([], { ...SPECS, timeout: { type: "string", default: "30s" } });
  assert.deepEqual(values, { input: undefined, arg: [], json: false, help: false, timeout: "30s" });
});
