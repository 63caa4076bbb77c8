import assert from "node:assert/strict";
import { parseDuration, parseSize } from "./_units.ts";

Deno.test("parseDuration() reads ms, s, m, h and bare seconds", () => {
  assert.deepEqual(
    ["5ms", "2s", "0.25s", "3m", "1h", "7"].map(parseDuration),
    [5, 2000, 250, 180000, 3600000, 7000],
  );
});

Deno.test("parseDuration() refuses negative, empty and unknown units with the accepted forms", () => {
  for (const bad of ["", "-1s", "10d", "s", "1e3"]) {
    assert.throws(() => parseDuration(bad), /Cannot parse duration .*use e\.g\. 500ms/);
  }
});

Deno.test("parseSize() reads binary and decimal units", () => {
  assert.deepEqual(
    ["1", "1k", "1KiB", "2M", "2mib", "1G", "1GiB", "1kB", "1MB", "1GB", "1.5KiB"].map(parseSize),
    [1, 1024, 1024, 2097152, 2097152, 1073741824, 1073741824, 1000, 1000000, 1e9, 1536],
  );
});

Deno.test("parseSize() refuses unknown units and negatives", () => {
  for (const bad of ["", "-1", "1TB", "MiB", "1 0"]) {
    assert.throws(() => parseSize(bad), /Cannot parse size/);
  }
});
