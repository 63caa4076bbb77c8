/**
 * The node dashboard: one HTML page served by the local API (127.0.0.1), with no framework and
 * no external asset (inline style and script, pinned by hash in a strict Content-Security-Policy).
 *
 * How the browser gets in, without the API token ever reaching it or a URL that stays valid:
 * `start` prints a link `http://127.0.0.1:PORT/dashboard?code=<one-time code>`. Opening it
 * trades the code (used once, valid 15 minutes) for a session cookie (`HttpOnly`,
 * `SameSite=Strict`, `Path=/dashboard`, 12 hours) and redirects to `/dashboard`, so the code
 * leaves the address bar and history. The page then reads `/dashboard/data` (JSON) with that
 * cookie; receipts download from `/dashboard/jobs/<id>/receipt`. A new link:
 * `POST /dashboard/link` with the API bearer token. Cookie routes answer only to a loopback
 * `Host` (127.0.0.1, localhost, [::1]), which defeats DNS rebinding; a cross-site page gets no
 * cookie (SameSite) and no CORS header.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { toHex } from "../runtime/digest.ts";
import type { Receipt } from "../runtime/receipt.ts";
import { errorMessage } from "../util/error_message.ts";
import { dashboardPage } from "./dashboard_html.ts";
import type { DashboardSnapshot } from "./dashboard_data.ts";

/** Name of the dashboard's session cookie. */
export const DASHBOARD_COOKIE = "plasm_dashboard";

/** Options of {@linkcode Dashboard}. */
export interface DashboardOptions {
  /** What the page shows, read at each `/dashboard/data` request. */
  snapshot: () => Promise<DashboardSnapshot> | DashboardSnapshot;
  /** A job's receipt for download, or `undefined`. */
  receipt: (jobId: string) => Receipt | undefined;
  /** How long a link's code can be used, in ms. @default {900000} */
  codeTtlMs?: number;
  /** How long a session lasts, in ms. @default {43200000} */
  sessionTtlMs?: number;
  /** The clock, in ms. @default {Date.now} */
  now?: () => number;
}

const _MAX_CODES = 8;
const _MAX_SESSIONS = 32;
const _LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * The dashboard's routes and its links and sessions (in memory: a restart ends every session).
 *
 * @example
 * ```ts
 * import { Dashboard } from "./dashboard.ts";
 * import assert from "node:assert/strict";
 *
 * const dashboard = new Dashboard({
 *   snapshot: () => ({ node: { peer_id: "12D3KooW...", public_key: "ab", mode: "local",
 *     multiaddrs: [], arch: "x86_64", version: "0.1.0", started_at: "", capabilities: {} },
 *     peers: [], jobs: [], worker: null, provider: null, generated_at: "" }),
 *   receipt: () => undefined,
 * });
 * const link = new URL(dashboard.link("http://127.0.0.1:8080/"));
 * const opened = await dashboard.handle(new Request(link), false);
 * assert.equal(opened.status, 303);
 * const cookie = opened.headers.get("set-cookie")!.split(";")[0]!;
 * const page = await dashboard.handle(
 *   new Request("http://127.0.0.1:8080/dashboard", { headers: { cookie } }), false);
 * assert.equal(page.status, 200);
 * assert.match(await page.text(), /<title>Plasm node<\/title>/);
 * const again = await dashboard.handle(new Request(link), false); // a code works once
 * assert.equal(again.status, 401);
 * await again.body?.cancel();
 * ```
 */
export class Dashboard {
  #o: Required<DashboardOptions>;
  #codes = new Map<string, number>();
  #sessions = new Map<string, number>();

