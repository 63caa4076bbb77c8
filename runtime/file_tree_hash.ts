/**
 * The hash receipts commit to for a file tree. Kept apart from file_tree.ts so that the sandbox,
 * which encodes and decodes trees but never hashes them, does not load a hash library.
 *
 * @module
 */
import { sha256Tag } from "./digest.ts";
import { encodeFileTree, type FileTree } from "./file_tree.ts";

/**
 * The hash of a tree: `sha256:<hex>` of its encoding, the value a receipt's `inputs_hash` and
 * `outputs_hash` carry.
 *
 * @example The empty tree
 * ```ts
 * import { fileTreeHash } from "./file_tree_hash.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   fileTreeHash({ entries: [] }),
 *   "sha256:7e9db0b49da89e18cab6578c336591e21e7969579aeaa7e6f5959c287c01f431",
 * );
 * ```
 */
export function fileTreeHash(tree: FileTree): string {
  return sha256Tag(encodeFileTree(tree));
}
