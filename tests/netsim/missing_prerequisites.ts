/**
 * What the network simulator needs and this machine lacks: root, `ip` and `tc` (iproute2), `nft`
 * (nftables), and `/dev/net/tun` or `sch_netem` for impaired links (checked when first used).
 *
 * @module
 */
import { _run } from "./_exec.ts";

/** The one line a test suite prints when it skips for lack of prerequisites. */
export const SKIP_HINT = "needs root and iproute2, nftables (apt-get install iproute2 nftables)";

async function _hasTool(tool: string, args: string[]): Promise<boolean> {
  try {
    return (await _run(tool, args)).code === 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * The prerequisites this machine lacks, e.g. `["root", "nft"]`; empty when the simulator can
 * run. Root is the effective uid `id -u` prints (no `--allow-sys` needed).
 *
 * @example
 * ```ts
 * import { missingPrerequisites, SKIP_HINT } from "./missing_prerequisites.ts";
 *
 * const missing = await missingPrerequisites();
 * if (missing.length > 0) console.log(`netsim: SKIPPED: ${SKIP_HINT}; missing: ${missing.join(", ")}`);
 * ```
 */
export async function missingPrerequisites(): Promise<string[]> {
  const missing: string[] = [];
  const uid = await _run("id", ["-u"]).catch(() => undefined);
  if (uid?.out.trim() !== "0") missing.push("root");
  if (!await _hasTool("ip", ["-V"])) missing.push("ip");
  if (!await _hasTool("tc", ["-V"])) missing.push("tc");
  if (!await _hasTool("nft", ["--version"])) missing.push("nft");
  return missing;
}
