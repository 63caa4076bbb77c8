import assert from "node:assert/strict";
import { runVm } from "./qemu.ts";

const BASE = {
  kernel: "vmlinuz",
  initrd: "initrd",
  append: "console=ttyS0",
  qemu: "/nonexistent/qemu",
};

Deno.test("runVm refuses host forwards on a TAP network before starting anything", async () => {
  await assert.rejects(
    runVm({
      ...BASE,
      tap: { namespace: "ns", ifname: "v1" },
      hostForwards: [{ host: 8080, guest: 8080 }],
    }),
    {
      name: "TypeError",
      message: "Cannot start VM on TAP 'v1': hostForwards need the user-mode network",
    },
  );
});

Deno.test("runVm refuses a TAP name or MAC that could smuggle qemu options", async () => {
  for (
    const tap of [
      { namespace: "ns", ifname: "v1,script=/tmp/x" },
      { namespace: "ns", ifname: "v1", mac: "52:54:00:00:00:01,romfile=/x" },
      { namespace: "-n", ifname: "v1" },
    ]
  ) {
    await assert.rejects(runVm({ ...BASE, tap }), (error: Error) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.match(error.message, /^Cannot start VM on TAP: bad (ifname|mac|namespace) '/);
      return true;
    });
  }
});
