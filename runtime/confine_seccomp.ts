/**
 * The seccomp filter of a confined sandbox process, compiled to the classic BPF program that
 * `bwrap --seccomp FD` loads (an array of `struct sock_filter`, 8 bytes each, little-endian).
 *
 * @module
 */

/** `struct seccomp_data` offsets: syscall number, audit arch, low word of the first argument. */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 syscalls on x86_64 have this bit set; the filter refuses them all. */
const X32_SYSCALL_BIT = 0x40000000;
const CLONE_THREAD = 0x00010000;
const AF_UNIX = 1;

const RET_ALLOW = 0x7fff0000;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

/**
 * x86_64 system calls a sandbox never needs and that widen the kernel's attack surface or let a
 * process leave its confinement: tracing and other processes' memory, mounts and namespaces,
 * modules, kexec, BPF, perf, keyrings, io_uring, time and host settings, swap, reboot.
 */
const DENIED_X86_64: Readonly<Record<string, number>> = Object.freeze({
  fork: 57,
  vfork: 58,
  ptrace: 101,
  syslog: 103,
  uselib: 134,
  vhangup: 153,
  pivot_root: 155,
  _sysctl: 156,
  adjtimex: 159,
  chroot: 161,
  acct: 163,
  settimeofday: 164,
  mount: 165,
  umount2: 166,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  create_module: 174,
  init_module: 175,
  delete_module: 176,
  get_kernel_syms: 177,
  query_module: 178,
  quotactl: 179,
  nfsservctl: 180,
  lookup_dcookie: 212,
  clock_settime: 227,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  unshare: 272,
  perf_event_open: 298,
  fanotify_init: 300,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  clock_adjtime: 305,
  setns: 308,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  pidfd_getfd: 438,
  mount_setattr: 442,
  kexec_load: 246,
});
const SYS_CLONE = 56;
const SYS_CLONE3 = 435;
const SYS_SOCKET = 41;

/**
 * The names of the system calls the filter refuses with `EPERM` (on x86_64), besides the rules
 * for `clone`, `clone3` and `socket` described at {@linkcode seccompFilter}.
 *
 * @example
 * ```ts
 * import { SECCOMP_DENIED } from "./confine_seccomp.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(SECCOMP_DENIED.includes("ptrace"));
 * assert.ok(SECCOMP_DENIED.includes("kexec_load"));
 * ```
 */
export const SECCOMP_DENIED: readonly string[] = Object.freeze(Object.keys(DENIED_X86_64));

type _Target = "allow" | "deny" | "enosys" | "eafnosupport" | "kill" | "next" | number;
interface _Insn {
  code: number;
  k: number;
  jt?: _Target;
  jf?: _Target;
}

/**
 * The seccomp filter of a confined sandbox as a BPF program, for `bwrap --seccomp FD`; `null`
 * where no filter is defined for `arch` (only `x86_64` is: the confinement then runs without
 * one, and says so).
 *
 * The filter kills the process on a foreign audit arch, refuses x32 system calls and every call
 * in {@linkcode SECCOMP_DENIED} with `EPERM`, allows `clone` only for threads (`CLONE_THREAD`),
 * so the sandbox can start no process at all, answers `clone3` with `ENOSYS` (its flags are
 * behind a pointer a filter cannot read; libc then falls back to `clone`), allows `socket` only
 * for `AF_UNIX` (`EAFNOSUPPORT` otherwise) and allows everything else.
 *
 * @param arch `Deno.build.arch`-style architecture name.
 * @returns The program's bytes (8 per instruction), or `null`.
 *
 * @example
 * ```ts
 * import { seccompFilter } from "./confine_seccomp.ts";
 * import assert from "node:assert/strict";
 *
 * const filter = seccompFilter("x86_64")!;
 * assert.equal(filter.length % 8, 0);
 * assert.equal(seccompFilter("aarch64"), null);
 * ```
 */
export function seccompFilter(arch: string): Uint8Array | null {
  if (arch !== "x86_64") return null;
  const insns: _Insn[] = [
    { code: 0x20, k: ARCH },
    { code: 0x15, k: AUDIT_ARCH_X86_64, jt: "next", jf: "kill" },
    { code: 0x20, k: NR },
    { code: 0x35, k: X32_SYSCALL_BIT, jt: "deny", jf: "next" },
  ];
  for (const nr of Object.values(DENIED_X86_64)) {
    insns.push({ code: 0x15, k: nr, jt: "deny", jf: "next" });
  }
  insns.push({ code: 0x15, k: SYS_CLONE3, jt: "enosys", jf: "next" });
  // clone: allowed only with CLONE_THREAD (a thread of this process, never a new process).
  const cloneAt = insns.length;
  insns.push({ code: 0x15, k: SYS_CLONE, jt: "next", jf: cloneAt + 3 });
  insns.push({ code: 0x20, k: ARG0_LOW });
  insns.push({ code: 0x45, k: CLONE_THREAD, jt: "allow", jf: "deny" });
  // socket: AF_UNIX only.
  insns.push({ code: 0x15, k: SYS_SOCKET, jt: "next", jf: "allow" });
  insns.push({ code: 0x20, k: ARG0_LOW });
  insns.push({ code: 0x15, k: AF_UNIX, jt: "allow", jf: "eafnosupport" });
  const labels: Record<string, number> = {};
  const end = (name: string, k: number) => {
    labels[name] = insns.length;
    insns.push({ code: 0x06, k });
  };
  end("allow", RET_ALLOW);
  end("deny", RET_ERRNO | EPERM);
  end("enosys", RET_ERRNO | ENOSYS);
  end("eafnosupport", RET_ERRNO | EAFNOSUPPORT);
  end("kill", RET_KILL_PROCESS);
  const out = new Uint8Array(insns.length * 8);
  const view = new DataView(out.buffer);
  insns.forEach((insn, i) => {
    const offset = (target: _Target | undefined): number => {
      if (target === undefined || target === "next") return 0;
      const at = typeof target === "number" ? target : labels[target]!;
      const jump = at - (i + 1);
      if (jump < 0 || jump > 255) throw new RangeError(`Cannot build seccomp filter: jump ${jump}`);
      return jump;
    };
    view.setUint16(i * 8, insn.code, true);
    view.setUint8(i * 8 + 2, offset(insn.jt));
    view.setUint8(i * 8 + 3, offset(insn.jf));
    view.setUint32(i * 8 + 4, insn.k >>> 0, true);
  });
  return out;
}
