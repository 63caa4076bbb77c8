/**
 * Test helpers: run `cli/start.ts` and `cli/discover.ts` as real processes with their own flags.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** The project root. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** The flags `start` runs with (see cli/start.ts). */
export const START_FLAGS: string[] = [
  "--allow-net",
  "--allow-sys=networkInterfaces",
  "--allow-read",
  "--allow-write",
  "--allow-env=PLASM_HOME,XDG_DATA_HOME,HOME",
  "--ignore-env",
];

/** The flags `discover` runs with (see cli/discover.ts). */
export const DISCOVER_FLAGS: string[] = [
  "--allow-net",
  "--allow-sys=networkInterfaces",
  "--ignore-env",
];

/** `start`'s flags plus spawning the job sandbox (this deno binary, bash, bwrap), as its task has. */
export function execStartFlags(): string[] {
  return [...START_FLAGS, `--allow-run=${Deno.execPath()},/bin/bash,/usr/bin/bwrap`];
}

/**
 * Spawn a `start` on 127.0.0.1 without mDNS, its state in `dir`, then `args`, and wait for its
 * `started` line. `flags`: {@linkcode execStartFlags} unless given.
 */
export function spawnLocalNode(
  dir: string,
  args: string[] = [],
  options: { flags?: string[]; env?: Record<string, string> } = {},
): Promise<NodeProcess> {
  const { flags = execStartFlags(), env = {} } = options;
  return NodeProcess.spawn(
    ["--state-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", ...args],
    { flags, env },
  );
}

/**
 * A worker node `a` in `<root>/a` and a requester `b` in `<root>/b` (`--no-worker`) bootstrapped
 * from it, both spawned with {@linkcode spawnLocalNode}; disposing stops `b`, then `a`, then,
 * with `removeRoot`, removes `root` (also when spawning fails).
 */
export async function spawnWorkerAndRequester(
  root: string,
  options: { removeRoot?: boolean } = {},
): Promise<{ a: NodeProcess; b: NodeProcess } & AsyncDisposable> {
  const { removeRoot = false } = options;
  const remove = () => removeRoot ? Deno.remove(root, { recursive: true }) : Promise.resolve();
  let a: NodeProcess;
  try {
    a = await spawnLocalNode(`${root}/a`);
  } catch (error) {
    await remove();
    throw error;
  }
  let b: NodeProcess;
  try {
    b = await spawnLocalNode(`${root}/b`, ["--no-worker", "--bootstrap", a.multiaddrs[0]!]);
  } catch (error) {
    await a[Symbol.asyncDispose]().finally(remove);
    throw error;
  }
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      try {
        await b[Symbol.asyncDispose]();
      } finally {
        await a[Symbol.asyncDispose]().finally(remove);
      }
    },
  };
}

/** A `start` process: its PeerId and addresses from the `started` line, and its log lines. */
export class NodeProcess {
  readonly child: Deno.ChildProcess;
  readonly peerId: string;
  readonly multiaddrs: string[];
  /** The whole `started` line. */
  readonly started: Record<string, unknown>;
  readonly logs: Record<string, unknown>[];
  readonly #stderrDone: Promise<void>;
  readonly waiters: Set<() => void>;
  #exit: Promise<Deno.CommandStatus>;

  private constructor(
    child: Deno.ChildProcess,
    started: { peer_id: string; multiaddrs: string[] } & Record<string, unknown>,
    logs: Record<string, unknown>[],
    stderrDone: Promise<void>,
    waiters: Set<() => void>,
  ) {
    this.waiters = waiters;
    this.child = child;
    this.started = started;
    this.peerId = started.peer_id;
    this.multiaddrs = started.multiaddrs;
    this.logs = logs;
    this.#stderrDone = stderrDone;
    this.#exit = child.status;
  }

  /**
   * Spawn `start` with `args` and wait for its `started` line. `spawn` launches it elsewhere
   * (such as a netsim host's `spawn`), with stdin null and stdout/stderr piped.
   */
  static async spawn(
    args: string[],
    options: {
      env?: Record<string, string>;
      flags?: string[];
      spawn?: (
        command: string,
        options: { args: string[]; cwd: string; env: Record<string, string> },
      ) => Deno.ChildProcess;
    } = {},
  ): Promise<NodeProcess> {
    const command = {
      args: ["run", ...(options.flags ?? START_FLAGS), "cli/start.ts", ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1", ...options.env },
    };
    const child = options.spawn
      ? options.spawn(Deno.execPath(), command)
      : new Deno.Command(Deno.execPath(), {
        ...command,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    const logs: Record<string, unknown>[] = [];
    const waiters = new Set<() => void>();
    const stderrDone = (async () => {
      for await (const line of _lines(child.stderr)) {
        try {
          logs.push(JSON.parse(line));
        } catch {
          logs.push({ raw: line });
        }
        for (const wake of waiters) wake();
      }
    })();
    const stdout = _lines(child.stdout);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      stdout.next(),
      new Promise<IteratorResult<string>>((resolve) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve({ done: true, value: undefined });
        }, 30_000);
      }),
    ]).finally(() => clearTimeout(timer));
    // Drain the rest of stdout so the pipe never fills.
    (async () => {
      for await (const _ of stdout);
    })();
    if (first.done) {
      await stderrDone;
      await child.status;
      throw new Error(`start exited before starting: ${JSON.stringify(logs)}`);
    }
    return new NodeProcess(child, JSON.parse(first.value), logs, stderrDone, waiters);
  }

  /** Wait until a log line satisfies `predicate`. */
  waitForLog(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs = 15_000,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.logs.find(predicate);
        if (hit) {
          cleanup();
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out waiting for a log line; have ${JSON.stringify(this.logs)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Send `signal` and wait for exit; returns the exit code and how long the exit took. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<{ code: number; ms: number }> {
    const t0 = performance.now();
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    const status = await this.#exit;
    const ms = performance.now() - t0;
    await this.#stderrDone;
    return { code: status.code, ms };
  }

  /** Kill hard if still running (for cleanup in `finally`). */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.#exit;
    await this.#stderrDone;
  }
}

/** Run `discover` with `args`; returns exit code, stdout and stderr. */
export async function runDiscover(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...DISCOVER_FLAGS, "cli/discover.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    ms: performance.now() - t0,
  };
}

async function* _lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let index;
    while ((index = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, index);
      buffer = buffer.slice(index + 1);
    }
  }
  if (buffer) yield buffer;
}
