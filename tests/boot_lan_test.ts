/**
 * Phase Boot on a real L2 segment: VMs on TAP devices on the bridges of a network simulator
 * world (tests/netsim), each LAN with a DHCP server (busybox `udhcpd` from the boot build) on its
 * NAT gateway, and no provider URL on the command line.
 *
 * - `phase.mode=local`: the provider (`serve` with its mDNS answers, no DHT) is a host on the
 *   VM's LAN; the stub finds it by mDNS, fetches, verifies and kexecs into the second stage.
 * - `phase.mode=internet`: the VM sits on another LAN behind NAT; the provider (`serve`, DHT
 *   only) is on the public segment and advertises through a `start` node there, which is the
 *   stub's `phase.bootstrap`; the stub finds the provider in the DHT and boots.
 *
 * The two VMs run at once. Needs root, iproute2, nftables and qemu: skips without them unless
 * CI=true, where a missing prerequisite fails.
 */
import assert from "node:assert/strict";
import { runVm, type VmRun } from "../boot/qemu.ts";
import {
  lanVmSuite,
  type Logged,
  prepareBootFixture,
  removeBootFixture,
  spawnLogged,
  startDhcp,
  TCG_CMDLINE,
} from "./_boot_fixture.ts";
import { createWorld } from "./netsim/mod.ts";
import { execStartFlags } from "./net_spawn.ts";
import { taskArgs } from "./_task.ts";

const VM_TIMEOUT_MS = 300_000;
const RUNS = await lanVmSuite("boot_lan_test", "boot LAN");

const MARKS = {
  network: /phase-boot: \[[\d.]+\] network up/,
  provider: /phase-boot: \[[\d.]+\] provider /,
  fetched: /phase-boot: \[[\d.]+\] fetched and verified/,
  kexec: /kexec_core: Starting new kernel/,
  nextStage: /PHASE-SECOND-STAGE-OK/,
};

function vmFailure(what: string, run: VmRun): string {
  return `${what}: VM ended by ${run.ended} after ${run.ms} ms; console tail:\n` +
    run.output.split("\n").slice(-30).join("\n");
}

function assertBooted(what: string, run: VmRun, mode: string, provider: string): void {
  assert.equal(run.ended, "matched", vmFailure(what, run));
  assert.doesNotMatch(run.output, /phase-boot: error:/, vmFailure(what, run));
  assert.match(run.output, new RegExp(`phase-boot: \\[[\\d.]+\\] provider ${provider}\\r?\\n`));
  assert.match(run.output, /phase-boot: \[[\d.]+\] fetched and verified: .*kernel/);
  assert.match(run.output, /kexec_core: Starting new kernel/);
  const marker = /PHASE-SECOND-STAGE-OK cmdline: (.*)/.exec(run.output);
  assert.ok(marker, vmFailure(what, run));
  assert.match(marker[1]!, new RegExp(`phase\\.mode=${mode}( |$)`));
  assert.match(marker[1]!, new RegExp(`^${TCG_CMDLINE} console=ttyS0 `), "manifest cmdline first");
  assert.doesNotMatch(marker[1]!, /phase\.provider=/);
}

