import assert from "node:assert/strict";
import { ArtifactStore } from "./artifact_store.ts";
import { createProviderHandler, type ProviderHandlerOptions } from "./provider_handler.ts";
import { verifyBootManifest } from "./boot_manifest.ts";
import { generateKeyPair } from "../runtime/ed25519.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";

const KERNEL = new TextEncoder().encode("0123456789abcdefghij"); // 20 bytes
const ETAG = `"${sha256Tag(KERNEL).slice(7)}"`;
const PLENTY = () => Promise.resolve({ freeBytes: 1e12, totalBytes: 2e12 });

interface Fixture {
  dir: string;
  store: ArtifactStore;
  handler: ReturnType<typeof createProviderHandler>;
  publicKey: Uint8Array;
  get: (path: string, init?: RequestInit) => Promise<Response>;
}

async function withProvider(
  fn: (f: Fixture) => Promise<void>,
  options: Partial<ProviderHandlerOptions> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plasm-handler-" });
  try {
    await Deno.mkdir(`${dir}/art/stable/x86_64`, { recursive: true });
    await Deno.writeFile(`${dir}/art/stable/x86_64/kernel`, KERNEL);
    await Deno.writeTextFile(`${dir}/art/stable/x86_64/initrd`, "");
    await Deno.writeTextFile(`${dir}/secret.txt`, "TOP SECRET");
    const keyPair = await generateKeyPair(new Uint8Array(32).fill(9));
    // A clock ahead of the files' ctime, so no hash is too recent to keep (see _racy).
    const store = new ArtifactStore(`${dir}/art`, {
      keyPair,
      now: () => new Date(Date.now() + 5000),
    });
    const handler = createProviderHandler({
      store,
      channel: "stable",
      arch: "x86_64",
      diskSpace: PLENTY,
      ...options,
    });
    const get = async (path: string, init?: RequestInit) =>
      await handler(new Request(`http://provider${path}`, init));
    await fn({ dir, store, handler, publicKey: keyPair.publicKey, get });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const range = (value: string, extra: Record<string, string> = {}) => ({
  headers: { range: value, ...extra },
});

Deno.test("GET /stable/x86_64/kernel streams the whole file with length, ranges and a strong sha256 ETag", async () => {
  await withProvider(async ({ get }) => {
    const res = await get("/stable/x86_64/kernel");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), "20");
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.equal(res.headers.get("etag"), ETAG);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), KERNEL);
  });
});

Deno.test("HEAD of an artifact gives the GET headers and no body", async () => {
  await withProvider(async ({ get }) => {
    const res = await get("/stable/x86_64/kernel", { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), "20");
    assert.equal(res.headers.get("etag"), ETAG);
    assert.equal(res.body, null);
  });
});

Deno.test("artifact aliases: /initrd and /initramfs name the same file", async () => {
  await withProvider(async ({ get }) => {
    for (const name of ["initrd", "initramfs", "initramfs.img"]) {
      const res = await get(`/stable/x86_64/${name}`);
      assert.equal(res.status, 200, name);
      assert.equal(res.headers.get("content-length"), "0");
      assert.equal(await res.text(), "");
    }
  });
});

Deno.test("If-None-Match with the ETag (also weak, in a list, or *) answers 304 without a body", async () => {
  await withProvider(async ({ get }) => {
    for (const value of [ETAG, `W/${ETAG}`, `"nope", ${ETAG}`, "*"]) {
      const res = await get("/stable/x86_64/kernel", { headers: { "if-none-match": value } });
      assert.equal(res.status, 304, value);
      assert.equal(res.headers.get("etag"), ETAG);
      assert.equal(await res.text(), "");
    }
    const other = await get("/stable/x86_64/kernel", { headers: { "if-none-match": '"nope"' } });
    assert.equal(other.status, 200);
    await other.body?.cancel();
  });
});

