/**
 * The Debian package (`deno task deb`, packaging/deb.ts), built once for the whole file with the
 * task's own flags: its control data and contents, the launcher's flags against deno.json,
 * lintian, the units under `systemd-analyze`, and a real install with `dpkg -i` into a fresh
 * Debian root made by mmdebstrap (chroot): `plasm run hello.wasm`, the plasmd unit's ExecStart
 * command line, then `dpkg --purge`.
 *
 * Needs Debian's dpkg-dev, lintian, systemd, mmdebstrap, iproute2 and root. Outside CI a test
 * whose tools are missing is skipped (one line says what to install); with CI=true it fails.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { taskCommand } from "./_task.ts";
import { DEB_SUBCOMMANDS } from "../packaging/deb.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BUILD = `${ROOT}packaging/build`;
const OUT = `${BUILD}/test`;
const CI = Deno.env.get("CI") === "true";
/** The packages of the fresh root besides Essential: the package's Depends (adduser), and
 * systemd and man-db for `systemd-analyze verify` (ExecStart binaries, man: documentation). */
const CHROOT_PACKAGES = ["adduser", "man-db", "systemd"];

/** Each tool the tests run, and the Debian package it comes from. */
const TOOLS: Record<string, string> = {
  "dpkg-deb": "dpkg",
  "dpkg-shlibdeps": "dpkg-dev",
  lintian: "lintian",
  "systemd-analyze": "systemd",
  mmdebstrap: "mmdebstrap",
  unshare: "util-linux",
  ip: "iproute2",
};

const missingTools = Object.keys(TOOLS).filter((tool) => !_onPath(tool));
const isRoot = new TextDecoder().decode(
  new Deno.Command("id", { args: ["-u"], stdout: "piped", stderr: "null" }).outputSync().stdout,
).trim() === "0";
const skipped = new Set<string>();

/** Test options for a test that needs `tools` (and root): skipped outside CI when missing. */
function needs(tools: string[], root = false): { ignore: boolean } {
  const missing = tools.filter((t) => missingTools.includes(t));
  const lacking = [
    ...(missing.length
      ? [`apt-get install ${[...new Set(missing.map((t) => TOOLS[t]))].join(" ")}`]
      : []),
    ...(root && !isRoot ? ["run as root"] : []),
  ];
  if (lacking.length === 0 || CI) return { ignore: false };
  const line = `deb_test: skipping tests that need: ${lacking.join(", ")}`;
  if (!skipped.has(line)) console.log(line);
  skipped.add(line);
  return { ignore: true };
}

/** Fail (in CI) with what to install when a tool is missing. */
function requireTools(tools: string[], root = false): void {
  const missing = tools.filter((t) => missingTools.includes(t));
  if (missing.length) {
    throw new Error(
      `Cannot test: ${missing.join(", ")} missing: apt-get install ${
        [...new Set(missing.map((t) => TOOLS[t]))].join(" ")
      }`,
    );
  }
  if (root && !isRoot) throw new Error("Cannot test: needs root (dpkg -i into a chroot)");
}

/**
 * A test of the built package: it needs dpkg-deb and dpkg-shlibdeps, and `tools` (and root) as
 * well; without them it is skipped with one line, or fails in CI naming what to install.
 */
function debTest(
  name: string,
  requires: { tools?: string[]; root?: boolean },
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  const { tools = [], root = false } = requires;
  Deno.test({
    name,
    ...needs(["dpkg-deb", "dpkg-shlibdeps", ...tools], root),
    fn: async (t) => {
      requireTools(tools, root);
      await fn(t);
    },
  });
}

let built: Promise<{ deb: string; tree: string }> | undefined;

/** Build the package once with `deno task deb`'s flags (gzip: xz -6 takes 80 s on 2 cores). */
function build(): Promise<{ deb: string; tree: string }> {
  return built ??= (async () => {
    requireTools(["dpkg-deb", "dpkg-shlibdeps"]);
    const { flags, script } = await taskCommand("deb");
    const run = await _run(Deno.execPath(), [
      "run",
      "--no-prompt",
      ...flags,
      script,
      "--out",
      OUT,
      "--compression",
      "gzip",
      "--json",
    ], { cwd: ROOT });
    assert.equal(run.code, 0, run.err);
    const result = JSON.parse(run.out) as { path: string };
    const tree = `${OUT}/tree`;
    await Deno.remove(tree, { recursive: true }).catch(() => {});
    const x = await _run("dpkg-deb", ["-x", result.path, tree]);
    assert.equal(x.code, 0, x.err);
    return { deb: result.path, tree };
  })();
}

