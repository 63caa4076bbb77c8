/**
 * The VM harness of Phase Boot's tests and benchmarks: boot a kernel and initramfs under
 * `qemu-system-x86_64` (TCG, serial console on stdio, user-mode network in which the host's
 * 127.0.0.1 is 10.0.2.2, or a TAP device inside a network namespace), collect the console, stop
 * on a marker, kill on timeout.
 *
 * @module
 */

/** Options of {@linkcode runVm}. */
export interface RunVmOptions {
  /** The kernel (bzImage) to boot. */
  kernel: string;
  /** The initramfs. */
  initrd: string;
  /** The kernel command line; `console=ttyS0` is what makes the console readable. */
  append: string;
  /** Guest memory in MiB. @default {1024} */
  memoryMb?: number;
  /** Kill the VM after this long. @default {180_000} */
  timeoutMs?: number;
  /** Stop the VM as soon as the console shows this. @default {undefined} (wait for it to exit) */
  until?: RegExp;
  /** Record when the console first shows each pattern (ms after start). @default {{}} */
  marks?: Record<string, RegExp>;
  /** Guest clock start (`-rtc base=`), e.g. `2030-01-01T00:00:00`. @default {undefined} (host UTC) */
  rtcBase?: string;
  /** The qemu binary. @default {"qemu-system-x86_64"} */
  qemu?: string;
  /** Forward host 127.0.0.1 ports to guest ports (user-mode network). @default {[]} */
  hostForwards?: { host: number; guest: number }[];
  /**
   * Put the NIC on a TAP device instead of user-mode networking: qemu runs inside `namespace`
   * (`ip netns exec`) and attaches to the existing TAP `ifname` there (e.g. a netsim
   * `world.addTap()`), with `mac` for the guest. The guest then needs DHCP on that segment.
   * @default {undefined} (user-mode network)
   */
  tap?: { namespace: string; ifname: string; mac?: string };
  /** Called with each piece of console output as it arrives. @default {undefined} */
  onOutput?: (text: string) => void;
  /** Cancel: the VM is killed and the promise rejects. @default {undefined} */
  signal?: AbortSignal;
}

/** What a VM run showed. */
export interface VmRun {
  /** Everything the serial console printed. */
  output: string;
  /** Why it ended: qemu exited by itself, `until` matched, or the timeout hit. */
  ended: "exited" | "matched" | "timeout";
  /** qemu's exit code, or `null` when it was killed. */
  code: number | null;
  /** Milliseconds from start to the end. */
  ms: number;
  /** For each of `marks`, milliseconds from start to its first appearance, if it appeared. */
  marks: Record<string, number>;
}

/**
 * Whether `qemu-system-x86_64` (or the given binary) can be run.
 *
 * @example
 * ```ts
 * import { qemuAvailable } from "./qemu.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await qemuAvailable("qemu-that-does-not-exist"), false);
 * ```
 */
export async function qemuAvailable(qemu = "qemu-system-x86_64"): Promise<boolean> {
  try {
    const out = await new Deno.Command(qemu, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Boot a VM and collect its console until it powers off, `until` matches, or time runs out.
 * The qemu process is always gone when this returns or throws.
 *
 * @example
 * ```ts ignore
 * import { runVm } from "./qemu.ts";
 *
 * const run = await runVm({
 *   kernel: "boot/build/vmlinuz",
 *   initrd: "boot/build/second-stage.cpio.gz",
 *   append: "console=ttyS0 panic=-1",
 *   until: /PHASE-SECOND-STAGE-OK/,
 * });
 * console.log(run.ended, run.ms);
 * ```
 */
export async function runVm(options: RunVmOptions): Promise<VmRun> {
  const {
    kernel,
    initrd,
    append,
    memoryMb = 1024,
    timeoutMs = 180_000,
    until,
    marks = {},
    rtcBase,
    qemu = "qemu-system-x86_64",
    hostForwards = [],
    tap,
    onOutput,
    signal,
  } = options;
  if (!Number.isInteger(memoryMb) || memoryMb < 64) {
    throw new RangeError(`Cannot start VM: memory must be at least 64 MiB, got ${memoryMb}`);
  }
  if (tap !== undefined && hostForwards.length > 0) {
    throw new TypeError(
      `Cannot start VM on TAP '${tap.ifname}': hostForwards need the user-mode network`,
    );
  }
  for (const [what, value] of Object.entries(tap ?? {})) {
    if (!/^[A-Za-z0-9][A-Za-z0-9:._-]*$/.test(value)) {
      throw new TypeError(`Cannot start VM on TAP: bad ${what} '${value}'`);
    }
  }
  signal?.throwIfAborted();
  const netdev = tap === undefined
    ? ["user,id=n0", ...hostForwards.map((f) => `hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`)]
    : [`tap,id=n0,ifname=${tap.ifname},script=no,downscript=no`];
  const nic = tap?.mac === undefined
    ? "virtio-net-pci,netdev=n0"
    : `virtio-net-pci,netdev=n0,mac=${tap.mac}`;
  const args = [
    "-accel",
    "tcg",
    "-cpu",
    "max",
    "-m",
    String(memoryMb),
    "-nodefaults",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-netdev",
    netdev.join(","),
    "-device",
    nic,
    "-kernel",
    kernel,
    "-initrd",
    initrd,
    "-append",
    append,
    ...(rtcBase === undefined ? [] : ["-rtc", `base=${rtcBase}`]),
  ];
  const started = performance.now();
  // `ip netns exec` execs qemu, so the child's PID is qemu's own and killing it kills the VM.
  const child = new Deno.Command(tap === undefined ? qemu : "ip", {
    args: tap === undefined ? args : ["netns", "exec", tap.namespace, qemu, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const seen: Record<string, number> = {};
  let output = "";
  let ended: VmRun["ended"] = "exited";
  let killed = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    ended = "timeout";
    kill();
  }, timeoutMs);
  const onAbort = () => kill();
  signal?.addEventListener("abort", onAbort, { once: true });
  const stderr = new Response(child.stderr).text();
  try {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      const text = decoder.decode(chunk, { stream: true });
      output += text;
      onOutput?.(text);
      const now = performance.now() - started;
      for (const [name, pattern] of Object.entries(marks)) {
        if (seen[name] === undefined && pattern.test(output)) seen[name] = Math.round(now);
      }
      if (until !== undefined && !killed && until.test(output)) {
        ended = "matched";
        kill();
      }
    }
    const status = await child.status;
    const errText = await stderr;
    signal?.throwIfAborted();
    if (!killed && !status.success && output === "") {
      throw new Error(`Cannot start VM: ${qemu} exited with ${status.code}: ${errText.trim()}`);
    }
    return {
      output,
      ended,
      code: killed ? null : status.code,
      ms: Math.round(performance.now() - started),
      marks: seen,
    };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    kill();
    await child.status.catch(() => {});
    await stderr.catch(() => "");
  }
}