Deno.test("Range bytes=a-b, a-, -n give 206 with Content-Range and exactly those bytes", async () => {
  await withProvider(async ({ get }) => {
    const cases: [string, string, string][] = [
      ["bytes=0-0", "bytes 0-0/20", "0"],
      ["bytes=2-5", "bytes 2-5/20", "2345"],
      ["bytes=15-", "bytes 15-19/20", "fghij"],
      ["bytes=-3", "bytes 17-19/20", "hij"],
      ["bytes=-500", "bytes 0-19/20", "0123456789abcdefghij"],
      ["bytes=18-9999", "bytes 18-19/20", "ij"],
      ["BYTES = 1 - 2", "bytes 1-2/20", "12"],
    ];
    for (const [header, contentRange, body] of cases) {
      const res = await get("/stable/x86_64/kernel", range(header));
      assert.equal(res.status, 206, header);
      assert.equal(res.headers.get("content-range"), contentRange, header);
      assert.equal(res.headers.get("content-length"), String(body.length), header);
      assert.equal(res.headers.get("etag"), ETAG);
      assert.equal(await res.text(), body, header);
    }
  });
});

Deno.test("unsatisfiable ranges give 416 with Content-Range bytes */20", async () => {
  await withProvider(async ({ get }) => {
    for (const header of ["bytes=20-", "bytes=500-600", "bytes=500-200", "bytes=5-4", "bytes=-0"]) {
      const res = await get("/stable/x86_64/kernel", range(header));
      assert.equal(res.status, 416, header);
      assert.equal(res.headers.get("content-range"), "bytes */20", header);
      assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
      assert.match((await res.json()).error, /^Cannot serve range of 'kernel': file has 20 bytes$/);
    }
    const empty = await get("/stable/x86_64/initrd", range("bytes=0-"));
    assert.equal(empty.status, 416);
    assert.equal(empty.headers.get("content-range"), "bytes */0");
    await empty.body?.cancel();
  });
});

Deno.test("malformed, foreign-unit and multi-range headers give 200 with the whole file", async () => {
  await withProvider(async ({ get }) => {
    for (
      const header of [
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "items=0-1",
        "bytes=0-1,3-4",
        "bytes=1-2-3",
        "0-5",
      ]
    ) {
      const res = await get("/stable/x86_64/kernel", range(header));
      assert.equal(res.status, 200, header);
      assert.equal(res.headers.get("content-range"), null, header);
      assert.equal(res.headers.get("content-length"), "20");
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), KERNEL, header);
    }
  });
});

Deno.test("If-Range with another ETag ignores the Range and sends the whole file", async () => {
  await withProvider(async ({ get }) => {
    const stale = await get("/stable/x86_64/kernel", range("bytes=0-1", { "if-range": '"old"' }));
    assert.equal(stale.status, 200);
    assert.equal((await stale.arrayBuffer()).byteLength, 20);
    const fresh = await get("/stable/x86_64/kernel", range("bytes=0-1", { "if-range": ETAG }));
    assert.equal(fresh.status, 206);
    assert.equal(await fresh.text(), "01");
  });
});

Deno.test("methods other than GET and HEAD get 405 with Allow: GET, HEAD", async () => {
  await withProvider(async ({ get }) => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      for (const path of ["/", "/stable/x86_64/kernel", "/manifest.json"]) {
        const res = await get(path, { method });
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers.get("allow"), "GET, HEAD");
        const body = await res.json();
        assert.equal(body.status, 405);
        assert.match(body.error, new RegExp(`^Cannot ${method}: only GET and HEAD are allowed$`));
      }
    }
  });
});

