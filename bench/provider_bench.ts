// deno run --allow-net=127.0.0.1 --allow-read --allow-write --allow-run --allow-env --allow-sys bench/provider_bench.ts [--size-mib 512] [--seconds 5] [--runs 3]
// Benchmark only (spawns nginx, wrk, curl and the provider); never part of the shipped CLI.
/**
 * Provider benchmarks, each against nginx (sendfile on, and off) and bare `Deno.serve` servers
 * (bench/_provider_baseline_server.ts) in the same run on the same files; every measurement
 * alternates the servers for `--runs` rounds and reports medians, plus each server's CPU time
 * (from /proc) per download or per request, which contention from other processes disturbs less
 * than wall time:
 * 1. download throughput of one large artifact over loopback (curl);
 * 2. `/manifest.json` and `/health` requests per second with 64 connections (wrk -t2 -c64) vs
 *    nginx serving a static copy of the same manifest;
 * 3. provider RSS, sampled each second, while wrk keeps 100 range downloads going (this
 *    provider runs with `--max-downloads 128 --max-downloads-per-client 128`, so all 100 run, as
 *    before those limits existed);
 * 4. hostile clients: a second provider with the default limits, 500 connections that ask for
 *    the large artifact and never read; its RSS growth and `/health` latency.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startServeProcess } from "../boot/serve_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;

interface Proc {
  pid: number;
  stop: () => Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function startProvider(
  dir: string,
  state: string,
  args: string[] = ["--max-downloads", "128", "--max-downloads-per-client", "128"],
): Promise<Proc & { url: string }> {
  // HTTP only: the libp2p advertisement (idle without peers) is not what is measured here.
  return await startServeProcess({
    artifacts: dir,
    stateDir: state,
    args: ["--min-free", "0", "--no-dht", "--no-mdns", ...args],
  });
}

/** 500 connections that ask for `path` and never read: RSS growth and /health latency. */
async function hostileClients(provider: Proc & { url: string }, path: string) {
  const port = Number(new URL(provider.url).port);
  await (await fetch(`${provider.url}health`)).text();
  const before = await rssKiB(provider.pid);
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 500; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode(`GET /${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
      conns.push(conn);
    }
    const health: number[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 600));
      const t0 = performance.now();
      await (await fetch(`${provider.url}health`)).text();
      health.push(performance.now() - t0);
    }
    const after = await rssKiB(provider.pid);
    return { grownMiB: (after - before) / 1024, health };
  } finally {
    for (const conn of conns) conn.close();
  }
}

/**
 * A bare Deno.serve: with `artifact`, a handler that reads the request (`--request`) and serves
 * `/artifact` through `FsFile.readable`; without, one that takes no arguments.
 */
async function startBaseline(file: string, artifact?: string): Promise<Proc & { url: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${artifact ? `${file},${artifact}` : file}`,
      `${ROOT}bench/_provider_baseline_server.ts`,
      ...(artifact ? ["--request", file, artifact] : [file]),
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value = "" } = await reader.read();
  const url = /Listening on (\S+)/.exec(value)?.[1];
  if (!url) throw new Error("Baseline server did not start");
  const drain = (async () => {
    while (!(await reader.read()).done);
  })();
  return {
    url,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await drain;
    },
  };
}

