// deno run --allow-read --allow-write --allow-run packaging/deb.ts [--out DIR]
//
// --allow-read: the project, its npm packages in Deno's cache (their licenses) and the deno
// binary it ships. --allow-write: the output dir (default packaging/build), where the staging
// tree is made too. --allow-run is not narrowed to names: the build runs the deno binary it
// ships by absolute path (`deno bundle`, `deno info`), dpkg-shlibdeps and dpkg-deb. No net, env
// or sys: nothing is downloaded.
/**
 * `deno task deb`: build the Debian package `plasm_<version>_amd64.deb` offline with
 * `dpkg-deb`: the deno binary that runs this build, the project bundled per entrypoint with
 * `deno bundle` (as the Phase Boot stub carries its tools), `/usr/bin/plasm` dispatching each
 * subcommand with exactly the `--allow-*` flags its source declares, the hardened
 * `plasmd.service` (`start`) and `plasm-provider.service` (`serve`), configuration under
 * `/etc/plasm/` (conffiles), maintainer scripts, copyright, changelog and a manual page.
 *
 * The sources of all of it are in `packaging/`; see `docs/packaging.md`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { _run, BUNDLE_COMPANIONS, bundleWithCompanions, headerFlags } from "../boot/build.ts";

/** The subcommands `/usr/bin/plasm` dispatches, each `cli/<name>.ts` bundled to one file. */
export const DEB_SUBCOMMANDS: readonly string[] = [
  "run",
  "verify",
  "fetch",
  "keygen",
  "serve",
  "provider",
  "discover",
  "start",
  "submit",
  "result",
];

/** Where the deno binary and the bundles are installed. */
const _LIB = "/usr/lib/plasm";

/** Licenses `packaging/debian/copyright` carries the text of, as npm packages spell them. */
const _KNOWN_LICENSES = new Set([
  "MIT",
  "Apache-2.0",
  "Apache-2.0 OR MIT",
  "MIT OR Apache-2.0",
  "(Apache-2.0 OR MIT)",
  "(MIT OR Apache-2.0)",
]);

/** Options of {@linkcode buildDeb}. */
export interface BuildDebOptions {
  /** The repository root (holding deno.json, cli/ and packaging/). */
  projectDir: string;
  /** Where the `.deb` goes (made if missing); the staging tree is made and removed in it. */
  outDir: string;
  /** The deno binary to ship. @default {Deno.execPath()} */
  denoBinary?: string;
  /** dpkg-deb's compressor. @default {"xz"} */
  compression?: "xz" | "gzip" | "zstd" | "none";
  /** dpkg-deb's compression level (`-z`). @default {undefined} (dpkg-deb's: 6 for xz, 9 gzip) */
  level?: number;
  /** Print progress lines to stderr. @default {false} */
  verbose?: boolean;
  /** Cancel the build. @default {undefined} */
  signal?: AbortSignal;
}

/** What {@linkcode buildDeb} made. */
export interface DebBuildResult {
  /** The `.deb` file. */
  path: string;
  /** The package version (deno.json's `version`). */
  version: string;
  /** Size of the `.deb` in bytes. */
  bytes: number;
  /** The control file's `Installed-Size` (KiB). */
  installedSizeKiB: number;
  /** The control file's `Depends`. */
  depends: string;
  /** The subcommands `/usr/bin/plasm` dispatches. */
  subcommands: string[];
  /** The conffiles (absolute paths). */
  conffiles: string[];
  /** Seconds the build took. */
  seconds: number;
}