Deno.test("path traversal in every form is refused and never reads outside the artifacts dir", async () => {
  await withProvider(async ({ get, handler }) => {
    const paths = [
      "/stable/x86_64/..%2f..%2f..%2fsecret.txt",
      "/stable/x86_64/%2e%2e%2f%2e%2e%2fsecret.txt",
      "/stable/x86_64/%2e%2e/%2e%2e/%2e%2e/secret.txt",
      "/stable/x86_64/..%5c..%5csecret.txt",
      "/stable/x86_64/%252e%252e%252fsecret.txt",
      "/stable/x86_64/kernel%00.txt",
      "/stable/x86_64/%2fetc%2fpasswd",
      "/stable/%2e%2e/kernel",
      "/%2e%2e/%2e%2e/secret.txt",
      "/stable/x86_64/.kernel",
      "/stable//kernel",
      "/stable/x86_64/kernel/",
      "//secret.txt",
      "/stable/x86_64/%E0%A4%A",
    ];
    for (const path of paths) {
      const res = await get(path);
      const text = await res.text();
      assert.ok([400, 404].includes(res.status), `${path} -> ${res.status}`);
      assert.doesNotMatch(text, /TOP SECRET/, path);
      assert.match(JSON.parse(text).error, /^Cannot /, path);
    }
    // The URL parser itself folds '..', '%2e%2e' and backslashes: they end up outside the routes.
    for (
      const path of ["/stable/x86_64/../../../secret.txt", "/stable\\x86_64\\..\\..\\secret.txt"]
    ) {
      const res = await handler(new Request(`http://provider${path}`));
      assert.ok([400, 404].includes(res.status), `${path} -> ${res.status}`);
      assert.doesNotMatch(await res.text(), /TOP SECRET/);
    }
  });
});

Deno.test("unknown channel, arch or artifact gives a JSON 404", async () => {
  await withProvider(async ({ get }) => {
    for (
      const [path, message] of [
        ["/beta/x86_64/kernel", "Cannot find artifact 'kernel' in beta/x86_64"],
        ["/stable/x86_64/rootfs", "Cannot find artifact 'rootfs' in stable/x86_64"],
        ["/stable/x86_64/secret.txt", "Cannot find artifact 'secret.txt' in stable/x86_64"],
        ["/beta/x86_64/manifest.json", "Cannot find channel 'beta' for arch 'x86_64'"],
        ["/nothing", "Cannot find '/nothing'"],
      ]
    ) {
      const res = await get(path!);
      assert.equal(res.status, 404, String(path));
      assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
      assert.deepEqual(await res.json(), { error: message, status: 404 });
    }
  });
});

