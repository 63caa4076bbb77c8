/**
 * The remote-execution part of `start`: its flags, the execution service on the node and the
 * local API server on 127.0.0.1 (`Deno.serve` lives here, at the CLI edge).
 *
 * Flags: `--api-port N` (default 0: any free port; the URL is written to `<state>/api.json`),
 * `--no-api`, `--no-worker` (only submit, never run peers' jobs), `--max-jobs N` (jobs run at
 * once, default 2), `--max-queue N` (jobs waiting, default 16), `--allow-requester HEX`
 * (repeatable; the requester keys allowed to submit; none given: open to every peer),
 * `--worker-search-timeout DURATION` (how long a job looks for a usable worker before it fails
 * with `no worker found`, default 30s).
 *
 * Test only: with `PLASM_TEST_ONLY_TAMPER_RESULTS=flip-output-byte` in the environment AND that
 * variable granted by `--allow-env`, the worker flips a byte of every output it returns. The
 * `start` task never grants it (and runs with `--ignore-env`), so it cannot switch on by accident.
 *
 * @module
 */
import type { KeyPair } from "../runtime/ed25519.ts";
import type { PhaseNode } from "../net/node.ts";
import {
  type ExecService,
  type ExecServiceOptions,
  startExecService,
} from "../net/exec_service.ts";
import { loadOrCreateApiToken, writeApiEndpoint } from "../net/api_token.ts";
import { TAMPER_RESULTS_VALUE } from "../net/job_worker.ts";
import { parseDuration } from "./_units.ts";

/** The option specs of the execution flags. */
export const EXEC_FLAGS = {
  "api-port": { type: "string", value: "N", description: "local API port (default 0: any)" },
  "no-api": { type: "boolean", description: "no local API" },
  "no-worker": { type: "boolean", description: "only submit, never run peers' jobs" },
  "max-jobs": { type: "string", value: "N", description: "jobs run at once (default 2)" },
  "max-queue": { type: "string", value: "N", description: "jobs waiting (default 16)" },
  "allow-requester": {
    type: "string",
    multiple: true,
    value: "HEX",
    description: "a requester key allowed to submit (none: every peer)",
  },
  "worker-search-timeout": {
    type: "string",
    value: "DURATION",
    description: "fail a job with no usable worker after (default 30s)",
  },
} as const;

/** The environment variable of the test-only tamper switch. */
export const TAMPER_ENV = "PLASM_TEST_ONLY_TAMPER_RESULTS";

/** Parsed execution flags. */
export interface ExecFlags {
  /** API port (0: any), or `undefined` for no API. */
  apiPort: number | undefined;
  /** Run peers' jobs. */
  worker: boolean;
  /** Jobs running at once. */
  maxJobs: number;
  /** Jobs waiting for a slot. */
  maxQueue: number;
  /** Requester keys allowed, or `"open"`. */
  allowRequesters: "open" | string[];
  /** How long a job looks for a usable worker before it fails, in ms. */
  workerSearchTimeoutMs: number;
}

/**
 * Validate the execution flags.
 *
 * @example
 * ```ts
 * import { parseExecFlags } from "./_exec.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseExecFlags({ "max-jobs": "3" }).maxJobs, 3);
 * assert.throws(() => parseExecFlags({ "max-jobs": "x" }), RangeError);
 * ```
 */
export function parseExecFlags(values: {
  "api-port"?: string | undefined;
  "no-api"?: boolean | undefined;
  "no-worker"?: boolean | undefined;
  "max-jobs"?: string | undefined;
  "max-queue"?: string | undefined;
  "allow-requester"?: string[] | undefined;
  "worker-search-timeout"?: string | undefined;
}): ExecFlags {
  const int = (text: string | undefined, name: string, fallback: number, min: number) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > 65535) {
      throw new RangeError(`Cannot use --${name} '${text}': expected an integer from ${min}`);
    }
    return n;
  };
  const allow = values["allow-requester"] ?? [];
  for (const key of allow) {
    if (!/^[0-9a-f]{64}$/.test(key)) {
      throw new TypeError(`Cannot use --allow-requester '${key}': expected 64 lowercase hex`);
    }
  }
  return {
    apiPort: values["no-api"] ? undefined : int(values["api-port"], "api-port", 0, 0),
    worker: !values["no-worker"],
    maxJobs: int(values["max-jobs"], "max-jobs", 2, 1),
    maxQueue: int(values["max-queue"], "max-queue", 16, 0),
    allowRequesters: allow.length ? allow : "open",
    workerSearchTimeoutMs: _searchTimeout(values["worker-search-timeout"]),
  };
}

