// deno run --allow-read --allow-write=boot/build --allow-run --allow-env=DENORT_BIN boot/build.ts
//
// --allow-run is not narrowed to names: the build runs apt-get, dpkg, dpkg-deb, ldd, xz, zstd,
// gzip, the `deno` binary it ships (by absolute path) and the extracted static busybox.
/**
 * Build the Phase Boot images from Debian packages: the stub initramfs (busybox, kexec-tools,
 * virtio network modules, the Deno runtime, the project's `fetch`/`verify`/`discover` with a
 * pre-filled module cache and the baked trusted keys), a tiny second-stage initramfs for tests,
 * and the kernel they boot with.
 *
 * Outputs in `--out` (default `boot/build`): `vmlinuz`, `stub.cpio.<xz|zst>`,
 * `second-stage.cpio.gz`, `build.json` (sizes, versions, what went in).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, dirname } from "node:path";
import { cpioArchive, type CpioEntry } from "./cpio.ts";
import { parseTrustedKeys } from "../provider/key_files.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/** The virtio network modules, in the order they must be loaded. */
export const VIRTIO_NET_MODULES: readonly string[] = [
  "virtio_ring",
  "virtio",
  "virtio_pci_legacy_dev",
  "virtio_pci_modern_dev",
  "virtio_pci",
  "failover",
  "net_failover",
  "virtio_net",
];

/** The project tools the stub carries, each as `/bin/phase-<tool>`. */
export const STUB_TOOLS: readonly string[] = ["fetch", "verify", "discover"];

/**
 * How the stub carries the project's tools: `bundle` (deno + one bundled file per tool),
 * `cache` (deno + sources + pre-filled module cache) or `compiled` (`deno compile` binaries).
 */
export type ToolForm = "bundle" | "cache" | "compiled";

/** Options of {@linkcode buildBootImages}. */
export interface BuildBootImagesOptions {
  /** The repository root (holding deno.json and cli/). */
  projectDir: string;
  /** Where downloads, staging trees and images go. */
  outDir: string;
  /** Trusted-keys file to bake in; without it the stub trusts no key and refuses every manifest. @default {undefined} */
  trustedKeys?: string;
  /** Compressor of the stub initramfs. @default {"zstd"} */
  compression?: "xz" | "zstd";
  /** Compression level (xz 0-9, zstd 1-19). @default {undefined} (xz 6, zstd 19) */
  level?: number;
  /** Extra kernel modules loaded after the virtio ones (e.g. `e1000e`), by name. @default {[]} */
  extraModules?: string[];
  /** The deno binary to ship. @default {Deno.execPath()} */
  denoBinary?: string;
  /**
   * How the tools are shipped with the deno binary: `bundle` (one JavaScript file per tool, made
   * by `deno bundle`) or `cache` (the project's sources and a pre-filled module cache).
   * @default {"bundle"}
   */
  toolForm?: "bundle" | "cache";
  /** A denort base binary: ship `deno compile` binaries instead of deno + sources. @default {undefined} */
  denortBin?: string;
  /** Also build the stub without Deno, to measure its cost. @default {false} */
  measureWithoutDeno?: boolean;
  /** Print progress lines to stderr. @default {false} */
  verbose?: boolean;
  /** Cancel the build. @default {undefined} */
  signal?: AbortSignal;
}

/** What {@linkcode buildBootImages} made, as also written to `build.json`. */
export interface BootBuildResult {
  /** The kernel (Debian's vmlinuz) path. */
  kernel: string;
  /** Kernel release, e.g. `6.1.0-56-amd64`. */
  kernelRelease: string;
  /** The stub initramfs path. */
  stub: string;
  /** Its size in bytes. */
  stubBytes: number;
  /** Size of the uncompressed cpio. */
  stubCpioBytes: number;
  /** The compressor used. */
  compression: "xz" | "zstd";
  /** The compressed size of the stub without deno and the project, when measured. */
  stubWithoutDenoBytes?: number;
  /**
   * The node stage (`node.cpio.<xz|zst>`, booted with `kernel`): the stub's base with
   * `/init` = `boot/node_stage_init`, `start` and `serve` bundled (see docs/boot.md).
   */
  node: string;
  /** Its size in bytes. */
  nodeBytes: number;
  /** The second-stage test initramfs. */
  secondStage: string;
  /** Its size in bytes. */
  secondStageBytes: number;
  /** Tools in the image (`fetch`, `verify`, ...). */
  tools: string[];
  /** Tools missing from the project when it was built. */
  missingTools: string[];
  /** How the tools were shipped. */
  toolForm: ToolForm;
  /** Number of trusted keys baked in. */
  trustedKeyCount: number;
  /** Seconds the build took. */
  seconds: number;
}

/**
 * Build the stub initramfs, the second-stage test initramfs and fetch the kernel.
 *
 * Needs a Debian system with `apt-get`, `dpkg`, `ldd`, `xz`/`zstd` and `gzip`; downloads
 * packages with `apt-get download` (kept in `<outDir>/debs` and reused).
 *
 * @example
 * ```ts ignore
 * import { buildBootImages } from "./build.ts";
 *
 * const result = await buildBootImages({ projectDir: ".", outDir: "boot/build" });
 * console.log(result.stub, result.stubBytes);
 * ```
 */
