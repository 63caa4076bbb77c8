// Test helper run as its own `deno` process: instruments a WASI fixture, runs it with a stdin
// text and a fuel limit, prints {stdout, exitCode, used, exhausted} as JSON.
// Usage: deno run --allow-read measure.ts FILE.wasm LIMIT [STDIN_TEXT]
import { instrumentFuel } from "../../fuel.ts";
import { runWasiStub } from "./wasi_stub.ts";

const [file, limit, stdin = ""] = Deno.args;
const run = await runWasiStub(instrumentFuel(await Deno.readFile(file!)), {
  stdin,
  fuel: BigInt(limit!),
});
console.log(JSON.stringify({
  stdout: run.stdout,
  exitCode: run.exitCode ?? null,
  used: String(run.fuel!.used),
  exhausted: run.fuel!.exhausted,
}));
