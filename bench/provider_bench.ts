// deno run --allow-net=127.0.0.1 --allow-read --allow-write --allow-run --allow-env --allow-sys bench/provider_bench.ts [--size-mib 512] [--seconds 5]
// Benchmark only (spawns nginx, wrk, curl and the provider); never part of the shipped CLI.
/**
 * Provider benchmarks, each against nginx in the same run on the same files:
 * 1. download throughput of one large artifact over loopback (curl, best of 3 each);
 * 2. `/manifest.json` requests per second with 64 connections (wrk) vs nginx serving a static
 *    copy of the same manifest;
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
  return await startServeProcess({
    artifacts: dir,
    stateDir: state,
    args: ["--min-free", "0", ...args],
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

async function startBaseline(file: string): Promise<Proc & { url: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${file}`,
      `${ROOT}bench/_provider_baseline_server.ts`,
      file,
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
): Promise<Proc & { url: string; noSendfileUrl: string }> {
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
  return {
    url: `http://127.0.0.1:${port}/`,
    noSendfileUrl: `http://127.0.0.1:${port2}/`,
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
  const out = await run("wrk", args);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`Cannot read wrk output: ${out}`);
  return Number(m[1]);
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

    const provider = await startProvider(`${work}/art`, `${work}/state`);
    procs.push(provider);
    const manifest = await (await fetch(`${provider.url}manifest.json`)).text();
    await Deno.writeTextFile(`${work}/art/manifest.json`, manifest);
    const nginx = await startNginx(`${work}/art`, work);
    procs.push(nginx);

    // 1. Throughput: warm both once, then alternate.
    const big = "stable/x86_64/rootfs";
    await download(`${provider.url}${big}`);
    await download(`${nginx.url}${big}`);
    await download(`${nginx.noSendfileUrl}${big}`);
    const p: number[] = [];
    const n: number[] = [];
    const c: number[] = [];
    for (let i = 0; i < runs; i++) {
      p.push(await download(`${provider.url}${big}`));
      n.push(await download(`${nginx.url}${big}`));
      c.push(await download(`${nginx.noSendfileUrl}${big}`));
    }
    const tp = median(p);
    const tn = median(n);
    const tc = median(c);
    console.log(
      `download ${sizeMiB} MiB (curl, median of ${runs}): provider ${mib(tp)} MiB/s, nginx ${
        mib(tn)
      } MiB/s, ratio ${(tp / tn).toFixed(2)} (target >= 0.8); nginx without sendfile ${
        mib(tc)
      } MiB/s, ratio ${(tp / tc).toFixed(2)}`,
    );

    // 2. Manifest requests per second.
    const d = `${seconds}s`;
    const rp = await wrk(["-t2", "-c64", `-d${d}`, `${provider.url}manifest.json`]);
    const rn = await wrk(["-t2", "-c64", `-d${d}`, `${nginx.url}manifest.json`]);
    const baseline = await startBaseline(`${work}/art/manifest.json`);
    procs.push(baseline);
    const rb = await wrk(["-t2", "-c64", `-d${d}`, baseline.url]);
    await baseline.stop();
    procs.pop();
    console.log(
      `/manifest.json (wrk -t2 -c64 -d${d}): provider ${rp.toFixed(0)} req/s, nginx ${
        rn.toFixed(0)
      } req/s, ratio ${(rp / rn).toFixed(2)} (target >= 0.5); bare Deno.serve with the same bytes ${
        rb.toFixed(0)
      } req/s (provider/bare ${(rp / rb).toFixed(2)}, bare/nginx ${(rb / rn).toFixed(2)})`,
    );

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
  } finally {
    for (const proc of procs.reverse()) await proc.stop().catch(() => {});
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
