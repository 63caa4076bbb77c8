/**
 * The Phase Boot node stage on a real L2 segment: a VM on a TAP device of a network simulator LAN
 * (DHCP from busybox `udhcpd` on the gateway) boots the stub, which fetches, verifies and kexecs
 * into `boot/build/node.cpio.zst`. The node stage runs `start` and `serve --mirror` and prints
 * `PHASE-NODE-READY peer=<PeerId>`. From another host on the LAN:
 *
 * - `discover --mdns` finds both the VM's node (capability `wasm`) and its mirror (channel
 *   `stable`, an `http=` URL on the VM's address);
 * - the mirror serves the publisher's manifest byte for byte, and `fetch` verifies what it
 *   serves against the publisher key (the mirror signs nothing);
 * - a `start` node there runs hello.wasm with `--worker <that PeerId>` and
 *   `--require-boot-signer <publisher key> --min-boot-sequence <its sequence>`: the VM's node
 *   signed a boot attestation of the stub's provenance, the job runs inside the VM, and its
 *   receipt verifies with the key of that PeerId and carries the provenance's
 *   `boot_manifest_hash` and `boot_sequence`.
 *
 * Then the self-hosting loop by discovery: VM 2 boots with no provider URL, finds VM 1's mirror
 * and the provider by mDNS, fetches from both, verifies, kexecs and joins; the provider is
 * stopped and VM 3 boots from VM 1 and VM 2 alone. Three VMs of 2 GiB run at once at the end.
 *
 * Needs root, iproute2, nftables and qemu: skips without them unless CI=true, where a missing
 * prerequisite fails.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runVm } from "../boot/qemu.ts";
import {
  BUILD,
  lanVmSuite,
  type Logged,
  prepareBootFixture,
  removeBootFixture,
  ROOT,
  spawnLogged,
  startDhcp,
  TCG_CMDLINE,
} from "./_boot_fixture.ts";
import { createWorld } from "./netsim/mod.ts";
import { execStartFlags, NodeProcess } from "./net_spawn.ts";
import { taskArgs } from "./_task.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { sha256Tag, toHex } from "../runtime/digest.ts";

const VM_TIMEOUT_MS = 600_000;
const RUNS = await lanVmSuite("boot_node_test", "boot node");
const HELLO_PATH = join(ROOT, "examples/hello.wasm");
const SUBMIT_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-net=127.0.0.1",
  "--allow-env=PLASM_HOME,XDG_DATA_HOME,HOME",
];

const MARKS = {
  network: /phase-boot: \[[\d.]+\] network up/,
  fetched: /phase-boot: \[[\d.]+\] fetched and verified/,
  kexec: /kexec_core: Starting new kernel/,
  nodeNetwork: /phase-node: \[[\d.]+\] network up/,
  ready: /PHASE-NODE-READY peer=/,
};

function tail(output: string): string {
  return output.split("\n").slice(-40).join("\n");
}

/** A VM booted into the node stage, running until {@linkcode NodeVm.stop}. */
interface NodeVm {
  /** The PeerId of its `start` node (from `PHASE-NODE-READY peer=`). */
  peer: string;
  /** Its DHCP address. */
  address: string;
  /** Its console so far. */
  console(): string;
  /** Host ms from VM start to each of {@linkcode MARKS}' first console line. */
  marks: Record<string, number>;
  /** Power it off (abort qemu) and wait for it. */
  stop(): Promise<void>;
}

