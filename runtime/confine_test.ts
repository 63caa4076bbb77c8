import assert from "node:assert/strict";
import dgram from "node:dgram";
import { CONFINE_LIMITS, confineCommand } from "./confine.ts";
import { SECCOMP_DENIED, seccompFilter } from "./confine_seccomp.ts";
import { checkSandboxConfinement, sandboxCommand } from "./sandbox_spawn.ts";
import { sendJson } from "../tests/_child_io.ts";
import { countingListener } from "../tests/_counting_listener.ts";

/** Tests that need bubblewrap: skipped (one line) outside CI, failing under CI=true. */
const status = checkSandboxConfinement();
const ci = Deno.env.get("CI") === "true";
const ignore = !status.confined && !ci;
if (ignore) {
  console.log(`confine_test: skipped: ${status.reason} (apt-get install bubblewrap)`);
}

const PROBE = new URL("./testdata/probe_confined.ts", import.meta.url).pathname;

interface Report {
  [attempt: string]: unknown;
  env: Record<string, string>;
  interfaces: string[];
  limits: string;
}

/**
 * Run the all-permissions probe with `confined` (the sandbox's own confinement, built by the
 * very function the sandbox spawner uses) against a TCP and a UDP listener and a secret file on
 * the host; report what it did and what reached the host.
 */
