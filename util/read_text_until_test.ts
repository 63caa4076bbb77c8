import assert from "node:assert/strict";
import { readTextUntil } from "./read_text_until.ts";

Deno.test("readTextUntil() stops at the first chunk that completes the text it waits for", async () => {
  const reader = ReadableStream.from(["a", "b\n", "c\n", "d"]).getReader();
  assert.equal(await readTextUntil(reader, (t) => t.endsWith("\n")), "ab\n");
  assert.equal(await readTextUntil(reader, (t) => t.includes("d")), "c\nd");
  assert.equal(await readTextUntil(reader, () => false), "", "the stream has ended");
});

Deno.test("readTextUntil() gives up past maxChars without the text", async () => {
  let pulls = 0;
  const endless = new ReadableStream<string>({
    pull(controller) {
      pulls++;
      controller.enqueue("x".repeat(100));
    },
  });
  const reader = endless.getReader();
  await assert.rejects(
    readTextUntil(reader, (t) => t.includes("y"), { maxChars: 1000 }),
    RangeError,
    "Cannot read output: more than 1000 characters came without the expected text",
  );
  assert.ok(pulls <= 12, `${pulls} pulls`);
  await reader.cancel();
});

Deno.test("readTextUntil() rejects with the signal's reason while a read waits", async () => {
  const { readable } = new TransformStream<string, string>();
  const reader = readable.getReader();
  const stop = new AbortController();
  const reading = readTextUntil(reader, () => false, { signal: stop.signal });
  stop.abort(new Error("stopped"));
  await assert.rejects(reading, /^Error: stopped$/);
  await assert.rejects(readTextUntil(reader, () => false, { signal: stop.signal }), /stopped/);
  await reader.cancel();
});
