// Run inside a simulated host as: deno run --allow-net tests/netsim/probe.ts <command> ...
/**
 * Small network probes for simulator tests, each printing JSON lines on stdout:
 *
 * - `udp-echo PORT`: answers every datagram with `{"from":"ip:port","data":"..."}` (what the
 *   sender looks like from here). Prints `{"ready":true}` once bound.
 * - `tcp-echo PORT`: writes `{"from":"ip:port"}` to every connection, then closes it.
 * - `udp-ask [--port N] [--timeout-ms T] [--receive] TARGET...`: from ONE socket, asks each
 *   target in turn (resending every 200 ms) and prints `{"target","observed"}` with the address
 *   the target saw; `observed` is null after T ms without an answer. With `--receive`, then
 *   prints `{"listening":true}` and waits up to T ms for a datagram from anyone, printing
 *   `{"received":{"from","data"}}` or `{"received":null}`.
 * - `udp-send [--port N] [--count C] TARGET TEXT`: sends TEXT C times, 50 ms apart.
 * - `tcp-connect [--timeout-ms T] TARGET`: prints `{"connected":true,"observed":"ip:port"}` when a
 *   tcp-echo answered, else `{"connected":false,"error":"..."}`.
 * - `udp-ping [--count C] [--interval-ms I] [--timeout-ms T] TARGET`: sends C numbered pings to a
 *   udp-echo, I ms apart, waits T ms after the last, prints `{"sent","received","rttsMs"}`.
 *
 * TARGET is `ip:port`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import dgram from "node:dgram";

function _target(text: string | undefined): { host: string; port: number } {
  const match = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text ?? "");
  if (!match) throw new TypeError(`Cannot use target '${text}': expected ip:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

function _print(value: unknown): void {
  console.log(JSON.stringify(value));
}

function _udpSocket(port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, "0.0.0.0", () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

async function _udpEcho(port: number): Promise<void> {
  const socket = await _udpSocket(port);
  socket.on("message", (data, rinfo) => {
    const answer = JSON.stringify({
      from: `${rinfo.address}:${rinfo.port}`,
      data: new TextDecoder().decode(data),
    });
    socket.send(answer, rinfo.port, rinfo.address);
  });
  _print({ ready: true });
  await new Promise(() => {});
}

async function _tcpEcho(port: number): Promise<void> {
  const listener = Deno.listen({ hostname: "0.0.0.0", port });
  _print({ ready: true });
  for await (const conn of listener) {
    const remote = conn.remoteAddr as Deno.NetAddr;
    conn.write(
      new TextEncoder().encode(
        JSON.stringify({ from: `${remote.hostname}:${remote.port}` }) + "\n",
      ),
    )
      .catch(() => {}).finally(() => conn.close());
  }
}

async function _udpAsk(
  port: number,
  timeoutMs: number,
  receive: boolean,
  targets: { host: string; port: number }[],
): Promise<void> {
  const socket = await _udpSocket(port);
  const seen = new Set<string>();
  try {
    for (const target of targets) {
      const key = `${target.host}:${target.port}`;
      seen.add(key);
      const observed = await new Promise<string | null>((resolve) => {
        const send = () => socket.send("ask", target.port, target.host);
        const resend = setInterval(send, 200);
        const timer = setTimeout(() => done(null), timeoutMs);
        const onMessage = (data: Uint8Array, rinfo: dgram.RemoteInfo) => {
          if (`${rinfo.address}:${rinfo.port}` !== key) return;
          done(JSON.parse(new TextDecoder().decode(data)).from);
        };
        const done = (value: string | null) => {
          clearInterval(resend);
          clearTimeout(timer);
          socket.off("message", onMessage);
          resolve(value);
        };
        socket.on("message", onMessage);
        send();
      });
      _print({ target: key, observed });
    }
    if (receive) {
      const received = await new Promise<{ from: string; data: string } | null>((resolve) => {
        const timer = setTimeout(() => done(null), timeoutMs);
        const onMessage = (data: Uint8Array, rinfo: dgram.RemoteInfo) => {
          const from = `${rinfo.address}:${rinfo.port}`;
          if (seen.has(from)) return;
          done({ from, data: new TextDecoder().decode(data) });
        };
        const done = (value: { from: string; data: string } | null) => {
          clearTimeout(timer);
          socket.off("message", onMessage);
          resolve(value);
        };
        socket.on("message", onMessage);
        _print({ listening: true });
      });
      _print({ received });
    }
  } finally {
    socket.close();
  }
}

async function _udpSend(
  port: number,
  count: number,
  target: { host: string; port: number },
  text: string,
): Promise<void> {
  const socket = await _udpSocket(port);
  try {
    for (let i = 0; i < count; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      await new Promise<void>((resolve, reject) =>
        socket.send(text, target.port, target.host, (error) => error ? reject(error) : resolve())
      );
    }
  } finally {
    socket.close();
  }
  _print({ sent: count });
}

async function _tcpConnect(timeoutMs: number, target: { host: string; port: number }) {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const conn = await Deno.connect({ hostname: target.host, port: target.port, signal });
    try {
      const chunks: Uint8Array[] = [];
      for await (const chunk of conn.readable) chunks.push(chunk);
      const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
      _print({ connected: true, observed: JSON.parse(text).from });
    } catch (error) {
      _print({ connected: true, observed: null, error: String(error) });
    }
  } catch (error) {
    const name = signal.aborted ? "timeout" : error instanceof Error ? error.name : "error";
    _print({ connected: false, error: name });
  }
}

async function _udpPing(
  count: number,
  intervalMs: number,
  timeoutMs: number,
  target: { host: string; port: number },
): Promise<void> {
  const socket = await _udpSocket(0);
  const sentAt = new Map<number, number>();
  const rtts: number[] = [];
  socket.on("message", (data) => {
    const seq = Number(JSON.parse(new TextDecoder().decode(data)).data);
    const at = sentAt.get(seq);
    if (at === undefined) return;
    sentAt.delete(seq);
    rtts.push(performance.now() - at);
  });
  try {
    for (let seq = 0; seq < count; seq++) {
      if (seq > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
      sentAt.set(seq, performance.now());
      socket.send(String(seq), target.port, target.host);
    }
    await new Promise((resolve) => setTimeout(resolve, timeoutMs));
  } finally {
    socket.close();
  }
  _print({
    sent: count,
    received: rtts.length,
    rttsMs: rtts.map((r) => Math.round(r * 100) / 100),
  });
}

async function main(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      port: { type: "string", default: "0" },
      "timeout-ms": { type: "string", default: "3000" },
      "interval-ms": { type: "string", default: "10" },
      count: { type: "string", default: "1" },
      receive: { type: "boolean", default: false },
    },
  });
  const [command, ...rest] = positionals;
  const port = Number(values.port);
  const timeoutMs = Number(values["timeout-ms"]);
  const count = Number(values.count);
  switch (command) {
    case "udp-echo":
      return await _udpEcho(Number(rest[0]));
    case "tcp-echo":
      return await _tcpEcho(Number(rest[0]));
    case "udp-ask":
      return await _udpAsk(port, timeoutMs, values.receive, rest.map(_target));
    case "udp-send":
      return await _udpSend(port, count, _target(rest[0]), rest[1] ?? "");
    case "tcp-connect":
      return await _tcpConnect(timeoutMs, _target(rest[0]));
    case "udp-ping":
      return await _udpPing(count, Number(values["interval-ms"]), timeoutMs, _target(rest[0]));
    default:
      throw new TypeError(`Cannot run probe '${command}': unknown command`);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`probe: error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