debTest(
  "deno task deb builds plasm_<version>_amd64.deb: control, Depends from ldd, conffiles",
  {},
  async () => {
    const { deb } = await build();
    const version = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version;
    assert.equal(deb, `${OUT}/plasm_${version}_amd64.deb`);
    const info = await _run("dpkg-deb", ["--info", deb]);
    assert.equal(info.code, 0, info.err);
    const field = (name: string) =>
      new RegExp(`^ ${name}: (.*)$`, "m").exec(info.out)?.[1] ?? "(missing)";
    assert.equal(field("Package"), "plasm");
    assert.equal(field("Version"), version);
    assert.equal(field("Architecture"), "amd64");
    assert.match(field("Installed-Size"), /^\d{5,}$/);
    // deno links glibc (libc, libm, libdl, librt, libpthread) and libgcc_s: both packages, with
    // the minimum versions dpkg-shlibdeps reads from the symbols it uses.
    assert.match(field("Depends"), /^libc6 \(>= 2\.\d+\), libgcc-s1 \(>= [\d.]+\), adduser$/);
    for (const script of ["postinst", "prerm", "postrm"]) {
      assert.match(info.out, new RegExp(`\\d+ lines +\\* +${script} +#!/bin/sh`));
    }
    const conffiles = await _run("dpkg-deb", ["-I", deb, "conffiles"]);
    assert.deepEqual(conffiles.out.trim().split("\n"), [
      "/etc/plasm/plasmd.env",
      "/etc/plasm/plasmd.json",
      "/etc/plasm/provider.env",
    ]);
  },
);

debTest(
  "dpkg-deb --contents: the launcher, deno, one bundle per subcommand, units and /etc/plasm",
  {},
  async () => {
    const { deb } = await build();
    const contents = await _run("dpkg-deb", ["--contents", deb]);
    assert.equal(contents.code, 0, contents.err);
    const files = new Map<string, string>();
    for (const line of contents.out.trim().split("\n")) {
      const [mode, owner, , , , path] = line.split(/\s+/);
      assert.equal(owner, "root/root", line);
      if (!mode!.startsWith("d")) files.set(path!.replace(/^\./, ""), mode!);
    }
    const lib = "/usr/lib/plasm";
    const expected: Record<string, string> = {
      "/usr/bin/plasm": "-rwxr-xr-x",
      [`${lib}/deno`]: "-rwxr-xr-x",
      [`${lib}/sandbox_main.ts`]: "-rw-r--r--",
      [`${lib}/sandbox_worker.ts`]: "-rw-r--r--",
      "/lib/systemd/system/plasmd.service": "-rw-r--r--",
      "/lib/systemd/system/plasm-provider.service": "-rw-r--r--",
      "/etc/plasm/plasmd.env": "-rw-r--r--",
      "/etc/plasm/plasmd.json": "-rw-r--r--",
      "/etc/plasm/provider.env": "-rw-r--r--",
      "/usr/share/doc/plasm/copyright": "-rw-r--r--",
      "/usr/share/doc/plasm/changelog.gz": "-rw-r--r--",
      "/usr/share/doc/plasm/packaging.md.gz": "-rw-r--r--",
      "/usr/share/man/man1/plasm.1.gz": "-rw-r--r--",
      "/usr/share/lintian/overrides/plasm": "-rw-r--r--",
    };
    for (const sub of DEB_SUBCOMMANDS) expected[`${lib}/${sub}.js`] = "-rw-r--r--";
    assert.deepEqual(
      Object.fromEntries([...files].sort()),
      Object.fromEntries(Object.entries(expected).sort()),
    );
  },
);