Deno.test("GET /manifest.json and /stable/x86_64/manifest.json give the same verifiable signed manifest", async () => {
  await withProvider(async ({ get, publicKey }) => {
    const a = await get("/manifest.json");
    const b = await get("/stable/x86_64/manifest.json");
    assert.equal(a.status, 200);
    assert.equal(a.headers.get("content-type"), "application/json; charset=utf-8");
    const etag = a.headers.get("etag")!;
    assert.match(etag, /^"[0-9a-f]{64}"$/);
    const textA = await a.text();
    assert.equal(await b.text(), textA);
    const manifest = await verifyBootManifest(JSON.parse(textA), { trustedKeys: [publicKey] });
    assert.equal(manifest.artifacts.kernel!.hash, sha256Tag(KERNEL));
    assert.equal(manifest.artifacts.kernel!.size_bytes, 20);
    assert.equal(manifest.artifacts.initramfs!.filename, "initrd");
    assert.equal(manifest.signatures[0]!.key_id, toHex(publicKey));
    const again = await get("/manifest.json", { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
  });
});

Deno.test("a replaced artifact changes the ETag, the manifest hash and the sequence at once", async () => {
  await withProvider(async ({ get, dir }) => {
    const before = await (await get("/manifest.json")).json();
    await Deno.writeTextFile(`${dir}/art/stable/x86_64/kernel.new`, "brand new kernel");
    await Deno.rename(`${dir}/art/stable/x86_64/kernel.new`, `${dir}/art/stable/x86_64/kernel`);
    const res = await get("/stable/x86_64/kernel");
    assert.equal(res.headers.get("etag"), `"${sha256Tag("brand new kernel").slice(7)}"`);
    assert.equal(await res.text(), "brand new kernel");
    const after = await (await get("/manifest.json")).json();
    assert.equal(after.artifacts.kernel.hash, sha256Tag("brand new kernel"));
    assert.ok(after.sequence > before.sequence, `${after.sequence} > ${before.sequence}`);
  });
});

Deno.test("GET / gives provider info and /status adds health, metrics and channels", async () => {
  let clock = 1_000_000;
  await withProvider(async ({ get, publicKey }) => {
    clock += 90_500;
    const info = await (await get("/")).json();
    assert.deepEqual(info, {
      name: "plasm",
      version: "0.1.0",
      channel: "stable",
      arch: "x86_64",
      uptime_seconds: 90,
      public_key: toHex(publicKey),
      dht: "off",
    });
    await (await get("/stable/x86_64/kernel", range("bytes=0-9"))).arrayBuffer();
    await (await get("/stable/x86_64/kernel")).arrayBuffer();
    await (await get("/nope")).arrayBuffer();
    const status = await (await get("/status")).json();
    assert.equal(status.health.status, "healthy");
    assert.deepEqual(status.channels, [{ channel: "stable", arch: "x86_64" }]);
    assert.equal(status.metrics.requests_total, 5);
    assert.equal(status.metrics.bytes_served_total, 30);
    assert.equal(status.metrics.downloads_total, 2);
    assert.equal(status.metrics.downloads_active, 0);
    assert.deepEqual(status.metrics.responses_by_status, { "200": 2, "206": 1, "404": 1 });
    assert.equal(status.metrics.hashes_computed_total, 1);
  }, { now: () => clock, info: { dht: "off" } });
});

/** GET /health answers `code` with this `status` and `checks`; its body. */
async function health(
  get: (path: string) => Promise<Response>,
  want: { code: number; status: string; checks: Record<string, boolean> },
) {
  const res = await get("/health");
  assert.equal(res.status, want.code);
  const body = await res.json();
  assert.equal(body.status, want.status);
  assert.deepEqual(body.checks, want.checks);
  return body;
}

Deno.test("GET /health is 200 when artifacts are readable and disk space suffices", async () => {
  await withProvider(async ({ get }) => {
    const body = await health(get, {
      code: 200,
      status: "healthy",
      checks: {
        artifacts_readable: true,
        disk_space_ok: true,
      },
    });
    assert.equal(body.disk_free_bytes, 1e12);
  });
});

Deno.test("GET /health is 503 when free disk space is below minFreeBytes or unknown", async () => {
  for (
    const diskSpace of [
      () => Promise.resolve({ freeBytes: 1000, totalBytes: 2e12 }),
      () => Promise.reject(new Error("statfs failed")),
    ]
  ) {
    await withProvider(async ({ get }) => {
      await health(get, {
        code: 503,
        status: "unhealthy",
        checks: { artifacts_readable: true, disk_space_ok: false },
      });
    }, { diskSpace, minFreeBytes: 4096 });
  }
});

Deno.test("GET /health is 503 when the default channel has no readable artifact", async () => {
  let clock = 1_000_000;
  await withProvider(async ({ get, dir }) => {
    await Deno.remove(`${dir}/art/stable/x86_64/initrd`);
    const one = await get("/health");
    assert.equal(one.status, 200, "the kernel alone is enough");
    await one.body?.cancel();
    await Deno.remove(`${dir}/art/stable/x86_64/kernel`);
    clock += 100; // the next check (recheckMs 100)
    const gone = await get("/health");
    assert.equal(gone.status, 503);
    assert.deepEqual((await gone.json()).checks, {
      artifacts_readable: false,
      disk_space_ok: true,
    });
  }, { now: () => clock });
});

Deno.test("GET /health is measured once per recheckMs and answered from one body, without a promise, until then", async () => {
  let clock = 1_000_000;
  let measured = 0;
  let free = 1e12;
  const diskSpace = () => (measured++, Promise.resolve({ freeBytes: free, totalBytes: 2e12 }));
  await withProvider(async ({ get, handler }) => {
    const first = await get("/health");
    assert.equal(first.status, 200);
    const body = await first.text();
    assert.equal(JSON.parse(body).disk_free_bytes, 1e12);
    free = 1000;
    clock += 249;
    const cached = handler(new Request("http://provider/health"));
    assert.ok(cached instanceof Response, "a fresh answer is no promise");
    assert.equal(cached.status, 200);
    assert.equal(await cached.text(), body);
    const head = handler(new Request("http://provider/health", { method: "HEAD" }));
    assert.ok(head instanceof Response);
    assert.equal(head.headers.get("content-length"), String(body.length));
    assert.equal(head.body, null);
    assert.equal(measured, 1);
    clock += 1; // 250 ms after the first measurement: measured again
    const again = await get("/health");
    assert.equal(again.status, 503);
    assert.equal((await again.json()).disk_free_bytes, 1000);
    assert.equal(measured, 2);
    assert.equal(handler.metrics().responses_by_status["503"], 1);
    assert.equal(handler.metrics().responses_by_status["200"], 3);
  }, { diskSpace, minFreeBytes: 4096, recheckMs: 250, now: () => clock });
});

Deno.test("a cached manifest is answered until recheckMs has passed, then the replaced artifact shows", async () => {
  let clock = 1_000_000;
  await withProvider(async ({ get, handler, store, dir }) => {
    const first = await get("/manifest.json");
    const before = await first.json();
    const scans = store.metrics().scans_total;
    for (const path of ["/manifest.json", "/stable/x86_64/manifest.json"]) {
      const res = handler(new Request(`http://provider${path}`));
      assert.ok(res instanceof Response, `${path}: a fresh answer is no promise`);
      assert.equal(res.headers.get("etag"), first.headers.get("etag"));
      assert.deepEqual(await res.json(), before);
    }
    assert.equal(store.metrics().scans_total, scans, "no file was looked at");
    await Deno.writeTextFile(`${dir}/art/stable/x86_64/kernel.new`, "brand new kernel");
    await Deno.rename(`${dir}/art/stable/x86_64/kernel.new`, `${dir}/art/stable/x86_64/kernel`);
    clock += 99;
    assert.equal((await (await get("/manifest.json")).json()).sequence, before.sequence);
    clock += 1;
    const after = await (await get("/manifest.json")).json();
    assert.equal(after.artifacts.kernel.hash, sha256Tag("brand new kernel"));
    assert.ok(after.sequence > before.sequence, `${after.sequence} > ${before.sequence}`);
    assert.equal(store.metrics().scans_total, scans + 1);
  }, { now: () => clock });
});

Deno.test("a download that opens a changed artifact ends the cached manifest at once, and never serves it under the old hash", async () => {
  const clock = 1_000_000; // never moves: only the download can end the cached manifest
  await withProvider(async ({ get, dir }) => {
    const before = await (await get("/manifest.json")).json();
    const oldTag = `"${before.artifacts.kernel.hash.slice(7)}"`;
    const path = `${dir}/art/stable/x86_64/kernel`;
    await Deno.writeTextFile(`${path}.new`, "0123456789ABCDEFGHIJ"); // same size, new bytes
    await Deno.rename(`${path}.new`, path);
    const conditional = await get("/stable/x86_64/kernel", {
      headers: { "if-none-match": oldTag },
    });
    assert.equal(conditional.status, 200, "not 304: the old ETag names other bytes");
    assert.equal(
      conditional.headers.get("etag"),
      `"${sha256Tag("0123456789ABCDEFGHIJ").slice(7)}"`,
    );
    assert.equal(await conditional.text(), "0123456789ABCDEFGHIJ");
    const resumed = await get("/stable/x86_64/kernel", range("bytes=10-", { "if-range": oldTag }));
    assert.equal(resumed.status, 200, "If-Range with the old ETag gets the whole new file");
    assert.equal(await resumed.text(), "0123456789ABCDEFGHIJ");
    const after = await (await get("/manifest.json")).json();
    assert.equal(after.artifacts.kernel.hash, sha256Tag("0123456789ABCDEFGHIJ"));
    assert.ok(after.sequence > before.sequence);
  }, { now: () => clock });
});

Deno.test("a manifest check that began before a download found the artifact changed is answered but not kept", async () => {
  let clock = 1_000_000;
  await withProvider(async ({ get, store, dir }) => {
    const real = store.manifest.bind(store);
    let calls = 0;
    let computed = Promise.withResolvers<void>();
    const gate = Promise.withResolvers<void>();
    let gated = false;
    store.manifest = async (channel, arch, options) => {
      calls++;
      const manifest = await real(channel, arch, options);
      computed.resolve();
      if (gated) await gate.promise;
      return manifest;
    };
    const before = await (await get("/manifest.json")).json();
    clock += 100; // stale: the next request checks the files
    computed = Promise.withResolvers<void>();
    gated = true;
    const slow = get("/manifest.json");
    await computed.promise; // it has read the old files and now waits
    const path = `${dir}/art/stable/x86_64/kernel`;
    await Deno.writeTextFile(`${path}.new`, "brand new kernel");
    await Deno.rename(`${path}.new`, path);
    const head = await get("/stable/x86_64/kernel", { method: "HEAD" });
    assert.equal(head.headers.get("etag"), `"${sha256Tag("brand new kernel").slice(7)}"`);
    gate.resolve();
    assert.equal((await (await slow).json()).sequence, before.sequence, "answered as checked");
    assert.equal(calls, 2);
    const after = await (await get("/manifest.json")).json(); // same clock: not cached
    assert.equal(calls, 3);
    assert.equal(after.artifacts.kernel.hash, sha256Tag("brand new kernel"));
  }, { now: () => clock });
});

Deno.test("recheckMs 0 checks the files at every manifest request", async () => {
  await withProvider(async ({ get, store }) => {
    await (await get("/manifest.json")).arrayBuffer();
    const scans = store.metrics().scans_total;
    await (await get("/manifest.json")).arrayBuffer();
    await (await get("/manifest.json", { method: "HEAD" })).body?.cancel();
    assert.equal(store.metrics().scans_total, scans + 2);
  }, { recheckMs: 0 });
});

Deno.test("aborting the handler's signal ends bodies in flight and closes their files", async () => {
  const stop = new AbortController();
  await withProvider(async ({ get, handler, dir }) => {
    await Deno.writeFile(`${dir}/art/stable/x86_64/kernel`, new Uint8Array(8192));
    const res = await get("/stable/x86_64/kernel");
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(first.value!.length, 1024);
    assert.equal(handler.metrics().downloads_active, 1);
    stop.abort();
    await assert.rejects(reader.read(), /Provider is shutting down/);
    assert.equal(handler.metrics().downloads_active, 0);
    assert.equal(handler.metrics().downloads_aborted_total, 1);
    const late = await get("/stable/x86_64/kernel");
    assert.equal(late.status, 503);
    await late.body?.cancel();
  }, { signal: stop.signal, chunkBytes: 1024 });
});

Deno.test("a client that cancels a download closes the file and counts it as aborted", async () => {
  await withProvider(async ({ get, handler, dir }) => {
    await Deno.writeFile(`${dir}/art/stable/x86_64/kernel`, new Uint8Array(8192));
    const res = await get("/stable/x86_64/kernel");
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    assert.equal(handler.metrics().downloads_active, 0);
    assert.equal(handler.metrics().downloads_aborted_total, 1);
    assert.equal(handler.metrics().bytes_served_total, 1024);
  }, { chunkBytes: 1024 });
});

Deno.test("createProviderHandler() refuses bad options with clear errors", async () => {
  const store = new ArtifactStore("/nonexistent", { keyPair: await generateKeyPair() });
  assert.throws(
    () => createProviderHandler({ store, channel: "../x", arch: "x86_64" }),
    /channel and arch must be plain names, got '\.\.\/x' and 'x86_64'/,
  );
  assert.throws(
    () => createProviderHandler({ store, channel: "stable", arch: "x86_64", chunkBytes: 10 }),
    /chunkBytes must be a whole number from 1024 to 16777216, got 10/,
  );
  assert.throws(
    () => createProviderHandler({ store, channel: "stable", arch: "x86_64", recheckMs: -1 }),
    /^RangeError: Cannot create provider handler: recheckMs must be a whole number from 0 to 60000, got -1$/,
  );
});

/** `fn` with the fixture's handler served by `Deno.serve` on 127.0.0.1 (as `serve` runs it). */
async function withServed(
  fn: (f: Fixture & { url: string; port: number }) => Promise<void>,
  options: Partial<ProviderHandlerOptions> = {},
  file?: Uint8Array,
): Promise<void> {
  await withProvider(async (f) => {
    if (file) await Deno.writeFile(`${f.dir}/art/stable/x86_64/kernel`, file);
    const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: resolve }, f.handler);
    try {
      const { port } = await listening;
      await fn({ ...f, url: `http://127.0.0.1:${port}`, port });
    } finally {
      await server.shutdown();
      await _settled(f.handler);
    }
  }, options);
}