/**
 * Build `plasm_<version>_amd64.deb` in `outDir` and return what went in.
 *
 * Needs `dpkg-deb` and `dpkg-shlibdeps` (Debian's `dpkg` and `dpkg-dev`), and the project's
 * npm packages in Deno's cache (`deno install`); downloads nothing. The package is written
 * beside its final name and renamed into place, so a failed build leaves no `.deb`.
 *
 * @throws {SyntaxError} If deno.json's version is not a Debian version, or the changelog's first
 * entry is for another version.
 * @throws {Error} If a tool fails, a bundle loads a file the package would not carry, or a
 * bundled npm package has a license the copyright file has no text for.
 *
 * @example
 * ```ts ignore
 * import { buildDeb } from "./deb.ts";
 *
 * const deb = await buildDeb({ projectDir: ".", outDir: "packaging/build" });
 * console.log(deb.path, deb.bytes);
 * ```
 */
export async function buildDeb(options: BuildDebOptions): Promise<DebBuildResult> {
  const {
    projectDir,
    outDir,
    denoBinary = Deno.execPath(),
    compression = "xz",
    level,
    verbose = false,
    signal,
  } = options;
  if (!["xz", "gzip", "zstd", "none"].includes(compression)) {
    throw new TypeError(
      `Cannot build: compression must be xz, gzip, zstd or none, got '${compression}'`,
    );
  }
  if (level !== undefined && (!Number.isInteger(level) || level < 0 || level > 22)) {
    throw new RangeError(`Cannot build: level must be a whole number 0-22, got ${level}`);
  }
  const started = performance.now();
  const log = (line: string) => verbose && console.error(`deb: ${line}`);
  const project = await Deno.realPath(projectDir);
  const pkg = `${project}/packaging`;
  const config = JSON.parse(await Deno.readTextFile(`${project}/deno.json`)) as {
    version?: unknown;
  };
  const version = String(config.version ?? "");
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(version)) {
    throw new SyntaxError(
      `Cannot build: deno.json version '${version}' is not a Debian version (like 0.1.0)`,
    );
  }
  const changelog = await Deno.readTextFile(`${pkg}/debian/changelog`);
  const changelogVersion = /^plasm \(([^)]+)\)/.exec(changelog)?.[1];
  if (changelogVersion !== version) {
    throw new SyntaxError(
      `Cannot build: packaging/debian/changelog starts at '${changelogVersion ?? "?"}' but ` +
        `deno.json is at '${version}': add a changelog entry for ${version}`,
    );
  }
  const epoch = _changelogEpoch(changelog);

  await Deno.mkdir(outDir, { recursive: true });
  const out = await Deno.realPath(outDir);
  const debPath = `${out}/plasm_${version}_amd64.deb`;
  const root = await Deno.makeTempDir({ dir: out, prefix: ".plasm-deb-" });
  try {
    const lib = `${root}${_LIB}`;
    for (
      const dir of [
        "DEBIAN",
        "usr/bin",
        "usr/lib/plasm",
        "usr/share/doc/plasm",
        "usr/share/man/man1",
        "usr/share/lintian/overrides",
        "lib/systemd/system",
        "etc/plasm",
      ]
    ) await Deno.mkdir(`${root}/${dir}`, { recursive: true });

    // 1. The runtime and the bundles.
    log(`copying ${denoBinary}`);
    await Deno.copyFile(denoBinary, `${lib}/deno`);
    await Deno.chmod(`${lib}/deno`, 0o755);
    const bundles = DEB_SUBCOMMANDS.map((name) => ({
      entry: `cli/${name}.ts`,
      file: `${name}.js`,
    }));
    await bundleWithCompanions(bundles, lib, { projectDir: project, signal, log });
    const entries = [...bundles.map((b) => b.entry), ...BUNDLE_COMPANIONS];

    // 2. The launcher: one case per subcommand, with that subcommand's own flags.
    const cases: string[] = [];
    for (const name of DEB_SUBCOMMANDS) {
      const flags = await headerFlags(`${project}/cli/${name}.ts`, {
        placeholders: { "<deno binary>": `${_LIB}/deno` },
      });
      cases.push(
        `  ${name})`,
        `    exec "$lib/deno" run --no-config --cached-only ${flags.map(_shellWord).join(" ")} ` +
          `"$lib/${name}.js" "$@"`,
        "    ;;",
      );
    }
    const launcher = (await Deno.readTextFile(`${pkg}/plasm`))
      .replace("@SUBCOMMANDS@\n", cases.join("\n") + "\n")
      .replaceAll("@LIST@", DEB_SUBCOMMANDS.join(", "))
      .replaceAll("@VERSION@", version);
    await _write(`${root}/usr/bin/plasm`, launcher, 0o755);

    // 3. Units, configuration, documentation.
    for (const unit of ["plasmd.service", "plasm-provider.service"]) {
      await Deno.copyFile(`${pkg}/systemd/${unit}`, `${root}/lib/systemd/system/${unit}`);
    }
    const conffiles: string[] = [];
    for (
      const e of [...Deno.readDirSync(`${pkg}/etc/plasm`)].sort((a, b) => a.name < b.name ? -1 : 1)
    ) {
      if (!e.isFile) continue;
      await Deno.copyFile(`${pkg}/etc/plasm/${e.name}`, `${root}/etc/plasm/${e.name}`);
      conffiles.push(`/etc/plasm/${e.name}`);
    }
    const doc = `${root}/usr/share/doc/plasm`;
    await _write(`${doc}/changelog.gz`, _gzip(changelog));
    await _write(
      `${doc}/packaging.md.gz`,
      _gzip(await Deno.readTextFile(`${project}/docs/packaging.md`)),
    );
    log("reading the licenses of the bundled npm packages");
    const npm = await _npmPackages(project, entries, signal);
    await _write(
      `${doc}/copyright`,
      (await Deno.readTextFile(`${pkg}/debian/copyright`)).replace(
        "@NPM_PACKAGES@",
        npm.map((p) => ` ${p.name} ${p.version} (${p.license})`).join("\n"),
      ),
    );
    await _write(
      `${root}/usr/share/man/man1/plasm.1.gz`,
      _gzip((await Deno.readTextFile(`${pkg}/plasm.1`)).replaceAll("@VERSION@", version)),
    );
    await Deno.copyFile(`${pkg}/lintian-overrides`, `${root}/usr/share/lintian/overrides/plasm`);

    // 4. DEBIAN/: maintainer scripts, conffiles, md5sums, control.
    for (const script of ["postinst", "prerm", "postrm"]) {
      await _write(
        `${root}/DEBIAN/${script}`,
        await Deno.readTextFile(`${pkg}/debian/${script}`),
        0o755,
      );
    }
    await _write(`${root}/DEBIAN/conffiles`, conffiles.map((f) => `${f}\n`).join(""));
    const files = await _walk(root);
    const payload = files.filter((f) => !f.path.startsWith("DEBIAN/"));
    const md5 = [];
    let installedSizeKiB = 0;
    for (const f of payload) {
      installedSizeKiB += f.isFile ? Math.ceil(f.size / 1024) : 1;
      if (f.isFile) md5.push(`${await _md5(`${root}/${f.path}`)}  ${f.path}\n`);
    }
    await _write(`${root}/DEBIAN/md5sums`, md5.join(""));
    log("finding the libraries deno links (dpkg-shlibdeps)");
    const depends = [await _shlibsDepends(root, `${lib}/deno`, signal), "adduser"].join(", ");
    await _write(
      `${root}/DEBIAN/control`,
      (await Deno.readTextFile(`${pkg}/debian/control`))
        .replace("@VERSION@", version)
        .replace("@INSTALLED_SIZE@", String(installedSizeKiB))
        .replace("@DEPENDS@", depends),
    );

    // 5. Modes and times, then dpkg-deb.
    for (const f of await _walk(root)) {
      const path = `${root}/${f.path}`;
      if (!f.isFile) await Deno.chmod(path, 0o755);
      else if (f.mode & 0o111) await Deno.chmod(path, 0o755);
      else await Deno.chmod(path, 0o644);
    }
    await Deno.chmod(root, 0o755);
    for (const f of [...await _walk(root)].reverse()) {
      await Deno.utime(`${root}/${f.path}`, epoch, epoch);
    }
    log(`building ${debPath} (${compression})`);
    const part = `${debPath}.part`;
    await _tool("dpkg-deb", [
      "--root-owner-group",
      `-Z${compression}`,
      ...(level === undefined ? [] : [`-z${level}`]),
      "--build",
      root,
      part,
    ], { env: { SOURCE_DATE_EPOCH: String(epoch) }, signal });
    await Deno.rename(part, debPath);
    return {
      path: debPath,
      version,
      bytes: (await Deno.stat(debPath)).size,
      installedSizeKiB,
      depends,
      subcommands: [...DEB_SUBCOMMANDS],
      conffiles,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.remove(`${debPath}.part`).catch(() => {});
  }
}

