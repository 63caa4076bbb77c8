/**
 * Prometheus metrics of a node (`GET /metrics` on the local API), in the text exposition format
 * 0.0.4, with `prom-client`: jobs by outcome, job durations, fuel, queue depth, peers by
 * connection and transport, and libp2p's own metrics (`libp2p_*`, from
 * `@libp2p/prometheus-metrics`, wired through `startNode({ metrics })`).
 *
 * Job counters are fed from the node's structured log records ({@linkcode NodeMetrics.observe}):
 * the events the log shows (`job_ran`, `job_done`, `job_failed`) are what is counted, so the
 * metrics and the log never disagree. Gauges (queue, peers) are read at each scrape. The list of
 * metrics, their types and labels is in docs/operations.md.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { prometheusMetrics } from "@libp2p/prometheus-metrics";
import { type ConnectionLike, peerConnections } from "./metrics_peers.ts";

/** Outcomes of a job run by this node, the `outcome` label of `plasm_jobs_total`. */
export const JOB_OUTCOMES: readonly string[] = [
  "ok",
  "exit_nonzero",
  "output_limit",
  "cancelled",
  "timeout",
  "memory_limit",
  "fuel_exhausted",
  "trap",
  "stack_overflow",
  "invalid_module",
  "module_too_large",
  "no_start",
  "error",
];

/** Outcomes of a job this node submitted, the `outcome` label of `plasm_requested_jobs_total`. */
export const REQUESTED_OUTCOMES: readonly string[] = [
  "done",
  "no_worker_found",
  "workers_failed",
  "not_verified",
  "replicas_disagree",
  "internal",
  "failed",
];

/** What the scrape-time gauges read; every part is optional. */
export interface NodeMetricsSources {
  /** The node's open connections (`libp2p.getConnections()`). */
  connections?: () => Iterable<ConnectionLike>;
  /** The worker's slots: jobs running and places taken in its queue. */
  worker?: () => { running: number; queued: number } | undefined;
  /** Jobs this node submitted that are not finished yet. */
  pendingJobs?: () => number;
}

/** Options of {@linkcode NodeMetrics}. */
export interface NodeMetricsOptions {
  /** Labels of `plasm_node_info` (such as `version` and `mode`). @default {{}} */
  info?: Record<string, string>;
  /** Upper bounds of the job duration histogram, in seconds. @default {[0.01 ... 300]} */
  durationBuckets?: number[];
}

/**
 * The metrics registry of one node.
 *
 * @example
 * ```ts
 * import { NodeMetrics } from "./metrics.ts";
 * import assert from "node:assert/strict";
 *
 * const metrics = new NodeMetrics({ info: { mode: "local" } });
 * metrics.observe({ event: "job_ran", completion: "stop", exit_code: 0, duration_ms: 12 });
 * metrics.observe({ event: "job_ran", completion: "error", error_kind: "timeout", duration_ms: 5 });
 * const text = await metrics.render();
 * assert.match(text, /^plasm_jobs_total\{outcome="ok"\} 1$/m);
 * assert.match(text, /^plasm_jobs_total\{outcome="timeout"\} 1$/m);
 * assert.match(text, /^plasm_job_duration_seconds_count 2$/m);
 * ```
 */
export class NodeMetrics {
  /** The prom-client registry (ours and libp2p's metrics). */
  readonly registry: Registry = new Registry();
  #sources: NodeMetricsSources = {};
  #jobs: Counter<"outcome">;
  #duration: Histogram;
  #fuel: Counter;
  #requested: Counter<"outcome">;