/** Wait until no download is in flight (each checks its file every few ms here). */
async function _settled(handler: Fixture["handler"]): Promise<void> {
  while (handler.metrics().downloads_active > 0) await new Promise((r) => setTimeout(r, 5));
}

/** A file of `size` bytes whose every 4-byte word is its own offset (no two chunks alike). */
function _patterned(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i + 4 <= size; i += 4) view.setUint32(i, i);
  return bytes;
}

Deno.test("under Deno.serve, whole files and ranges to the end of the file are sent by Deno from the file: first and last byte, suffixes, clamped ends, 416 past the end", async () => {
  const file = _patterned(300_000); // several of Deno's 64 KiB reads
  const size = file.length;
  await withServed(
    async ({ url, handler }) => {
      const get = async (value?: string) => {
        const res = await fetch(`${url}/stable/x86_64/kernel`, value ? range(value) : {});
        return { res, body: new Uint8Array(await res.arrayBuffer()) };
      };
      const whole = await get();
      assert.equal(whole.res.status, 200);
      assert.equal(whole.res.headers.get("content-length"), String(size));
      assert.deepEqual(whole.body, file);
      const cases: [string, number, number][] = [
        ["bytes=0-", 0, size - 1], // from the first byte
        [`bytes=${size - 1}-`, size - 1, size - 1], // the last byte
        ["bytes=-1", size - 1, size - 1],
        ["bytes=-70000", size - 70000, size - 1],
        [`bytes=-${size + 10}`, 0, size - 1], // a suffix longer than the file is the whole file
        [`bytes=123457-${size + 99}`, 123457, size - 1], // an end past the file is clamped
      ];
      for (const [value, first, last] of cases) {
        const { res, body } = await get(value);
        assert.equal(res.status, 206, value);
        assert.equal(res.headers.get("content-range"), `bytes ${first}-${last}/${size}`, value);
        assert.equal(res.headers.get("content-length"), String(last - first + 1), value);
        assert.deepEqual(body, file.subarray(first, last + 1), value);
      }
      for (const value of [`bytes=${size}-`, `bytes=${size + 5}-`, `bytes=${size}-${size + 9}`]) {
        const { res, body } = await get(value);
        assert.equal(res.status, 416, value);
        assert.equal(res.headers.get("content-range"), `bytes */${size}`, value);
        assert.equal(JSON.parse(new TextDecoder().decode(body)).status, 416);
      }
      await _settled(handler);
      const m = handler.metrics();
      assert.equal(m.downloads_direct_total, 1 + cases.length);
      assert.equal(m.downloads_total, 1 + cases.length);
      assert.equal(m.downloads_aborted_total, 0);
      const expected = cases.reduce((n, [, first, last]) => n + last - first + 1, size);
      assert.equal(m.bytes_served_total, expected);
    },
    {},
    file,
  );
});