export async function buildBootImages(options: BuildBootImagesOptions): Promise<BootBuildResult> {
  const {
    projectDir,
    outDir,
    trustedKeys,
    compression = "zstd",
    level,
    extraModules = [],
    denoBinary = Deno.execPath(),
    denortBin,
    toolForm = "bundle",
    measureWithoutDeno = false,
    verbose = false,
    signal,
  } = options;
  _validateBuildOptions(toolForm, compression, level);
  const started = performance.now();
  const log = (line: string) => verbose && console.error(`boot:build: ${line}`);
  const project = await Deno.realPath(projectDir);
  await Deno.mkdir(outDir, { recursive: true });
  const out = await Deno.realPath(outDir);
  const keys = await _readTrustedKeys(trustedKeys);

  log("downloading Debian packages");
  const debian = await _debianParts(out, extraModules, signal);
  const form: ToolForm = denortBin !== undefined ? "compiled" : toolForm;
  const tools = await _stageTools(project, `${out}/stub-root`, form, { denortBin, log, signal });

  const base = _stubBaseEntries(project, debian, keys.text);
  base.push(_textEntry(
    "etc/phase/build.txt",
    `kernel ${debian.kernelRelease}\ntools ${tools.tools.join(" ")}\nform ${form}\n`,
  ));
  const deno = await _denoEntries(tools, form, denoBinary, signal);

  log(`compressing the stub with ${compression}`);
  const { stub, stubCpioBytes, stubWithoutDenoBytes } = await _writeStub(out, {
    base,
    deno,
    kexecLibs: debian.kexecLibs,
  }, { compression, level, measureWithoutDeno, log, signal });

  log(`building the node stage (${compression})`);
  const node = await _writeNodeStage(out, project, { base, deno, form, denoBinary }, {
    kexecLibs: debian.kexecLibs,
    compression,
    level,
    signal,
  });

  log("building the second stage");
  const secondStage = `${out}/second-stage.cpio.gz`;
  const secondStageEntries = _secondStageEntries(project, debian);
  await _writeCompressed(secondStageEntries, secondStage, "gzip", undefined, signal);

  const result: BootBuildResult = {
    kernel: debian.kernel,
    kernelRelease: debian.kernelRelease,
    stub,
    stubBytes: (await Deno.stat(stub)).size,
    stubCpioBytes,
    compression,
    ...(stubWithoutDenoBytes === undefined ? {} : { stubWithoutDenoBytes }),
    node,
    nodeBytes: (await Deno.stat(node)).size,
    secondStage,
    secondStageBytes: (await Deno.stat(secondStage)).size,
    tools: tools.tools,
    missingTools: tools.missingTools,
    toolForm: form,
    trustedKeyCount: keys.count,
    seconds: Math.round((performance.now() - started) / 100) / 10,
  };
  await Deno.writeTextFile(`${out}/build.json`, JSON.stringify(result, null, 2) + "\n");
  return result;
}

function _validateBuildOptions(toolForm: string, compression: string, level?: number): void {
  if (toolForm !== "bundle" && toolForm !== "cache") {
    throw new TypeError(`Cannot build: tool form must be bundle or cache, got '${toolForm}'`);
  }
  if (compression !== "xz" && compression !== "zstd") {
    throw new TypeError(`Cannot build: compression must be xz or zstd, got '${compression}'`);
  }
  if (level !== undefined && (!Number.isInteger(level) || level < 0 || level > 19)) {
    throw new RangeError(`Cannot build: level must be a whole number 0-19, got ${level}`);
  }
}

/** The trusted-keys text to bake in, and how many keys it holds. */
async function _readTrustedKeys(
  trustedKeys: string | undefined,
): Promise<{ text: string; count: number }> {
  if (trustedKeys === undefined) {
    return {
      text: "# No trusted keys were baked in: this image refuses every manifest.\n",
      count: 0,
    };
  }
  const text = await Deno.readTextFile(trustedKeys);
  const count = parseTrustedKeys(text).length;
  if (count === 0) throw new RangeError(`Cannot build: '${trustedKeys}' holds no key`);
  return { text, count };
}

/** What the images take from Debian packages, extracted under `<out>/pkgroot`. */
interface _DebianParts {
  /** Where the packages are extracted. */
  pkgRoot: string;
  /** The kernel, copied to `<out>/vmlinuz`. */
  kernel: string;
  kernelRelease: string;
  /** kexec's shared libraries, by file name. */
  kexecLibs: Map<string, string>;
  /** The kernel modules to load, in order. */
  moduleFiles: { name: string; path: string }[];
  /** The static busybox binary. */
  busybox: string;
  /** Its applets (each becomes a symlink). */
  applets: string[];
}

