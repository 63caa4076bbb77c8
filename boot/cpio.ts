/**
 * A writer for `newc` cpio archives, the format the Linux kernel unpacks as an initramfs.
 *
 * Output is reproducible: entries keep the given order, and inode numbers, owners (root) and
 * times (0) do not depend on the machine that builds the archive.
 *
 * @module
 */

/** One member of a cpio archive. */
export type CpioEntry =
  | {
    /** A directory. */
    kind: "dir";
    /** Path inside the archive, without a leading `/` (e.g. `bin`). */
    path: string;
    /** Permission bits. @default {0o755} */
    mode?: number;
  }
  | {
    /** A regular file, from bytes or from a file on the building machine. */
    kind: "file";
    /** Path inside the archive. */
    path: string;
    /** Permission bits. @default {0o644} */
    mode?: number;
    /** The content; exactly one of `data` and `source`. */
    data?: Uint8Array;
    /** A file to copy the content from, streamed. */
    source?: string;
  }
  | {
    /** A symbolic link. */
    kind: "symlink";
    /** Path inside the archive. */
    path: string;
    /** Where the link points. */
    target: string;
  }
  | {
    /** A character device node (e.g. `dev/console`, 5:1). */
    kind: "char";
    /** Path inside the archive. */
    path: string;
    /** Permission bits. @default {0o600} */
    mode?: number;
    /** Device major number. */
    major: number;
    /** Device minor number. */
    minor: number;
  };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const MAX_SIZE = 0xffffffff;

/**
 * Stream a `newc` cpio archive of the given entries, ending with the `TRAILER!!!` record.
 * File sources are read while streaming, so a large file is never held whole in memory.
 *
 * @throws {TypeError} If an entry has a bad path or a file has not exactly one of `data`, `source`.
 * @throws {RangeError} If a file is larger than the format's 4 GiB limit.
 *
 * @example
 * ```ts
 * import { cpioArchive } from "./cpio.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(await new Response(cpioArchive([
 *   { kind: "dir", path: "etc" },
 *   { kind: "file", path: "etc/motd", data: new TextEncoder().encode("hi\n") },
 * ])).arrayBuffer());
 * assert.equal(new TextDecoder().decode(bytes.subarray(0, 6)), "070701");
 * assert.equal(bytes.length % 4, 0);
 * ```
 */
export function cpioArchive(
  entries: readonly CpioEntry[],
  options: {
    /** Abort streaming (the stream errors with the signal's reason). @default {undefined} */
    signal?: AbortSignal;
  } = {},
): ReadableStream<Uint8Array> {
  const { signal } = options;
  for (const entry of entries) _validate(entry);
  async function* generate(): AsyncGenerator<Uint8Array> {
    let ino = 1;
    for (const entry of entries) {
      signal?.throwIfAborted();
      const name = entry.path;
      if (entry.kind === "dir") {
        yield _header(name, { ino: ino++, mode: S_IFDIR | (entry.mode ?? 0o755), nlink: 2 });
      } else if (entry.kind === "symlink") {
        const target = new TextEncoder().encode(entry.target);
        yield _header(name, { ino: ino++, mode: S_IFLNK | 0o777, size: target.length });
        yield target;
        yield _pad(target.length);
      } else if (entry.kind === "char") {
        yield _header(name, {
          ino: ino++,
          mode: S_IFCHR | (entry.mode ?? 0o600),
          rdevMajor: entry.major,
          rdevMinor: entry.minor,
        });
      } else if (entry.data !== undefined) {
        const mode = S_IFREG | (entry.mode ?? 0o644);
        yield _header(name, { ino: ino++, mode, size: entry.data.length });
        yield entry.data;
        yield _pad(entry.data.length);
      } else {
        const source = entry.source!;
        using file = await Deno.open(source);
        const { size } = await file.stat();
        if (size > MAX_SIZE) {
          throw new RangeError(`Cannot archive '${source}': larger than 4 GiB (${size} bytes)`);
        }
        yield _header(name, { ino: ino++, mode: S_IFREG | (entry.mode ?? 0o644), size });
        let copied = 0;
        const buffer = new Uint8Array(1 << 20);
        while (true) {
          signal?.throwIfAborted();
          const n = await file.read(buffer);
          if (n === null) break;
          copied += n;
          yield buffer.slice(0, n);
        }
        if (copied !== size) {
          throw new RangeError(
            `Cannot archive '${source}': it changed while being read (${size} -> ${copied} bytes)`,
          );
        }
        yield _pad(size);
      }
    }
    yield _header("TRAILER!!!", { ino: 0, mode: 0, nlink: 1 });
  }
  const iterator = generate();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await iterator.return(undefined);
    },
  });
}

function _validate(entry: CpioEntry): void {
  const path = entry.path;
  if (
    typeof path !== "string" || path === "" || path.startsWith("/") ||
    path.split("/").some((part) => part === "" || part === "." || part === "..")
  ) {
    throw new TypeError(`Cannot archive entry: path must be relative and normal, got '${path}'`);
  }
  if (entry.kind === "file" && (entry.data === undefined) === (entry.source === undefined)) {
    throw new TypeError(`Cannot archive '${path}': give exactly one of data and source`);
  }
}

interface _HeaderFields {
  ino: number;
  mode: number;
  nlink?: number;
  size?: number;
  rdevMajor?: number;
  rdevMinor?: number;
}

function _header(name: string, fields: _HeaderFields): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const values = [
    fields.ino,
    fields.mode,
    0, // uid
    0, // gid
    fields.nlink ?? 1,
    0, // mtime
    fields.size ?? 0,
    0, // devmajor
    0, // devminor
    fields.rdevMajor ?? 0,
    fields.rdevMinor ?? 0,
    nameBytes.length + 1,
    0, // check
  ];
  const text = "070701" + values.map((v) => v.toString(16).padStart(8, "0")).join("");
  const headerLength = 110 + nameBytes.length + 1;
  const out = new Uint8Array(headerLength + ((4 - (headerLength % 4)) % 4));
  out.set(new TextEncoder().encode(text), 0);
  out.set(nameBytes, 110);
  return out;
}

function _pad(length: number): Uint8Array {
  return new Uint8Array((4 - (length % 4)) % 4);
}