Deno.test("under Deno.serve, a range that ends before the end of the file is streamed through JavaScript with exactly its bytes", async () => {
  const file = _patterned(300_000);
  await withServed(
    async ({ url, handler }) => {
      for (
        const [value, first, last] of [["bytes=0-0", 0, 0], [
          "bytes=65530-131080",
          65530,
          131080,
        ]] as const
      ) {
        const res = await fetch(`${url}/stable/x86_64/kernel`, range(value));
        assert.equal(res.status, 206);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), file.subarray(first, last + 1));
      }
      await _settled(handler);
      assert.equal(handler.metrics().downloads_direct_total, 0);
      assert.equal(handler.metrics().downloads_total, 2);
      assert.equal(handler.metrics().bytes_served_total, 1 + 65551);
    },
    {},
    file,
  );
});

/** Send `GET path` on a new connection; the connection is returned unread. */
async function _rawGet(port: number, path: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  return conn;
}

/** Read `conn` to its end; the number of bytes read. */
async function _drain(conn: Deno.TcpConn): Promise<number> {
  const buf = new Uint8Array(1 << 20);
  let total = 0;
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return total;
    total += n;
  }
}

Deno.test("under Deno.serve, a direct body whose client takes nothing for idleTimeoutMs is ended, and the connection closes when the client reads again", async () => {
  const size = 32 * 1024 * 1024; // far more than loopback socket buffers hold
  await withServed(
    async ({ port, handler }) => {
      const conn = await _rawGet(port, "/stable/x86_64/kernel");
      try {
        for (
          let i = 0;
          !handler.metrics().downloads_total || handler.metrics().downloads_active;
          i++
        ) {
          assert.ok(i < 500, "the stalled body was never ended");
          await new Promise((r) => setTimeout(r, 20));
        }
        const m = handler.metrics();
        assert.equal(m.downloads_direct_total, 1);
        assert.equal(m.downloads_aborted_total, 1);
        assert.ok(
          m.bytes_served_total > 0 && m.bytes_served_total < size,
          `${m.bytes_served_total}`,
        );
        // What Deno had read before it stalled is delivered, then the connection ends short.
        const got = await _drain(conn);
        assert.ok(got < size, `got ${got} of ${size} bytes`);
      } finally {
        conn.close();
      }
    },
    { idleTimeoutMs: 200 },
    new Uint8Array(size),
  );
});

Deno.test("under Deno.serve, a client that goes mid-body is counted as aborted and aborting the handler's signal ends direct bodies", async () => {
  const size = 32 * 1024 * 1024;
  const stop = new AbortController();
  await withServed(
    async ({ port, handler }) => {
      const gone = await _rawGet(port, "/stable/x86_64/kernel");
      await gone.read(new Uint8Array(65536));
      gone.close();
      await _settled(handler);
      assert.equal(handler.metrics().downloads_aborted_total, 1);
      const held = await _rawGet(port, "/stable/x86_64/kernel");
      try {
        while (handler.metrics().downloads_active === 0) await new Promise((r) => setTimeout(r, 5));
        stop.abort();
        assert.equal(handler.metrics().downloads_active, 0);
        assert.equal(handler.metrics().downloads_aborted_total, 2);
        assert.ok((await _drain(held)) < size);
      } finally {
        held.close();
      }
      assert.equal(handler.metrics().downloads_direct_total, 2);
    },
    { signal: stop.signal },
    new Uint8Array(size),
  );
});