/** Download and extract the kernel, busybox-static and kexec-tools (with its libraries). */
async function _debianParts(
  out: string,
  extraModules: string[],
  signal?: AbortSignal,
): Promise<_DebianParts> {
  const debs = `${out}/debs`;
  await Deno.mkdir(debs, { recursive: true });
  const kernelMeta = await _download(debs, "linux-image-amd64", signal);
  const kernelPackage = (await _depends(kernelMeta, signal)).find((d) =>
    d.startsWith("linux-image-")
  );
  if (kernelPackage === undefined) {
    throw new Error("Cannot build: linux-image-amd64 names no linux-image package");
  }
  const pkgRoot = `${out}/pkgroot`;
  await Deno.remove(pkgRoot, { recursive: true }).catch(_ignoreNotFound);
  await Deno.mkdir(pkgRoot, { recursive: true });
  for (const name of [kernelPackage, "busybox-static", "kexec-tools"]) {
    await _extract(await _download(debs, name, signal), pkgRoot, signal);
  }
  const kexecDeb = await _download(debs, "kexec-tools", signal);
  const kexecLibs = await _resolveLibraries(
    `${pkgRoot}/sbin/kexec`,
    pkgRoot,
    debs,
    (await _depends(kexecDeb, signal)).filter((d) => d.startsWith("lib") && d !== "libc6"),
    signal,
  );

  const modulesRoot = `${pkgRoot}/lib/modules`;
  const kernelRelease = [...Deno.readDirSync(modulesRoot)][0]?.name;
  if (kernelRelease === undefined) {
    throw new Error("Cannot build: the kernel package has no modules");
  }
  const kernel = `${out}/vmlinuz`;
  await Deno.copyFile(`${pkgRoot}/boot/vmlinuz-${kernelRelease}`, kernel);
  const moduleFiles = _findModules(`${modulesRoot}/${kernelRelease}`, [
    ...VIRTIO_NET_MODULES,
    ...extraModules,
  ]);
  const busybox = `${pkgRoot}/bin/busybox`;
  const applets = (await _run(busybox, ["--list"], { signal })).split("\n").filter((a) =>
    /^[a-z0-9_.[-]+$/.test(a) && a !== "busybox"
  );
  return { pkgRoot, kernel, kernelRelease, kexecLibs, moduleFiles, busybox, applets };
}

/** The project's tools staged for the stub, and the `/bin/phase-<tool>` entries that run them. */
interface _StagedTools {
  /** The staging tree (`phase/` or `bin/` below it goes into the image). */
  stage: string;
  /** Tools in the image. */
  tools: string[];
  /** Tools missing from the project. */
  missingTools: string[];
  /** The wrapper scripts (none for compiled tools). */
  entries: CpioEntry[];
}

/** Stage the tools (and `kexec-plan`) in the given form under `stage`. */
async function _stageTools(
  project: string,
  stage: string,
  form: ToolForm,
  options: {
    denortBin: string | undefined;
    log: (line: string) => void;
    signal?: AbortSignal | undefined;
  },
): Promise<_StagedTools> {
  const { denortBin, log, signal } = options;
  await Deno.remove(stage, { recursive: true }).catch(_ignoreNotFound);
  const tools = STUB_TOOLS.filter((t) => _exists(`${project}/cli/${t}.ts`));
  const missingTools = STUB_TOOLS.filter((t) => !tools.includes(t));
  for (const t of missingTools) log(`warning: cli/${t}.ts does not exist; phase-${t} is left out`);
  const commands = [...tools.map((t) => ({ name: t, entry: `cli/${t}.ts` })), {
    name: "kexec-plan",
    entry: "boot/kexec_plan.ts",
  }];
  let entries: CpioEntry[] = [];
  if (form === "bundle") {
    log("bundling the tools");
    entries = await _bundleTools(project, stage, commands, signal);
  } else if (form === "cache") {
    log("copying project sources and filling the module cache");
    entries = await _cacheTools(project, stage, commands, signal);
  } else {
    log("compiling tools with deno compile");
    await _compileTools(project, stage, commands, denortBin!, signal);
  }
  return { stage, tools, missingTools, entries };
}

/** A tool of the stub: its name (`/bin/phase-<name>`) and entrypoint in the project. */
type _Command = { name: string; entry: string };

/** `deno bundle` each tool to `<stage>/phase/<name>.js`; returns the wrapper entries. */
async function _bundleTools(
  project: string,
  stage: string,
  commands: _Command[],
  signal?: AbortSignal,
): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [];
  await Deno.mkdir(`${stage}/phase`, { recursive: true });
  for (const { name, entry } of commands) {
    await bundleEntrypoint(entry, `${stage}/phase/${name}.js`, { projectDir: project, signal });
    const flags = await headerFlags(`${project}/${entry}`);
    entries.push(_wrapperEntry(name, `/phase/${name}.js`, flags, "--no-config"));
  }
  return entries;
}

/**
 * Copy the tools' project sources to `<stage>/phase` and fill a module cache there; returns the
 * wrapper entries.
 */
async function _cacheTools(
  project: string,
  stage: string,
  commands: _Command[],
  signal?: AbortSignal,
): Promise<CpioEntry[]> {
  await Deno.mkdir(`${stage}/phase`, { recursive: true });
  const files = new Set<string>(["deno.json", "deno.lock"]);
  for (const { entry } of commands) {
    const info = JSON.parse(
      await _run(Deno.execPath(), ["info", "--json", entry], { cwd: project, signal }),
    ) as { modules: { specifier: string }[] };
    for (const m of info.modules) {
      if (m.specifier.startsWith(`file://${project}/`)) {
        files.add(decodeURIComponent(m.specifier.slice(`file://${project}/`.length)));
      }
    }
  }
  for (const file of files) {
    const dest = `${stage}/phase/${file}`;
    await Deno.mkdir(dirname(dest), { recursive: true });
    await Deno.copyFile(`${project}/${file}`, dest);
  }
  await _run(Deno.execPath(), ["cache", "--quiet", ...commands.map((c) => c.entry)], {
    cwd: `${stage}/phase`,
    env: { DENO_DIR: `${stage}/phase/.deno`, DENO_NO_UPDATE_CHECK: "1" },
    signal,
  });
  await _pruneCache(`${stage}/phase/.deno`);
  const entries: CpioEntry[] = [];
  for (const { name, entry } of commands) {
    const flags = await headerFlags(`${project}/${entry}`);
    entries.push(
      _wrapperEntry(
        name,
        `/phase/${entry}`,
        flags,
        "--config=/phase/deno.json --lock=/phase/deno.lock",
      ),
    );
  }
  return entries;
}

