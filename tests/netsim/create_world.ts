/**
 * A simulated internet for tests and benchmarks: hosts in their own network namespaces, a public
 * segment, LANs behind NAT gateways (nftables) and impaired links (netem, or a userspace delay
 * line where the kernel has no netem). Runs as root; see docs/netsim.md.
 *
 * @module
 */
import { _must, _run } from "./_exec.ts";
import {
  NAMESPACE_PREFIX,
  processStartTime,
  removeNamespace,
  sweepWorlds,
} from "./sweep_worlds.ts";

/**
 * How a LAN's gateway translates and filters (RFC 4787 terms):
 * - `"endpoint-independent"`: endpoint-independent mapping and filtering ("full cone"). The
 *   source port is kept when free, and once a LAN socket has sent anything out, any public host
 *   may send to its public ip:port (TCP and UDP).
 * - `"port-restricted"`: endpoint-independent mapping, address-and-port-dependent filtering
 *   (plain Linux masquerade; the common home router). Only the peer a socket sent to can answer.
 * - `"symmetric"`: address-and-port-dependent mapping (a random public port per destination,
 *   `masquerade fully-random`) and filtering.
 */
export type NatKind = "endpoint-independent" | "port-restricted" | "symmetric";

/** How a link is impaired; each direction gets the same, independently. */
export interface LinkOptions {
  /**
   * Added one-way delay in each direction, in milliseconds (a round trip over this link gains
   * twice this).
   * @default {0}
   */
  delayMs?: number;
  /**
   * Uniform jitter around `delayMs`, in milliseconds.
   * @default {0}
   */
  jitterMs?: number;
  /**
   * Frames dropped in each direction, in percent.
   * @default {0}
   */
  lossPercent?: number;
}

/** How link impairment is made: kernel `tc netem`, or the userspace TAP delay line. */
export type ImpairmentEngine = "netem" | "tap";

/** Options of {@linkcode createWorld}. */
export interface WorldOptions {
  /**
   * A short name, part of every namespace's name (lowercase letters, digits, dashes).
   * @default {"world"}
   */
  name?: string;
  /**
   * The public segment's IPv4 prefix, /16 to /29. Note: @libp2p/utils counts 198.51.100.0/24,
   * 203.0.113.0/24 and 100.64.0.0/10 as private addresses.
   * @default {"198.51.100.0/24"}
   */
  publicPrefix?: string;
  /**
   * How impaired links are made: `"auto"` uses netem when the kernel has it, else the TAP line.
   * @default {"auto"}
   */
  impairment?: "auto" | ImpairmentEngine;
  /**
   * Remove leftovers of worlds whose creating process is dead before building this one.
   * @default {true}
   */
  sweep?: boolean;
  /** Aborts creation (the partly built world is removed). */
  signal?: AbortSignal;
}

/** Options of {@linkcode World.addHost}. */
export interface HostOptions {
  /** The LAN the host sits on; without it the host is on the public segment. */
  lan?: string;
  /** The host's IPv4 address; by default the next free one of its segment. */
  address?: string;
  /** Impairment of the host's link to its segment. */
  link?: LinkOptions;
  /** Aborts creation. */
  signal?: AbortSignal;
}

/** Options of {@linkcode World.addLan}. */
export interface LanOptions {
  /**
   * How the gateway translates.
   * @default {"port-restricted"}
   */
  nat?: NatKind;
  /**
   * The LAN's IPv4 prefix, /16 to /29; two LANs may use the same one. The gateway takes the
   * first address.
   * @default {"10.<n>.0.0/24"}
   */
  prefix?: string;
  /** The gateway's public address; by default the next free one. */
  address?: string;
  /** Impairment of the gateway's link to the public segment (all the LAN's traffic out). */
  link?: LinkOptions;
  /** Aborts creation. */
  signal?: AbortSignal;
}

/** Options of {@linkcode World.addTap}. */
export interface TapOptions {
  /** The LAN whose bridge the TAP joins; without it, the public segment's. */
  lan?: string;
  /** Aborts creation. */
  signal?: AbortSignal;
}

/**
 * A TAP device on a segment's bridge, for a VM: run qemu inside `namespace` (the hub) with
 * `-netdev tap,id=n0,ifname=<ifname>,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=<mac>`.
 * The guest is then one more machine on the segment (it configures its own address, e.g. by DHCP).
 */
export interface Tap {
  /** The name it was added with. */
  readonly name: string;
  /** The LAN it is on, or `undefined` on the public segment. */
  readonly lan: string | undefined;
  /** The namespace the TAP device lives in (the world's hub); qemu must run there. */
  readonly namespace: string;
  /** The TAP device's name inside `namespace`. */
  readonly ifname: string;
  /** A MAC address for the guest's NIC, unique in this world (`52:54:00:..`, qemu's prefix). */
  readonly mac: string;
}

