/**
 * A test probe run with ALL Deno permissions (`deno run -A`) inside the OS confinement of a
 * sandbox process, to prove the confinement holds without Deno's permissions. It reads
 * `{ files, dir, tcpPort, udpPort }` as JSON on stdin, tries to read each file, write into `dir`
 * and `/`, fill `/tmp` with 80 MiB, connect over TCP and send UDP to 127.0.0.1 (and TCP to a public address), start a
 * process (Deno.Command, and `fork()` through FFI), map 128 GiB of address space (FFI `mmap`),
 * open 200 files, and prints one JSON object: each attempt's error name (or errno), or
 * "ALLOWED", plus what it could see (environment, network interfaces, its rlimits).
 *
 * @module
 */
import dgram from "node:dgram";
import { probeAttempt } from "./probe_attempt.ts";

/** One attempt, reported with its error's message: here an errno says more than its class. */
const attempt = (fn: () => Promise<unknown> | unknown) => probeAttempt(fn, { detail: true });

function udpSend(port: number): Promise<unknown> {
  const socket = dgram.createSocket("udp4");
  return new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.send(new TextEncoder().encode("escaped"), port, "127.0.0.1", (error) => {
      if (error) reject(error);
      else resolve();
    });
  }).finally(() => socket.close());
}

interface Params {
  files: string[];
  dir: string;
  tcpPort: number;
  udpPort: number;
}

async function probe(params: Params): Promise<Record<string, unknown>> {
  const report: Record<string, unknown> = {};
  for (const file of params.files) {
    report[`read ${file}`] = await attempt(() => Deno.readFile(file));
  }
  report.write_dir = await attempt(() => Deno.writeTextFile(`${params.dir}/escaped`, "x"));
  report.write_root = await attempt(() => Deno.writeTextFile("/escaped", "x"));
  report.fill_tmp_80mib = await attempt(() =>
    Deno.writeFile("/tmp/fill", new Uint8Array(80 << 20))
  );
  report.tcp = await attempt(() => Deno.connect({ hostname: "127.0.0.1", port: params.tcpPort }));
  report.tcp_public = await attempt(() => Deno.connect({ hostname: "1.1.1.1", port: 80 }));
  report.udp = await attempt(() => udpSend(params.udpPort));
  report.spawn = await attempt(() => new Deno.Command(Deno.execPath(), { args: ["-V"] }).output());
  const libc = Deno.dlopen("libc.so.6", {
    fork: { parameters: [], result: "i32" },
    _exit: { parameters: ["i32"], result: "void" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "isize"], result: "pointer" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const errno = () => new Deno.UnsafePointerView(libc.symbols.__errno_location()!).getInt32();
  try {
    const pid = libc.symbols.fork();
    if (pid === 0) libc.symbols._exit(0); // the child, if the fork was allowed
    report.fork = pid > 0 ? "ALLOWED" : `errno ${errno()}`;
    // PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE: reserves only address space.
    const map = libc.symbols.mmap(null, 128n * 2n ** 30n, 0, 0x02 | 0x20 | 0x4000, -1, 0n);
    report.mmap_128gib = Deno.UnsafePointer.value(map) === -1n || Deno.UnsafePointer.value(map) ===
        2n ** 64n - 1n
      ? `errno ${errno()}`
      : "ALLOWED";
  } finally {
    libc.close();
  }
  const files: Deno.FsFile[] = [];
  report.open_200 = await attempt(() => {
    for (let i = 0; i < 200; i++) files.push(Deno.openSync("/proc/self/status"));
  });
  for (const f of files) f.close();
  report.env = Deno.env.toObject();
  try {
    report.interfaces = Deno.networkInterfaces().map((i) => i.name);
  } catch {
    report.interfaces = []; // no netlink socket either
  }
  report.limits = await Deno.readTextFile("/proc/self/limits");
  return report;
}

if (import.meta.main) {
  const text = await new Response(Deno.stdin.readable).text();
  console.log(JSON.stringify(await probe(JSON.parse(text))));
}