/** `deno compile` each tool to `<stage>/bin/phase-<name>` with the flags its header declares. */
async function _compileTools(
  project: string,
  stage: string,
  commands: _Command[],
  denortBin: string,
  signal?: AbortSignal,
): Promise<void> {
  await Deno.mkdir(`${stage}/bin`, { recursive: true });
  for (const { name, entry } of commands) {
    const flags = await headerFlags(`${project}/${entry}`);
    await _run(Deno.execPath(), [
      "compile",
      "--no-check",
      ...flags,
      "--output",
      `${stage}/bin/phase-${name}`,
      entry,
    ], { cwd: project, env: { DENORT_BIN: denortBin }, signal });
  }
}

/**
 * The stub's part that `measureWithoutDeno` leaves out: the tools (wrappers and staged tree),
 * the deno binary unless the tools are compiled, and deno's shared libraries.
 */
async function _denoEntries(
  tools: _StagedTools,
  form: ToolForm,
  denoBinary: string,
  signal?: AbortSignal,
): Promise<{ entries: CpioEntry[]; libs: Map<string, string> }> {
  const entries: CpioEntry[] = [...tools.entries];
  if (form === "compiled") {
    entries.push(...await _treeEntries(tools.stage, "bin"));
    return { entries, libs: new Map() };
  }
  entries.push({ kind: "file", path: "bin/deno", mode: 0o755, source: denoBinary });
  const libs = await _ldd(denoBinary, {}, signal);
  entries.push(...await _treeEntries(tools.stage, "phase"));
  return { entries, libs };
}

/**
 * Write `<out>/stub.cpio.<xz|zst>` from the base entries, the deno part and all their shared
 * libraries; with `measureWithoutDeno`, also the stub without the deno part, to measure it.
 */
async function _writeStub(
  out: string,
  parts: {
    base: CpioEntry[];
    deno: { entries: CpioEntry[]; libs: Map<string, string> };
    kexecLibs: Map<string, string>;
  },
  options: {
    compression: "xz" | "zstd";
    level: number | undefined;
    measureWithoutDeno: boolean;
    log: (line: string) => void;
    signal?: AbortSignal | undefined;
  },
): Promise<{ stub: string; stubCpioBytes: number; stubWithoutDenoBytes?: number }> {
  const { base, deno, kexecLibs } = parts;
  const { compression, level, measureWithoutDeno, log, signal } = options;
  const suffix = compression === "xz" ? "xz" : "zst";
  const stub = `${out}/stub.cpio.${suffix}`;
  const libs = new Map<string, string>([...kexecLibs, ...deno.libs]);
  const entries = [...base, ..._libEntries(libs), ...deno.entries];
  const stubCpioBytes = await _writeCompressed(entries, stub, compression, level, signal);
  if (!measureWithoutDeno) return { stub, stubCpioBytes };
  log("measuring the stub without deno");
  const path = `${out}/stub-without-deno.cpio.${suffix}`;
  await _writeCompressed([...base, ..._libEntries(kexecLibs)], path, compression, level, signal);
  return { stub, stubCpioBytes, stubWithoutDenoBytes: (await Deno.stat(path)).size };
}

/** The entrypoints the node stage carries besides the stub's tools, as `/bin/phase-<name>`. */
export const NODE_STAGE_TOOLS: readonly string[] = ["start", "serve"];

/**
 * Write `<out>/node.cpio.<xz|zst>`: the stub's base with `/init` = `boot/node_stage_init`, its
 * tools, deno and its libraries, plus `start` and `serve` bundled into `/phase` with the modules
 * they load at run time ({@linkcode bundleWithCompanions}) and their wrappers. The bundles are
 * made whatever the stub's tool form (deno is shipped either way).
 */
