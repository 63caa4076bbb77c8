/**
 * `GET /metrics` of real `start` and `serve` processes after real jobs and downloads: the text
 * is valid for `promtool check metrics` (Debian's `prometheus`) and counts what happened.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./net_spawn.ts";
import { taskArgs } from "./_task.ts";
import { nodesAfterJobs } from "./_nodes_after_jobs.ts";

const PROBE = join(ROOT, "runtime/testdata/wasi_probe.wasm");
const HELLO = join(ROOT, "examples/hello.wasm");

/** Run `promtool check metrics` on `text`; `undefined` when promtool is missing outside CI. */
async function promtool(text: string): Promise<{ code: number; out: string } | undefined> {
  let child;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    if (Deno.env.get("CI") === "true") throw new Error("promtool is missing (CI)");
    console.log("skipped promtool checks: apt-get install prometheus");
    return undefined;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/**
 * The whole text parses (promtool exit 0, or 3 for lint findings only) and every lint finding
 * is about libp2p's own metric names (upstream's naming, e.g. a gauge ending in `_total`);
 * our `plasm_*` metrics alone are lint-clean.
 */
async function assertPromtoolClean(text: string): Promise<void> {
  const all = await promtool(text);
  if (!all) return;
  assert.ok(all.code === 0 || all.code === 3, all.out);
  for (const line of all.out.split("\n").filter(Boolean)) {
    assert.match(line, /^libp2p_\w+ /, `lint finding outside libp2p's metrics: ${line}`);
  }
  const ours = text.split(/\n(?=# HELP )/).filter((block) => block.startsWith("# HELP plasm_"))
    .join("\n");
  const clean = await promtool(ours.endsWith("\n") ? ours : `${ours}\n`);
  assert.deepEqual(clean, { code: 0, out: "" });
}

/** The value of the one sample named exactly `series` (name and labels) in `text`. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no sample ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

Deno.test({
  name: "start's /metrics counts jobs by outcome, durations, fuel and peers, and passes promtool",
  async fn() {
    await using nodes = await nodesAfterJobs("plasm-metrics-", [
      [HELLO],
      [HELLO, "--fuel", "100000"],
      [PROBE, "--arg", "exit", "--arg", "7"],
    ]);
    const { api, token } = nodes;
    assert.deepEqual(nodes.runs.map((run) => run.code), [0, 0, 7]);

    const denied = await fetch(`${api}metrics`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const res = await fetch(`${api}metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    assert.equal(sample(text, 'plasm_jobs_total{outcome="ok"}'), 2);
    assert.equal(sample(text, 'plasm_jobs_total{outcome="exit_nonzero"}'), 1);
    assert.equal(sample(text, "plasm_job_duration_seconds_count"), 3);
    assert.equal(sample(text, 'plasm_job_duration_seconds_bucket{le="+Inf"}'), 3);
    assert.ok(sample(text, "plasm_job_fuel_used_total") > 0, "fuel of the metered job");
    assert.equal(sample(text, 'plasm_requested_jobs_total{outcome="done"}'), 3);
    assert.equal(sample(text, "plasm_requested_jobs_pending"), 0);
    assert.equal(sample(text, "plasm_job_queue_depth"), 0);
    assert.equal(sample(text, 'plasm_peers{connection="direct",transport="tcp"}'), 1);
    assert.equal(sample(text, 'plasm_node_info{version="0.1.0",mode="internet"}'), 1);
    // libp2p's own metrics, from @libp2p/prometheus-metrics.
    assert.match(text, /^# TYPE libp2p_connection_manager_connections gauge$/m);
    assert.match(text, /^libp2p_data_transfer_bytes_total\{protocol="global sent"\} \d+$/m);
    await assertPromtoolClean(text);
  },
});

Deno.test({
  name:
    "serve's public /metrics counts bytes per artifact, range requests and the manifest sequence",
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "plasm-metrics-serve-" });
    await Deno.mkdir(`${root}/art/stable/x86_64`, { recursive: true });
    await Deno.writeTextFile(`${root}/art/stable/x86_64/kernel`, "0123456789");
    await Deno.writeTextFile(`${root}/art/stable/x86_64/initramfs`, "abcdef");
    const child = new Deno.Command(Deno.execPath(), {
      args: await taskArgs("serve", [
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--artifacts",
        `${root}/art`,
        "--arch",
        "x86_64",
        "--no-dht",
        "--no-mdns",
        "--min-free",
        "0",
        "--state-dir",
        `${root}/state`,
      ]),
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let banner = "";
    try {
      while (!/^Listening on /m.test(banner)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`serve exited: ${banner}`);
        banner += value;
      }
      const url = /^Listening on (\S+)$/m.exec(banner)![1]!;
      const get = async (path: string, headers: Record<string, string> = {}) => {
        const res = await fetch(`${url}${path}`, { headers });
        await res.arrayBuffer();
        return res.status;
      };
      assert.equal(await get("manifest.json"), 200);
      assert.equal(await get("stable/x86_64/kernel"), 200);
      assert.equal(await get("stable/x86_64/kernel", { range: "bytes=2-5" }), 206);
      assert.equal(await get("stable/x86_64/kernel", { range: "bytes=50-" }), 416);
      assert.equal(await get("stable/x86_64/initramfs", { range: "bytes=-2" }), 206);
      const res = await fetch(`${url}metrics`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      const text = await res.text();
      const bytes = (artifact: string) =>
        sample(
          text,
          `plasm_provider_bytes_served_total{channel="stable",arch="x86_64",artifact="${artifact}"}`,
        );
      assert.equal(bytes("kernel"), 10 + 4);
      assert.equal(bytes("initramfs"), 2);
      assert.equal(sample(text, 'plasm_provider_range_requests_total{result="partial"}'), 2);
      assert.equal(sample(text, 'plasm_provider_range_requests_total{result="unsatisfiable"}'), 1);
      assert.equal(sample(text, "plasm_provider_downloads_total"), 3);
      assert.equal(sample(text, "plasm_provider_download_errors_total"), 0);
      assert.equal(sample(text, 'plasm_provider_responses_total{code="416"}'), 1);
      assert.equal(sample(text, "plasm_provider_manifests_served_total"), 1);
      const manifest = await (await fetch(`${url}manifest.json`)).json();
      assert.equal(
        sample(text, 'plasm_provider_manifest_sequence{channel="stable",arch="x86_64"}'),
        manifest.sequence,
      );
      await assertPromtoolClean(text);
    } finally {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
      await Deno.remove(root, { recursive: true });
    }
  },
});
