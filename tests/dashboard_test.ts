/**
 * The node dashboard in a real browser: headless Chromium (Debian's `chromium`) opens the link a
 * running `start` printed, after the node ran a job and a peer connected, and the rendered DOM
 * shows them; a screenshot is kept at `.ci/artifacts/dashboard.png`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./net_spawn.ts";
import { nodesAfterJobs } from "./_nodes_after_jobs.ts";

const HELLO = join(ROOT, "examples/hello.wasm");
const ARTIFACTS = join(ROOT, ".ci/artifacts");

/** Run headless Chromium with `args`; `undefined` when it is missing outside CI. */
async function chromium(args: string[]): Promise<string | undefined> {
  const profile = await Deno.makeTempDir({ prefix: "plasm-chromium-" });
  try {
    const out = await new Deno.Command("chromium", {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=5000",
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    if (Deno.env.get("CI") === "true") throw new Error("chromium is missing (CI)");
    console.log("skipped the browser checks: apt-get install chromium");
    return undefined;
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

Deno.test({
  name: "the dashboard link start prints renders node, peers and a verified job in Chromium",
  async fn() {
    await using nodes = await nodesAfterJobs("plasm-dashboard-", [[HELLO]]);
    const { a, b, api, token, runs: [ran] } = nodes;
    const link = String(a.started.dashboard_url);
    assert.match(link, new RegExp(`^${api}dashboard\\?code=[0-9a-f]{64}$`));
    assert.equal(ran?.code, 0, ran?.err ?? "");

    // Without a session or with a bad code: no dashboard, no data.
    for (const path of ["dashboard", "dashboard/data", `dashboard?code=${"0".repeat(64)}`]) {
      const res = await fetch(`${api}${path}`);
      assert.equal(res.status, 401, path);
      await res.body?.cancel();
    }

    const dom = await chromium(["--dump-dom", link]);
    if (dom === undefined) return;
    assert.match(dom, /<body data-state="ready">/);
    assert.match(dom, new RegExp(`<dd data-field="peer_id">${a.peerId}</dd>`));
    assert.match(dom, /<dd data-field="mode">internet<\/dd>/);
    assert.match(dom, new RegExp(`<tr data-peer-id="${b.peerId}">.*?>direct<.*?>tcp<`));
    const rows = [...dom.matchAll(/<tr data-job-id="([0-9a-f]{64})">(.*?)<\/tr>/g)];
    assert.equal(rows.length, 1, dom);
    const [, jobId, row] = rows[0]!;
    assert.match(row!, /<td class="done" data-field="status">done<\/td>/);
    assert.match(row!, /<td class="verified" data-field="receipt">verified<\/td>/);
    assert.match(row!, new RegExp(`href="/dashboard/jobs/${jobId}/receipt"`));

    // The printed link worked once; a new one comes from POST /dashboard/link and the token.
    const reused = await fetch(link, { redirect: "manual" });
    assert.equal(reused.status, 401);
    await reused.body?.cancel();
    const minted = await fetch(`${api}dashboard/link`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(minted.status, 201);
    const { url } = await minted.json();
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const png = join(ARTIFACTS, "dashboard.png");
    await Deno.remove(png).catch(() => {});
    await chromium([`--screenshot=${png}`, "--window-size=1280,900", url]);
    const bytes = await Deno.readFile(png);
    assert.deepEqual([...bytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    console.log(`dashboard screenshot: ${png}`);
  },
});