async function _writeNodeStage(
  out: string,
  project: string,
  parts: {
    base: CpioEntry[];
    deno: { entries: CpioEntry[]; libs: Map<string, string> };
    form: ToolForm;
    denoBinary: string;
  },
  options: {
    kexecLibs: Map<string, string>;
    compression: "xz" | "zstd";
    level: number | undefined;
    signal?: AbortSignal | undefined;
  },
): Promise<string> {
  const { base, deno, form, denoBinary } = parts;
  const { kexecLibs, compression, level, signal } = options;
  const stage = `${out}/node-root`;
  await Deno.remove(stage, { recursive: true }).catch(_ignoreNotFound);
  await Deno.mkdir(`${stage}/phase`, { recursive: true });
  const files = await bundleWithCompanions(
    NODE_STAGE_TOOLS.map((name) => ({ entry: `cli/${name}.ts`, file: `${name}.js` })),
    `${stage}/phase`,
    { projectDir: project, signal },
  );
  const entries: CpioEntry[] = [
    ...base.filter((e) => e.path !== "init"),
    { kind: "file", path: "init", mode: 0o755, source: `${project}/boot/node_stage_init` },
  ];
  const libs = new Map<string, string>([...kexecLibs, ...deno.libs]);
  const nodeEntries: CpioEntry[] = [...deno.entries];
  if (form === "compiled") {
    nodeEntries.push({ kind: "file", path: "bin/deno", mode: 0o755, source: denoBinary });
    for (const [name, path] of await _ldd(denoBinary, {}, signal)) libs.set(name, path);
    nodeEntries.push({ kind: "dir", path: "phase" });
  }
  for (const file of files) {
    nodeEntries.push({ kind: "file", path: `phase/${file}`, source: `${stage}/phase/${file}` });
  }
  for (const name of NODE_STAGE_TOOLS) {
    const flags = await headerFlags(`${project}/cli/${name}.ts`, {
      placeholders: { "<deno binary>": "/bin/deno" },
    });
    nodeEntries.push(_wrapperEntry(name, `/phase/${name}.js`, flags, "--no-config"));
  }
  const suffix = compression === "xz" ? "xz" : "zst";
  const path = `${out}/node.cpio.${suffix}`;
  await _writeCompressed(
    [...entries, ..._libEntries(libs), ...nodeEntries],
    path,
    compression,
    level,
    signal,
  );
  return path;
}

/** The directories the stub's root holds. */
const STUB_DIRS = [
  "bin",
  "sbin",
  "dev",
  "etc",
  "etc/phase",
  "lib",
  "lib/modules",
  "lib/x86_64-linux-gnu",
  "lib64",
  "proc",
  "run",
  "sys",
  "tmp",
  "usr",
  "usr/share",
  "usr/share/udhcpc",
];

/** The stub's files besides deno, the tools and the shared libraries. */
function _stubBaseEntries(project: string, debian: _DebianParts, keysText: string): CpioEntry[] {
  const base: CpioEntry[] = STUB_DIRS.map((dir) => ({
    kind: "dir",
    path: dir,
    ...(dir === "tmp" ? { mode: 0o1777 } : {}),
  }));
  base.push({ kind: "char", path: "dev/console", major: 5, minor: 1 });
  base.push({ kind: "char", path: "dev/null", mode: 0o666, major: 1, minor: 3 });
  base.push({ kind: "file", path: "bin/busybox", mode: 0o755, source: debian.busybox });
  for (const applet of debian.applets) {
    base.push({ kind: "symlink", path: `bin/${applet}`, target: "busybox" });
  }
  base.push({ kind: "file", path: "init", mode: 0o755, source: `${project}/boot/init` });
  base.push({
    kind: "file",
    path: "usr/share/udhcpc/default.script",
    mode: 0o755,
    source: `${project}/boot/udhcpc.script`,
  });
  base.push(_textEntry("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"));
  base.push(_textEntry("etc/phase/trusted-keys", keysText));
  base.push({
    kind: "file",
    path: "sbin/kexec",
    mode: 0o755,
    source: `${debian.pkgRoot}/sbin/kexec`,
  });
  for (const m of debian.moduleFiles) {
    base.push({ kind: "file", path: `lib/modules/${m.name}.ko`, source: m.path });
  }
  base.push(
    _textEntry("etc/phase/modules", debian.moduleFiles.map((m) => m.name).join("\n") + "\n"),
  );
  return base;
}

/** The second stage: busybox and an init that prints a marker and powers off. */
function _secondStageEntries(project: string, debian: _DebianParts): CpioEntry[] {
  return [
    { kind: "dir", path: "bin" },
    { kind: "dir", path: "dev" },
    { kind: "dir", path: "proc" },
    { kind: "char", path: "dev/console", major: 5, minor: 1 },
    { kind: "file", path: "bin/busybox", mode: 0o755, source: debian.busybox },
    ...debian.applets.map((a): CpioEntry => ({
      kind: "symlink",
      path: `bin/${a}`,
      target: "busybox",
    })),
    { kind: "file", path: "init", mode: 0o755, source: `${project}/boot/second_stage_init` },
  ];
}

/** Shared libraries by name: the loader in `lib64/`, the others in `lib/x86_64-linux-gnu/`. */
function _libEntries(libs: Map<string, string>): CpioEntry[] {
  const list: CpioEntry[] = [];
  for (const [name, path] of [...libs].sort()) {
    if (name.startsWith("ld-linux")) {
      list.push({ kind: "file", path: `lib64/${name}`, mode: 0o755, source: path });
    } else list.push({ kind: "file", path: `lib/x86_64-linux-gnu/${name}`, source: path });
  }
  return list;
}

function _textEntry(path: string, text: string): CpioEntry {
  return { kind: "file", path, data: new TextEncoder().encode(text) };
}

/** `/bin/phase-<name>`: runs one tool with exactly the permissions its header declares, offline. */
function _wrapperEntry(name: string, script: string, flags: string[], config: string): CpioEntry {
  const text = [
    "#!/bin/sh",
    `# phase-${name}: ${script} with the permissions its source declares; nothing is downloaded.`,
    "export DENO_DIR=/phase/.deno DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1",
    `exec /bin/deno run --cached-only ${config} ${flags.join(" ")} ${script} "$@"`,
    "",
  ].join("\n");
  return {
    kind: "file",
    path: `bin/phase-${name}`,
    mode: 0o755,
    data: new TextEncoder().encode(text),
  };
}

