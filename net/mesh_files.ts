/**
 * The caps and layout of a job's files when it comes from the mesh (`submit --dir`): shared by
 * the requester's CLI and scheduler and by the worker, without loading the node.
 *
 * @module
 */
import type { SandboxFiles } from "../runtime/sandbox_core.ts";

/**
 * The files of a job from the mesh: its input tree preopened as `/`, under the mesh's caps:
 * 64 MiB of file contents (never more than the job's memory) and 1,000 entries, so that any
 * output tree within them fits one answer (`MAX_EXEC_TREE_BYTES`, job_exec_protocol.ts).
 *
 * @example
 * ```ts
 * import { meshJobFiles } from "./mesh_files.ts";
 * import assert from "node:assert/strict";
 *
 * const files = meshJobFiles(new Uint8Array(), 1 << 20);
 * assert.deepEqual(files.preopens, [{ name: "/", path: "" }]);
 * assert.equal(files.maxBytes, 1 << 20);
 * assert.equal(files.maxFiles, 1000);
 * ```
 */
export function meshJobFiles(tree: Uint8Array, memoryBytes: number): SandboxFiles {
  return { tree, preopens: [{ name: "/", path: "" }], ...meshTreeLimits(memoryBytes) };
}

/**
 * The mesh's caps on a job's files: {@linkcode MESH_FS_MAX_BYTES} (never more than the job's
 * memory) and {@linkcode MESH_FS_MAX_FILES}, for reading, checking and writing its trees.
 *
 * @example
 * ```ts
 * import { meshTreeLimits } from "./mesh_files.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(meshTreeLimits(1 << 20), { maxBytes: 1 << 20, maxFiles: 1000 });
 * assert.equal(meshTreeLimits().maxBytes, 64 * 2 ** 20);
 * ```
 */
export function meshTreeLimits(memoryBytes = Infinity): { maxBytes: number; maxFiles: number } {
  return { maxBytes: Math.min(MESH_FS_MAX_BYTES, memoryBytes), maxFiles: MESH_FS_MAX_FILES };
}

/** Cap on a mesh job's file contents, in bytes (never more than its memory). */
export const MESH_FS_MAX_BYTES = 64 * 2 ** 20;
/** Cap on a mesh job's entries (files, directories, links). */
export const MESH_FS_MAX_FILES = 1000;
