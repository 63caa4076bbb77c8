import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeJob } from "../runtime/sandbox_frames.ts";
import { sandboxProcessArgs } from "../runtime/sandbox_spawn.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** `(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))` */
const SPIN = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00,
  0x01,
  0x04,
  0x01,
  0x60,
  0x00,
  0x00,
  0x03,
  0x02,
  0x01,
  0x00,
  0x05,
  0x03,
  0x01,
  0x00,
  0x01,
  0x07,
  0x13,
  0x02,
  0x06,
  0x5f,
  0x73,
  0x74,
  0x61,
  0x72,
  0x74,
  0x00,
  0x00,
  0x06,
  0x6d,
  0x65,
  0x6d,
  0x6f,
  0x72,
  0x79,
  0x02,
  0x00,
  0x0a,
  0x09,
  0x01,
  0x07,
  0x00,
  0x03,
  0x40,
  0x0c,
  0x00,
  0x0b,
  0x0b,
]);

/** `ps` fields of `pid`, or undefined once it is gone (reaped or a zombie). */
const ps = async (pid: number, field: string) => {
  const out = await new Deno.Command("ps", { args: ["-o", `stat=,${field}=`, "-p", String(pid)] })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  return out.code !== 0 || text === "" || text.startsWith("Z") ? undefined : text.split(/\s+/)[1];
};

Deno.test("an unconfined sandbox busy in a module's loop dies when its parent is killed -9", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plasm-orphan-" });
  try {
    const jobFile = join(dir, "job.bin");
    await Deno.writeFile(
      jobFile,
      encodeJob({
        module: SPIN,
        input: new Uint8Array(),
        args: ["spin.wasm"],
        env: {},
        memoryBytes: 65536,
        maxOutputBytes: 1024,
        timeoutMs: 600_000,
      }),
    );
    const args = sandboxProcessArgs(new URL("../runtime/sandbox_main.ts", import.meta.url))
      .map((a) => `'${a}'`).join(" ");
    // The parent: a shell that starts the sandbox, says its PID, then waits for it.
    const parent = new Deno.Command("/bin/bash", {
      args: ["-c", `'${Deno.execPath()}' ${args} < '${jobFile}' > /dev/null 2>&1 & echo $!; wait`],
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value = "" } = await reader.read();
    const pid = Number(value.trim());
    assert.ok(pid > 0, value);
    // Busy: it has read its job and spins (a second of CPU time).
    while (Number(await ps(pid, "times") ?? 0) < 1) await new Promise((r) => setTimeout(r, 100));
    parent.kill("SIGKILL");
    await parent.status;
    await reader.cancel();
    let waited = 0;
    while (await ps(pid, "times") !== undefined) {
      if (waited > 20_000) {
        Deno.kill(pid, "SIGKILL");
        assert.fail(`the orphaned sandbox ${pid} was still running 20 s after its parent died`);
      }
      await new Promise((r) => setTimeout(r, 100));
      waited += 100;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
