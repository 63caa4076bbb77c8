/**
 * A mirror of signed boot artifacts: serves `DIR/<channel>/<arch>/manifest.json` exactly as its
 * publisher signed it, with the files it names, and never signs anything (`serve --mirror`).
 *
 * @module
 */
import { ArtifactStore, type ArtifactStoreOptions, SAFE_NAME } from "./artifact_store.ts";
import { type BootManifest, parseBootManifestJson } from "./boot_manifest.ts";
import { fromHex } from "../runtime/digest.ts";
import { MAX_BOOT_MANIFEST_BYTES } from "./boot_manifest.ts";

/** Options of {@linkcode MirrorStore}. */
export type MirrorStoreOptions = Omit<ArtifactStoreOptions, "validityDays">;

/**
 * An {@linkcode ArtifactStore} whose manifests are the publisher's own: `manifest()` returns
 * `DIR/<channel>/<arch>/manifest.json` (read again when the file changes) instead of signing
 * one, so the provider handler serves it byte for byte, and the artifacts are found
 * and hashed as any store does. The key pair the store is built with only satisfies the base
 * class: it never signs (`manifests_signed_total` stays 0). {@linkcode MirrorStore.check}
 * refuses a manifest that would not be served byte for byte or that names other files.
 *
 * @example
 * ```ts
 * import { MirrorStore } from "./mirror_store.ts";
 * import { ArtifactStore } from "./artifact_store.ts";
 * import { generateKeyPair } from "../runtime/ed25519.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/stable/x86_64`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/stable/x86_64/kernel`, "kernel bytes");
 * const publisher = new ArtifactStore(dir, { keyPair: await generateKeyPair() });
 * const signed = (await publisher.manifest("stable", "x86_64"))!;
 * const bytes = `${JSON.stringify(signed, null, 2)}\n`;
 * await Deno.writeTextFile(`${dir}/stable/x86_64/manifest.json`, bytes);
 *
 * const mirror = new MirrorStore(dir, { keyPair: await generateKeyPair() });
 * await mirror.check("stable", "x86_64");
 * const served = (await mirror.manifest("stable", "x86_64"))!;
 * assert.equal(`${JSON.stringify(served, null, 2)}\n`, bytes);
 * assert.equal(mirror.metrics().manifests_signed_total, 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class MirrorStore extends ArtifactStore {
  readonly #read = new Map<string, { stamp: string; manifest: BootManifest }>();

  /** Make a mirror of `dir`; no I/O happens until it is used. */
  constructor(dir: string, options: MirrorStoreOptions) {
    super(dir, options);
  }

  /** The publisher's key: the first signer of the default manifest read so far, if any. */
  override get publicKey(): Uint8Array {
    for (const { manifest } of this.#read.values()) {
      const keyId = manifest.signatures[0]?.key_id;
      if (keyId !== undefined) return fromHex(keyId);
    }
    return super.publicKey;
  }

  /**
   * The publisher's manifest of one channel/arch as its file holds it, or `undefined` when
   * there is no such file.
   *
   * @throws {ManifestRejectedError} If the file is not a boot manifest.
   */
  override async manifest(
    channel: string,
    arch: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<BootManifest | undefined> {
    options.signal?.throwIfAborted();
    if (!SAFE_NAME.test(channel) || !SAFE_NAME.test(arch)) return undefined;
    const key = `${channel}/${arch}`;
    const path = `${this.dir}/${key}/manifest.json`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
    const stamp = `${info.size}:${info.mtime?.getTime()}:${info.ino}`;
    const cached = this.#read.get(key);
    if (cached?.stamp === stamp) return cached.manifest;
    if (info.size > MAX_BOOT_MANIFEST_BYTES) {
      throw new RangeError(`Cannot mirror '${path}': larger than ${MAX_BOOT_MANIFEST_BYTES} bytes`);
    }
    const bytes = await Deno.readFile(path);
    parseBootManifestJson(bytes); // its shape, strictly (no duplicate keys, integers only)
    // Key order as in the file: the provider handler writes it back with the same layout.
    const manifest = JSON.parse(new TextDecoder().decode(bytes)) as BootManifest;
    if (`${JSON.stringify(manifest, null, 2)}\n` !== new TextDecoder().decode(bytes)) {
      throw new SyntaxError(
        `Cannot mirror '${path}': not laid out as serve writes manifests (2-space JSON and a ` +
          "newline), so it could not be served byte for byte",
      );
    }
    if (manifest.channel !== channel || manifest.arch !== arch) {
      throw new SyntaxError(
        `Cannot mirror '${path}': it is the manifest of ${manifest.channel}/${manifest.arch}`,
      );
    }
    this.#read.set(key, { stamp, manifest });
    return manifest;
  }

  /**
   * Check that `DIR/<channel>/<arch>` holds a manifest that can be served byte for byte, and
   * every artifact it names with that size and sha256.
   *
   * @throws {Error} One line naming what does not match.
   */
  async check(channel: string, arch: string, options: { signal?: AbortSignal } = {}): Promise<
    BootManifest
  > {
    const manifest = await this.manifest(channel, arch, options);
    if (manifest === undefined) {
      throw new Error(`Cannot mirror '${this.dir}/${channel}/${arch}': no manifest.json there`);
    }
    const set = await this.scan(channel, arch, options);
    for (const [name, artifact] of Object.entries(manifest.artifacts)) {
      const found = set?.artifacts.find((a) => a.name === name);
      if (found === undefined) {
        throw new Error(`Cannot mirror '${name}': ${channel}/${arch} has no such file`);
      }
      if (found.size !== artifact.size_bytes || found.hash !== artifact.hash) {
        throw new Error(
          `Cannot mirror '${name}': ${found.path} is not the file the manifest names ` +
            `(expected ${artifact.hash}, ${artifact.size_bytes} bytes; got ${found.hash}, ` +
            `${found.size} bytes)`,
        );
      }
    }
    return manifest;
  }
}
