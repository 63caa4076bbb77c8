import assert from "node:assert/strict";
import { auditCli, badDurationCase, unknownOptionCase } from "./_cli_audit.ts";
import { runTask } from "./_task.ts";

/** Two loopback ports nobody listens on. */
function deadPorts(): number[] {
  const listeners = [0, 1].map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((l) => l.addr.port);
  for (const l of listeners) l.close();
  return ports;
}

Deno.test("discover: bad flags, values and grants fail with one line", async (t) => {
  const without = (prefix: string) => (f: string[]) => f.filter((x) => !x.startsWith(prefix));
  await auditCli(t, "discover", [
    unknownOptionCase("discover"),
    { name: "missing value", args: ["--timeout"], code: 2, line: /^discover: Option '--timeout/ },
    badDurationCase("discover", ["--timeout"], { name: "bad timeout" }),
    badDurationCase("discover", ["--mdns-quiet"], { name: "bad mDNS quiet time" }),
    {
      name: "zero mDNS wait",
      args: ["--mdns-wait", "0s"],
      code: 2,
      line:
        /^discover: Cannot use --mdns-wait '0s': expected a duration above 0 \(see discover --help\)$/,
    },
    {
      name: "DHT without bootstrap peer",
      args: ["--dht"],
      code: 2,
      line:
        /^discover: Cannot discover in the DHT: give at least one bootstrap peer \(see discover --help\)$/,
    },
    {
      name: "unknown capability",
      args: ["--capability", "gpu"],
      code: 2,
      line: /^discover: Cannot use --capability 'gpu': only wasm is known \(see discover --help\)$/,
    },
    {
      name: "bad bootstrap multiaddr",
      args: ["--dht", "--bootstrap", "nowhere"],
      code: 2,
      line: /^discover: Cannot parse multiaddr 'nowhere'/,
    },
    {
      name: "no sys grant, with mDNS",
      args: ["--mdns", "--timeout", "2s"],
      flags: without("--allow-sys"),
      code: 1,
      line: /^discover: error: Cannot use mDNS: requires --allow-sys=networkInterfaces$/,
    },
    {
      name: "no net grant, with mDNS",
      args: ["--mdns", "--timeout", "2s"],
      flags: without("--allow-net"),
      code: 1,
      line:
        /^discover: error: Cannot use mDNS: requires net access to 0\.0\.0\.0:5353 \(--allow-net\)$/,
    },
  ], { NO_COLOR: "1" });
});

Deno.test("discover --dht shows each bootstrap dial failure and stops once all have failed", async () => {
  const [a, b] = deadPorts();
  const addrs = [`/ip4/127.0.0.1/tcp/${a}`, `/ip4/127.0.0.1/tcp/${b}`];
  // A long timeout: only stopping early gives the 'no bootstrap peer answered' line.
  const { code, out, err } = await runTask("discover", [
    ...["--dht", "--bootstrap", addrs[0]!, "--bootstrap", addrs[1]!, "--timeout", "60s"],
  ], { env: { NO_COLOR: "1" } });
  assert.equal(code, 1, err);
  assert.equal(out, "");
  const lines = err.trimEnd().split("\n");
  assert.equal(
    lines.pop(),
    "discover: error: Cannot discover in the DHT: no bootstrap peer answered (2 tried)",
  );
  assert.deepEqual(
    lines.sort(),
    addrs.map((ma) => `warning: Cannot dial bootstrap peer '${ma}': connection refused`).sort(),
  );
});

Deno.test("discover --help lists -v, --verbose and what it shows", async () => {
  const { code, out, err } = await runTask("discover", ["--help"]);
  assert.equal(code, 0, err);
  assert.match(out, /\[-v\|--verbose\]/);
  assert.match(out, /-v, --verbose: also every log record/);
});

Deno.test("discover --help lists --mdns-quiet and --mdns-wait with their defaults", async () => {
  const { code, out, err } = await runTask("discover", ["--help"]);
  assert.equal(code, 0, err);
  assert.match(out, /--mdns-quiet DURATION/);
  assert.match(out, /--mdns-wait DURATION/);
  assert.match(out, /200ms/);
});
