/**
 * Peers cannot exhaust a node (issue 15), end to end between real `start` processes on loopback:
 * throwaway identities that hold every offer reservation of a worker do not lock out an honest
 * requester, and a worker killed with SIGKILL mid-job leaves no sandbox process behind while its
 * job is rescheduled on another worker.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type NodeProcess, ROOT, spawnLocalNode } from "./net_spawn.ts";
import { runTask } from "./_task.ts";
import { Client } from "../net/client.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";

const HELLO_PATH = join(ROOT, "examples/hello.wasm");
const HELLO = await Deno.readFile(HELLO_PATH);
/** Never ends and never calls the host: only a kill (its timeout, or its worker's death) stops it. */
const LOOP = await Deno.readFile(join(ROOT, "runtime/testdata/infinite_loop.wasm"));
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const spawnNode = (dir: string, args: string[]) => spawnLocalNode(dir, args);

/** Wait until `check` holds, at most `ms`; `what` names the condition in the error. */
async function waitFor(
  what: string | (() => string),
  check: () => Promise<boolean> | boolean,
  ms = 20_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) {
      throw new Error(
        `Timed out after ${ms} ms waiting until ${typeof what === "string" ? what : what()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const connected = (requester: NodeProcess, node: NodeProcess) =>
  requester.logs.some((l) => l.event === "peer_connected" && l.peer_id === node.peerId);

/** What a hog has heard back so far (see testdata/reservation_hog.ts). */
interface Tally {
  sent: number;
  answers: Record<string, number>;
}

/**
 * A `tests/testdata/reservation_hog.ts` process: a libp2p node with a fresh identity that keeps
 * taking a worker's offer reservations and never sends a job. Ended by closing its stdin.
 */
class Hog {
  readonly peerId: string;
  readonly tally: Tally;
  readonly #child: Deno.ChildProcess;
  readonly #read: Promise<void>;
  readonly #stderr: Promise<string>;

  private constructor(
    child: Deno.ChildProcess,
    peerId: string,
    tally: Tally,
    read: Promise<void>,
    stderr: Promise<string>,
  ) {
    this.#child = child;
    this.peerId = peerId;
    this.tally = tally;
    this.#read = read;
    this.#stderr = stderr;
  }

  /** Start a hog against the worker at `target` and wait for its PeerId. */
  static async spawn(target: string): Promise<Hog> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-read",
        "--ignore-env",
        "tests/testdata/reservation_hog.ts",
        target,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const tally: Tally = { sent: 0, answers: {} };
    const { promise: started, resolve } = Promise.withResolvers<string | undefined>();
    const read = (async () => {
      let buffer = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let index;
        while ((index = buffer.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffer.slice(0, index));
          buffer = buffer.slice(index + 1);
          if (line.event === "started") resolve(line.peer_id);
          if (line.event === "tally") {
            Object.assign(tally, { sent: line.sent, answers: line.answers });
          }
        }
      }
      resolve(undefined);
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const peerId = await Promise.race([
      started,
      new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), 30_000)),
    ]).finally(() => clearTimeout(timer));
    const hog = new Hog(child, peerId ?? "", tally, read, stderr);
    if (peerId === undefined) {
      await hog[Symbol.asyncDispose]();
      throw new Error(`reservation_hog.ts did not start: ${await stderr}`);
    }
    return hog;
  }

  /** End the hog: close its stdin, and kill it if it has not exited within 10 s. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#child.stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }, 10_000);
    try {
      await this.#child.status;
    } finally {
      clearTimeout(timer);
    }
    await Promise.allSettled([this.#read, this.#stderr]);
  }
}

Deno.test({
  name:
    "five throwaway identities holding every offer reservation cannot lock out an honest requester",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "plasm-hostile-" });
    try {
      await using stack = new AsyncDisposableStack();
      const w = stack.use(await spawnNode(`${root}/w`, []));
      const target = w.multiaddrs[0]!;
      // The requester gives up on W after 20 s: time enough for one offer to get through.
      const spawned = await Promise.allSettled([
        spawnNode(`${root}/r`, [
          "--no-worker",
          "--worker-search-timeout",
          "20s",
          "--bootstrap",
          target,
        ]),
        ...Array.from({ length: 5 }, () => Hog.spawn(target)),
      ]);
      for (const s of spawned) if (s.status === "fulfilled") stack.use(s.value);
      for (const s of spawned) if (s.status === "rejected") throw s.reason;
      const r = (spawned[0] as PromiseFulfilledResult<NodeProcess>).value;
      const hogs = spawned.slice(1).map((s) => (s as PromiseFulfilledResult<Hog>).value);
      const ids = new Set([w.peerId, r.peerId, ...hogs.map((h) => h.peerId)]);
      assert.equal(ids.size, 7, "every hog has its own identity");

      // Each hog holds places and is refused more: W's reservations are all taken.
      const tallies = () => JSON.stringify(hogs.map((h) => h.tally));
      await waitFor(
        () => `every hog holds a reservation and was refused more: ${tallies()}`,
        () =>
          hogs.every((h) =>
            (h.tally.answers.Accepted ?? 0) > 0 && (h.tally.answers.QueueFull ?? 0) > 0
          ),
        30_000,
      );
      await r.waitForLog((l) => l.event === "api_listening");
      await waitFor("the requester is connected to W", () => connected(r, w));

      const before = hogs.map((h) => h.tally.sent);
      const input = `${root}/input.txt`;
      await Deno.writeTextFile(input, "Hello, World");
      const out = await runTask("submit", [
        HELLO_PATH,
        "--input",
        input,
        "--worker",
        w.peerId,
        "--wait",
        "--json",
        "--state-dir",
        `${root}/r`,
      ]);
      assert.equal(out.code, 0, `${out.err}${out.out}; hogs: ${tallies()}`);
      const json = JSON.parse(out.out);
      assert.equal(json.stdout, "dlroW ,olleH");
      assert.equal(json.worker_peer_id, w.peerId);
      assert.equal(json.verified, true);
      // Independently: W's PeerId key signed it, for this job, module, input and output.
      await verifyReceipt(json.receipt, {
        publicKey: peerPublicKey(w.peerId),
        jobId: json.job_id,
        module: HELLO,
        input: enc("Hello, World"),
        output: enc("dlroW ,olleH"),
      });
      // The hogs kept at it all along, and never sent a job: W ran only the honest one.
      await waitFor(
        () => `every hog is still sending offers: ${tallies()}`,
        () => hogs.every((h, i) => h.tally.sent > before[i]!),
      );
      assert.deepEqual(
        w.logs.filter((l) => l.event === "job_accepted").map((l) => l.job_id),
        [json.job_id],
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** A process as `/proc/<pid>/stat` shows it. */
interface Proc {
  pid: number;
  ppid: number;
  state: string;
  /** Start time in clock ticks since boot: with the PID, it names one process for good. */
  start: number;
  /** User plus system CPU time, in clock ticks. */
  cpu: number;
}

/** Run `command` with `args`; its stdout (a failure or missing files only make it shorter). */
async function output(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdin: "null", stderr: "null" }).output();
  return dec(out.stdout);
}

/**
 * Processes as `/proc/<pid>/stat` shows them (read through `cat`: a test without `--allow-all`
 * may not read `/proc` itself); all of them, or those of `pids`.
 */
async function readProcs(pids?: number[]): Promise<Proc[]> {
  const files = pids ? pids.map((pid) => `/proc/${pid}/stat`) : ["/proc/[0-9]*/stat"];
  const text = await output("/bin/sh", ["-c", `cat ${files.join(" ")} 2>/dev/null`]);
  const procs: Proc[] = [];
  for (const line of text.split("\n")) {
    // The command name (field 2) may hold spaces and parentheses: fields go on after the last ')'.
    const close = line.lastIndexOf(")");
    const pid = Number(line.slice(0, line.indexOf(" (")));
    const f = line.slice(close + 2).split(" ");
    if (close < 0 || !Number.isSafeInteger(pid) || f.length < 20) continue;
    procs.push({
      pid,
      state: f[0]!,
      ppid: Number(f[1]),
      cpu: Number(f[11]) + Number(f[12]),
      start: Number(f[19]),
    });
  }
  return procs;
}

/** Every live descendant of `root` (children, their children, ...), with its command line. */
async function descendants(root: number): Promise<(Proc & { cmd: string })[]> {
  const all = (await readProcs()).filter((p) => p.state !== "Z");
  const found: Proc[] = [];
  const parents = [root];
  while (parents.length) {
    const parent = parents.pop()!;
    for (const proc of all.filter((p) => p.ppid === parent)) {
      found.push(proc);
      parents.push(proc.pid);
    }
  }
  if (found.length === 0) return [];
  const cmds = new Map<number, string>();
  const ps = await output("ps", [
    "-ww",
    "-o",
    "pid=,args=",
    "-p",
    found.map((p) => p.pid).join(","),
  ]);
  for (const line of ps.split("\n")) {
    const match = /^\s*(\d+)\s(.*)$/.exec(line);
    if (match) cmds.set(Number(match[1]), match[2]!);
  }
  return found.map((p) => ({ ...p, cmd: cmds.get(p.pid) ?? "" }));
}

/** True once the process `proc` named has ended (gone, a zombie, or its PID reused). */
async function ended(proc: Proc): Promise<boolean> {
  const [now] = await readProcs([proc.pid]);
  return now === undefined || now.state === "Z" || now.start !== proc.start;
}

const isSandbox = (p: { cmd: string }) => p.cmd.includes("runtime/sandbox_main.ts");

Deno.test({
  name:
    "a worker killed with SIGKILL mid-job leaves no sandbox process, and the job is rescheduled on another worker",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "plasm-hostile-" });
    let left: Proc[] = [];
    try {
      await using w1 = await spawnNode(`${root}/w1`, []);
      await using w2 = await spawnNode(`${root}/w2`, []);
      await using r = await spawnNode(`${root}/r`, [
        "--no-worker",
        ...[w1, w2].flatMap((n) => ["--bootstrap", n.multiaddrs[0]!]),
      ]);
      await r.waitForLog((l) => l.event === "api_listening");
      await waitFor(
        "the requester is connected to both workers",
        () => connected(r, w1) && connected(r, w2),
      );
      const client = new Client(await readApiEndpoint(`${root}/r`));

      // A busy loop with a timeout, pinned to nobody. Nothing in the sandbox ends it but a kill: a
      // sandbox that outlived its worker would spin on.
      const id = await client.submit(LOOP, { input: enc("kill"), timeoutMs: 4_000 });
      let victim: NodeProcess | undefined;
      await waitFor("the job starts on a worker", () => {
        victim = [w1, w2].find((n) =>
          n.logs.some((l) => l.event === "job_started" && l.job_id === id)
        );
        return victim !== undefined;
      });
      const other = victim === w1 ? w2 : w1;
      // Mid-job: one of the victim's sandbox processes is busy running the module.
      const pid = victim!.child.pid;
      const idle = new Map((await descendants(pid)).map((p) => [`${p.pid}/${p.start}`, p.cpu]));
      await waitFor(
        "a sandbox of the victim is busy",
        async () =>
          (await descendants(pid)).some((p) =>
            isSandbox(p) && p.cpu - (idle.get(`${p.pid}/${p.start}`) ?? 0) >= 20
          ),
        10_000,
      );
      const before = await descendants(pid);
      assert.ok(before.some(isSandbox), JSON.stringify(before));
      left = before;
      await victim!.stop("SIGKILL");

      // The sandbox (and every other process the worker started) ends with it.
      await waitFor(
        () => `every process of the killed worker has ended: ${JSON.stringify(left)}`,
        async () => {
          const alive = [];
          for (const p of left) if (!(await ended(p))) alive.push(p);
          left = alive;
          return left.length === 0;
        },
        20_000,
      );

      // The job is offered to the other worker and ends done there (at its timeout), verified.
      const result = await client.result(id, { waitMs: 60_000 });
      assert.equal(result.workerPeerId, other.peerId);
      assert.equal(result.error?.kind, "timeout", JSON.stringify(result.error));
      assert.equal(result.verified, true);
      const receipt = await verifyReceipt(result.receipt, {
        publicKey: peerPublicKey(other.peerId),
        jobId: id,
        module: LOOP,
        input: enc("kill"),
        output: result.output,
      });
      assert.equal(receipt.result.completion, result.completion);
      const status = await client.status(id);
      assert.equal(status.status, "done");
      assert.ok(status.attempts >= 2, JSON.stringify(status));
      const lost = r.logs.find((l) =>
        l.event === "job_attempt_failed" && l.job_id === id && l.peer_id === victim!.peerId
      );
      assert.match(String(lost?.error), /the worker connection was lost/, JSON.stringify(r.logs));
    } finally {
      // Never leave a stray sandbox behind, even when the test failed.
      for (const p of left) if (!(await ended(p))) Deno.kill(p.pid, "SIGKILL");
      await Deno.remove(root, { recursive: true });
    }
  },
});
