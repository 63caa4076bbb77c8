// Run inside a world's hub namespace as: deno run --allow-ffi tests/netsim/tap_delay.ts
/**
 * The userspace delay line of the network simulator, for kernels without `sch_netem`.
 *
 * One process per world, started in the world's hub namespace. It reads commands, one JSON
 * object per line, on stdin and answers each with one JSON line on stdout:
 *
 * - `{"id":1,"op":"add","a":"t3a","b":"t3b","delayMs":20,"jitterMs":5,"lossPercent":1}` creates
 *   the TAP devices `a` and `b` in its own namespace (the world then moves `a` into the host's
 *   namespace and enslaves `b` to a bridge) and forwards every Ethernet frame between them: each
 *   direction adds `delayMs` plus a uniform sample of `[-jitterMs, +jitterMs]` (never below zero;
 *   frames keep their order, unlike netem's jitter) and drops a frame with probability
 *   `lossPercent` / 100, independently per direction.
 * - `{"id":2,"op":"set","a":"t3a",...}` changes the impairment of a link that exists.
 *
 * Answers: `{"id":1,"ok":true}` or `{"id":1,"ok":false,"error":"..."}`. The devices are not
 * persistent: they disappear with this process, so killing it is the whole teardown.
 *
 * Linux FFI only (open, ioctl, read, write, poll and eventfd from libc).
 *
 * @module
 */

/** How one link is impaired, each direction. */
export interface LinkImpairment {
  /** Added one-way delay in milliseconds. */
  delayMs: number;
  /** Uniform jitter around the delay in milliseconds. */
  jitterMs: number;
  /** Frames dropped, in percent. */
  lossPercent: number;
}

const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const EFD_NONBLOCK = 0o4000;
const POLLIN = 1;
const FRAME_MAX = 65_536;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

interface Direction {
  link: Link;
  from: number;
  to: number;
  queue: { due: number; frame: Uint8Array }[];
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Link {
  a: string;
  b: string;
  fdA: number;
  fdB: number;
  impairment: LinkImpairment;
  directions: [Direction, Direction];
}

function _openTap(libc: Libc, name: string): number {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
    throw new TypeError(`Cannot create TAP device '${name}': not a valid interface name`);
  }
  const fd = libc.open(new TextEncoder().encode("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new Error(`Cannot open '/dev/net/tun': open failed`);
  const ifreq = new Uint8Array(40);
  ifreq.set(new TextEncoder().encode(name));
  new DataView(ifreq.buffer).setUint16(16, IFF_TAP | IFF_NO_PI, true);
  if (libc.ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
    libc.close(fd);
    throw new Error(`Cannot create TAP device '${name}': TUNSETIFF failed`);
  }
  return fd;
}

function _checkImpairment(value: Record<string, unknown>): LinkImpairment {
  const { delayMs = 0, jitterMs = 0, lossPercent = 0 } = value;
  for (const [key, v] of Object.entries({ delayMs, jitterMs, lossPercent })) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new RangeError(`Cannot use ${key} '${v}': not a non-negative number`);
    }
  }
  if ((lossPercent as number) > 100) {
    throw new RangeError(`Cannot use lossPercent '${lossPercent}': above 100`);
  }
  return {
    delayMs: delayMs as number,
    jitterMs: jitterMs as number,
    lossPercent: lossPercent as number,
  };
}

