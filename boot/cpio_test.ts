import assert from "node:assert/strict";
import { cpioArchive, type CpioEntry } from "./cpio.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

interface Parsed {
  name: string;
  mode: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
}

/** A strict newc reader: checks magic, alignment and the trailer. */
function parse(bytes: Uint8Array): Parsed[] {
  const text = new TextDecoder();
  const out: Parsed[] = [];
  let at = 0;
  while (true) {
    assert.equal(at % 4, 0, "every header starts 4-byte aligned");
    assert.equal(text.decode(bytes.subarray(at, at + 6)), "070701");
    const field = (i: number) =>
      parseInt(text.decode(bytes.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    const nameSize = field(11);
    const size = field(6);
    const name = text.decode(bytes.subarray(at + 110, at + 110 + nameSize - 1));
    assert.equal(bytes[at + 110 + nameSize - 1], 0, "names end with NUL");
    const dataAt = Math.ceil((at + 110 + nameSize) / 4) * 4;
    const entry = {
      name,
      mode: field(1),
      size,
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: bytes.slice(dataAt, dataAt + size),
    };
    at = Math.ceil((dataAt + size) / 4) * 4;
    if (name === "TRAILER!!!") break;
    out.push(entry);
  }
  assert.equal(at, bytes.length, "nothing follows the trailer");
  return out;
}

async function archive(entries: CpioEntry[]): Promise<Uint8Array> {
  return new Uint8Array(await new Response(cpioArchive(entries)).arrayBuffer());
}

Deno.test("cpioArchive() writes dirs, files, symlinks and device nodes in newc format", async () => {
  await withTempDir("plasm-test-", async (dir) => {
    await Deno.writeFile(`${dir}/src`, new Uint8Array([1, 2, 3, 4, 5]));
    const parsed = parse(
      await archive([
        { kind: "dir", path: "bin" },
        { kind: "file", path: "bin/tool", mode: 0o755, source: `${dir}/src` },
        { kind: "file", path: "etc", data: new TextEncoder().encode("hi") },
        { kind: "symlink", path: "bin/sh", target: "busybox" },
        { kind: "char", path: "dev/console", major: 5, minor: 1 },
      ]),
    );
    assert.deepEqual(parsed.map((e) => [e.name, e.mode.toString(8), e.size]), [
      ["bin", "40755", 0],
      ["bin/tool", "100755", 5],
      ["etc", "100644", 2],
      ["bin/sh", "120777", 7],
      ["dev/console", "20600", 0],
    ]);
    assert.deepEqual([...parsed[1]!.data], [1, 2, 3, 4, 5]);
    assert.equal(new TextDecoder().decode(parsed[3]!.data), "busybox");
    assert.deepEqual([parsed[4]!.rdevMajor, parsed[4]!.rdevMinor], [5, 1]);
  });
});

Deno.test("cpioArchive() output is the same bytes for the same entries", async () => {
  const entries: CpioEntry[] = [{ kind: "file", path: "a", data: new Uint8Array(3) }];
  assert.deepEqual(await archive(entries), await archive(entries));
});

Deno.test("cpioArchive() rejects absolute and parent paths", () => {
  for (const path of ["/etc", "a/../b", "", "a//b", "./a"]) {
    assert.throws(() => cpioArchive([{ kind: "dir", path }]), TypeError, path);
  }
});

Deno.test("cpioArchive() rejects a file with both or neither of data and source", () => {
  assert.throws(
    () => cpioArchive([{ kind: "file", path: "a" }]),
    /give exactly one of data and source/,
  );
  assert.throws(
    () => cpioArchive([{ kind: "file", path: "a", data: new Uint8Array(), source: "/x" }]),
    /give exactly one of data and source/,
  );
});

Deno.test("cpioArchive() fails when a source file is missing", async () => {
  await assert.rejects(
    () => archive([{ kind: "file", path: "a", source: "/nonexistent/phase-boot-test" }]),
    Deno.errors.NotFound,
  );
});
