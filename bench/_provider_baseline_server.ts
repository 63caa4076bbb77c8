// deno run --allow-net=127.0.0.1 bench/_provider_baseline_server.ts FILE
// Benchmark baseline only: Deno.serve answering every request with the same bytes (the
// manifest), i.e. the ceiling of any Deno.serve handler on this machine.
/**
 * Baseline server for `bench/provider_bench.ts`: prints `Listening on http://HOST:PORT/`, then
 * answers every request with the bytes of FILE, until SIGTERM.
 *
 * @module
 */
if (import.meta.main) {
  const body = await Deno.readFile(Deno.args[0]!);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr) => console.log(`Listening on http://127.0.0.1:${addr.port}/`),
  }, () =>
    new Response(body, {
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-cache" },
    }));
  Deno.addSignalListener("SIGTERM", () => server.shutdown());
  await server.finished;
}