/** Serve the delay line on stdin/stdout until stdin closes. */
async function main(): Promise<void> {
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const libc = lib.symbols;
  const wake = libc.eventfd(0, EFD_NONBLOCK);
  if (wake < 0) throw new Error("Cannot create eventfd: eventfd failed");
  const links = new Map<string, Link>();
  const byFd = new Map<number, Direction>();
  const frame = new Uint8Array(FRAME_MAX);
  const counter = new Uint8Array(8);
  const one = new Uint8Array(8);
  new DataView(one.buffer).setBigUint64(0, 1n, true);

  const flush = (dir: Direction) => {
    dir.timer = undefined;
    const now = performance.now();
    while (dir.queue.length > 0 && dir.queue[0]!.due <= now) {
      const { frame } = dir.queue.shift()!;
      libc.write(dir.to, frame, BigInt(frame.length));
    }
    if (dir.queue.length > 0) {
      // Never early: a frame leaves at or after its due time, so delays are lower bounds.
      dir.timer = setTimeout(() => flush(dir), Math.max(1, Math.ceil(dir.queue[0]!.due - now)));
    }
  };

  const receive = (link: Link, dir: Direction, data: Uint8Array) => {
    const { delayMs, jitterMs, lossPercent } = link.impairment;
    if (lossPercent > 0 && Math.random() * 100 < lossPercent) return;
    const jitter = jitterMs > 0 ? (Math.random() * 2 - 1) * jitterMs : 0;
    const last = dir.queue.at(-1)?.due ?? 0;
    const due = Math.max(performance.now() + Math.max(0, delayMs + jitter), last);
    if (delayMs === 0 && jitterMs === 0 && dir.queue.length === 0) {
      libc.write(dir.to, data, BigInt(data.length));
      return;
    }
    dir.queue.push({ due, frame: data });
    if (dir.timer === undefined) {
      dir.timer = setTimeout(() => flush(dir), Math.max(1, Math.ceil(due - performance.now())));
    }
  };

  let running = true;
  const pollLoop = async () => {
    while (running) {
      const fds = [wake, ...byFd.keys()];
      const pollfds = new Uint8Array(8 * fds.length);
      const view = new DataView(pollfds.buffer);
      fds.forEach((fd, i) => {
        view.setInt32(i * 8, fd, true);
        view.setInt16(i * 8 + 4, POLLIN, true);
      });
      const n = await libc.poll(pollfds, BigInt(fds.length), 1000);
      if (n <= 0) continue;
      for (let i = 0; i < fds.length; i++) {
        if ((view.getInt16(i * 8 + 6, true) & POLLIN) === 0) continue;
        const fd = fds[i]!;
        if (fd === wake) {
          libc.read(wake, counter, 8n);
          continue;
        }
        const dir = byFd.get(fd);
        if (!dir) continue;
        for (let budget = 0; budget < 256; budget++) {
          const got = Number(libc.read(fd, frame, BigInt(FRAME_MAX)));
          if (got <= 0) break;
          receive(dir.link, dir, frame.slice(0, got));
        }
      }
    }
  };
  const polling = pollLoop();

  const answer = (value: Record<string, unknown>) => {
    Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(value) + "\n"));
  };
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line === "") continue;
      let id: unknown = null;
      try {
        const command = JSON.parse(line);
        id = command.id;
        const impairment = _checkImpairment(command);
        if (command.op === "add") {
          if (links.has(command.a)) {
            throw new TypeError(`Cannot add link '${command.a}': it exists`);
          }
          const fdA = _openTap(libc, command.a);
          let fdB;
          try {
            fdB = _openTap(libc, command.b);
          } catch (error) {
            libc.close(fdA);
            throw error;
          }
          const link = { a: command.a, b: command.b, fdA, fdB, impairment } as Link;
          const ab: Direction = { link, from: fdA, to: fdB, queue: [], timer: undefined };
          const ba: Direction = { link, from: fdB, to: fdA, queue: [], timer: undefined };
          link.directions = [ab, ba];
          links.set(command.a, link);
          byFd.set(fdA, ab);
          byFd.set(fdB, ba);
          libc.write(wake, one, 8n);
        } else if (command.op === "set") {
          const link = links.get(command.a);
          if (!link) throw new TypeError(`Cannot change link '${command.a}': no such link`);
          link.impairment = impairment;
        } else {
          throw new TypeError(`Cannot run command '${command.op}': unknown op`);
        }
        answer({ id, ok: true });
      } catch (error) {
        answer({ id, ok: false, error: error instanceof Error ? error.message : String(error) });
      }
    }
  }
  running = false;
  libc.write(wake, one, 8n);
  await polling;
  for (const link of links.values()) {
    for (const dir of link.directions) clearTimeout(dir.timer);
    libc.close(link.fdA);
    libc.close(link.fdB);
  }
  lib.close();
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`tap_delay: error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