/** Boot the stub on `tap` with `append` and wait for `PHASE-NODE-READY`. */
async function bootNodeVm(
  kernel: string,
  initrd: string,
  tap: { namespace: string; ifname: string; mac?: string },
  append: string,
): Promise<NodeVm> {
  const stop = new AbortController();
  const ready = Promise.withResolvers<string>();
  // runVm's own marks are lost when a run is aborted, which is how these VMs end.
  const started = performance.now();
  const marks: Record<string, number> = {};
  let output = "";
  const vm = runVm({
    kernel,
    initrd,
    append: `console=ttyS0 ${TCG_CMDLINE} ${append} phase.test=1`,
    tap,
    memoryMb: 2048,
    timeoutMs: VM_TIMEOUT_MS,
    signal: stop.signal,
    onOutput(text) {
      output += text;
      for (const [name, pattern] of Object.entries(MARKS)) {
        if (marks[name] === undefined && pattern.test(output)) {
          marks[name] = Math.round(performance.now() - started);
        }
      }
      const peer = /PHASE-NODE-READY peer=(\S+)/.exec(output)?.[1];
      if (peer !== undefined) ready.resolve(peer);
      if (/PHASE-BOOT-RESCUE/.test(output)) {
        ready.reject(new Error(`the VM failed:\n${tail(output)}`));
      }
    },
  }).then(
    (run) => ready.reject(new Error(`the VM ended (${run.ended}) first:\n${tail(run.output)}`)),
    (error) => ready.reject(error),
  );
  const halt = async () => {
    stop.abort();
    await vm;
  };
  try {
    const peer = await ready.promise;
    const address = /phase-node: \[[\d.]+\] network up on eth0: (10\.1\.0\.1\d\d)\//.exec(output)
      ?.[1];
    assert.ok(address, tail(output));
    return { peer, address, console: () => output, marks, stop: halt };
  } catch (error) {
    await halt();
    throw error;
  }
}

function printMarks(name: string, m: Record<string, number>): void {
  console.log(
    `boot-node ${name}: stub network ${m.network} ms, fetched+verified ${m.fetched} ms, kexec ` +
      `${m.kexec} ms, node network ${m.nodeNetwork} ms, PHASE-NODE-READY ${m.ready} ms ` +
      "(VM start = 0)",
  );
}

