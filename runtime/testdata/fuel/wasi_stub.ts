/**
 * Test-only WASI preview1 stub for the fuel instrumenter's tests and benchmark: stdout/stderr to
 * memory, stdin from bytes, no environment, fixed clock and random bytes, everything else
 * ENOSYS. Not the job runner (that is runtime/run_job.ts).
 *
 * @module
 */
import { type FuelReading, readFuel, startFuel } from "../../fuel.ts";

/** How a stubbed run ended. */
export interface StubRun {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  trap: unknown;
  fuel: FuelReading | undefined;
}

class _Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * Run a WASI command module; with `fuel`, the module must be instrumented. `onYield` serves
 * `sched_yield` (the interrupt hook of modules instrumented with interrupts).
 */
export async function runWasiStub(
  module: WebAssembly.Module | Uint8Array<ArrayBuffer>,
  options: { stdin?: string; args?: string[]; fuel?: bigint; onYield?: () => void } = {},
): Promise<StubRun> {
  const { stdin = "", args = [], fuel, onYield } = options;
  const compiled = module instanceof WebAssembly.Module ? module : new WebAssembly.Module(module);
  const input = new TextEncoder().encode(stdin);
  let inputPos = 0;
  const argv = ["prog", ...args].map((a) => new TextEncoder().encode(`${a}\0`));
  const out: Record<number, number[]> = { 1: [], 2: [] };
  const state: { memory?: WebAssembly.Memory } = {};
  const view = () => new DataView(state.memory!.buffer);
  const bytes = () => new Uint8Array(state.memory!.buffer);
  const wasi: Record<string, (...a: never[]) => number> = {
    args_sizes_get(argc: number, size: number) {
      view().setUint32(argc, argv.length, true);
      view().setUint32(size, argv.reduce((n, a) => n + a.length, 0), true);
      return 0;
    },
    args_get(ptrs: number, buf: number) {
      for (const [i, a] of argv.entries()) {
        view().setUint32(ptrs + 4 * i, buf, true);
        bytes().set(a, buf);
        buf += a.length;
      }
      return 0;
    },
    environ_sizes_get(count: number, size: number) {
      view().setUint32(count, 0, true);
      view().setUint32(size, 0, true);
      return 0;
    },
    environ_get: () => 0,
    fd_write(fd: number, iovs: number, n: number, written: number) {
      const sink = out[fd];
      if (!sink) return 8; // EBADF
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = view().getUint32(iovs + 8 * i + 4, true);
        sink.push(...bytes().subarray(ptr, ptr + len));
        total += len;
      }
      view().setUint32(written, total, true);
      return 0;
    },
    fd_read(fd: number, iovs: number, n: number, read: number) {
      if (fd !== 0) return 8;
      let total = 0;
      for (let i = 0; i < n; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = view().getUint32(iovs + 8 * i + 4, true);
        const chunk = input.subarray(inputPos, inputPos + len);
        bytes().set(chunk, ptr);
        inputPos += chunk.length;
        total += chunk.length;
      }
      view().setUint32(read, total, true);
      return 0;
    },
    fd_fdstat_get(fd: number, ptr: number) {
      if (fd > 2) return 8;
      new Uint8Array(state.memory!.buffer, ptr, 24).fill(0);
      view().setUint8(ptr, 2); // character device
      return 0;
    },
    fd_close: () => 0,
    fd_seek: () => 70, // ESPIPE
    proc_exit(code: number) {
      throw new _Exit(code);
    },
    random_get(buf: number, len: number) {
      for (let i = 0; i < len; i++) bytes()[buf + i] = (i * 31 + 7) & 0xff;
      return 0;
    },
    sched_yield() {
      onYield?.();
      return 0;
    },
    clock_time_get(_id: number, _precision: bigint, ptr: number) {
      view().setBigUint64(ptr, 1_700_000_000_000_000_000n, true);
      return 0;
    },
  };
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = {
    wasi_snapshot_preview1: {},
  };
  for (const imp of WebAssembly.Module.imports(compiled)) {
    if (imp.module === "wasi_snapshot_preview1") {
      imports.wasi_snapshot_preview1![imp.name] = wasi[imp.name] ?? (() => 52); // ENOSYS
    }
  }
  const instance = await WebAssembly.instantiate(compiled, imports);
  state.memory = instance.exports.memory as WebAssembly.Memory;
  let exitCode: number | undefined;
  let trap: unknown;
  try {
    if (fuel !== undefined) startFuel(instance, fuel);
    (instance.exports._start as () => void)();
    exitCode = 0;
  } catch (err) {
    if (err instanceof _Exit) exitCode = err.code;
    else trap = err;
  }
  const decoder = new TextDecoder();
  return {
    stdout: decoder.decode(new Uint8Array(out[1]!)),
    stderr: decoder.decode(new Uint8Array(out[2]!)),
    exitCode,
    trap,
    fuel: fuel === undefined ? undefined : readFuel(instance, fuel),
  };
}
