/**
 * Worker entry of the "worker" sandbox: started by run_job.ts with `permissions: "none"`, it
 * receives one {@linkcode SandboxJob} message, runs it and posts {@linkcode SandboxEvent}s back.
 * Importing this module (rather than starting it as a worker) does nothing.
 *
 * @module
 */
import { executeJob, type SandboxEvent, type SandboxJob } from "./sandbox_core.ts";

/**
 * Install the message handler on a worker's global scope and say `ready`.
 *
 * @param scope The worker's global scope.
 *
 * @example
 * ```ts
 * import { serveWorkerJob } from "./sandbox_worker.ts";
 * import assert from "node:assert/strict";
 *
 * const sent: unknown[] = [];
 * const scope = { onmessage: null, postMessage: (m: unknown) => sent.push(m), close() {} };
 * serveWorkerJob(scope);
 * assert.deepEqual(sent, [{ type: "ready" }]);
 * ```
 */
export function serveWorkerJob(scope: {
  onmessage: ((event: MessageEvent<SandboxJob>) => void) | null;
  postMessage(message: SandboxEvent, transfer?: Transferable[]): void;
  close(): void;
}): void {
  scope.onmessage = async (event) => {
    scope.onmessage = null;
    // The filesystem's code is loaded only for a job that has files.
    const files = event.data.files ? (await import("./wasi_fs.ts")).openJobFiles : undefined;
    executeJob(
      event.data,
      (e) => {
        if (e.type === "output") scope.postMessage(e, [e.data.buffer as ArrayBuffer]);
        else scope.postMessage(e);
      },
      undefined,
      files,
    );
    scope.close();
  };
  scope.postMessage({ type: "ready" });
}

if (import.meta.main) {
  // deno-lint-ignore no-explicit-any
  const scope = globalThis as any;
  if (typeof scope.WorkerGlobalScope === "function" && scope instanceof scope.WorkerGlobalScope) {
    serveWorkerJob(scope);
  }
}