  /**
   * Make the dashboard; options are validated.
   *
   * @example
   * ```ts
   * import { Dashboard } from "./dashboard.ts";
   * import assert from "node:assert/strict";
   *
   * assert.throws(() => new Dashboard({ snapshot: () => { throw new Error(); },
   *   receipt: () => undefined, codeTtlMs: 0 }), RangeError);
   * ```
   */
  constructor(options: DashboardOptions) {
    const {
      snapshot,
      receipt,
      codeTtlMs = 15 * 60_000,
      sessionTtlMs = 12 * 3600_000,
      now = Date.now,
    } = options;
    for (const [name, value] of Object.entries({ codeTtlMs, sessionTtlMs })) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`Cannot make dashboard: ${name} must be a positive integer`);
      }
    }
    this.#o = { snapshot, receipt, codeTtlMs, sessionTtlMs, now };
  }

  /**
   * A new one-time link to the dashboard under `base` (the API URL, such as
   * `http://127.0.0.1:8080/`). At most 8 links are open at once; older ones stop working.
   *
   * @example
   * ```ts
   * import { Dashboard } from "./dashboard.ts";
   * import assert from "node:assert/strict";
   *
   * const dashboard = new Dashboard({ snapshot: () => { throw new Error(); }, receipt: () => undefined });
   * assert.match(dashboard.link("http://127.0.0.1:8080/"),
   *   /^http:\/\/127\.0\.0\.1:8080\/dashboard\?code=[0-9a-f]{64}$/);
   * ```
   */
  link(base: string): string {
    const code = toHex(crypto.getRandomValues(new Uint8Array(32)));
    this.#prune();
    this.#codes.set(code, this.#o.now() + this.#o.codeTtlMs);
    while (this.#codes.size > _MAX_CODES) this.#codes.delete(this.#codes.keys().next().value!);
    return new URL(`dashboard?code=${code}`, base).href;
  }

  /**
   * Answer a request for `/dashboard` or below; `authorized` says whether it carried the API
   * bearer token (only `POST /dashboard/link` needs it).
   */
  async handle(request: Request, authorized: boolean): Promise<Response> {
    const url = new URL(request.url);
    await request.body?.cancel();
    if (url.pathname === "/dashboard/link") {
      if (request.method !== "POST") return _text(405, "Use POST /dashboard/link", "POST");
      if (!authorized) return _text(401, "Cannot make a link: missing or wrong bearer token");
      return _json(201, { url: this.link(url.origin + "/") });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return _text(405, "Use GET", "GET, HEAD");
    }
    if (!_LOOPBACK.has(url.hostname === "::1" ? "[::1]" : url.hostname)) {
      return _text(421, `Cannot serve the dashboard to host '${url.host}': use 127.0.0.1`);
    }
    const code = url.searchParams.get("code");
    if (url.pathname === "/dashboard" && code !== null) return this.#exchange(code);
    if (!this.#hasSession(request)) {
      return _text(
        401,
        "Cannot show the dashboard: open the link start printed, or get a new one with " +
          "POST /dashboard/link and the API token",
      );
    }
    if (url.pathname === "/dashboard") return await _page(request.method === "HEAD");
    if (url.pathname === "/dashboard/data") {
      try {
        return _json(200, await this.#o.snapshot());
      } catch (error) {
        return _json(503, { error: `Cannot read the node's state: ${errorMessage(error)}` });
      }
    }
    const receipt = /^\/dashboard\/jobs\/([0-9a-f]{64})\/receipt$/.exec(url.pathname);
    if (receipt) {
      const id = receipt[1]!;
      const found = this.#o.receipt(id);
      if (!found) return _text(404, `Cannot find a receipt for job ${id}`);
      return new Response(`${JSON.stringify(found, null, 2)}\n`, {
        headers: {
          ..._HEADERS,
          "content-type": "application/json; charset=utf-8",
          "content-disposition": `attachment; filename="${id}.receipt.json"`,
        },
      });
    }
    return _text(404, "Not found");
  }

  #exchange(code: string): Response {
    this.#prune();
    const given = new TextEncoder().encode(code);
    let match: string | undefined;
    for (const known of this.#codes.keys()) {
      const bytes = new TextEncoder().encode(known);
      if (bytes.length === given.length && timingSafeEqual(bytes, given)) match = known;
    }
    if (match === undefined) {
      return _text(
        401,
        "Cannot open the dashboard: this link was used or has expired; get a new one with " +
          "POST /dashboard/link and the API token",
      );
    }
    this.#codes.delete(match);
    const session = toHex(crypto.getRandomValues(new Uint8Array(32)));
    this.#sessions.set(session, this.#o.now() + this.#o.sessionTtlMs);
    while (this.#sessions.size > _MAX_SESSIONS) {
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
    const maxAge = Math.floor(this.#o.sessionTtlMs / 1000);
    return new Response(null, {
      status: 303,
      headers: {
        ..._HEADERS,
        location: "/dashboard",
        "set-cookie": `${DASHBOARD_COOKIE}=${session}; Path=/dashboard; HttpOnly; ` +
          `SameSite=Strict; Max-Age=${maxAge}`,
      },
    });
  }

  #hasSession(request: Request): boolean {
    this.#prune();
    const cookies = (request.headers.get("cookie") ?? "").split(";");
    for (const cookie of cookies) {
      const [name, value = ""] = cookie.trim().split("=", 2);
      if (name !== DASHBOARD_COOKIE || !/^[0-9a-f]{64}$/.test(value)) continue;
      const given = new TextEncoder().encode(value);
      for (const known of this.#sessions.keys()) {
        if (timingSafeEqual(new TextEncoder().encode(known), given)) return true;
      }
    }
    return false;
  }

  #prune(): void {
    const now = this.#o.now();
    for (const map of [this.#codes, this.#sessions]) {
      for (const [key, until] of map) if (until <= now) map.delete(key);
    }
  }
}

const _HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

async function _page(head: boolean): Promise<Response> {
  const { html, csp } = await dashboardPage();
  return new Response(head ? null : html, {
    headers: {
      ..._HEADERS,
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": csp,
      "x-frame-options": "DENY",
    },
  });
}

function _json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ..._HEADERS, "content-type": "application/json" },
  });
}

function _text(status: number, message: string, allow?: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: {
      ..._HEADERS,
      "content-type": "text/plain; charset=utf-8",
      ...(allow ? { allow } : {}),
    },
  });
}
