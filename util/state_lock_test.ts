import assert from "node:assert/strict";
import { lockStateDir, STATE_LOCK_FILE, StateDirLockedError } from "./state_lock.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

const withDir = <T>(fn: (dir: string) => Promise<T>): Promise<T> => withTempDir("plasm-lock-", fn);

Deno.test("lockStateDir() refuses a second lock, naming the holder's command and PID", async () => {
  await withDir(async (dir) => {
    await using _held = await lockStateDir(`${dir}/state`, { command: "start" });
    const error = await lockStateDir(`${dir}/state`, { command: "serve" }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(error instanceof StateDirLockedError);
    assert.equal(
      error.message,
      `Cannot use state dir '${dir}/state': start is already running there (PID ${Deno.pid})`,
    );
    assert.equal(error.holder?.pid, Deno.pid);
  });
});

Deno.test("lockStateDir() creates the dir 0700 and the lock file 0600, and release removes the file", async () => {
  await withDir(async (dir) => {
    const lock = await lockStateDir(`${dir}/state`, { command: "serve" });
    assert.equal((await Deno.stat(`${dir}/state`)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(lock.path)).mode! & 0o777, 0o600);
    const holder = JSON.parse(await Deno.readTextFile(lock.path));
    assert.equal(holder.pid, Deno.pid);
    assert.equal(holder.command, "serve");
    await lock.release();
    await lock.release();
    await assert.rejects(Deno.stat(lock.path), Deno.errors.NotFound);
    await (await lockStateDir(`${dir}/state`, { command: "start" })).release();
  });
});

Deno.test("lockStateDir() takes over a stale lock file left by a process that no longer runs", async () => {
  await withDir(async (dir) => {
    // A real process takes the lock, then dies without releasing it.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { lockStateDir } from ${
          JSON.stringify(new URL("./state_lock.ts", import.meta.url).href)
        };
         await lockStateDir(${JSON.stringify(dir)}, { command: "start" });
         console.log("locked");
         await new Promise(() => setInterval(() => {}, 1000));`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.equal((await reader.read()).value?.trim(), "locked");
    const refused = await lockStateDir(dir, { command: "start" }).catch((e) => e);
    assert.ok(refused instanceof StateDirLockedError);
    assert.equal(refused.holder?.pid, child.pid);
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/${STATE_LOCK_FILE}`)).pid, child.pid);
    await using lock = await lockStateDir(dir, { command: "start" });
    assert.equal(lock.staleFrom, child.pid);
    assert.equal(JSON.parse(await Deno.readTextFile(lock.path)).pid, Deno.pid);
  });
});