/** The time of the changelog's first entry, in seconds: every file in the package gets it. */
function _changelogEpoch(changelog: string): number {
  const line = /^ -- .+?> {2}(.+)$/m.exec(changelog)?.[1];
  const ms = line === undefined ? NaN : Date.parse(line);
  if (Number.isNaN(ms)) {
    throw new SyntaxError(
      "Cannot build: packaging/debian/changelog has no ' -- name <mail>  date'",
    );
  }
  return Math.floor(ms / 1000);
}

/** `Depends` for the libraries a binary links, as `dpkg-shlibdeps` finds them. */
async function _shlibsDepends(root: string, binary: string, signal?: AbortSignal): Promise<string> {
  const dir = `${root}.shlibs`;
  await Deno.mkdir(`${dir}/debian`, { recursive: true });
  try {
    await Deno.writeTextFile(
      `${dir}/debian/control`,
      "Source: plasm\n\nPackage: plasm\nArchitecture: amd64\n",
    );
    const text = await _tool("dpkg-shlibdeps", ["-O", `-e${binary}`], { cwd: dir, signal });
    const depends = /^shlibs:Depends=(.*)$/m.exec(text)?.[1]?.trim();
    if (!depends) throw new Error(`Cannot build: dpkg-shlibdeps found no library of ${binary}`);
    return depends;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The npm packages the entrypoints use, with the license their package.json states. */
async function _npmPackages(
  project: string,
  entries: string[],
  signal?: AbortSignal,
): Promise<{ name: string; version: string; license: string }[]> {
  const found = new Map<string, { name: string; version: string; license: string }>();
  for (const entry of entries) {
    const info = JSON.parse(
      await _tool(Deno.execPath(), ["info", "--json", entry], { cwd: project, signal }),
    ) as {
      modules?: { npmPackage?: string }[];
      npmPackages?: Record<
        string,
        { name: string; version: string; localPath?: string; dependencies?: string[] }
      >;
    };
    // `npmPackages` lists the whole npm resolution of the project (test-only packages too):
    // keep the packages the entrypoint's module graph reaches, with their dependencies.
    const all = info.npmPackages ?? {};
    const reached = new Set<string>();
    const queue = (info.modules ?? []).flatMap((m) => m.npmPackage ? [m.npmPackage] : []);
    for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
      if (reached.has(id)) continue;
      reached.add(id);
      queue.push(...(all[id]?.dependencies ?? []));
    }
    for (const id of reached) {
      const p = all[id];
      if (found.has(id) || p === undefined) continue;
      if (p.localPath === undefined) {
        throw new Error(`Cannot build: npm package '${id}' is not in Deno's cache (deno install)`);
      }
      const meta = JSON.parse(await Deno.readTextFile(`${p.localPath}/package.json`)) as {
        license?: unknown;
      };
      const license = typeof meta.license === "string" ? meta.license : "";
      if (!_KNOWN_LICENSES.has(license)) {
        throw new Error(
          `Cannot build: npm package '${id}' has license '${license || "none"}', which ` +
            "packaging/debian/copyright has no text for",
        );
      }
      found.set(id, { name: p.name, version: p.version, license });
    }
  }
  return [...found.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** A flag as one shell word: quoted only when it holds a character the shell would act on. */
function _shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** gzip -9n: maximum compression, no name and no time in the header (as lintian wants). */
function _gzip(text: string): Uint8Array {
  return new Uint8Array(gzipSync(new TextEncoder().encode(text), { level: 9 }));
}

async function _md5(path: string): Promise<string> {
  const hash = createHash("md5");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

async function _write(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
  await Deno.chmod(path, mode);
}

/** Every entry under `root`, sorted, directories before their contents. */
async function _walk(
  root: string,
): Promise<{ path: string; isFile: boolean; size: number; mode: number }[]> {
  const list: { path: string; isFile: boolean; size: number; mode: number }[] = [];
  const walk = async (rel: string) => {
    const names: string[] = [];
    for await (const e of Deno.readDir(rel === "" ? root : `${root}/${rel}`)) names.push(e.name);
    for (const name of names.sort()) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const info = await Deno.lstat(`${root}/${path}`);
      list.push({ path, isFile: info.isFile, size: info.size, mode: info.mode ?? 0 });
      if (info.isDirectory) await walk(path);
    }
  };
  await walk("");
  return list;
}

/** {@linkcode _run} of the boot build, naming the Debian package of a missing tool. */
async function _tool(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal | undefined } = {},
): Promise<string> {
  try {
    return await _run(command, args, options);
  } catch (cause) {
    if (!(cause instanceof Deno.errors.NotFound)) throw cause;
    const apt = command === "dpkg-shlibdeps" ? "dpkg-dev" : "dpkg";
    throw new Error(`Cannot build: ${command} not found (apt-get install ${apt})`, { cause });
  }
}

const USAGE = `Usage: deno task deb [--out DIR] [--compression xz|gzip|zstd|none] [--level N]
                     [--quiet] [--json]

Builds DIR/plasm_<version>_amd64.deb (DIR defaults to packaging/build) offline with dpkg-deb:
the deno binary running this build, one bundled file per subcommand, /usr/bin/plasm, the
plasmd and plasm-provider systemd units and /etc/plasm. Needs dpkg-deb and dpkg-shlibdeps
(apt-get install dpkg-dev). See docs/packaging.md.`;

/**
 * CLI entry: build the package and print its path (or JSON); exit code 0, 1 when the build
 * fails (one `deb: error:` line on stderr), 2 for bad flags.
 *
 * @example
 * ```ts
 * import { main } from "./deb.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--compression", "lzma"]), 2);
 * ```
 */
export async function main(args: string[], signal?: AbortSignal): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        out: { type: "string", default: "packaging/build" },
        project: { type: "string", default: "." },
        compression: { type: "string", default: "xz" },
        level: { type: "string" },
        quiet: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
    if (!["xz", "gzip", "zstd", "none"].includes(values.compression)) {
      throw new TypeError(
        `Cannot use --compression '${values.compression}': expected xz, gzip, zstd or none`,
      );
    }
    if (values.level !== undefined && !/^\d{1,2}$/.test(values.level)) {
      throw new TypeError(`Cannot use --level '${values.level}': expected a number 0-22`);
    }
  } catch (error) {
    console.error(`deb: error: ${(error as Error).message.split("\n")[0]} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    const deb = await buildDeb({
      projectDir: values.project,
      outDir: values.out,
      compression: values.compression as "xz" | "gzip" | "zstd" | "none",
      ...(values.level === undefined ? {} : { level: Number(values.level) }),
      verbose: !values.quiet && !values.json,
      ...(signal ? { signal } : {}),
    });
    if (values.json) console.log(JSON.stringify(deb));
    else {
      console.log(
        `${deb.path}  ${(deb.bytes / 1e6).toFixed(1)} MB, installed ${
          (deb.installedSizeKiB / 1024).toFixed(0)
        } MiB; built in ${deb.seconds} s`,
      );
    }
    return 0;
  } catch (error) {
    console.error(`deb: error: ${(error as Error).message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