/** What {@linkcode startExec} started. */
export interface StartedExec {
  /** The API URL, when the API runs. */
  apiUrl: string | undefined;
  /** The execution service (scheduler, store, worker). */
  service: ExecService;
  /** Stop the API server and the service. */
  stop(): Promise<void>;
}

/**
 * Start the execution service on `node` and, unless disabled, the local API server.
 *
 * @example
 * ```ts
 * import { parseExecFlags, startExec } from "./_exec.ts";
 * import { startNode } from "../net/node.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const keyPair = await generateKeyPair();
 * await using node = await startNode({ secretKey: keyPair.secretKey, mdns: false, dht: false });
 * const stateDir = await Deno.makeTempDir();
 * const exec = await startExec(node, parseExecFlags({ "no-worker": true }), {
 *   keyPair, stateDir, wasm: undefined, log: () => {},
 * });
 * assert.match(exec.apiUrl!, /^http:\/\/127\.0\.0\.1:\d+\/$/);
 * await exec.stop();
 * await Deno.remove(stateDir, { recursive: true });
 * ```
 */
export async function startExec(
  node: PhaseNode,
  flags: ExecFlags,
  options: {
    keyPair: KeyPair;
    stateDir: string | undefined;
    wasm: { max_memory_bytes: number; max_duration_ms: number } | undefined;
    log: (record: Record<string, unknown>) => void;
    /** `/metrics` and `/dashboard` of the local API (see cli/start.ts). */
    api?: ExecServiceOptions["api"];
    /** The node's boot attestation (`--boot-provenance`): its receipts carry its fields. */
    bootAttestation?: ExecServiceOptions["bootAttestation"];
  },
): Promise<StartedExec> {
  const { keyPair, stateDir, wasm, log, api, bootAttestation } = options;
  let tamper = false;
  try {
    tamper = Deno.env.get(TAMPER_ENV) === TAMPER_RESULTS_VALUE;
  } catch {
    // Not granted: the switch stays off.
  }
  let canRun = flags.worker && wasm !== undefined;
  if (canRun) {
    const run = await Deno.permissions.query({ name: "run", command: Deno.execPath() });
    if (run.state !== "granted") {
      canRun = false;
      log({
        level: "error",
        event: "worker_disabled",
        reason: `running jobs needs --allow-run=${Deno.execPath()} (the sandbox process)`,
      });
    }
  }
  const apiToken = stateDir && flags.apiPort !== undefined
    ? await loadOrCreateApiToken(stateDir)
    : undefined;
  const service: ExecService = await startExecService(node, {
    keyPair,
    ...(stateDir ? { stateDir } : {}),
    worker: canRun && wasm
      ? {
        maxMemoryBytes: wasm.max_memory_bytes,
        maxDurationMs: wasm.max_duration_ms,
        maxConcurrentJobs: flags.maxJobs,
        maxQueuedJobs: flags.maxQueue,
        allowedRequesters: flags.allowRequesters,
      }
      : false,
    ...(apiToken ? { apiToken } : {}),
    ...(api ? { api } : {}),
    workerSearchTimeoutMs: flags.workerSearchTimeoutMs,
    tamperResultsForTests: tamper,
    ...(bootAttestation ? { bootAttestation } : {}),
    onLog: log,
  });
  let server: Deno.HttpServer | undefined;
  let apiUrl: string | undefined;
  try {
    if (service.handler && stateDir) {
      const handler = service.handler;
      const listening = Promise.withResolvers<Deno.NetAddr>();
      server = Deno.serve({
        hostname: "127.0.0.1",
        port: flags.apiPort ?? 0,
        onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
      }, handler);
      const addr = await listening.promise;
      apiUrl = `http://127.0.0.1:${addr.port}/`;
      await writeApiEndpoint(stateDir, apiUrl);
      log({ level: "info", event: "api_listening", url: apiUrl });
    }
  } catch (error) {
    await server?.shutdown();
    await service.stop();
    throw error;
  }
  return {
    apiUrl,
    service,
    async stop() {
      await server?.shutdown();
      await service.stop();
    },
  };
}

function _searchTimeout(text: string | undefined): number {
  if (text === undefined) return 30_000;
  const ms = parseDuration(text);
  if (ms < 1 || ms > 24 * 3600_000) {
    throw new RangeError(`Cannot use --worker-search-timeout '${text}': expected 1ms to 24h`);
  }
  return ms;
}