Deno.test({
  name:
    "node stage on a LAN: discover --mdns finds it, its mirror serves the signed manifest as is, a job with --worker runs there; VM 2 boots from VM 1 + the provider by mDNS, VM 3 from VM 1 + VM 2 alone",
  ignore: !RUNS,
  async fn(t) {
    const f = await prepareBootFixture();
    const build = JSON.parse(await Deno.readTextFile(`${BUILD}/build.json`));
    const dir = await Deno.makeTempDir({ dir: f.dir, prefix: "node-" });
    const logged: Logged[] = [];
    const nodes: NodeProcess[] = [];
    const vms: NodeVm[] = [];
    try {
      await using world = await createWorld({ name: "boot-node" });
      await world.addLan("home");
      const provider = await world.addHost("provider", { lan: "home" });
      const requester = await world.addHost("requester", { lan: "home" });
      const taps = [
        await world.addTap("vm1", { lan: "home" }),
        await world.addTap("vm2", { lan: "home" }),
        await world.addTap("vm3", { lan: "home" }),
      ];
      logged.push(await startDhcp(world, "home", dir));

      // The publisher's release: the kernel and the node stage, signed by the trusted key.
      const release = `${dir}/art/stable/x86_64`;
      await Deno.mkdir(release, { recursive: true });
      await Deno.copyFile(build.kernel, `${release}/kernel`);
      await Deno.copyFile(build.node, `${release}/initramfs`);
      await Deno.writeTextFile(`${release}/cmdline`, `${TCG_CMDLINE}\n`);
      // mDNS answers (for VM 2), no DHT.
      const serve = spawnLogged(
        provider,
        await taskArgs("serve", [
          ...["--artifacts", `${dir}/art`, "--bind", "0.0.0.0", "--port", "8080"],
          ...["--arch", "x86_64", "--key", f.trustedKey, "--state-dir", `${dir}/serve-state`],
          ...["--min-free", "0", "--no-dht"],
        ]),
      );
      logged.push(serve);
      await serve.waitFor(/^\s+mDNS\s+on /, 60_000);
      const providerUrl = `http://${provider.address}:8080`;

      // VM 1: stub -> verified kexec -> node stage, from the provider's URL.
      const vm1 = await bootNodeVm(
        f.kernel,
        f.initrd,
        taps[0]!,
        `phase.mode=local phase.provider=${providerUrl}`,
      );
      vms.push(vm1);
      printMarks("vm1 (URL given)", vm1.marks);
      const mirror1 = `http://${vm1.address}:8080/`;

      await t.step("discover --mdns on the LAN finds VM 1's node and its mirror", async () => {
        assert.match(vm1.console(), /phase-boot: \[[\d.]+\] fetched and verified: .*kernel/);
        assert.match(vm1.console(), /phase-node: \[[\d.]+\] mirror: manifest +\/manifest\.json/);
        const found = await requester.run(Deno.execPath(), {
          args: await taskArgs("discover", [
            ...["--mdns", "--json", "--timeout", "90s", "--mdns-wait", "20s", "--mdns-quiet", "5s"],
          ]),
          cwd: ROOT,
          env: { NO_COLOR: "1" },
        });
        assert.equal(found.code, 0, found.err);
        const peers: { peer_id: string; capabilities: string[]; http_url?: string }[] = JSON
          .parse(found.out);
        const node = peers.find((p) => p.peer_id === vm1.peer);
        assert.ok(node, `discover did not find ${vm1.peer}: ${found.out}`);
        assert.ok(node.capabilities.includes("wasm"), found.out);
        assert.ok(peers.some((p) => p.http_url === mirror1), `no mirror ${mirror1}: ${found.out}`);
      });

      let published = "";
      await t.step("VM 1's mirror serves the publisher's manifest byte for byte", async () => {
        const bytes = async (url: string) => {
          const got = await requester.run(Deno.execPath(), {
            args: [
              "eval",
              "--quiet",
              `
              const res = await fetch(${JSON.stringify(url)});
              if (!res.ok) throw new Error(res.status + " " + await res.text());
              Deno.stdout.writeSync(new Uint8Array(await res.arrayBuffer()));`,
            ],
            env: { NO_COLOR: "1" },
          });
          assert.equal(got.code, 0, got.err);
          return got.out;
        };
        published = await bytes(`${providerUrl}/stable/x86_64/manifest.json`);
        assert.equal(await bytes(`${mirror1}stable/x86_64/manifest.json`), published);
        assert.equal(await bytes(`${mirror1}manifest.json`), published);
        const fetched = await requester.run(Deno.execPath(), {
          args: await taskArgs("fetch", [
            ...["--provider", mirror1, "--out", `${dir}/fetched`, "--only", "kernel"],
            ...["--trusted-keys", f.trustedKey.replace(/\.key$/, ".pub"), "--arch", "x86_64"],
          ]),
          cwd: ROOT,
          env: { NO_COLOR: "1" },
        });
        assert.equal(fetched.code, 0, fetched.err);
        assert.deepEqual(
          await Deno.readFile(`${dir}/fetched/kernel`),
          await Deno.readFile(build.kernel),
        );
      });

      const booted = (vm: NodeVm) => {
        const line = /phase-node: \[[\d.]+\] booted: (\{.*\})\r?\n/.exec(vm.console())?.[1];
        assert.ok(line, tail(vm.console()));
        return JSON.parse(line);
      };
      await t.step("the node stage has the stub's record of what it verified", async () => {
        const manifest = JSON.parse(published);
        const trustedPub = (await Deno.readTextFile(f.trustedKey.replace(/\.key$/, ".pub")))
          .trim();
        assert.deepEqual(booted(vm1), {
          provenance_version: 1,
          boot_manifest_hash: sha256Tag(published),
          boot_sequence: manifest.sequence,
          version: manifest.version,
          channel: "stable",
          arch: "x86_64",
          signer_key_ids: [trustedPub],
          artifacts: {
            kernel: manifest.artifacts.kernel.hash,
            initramfs: manifest.artifacts.initramfs.hash,
          },
          providers: [providerUrl],
        });
      });

      await t.step(
        "a job with --worker <VM 1> and a boot requirement runs in the VM; the receipt verifies with its key and carries the boot fields",
        async () => {
          const provenance = booted(vm1);
          const [publisher] = provenance.signer_key_ids as string[];
          const requesterNode = await NodeProcess.spawn([
            ...["--state-dir", `${dir}/requester`, "--no-worker"],
            ...["--listen", `/ip4/${requester.address}/tcp/4001`],
          ], {
            flags: execStartFlags(),
            spawn: (command, options) => requester.spawn(command, options),
          });
          nodes.push(requesterNode);
          await requesterNode.waitForLog((l) => l.event === "api_listening", 60_000);
          await requesterNode.waitForLog((l) => l.peer_id === vm1.peer, 120_000);
          const text = "phase boot node stage";
          await Deno.writeTextFile(`${dir}/input.txt`, text);
          const submitted = await requester.run(Deno.execPath(), {
            args: [
              ...["run", ...SUBMIT_FLAGS, "cli/submit.ts", HELLO_PATH],
              ...["--state-dir", `${dir}/requester`, "--input", `${dir}/input.txt`, "--wait"],
              ...["--worker", vm1.peer, "--receipt", `${dir}/receipt.json`, "--timeout", "60s"],
              ...["--require-boot-signer", publisher!],
              ...["--min-boot-sequence", String(provenance.boot_sequence)],
            ],
            cwd: ROOT,
            env: { NO_COLOR: "1" },
          });
          assert.equal(
            submitted.code,
            0,
            `submit failed: ${submitted.err}\n${tail(vm1.console())}`,
          );
          assert.equal(submitted.out, [...text].reverse().join(""));
          const receipt = JSON.parse(await Deno.readTextFile(`${dir}/receipt.json`));
          assert.equal(receipt.worker_pubkey, toHex(peerPublicKey(vm1.peer)));
          await verifyReceipt(receipt, {
            publicKey: peerPublicKey(vm1.peer),
            module: await Deno.readFile(HELLO_PATH),
            input: new TextEncoder().encode(text),
          });
          // The node stage started with --boot-provenance: its receipts name how it booted.
          assert.equal(
            receipt.result.metrics.extra.boot_manifest_hash,
            provenance.boot_manifest_hash,
          );
          assert.equal(
            receipt.result.metrics.extra.boot_sequence,
            String(provenance.boot_sequence),
          );
        },
      );

      // The self-hosting loop by discovery: no provider URL from here on.
      const providers = (vm: NodeVm) => {
        const first = /phase-boot: \[[\d.]+\] provider (\S+)/.exec(vm.console())?.[1];
        const more = /phase-boot: \[[\d.]+\] also from: (.*?)\r?\n/.exec(vm.console())?.[1];
        return [first, ...(more?.split(" ") ?? [])].filter((u) => u !== undefined).sort();
      };
      const vm2 = await bootNodeVm(f.kernel, f.initrd, taps[1]!, "phase.mode=local");
      vms.push(vm2);
      printMarks("vm2 (mDNS: provider + VM 1)", vm2.marks);
      await t.step("VM 2 found VM 1 and the provider by mDNS and fetched from both", () => {
        assert.deepEqual(providers(vm2), [providerUrl, mirror1.replace(/\/$/, "")].sort());
        assert.deepEqual(booted(vm2).providers.sort(), providers(vm2));
        assert.equal(booted(vm2).boot_manifest_hash, sha256Tag(published));
        assert.notEqual(vm2.peer, vm1.peer);
      });

      await serve.stop();
      const vm3 = await bootNodeVm(f.kernel, f.initrd, taps[2]!, "phase.mode=local");
      vms.push(vm3);
      printMarks("vm3 (mDNS: VM 1 + VM 2)", vm3.marks);
      await t.step("with the provider stopped, VM 3 boots from VM 1 and VM 2 alone", () => {
        assert.deepEqual(
          providers(vm3),
          [mirror1, `http://${vm2.address}:8080/`].map((u) => u.replace(/\/$/, "")).sort(),
        );
      });
    } finally {
      for (const vm of vms.reverse()) await vm.stop();
      for (const node of nodes.reverse()) await node.stop();
      // The world is gone here (its processes killed): their output ends.
      await Promise.all(logged.map((l) => l.drained));
      await removeBootFixture();
    }
  },
});