async function runProbe(confined: boolean) {
  const dir = await Deno.makeTempDir({ prefix: "confine_test_" });
  const secret = `${dir}/secret.txt`;
  await Deno.writeTextFile(secret, "secret");
  const listener = countingListener();
  const udp = dgram.createSocket("udp4");
  let datagrams = 0;
  const marker = Promise.withResolvers<void>();
  udp.on("message", (msg: Uint8Array) => {
    if (msg.length === 1 && msg[0] === 0xff) marker.resolve();
    else datagrams++;
  });
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  try {
    const { command, args, env } = sandboxCommand(
      ["run", "-A", "--no-prompt", "--no-config", "--no-lock", "--quiet", PROBE],
      confined,
    );
    const child = new Deno.Command(command, {
      args,
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const { code, out, err } = await sendJson(child, {
      files: [
        secret,
        "/etc/shadow",
        "/etc/passwd",
        new URL("../deno.json", import.meta.url).pathname,
      ],
      dir,
      tcpPort: listener.port,
      udpPort: udp.address().port,
    });
    assert.equal(code, 0, err);
    const report = JSON.parse(out) as Report;
    // Datagrams on loopback arrive in order: once our own marker is in, the probe's would be.
    udp.send(new Uint8Array([0xff]), udp.address().port, "127.0.0.1");
    await marker.promise;
    const written = [];
    for await (const entry of Deno.readDir(dir)) written.push(entry.name);
    return { report, accepted: listener.accepted(), datagrams, written: written.sort(), secret };
  } finally {
    await listener.close();
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "a deno run -A probe outside the confinement reaches the host (control)",
  ignore,
  async fn() {
    const { report, accepted, datagrams, written, secret } = await runProbe(false);
    assert.equal(report[`read ${secret}`], "ALLOWED");
    assert.equal(report.tcp, "ALLOWED");
    assert.equal(accepted, 1);
    assert.equal(datagrams, 1);
    assert.deepEqual(written, ["escaped", "secret.txt"]);
  },
});

Deno.test({
  name: "a deno run -A probe in the sandbox confinement reads, writes, reaches and starts nothing",
  ignore,
  async fn() {
    const { report, accepted, datagrams, written, secret } = await runProbe(true);
    for (const file of [secret, "/etc/shadow", "/etc/passwd"]) {
      assert.match(String(report[`read ${file}`]), /^NotFound/, `read ${file}`);
    }
    assert.match(
      String(report[`read ${new URL("../deno.json", import.meta.url).pathname}`]),
      /^NotFound/,
    );
    assert.notEqual(report.write_dir, "ALLOWED");
    assert.match(String(report.write_root), /Read-only file system/);
    assert.match(String(report.fill_tmp_80mib), /No space left on device/);
    assert.deepEqual(written, ["secret.txt"], "nothing was written on the host");
    assert.notEqual(report.tcp, "ALLOWED");
    assert.notEqual(report.tcp_public, "ALLOWED");
    assert.notEqual(report.udp, "ALLOWED");
    assert.equal(accepted, 0, "no TCP connection reached the host");
    assert.equal(datagrams, 0, "no datagram reached the host");
    assert.notEqual(report.spawn, "ALLOWED");
    assert.equal(report.fork, "errno 1", "fork() is refused with EPERM");
    assert.equal(report.mmap_128gib, "errno 12", "mapping past RLIMIT_AS fails with ENOMEM");
    assert.match(String(report.open_200), /Too many open files/);
    // Only what bwrap (PWD) and deno itself (its node shim) set: nothing of the host's.
    assert.equal(report.env.DENO_DIR, "/tmp/deno");
    assert.deepEqual(
      Object.keys(report.env).filter((k) =>
        !["DENO_DIR", "PWD", "PATH", "DENO_NODE_SHIM_ACTIVE"].includes(k)
      ),
      [],
    );
    assert.equal(report.env.PWD, "/");
    assert.deepEqual(report.interfaces.filter((name) => name !== "lo"), []);
    const limit = (name: string) => new RegExp(`^${name} +(\\d+) +(\\d+)`, "m").exec(report.limits);
    assert.deepEqual(limit("Max address space")?.slice(1), [
      String(CONFINE_LIMITS.addressSpaceBytes),
      String(CONFINE_LIMITS.addressSpaceBytes),
    ]);
    assert.deepEqual(limit("Max processes")?.slice(1), ["512", "512"]);
    assert.deepEqual(limit("Max open files")?.slice(1), ["64", "64"]);
  },
});

Deno.test("confineCommand() builds bwrap under bash with the filter on fd 3, and checks its input", () => {
  const { command, args } = confineCommand(["/bin/true"], { readOnly: [["/a", "/b"]] });
  assert.equal(command, "/bin/bash");
  assert.equal(args[0], "-c");
  assert.match(args[1]!, /^exec "\$0" --seccomp 3 "\$@" 3< <\(printf '(\\x[0-9a-f]{2})+'\)$/);
  assert.equal(args[2], "/usr/bin/bwrap");
  const at = args.indexOf("/a");
  assert.deepEqual(args.slice(at - 1, at + 2), ["--ro-bind-try", "/a", "/b"]);
  assert.deepEqual(args.slice(-7), [
    "--",
    "/usr/bin/prlimit",
    `--as=${CONFINE_LIMITS.addressSpaceBytes}`,
    "--nproc=512",
    "--nofile=64",
    "--",
    "/bin/true",
  ]);
  const plain = confineCommand(["/bin/true"], { seccomp: null });
  assert.equal(plain.command, "/usr/bin/bwrap");
  assert.ok(!plain.args.includes("--seccomp"));
  assert.throws(() => confineCommand(["true"]), TypeError);
  assert.throws(() => confineCommand(["/bin/true"], { maxOpenFiles: 0 }), RangeError);
});

Deno.test("seccompFilter() checks the arch first and lists each denied call once", () => {
  const filter = seccompFilter("x86_64")!;
  const view = new DataView(filter.buffer);
  const insn = (i: number) => [view.getUint16(i * 8, true), view.getUint32(i * 8 + 4, true)];
  assert.deepEqual(insn(0), [0x20, 4]); // load seccomp_data.arch
  assert.deepEqual(insn(1), [0x15, 0xc000003e]); // AUDIT_ARCH_X86_64
  assert.equal(new Set(SECCOMP_DENIED).size, SECCOMP_DENIED.length);
  assert.deepEqual(insn(filter.length / 8 - 1), [0x06, 0x80000000]); // last: kill process
});
