/**
 * A test probe run in place of a sandbox entry (worker or process) to prove what the sandbox
 * can reach. It receives `{ file, port }` (worker: a message; process: JSON on stdin), tries to
 * read `file`, write next to it, connect to 127.0.0.1:`port`, read the environment, run a
 * program and query each permission, and reports one JSON object (worker: a message; process:
 * a line on stdout): each attempt's error name, or "ALLOWED".
 *
 * @module
 */
import { probeAttempt } from "./probe_attempt.ts";

async function probe(params: { file: string; port: number }): Promise<Record<string, string>> {
  const report: Record<string, string> = {
    read: await probeAttempt(() => Deno.readFile(params.file)),
    write: await probeAttempt(() => Deno.writeTextFile(params.file + ".probe-written", "x")),
    connect: await probeAttempt(() => Deno.connect({ hostname: "127.0.0.1", port: params.port })),
    listen: await probeAttempt(() => Deno.listen({ hostname: "127.0.0.1", port: 0 })),
    env: await probeAttempt(() => Deno.env.get("PATH")),
    run: await probeAttempt(() => new Deno.Command("/usr/bin/true").output()),
    fetch: await probeAttempt(() => fetch(`http://127.0.0.1:${params.port}/`)),
  };
  for (const name of ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const) {
    report[`query_${name}`] = (await Deno.permissions.query({ name })).state;
  }
  return report;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
if (typeof g.WorkerGlobalScope === "function" && g instanceof g.WorkerGlobalScope) {
  g.onmessage = async (e: MessageEvent<{ file: string; port: number }>) => {
    g.postMessage(await probe(e.data));
  };
} else if (import.meta.main) {
  const text = await new Response(Deno.stdin.readable).text();
  console.log(JSON.stringify(await probe(JSON.parse(text))));
}
