/**
 * The network simulator for tests and benchmarks: one import for a test.
 *
 * @example
 * ```ts
 * import { createWorld, missingPrerequisites } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * if ((await missingPrerequisites()).length === 0) {
 *   await using world = await createWorld({ name: "doc-mod" });
 *   await world.addLan("home", { nat: "symmetric" });
 *   const laptop = await world.addHost("laptop", { lan: "home" });
 *   assert.equal(laptop.address, "10.1.0.2");
 * }
 * ```
 *
 * @module
 */
export { createWorld, Host, natRuleset, netemArgs, World } from "./create_world.ts";
export type {
  HostCommandOptions,
  HostOptions,
  HostRun,
  HostSpawnOptions,
  ImpairmentEngine,
  Lan,
  LanOptions,
  LinkOptions,
  NatKind,
  Tap,
  TapOptions,
  WorldOptions,
} from "./create_world.ts";
export { missingPrerequisites, SKIP_HINT } from "./missing_prerequisites.ts";
export { sweepWorlds } from "./sweep_worlds.ts";