/**
 * Bundle one of the project's entrypoints into a single JavaScript file with `deno bundle`, the
 * way the stub carries its tools (the Debian package, `packaging/deb.ts`, does the same).
 *
 * @example
 * ```ts
 * import { bundleEntrypoint } from "./build.ts";
 * import assert from "node:assert/strict";
 *
 * const out = await Deno.makeTempFile({ suffix: ".js" });
 * await bundleEntrypoint("boot/kexec_plan.ts", out, {
 *   projectDir: new URL("..", import.meta.url).pathname,
 * });
 * assert.ok((await Deno.stat(out)).size > 0);
 * await Deno.remove(out);
 * ```
 */
export async function bundleEntrypoint(
  entry: string,
  output: string,
  options: { projectDir: string; signal?: AbortSignal | undefined },
): Promise<void> {
  const { projectDir, signal } = options;
  await _run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--platform=deno",
    "--output",
    output,
    entry,
  ], { cwd: projectDir, env: { DENO_NO_UPDATE_CHECK: "1" }, signal });
}

/**
 * Modules that bundles load at run time by a URL relative to themselves
 * (`new URL("./sandbox_main.ts", import.meta.url)` in `runtime/`): {@linkcode bundleWithCompanions}
 * bundles each under its own name beside the bundles.
 */
export const BUNDLE_COMPANIONS: readonly string[] = [
  "runtime/sandbox_main.ts",
  "runtime/sandbox_worker.ts",
];

/**
 * Bundle entrypoints into `dir` (each `{ entry, file }` to `dir/file`) together with the
 * {@linkcode BUNDLE_COMPANIONS} they load at run time, then check that every
 * `new URL("./x", import.meta.url)` in the bundles names a file carried beside them. Used by the
 * boot node stage and the Debian package (`packaging/deb.ts`).
 *
 * @returns The file names written in `dir`, bundles first.
 * @throws {Error} `Cannot build: '<file>' loads '<ref>' at run time, which ... does not carry`.
 *
 * @example
 * ```ts
 * import { bundleWithCompanions } from "./build.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const files = await bundleWithCompanions(
 *   [{ entry: "boot/kexec_plan.ts", file: "kexec-plan.js" }],
 *   dir,
 *   { projectDir: new URL("..", import.meta.url).pathname },
 * );
 * assert.deepEqual(files, ["kexec-plan.js", "sandbox_main.ts", "sandbox_worker.ts"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function bundleWithCompanions(
  entries: readonly { entry: string; file: string }[],
  dir: string,
  options: {
    projectDir: string;
    signal?: AbortSignal | undefined;
    log?: (line: string) => void;
  },
): Promise<string[]> {
  const { projectDir, signal, log = () => {} } = options;
  const all = [
    ...entries,
    ...BUNDLE_COMPANIONS.map((entry) => ({
      entry,
      file: entry.slice(entry.lastIndexOf("/") + 1),
    })),
  ];
  for (const { entry, file } of all) {
    log(`bundling ${entry}`);
    await bundleEntrypoint(entry, `${dir}/${file}`, { projectDir, signal });
  }
  for (const { file } of all) {
    const text = await Deno.readTextFile(`${dir}/${file}`);
    for (
      const [, ref] of text.matchAll(/new URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url/g)
    ) {
      const carried = /^\.\/[\w.-]+$/.test(ref!) &&
        await Deno.stat(`${dir}/${ref!.slice(2)}`).then((i) => i.isFile, () => false);
      if (!carried) {
        throw new Error(
          `Cannot build: '${file}' loads '${ref}' at run time, which is not carried beside it`,
        );
      }
    }
  }
  return all.map((e) => e.file);
}

/**
 * The `--allow-*` (and `--ignore-env`, `--unstable-*`) flags an entrypoint declares in the
 * `deno run ...` command of its header comment, e.g.
 * `// deno run --allow-net --allow-read cli/fetch.ts`; the command may go on over the following
 * comment lines until it names the entrypoint. Values that are placeholders (`=<dir>`, `=DIR`)
 * or relative paths cannot hold inside an image and are dropped, unless `placeholders` gives the
 * placeholder's value (`{ "<deno binary>": "/usr/lib/plasm/deno" }`).
 *
 * @example
 * ```ts
 * import { headerFlags } from "./build.ts";
 * import assert from "node:assert/strict";
 *
 * const flags = await headerFlags(new URL("./kexec_plan.ts", import.meta.url).pathname);
 * assert.deepEqual(flags, ["--allow-read=/run/phase,/etc/phase"]);
 * ```
 */
