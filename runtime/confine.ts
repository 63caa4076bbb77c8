/**
 * OS confinement of a sandbox process, independent of Deno's permissions: the command line that
 * runs a program under bubblewrap (`bwrap`) in its own empty namespaces, with a read-only view of
 * only the paths it is given, no capabilities, no new privileges, a seccomp filter and resource
 * limits. Used by `sandbox_spawn.ts` for every job sandbox of the node, and by the tests that
 * prove a program with all Deno permissions cannot get out of it.
 *
 * @module
 */
import { seccompFilter } from "./confine_seccomp.ts";

/**
 * Default resource limits of a confined process, applied inside the sandbox with `prlimit`
 * (soft = hard, so the program cannot raise them):
 *
 * - `addressSpaceBytes` (RLIMIT_AS), 64 GiB: V8 reserves address space it never touches, about
 *   10 GiB per WebAssembly memory (guard regions) plus its pointer-compression cage, and 64 GiB
 *   leaves room for the sandbox's one memory and a few instances; it bounds what native code can
 *   map, not what the job uses (that is `--memory`).
 * - `maxProcesses` (RLIMIT_NPROC), 512: counts threads too. The kernel does not apply it to root;
 *   the seccomp filter refuses every new process anyway (threads only).
 * - `maxOpenFiles` (RLIMIT_NOFILE), 64.
 * - `tmpBytes`, 64 MiB: the size of the sandbox's `/tmp`, the only writable place (deno's cache
 *   of emitted code for files it did not find in the read-only host cache).
 *
 * @example
 * ```ts
 * import { CONFINE_LIMITS } from "./confine.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(CONFINE_LIMITS.maxOpenFiles, 64);
 * ```
 */
export const CONFINE_LIMITS: Readonly<{
  addressSpaceBytes: number;
  maxProcesses: number;
  maxOpenFiles: number;
  tmpBytes: number;
}> = Object.freeze({
  addressSpaceBytes: 64 * 2 ** 30,
  maxProcesses: 512,
  maxOpenFiles: 64,
  tmpBytes: 64 * 2 ** 20,
});

/** Directories holding the shared libraries a dynamically linked `deno` needs. */
const LIBRARY_DIRS = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/** Options of {@linkcode confineCommand}. */
export interface ConfineOptions {
  /**
   * Paths the program may read, each visible read-only at the same path, or `[from, to]` to show
   * host path `from` at `to`; a path that does not exist is skipped. The library directories and
   * `prlimit` are always added; nothing else of the host is visible.
   * @default {[]}
   */
  readOnly?: readonly (string | readonly [from: string, to: string])[];
  /** The whole environment of the program (bwrap clears the rest). @default {{}} */
  env?: Readonly<Record<string, string>>;
  /** RLIMIT_AS in bytes. @default {CONFINE_LIMITS.addressSpaceBytes} */
  addressSpaceBytes?: number;
  /** RLIMIT_NPROC (threads included). @default {CONFINE_LIMITS.maxProcesses} */
  maxProcesses?: number;
  /** RLIMIT_NOFILE. @default {CONFINE_LIMITS.maxOpenFiles} */
  maxOpenFiles?: number;
  /** Size of the sandbox's `/tmp` (tmpfs, in memory). @default {CONFINE_LIMITS.tmpBytes} */
  tmpBytes?: number;
  /**
   * The BPF program for `bwrap --seccomp`, or `null` for none.
   * @default {seccompFilter(Deno.build.arch)}
   */
  seccomp?: Uint8Array | null;
  /** The bubblewrap binary. @default {"/usr/bin/bwrap"} */
  bwrap?: string;
  /** The shell that hands the seccomp program to bwrap on fd 3. @default {"/bin/bash"} */
  shell?: string;
  /** The `prlimit` binary (util-linux), run inside the sandbox. @default {"/usr/bin/prlimit"} */
  prlimit?: string;
}