/** What {@linkcode Host.run} gave. */
export interface HostRun {
  /** Exit code. */
  code: number;
  /** Standard output as bytes. */
  stdout: Uint8Array;
  /** Standard output as text. */
  out: string;
  /** Standard error as text. */
  err: string;
}

/** Options of {@linkcode Host.run} and {@linkcode Host.spawn}. */
export interface HostCommandOptions {
  /** Arguments after the command. */
  args?: string[];
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Standard input for `run` (bytes or text). */
  stdin?: Uint8Array | string;
  /** Kills the process. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Host.spawn}. */
export interface HostSpawnOptions extends Omit<HostCommandOptions, "stdin"> {
  /**
   * Standard input.
   * @default {"null"}
   */
  stdin?: "piped" | "inherit" | "null";
  /**
   * Standard output.
   * @default {"piped"}
   */
  stdout?: "piped" | "inherit" | "null";
  /**
   * Standard error.
   * @default {"piped"}
   */
  stderr?: "piped" | "inherit" | "null";
}

interface _Ipv4Prefix {
  base: number;
  length: number;
}

function _parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

function _formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

function _parsePrefix(text: string, what: string): _Ipv4Prefix {
  const [address = "", bits = ""] = text.split("/");
  const base = _parseIpv4(address);
  const length = Number(bits);
  if (base === undefined || !/^\d+$/.test(bits) || length < 16 || length > 29) {
    throw new RangeError(`Cannot use ${what} '${text}': not an IPv4 prefix from /16 to /29`);
  }
  if (base % 2 ** (32 - length) !== 0) {
    throw new RangeError(`Cannot use ${what} '${text}': host bits are set`);
  }
  return { base, length };
}

function _checkName(name: string, what: string): void {
  if (!/^[a-z][a-z0-9-]{0,23}$/.test(name)) {
    throw new TypeError(
      `Cannot use ${what} name '${name}': use 1 to 24 lowercase letters, digits or dashes`,
    );
  }
}

function _checkLink(link: LinkOptions): Required<LinkOptions> {
  const { delayMs = 0, jitterMs = 0, lossPercent = 0 } = link;
  for (const [key, value] of Object.entries({ delayMs, jitterMs, lossPercent })) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`Cannot use link ${key} '${value}': not a non-negative number`);
    }
  }
  if (lossPercent > 100) {
    throw new RangeError(`Cannot use link lossPercent '${lossPercent}': above 100`);
  }
  if (jitterMs > 0 && delayMs === 0) {
    throw new RangeError(`Cannot use link jitterMs '${jitterMs}': it needs a delayMs`);
  }
  return { delayMs, jitterMs, lossPercent };
}

/** Allocates the host addresses of one segment. */
class _Segment {
  readonly prefix: _Ipv4Prefix;
  readonly #used = new Set<number>();
  #next = 1;

  constructor(prefix: _Ipv4Prefix) {
    this.prefix = prefix;
  }

  get cidr(): string {
    return `${_formatIpv4(this.prefix.base)}/${this.prefix.length}`;
  }

  take(address: string | undefined): string {
    const size = 2 ** (32 - this.prefix.length);
    if (address !== undefined) {
      const value = _parseIpv4(address);
      if (
        value === undefined || value <= this.prefix.base ||
        value >= this.prefix.base + size - 1
      ) {
        throw new RangeError(`Cannot use address '${address}': not a host of ${this.cidr}`);
      }
      if (this.#used.has(value)) {
        throw new RangeError(`Cannot use address '${address}': already taken`);
      }
      this.#used.add(value);
      return address;
    }
    while (this.#used.has(this.prefix.base + this.#next)) this.#next++;
    if (this.#next >= size - 1) {
      throw new RangeError(`Cannot add a host to ${this.cidr}: no free address left`);
    }
    const value = this.prefix.base + this.#next;
    this.#used.add(value);
    return _formatIpv4(value);
  }
}

/** A LAN behind a NAT gateway. */
export interface Lan {
  /** The LAN's name. */
  readonly name: string;
  /** Its prefix, e.g. `10.1.0.0/24`. */
  readonly prefix: string;
  /** How its gateway translates. */
  readonly nat: NatKind;
  /** The gateway host: `eth0` on the public segment, `lan0` on the LAN. */
  readonly gateway: Host;
}

/**
 * One simulated machine: its own network namespace with `lo` and `eth0` (a gateway also has
 * `lan0`). Commands run in it through `ip netns exec`.
 */
export class Host {
  /** The host's name in its world. */
  readonly name: string;
  /** Its network namespace. */
  readonly namespace: string;
  /** Its address on its segment (a gateway: its public address). */
  readonly address: string;
  /** The segment's prefix length. */
  readonly prefixLength: number;
  /** The LAN it sits on, or `undefined` on the public segment. */
  readonly lan: string | undefined;
  /** @internal */
  readonly _world: World;
  /** @internal */
  readonly _uplink: string;
  /** @internal */
  _link: Required<LinkOptions> | undefined;
  /** @internal */
  _lanAddress: string | undefined;

