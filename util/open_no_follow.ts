/**
 * Open a file without following a symbolic link at its path. Deno has no `O_NOFOLLOW`, so:
 * a missing file is created with `createNew` (`O_CREAT|O_EXCL`, which never follows a link,
 * even a dangling one); an existing one is `lstat`ed, refused if it is not a regular file,
 * opened, and refused again if the open file is not the one `lstat` saw (same device and
 * inode), which catches a link swapped in between.
 *
 * @module
 */

/**
 * A path that should name a regular file names a symbolic link (or another kind of file), so
 * it was not opened.
 *
 * @example
 * ```ts
 * import { LinkRefusedError } from "./open_no_follow.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new LinkRefusedError("/out/kernel.part", "a symbolic link");
 * assert.equal(
 *   error.message,
 *   "Cannot open '/out/kernel.part': it is a symbolic link, which is never followed",
 * );
 * ```
 */
export class LinkRefusedError extends Error {
  /** The path that was refused. */
  readonly path: string;
  /** Make the error: `what` says what the path turned out to be. */
  constructor(path: string, what: string, options?: ErrorOptions) {
    super(
      what === "a symbolic link"
        ? `Cannot open '${path}': it is a symbolic link, which is never followed`
        : `Cannot open '${path}': it is ${what}, not a regular file`,
      options,
    );
    this.name = "LinkRefusedError";
    this.path = path;
  }
}

/** Options of {@linkcode openNoFollow}. */
export interface OpenNoFollowOptions {
  /** Open for writing too. @default {false} */
  write?: boolean;
  /** Create the file (with `mode`) when it does not exist. @default {false} */
  create?: boolean;
  /** Permission bits of a created file. @default {0o600} */
  mode?: number;
}

/**
 * Open `path` for reading (and writing with `write`), never through a symbolic link; see the
 * module doc.
 *
 * @throws {LinkRefusedError} If the path names a symbolic link, a directory or another
 * non-regular file, or was swapped while it was opened.
 * @throws {Deno.errors.NotFound} If it does not exist and `create` is false.
 *
 * @example
 * ```ts
 * import { LinkRefusedError, openNoFollow } from "./open_no_follow.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/target`, "secret");
 * await Deno.symlink(`${dir}/target`, `${dir}/link`);
 * await assert.rejects(openNoFollow(`${dir}/link`, { write: true }), LinkRefusedError);
 * using file = await openNoFollow(`${dir}/new`, { write: true, create: true });
 * await file.write(new TextEncoder().encode("ok"));
 * assert.equal(await Deno.readTextFile(`${dir}/target`), "secret");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openNoFollow(
  path: string,
  options: OpenNoFollowOptions = {},
): Promise<Deno.FsFile> {
  const { write = false, create = false, mode = 0o600 } = options;
  for (let attempt = 0;; attempt++) {
    let before: Deno.FileInfo | undefined;
    try {
      before = await Deno.lstat(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || !create) throw error;
    }
    if (before === undefined) {
      try {
        return await Deno.open(path, { read: true, write: true, createNew: true, mode });
      } catch (error) {
        // Made by someone else in between (a link, maybe): look again.
        if (error instanceof Deno.errors.AlreadyExists && attempt < 3) continue;
        throw error;
      }
    }
    if (!before.isFile) throw new LinkRefusedError(path, _kind(before));
    const file = await Deno.open(path, { read: true, write });
    let same = false;
    try {
      const opened = await file.stat();
      same = opened.isFile && opened.dev === before.dev && opened.ino === before.ino;
    } finally {
      if (!same) file.close();
    }
    if (same) return file;
    throw new LinkRefusedError(path, "a symbolic link");
  }
}

function _kind(info: Deno.FileInfo): string {
  if (info.isSymlink) return "a symbolic link";
  if (info.isDirectory) return "a directory";
  return "a special file";
}
