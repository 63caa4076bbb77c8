/**
 * `serve` started as a child process on a free loopback port, the way the boot loop and the
 * benchmarks put a provider in front of a VM or a load generator.
 *
 * @module
 */
import { readTextUntil } from "../util/read_text_until.ts";

/** Options of {@linkcode startServeProcess}. */
export interface StartServeProcessOptions {
  /** The artifacts directory served (`--artifacts`). */
  artifacts: string;
  /** The state directory (`--state-dir`); the only place the process may write. */
  stateDir: string;
  /** More flags for `serve`, e.g. `["--key", "k.key", "--no-dht"]`. @default {[]} */
  args?: string[];
}

/** A running `serve` process. */
export interface ServeProcess extends AsyncDisposable {
  /** Its base URL with a trailing slash, e.g. `http://127.0.0.1:41234/`. */
  url: string;
  /** The same without the trailing slash, e.g. `http://127.0.0.1:41234`. */
  origin: string;
  /** Its process id. */
  pid: number;
  /** Stop it (SIGTERM) and wait for it to exit. */
  stop(): Promise<void>;
}

/**
 * Start `deno run cli/serve.ts` on 127.0.0.1 with port 0 and resolve once its banner names the
 * URL; its stdout keeps being drained so that it never blocks on a full pipe.
 *
 * @throws {Error} If `serve` exits before it listens.
 *
 * @example
 * ```ts ignore
 * import { startServeProcess } from "./serve_process.ts";
 *
 * await using serve = await startServeProcess({
 *   artifacts: "/tmp/art",
 *   stateDir: "/tmp/state",
 *   args: ["--key", "/tmp/publisher.key", "--no-dht", "--no-mdns"],
 * });
 * console.log(await (await fetch(`${serve.url}manifest.json`)).text());
 * ```
 */
export async function startServeProcess(options: StartServeProcessOptions): Promise<ServeProcess> {
  const { artifacts, stateDir, args = [] } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      `--allow-write=${stateDir}`,
      "--allow-env=PLASM_HOME,XDG_DATA_HOME,HOME",
      "--allow-sys=statfs",
      new URL("../cli/serve.ts", import.meta.url).pathname,
      ...["--artifacts", artifacts, "--state-dir", stateDir],
      ...["--bind", "127.0.0.1", "--port", "0", "--arch", "x86_64"],
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const listening = /Listening on (http:\/\/127\.0\.0\.1:\d+)\//;
  const banner = await readTextUntil(reader, (text) => listening.test(text));
  const origin = listening.exec(banner)?.[1];
  if (origin === undefined) {
    await child.status;
    throw new Error(`Cannot start serve: it exited before listening: ${banner.trim()}`);
  }
  const drain = (async () => {
    while (!(await reader.read()).done) { /* keep the pipe flowing */ }
  })();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      child.kill("SIGTERM");
      await child.status;
      await drain;
    })();
  return { url: `${origin}/`, origin, pid: child.pid, stop, [Symbol.asyncDispose]: stop };
}

/**
 * Serve `kernel` and `initramfs` as channel `stable`, arch `x86_64`, with manifests signed by
 * `<dir>/publisher.key`: copies them under `<dir>/art`, keeps state in `<dir>/state`, and starts
 * `serve` without DHT or mDNS (see {@linkcode startServeProcess}).
 *
 * @example
 * ```ts ignore
 * import { serveBootStage } from "./serve_process.ts";
 *
 * await using serve = await serveBootStage("/tmp/x", "vmlinuz", "second-stage.img");
 * console.log(serve.url);
 * ```
 */
export async function serveBootStage(
  dir: string,
  kernel: string,
  initramfs: string,
): Promise<ServeProcess> {
  const art = `${dir}/art/stable/x86_64`;
  await Deno.mkdir(art, { recursive: true });
  await Deno.copyFile(kernel, `${art}/kernel`);
  await Deno.copyFile(initramfs, `${art}/initramfs`);
  await Deno.mkdir(`${dir}/state`);
  return await startServeProcess({
    artifacts: `${dir}/art`,
    stateDir: `${dir}/state`,
    args: ["--key", `${dir}/publisher.key`, "--no-dht", "--no-mdns"],
  });
}