export async function headerFlags(
  path: string,
  options: { placeholders?: Record<string, string> } = {},
): Promise<string[]> {
  const { placeholders = {} } = options;
  const lines = (await Deno.readTextFile(path)).split("\n").slice(0, 24);
  const start = lines.findIndex((line) => /^\s*(\/\/|\*)\s*deno run /.test(line));
  let head = start < 0 ? "" : lines[start]!;
  for (let i = start + 1; start >= 0 && !/\.[jt]s\b/.test(head) && i < lines.length; i++) {
    if (!/^\s*(\/\/|\*)\s+--/.test(lines[i]!)) break;
    head += " " + lines[i]!.replace(/^\s*(\/\/|\*)/, "");
  }
  head = head.replace(/\s[\w./-]+\.[jt]s\b.*$/, "");
  for (const [placeholder, value] of Object.entries(placeholders)) {
    head = head.replaceAll(`=${placeholder}`, `=${value}`);
  }
  const flags = new Set<string>();
  for (
    const [flag] of head.matchAll(
      /--(?:allow-[a-z-]+|ignore-env|unstable-[a-z-]+|no-prompt|no-remote|v8-flags)(=[^\s`'"]+)?/g,
    )
  ) {
    const [name, value] = flag.split("=", 2) as [string, string | undefined];
    if (value === undefined) flags.add(name);
    else if (/[<>]|^[A-Z_]+$/.test(value)) flags.add(name);
    else if (name === "--allow-read" || name === "--allow-write") {
      const absolute = value.split(",").filter((p) => p.startsWith("/"));
      flags.add(absolute.length === value.split(",").length ? flag : name);
    } else flags.add(flag);
  }
  if (flags.size === 0) {
    throw new SyntaxError(`Cannot build: '${path}' does not declare its --allow-* flags`);
  }
  return [...flags];
}

async function _download(dir: string, name: string, signal?: AbortSignal): Promise<string> {
  const found = [...Deno.readDirSync(dir)].find((e) =>
    e.name.startsWith(`${name}_`) && e.name.endsWith(".deb")
  );
  if (found) return `${dir}/${found.name}`;
  await _run("apt-get", ["download", name], { cwd: dir, signal });
  const got = [...Deno.readDirSync(dir)].find((e) =>
    e.name.startsWith(`${name}_`) && e.name.endsWith(".deb")
  );
  if (!got) throw new Error(`Cannot build: apt-get download ${name} left no .deb`);
  return `${dir}/${got.name}`;
}

async function _depends(deb: string, signal?: AbortSignal): Promise<string[]> {
  const text = await _run("dpkg-deb", ["-f", deb, "Depends"], { signal });
  return text.split(/[,|]/).map((d) => d.trim().split(/\s/)[0] ?? "").filter((d) => d !== "");
}

async function _extract(deb: string, dir: string, signal?: AbortSignal): Promise<void> {
  await _run("dpkg", ["-x", deb, dir], { signal });
}

/**
 * The shared libraries a binary needs, extracting Debian packages into `pkgRoot` until `ldd`
 * finds them all. Missing sonames map to packages by Debian's naming rule
 * (`libfoo.so.1` -> `libfoo1`) after the binary's own library dependencies.
 */
async function _resolveLibraries(
  binary: string,
  pkgRoot: string,
  debs: string,
  candidates: string[],
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const env = {
    LD_LIBRARY_PATH: `${pkgRoot}/usr/lib/x86_64-linux-gnu:${pkgRoot}/lib/x86_64-linux-gnu`,
  };
  const tried = new Set<string>();
  for (const name of candidates) {
    await _extract(await _download(debs, name, signal), pkgRoot, signal);
    tried.add(name);
  }
  for (let round = 0; round < 10; round++) {
    const text = await _run("ldd", [binary], { env, signal });
    const missing = [...text.matchAll(/^\s*(\S+) => not found/gm)].map((m) => m[1]!);
    if (missing.length === 0) return await _ldd(binary, env, signal);
    for (const soname of new Set(missing)) {
      const m = /^(lib[^.]+)\.so\.(\d+)/.exec(soname);
      const name = m ? `${m[1]}${m[2]}`.toLowerCase().replaceAll("_", "-") : undefined;
      if (name === undefined || tried.has(name)) {
        throw new Error(`Cannot build: no package found for ${soname} needed by ${binary}`);
      }
      tried.add(name);
      await _extract(await _download(debs, name, signal), pkgRoot, signal);
    }
  }
  throw new Error(`Cannot build: libraries of ${binary} did not resolve`);
}

/** `ldd` as a map from file name to the resolved real path. */
async function _ldd(
  binary: string,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const text = await _run("ldd", [binary], { env, signal });
  const libs = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\s*(\S+) => (\/\S+)/.exec(line) ?? /^\s*(\/\S+) \(/.exec(line);
    if (!m) continue;
    const path = m[2] ?? m[1]!;
    const name = basename(path);
    libs.set(name, await Deno.realPath(path));
  }
  return libs;
}

function _findModules(root: string, names: string[]): { name: string; path: string }[] {
  const all = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ko")) all.set(e.name.slice(0, -3), `${dir}/${e.name}`);
    }
  };
  walk(root);
  return names.map((name) => {
    const path = all.get(name) ?? all.get(name.replaceAll("-", "_"));
    if (path === undefined) throw new Error(`Cannot build: kernel module '${name}' not found`);
    return { name, path };
  });
}

/** Remove what a module cache does not need at run time: source maps, type declarations, docs. */
async function _pruneCache(dir: string): Promise<void> {
  const walk = async (path: string) => {
    for await (const e of Deno.readDir(path)) {
      const full = `${path}/${e.name}`;
      if (e.isDirectory) await walk(full);
      else if (
        /\.(map|d\.ts|d\.mts|d\.cts|md|markdown)$/.test(e.name) && !/^license/i.test(e.name)
      ) {
        await Deno.remove(full);
      }
    }
  };
  if (_exists(dir)) await walk(dir);
}

/** Entries for a staged tree under `root/top`, sorted, directories before their contents. */
async function _treeEntries(root: string, top: string): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [];
  const walk = async (rel: string) => {
    const info = await Deno.lstat(`${root}/${rel}`);
    if (info.isSymlink) {
      entries.push({ kind: "symlink", path: rel, target: await Deno.readLink(`${root}/${rel}`) });
    } else if (info.isDirectory) {
      if (rel !== "bin") entries.push({ kind: "dir", path: rel });
      const names = [];
      for await (const e of Deno.readDir(`${root}/${rel}`)) names.push(e.name);
      for (const name of names.sort()) await walk(`${rel}/${name}`);
    } else {
      const mode = (info.mode ?? 0o644) & 0o777;
      entries.push({ kind: "file", path: rel, mode, source: `${root}/${rel}` });
    }
  };
  if (_exists(`${root}/${top}`)) await walk(top);
  return entries;
}

/** Stream a cpio archive through a compressor into `path`; returns the uncompressed size. */
async function _writeCompressed(
  entries: CpioEntry[],
  path: string,
  compression: "xz" | "zstd" | "gzip",
  level: number | undefined,
  signal?: AbortSignal,
): Promise<number> {
  const args = compression === "xz"
    // The kernel's xz decoder checks CRC32 only; the x86 BCJ filter shrinks the binaries.
    ? ["--check=crc32", "--x86", `--lzma2=preset=${level ?? 6}`, "-T1", "-c"]
    : compression === "zstd"
    ? [`-${level ?? 19}`, "-q", "-c", "-T1"]
    : ["-9", "-n", "-c"];
  const child = new Deno.Command(compression, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...(signal ? { signal } : {}),
  }).spawn();
  let size = 0;
  const counted = cpioArchive(entries, signal ? { signal } : {}).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        size += chunk.length;
        controller.enqueue(chunk);
      },
    }),
  );
  const stderr = new Response(child.stderr).text();
  // The compressed bytes are put in place only once the compressor has exited cleanly.
  const checked = child.stdout.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async flush() {
        const [status, errText] = await Promise.all([child.status, stderr]);
        if (!status.success) {
          throw new Error(`Cannot compress '${path}' with ${compression}: ${errText.trim()}`);
        }
      },
    }),
  );
  await Promise.all([counted.pipeTo(child.stdin), writeFileAtomic(path, checked, { signal })]);
  return size;
}

/**
 * Run a build tool and return its stdout; a failure throws one `Cannot build: ...` line with the
 * end of its stderr. Shared with `packaging/deb.ts`.
 *
 * @example
 * ```ts
 * import { _run } from "./build.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await _run(Deno.execPath(), ["eval", "console.log(1)"]), "1\n");
 * ```
 */
export async function _run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal | undefined } = {},
): Promise<string> {
  const { cwd, env, signal } = options;
  const output = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(cwd ? { cwd } : {}),
    ...(env ? { env } : {}),
    ...(signal ? { signal } : {}),
  }).output();
  if (!output.success) {
    const err = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join(" | ");
    throw new Error(`Cannot build: '${command} ${args.join(" ")}' failed: ${err}`);
  }
  return new TextDecoder().decode(output.stdout);
}

function _exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function _ignoreNotFound(error: unknown): void {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
}

const USAGE = `Usage: deno task boot:build [--out DIR] [--trusted-keys FILE] [--compression xz|zstd]
       [--tool-form bundle|cache]
       [--level N] [--extra-modules a,b] [--measure-without-deno] [--quiet] [--json]`;

/** CLI entry: build the images and print a summary (or JSON). */
async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        out: { type: "string", default: "boot/build" },
        project: { type: "string", default: "." },
        "trusted-keys": { type: "string" },
        compression: { type: "string", default: "zstd" },
        "tool-form": { type: "string", default: "bundle" },
        level: { type: "string" },
        "extra-modules": { type: "string" },
        "measure-without-deno": { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`boot:build: error: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const denortBin = Deno.env.get("DENORT_BIN");
  try {
    const result = await buildBootImages({
      projectDir: values.project,
      outDir: values.out,
      ...(values["trusted-keys"] ? { trustedKeys: values["trusted-keys"] } : {}),
      compression: values.compression as "xz" | "zstd",
      toolForm: values["tool-form"] as "bundle" | "cache",
      ...(values.level ? { level: Number(values.level) } : {}),
      extraModules: values["extra-modules"]?.split(",").filter((m) => m !== "") ?? [],
      ...(denortBin ? { denortBin } : {}),
      measureWithoutDeno: values["measure-without-deno"],
      verbose: !values.quiet && !values.json,
    });
    if (values.json) console.log(JSON.stringify(result));
    else {
      const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
      console.log(`stub        ${result.stub}  ${mb(result.stubBytes)} (${result.compression})`);
      if (result.stubWithoutDenoBytes !== undefined) {
        console.log(`  without deno: ${mb(result.stubWithoutDenoBytes)}`);
      }
      console.log(`node stage  ${result.node}  ${mb(result.nodeBytes)} (${result.compression})`);
      console.log(`second stage ${result.secondStage}  ${mb(result.secondStageBytes)}`);
      console.log(`kernel      ${result.kernel}  (${result.kernelRelease})`);
      console.log(`tools       ${result.tools.join(", ")} (${result.toolForm})`);
      if (result.missingTools.length) console.log(`missing     ${result.missingTools.join(", ")}`);
      console.log(`trusted keys ${result.trustedKeyCount}; built in ${result.seconds} s`);
    }
    return 0;
  } catch (error) {
    console.error(`boot:build: error: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