debTest(
  "/usr/bin/plasm runs each subcommand with exactly the flags of its deno.json task",
  {},
  async () => {
    const { tree } = await build();
    const launcher = await Deno.readTextFile(`${tree}/usr/bin/plasm`);
    const cases = [...launcher.matchAll(
      /^ {2}([a-z]+)\)\n {4}exec "\$lib\/deno" run --no-config --cached-only (.*) "\$lib\/\1\.js" "\$@"$/gm,
    )];
    assert.deepEqual(cases.map((c) => c[1]), [...DEB_SUBCOMMANDS]);
    for (const [, sub, flags] of cases) {
      const task = await taskCommand(sub!);
      assert.equal(task.script, `cli/${sub}.ts`);
      // `start` spells its --allow-run as the running deno: in the package, the deno it ships.
      const expected = task.flags.join(" ")
        .replace(
          /"\$\(deno eval --quiet 'console\.log\(Deno\.execPath\(\)\)'\)"/,
          "/usr/lib/plasm/deno",
        )
        .split(" ");
      assert.deepEqual(flags!.split(" ").sort(), expected.sort(), String(sub));
      assert.ok(!flags!.split(" ").includes("-A") && !flags!.includes("--allow-all"), String(sub));
    }
  },
);

debTest("every file a bundle loads at run time is in the package beside it", {}, async () => {
  const { tree } = await build();
  const lib = `${tree}/usr/lib/plasm`;
  const loaded = new Set<string>();
  for (const e of Deno.readDirSync(lib)) {
    if (!/\.(js|ts)$/.test(e.name)) continue;
    const text = await Deno.readTextFile(`${lib}/${e.name}`);
    for (const m of text.matchAll(/new URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url/g)) {
      loaded.add(m[1]!);
    }
  }
  // The job sandbox: a worker for `run`, a process for `start`.
  assert.deepEqual([...loaded].sort(), ["./sandbox_main.ts", "./sandbox_worker.ts"]);
  for (const ref of loaded) assert.ok((await Deno.stat(`${lib}/${ref}`)).isFile, ref);
});

