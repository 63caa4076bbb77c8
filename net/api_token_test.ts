import assert from "node:assert/strict";
import { loadOrCreateApiToken } from "./api_token.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

Deno.test("loadOrCreateApiToken() refuses a token file other users can read, and keeps it", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.chmod(dir, 0o755);
    const token = await loadOrCreateApiToken(dir);
    assert.equal((await Deno.stat(`${dir}/api.token`)).mode! & 0o777, 0o600);
    await Deno.chmod(`${dir}/api.token`, 0o644);
    await assert.rejects(
      () => loadOrCreateApiToken(dir),
      new RegExp(
        `^PermissionDenied: Cannot load API token '${dir}/api\\.token': other users can read it \\(mode 0644\\)`,
      ),
    );
    assert.equal(await Deno.readTextFile(`${dir}/api.token`), token);
    await Deno.chmod(`${dir}/api.token`, 0o600);
    assert.equal(await loadOrCreateApiToken(dir), token);
  });
});
