/**
 * Check boot artifacts on disk against a verified boot manifest: size first (cheap), then the
 * sha256 of the file, streamed in 1 MiB reads.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { BootArtifact, BootManifest } from "./boot_manifest.ts";
import { DigestMismatchError } from "../runtime/errors.ts";

/**
 * A file does not have the size a signed manifest gives it.
 *
 * @example
 * ```ts
 * import { ArtifactSizeError } from "./verify_artifacts.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new ArtifactSizeError("kernel", 10, 9);
 * assert.equal(err.message, "Cannot accept 'kernel': size mismatch: expected 10 bytes, got 9");
 * ```
 */
export class ArtifactSizeError extends Error {
  /** The artifact name. */
  readonly subject: string;
  /** The size the manifest gives. */
  readonly expected: number;
  /** The size at hand. */
  readonly actual: number;
  /** Make the error. */
  constructor(subject: string, expected: number, actual: number, options?: ErrorOptions) {
    super(
      `Cannot accept '${subject}': size mismatch: expected ${expected} bytes, got ${actual}`,
      options,
    );
    this.name = "ArtifactSizeError";
    this.subject = subject;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * Size and `sha256:<hex>` of a file, read in 1 MiB chunks.
 *
 * @example
 * ```ts
 * import { hashFile } from "./verify_artifacts.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "abc");
 * const { size, hash } = await hashFile(path);
 * assert.equal(size, 3);
 * assert.equal(hash, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
 * await Deno.remove(path);
 * ```
 */
export async function hashFile(
  path: string,
  options: {
    /** Cancels the read. @default {undefined} */
    signal?: AbortSignal;
    /** Called with the bytes read so far, after each chunk. @default {undefined} */
    onProgress?: (bytes: number) => void;
  } = {},
): Promise<{ size: number; hash: string }> {
  const { signal, onProgress } = options;
  const hasher = createHash("sha256");
  const size = await hashFileInto(path, hasher, { signal, onProgress });
  return { size, hash: `sha256:${hasher.digest("hex")}` };
}

/**
 * Feed a file's bytes (optionally only the first `limit`) into a hasher; returns the number of
 * bytes read. Used to rebuild the hash state of a `.part` file before resuming.
 *
 * @example
 * ```ts
 * import { hashFileInto } from "./verify_artifacts.ts";
 * import { createHash } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "abcdef");
 * const h = createHash("sha256");
 * assert.equal(await hashFileInto(path, h, { limit: 3 }), 3);
 * assert.equal(h.digest("hex").slice(0, 8), "ba7816bf");
 * await Deno.remove(path);
 * ```
 */
export async function hashFileInto(
  path: string,
  hasher: { update(data: Uint8Array): unknown },
  options: {
    /** Read at most this many bytes. @default {Infinity} */
    limit?: number;
    /** Cancels the read. @default {undefined} */
    signal?: AbortSignal | undefined;
    /** Called with the bytes read so far, after each chunk. @default {undefined} */
    onProgress?: ((bytes: number) => void) | undefined;
  } = {},
): Promise<number> {
  const { limit = Infinity, signal, onProgress } = options;
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(1 << 20);
  let total = 0;
  while (total < limit) {
    signal?.throwIfAborted();
    const want = Math.min(buffer.length, limit - total);
    const n = await file.read(buffer.subarray(0, want));
    if (n === null) break;
    hasher.update(buffer.subarray(0, n));
    total += n;
    onProgress?.(total);
  }
  return total;
}

/**
 * Check one file against a manifest artifact entry: size, then sha256.
 *
 * @param name The artifact name, for messages.
 * @throws {Deno.errors.NotFound} If the file is missing.
 * @throws {ArtifactSizeError} If the size differs.
 * @throws {DigestMismatchError} If the hash differs.
 *
 * @example
 * ```ts
 * import { verifyArtifactFile } from "./verify_artifacts.ts";
 * import { DigestMismatchError } from "../runtime/errors.ts";
 * import { sha256Tag } from "../runtime/digest.ts";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "abc");
 * await verifyArtifactFile("kernel", path, { size_bytes: 3, hash: sha256Tag("abc") });
 * await assert.rejects(
 *   () => verifyArtifactFile("kernel", path, { size_bytes: 3, hash: sha256Tag("abd") }),
 *   DigestMismatchError,
 * );
 * await Deno.remove(path);
 * ```
 */
export async function verifyArtifactFile(
  name: string,
  path: string,
  expected: Pick<BootArtifact, "size_bytes" | "hash">,
  options: {
    /** Cancels the check. @default {undefined} */
    signal?: AbortSignal;
  } = {},
): Promise<void> {
  const { signal } = options;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot check '${name}': file '${path}' not found`, {
        cause: error,
      });
    }
    throw error;
  }
  if (!stat.isFile) throw new TypeError(`Cannot check '${name}': '${path}' is not a file`);
  if (stat.size !== expected.size_bytes) {
    throw new ArtifactSizeError(name, expected.size_bytes, stat.size);
  }
  const { size, hash } = await hashFile(path, signal ? { signal } : {});
  if (size !== expected.size_bytes) throw new ArtifactSizeError(name, expected.size_bytes, size);
  if (hash !== expected.hash) throw new DigestMismatchError(name, expected.hash, hash);
}

/** The result of checking one artifact with {@linkcode verifyArtifacts}. */
export interface ArtifactCheck {
  /** The artifact name. */
  name: string;
  /** Where it was looked for. */
  path: string;
  /** Whether size and hash matched. */
  ok: boolean;
  /** What failed, one line, when not ok. */
  error?: string;
}

/**
 * Check the artifacts of a (verified) manifest in a directory, each as `<dir>/<filename>`.
 * Every artifact is checked; the results say which failed and why.
 *
 * @example
 * ```ts
 * import { verifyArtifacts } from "./verify_artifacts.ts";
 * import type { BootManifest } from "./boot_manifest.ts";
 * import { sha256Tag } from "../runtime/digest.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/vmlinuz`, "kernel bytes");
 * const manifest = { artifacts: {
 *   kernel: { filename: "vmlinuz", size_bytes: 12, hash: sha256Tag("kernel bytes"), download_url: "/k" },
 *   initramfs: { filename: "initrd", size_bytes: 1, hash: sha256Tag("x"), download_url: "/i" },
 * } } as unknown as BootManifest;
 * const results = await verifyArtifacts(manifest, dir);
 * assert.deepEqual(results.map((r) => [r.name, r.ok]), [["initramfs", false], ["kernel", true]]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function verifyArtifacts(
  manifest: Pick<BootManifest, "artifacts">,
  dir: string,
  options: {
    /** Only these artifact names (each must exist in the manifest). @default {undefined} */
    only?: string[];
    /** Cancels the check. @default {undefined} */
    signal?: AbortSignal;
  } = {},
): Promise<ArtifactCheck[]> {
  const { only, signal } = options;
  const names = selectArtifacts(manifest, only);
  const results: ArtifactCheck[] = [];
  for (const name of names) {
    const artifact = manifest.artifacts[name]!;
    const path = `${dir.replace(/\/+$/, "") || "/"}/${artifact.filename}`;
    try {
      await verifyArtifactFile(name, path, artifact, signal ? { signal } : {});
      results.push({ name, path, ok: true });
    } catch (error) {
      if (signal?.aborted) throw error;
      results.push({ name, path, ok: false, error: (error as Error).message });
    }
  }
  return results;
}

/**
 * The artifact names to work on: all of the manifest's (sorted), or the `only` list checked
 * against it.
 *
 * @throws {RangeError} If a name in `only` is not in the manifest.
 *
 * @example
 * ```ts
 * import { selectArtifacts } from "./verify_artifacts.ts";
 * import assert from "node:assert/strict";
 *
 * const m = { artifacts: { kernel: {}, initramfs: {} } } as never;
 * assert.deepEqual(selectArtifacts(m), ["initramfs", "kernel"]);
 * assert.throws(() => selectArtifacts(m, ["rootfs"]), /rootfs/);
 * ```
 */
export function selectArtifacts(
  manifest: Pick<BootManifest, "artifacts">,
  only?: string[],
): string[] {
  const all = Object.keys(manifest.artifacts).sort();
  if (only === undefined) return all;
  for (const name of only) {
    if (!Object.hasOwn(manifest.artifacts, name)) {
      throw new RangeError(
        `Cannot select artifact '${name}': not in the manifest (has: ${all.join(", ") || "none"})`,
      );
    }
  }
  return [...new Set(only)];
}