debTest("lintian reports nothing but the overrides, each justified by a comment", {
  tools: ["lintian"],
}, async () => {
  const { deb } = await build();
  const run = await _run("lintian", [
    "--pedantic",
    "--display-info",
    "--no-tag-display-limit",
    deb,
  ]);
  const tags = run.out.split("\n").filter((line) => /^[EWIPX]: /.test(line));
  assert.deepEqual(tags, [], run.out + run.err);
  assert.equal(run.code, 0, run.err);
  // Each override follows a comment saying why (a blank line ends a justification).
  const lines = (await Deno.readTextFile(`${ROOT}packaging/lintian-overrides`)).split("\n");
  lines.forEach((line, i) => {
    if (line.startsWith("plasm: ")) assert.match(lines[i - 1] ?? "", /^# \S/, line);
  });
});

debTest("systemd-analyze security rates both units' exposure at most 2.0 (OK)", {
  tools: ["systemd-analyze"],
}, async () => {
  const { tree } = await build();
  for (const unit of ["plasmd.service", "plasm-provider.service"]) {
    const run = await _run("systemd-analyze", [
      "security",
      "--offline=yes",
      `--root=${tree}`,
      "--threshold=20",
      "--no-pager",
      unit,
    ]);
    assert.equal(run.code, 0, run.out + run.err);
    const level = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(run.out);
    assert.ok(level, run.out);
    assert.ok(Number(level[1]) <= 2.0, `${unit}: ${level[0]}`);
    // The settings the issue asks for are all in effect.
    for (const check of ["NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp="]) {
      assert.match(run.out, new RegExp(`✓ ${check}`), `${unit}: ${check}`);
    }
  }
});

debTest("dpkg -i into a fresh Debian root: plasm run, the plasmd ExecStart, then purge", {
  tools: ["mmdebstrap", "unshare", "ip"],
  root: true,
}, async (t) => {
  const { deb } = await build();
  const tarball = await _debianRoot();
  const root = await Deno.makeTempDir({ prefix: "plasm-deb-root-" });
  try {
    const untar = await _run("tar", ["-xf", tarball, "-C", root]);
    assert.equal(untar.code, 0, untar.err);
    const before = await _paths(root);
    await Deno.copyFile(deb, `${root}/tmp/plasm.deb`);
    await Deno.copyFile(`${ROOT}examples/hello.wasm`, `${root}/tmp/hello.wasm`);

    await t.step("dpkg -i installs it and creates the plasm user", async () => {
      const run = await _chroot(root, ["dpkg", "-i", "/tmp/plasm.deb"]);
      assert.equal(run.code, 0, run.out + run.err);
      assert.match(await Deno.readTextFile(`${root}/etc/passwd`), /^plasm:x:\d+:\d+:/m);
      const state = await Deno.stat(`${root}/var/lib/plasm`);
      assert.equal(state.mode! & 0o777, 0o750);
    });

    await t.step("systemd-analyze verify accepts both units as installed", async () => {
      const run = await _chroot(root, [
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/plasmd.service",
        "/lib/systemd/system/plasm-provider.service",
      ]);
      assert.equal(run.code, 0, run.out + run.err);
      assert.equal(run.err.trim(), "", run.err);
    });

    await t.step(
      "plasm run hello.wasm prints the reversed input and keeps a receipt",
      async () => {
        const run = await _chroot(root, ["plasm", "run", "/tmp/hello.wasm"], {
          stdin: "Hello, World",
          env: { PLASM_HOME: "/tmp/plasm-home" },
        });
        assert.equal(run.code, 0, run.err);
        assert.equal(run.out, "dlroW ,olleH");
        const receipts = [...Deno.readDirSync(`${root}/tmp/plasm-home/receipts`)].map((e) =>
          e.name
        );
        assert.equal(receipts.length, 1);
        const key = /signed by ([0-9a-f]{64})/.exec(run.err)?.[1];
        assert.ok(key, run.err);
        const verify = await _chroot(root, [
          "plasm",
          "verify",
          "receipt",
          `/tmp/plasm-home/receipts/${receipts[0]}`,
          "--key",
          key,
        ]);
        assert.equal(verify.code, 0, verify.out + verify.err);
      },
    );

    await t.step(
      "every subcommand's bundle loads (--help) and bad usage is one line",
      async () => {
        for (const sub of DEB_SUBCOMMANDS) {
          const run = await _chroot(root, ["plasm", sub, "--help"]);
          assert.equal(run.code, 0, `${sub}: ${run.err}`);
          assert.match(run.out + run.err, /Usage|usage/, sub);
        }
        const bad = await _chroot(root, ["plasm", "bogus"]);
        assert.equal(bad.code, 2);
        assert.equal(bad.out, "");
        assert.match(
          bad.err,
          /^plasm: Cannot run 'bogus': not a subcommand \(expected one of run, /,
        );
        assert.equal(bad.err.trim().split("\n").length, 1);
      },
    );

    await t.step(
      "the plasmd unit's ExecStart starts the node as plasm; SIGTERM stops it",
      async () => {
        const unit = _parseUnit(
          await Deno.readTextFile(`${root}/lib/systemd/system/plasmd.service`),
        );
        const env = await _unitEnv(root, unit);
        // Mode internet defaults to the public Amino bootstrap peers; a test never dials them.
        env.PLASMD_OPTS = `${env.PLASMD_OPTS ?? ""} --bootstrap /ip4/127.0.0.1/tcp/9`.trim();
        const argv = _execStart(unit.get("ExecStart")![0]!, env);
        assert.deepEqual(argv.slice(0, 2), ["/usr/bin/plasm", "start"]);
        // What systemd does before ExecStart: StateDirectory= and CacheDirectory= owned by User=.
        const user = unit.get("User")![0]!;
        for (
          const [key, base, modeKey] of [
            ["StateDirectory", "/var/lib", "StateDirectoryMode"],
            ["CacheDirectory", "/var/cache", "CacheDirectoryMode"],
          ] as const
        ) {
          const dir = `${base}/${unit.get(key)![0]}`;
          const mode = unit.get(modeKey)?.[0] ?? "0755";
          const made = await _chroot(root, [
            "install",
            "-d",
            "-o",
            user,
            "-g",
            user,
            "-m",
            mode,
            dir,
          ]);
          assert.equal(made.code, 0, made.err);
        }
        const child = _spawnChroot(root, [
          "setpriv",
          `--reuid=${user}`,
          `--regid=${unit.get("Group")![0]}`,
          "--clear-groups",
          "env",
          "-i",
          ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
          ...argv,
        ]);
        const stderr = new Response(child.stderr).text();
        const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        let started: Record<string, unknown> | undefined;
        while (started === undefined) {
          const { value, done } = await lines.read();
          if (done) break;
          text += value;
          const line = text.split("\n").find((l) => l.startsWith('{"event":"started"'));
          if (line !== undefined) started = JSON.parse(line);
        }
        child.kill("SIGTERM");
        while (!(await lines.read()).done) { /* drain */ }
        const status = await child.status;
        const err = await stderr;
        assert.ok(started, `no started line; stderr: ${err}`);
        assert.equal(started.state_dir, "/var/lib/plasm/node");
        assert.equal(started.mode, "internet");
        assert.match(String(started.peer_id), /^12D3KooW/);
        assert.equal(status.code, 0, err);
        const passwd = await Deno.readTextFile(`${root}/etc/passwd`);
        const uid = Number(new RegExp(`^${user}:x:(\\d+):`, "m").exec(passwd)?.[1]);
        const key = await Deno.stat(`${root}/var/lib/plasm/node/node.key`);
        assert.equal(key.uid, uid);
        assert.equal(key.mode! & 0o777, 0o600);
      },
    );

    await t.step("dpkg --purge leaves only the state dir /var/lib/plasm", async () => {
      const run = await _chroot(root, ["dpkg", "--purge", "plasm"]);
      assert.equal(run.code, 0, run.out + run.err);
      const after = await _paths(root);
      const added = [...after].filter((p) => !before.has(p));
      const removed = [...before].filter((p) => !after.has(p));
      assert.deepEqual(removed, []);
      assert.ok(added.includes("/var/lib/plasm/node/node.key"), added.join("\n"));
      assert.deepEqual(
        added.filter((p) => p !== "/var/lib/plasm" && !p.startsWith("/var/lib/plasm/")),
        [],
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/**
 * A root tarball made by mmdebstrap (Essential + {@linkcode CHROOT_PACKAGES}) from the host's
 * own Debian sources, cached under packaging/build/mmdebstrap by a hash of what went in.
 */
async function _debianRoot(): Promise<string> {
  const codename = /^VERSION_CODENAME=(\S+)$/m.exec(await Deno.readTextFile("/etc/os-release"))
    ?.[1];
  if (codename === undefined) throw new Error("Cannot test: /etc/os-release names no codename");
  const mirrors = await _aptSources(codename);
  if (mirrors.length === 0) {
    throw new Error(`Cannot test: no apt source in /etc/apt for ${codename}`);
  }
  // The host's own apt options for the archive's Release files (a snapshot mirror may need them).
  const dump = (await _run("apt-config", ["dump"])).out;
  const aptopts = dump.split("\n").filter((l) => /^Acquire::Check-(Valid-Until|Date) /.test(l));
  const args = [
    "--variant=essential",
    `--include=${CHROOT_PACKAGES.join(",")}`,
    ...aptopts.map((o) => `--aptopt=${o}`),
    codename,
  ];
  const key = createHash("sha256").update(JSON.stringify([args, mirrors])).digest("hex").slice(
    0,
    16,
  );
  const dir = `${BUILD}/mmdebstrap`;
  const tarball = `${dir}/${codename}-${key}.tar`;
  try {
    await Deno.stat(tarball);
    return tarball;
  } catch {
    // Not cached yet.
  }
  await Deno.mkdir(dir, { recursive: true });
  const run = await _run("mmdebstrap", ["--quiet", ...args, `${tarball}.part.tar`, ...mirrors]);
  assert.equal(run.code, 0, run.err);
  await Deno.rename(`${tarball}.part.tar`, tarball);
  return tarball;
}

/** One-line `deb URI SUITE COMPONENTS` sources for `codename` from /etc/apt (both formats). */
async function _aptSources(codename: string): Promise<string[]> {
  const files = ["/etc/apt/sources.list"];
  try {
    for (const e of Deno.readDirSync("/etc/apt/sources.list.d")) {
      if (/\.(list|sources)$/.test(e.name)) files.push(`/etc/apt/sources.list.d/${e.name}`);
    }
  } catch {
    // No sources.list.d.
  }
  const lines: string[] = [];
  const wanted = (suite: string) => suite === codename || suite.startsWith(`${codename}-`);
  for (const file of files.sort()) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    if (file.endsWith(".list")) {
      for (const line of text.split("\n")) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$/.exec(line.trim());
        if (m && wanted(m[2]!)) lines.push(`deb ${m[1]} ${m[2]} ${m[3]!.trim()}`);
      }
      continue;
    }
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) =>
        new RegExp(`^${name}:\\s*(.*)$`, "mi").exec(stanza)?.[1]?.trim() ?? "";
      if (!field("Types").split(/\s+/).includes("deb") || /^no$/i.test(field("Enabled"))) continue;
      for (const uri of field("URIs").split(/\s+/).filter(Boolean)) {
        for (const suite of field("Suites").split(/\s+/).filter(wanted)) {
          lines.push(`deb ${uri} ${suite} ${field("Components")}`);
        }
      }
    }
  }
  return lines;
}

/** The shell run as the chroot's entry: loopback up in its own network namespace, /proc. */
const CHROOT_SH = 'set -e; r=$1; shift; ip link set lo up; mount -t proc proc "$r/proc"; ' +
  'exec chroot "$r" "$@"';

/** Spawn `argv` in `root`, in new mount and network namespaces (so nothing outlives it). */
function _spawnChroot(
  root: string,
  argv: string[],
  options: { env?: Record<string, string>; stdin?: boolean } = {},
): Deno.ChildProcess {
  return new Deno.Command("unshare", {
    args: ["--mount", "--net", "sh", "-c", CHROOT_SH, "sh", root, ...argv],
    clearEnv: true,
    // A HOME in /tmp: the caches deno keeps for the commands the test runs as root go there.
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/tmp/home",
      ...options.env,
    },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function _chroot(
  root: string,
  argv: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const child = _spawnChroot(root, argv, {
    ...(options.env ? { env: options.env } : {}),
    stdin: options.stdin !== undefined,
  });
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/** Every path in `root` but the ones that change under any dpkg run or hold the test's files. */
async function _paths(root: string): Promise<Set<string>> {
  const skip =
    /^\/(proc|dev|sys|run|tmp)(\/|$)|^\/var\/(lib\/dpkg|log|cache\/debconf|cache\/man)(\/|$)|^\/etc\/(passwd|group|shadow|gshadow|subuid|subgid)-?$/;
  const paths = new Set<string>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}${rel}`)) {
      const path = `${rel}/${e.name}`;
      if (skip.test(path)) continue;
      paths.add(path);
      if (e.isDirectory) await walk(path);
    }
  };
  await walk("");
  return paths;
}

/** A unit file's settings: key -> values in order (repeated keys accumulate). */
function _parseUnit(text: string): Map<string, string[]> {
  const unit = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) unit.set(m[1]!, [...(unit.get(m[1]!) ?? []), m[2]!]);
  }
  return unit;
}

/** The environment systemd gives the service: User='s home, Environment=, EnvironmentFile=. */
async function _unitEnv(
  root: string,
  unit: Map<string, string[]>,
): Promise<Record<string, string>> {
  const user = unit.get("User")![0]!;
  const passwd = await Deno.readTextFile(`${root}/etc/passwd`);
  const home = new RegExp(`^${user}:[^:]*:\\d+:\\d+:[^:]*:([^:]*):`, "m").exec(passwd)?.[1];
  const env: Record<string, string> = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: home ?? "/",
    USER: user,
    LOGNAME: user,
  };
  for (const value of unit.get("Environment") ?? []) {
    for (const pair of value.split(/\s+/).filter(Boolean)) {
      const [k, ...v] = pair.split("=");
      env[k!] = v.join("=");
    }
  }
  for (const value of unit.get("EnvironmentFile") ?? []) {
    const path = value.replace(/^-/, "");
    let text = "";
    try {
      text = await Deno.readTextFile(`${root}${path}`);
    } catch (error) {
      if (!value.startsWith("-")) throw error;
    }
    for (const line of text.split("\n")) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1");
    }
  }
  return env;
}

/** ExecStart= as systemd expands it: `${VAR}` one word, a bare `$VAR` split on whitespace. */
function _execStart(line: string, env: Record<string, string>): string[] {
  const argv: string[] = [];
  for (const word of line.trim().split(/\s+/)) {
    const bare = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (bare) argv.push(...(env[bare[1]!] ?? "").split(/\s+/).filter(Boolean));
    else argv.push(word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name) => env[name] ?? ""));
  }
  return argv;
}

async function _run(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

function _onPath(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch {
      // Not there.
    }
  }
  return false;
}
