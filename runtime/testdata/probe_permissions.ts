/**
 * A test probe run in place of a sandbox entry (worker or process) to prove what the sandbox
 * can reach. It receives `{ file, port }` (worker: a message; process: JSON on stdin), tries to
 * read `file`, write next to it, connect to 127.0.0.1:`port`, read the environment, run a
 * program and query each permission, and reports one JSON object (worker: a message; process:
 * a line on stdout): each attempt's error name, or "ALLOWED".
 *
 * @module
 */

async function attempt(fn: () => Promise<unknown> | unknown): Promise<string> {
  try {
    const result = await fn();
    if (result && typeof result === "object" && "close" in result) {
      (result as { close(): void }).close();
    }
    return "ALLOWED";
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  }
}

async function probe(params: { file: string; port: number }): Promise<Record<string, string>> {
  const report: Record<string, string> = {
    read: await attempt(() => Deno.readFile(params.file)),
    write: await attempt(() => Deno.writeTextFile(params.file + ".probe-written", "x")),
    connect: await attempt(() => Deno.connect({ hostname: "127.0.0.1", port: params.port })),
    listen: await attempt(() => Deno.listen({ hostname: "127.0.0.1", port: 0 })),
    env: await attempt(() => Deno.env.get("PATH")),
    run: await attempt(() => new Deno.Command("/usr/bin/true").output()),
    fetch: await attempt(() => fetch(`http://127.0.0.1:${params.port}/`)),
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
