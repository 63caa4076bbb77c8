// deno run --allow-read bench/cpu_profile_summary.ts PROFILE.cpuprofile... [--jobs N] [--top 15]
//   [--from-s S] [--to-s S]
/**
 * Where a process's CPU went, from V8 CPU profiles (`deno run --cpu-prof`, or
 * `bench/api_bench.ts --cpu-prof DIR`): self time summed by owner (an npm package, a Deno
 * extension such as `ext:deno_node` for `node:net`, a folder of this project, or V8 itself:
 * the garbage collector and `(program)`, native time not attributed to a JavaScript function),
 * then the same grouped into layers (V8, the Deno runtime, js-libp2p and its dependencies, this
 * project), then the functions with the most self time. Idle time is left out. With `--jobs N`,
 * each row is also shown per job. `--from-s`/`--to-s` keep only the samples taken in that window
 * of each profile (seconds since it started), e.g. to leave out a node's start-up.
 *
 * V8's profiler samples wall-clock time on the main thread: on a loaded machine a preempted
 * thread's wait is charged to whatever it was running, so compare shares, not absolute times.
 *
 * Prints Markdown tables.
 *
 * @module
 */
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Who owns a frame: its npm package, Deno extension, project folder, or a V8 category. */
function _ownerOf(url: string, functionName: string): string {
  if (url === "") {
    if (functionName === "(garbage collector)") return "V8: garbage collector";
    if (functionName === "(program)") return "V8/Deno native (program)";
    if (functionName === "(idle)") return "(idle)";
    return `V8: ${functionName}`;
  }
  const npm = url.match(/\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//);
  if (npm) return `npm: ${npm[1]}`;
  const ext = url.match(/^ext:([^/]+)/);
  if (ext) return `Deno: ext:${ext[1]}`;
  if (url.startsWith("node:")) return "Deno: node:*";
  const project = url.match(/^file:\/\/.*?\/(net|runtime|util|cli|provider|bench|tests)\//);
  if (project) return `project: ${project[1]}/`;
  return url.split("/").slice(0, 3).join("/");
}

/** The layer an owner belongs to, for the coarse table. */
function _layer(owner: string): string {
  if (owner.startsWith("V8: garbage") || owner.startsWith("V8/Deno native")) {
    return "V8: garbage collector and (program)";
  }
  if (/^V8: (verify|sign|digest|importKey|exportKey)$/.test(owner)) {
    return "Deno: Web Crypto (native)";
  }
  if (owner === "V8: writeBuffer") return "Deno: node:net socket writes (native)";
  if (/^V8: (exec|run|get|all|prepare)$/.test(owner)) return "Deno: node:sqlite (native)";
  if (/^V8: op_fs_/.test(owner)) return "Deno: file system ops";
  if (owner.startsWith("V8: op_fetch") || owner.startsWith("V8: op_http")) {
    return "Deno: HTTP (fetch, Deno.serve) ops";
  }
  if (owner.startsWith("V8: ")) return "Deno: other native ops and builtins";
  if (owner.startsWith("Deno: ")) return "Deno: runtime JavaScript (ext:*, node:*)";
  if (/^npm: (prom-client|@libp2p\/prometheus-metrics)$/.test(owner)) {
    return "npm: metrics (prom-client)";
  }
  if (owner === "npm: @noble/ed25519") return "npm: @noble/ed25519";
  if (owner.startsWith("npm: ") || owner === "wasm://wasm") {
    return "npm: js-libp2p and its dependencies";
  }
  if (owner.startsWith("project: ")) return "project code";
  return owner;
}

/** Self time (ms) by owner and by function over the given profiles, idle left out. */
function _summarize(profiles: Profile[], window: { from: number; to: number }): {
  owners: Map<string, number>;
  functions: Map<string, number>;
  total: number;
} {
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    let at = 0;
    for (let i = 0; i < profile.samples.length; i++) {
      const node = byId.get(profile.samples[i]!);
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      at += ms;
      if (!node || at < window.from * 1000 || at >= window.to * 1000) continue;
      const { url, functionName, lineNumber } = node.callFrame;
      const owner = _ownerOf(url, functionName);
      if (owner === "(idle)") continue;
      total += ms;
      owners.set(owner, (owners.get(owner) ?? 0) + ms);
      const name = `${functionName || "(anonymous)"} ${
        url
          ? `${
            url.replace(/^.*registry\.npmjs\.org\//, "").replace(
              /^file:\/\/.*?\/(?=(net|runtime|util)\/)/,
              "",
            )
          }:${lineNumber + 1}`
          : ""
      }`;
      functions.set(name, (functions.get(name) ?? 0) + ms);
    }
  }
  return { owners, functions, total };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      jobs: { type: "string" },
      top: { type: "string", default: "15" },
      "from-s": { type: "string", default: "0" },
      "to-s": { type: "string", default: "Infinity" },
    },
  });
  const profiles: Profile[] = [];
  for (const path of positionals) profiles.push(JSON.parse(await Deno.readTextFile(path)));
  const { owners, functions, total } = _summarize(profiles, {
    from: Number(values["from-s"]),
    to: Number(values["to-s"]),
  });
  const jobs = values.jobs === undefined ? undefined : Number(values.jobs);
  const row = (name: string, ms: number) =>
    `| ${name} | ${ms.toFixed(0)} | ${(100 * ms / total).toFixed(1)}% |${
      jobs ? ` ${(ms / jobs).toFixed(2)} |` : ""
    }`;
  const head = (first: string) =>
    `| ${first} | self ms | share |${jobs ? " ms per job |" : ""}\n|---|---|---|${
      jobs ? "---|" : ""
    }`;
  const layers = new Map<string, number>();
  for (const [name, ms] of owners) layers.set(_layer(name), (layers.get(_layer(name)) ?? 0) + ms);
  console.log(head("layer"));
  for (const [name, ms] of [...layers].sort((x, y) => y[1] - x[1])) console.log(row(name, ms));
  console.log(row("**total (not idle)**", total));
  console.log();
  console.log(head("owner"));
  for (const [name, ms] of [...owners].sort((x, y) => y[1] - x[1])) console.log(row(name, ms));
  console.log(row("**total (not idle)**", total));
  console.log();
  console.log(head("function"));
  const top = [...functions].sort((x, y) => y[1] - x[1]).slice(0, Number(values.top));
  for (const [name, ms] of top) console.log(row(`\`${name}\``, ms));
}