  /** A gateway's address on its LAN (`lan0`); `undefined` for other hosts. */
  get lanAddress(): string | undefined {
    return this._lanAddress;
  }

  /** @internal */
  constructor(
    world: World,
    fields: {
      name: string;
      namespace: string;
      address: string;
      prefixLength: number;
      lan: string | undefined;
      uplink: string;
    },
  ) {
    this._world = world;
    this.name = fields.name;
    this.namespace = fields.namespace;
    this.address = fields.address;
    this.prefixLength = fields.prefixLength;
    this.lan = fields.lan;
    this._uplink = fields.uplink;
  }

  /**
   * The host's IPv4 addresses as the kernel reports them (loopback excluded).
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-addr" });
   *   const host = await world.addHost("a");
   *   assert.deepEqual(await host.addresses(), [host.address]);
   * }
   * ```
   */
  async addresses(options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const out = await _must(
      `list the addresses of host '${this.name}'`,
      "ip",
      ["-n", this.namespace, "-j", "-4", "addr", "show"],
      options,
    );
    const links: { ifname: string; addr_info?: { local: string }[] }[] = JSON.parse(out);
    return links.filter((l) => l.ifname !== "lo")
      .flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
  }

  /**
   * A `Deno.Command` that runs `command` inside this host's namespace.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-command" });
   *   const host = await world.addHost("a");
   *   const { code } = await host.command("true").output();
   *   assert.equal(code, 0);
   * }
   * ```
   */
  command(command: string, options: HostSpawnOptions = {}): Deno.Command {
    const { args = [], cwd, env, signal, stdin = "null", stdout = "piped", stderr = "piped" } =
      options;
    return new Deno.Command("ip", {
      args: ["netns", "exec", this.namespace, command, ...args],
      stdin,
      stdout,
      stderr,
      ...(cwd === undefined ? {} : { cwd }),
      ...(env === undefined ? {} : { env }),
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /**
   * Run `command` inside this host and wait for it.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-run" });
   *   const host = await world.addHost("a");
   *   const { code, out } = await host.run("ip", { args: ["-4", "-o", "addr", "show", "eth0"] });
   *   assert.equal(code, 0);
   *   assert.match(out, new RegExp(` ${host.address.replaceAll(".", "\\.")}/`));
   * }
   * ```
   */
  async run(command: string, options: HostCommandOptions = {}): Promise<HostRun> {
    const { stdin, ...rest } = options;
    const child = this.command(command, {
      ...rest,
      stdin: stdin === undefined ? "null" : "piped",
    }).spawn();
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
      } finally {
        await writer.close().catch(() => {});
      }
    }
    const { code, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    return { code, stdout, out: decoder.decode(stdout), err: decoder.decode(stderr) };
  }

  /**
   * Start a long-lived `command` inside this host. The world kills it (and everything else in
   * the namespace) when it is disposed; piped output it never read is cancelled then.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   let child: Deno.ChildProcess;
   *   {
   *     await using world = await createWorld({ name: "doc-spawn" });
   *     const host = await world.addHost("a");
   *     child = host.spawn("sleep", { args: ["1000"] });
   *   }
   *   assert.equal((await child.status).signal, "SIGKILL");
   * }
   * ```
   */
  spawn(command: string, options: HostSpawnOptions = {}): Deno.ChildProcess {
    return this._world._track(() => this.command(command, options).spawn());
  }

  /**
   * Change the impairment of this host's link. The host must have been created with a `link`
   * option (an unimpaired link is a plain veth pair with nothing to change).
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-setlink" });
   *   const host = await world.addHost("a", { link: { delayMs: 5 } });
   *   await host.setLink({ delayMs: 10, lossPercent: 1 });
   * }
   * ```
   */
  async setLink(link: LinkOptions, options: { signal?: AbortSignal } = {}): Promise<void> {
    const checked = _checkLink(link);
    if (this._link === undefined) {
      throw new TypeError(
        `Cannot change the link of host '${this.name}': it was created without a link option`,
      );
    }
    await this._world._impair(this, checked, "change", options.signal);
    this._link = checked;
  }
}

/** Bridges, NAT gateways and hosts, all in namespaces named after this world. */
export class World {
  /** The world's name. */
  readonly name: string;
  /** The prefix of all its namespace names: `netsim-<pid>-<start time>-<n>-<name>`. */
  readonly id: string;
  /** The public segment's prefix. */
  readonly publicPrefix: string;
  readonly #hub: string;
  readonly #public: _Segment;
  readonly #hosts = new Map<string, Host>();
  readonly #lans = new Map<string, Lan & { segment: _Segment; bridge: string }>();
  readonly #taps = new Map<string, Tap>();
  readonly #namespaces: string[] = [];
  readonly #children = new Set<Deno.ChildProcess>();
  readonly #requested: "auto" | ImpairmentEngine;
  #engine: ImpairmentEngine | undefined;
  #delayLine: _DelayLine | undefined;
  #links = 0;
  /** Interfaces attached to each bridge, for {@linkcode _makeNeighbourRoom}. */
  readonly #members = new Map<string, number>();
  #closed: Promise<void> | undefined;

  /** @internal */
  constructor(
    fields: {
      name: string;
      id: string;
      publicPrefix: _Ipv4Prefix;
      impairment: "auto" | ImpairmentEngine;
    },
  ) {
    this.name = fields.name;
    this.id = fields.id;
    this.#hub = `${fields.id}-hub`;
    this.#public = new _Segment(fields.publicPrefix);
    this.publicPrefix = this.#public.cidr;
    this.#requested = fields.impairment;
  }

  /** The namespace holding the bridges (no addresses, no routes, no forwarding). */
  get hubNamespace(): string {
    return this.#hub;
  }

  /** The engine impaired links use, once one was made (`undefined` before). */
  get impairmentEngine(): ImpairmentEngine | undefined {
    return this.#engine;
  }

  /** @internal Build the hub namespace and the public bridge. */
  async _init(signal?: AbortSignal): Promise<void> {
    await this.#addNamespace(this.#hub, signal);
    await _must("create the public segment", "ip", ["-n", this.#hub, "-batch", "-"], {
      stdin: _bridgeCommands("br-inet"),
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * The host called `name`.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-host" });
   *   await world.addHost("a");
   *   assert.equal(world.host("a").name, "a");
   *   assert.throws(() => world.host("b"), /Cannot find host 'b'/);
   * }
   * ```
   */
  host(name: string): Host {
    const host = this.#hosts.get(name);
    if (!host) throw new TypeError(`Cannot find host '${name}': no such host in this world`);
    return host;
  }

  /** All hosts (gateways included), in creation order. */
  get hosts(): Host[] {
    return [...this.#hosts.values()];
  }

  /**
   * The LAN called `name`.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-lan" });
   *   await world.addLan("home", { nat: "symmetric" });
   *   assert.equal(world.lan("home").nat, "symmetric");
   * }
   * ```
   */
  lan(name: string): Lan {
    const lan = this.#lans.get(name);
    if (!lan) throw new TypeError(`Cannot find LAN '${name}': no such LAN in this world`);
    return { name: lan.name, prefix: lan.prefix, nat: lan.nat, gateway: lan.gateway };
  }

  /** The names of all namespaces this world created. */
  get namespaces(): string[] {
    return [...this.#namespaces];
  }

  /**
   * Add a host on the public segment, or on a LAN (`lan`), with its default route through the
   * LAN's gateway.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-addhost" });
   *   const server = await world.addHost("server");
   *   await world.addLan("home");
   *   const laptop = await world.addHost("laptop", { lan: "home" });
   *   assert.equal(server.address, "198.51.100.1");
   *   assert.equal(laptop.address, "10.1.0.2");
   * }
   * ```
   */
  async addHost(name: string, options: HostOptions = {}): Promise<Host> {
    const { lan: lanName, address, link, signal } = options;
    _checkName(name, "host");
    if (this.#hosts.has(name)) throw new TypeError(`Cannot add host '${name}': it exists`);
    const checkedLink = link === undefined ? undefined : _checkLink(link);
    const lan = lanName === undefined ? undefined : this.#lans.get(lanName);
    if (lanName !== undefined && !lan) {
      throw new TypeError(`Cannot add host '${name}': no LAN '${lanName}' in this world`);
    }
    this.#assertOpen();
    const segment = lan ? lan.segment : this.#public;
    const bridge = lan ? lan.bridge : "br-inet";
    const ip = segment.take(address);
    const namespace = `${this.id}-${name}`;
    const uplink = `u${++this.#links}`;
    const host = new Host(this, {
      name,
      namespace,
      address: ip,
      prefixLength: segment.prefix.length,
      lan: lanName,
      uplink,
    });
    this.#hosts.set(name, host);
    await this.#addNamespace(namespace, signal);
    await this.#connect(host, "eth0", bridge, checkedLink, signal);
    const commands = [`address add ${ip}/${segment.prefix.length} dev eth0`];
    if (lan) commands.push(`route add default via ${lan.gateway.lanAddress}`);
    commands.push("route add 224.0.0.0/4 dev eth0");
    await _must(`configure host '${name}'`, "ip", ["-n", namespace, "-batch", "-"], {
      stdin: commands.join("\n") + "\n",
      ...(signal ? { signal } : {}),
    });
    return host;
  }

  /**
   * Add a LAN behind a NAT gateway host (named `<name>-gw`) on the public segment.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-addlan" });
   *   const lan = await world.addLan("home", { nat: "endpoint-independent" });
   *   assert.equal(lan.prefix, "10.1.0.0/24");
   *   assert.equal(lan.gateway.name, "home-gw");
   *   assert.deepEqual(await lan.gateway.addresses(), [lan.gateway.address, "10.1.0.1"]);
   * }
   * ```
   */
  async addLan(name: string, options: LanOptions = {}): Promise<Lan> {
    const lanIndex = this.#lans.size + 1;
    const {
      nat = "port-restricted",
      prefix = `10.${lanIndex}.0.0/24`,
      address,
      link,
      signal,
    } = options;
    _checkName(name, "LAN");
    if (!["endpoint-independent", "port-restricted", "symmetric"].includes(nat)) {
      throw new TypeError(
        `Cannot use NAT '${nat}': use endpoint-independent, port-restricted or symmetric`,
      );
    }
    if (this.#lans.has(name)) throw new TypeError(`Cannot add LAN '${name}': it exists`);
    if (lanIndex > 250 && options.prefix === undefined) {
      throw new RangeError(`Cannot add LAN '${name}': pass a prefix beyond 250 LANs`);
    }
    const segment = new _Segment(_parsePrefix(prefix, "LAN prefix"));
    const gatewayName = `${name}-gw`;
    _checkName(gatewayName, "gateway");
    const lanAddress = segment.take(undefined);
    const bridge = `br-l${lanIndex}`;
    await _must(`create LAN '${name}'`, "ip", ["-n", this.#hub, "-batch", "-"], {
      stdin: _bridgeCommands(bridge),
      ...(signal ? { signal } : {}),
    });
    const gateway = await this.addHost(gatewayName, {
      ...(address === undefined ? {} : { address }),
      ...(link === undefined ? {} : { link }),
      ...(signal === undefined ? {} : { signal }),
    });
    await this.#connect(gateway, "lan0", bridge, undefined, signal, `l${lanIndex}`);
    const opts = signal ? { signal } : {};
    const inGateway = ["netns", "exec", gateway.namespace];
    const lanCidr = `${lanAddress}/${segment.prefix.length}`;
    const addAddress = ["-n", gateway.namespace, "address", "add", lanCidr, "dev", "lan0"];
    await _must(`configure gateway '${gatewayName}'`, "ip", addAddress, opts);
    const forward = "echo 1 > /proc/sys/net/ipv4/ip_forward";
    await _must(
      `enable forwarding on '${gatewayName}'`,
      "ip",
      [...inGateway, "sh", "-c", forward],
      opts,
    );
    await _must(`configure NAT on '${gatewayName}'`, "ip", [...inGateway, "nft", "-f", "-"], {
      stdin: natRuleset(nat),
      ...opts,
    });
    gateway._lanAddress = lanAddress;
    const lan = { name, prefix: segment.cidr, nat, gateway, segment, bridge };
    this.#lans.set(name, lan);
    return this.lan(name);
  }

  /**
   * Add a TAP device to a segment's bridge (a LAN's, or the public one), for a VM run by qemu
   * inside the hub namespace (see {@linkcode Tap}). No address, route or DHCP comes with it:
   * the guest is a machine on the segment like any host. Deleted with the world.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   await using world = await createWorld({ name: "doc-tap" });
   *   await world.addLan("home");
   *   const tap = await world.addTap("vm", { lan: "home" });
   *   assert.equal(tap.namespace, world.hubNamespace);
   *   const { stdout } = await new Deno.Command("ip", {
   *     args: ["-n", tap.namespace, "-d", "link", "show", "dev", tap.ifname],
   *   }).output();
   *   assert.match(new TextDecoder().decode(stdout), /master br-l1 .*\n.*\n\s+tun type tap/);
   * }
   * ```
   */
  async addTap(name: string, options: TapOptions = {}): Promise<Tap> {
    const { lan: lanName, signal } = options;
    _checkName(name, "TAP");
    if (this.#taps.has(name)) throw new TypeError(`Cannot add TAP '${name}': it exists`);
    const lan = lanName === undefined ? undefined : this.#lans.get(lanName);
    if (lanName !== undefined && !lan) {
      throw new TypeError(`Cannot add TAP '${name}': no LAN '${lanName}' in this world`);
    }
    this.#assertOpen();
    const index = ++this.#links;
    if (index > 0xffff) throw new RangeError(`Cannot add TAP '${name}': too many links`);
    const ifname = `v${index}`;
    const bridge = lan ? lan.bridge : "br-inet";
    await this.#join(bridge, signal);
    await _must(`create TAP '${name}'`, "ip", ["-n", this.#hub, "-batch", "-"], {
      stdin: `tuntap add dev ${ifname} mode tap\nlink set dev ${ifname} addrgenmode none\n` +
        `link set dev ${ifname} master ${bridge}\nlink set dev ${ifname} up\n`,
      ...(signal ? { signal } : {}),
    });
    const hex = (n: number) => n.toString(16).padStart(2, "0");
    const mac = `52:54:00:5e:${hex(index >> 8)}:${hex(index & 0xff)}`;
    const tap: Tap = { name, lan: lanName, namespace: this.#hub, ifname, mac };
    this.#taps.set(name, tap);
    return tap;
  }

  /**
   * Kill every process the world started and every process inside its namespaces, then delete
   * the namespaces (with them their interfaces, bridges and nft tables). Idempotent.
   *
   * @example
   * ```ts
   * import { createWorld } from "./create_world.ts";
   * import { missingPrerequisites } from "./missing_prerequisites.ts";
   * import assert from "node:assert/strict";
   *
   * if ((await missingPrerequisites()).length === 0) {
   *   const world = await createWorld({ name: "doc-close" });
   *   await world.addHost("a");
   *   await world.close();
   *   const { out } = await new Deno.Command("ip", { args: ["netns", "list"] }).output()
   *     .then((o) => ({ out: new TextDecoder().decode(o.stdout) }));
   *   assert.ok(!out.includes(world.id));
   * }
   * ```
   */
  close(): Promise<void> {
    this.#closed ??= this.#teardown();
    return this.#closed;
  }

  /** Same as {@linkcode World.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal */
  _track(spawn: () => Deno.ChildProcess): Deno.ChildProcess {
    this.#assertOpen();
    const child = spawn();
    this.#children.add(child);
    child.status.then(() => {}, () => {});
    return child;
  }

  /** @internal Make or change the impairment of `host`'s uplink. */
  async _impair(
    host: Host,
    link: Required<LinkOptions>,
    mode: "change",
    signal?: AbortSignal,
  ): Promise<void> {
    this.#assertOpen();
    const engine = await this.#impairmentEngine(signal);
    if (engine === "tap") {
      await this.#delayLine!.request({ op: "set", a: `${host._uplink}a`, ...link });
      return;
    }
    for (const [ns, dev] of [[host.namespace, "eth0"], [this.#hub, host._uplink]] as const) {
      await _must(`change the link of host '${host.name}'`, "tc", [
        "-n",
        ns,
        "qdisc",
        mode,
        "dev",
        dev,
        "root",
        ...netemArgs(link),
      ], signal ? { signal } : {});
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new TypeError(`Cannot use world '${this.name}': it is closed`);
  }

  async #addNamespace(namespace: string, signal?: AbortSignal): Promise<void> {
    this.#assertOpen();
    await _must(`create namespace '${namespace}'`, "ip", ["netns", "add", namespace], {
      ...(signal ? { signal } : {}),
    });
    this.#namespaces.push(namespace);
    await _must(`configure namespace '${namespace}'`, "ip", ["-n", namespace, "-batch", "-"], {
      stdin: "link set dev lo up\n",
      ...(signal ? { signal } : {}),
    });
  }

  async #impairmentEngine(signal?: AbortSignal): Promise<ImpairmentEngine> {
    if (this.#engine === undefined) {
      let engine: ImpairmentEngine = this.#requested === "auto" ? "netem" : this.#requested;
      if (this.#requested === "auto") {
        const probe = await _run("ip", ["-n", this.#hub, "-batch", "-"], {
          stdin: "link add np0 type veth peer name np1\n",
          ...(signal ? { signal } : {}),
        });
        const netem = probe.code === 0 && (await _run("tc", [
              "-n",
              this.#hub,
              "qdisc",
              "add",
              "dev",
              "np0",
              "root",
              "netem",
              "delay",
              "1ms",
            ])).code === 0;
        await _run("ip", ["-n", this.#hub, "link", "del", "np0"]);
        engine = netem ? "netem" : "tap";
      }
      if (engine === "tap") {
        this.#delayLine = _DelayLine.start(this.#hub, (child) => this.#children.add(child));
      }
      this.#engine = engine;
    }
    return this.#engine;
  }

  /** Connect `host`'s interface `ifname` to `bridge` in the hub, impaired by `link`. */
  async #connect(
    host: Host,
    ifname: string,
    bridge: string,
    link: Required<LinkOptions> | undefined,
    signal?: AbortSignal,
    peer = host._uplink,
  ): Promise<void> {
    const opts = signal ? { signal } : {};
    await this.#join(bridge, signal);
    const engine = link === undefined ? undefined : await this.#impairmentEngine(signal);
    let rename = "";
    if (engine === "tap") {
      await this.#delayLine!.request({ op: "add", a: `${peer}a`, b: peer, ...link! });
      const move = ["-n", this.#hub, "link", "set", `${peer}a`, "netns", host.namespace];
      await _must(`move the link of host '${host.name}'`, "ip", move, opts);
      rename = `link set dev ${peer}a name ${ifname}\n`;
    } else {
      const veth = ["-n", this.#hub, "link", "add", peer, "type", "veth"];
      const end = ["peer", "name", ifname, "netns", host.namespace];
      await _must(`create the link of host '${host.name}'`, "ip", [...veth, ...end], opts);
    }
    const batch = ["-n", host.namespace, "-batch", "-"];
    await _must(`configure the link of host '${host.name}'`, "ip", batch, {
      stdin: `${rename}link set dev ${ifname} addrgenmode none\nlink set dev ${ifname} up\n`,
      ...opts,
    });
    await _must(
      `attach host '${host.name}' to its segment`,
      "ip",
      ["-n", this.#hub, "-batch", "-"],
      {
        stdin: `link set dev ${peer} addrgenmode none\nlink set dev ${peer} master ${bridge}\n` +
          `link set dev ${peer} up\n`,
        ...opts,
      },
    );
    if (link !== undefined && ifname === "eth0") {
      host._link = link;
      if (engine === "netem") {
        for (const [ns, dev] of [[host.namespace, "eth0"], [this.#hub, peer]] as const) {
          await _must(`impair the link of host '${host.name}'`, "tc", [
            "-n",
            ns,
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            ...netemArgs(link),
          ], opts);
        }
      }
    }
  }

  /** Count one more interface on `bridge`, and make room for its neighbours beforehand. */
  async #join(bridge: string, signal?: AbortSignal): Promise<void> {
    this.#members.set(bridge, (this.#members.get(bridge) ?? 0) + 1);
    let pairs = 0;
    for (const count of this.#members.values()) pairs += count * (count - 1);
    _neighbourNeeds.set(this, pairs);
    await _makeNeighbourRoom(this.name, signal);
  }

  async #teardown(): Promise<void> {
    _neighbourNeeds.delete(this);
    const errors: unknown[] = [];
    const children = [...this.#children];
    for (const child of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }
    try {
      await this.#delayLine?.close();
    } catch (error) {
      errors.push(error);
    }
    for (const child of children) {
      await child.status.catch(() => {});
      for (const name of ["stdout", "stderr"] as const) {
        try {
          const stream = child[name];
          if (!stream.locked) await stream.cancel();
        } catch {
          // Not piped, or already consumed.
        }
      }
    }
    // Namespaces go last and always, whatever failed before.
    for (const namespace of this.#namespaces.reverse()) {
      try {
        await removeNamespace(namespace);
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) {
      throw new AggregateError(errors, `Cannot remove world '${this.name}': ${errors[0]}`);
    }
  }
}

/** Neighbour (ARP) entries each live world of this process may need: a full mesh per segment. */
const _neighbourNeeds = new Map<World, number>();
/** The kernel's cap on ARP entries as last read or set (0: not read yet). */
let _neighbourRoom = 0;
/** Entries left for everything else (the root namespace, other processes' small worlds). */
const _NEIGHBOUR_SPARE = 256;

/**
 * Make sure the kernel's ARP table can hold a full mesh of every segment of this process's worlds.
 * Linux keeps ONE ARP table for all network namespaces, capped by `net.ipv4.neigh.default.
 * gc_thresh3` (default 1,024 entries; visible and writable only from the root namespace). Past the
 * cap, when no entry is older than 5 s, a new neighbour fails ("neighbor table overflow!" in the
 * kernel log) and packets to it are dropped: 100 hosts talking to each other need ~9,900 entries.
 * So when the need (plus 256 spare entries) passes the cap, the cap is raised to the next power
 * of two at or above twice the need, and `gc_thresh2` (above which entries idle for 5 s are
 * collected) to half that. Only ever raised: a higher cap allocates nothing, and lowering it
 * could break another process's world.
 */
async function _makeNeighbourRoom(world: string, signal?: AbortSignal): Promise<void> {
  let want = _NEIGHBOUR_SPARE;
  for (const pairs of _neighbourNeeds.values()) want += pairs;
  if (want <= _neighbourRoom) return;
  const target = 2 ** Math.ceil(Math.log2(2 * want));
  // `cat`, not `read`: dash reads byte by byte, and a sysctl file read at an offset is empty.
  const path = "/proc/sys/net/ipv4/neigh/default/gc_thresh";
  const script = `set -e
cap=$(cat ${path}3)
if [ "$cap" -lt ${want} ]; then
  soft=$(cat ${path}2)
  [ "$soft" -ge ${target / 2} ] || echo ${target / 2} > ${path}2
  echo ${target} > ${path}3
fi
cat ${path}3
`;
  const out = await _must(
    `make room for '${want}' ARP entries for world '${world}' (gc_thresh3)`,
    "sh",
    ["-c", script],
    signal ? { signal } : {},
  );
  _neighbourRoom = Math.max(_neighbourRoom, Number(out.trim()) || 0);
}

/** The userspace delay line process (tap_delay.ts) of one world. */
class _DelayLine {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, (answer: { ok: boolean; error?: string }) => void>();
  readonly #reading: Promise<void>;
  #id = 0;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#reading = this.#read();
  }

  static start(hub: string, track: (child: Deno.ChildProcess) => void): _DelayLine {
    const script = new URL("./tap_delay.ts", import.meta.url).pathname;
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", hub, Deno.execPath(), "run", "--quiet", "--allow-ffi", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    track(child);
    return new _DelayLine(child);
  }

  async #read(): Promise<void> {
    let buffered = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const answer = JSON.parse(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        this.#pending.get(answer.id)?.(answer);
        this.#pending.delete(answer.id);
      }
    }
    for (const resolve of this.#pending.values()) {
      resolve({ ok: false, error: "the delay line exited" });
    }
    this.#pending.clear();
  }

  async request(command: Record<string, unknown>): Promise<void> {
    const id = ++this.#id;
    const answer = new Promise<{ ok: boolean; error?: string }>((resolve) =>
      this.#pending.set(id, resolve)
    );
    try {
      await this.#writer.write(new TextEncoder().encode(JSON.stringify({ id, ...command }) + "\n"));
    } catch {
      this.#pending.delete(id);
      throw new Error(`Cannot set up link '${command.b ?? command.a}': the delay line exited`);
    }
    const { ok, error } = await answer;
    if (!ok) throw new Error(`Cannot set up link '${command.b ?? command.a}': ${error}`);
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#reading.catch(() => {});
  }
}

function _bridgeCommands(bridge: string): string {
  return `link add ${bridge} type bridge forward_delay 0 mcast_snooping 0\n` +
    `link set dev ${bridge} addrgenmode none\nlink set dev ${bridge} up\n`;
}

/**
 * The `tc qdisc ... netem` arguments for `link`.
 *
 * @example
 * ```ts
 * import { netemArgs } from "./create_world.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(
 *   netemArgs({ delayMs: 20, jitterMs: 5, lossPercent: 1 }),
 *   ["netem", "delay", "20ms", "5ms", "loss", "1%"],
 * );
 * ```
 */
export function netemArgs(link: Required<LinkOptions>): string[] {
  const args = ["netem", "delay", `${link.delayMs}ms`];
  if (link.jitterMs > 0) args.push(`${link.jitterMs}ms`);
  if (link.lossPercent > 0) args.push("loss", `${link.lossPercent}%`);
  return args;
}

/**
 * The nftables ruleset of a NAT gateway of kind `nat` (WAN `eth0`, LAN `lan0`).
 *
 * @example
 * ```ts
 * import { natRuleset } from "./create_world.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(natRuleset("symmetric"), /masquerade fully-random/);
 * assert.match(natRuleset("endpoint-independent"), /dnat ip to meta l4proto \. th dport map @cone/);
 * ```
 */
export function natRuleset(nat: NatKind): string {
  const cone = nat === "endpoint-independent";
  return `table ip netsim {
${
    cone
      ? `  map cone {
    type inet_proto . inet_service : ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 120s
  }
  chain record {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname "eth0" ct direction original meta l4proto { tcp, udp } update @cone { meta l4proto . th sport : ct original ip saddr . ct original proto-src }
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "eth0" meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @cone
  }
`
      : ""
  }  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth0" masquerade${nat === "symmetric" ? " fully-random" : ""}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "eth0" ct state established,related accept
    iifname "eth0" icmp type echo-request accept
    iifname "eth0" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "eth0" accept
${cone ? `    iifname "eth0" oifname "lan0" ct status dnat accept\n` : ""}  }
}
`;
}

let _worlds = 0;

/**
 * Create an empty world: a hub namespace holding the public segment's bridge. Add hosts and
 * LANs, run commands in hosts, and dispose of it (`await using`) to remove everything. Before
 * building, it removes leftovers of worlds whose creating process died.
 *
 * @example
 * ```ts
 * import { createWorld } from "./create_world.ts";
 * import { missingPrerequisites } from "./missing_prerequisites.ts";
 * import assert from "node:assert/strict";
 *
 * if ((await missingPrerequisites()).length === 0) {
 *   await using world = await createWorld({ name: "doc-create" });
 *   const a = await world.addHost("a");
 *   const b = await world.addHost("b");
 *   const { code } = await a.run("ip", { args: ["route", "get", b.address] });
 *   assert.equal(code, 0);
 * }
 * ```
 */
export async function createWorld(options: WorldOptions = {}): Promise<World> {
  const {
    name = "world",
    publicPrefix = "198.51.100.0/24",
    impairment = "auto",
    sweep = true,
    signal,
  } = options;
  _checkName(name, "world");
  const prefix = _parsePrefix(publicPrefix, "public prefix");
  if (!["auto", "netem", "tap"].includes(impairment)) {
    throw new TypeError(`Cannot use impairment '${impairment}': use auto, netem or tap`);
  }
  signal?.throwIfAborted();
  if (sweep) await sweepWorlds();
  const start = await processStartTime(Deno.pid);
  const id = `${NAMESPACE_PREFIX}${Deno.pid}-${start}-${++_worlds}-${name}`;
  const world = new World({ name, id, publicPrefix: prefix, impairment });
  try {
    await world._init(signal);
  } catch (error) {
    await world.close().catch(() => {});
    throw error;
  }
  return world;
}
