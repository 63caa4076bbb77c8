/**
 * The HTTP URL a provider advertises: where clients on other hosts can reach it.
 *
 * @module
 */

/** What {@linkcode publicHttpUrl} can be given besides the address. */
export interface PublicHttpUrlOptions {
  /** This host's interfaces. @default {Deno.networkInterfaces} (needs `--allow-sys=networkInterfaces`) */
  interfaces?: () => Pick<Deno.NetworkInterfaceInfo, "family" | "address">[];
}

/**
 * The URL clients should use for a server bound to `addr`: the bound address, or, for a
 * wildcard bind (`0.0.0.0`, `::`), this host's first non-loopback IPv4 address (`127.0.0.1`
 * when there is none). IPv6 hosts are bracketed.
 *
 * @example
 * ```ts
 * import { publicHttpUrl } from "./public_url.ts";
 * import assert from "node:assert/strict";
 *
 * const interfaces = () => [
 *   { family: "IPv4" as const, address: "127.0.0.1" },
 *   { family: "IPv4" as const, address: "192.168.1.20" },
 * ];
 * assert.equal(publicHttpUrl({ hostname: "0.0.0.0", port: 8080 }, { interfaces }), "http://192.168.1.20:8080/");
 * assert.equal(publicHttpUrl({ hostname: "127.0.0.1", port: 9 }), "http://127.0.0.1:9/");
 * assert.equal(publicHttpUrl({ hostname: "::1", port: 9 }), "http://[::1]:9/");
 * ```
 */
export function publicHttpUrl(
  addr: { hostname: string; port: number },
  options: PublicHttpUrlOptions = {},
): string {
  const { interfaces = () => Deno.networkInterfaces() } = options;
  let host = addr.hostname;
  if (host === "0.0.0.0" || host === "::") {
    const lan = interfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."));
    host = lan?.address ?? "127.0.0.1";
  }
  return `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}/`;
}