async function startNginx(
  root: string,
  work: string,
): Promise<Proc & { url: string; noSendfileUrl: string; workerPid: number }> {
  const port = freePort();
  const port2 = freePort();
  const user = Deno.uid() === 0 ? "user root;\n" : "";
  await Deno.writeTextFile(
    `${work}/nginx.conf`,
    `${user}daemon off;
worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${work}/tmp-body;
  proxy_temp_path ${work}/tmp-proxy;
  fastcgi_temp_path ${work}/tmp-fastcgi;
  uwsgi_temp_path ${work}/tmp-uwsgi;
  scgi_temp_path ${work}/tmp-scgi;
  types { application/json json; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${root}; }
  server { listen 127.0.0.1:${port2}; root ${root}; sendfile off; }
}
`,
  );
  const child = new Deno.Command("nginx", {
    args: ["-c", `${work}/nginx.conf`, "-p", `${work}/`, "-e", `${work}/nginx-error.log`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // The one worker process does all the serving: its CPU time is nginx's.
  const children = await run("cat", [`/proc/${child.pid}/task/${child.pid}/children`]);
  return {
    url: `http://127.0.0.1:${port}/`,
    noSendfileUrl: `http://127.0.0.1:${port2}/`,
    workerPid: Number(children.trim().split(/\s+/)[0]),
    pid: child.pid,
    stop: async () => {
      child.kill("SIGQUIT");
      await child.status;
    },
  };
}

async function download(url: string): Promise<number> {
  const out = await run("curl", ["-s", "-o", "/dev/null", "-w", "%{speed_download}", url]);
  return Number(out);
}

async function wrk(args: string[]): Promise<number> {
  return (await wrkCounts(args)).perSecond;
}

async function wrkCounts(args: string[]): Promise<{ perSecond: number; requests: number }> {
  const out = await run("wrk", args);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const n = /(\d+) requests in /.exec(out);
  if (!m || !n) throw new Error(`Cannot read wrk output: ${out}`);
  return { perSecond: Number(m[1]), requests: Number(n[1]) };
}

/**
 * CPU time (user + system) a process has used so far, in ms (Linux /proc, 100 ticks/s; read by
 * `cat`, as Deno grants /proc files only with --allow-all).
 */
async function cpuMs(pid: number): Promise<number> {
  const stat = await run("cat", [`/proc/${pid}/stat`]);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15)
}

/** A server under test: what it is called, its process, and the URL measured. */
interface Target {
  name: string;
  pid: number;
  url: string;
}

/**
 * `rounds` rounds of `measure` over every target in turn (so load from elsewhere falls on all of
 * them alike); per target the median of the results and of the CPU ms its process spent per unit
 * (`units` of each result: downloads or requests).
 */
async function alternate<T>(
  targets: Target[],
  rounds: number,
  measure: (url: string) => Promise<T>,
  units: (result: T) => number,
  value: (result: T) => number,
): Promise<Map<string, { value: number; cpu: number }>> {
  const results = new Map(
    targets.map((t) => [t.name, { values: [] as number[], cpu: [] as number[] }]),
  );
  for (let round = 0; round < rounds; round++) {
    for (const t of targets) {
      const before = await cpuMs(t.pid);
      const result = await measure(t.url);
      const spent = (await cpuMs(t.pid)) - before;
      results.get(t.name)!.values.push(value(result));
      results.get(t.name)!.cpu.push(spent / units(result));
    }
  }
  return new Map(
    [...results].map(([name, r]) => [name, { value: median(r.values), cpu: median(r.cpu) }]),
  );
}

function loadAverage(): string {
  return Deno.loadavg().map((n) => n.toFixed(2)).join(" ");
}

async function rssKiB(pid: number): Promise<number> {
  return Number((await run("ps", ["-o", "rss=", "-p", String(pid)])).trim());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (bytesPerSecond: number) => (bytesPerSecond / 1048576).toFixed(0);

async function main(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      "size-mib": { type: "string", default: "512" },
      seconds: { type: "string", default: "5" },
      runs: { type: "string", default: "3" },
    },
  });
  const sizeMiB = Number(values["size-mib"]);
  const seconds = Number(values.seconds);
  const runs = Number(values.runs);
  const work = await Deno.makeTempDir({ prefix: "plasm-bench-" });
  const procs: Proc[] = [];
  try {
    const art = `${work}/art/stable/x86_64`;
    await Deno.mkdir(art, { recursive: true });
    const chunk = crypto.getRandomValues(new Uint8Array(65536));
    const block = new Uint8Array(16 * 1048576);
    for (let i = 0; i < block.length; i += chunk.length) block.set(chunk, i);
    const file = await Deno.open(`${art}/rootfs`, { write: true, create: true });
    for (let i = 0; i < sizeMiB / 16; i++) {
      block[0] = i; // no two blocks alike
      await file.write(block);
    }
    file.close();
    await Deno.writeFile(`${art}/kernel`, block.subarray(0, 8 * 1048576));
    console.log(`artifact: rootfs ${sizeMiB} MiB, kernel 8 MiB`);

    console.log(`load average at start: ${loadAverage()} (2 cores shared with other work)`);
    const provider = await startProvider(`${work}/art`, `${work}/state`);
    procs.push(provider);
    const manifest = await (await fetch(`${provider.url}manifest.json`)).text();
    await Deno.writeTextFile(`${work}/art/manifest.json`, manifest);
    const nginx = await startNginx(`${work}/art`, work);
    procs.push(nginx);
    const bare = await startBaseline(`${work}/art/manifest.json`);
    procs.push(bare);
    const bareRequest = await startBaseline(`${work}/art/manifest.json`, `${art}/rootfs`);
    procs.push(bareRequest);
    const ratio = (a: number, b: number) => (a / b).toFixed(2);

    // 1. Throughput: warm each once, then alternate.
    const big = "stable/x86_64/rootfs";
    const downloads: Target[] = [
      { name: "provider", pid: provider.pid, url: `${provider.url}${big}` },
      { name: "nginx", pid: nginx.workerPid, url: `${nginx.url}${big}` },
      { name: "nginx-nosendfile", pid: nginx.workerPid, url: `${nginx.noSendfileUrl}${big}` },
      { name: "bare", pid: bareRequest.pid, url: `${bareRequest.url}artifact` },
    ];
    for (const t of downloads) await download(t.url);
    const dl = await alternate(downloads, runs, download, () => 1, (speed) => speed);
    const d = (name: string) => dl.get(name)!;
    const tp = d("provider").value;
    console.log(
      `download ${sizeMiB} MiB (curl, median of ${runs}): provider ${mib(tp)} MiB/s, nginx ${
        mib(d("nginx").value)
      } MiB/s: ratio ${ratio(tp, d("nginx").value)} (target >= 0.9); nginx without sendfile ${
        mib(d("nginx-nosendfile").value)
      } MiB/s: ratio ${ratio(tp, d("nginx-nosendfile").value)}; bare Deno.serve (FsFile.readable) ${
        mib(d("bare").value)
      } MiB/s: provider/bare ${ratio(tp, d("bare").value)}, bare/nginx ${
        ratio(d("bare").value, d("nginx").value)
      }`,
    );
    console.log(
      `  CPU ms per download: provider ${d("provider").cpu.toFixed(0)}, nginx ${
        d("nginx").cpu.toFixed(0)
      }, nginx without sendfile ${d("nginx-nosendfile").cpu.toFixed(0)}, bare ${
        d("bare").cpu.toFixed(0)
      }`,
    );
    const sent = (await (await fetch(`${provider.url}status`)).json()).metrics;
    console.log(
      `  provider bodies: ${sent.downloads_total} started, ${
        sent.downloads_direct_total ?? 0
      } sent by Deno from the file handle, ${sent.downloads_active} still active`,
    );

    // 2. Manifest and health requests per second, alternating.
    const secs = `${seconds}s`;
    const small: Target[] = [
      { name: "manifest", pid: provider.pid, url: `${provider.url}manifest.json` },
      { name: "health", pid: provider.pid, url: `${provider.url}health` },
      { name: "nginx", pid: nginx.workerPid, url: `${nginx.url}manifest.json` },
      { name: "bare", pid: bare.pid, url: bare.url },
      { name: "bare-request", pid: bareRequest.pid, url: `${bareRequest.url}manifest.json` },
    ];
    const rps = await alternate(
      small,
      runs,
      (url) => wrkCounts(["-t2", "-c64", `-d${secs}`, url]),
      (r) => r.requests,
      (r) => r.perSecond,
    );
    const r = (name: string) => rps.get(name)!;
    const us = (name: string) => `${(r(name).cpu * 1000).toFixed(1)}`;
    const rp = r("manifest").value;
    const rn = r("nginx").value;
    console.log(
      `/manifest.json (wrk -t2 -c64 -d${secs}, median of ${runs}): provider ${
        rp.toFixed(0)
      } req/s, nginx ${rn.toFixed(0)} req/s: ratio ${
        ratio(rp, rn)
      } (target >= 0.6); bare Deno.serve, same bytes: no-argument handler ${
        r("bare").value.toFixed(0)
      } req/s (provider/bare ${ratio(rp, r("bare").value)}, bare/nginx ${
        ratio(r("bare").value, rn)
      }), handler reading the request ${r("bare-request").value.toFixed(0)} req/s (provider/bare ${
        ratio(rp, r("bare-request").value)
      })`,
    );
    console.log(
      `/health: provider ${r("health").value.toFixed(0)} req/s, health/manifest ${
        ratio(r("health").value, rp)
      } (target >= 1.0)`,
    );
    console.log(
      `  CPU us per request: provider manifest ${us("manifest")}, health ${us("health")}, nginx ${
        us("nginx")
      }, bare ${us("bare")}, bare reading the request ${us("bare-request")}`,
    );
    await bareRequest.stop();
    await bare.stop();
    procs.splice(procs.indexOf(bare), 2);

    // 3. RSS during 100 concurrent range downloads (each 8 MiB from the middle of the file).
    const before = await rssKiB(provider.pid);
    const samples: number[] = [];
    const rssSeconds = seconds * 2;
    const sampling = (async () => {
      for (let i = 0; i < rssSeconds; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        samples.push(await rssKiB(provider.pid));
      }
    })();
    const range = `bytes=${64 * 1048576}-${72 * 1048576 - 1}`;
    const rangeRps = await wrk([
      "-t2",
      "-c100",
      `-d${rssSeconds}s`,
      "-H",
      `Range: ${range}`,
      `${provider.url}${big}`,
    ]);
    await sampling;
    const after = await rssKiB(provider.pid);
    const m = (kib: number) => (kib / 1024).toFixed(0);
    console.log(
      `RSS, 100 concurrent range downloads (${range}, wrk -t2 -c100 -d${rssSeconds}s, ${
        (rangeRps * 8).toFixed(0)
      } MiB/s): before ${m(before)} MiB; each second ${samples.map(m).join(" ")} MiB; after ${
        m(after)
      } MiB`,
    );

    // 4. Hostile clients against a provider with the default limits.
    const fresh = await startProvider(`${work}/art`, `${work}/state2`, []);
    procs.push(fresh);
    const hostile = await hostileClients(fresh, big);
    console.log(
      `500 clients that never read ${big} (default limits): RSS grew ${
        hostile.grownMiB.toFixed(0)
      } MiB; /health ${hostile.health.map((ms) => ms.toFixed(0)).join(" ")} ms`,
    );
    console.log(`load average at the end: ${loadAverage()}`);
  } finally {
    for (const proc of procs.reverse()) await proc.stop().catch(() => {});
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
