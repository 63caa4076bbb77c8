import assert from "node:assert/strict";
import { manifestUrls, resolveDownloadUrl } from "./fetch_boot_manifest.ts";
import { artifactSources } from "./fetch_artifacts.ts";

Deno.test("manifestUrls() asks for the channel's manifest first and accepts a manifest URL", () => {
  assert.deepEqual(manifestUrls("http://127.0.0.1:8080/mirror", "beta", "aarch64"), [
    "http://127.0.0.1:8080/mirror/beta/aarch64/manifest.json",
    "http://127.0.0.1:8080/mirror/manifest.json",
  ]);
  assert.deepEqual(manifestUrls("http://127.0.0.1:8080/x/m.json?y=1", "stable", "x86_64"), [
    "http://127.0.0.1:8080/x/m.json",
  ]);
  assert.throws(
    () => manifestUrls("file:///etc/passwd", "stable", "x86_64"),
    /only http and https/,
  );
  assert.throws(() => manifestUrls("not a url", "stable", "x86_64"), /not a URL/);
});

Deno.test("resolveDownloadUrl() keeps absolute URLs and puts paths below the provider", () => {
  for (
    const [ref, provider, want] of [
      ["http://127.0.0.2:9/k", "http://127.0.0.1:8080/", "http://127.0.0.2:9/k"],
      [
        "/stable/x86_64/kernel",
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/stable/x86_64/kernel",
      ],
      [
        "/stable/x86_64/kernel",
        "http://127.0.0.1:8080/a/manifest.json",
        "http://127.0.0.1:8080/stable/x86_64/kernel",
      ],
      ["kernel", "http://127.0.0.1:8080/p/", "http://127.0.0.1:8080/p/kernel"],
    ] as const
  ) {
    assert.equal(resolveDownloadUrl(ref, provider), want);
  }
});

Deno.test("artifactSources() tries an absolute URL first, then its path on every provider", () => {
  assert.deepEqual(
    artifactSources("http://127.0.0.9/stable/k", ["http://127.0.0.1:1/", "http://127.0.0.9"]),
    ["http://127.0.0.9/stable/k", "http://127.0.0.1:1/stable/k"],
  );
  assert.deepEqual(
    artifactSources("k", ["http://127.0.0.1:1", "http://127.0.0.1:2"], [
      "http://127.0.0.1:1/stable/x86_64/manifest.json",
      "http://127.0.0.1:2/stable/x86_64/manifest.json",
    ]),
    ["http://127.0.0.1:1/stable/x86_64/k", "http://127.0.0.1:2/stable/x86_64/k"],
  );
});
