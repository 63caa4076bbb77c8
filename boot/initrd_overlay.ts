/**
 * Add files to a built initramfs without rebuilding it: the kernel unpacks concatenated cpio
 * archives in order, later files replacing earlier ones. Used to put another trusted-keys file
 * into a built stub (`etc/phase/trusted-keys`), e.g. for tests or a site's own publisher key.
 *
 * @module
 */
import { cpioArchive, type CpioEntry } from "./cpio.ts";
import { writeFileAtomic } from "../util/write_file_atomic.ts";

/** One file to add. */
export interface OverlayFile {
  /** Path inside the image, without a leading `/`. */
  path: string;
  /** The content. */
  data: Uint8Array | string;
  /** Permission bits. @default {0o644} */
  mode?: number;
}

/**
 * Write `out` = the initramfs `base`, zero-padded to a 4-byte boundary, followed by an
 * uncompressed cpio archive of `files` (with their parent directories). Written atomically
 * (a temporary file, fsync, rename), so `out` is never a half-written image.
 *
 * @example
 * ```ts
 * import { writeInitrdOverlay } from "./initrd_overlay.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/base`, new Uint8Array([1, 2, 3]));
 * await writeInitrdOverlay(`${dir}/base`, [{ path: "etc/phase/trusted-keys", data: "ab\n" }], `${dir}/out`);
 * const bytes = await Deno.readFile(`${dir}/out`);
 * assert.deepEqual([...bytes.subarray(0, 4)], [1, 2, 3, 0]);
 * assert.equal(new TextDecoder().decode(bytes.subarray(4, 10)), "070701");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeInitrdOverlay(
  base: string,
  files: readonly OverlayFile[],
  out: string,
): Promise<void> {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  for (const file of files) {
    const parts = file.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ kind: "dir", path: dir });
      }
    }
    const data = typeof file.data === "string" ? new TextEncoder().encode(file.data) : file.data;
    entries.push({ kind: "file", path: file.path, data, mode: file.mode ?? 0o644 });
  }
  const length = (await Deno.stat(base)).size;
  await writeFileAtomic(out, ReadableStream.from(_image(base, length, cpioArchive(entries))));
}

/** The bytes of `base`, zero padding to a 4-byte boundary, then `archive`. */
async function* _image(
  base: string,
  length: number,
  archive: ReadableStream<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield* (await Deno.open(base)).readable;
  if (length % 4 !== 0) yield new Uint8Array(4 - (length % 4));
  yield* archive;
}
