// deno run --allow-net=127.0.0.1 --allow-read=FILE[,ARTIFACT] bench/_provider_baseline_server.ts [--request] FILE [ARTIFACT]
// Benchmark baseline only: bare Deno.serve handlers, i.e. the ceiling Deno itself sets for any
// handler on this machine; never part of the shipped CLI.
/**
 * Baseline servers for `bench/provider_bench.ts`. Each prints `Listening on http://HOST:PORT/`,
 * then serves until SIGTERM:
 * - default: every request gets the bytes of FILE (the manifest) from a handler that takes no
 *   arguments, so Deno builds no `Request` at all: the ceiling of `Deno.serve`;
 * - `--request`: a handler that reads the method, URL and `If-None-Match` as any real handler must
 *   (304 on a match), answers `/artifact` with ARTIFACT through `FsFile.readable` (Deno's own
 *   file-to-socket path, no JavaScript per chunk), and anything else with FILE.
 *
 * @module
 */
if (import.meta.main) {
  const request = Deno.args[0] === "--request";
  const [manifest, artifact] = Deno.args.slice(request ? 1 : 0);
  const body = await Deno.readFile(manifest!);
  const etag = `"${manifest}"`;
  const headers = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-cache",
    etag,
  };
  const listen = {
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr: Deno.NetAddr) => console.log(`Listening on http://127.0.0.1:${addr.port}/`),
  };
  const server = request
    ? Deno.serve(listen, (req) => {
      if (req.method !== "GET" && req.method !== "HEAD") return new Response(null, { status: 405 });
      if (artifact !== undefined && req.url.endsWith("/artifact")) {
        return (async () => {
          const file = await Deno.open(artifact);
          const { size } = await file.stat();
          return new Response(file.readable, {
            headers: { "content-type": "application/octet-stream", "content-length": String(size) },
          });
        })();
      }
      if (req.headers.get("if-none-match") === etag) {
        return new Response(null, { status: 304, headers });
      }
      return new Response(body, { headers });
    })
    : Deno.serve(listen, () => new Response(body, { headers }));
  Deno.addSignalListener("SIGTERM", () => server.shutdown());
  await server.finished;
}