/**
 * The command (program and arguments, for `Deno.Command`) that runs `argv` confined by the OS:
 *
 * - `bwrap --unshare-all`: own user, mount, PID, network (empty: loopback down, no route out),
 *   IPC, UTS and cgroup namespaces; `--die-with-parent`, `--new-session` (no terminal
 *   injection), `--cap-drop ALL`; bwrap sets `PR_SET_NO_NEW_PRIVS`.
 * - Filesystem: a read-only empty root with the library directories, `prlimit` and `readOnly`
 *   bound read-only, a fresh `/proc` (only the sandbox's processes), a minimal `/dev` and an
 *   empty tmpfs `/tmp` of `tmpBytes`: no home, no `/etc`, no other file of the host.
 * - The seccomp filter of {@linkcode seccompFilter}: the shell opens it on fd 3 for
 *   `bwrap --seccomp 3` and is replaced by bwrap (`exec`), so the returned process is bwrap.
 * - `prlimit --as --nproc --nofile` (soft = hard) just before `argv` runs.
 *
 * It does no I/O: whether bwrap works here is for the caller to find out (run something).
 *
 * @param argv The program (absolute path, visible in the sandbox) and its arguments.
 * @param options Paths to show, environment, limits, and where the helpers are.
 * @returns `command` and `args` for `new Deno.Command(command, { args })`.
 *
 * @example
 * ```ts
 * import { confineCommand } from "./confine.ts";
 * import assert from "node:assert/strict";
 *
 * const { command, args } = confineCommand(["/usr/bin/deno", "--version"], {
 *   readOnly: ["/usr/bin/deno"],
 * });
 * assert.equal(command, "/bin/bash");
 * assert.ok(args.includes("--unshare-all"));
 * assert.deepEqual(args.slice(-2), ["/usr/bin/deno", "--version"]);
 * ```
 */
export function confineCommand(
  argv: readonly string[],
  options: ConfineOptions = {},
): { command: string; args: string[] } {
  const {
    readOnly = [],
    env = {},
    addressSpaceBytes = CONFINE_LIMITS.addressSpaceBytes,
    maxProcesses = CONFINE_LIMITS.maxProcesses,
    maxOpenFiles = CONFINE_LIMITS.maxOpenFiles,
    tmpBytes = CONFINE_LIMITS.tmpBytes,
    seccomp = seccompFilter(Deno.build.arch),
    bwrap = "/usr/bin/bwrap",
    shell = "/bin/bash",
    prlimit = "/usr/bin/prlimit",
  } = options;
  const limit = (name: string, v: number) => {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new RangeError(`Cannot confine: ${name} must be a positive integer, got ${v}`);
    }
  };
  limit("addressSpaceBytes", addressSpaceBytes);
  limit("maxProcesses", maxProcesses);
  limit("maxOpenFiles", maxOpenFiles);
  limit("tmpBytes", tmpBytes);
  if (!argv[0]?.startsWith("/")) {
    throw new TypeError(`Cannot confine '${argv[0]}': the program must be an absolute path`);
  }
  const args = [
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--clearenv",
    "--hostname",
    "sandbox",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--size",
    String(tmpBytes),
    "--tmpfs",
    "/tmp",
  ];
  for (const dir of LIBRARY_DIRS) args.push("--ro-bind-try", dir, dir);
  args.push("--ro-bind", prlimit, prlimit);
  for (const path of readOnly) {
    const [from, to] = typeof path === "string" ? [path, path] : path;
    args.push("--ro-bind-try", from, to);
  }
  for (const [name, value] of Object.entries(env)) args.push("--setenv", name, value);
  args.push("--remount-ro", "/", "--chdir", "/");
  const tail = [
    "--",
    prlimit,
    `--as=${addressSpaceBytes}`,
    `--nproc=${maxProcesses}`,
    `--nofile=${maxOpenFiles}`,
    "--",
    ...argv,
  ];
  if (!seccomp) return { command: bwrap, args: [...args, ...tail] };
  const escaped = Array.from(seccomp, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
  // bash: $0 is bwrap, "$@" its arguments; fd 3 reads the filter from printf through a pipe.
  const script = `exec "$0" --seccomp 3 "$@" 3< <(printf '${escaped}')`;
  return { command: shell, args: ["-c", script, bwrap, ...args, ...tail] };
}