Deno.test({
  name: "stub on a bridged LAN finds the provider by mDNS (local) and through the DHT (internet)",
  ignore: !RUNS,
  async fn() {
    const f = await prepareBootFixture();
    const dir = await Deno.makeTempDir({ dir: f.dir, prefix: "lan-" });
    const logged: Logged[] = [];
    try {
      await using world = await createWorld({ name: "boot-lan" });
      const seed = await world.addHost("seed"); // 198.51.100.1: the DHT bootstrap node
      const mirror = await world.addHost("mirror"); // 198.51.100.2: internet provider
      await world.addLan("home"); // VM 1 + a provider on the LAN
      await world.addLan("office"); // VM 2, nothing else
      const provider = await world.addHost("provider", { lan: "home" });
      const tapLocal = await world.addTap("vm-local", { lan: "home" });
      const tapInternet = await world.addTap("vm-internet", { lan: "office" });
      logged.push(await startDhcp(world, "home", dir), await startDhcp(world, "office", dir));

      // Separate artifacts dirs: each serve keeps its own signed manifests.
      for (const name of ["lan", "public"]) {
        await Deno.mkdir(`${dir}/${name}/stable/x86_64`, { recursive: true });
        for (const file of ["kernel", "initramfs"]) {
          await Deno.copyFile(
            `${f.artifacts}/stable/x86_64/${file}`,
            `${dir}/${name}/stable/x86_64/${file}`,
          );
        }
        // The next stage's command line (signed into the manifest): under TCG on a loaded host
        // the kernel's IO-APIC timer check can fail and panic; a panic then ends the VM at once.
        await Deno.writeTextFile(`${dir}/${name}/stable/x86_64/cmdline`, `${TCG_CMDLINE}\n`);
      }

      const seedNode = spawnLogged(seed, [
        "run",
        "--no-prompt",
        ...execStartFlags(),
        "cli/start.ts",
        "--state-dir",
        `${dir}/seed-state`,
        "--listen",
        `/ip4/${seed.address}/tcp/4001`,
        "--no-mdns",
        "--no-worker",
        "--no-api",
      ]);
      logged.push(seedNode);
      const started = JSON.parse(await seedNode.waitFor(/"event":"started"/, 60_000));
      const bootstrap = `/ip4/${seed.address}/tcp/4001/p2p/${started.peer_id}`;

      const serve = (name: string, extra: string[]) =>
        taskArgs("serve", [
          "--artifacts",
          `${dir}/${name}`,
          "--bind",
          "0.0.0.0",
          "--port",
          "8080",
          "--arch",
          "x86_64",
          "--key",
          f.trustedKey,
          "--state-dir",
          `${dir}/${name}-state`,
          "--min-free",
          "0",
          ...extra,
        ]);
      const lanServe = spawnLogged(provider, await serve("lan", ["--no-dht"]));
      const publicServe = spawnLogged(
        mirror,
        await serve("public", ["--no-mdns", "--bootstrap", bootstrap]),
      );
      logged.push(lanServe, publicServe);
      await lanServe.waitFor(/^\s+mDNS\s+on /, 60_000);
      // The record is in the DHT once a peer (the seed) stored it.
      await publicServe.waitFor(
        /"event":"provided".*"key":"\/phase\/stable\/x86_64\/manifest".*"peers":[1-9]/,
        90_000,
      );

      const append = (mode: string, extra = "") =>
        `console=ttyS0 ${TCG_CMDLINE} phase.mode=${mode} phase.channel=stable ${extra}phase.test=1`;
      const vm = (tap: typeof tapLocal, cmdline: string) =>
        runVm({
          kernel: f.kernel,
          initrd: f.initrd,
          append: cmdline,
          tap,
          until: /PHASE-SECOND-STAGE-OK.*\r?\n|PHASE-BOOT-RESCUE/,
          timeoutMs: VM_TIMEOUT_MS,
          marks: MARKS,
        });
      const [local, internet] = await Promise.all([
        vm(tapLocal, append("local")),
        vm(tapInternet, append("internet", `phase.bootstrap=${bootstrap} `)),
      ]);

      for (const [name, run] of [["local", local], ["internet", internet]] as const) {
        const m = run.marks;
        console.log(
          `boot-lan ${name}: network ${m.network} ms, provider ${m.provider} ms, fetched+verified ` +
            `${m.fetched} ms, kexec ${m.kexec} ms, next stage ${m.nextStage} ms (VM start = 0)`,
        );
      }
      // Both VMs are checked, so one failing does not hide how the other went.
      const failures = [
        () => {
          assert.match(local.output, /discovering a provider of stable\/x86_64 \(--mdns\)/);
          assert.match(local.output, /network up on eth0: 10\.1\.0\.1\d\d\//);
          assertBooted("local", local, "local", `http://${provider.address}:8080`);
        },
        () => {
          const discovering =
            `discovering a provider of stable/x86_64 (--dht --bootstrap ${bootstrap})`;
          assert.ok(internet.output.includes(discovering), vmFailure("internet", internet));
          assert.match(internet.output, /network up on eth0: 10\.2\.0\.1\d\d\//);
          assertBooted("internet", internet, "internet", `http://${mirror.address}:8080`);
        },
      ].flatMap((check) => {
        try {
          check();
          return [];
        } catch (error) {
          return [error];
        }
      });
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) throw new AggregateError(failures, String(failures[0]));
    } finally {
      // The world is gone here (its processes killed): their output ends.
      await Promise.all(logged.map((l) => l.drained));
      await removeBootFixture();
    }
  },
});