  /**
   * Make the registry and its metrics; nothing runs until a scrape.
   *
   * @example
   * ```ts
   * import { NodeMetrics } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const metrics = new NodeMetrics();
   * assert.match(await metrics.render(), /^# TYPE plasm_peers gauge$/m);
   * ```
   */
  constructor(options: NodeMetricsOptions = {}) {
    const {
      info = {},
      durationBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    } = options;
    const registers = [this.registry];
    /** A counter by outcome, its `shown` outcome at 0 before the first one counts. */
    const byOutcome = (name: string, help: string, shown: string) => {
      const counter = new Counter({ name, help, labelNames: ["outcome"], registers });
      counter.inc({ outcome: shown }, 0);
      return counter;
    };
    this.#jobs = byOutcome("plasm_jobs_total", "Jobs this node ran as a worker, by outcome.", "ok");
    this.#duration = new Histogram({
      name: "plasm_job_duration_seconds",
      help: "Wall-clock time of the jobs this node ran, from start to outcome.",
      buckets: durationBuckets,
      registers,
    });
    this.#fuel = new Counter({
      name: "plasm_job_fuel_used_total",
      help: "WebAssembly instructions executed by the metered jobs this node ran.",
      registers,
    });
    this.#requested = byOutcome(
      "plasm_requested_jobs_total",
      "Jobs this node submitted (local API) that finished, by outcome.",
      "done",
    );
    const sources = () => this.#sources;
    // Gauges read from the attached sources at each scrape.
    for (
      const [name, help, read] of [
        [
          "plasm_job_queue_depth",
          "Places taken in the worker's queue: jobs waiting for a slot and accepted offers.",
          (s) => s.worker?.()?.queued,
        ],
        ["plasm_jobs_running", "Jobs the worker runs now.", (s) => s.worker?.()?.running],
        [
          "plasm_requested_jobs_pending",
          "Jobs this node submitted that are not finished (queued or running).",
          (s) => s.pendingJobs?.(),
        ],
      ] satisfies [string, string, (s: NodeMetricsSources) => number | undefined][]
    ) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(sources()) ?? 0);
        },
      });
    }
    new Gauge({
      name: "plasm_peers",
      help: "Connected peers, by connection (direct or relayed) and transport.",
      labelNames: ["connection", "transport"],
      registers,
      collect() {
        this.reset();
        this.set({ connection: "direct", transport: "tcp" }, 0);
        const connections = sources().connections?.() ?? [];
        for (const peer of peerConnections(connections)) {
          this.inc({ connection: peer.connection, transport: peer.transport });
        }
      },
    });
    const infoLabels = Object.keys(info);
    const infoGauge = new Gauge({
      name: "plasm_node_info",
      help: "Always 1; the labels describe the node.",
      labelNames: infoLabels,
      registers,
    });
    infoGauge.set(info, 1);
  }

  /**
   * Say where the scrape-time gauges read from (call again to replace).
   *
   * @example
   * ```ts
   * import { NodeMetrics } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const metrics = new NodeMetrics();
   * metrics.attach({
   *   worker: () => ({ running: 1, queued: 3 }),
   *   pendingJobs: () => 2,
   *   connections: () => [{ remotePeer: "A", remoteAddr: "/ip4/127.0.0.1/tcp/1/p2p/A" }],
   * });
   * const text = await metrics.render();
   * assert.match(text, /^plasm_job_queue_depth 3$/m);
   * assert.match(text, /^plasm_jobs_running 1$/m);
   * assert.match(text, /^plasm_requested_jobs_pending 2$/m);
   * assert.match(text, /^plasm_peers\{connection="direct",transport="tcp"\} 1$/m);
   * ```
   */
  attach(sources: NodeMetricsSources): void {
    this.#sources = { ...sources };
  }

  /**
   * Count what a node log record reports: `job_ran` (a job this node ran: outcome, duration,
   * `fuel_used`), `job_done` and `job_failed` (a job it submitted). Other records are ignored,
   * so the node's whole log stream can be passed through.
   */
  observe(record: Record<string, unknown>): void {
    switch (record.event) {
      case "job_ran": {
        this.#jobs.inc({ outcome: _outcome(record) });
        const ms = Number(record.duration_ms);
        if (Number.isFinite(ms) && ms >= 0) this.#duration.observe(ms / 1000);
        const fuel = typeof record.fuel_used === "string" || typeof record.fuel_used === "number"
          ? Number(record.fuel_used)
          : NaN;
        if (Number.isFinite(fuel) && fuel > 0) this.#fuel.inc(fuel);
        break;
      }
      case "job_done":
        this.#requested.inc({ outcome: "done" });
        break;
      case "job_failed": {
        const kind = String(record.kind);
        this.#requested.inc({ outcome: REQUESTED_OUTCOMES.includes(kind) ? kind : "failed" });
        break;
      }
    }
  }

  /**
   * libp2p's metrics (`libp2p_*`, from `@libp2p/prometheus-metrics`) into this registry: pass
   * as `startNode({ metrics })`. Process-level metrics are left out (prom-client's defaults
   * read values Deno does not report), and so are the two that need `--allow-sys`
   * (`nodejs_memory_total_bytes`, `nodejs_fs_usage_bytes`), which `start` does not have.
   */
  libp2pMetrics(): (components: never) => unknown {
    const factory = prometheusMetrics({
      registry: this.registry,
      collectDefaultMetrics: false,
    });
    return (components: never) => {
      // The constructor reads the total memory (os.totalmem) once, which needs
      // --allow-sys=systemMemoryInfo; without it, lend a placeholder and drop that metric.
      const allowed = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" });
      const deno = Deno as unknown as { systemMemoryInfo: () => unknown };
      const original = deno.systemMemoryInfo;
      if (allowed.state !== "granted") {
        deno.systemMemoryInfo = () => ({ ...(_ZERO_MEMORY as object) });
      }
      try {
        return factory(components);
      } finally {
        deno.systemMemoryInfo = original;
        if (allowed.state !== "granted") {
          this.registry.removeSingleMetric("nodejs_memory_total_bytes");
        }
        // statfs of the working directory, at each scrape: needs --allow-sys=statfs.
        this.registry.removeSingleMetric("nodejs_fs_usage_bytes");
      }
    };
  }

  /** The `Content-Type` of {@linkcode NodeMetrics.render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * All metrics in the text exposition format 0.0.4.
   *
   * @example
   * ```ts
   * import { NodeMetrics } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const metrics = new NodeMetrics();
   * metrics.observe({ event: "job_failed", kind: "no_worker_found" });
   * assert.match(await metrics.render(), /^plasm_requested_jobs_total\{outcome="no_worker_found"\} 1$/m);
   * ```
   */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

const _ZERO_MEMORY = {
  total: 0,
  free: 0,
  available: 0,
  buffers: 0,
  cached: 0,
  swapTotal: 0,
  swapFree: 0,
};

/** The `outcome` label of a `job_ran` record. */
function _outcome(record: Record<string, unknown>): string {
  switch (record.completion) {
    case "stop":
      return record.exit_code === 0 ? "ok" : "exit_nonzero";
    case "length":
      return "output_limit";
    case "cancelled":
      return "cancelled";
  }
  const kind = String(record.error_kind ?? "error");
  return JOB_OUTCOMES.includes(kind) ? kind : "error";
}
