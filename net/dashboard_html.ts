/**
 * The dashboard page as a string: HTML with its style and script inline, no external asset, and
 * the Content-Security-Policy that allows exactly those two (by SHA-256).
 *
 * @module
 */

const _STYLE = `
:root { color-scheme: light dark; --fg: #1d232b; --muted: #5d6875; --line: #d8dee6;
  --bg: #f6f8fa; --card: #fff; --ok: #1a7f37; --bad: #cf222e; --accent: #0b5cad; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9aa7b4; --line: #30363d;
  --bg: #0d1117; --card: #161b22; --ok: #3fb950; --bad: #f85149; --accent: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--card);
  display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
header .sub { color: var(--muted); }
main { padding: 16px 24px; display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 8px; }
h2.gap { margin-top: 14px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td { overflow-wrap: anywhere; }
.empty { color: var(--muted); font-style: italic; }
.verified, .done, .direct { color: var(--ok); font-weight: 600; }
.invalid, .failed { color: var(--bad); font-weight: 600; }
.relayed, .running, .queued { color: var(--accent); }
a { color: var(--accent); }
#status { color: var(--muted); margin-left: auto; }
#status.error { color: var(--bad); }
`;

const _SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function short(id) { return id && id.length > 20 ? id.slice(0, 8) + "\\u2026" + id.slice(-6) : id; }
function fill(dl, rows) {
  dl.replaceChildren();
  for (const [name, value, field] of rows) {
    const dd = el("dd");
    if (Array.isArray(value)) {
      if (value.length === 0) dd.append(el("span", "none", "empty"));
      for (const item of value) dd.append(el("div", item, "mono"));
    } else dd.textContent = value === null || value === undefined ? "\\u2014" : String(value);
    if (field) dd.dataset.field = field;
    dl.append(el("dt", name), dd);
  }
}
function table(tbody, items, columns, empty) {
  tbody.replaceChildren();
  if (items.length === 0) {
    const td = el("td", empty, "empty");
    td.colSpan = columns;
    const tr = el("tr");
    tr.append(td);
    tbody.append(tr);
  }
}
function render(data) {
  const n = data.node;
  $("title-peer").textContent = n.peer_id;
  const rows = [
    ["PeerId", n.peer_id, "peer_id"], ["Public key", n.public_key, "public_key"],
    ["Mode", n.mode, "mode"], ["Arch", n.arch, "arch"], ["Version", n.version, "version"],
    ["Started", n.started_at, "started_at"], ["Addresses", n.multiaddrs, "multiaddrs"],
    ["Job kinds", Object.keys(n.capabilities).join(", ") || "none", "capabilities"],
  ];
  if (n.boot) {
    for (const [key, value] of Object.entries(n.boot)) rows.push(["Boot " + key, value, "boot_" + key]);
  } else rows.push(["Boot", "not booted by Phase Boot", "boot"]);
  fill($("node"), rows);
  const w = data.worker;
  fill($("worker"), w
    ? [["Running", w.running, "running"], ["Queued", w.queued, "queued"]]
    : [["Worker", "runs no jobs for peers", "worker"]]);
  const p = data.provider;
  fill($("provider"), p
    ? [["Serving", p.http_url, "http_url"], ["Channel", p.channel, "channel"],
       ["Manifest sequence", p.manifest_sequence, "manifest_sequence"]]
    : [["Provider", "not serving boot artifacts", "provider"]]);
  const peers = $("peers");
  table(peers, data.peers, 5, "No peers connected");
  for (const peer of data.peers) {
    const tr = el("tr");
    tr.dataset.peerId = peer.peer_id;
    tr.append(el("td", peer.peer_id, "mono"), el("td", peer.connection, peer.connection),
      el("td", peer.transport), el("td", peer.direction), el("td", peer.multiaddr, "mono"));
    peers.append(tr);
  }
  const jobs = $("jobs");
  table(jobs, data.jobs, 7, "No jobs yet");
  for (const job of data.jobs) {
    const tr = el("tr");
    tr.dataset.jobId = job.job_id;
    const id = el("td", short(job.job_id), "mono");
    id.title = job.job_id;
    const worker = el("td", short(job.worker_peer_id) || "\\u2014", "mono");
    if (job.worker_peer_id) worker.title = job.worker_peer_id;
    const status = el("td", job.status === job.state ? job.status : job.status + " (" + job.state + ")", job.status);
    status.dataset.field = "status";
    if (job.error) status.title = job.error;
    const duration = el("td", job.duration_ms === null ? "\\u2014" : job.duration_ms + " ms");
    duration.dataset.field = "duration";
    const exit = el("td", job.exit_code === null ? "\\u2014" : job.exit_code);
    const receipt = el("td", job.receipt, job.receipt);
    receipt.dataset.field = "receipt";
    if (job.receipt_error) receipt.title = job.receipt_error;
    const link = el("td");
    if (job.receipt !== "none") {
      const a = el("a", "receipt.json");
      a.href = "/dashboard/jobs/" + job.job_id + "/receipt";
      a.setAttribute("download", job.job_id + ".receipt.json");
      link.append(a);
    } else link.append(el("span", "\\u2014", "empty"));
    tr.append(id, status, worker, duration, exit, receipt, link);
    jobs.append(tr);
  }
  $("status").textContent = "updated " + new Date(data.generated_at).toLocaleTimeString();
  $("status").className = "";
  document.body.dataset.state = "ready";
}
async function refresh() {
  try {
    const res = await fetch("/dashboard/data", { credentials: "same-origin", cache: "no-store" });
    if (!res.ok) throw new Error((await res.text()).trim() || "HTTP " + res.status);
    render(await res.json());
  } catch (error) {
    $("status").textContent = "cannot update: " + error.message;
    $("status").className = "error";
  }
}
refresh();
setInterval(refresh, 5000);
`;

const _BODY = `<header><h1>Plasm node</h1><span class="sub mono" id="title-peer"></span>
<span id="status">loading\u2026</span></header>
<main>
<section><h2>This node</h2><dl id="node"></dl></section>
<section><h2>Worker</h2><dl id="worker"></dl><h2 class="gap">Provider</h2><dl id="provider"></dl></section>
<section class="wide"><h2>Peers</h2><table><thead><tr><th>PeerId</th><th>Connection</th>
<th>Transport</th><th>Direction</th><th>Address</th></tr></thead><tbody id="peers"></tbody></table></section>
<section class="wide"><h2>Jobs</h2><table><thead><tr><th>Job</th><th>Status</th><th>Worker</th>
<th>Duration</th><th>Exit</th><th>Receipt</th><th></th></tr></thead><tbody id="jobs"></tbody></table></section>
</main>`;

let _cached: Promise<{ html: string; csp: string }> | undefined;

/**
 * The page and its Content-Security-Policy (computed once, on first use).
 *
 * @example
 * ```ts
 * import { dashboardPage } from "./dashboard_html.ts";
 * import assert from "node:assert/strict";
 *
 * const { html, csp } = await dashboardPage();
 * assert.match(html, /^<!doctype html>/);
 * assert.match(csp, /default-src 'none'; script-src 'sha256-[A-Za-z0-9+\/]+={0,2}'/);
 * ```
 */
export function dashboardPage(): Promise<{ html: string; csp: string }> {
  return _cached ??= (async () => {
    const hash = async (text: string) => {
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
      return `'sha256-${new Uint8Array(digest).toBase64()}'`;
    };
    const csp = [
      "default-src 'none'",
      `script-src ${await hash(_SCRIPT)}`,
      `style-src ${await hash(_STYLE)}`,
      "connect-src 'self'",
      "img-src data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; ");
    const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Plasm node</title>
<style>${_STYLE}</style></head>
<body data-state="loading">
${_BODY}
<script>${_SCRIPT}</script>
</body></html>
`;
    return { html, csp };
  })();
}
