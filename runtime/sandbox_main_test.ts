import assert from "node:assert/strict";
import { serveSandbox } from "./sandbox_main.ts";
import {
  encodeJob,
  FrameDecoder,
  type SandboxReply,
  type SandboxRequest,
} from "./sandbox_frames.ts";

const HELLO = await Deno.readFile(new URL("../examples/hello.wasm", import.meta.url));
const HUGE = await Deno.readFile(new URL("./testdata/huge_output.wasm", import.meta.url));
const BASE = {
  input: new TextEncoder().encode("ab"),
  args: ["module.wasm"],
  env: {},
  memoryBytes: 1 << 20,
  maxOutputBytes: 1024,
  timeoutMs: 10_000,
};

/** Serve `requests` in one sandbox (in this process); the result event of each. */
async function serve(requests: SandboxRequest[]): Promise<SandboxReply[]> {
  const written: Uint8Array[] = [];
  await serveSandbox(
    ReadableStream.from(requests.map(encodeJob)),
    (b) => (written.push(b.slice()), b.length),
  );
  const decoder = new FrameDecoder();
  return written.flatMap((b) => [...decoder.push(b)]).filter((e) => e.type === "result");
}

Deno.test("serveSandbox() keeps compiled modules in an LRU cache bounded in bytes", async () => {
  // Room for one of the two modules: each new one evicts the other.
  const cacheBytes = HELLO.length + 1024;
  const results = await serve([
    { ...BASE, module: HELLO, cacheKey: "hello", cacheBytes },
    { ...BASE, cacheKey: "hello", cacheBytes },
    { ...BASE, module: HUGE, cacheKey: "huge", cacheBytes },
    { ...BASE, cacheKey: "hello", cacheBytes },
  ]);
  const summary = results.map((r) =>
    r.type === "result" ? [r.error?.kind ?? "ok", r.cached, r.evicted] : []
  );
  assert.deepEqual(summary, [
    ["ok", true, []],
    ["ok", true, []],
    ["output_limit", true, ["hello"]],
    ["invalid_module", false, []], // evicted, and not sent: refused, never another module
  ]);
  assert.match(
    results[3]?.type === "result" ? results[3].error?.message ?? "" : "",
    /its module was not sent/,
  );
});

Deno.test("serveSandbox() does not cache a module over the bound, nor one that fails to compile", async () => {
  const results = await serve([
    { ...BASE, module: HELLO, cacheKey: "big", cacheBytes: 16 },
    { ...BASE, module: new Uint8Array([0, 97, 115, 109, 9, 9, 9, 9]), cacheKey: "bad" },
    { ...BASE, module: HELLO }, // no key: compiled, not cached
  ]);
  assert.deepEqual(
    results.map((r) => r.type === "result" ? [r.error?.kind ?? "ok", r.cached] : []),
    [["ok", false], ["invalid_module", false], ["ok", false]],
  );
});
