/**
 * Phase Boot: what a bare machine needs to boot from the network. `planKexec` checks fetched
 * artifacts and says what to kexec; `writeInitrdOverlay` and `cpioArchive` make initramfs
 * images (newc cpio); `buildBootImages` builds the stub and second-stage images from Debian
 * packages.
 *
 * @example An initramfs overlay holding one file
 * ```ts
 * import { cpioArchive } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const archive = cpioArchive([
 *   { kind: "file", path: "etc/phase/hello", data: new TextEncoder().encode("hi\n") },
 * ]);
 * const bytes = new Uint8Array(await new Response(archive).arrayBuffer());
 * assert.equal(new TextDecoder().decode(bytes.subarray(0, 6)), "070701");
 * ```
 *
 * @module
 */
export { planKexec } from "./kexec_plan.ts";
export type { BootProvenance, KexecPlan, PlanKexecOptions } from "./kexec_plan.ts";
export { writeInitrdOverlay } from "./initrd_overlay.ts";
export type { OverlayFile } from "./initrd_overlay.ts";
export { cpioArchive } from "./cpio.ts";
export type { CpioEntry } from "./cpio.ts";
export { buildBootImages, STUB_TOOLS, VIRTIO_NET_MODULES } from "./build.ts";
export type { BootBuildResult, BuildBootImagesOptions, ToolForm } from "./build.ts";
export type { BootArtifact, BootManifest, BootSignature } from "../provider/boot_manifest.ts";
