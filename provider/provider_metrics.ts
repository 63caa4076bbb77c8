/**
 * A boot provider's counters in the Prometheus text exposition format 0.0.4 (`GET /metrics` of
 * `serve`), written with `prom-client`. The list of metrics is in docs/operations.md.
 *
 * @module
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { ProviderMetrics } from "./provider_handler.ts";

/** The `Content-Type` of the text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Render a provider's counters (and the manifest sequence of each channel/arch it serves).
 *
 * @example
 * ```ts
 * import { renderProviderMetrics } from "./provider_metrics.ts";
 * import assert from "node:assert/strict";
 *
 * const text = await renderProviderMetrics({
 *   requests_total: 3, responses_by_status: { "200": 2, "206": 1 }, bytes_served_total: 15,
 *   downloads_active: 0, downloads_total: 2, downloads_direct_total: 1, downloads_aborted_total: 0,
 *   downloads_refused_total: 0,
 *   manifests_served_total: 1, bytes_served_by_artifact: { "stable/x86_64/kernel": 15 },
 *   range_requests: { partial: 1 }, hashes_computed_total: 1, hash_bytes_total: 10,
 *   scans_total: 1, manifests_signed_total: 1,
 * }, () => [{ channel: "stable", arch: "x86_64", sequence: 4 }]);
 * assert.match(text, /^plasm_provider_bytes_served_total\{channel="stable",arch="x86_64",artifact="kernel"\} 15$/m);
 * assert.match(text, /^plasm_provider_manifest_sequence\{channel="stable",arch="x86_64"\} 4$/m);
 * ```
 */
export async function renderProviderMetrics(
  metrics: ProviderMetrics,
  sequences: () => Promise<{ channel: string; arch: string; sequence: number }[]> | {
    channel: string;
    arch: string;
    sequence: number;
  }[],
): Promise<string> {
  const registry = new Registry();
  const registers = [registry];
  const counter = (name: string, help: string, value: number) =>
    new Counter({ name, help, registers }).inc(value);
  counter("plasm_provider_requests_total", "HTTP requests answered.", metrics.requests_total);
  const responses = new Counter({
    name: "plasm_provider_responses_total",
    help: "HTTP responses, by status code.",
    labelNames: ["code"],
    registers,
  });
  for (const [code, n] of Object.entries(metrics.responses_by_status)) {
    responses.inc({ code }, n);
  }
  const bytes = new Counter({
    name: "plasm_provider_bytes_served_total",
    help: "Body bytes of artifact downloads sent, by artifact.",
    labelNames: ["channel", "arch", "artifact"],
    registers,
  });
  for (const [key, n] of Object.entries(metrics.bytes_served_by_artifact)) {
    const [channel = "", arch = "", artifact = ""] = key.split("/");
    bytes.inc({ channel, arch, artifact }, n);
  }
  const ranges = new Counter({
    name: "plasm_provider_range_requests_total",
    help: "Artifact requests with a Range header, by answer (partial 206, unsatisfiable 416, " +
      "full 200 when the range was ignored, not_modified 304).",
    labelNames: ["result"],
    registers,
  });
  ranges.inc({ result: "partial" }, 0);
  for (const [result, n] of Object.entries(metrics.range_requests)) ranges.inc({ result }, n);
  counter(
    "plasm_provider_downloads_total",
    "Artifact bodies started (200 and 206 GETs).",
    metrics.downloads_total,
  );
  counter(
    "plasm_provider_downloads_direct_total",
    "Artifact bodies Deno sent from the file handle, no JavaScript per chunk (whole files and " +
      "ranges to the end of the file).",
    metrics.downloads_direct_total,
  );
  counter(
    "plasm_provider_download_errors_total",
    "Artifact bodies that ended before their last byte (client gone, shutdown, file shrank).",
    metrics.downloads_aborted_total,
  );
  new Gauge({
    name: "plasm_provider_downloads_active",
    help: "Artifact bodies being sent now.",
    registers,
  }).set(metrics.downloads_active);
  counter(
    "plasm_provider_manifests_served_total",
    "Boot manifest bodies served.",
    metrics.manifests_served_total,
  );
  counter(
    "plasm_provider_manifests_signed_total",
    "Boot manifests signed.",
    metrics.manifests_signed_total,
  );
  counter("plasm_provider_hashed_files_total", "Files hashed.", metrics.hashes_computed_total);
  counter("plasm_provider_hashed_bytes_total", "Bytes read for hashing.", metrics.hash_bytes_total);
  const sequence = new Gauge({
    name: "plasm_provider_manifest_sequence",
    help: "Sequence of the boot manifest served, by channel and arch.",
    labelNames: ["channel", "arch"],
    registers,
  });
  for (const s of await sequences()) {
    sequence.set({ channel: s.channel, arch: s.arch }, s.sequence);
  }
  return await registry.metrics();
}
