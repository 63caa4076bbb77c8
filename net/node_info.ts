/**
 * The `/phase/info/1.0.0` protocol: a node describes itself in one capped JSON message.
 *
 * The asker opens a stream and closes its writing side without sending anything; once the node
 * sees that end it answers with one JSON object (at most {@linkcode MAX_INFO_BYTES}) and closes. Provider records
 * in the DHT say only *who* provides a key; the details (limits, HTTP URL, channel, manifest
 * sequence) come from the provider itself over this protocol, and are validated field by field.
 *
 * @module
 */

import { parseStrictJson } from "../util/strict_json.ts";
import { concatBytes } from "../util/concat_bytes.ts";
import type { JobPayload } from "../runtime/job_manifest.ts";
import { JOB_KINDS } from "../runtime/job_kinds.ts";
import { jsonChecks } from "../util/json_checks.ts";
import { type BootAttestation, parseBootAttestation } from "./boot_attestation.ts";

/** The protocol id of the node-info exchange. */
export const INFO_PROTOCOL = "/phase/info/1.0.0";

/** The largest info message accepted, in bytes. */
export const MAX_INFO_BYTES = 8 * 1024;

/** The largest info request accepted, in bytes (today's request is empty). */
export const MAX_REQUEST_BYTES = 1024;

/** Limits a node enforces on WASM jobs it accepts. */
export interface WasmCapability {
  /** Largest linear memory a job may use, in bytes. */
  max_memory_bytes: number;
  /** Longest wall-clock time a job may run, in milliseconds. */
  max_duration_ms: number;
}

/** The capabilities a node offers: the limits of each job kind it runs, by kind name. */
export type NodeCapabilities = { [K in JobPayload["kind"]]?: WasmCapability };

/** What a node says about itself over {@linkcode INFO_PROTOCOL}. */
export interface NodeInfo {
  /** The node's PeerId; an asker checks it equals the peer it asked. */
  peer_id: string;
  /** The node's architecture, such as `x86_64`. */
  arch: string;
  /** The base URL of the node's boot-artifact server, when it serves one. */
  http_url?: string;
  /** The boot channel it serves, when it serves one. */
  channel?: string;
  /** The `sequence` of the boot manifest it serves. */
  manifest_sequence?: number;
  /** The capabilities it offers, with their limits. */
  capabilities: NodeCapabilities;
  /**
   * The node's signed statement of how it booted (`start --boot-provenance`), when it has one.
   * Parsing checks its shape only: verify it with `verifyBootAttestation` against the PeerId.
   */
  boot_attestation?: BootAttestation;
}

const _NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const _PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/;

/**
 * Encode an info message, refusing one over {@linkcode MAX_INFO_BYTES}.
 *
 * @throws {RangeError} If the encoded message is too large.
 *
 * @example
 * ```ts
 * import { encodeNodeInfo, parseNodeInfo } from "./node_info.ts";
 * import assert from "node:assert/strict";
 *
 * const info = { peer_id: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq", arch: "x86_64",
 *   capabilities: {} };
 * assert.deepEqual(parseNodeInfo(encodeNodeInfo(info)), info);
 * ```
 */
export function encodeNodeInfo(info: NodeInfo): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(info));
  if (bytes.length > MAX_INFO_BYTES) {
    throw new RangeError(
      `Cannot send node info: ${bytes.length} bytes exceeds the ${MAX_INFO_BYTES} byte cap`,
    );
  }
  return bytes;
}

/**
 * Parse and validate an info message. Unknown fields are dropped; known ones must have the
 * right type and range.
 *
 * @throws {RangeError} If the message exceeds {@linkcode MAX_INFO_BYTES} or a number is out of range.
 * @throws {SyntaxError} If it is not UTF-8 JSON.
 * @throws {TypeError} If a field has the wrong shape.
 *
 * @example
 * ```ts
 * import { parseNodeInfo } from "./node_info.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseNodeInfo(new TextEncoder().encode("{not json")), SyntaxError);
 * assert.throws(() => parseNodeInfo(new TextEncoder().encode('{"peer_id":7}')), TypeError);
 * ```
 */
export function parseNodeInfo(bytes: Uint8Array): NodeInfo {
  if (bytes.length > MAX_INFO_BYTES) {
    throw new RangeError(
      `Cannot accept node info: ${bytes.length} bytes exceeds the ${MAX_INFO_BYTES} byte cap`,
    );
  }
  let value: unknown;
  try {
    value = parseStrictJson(bytes, {
      what: "node info",
      maxBytes: MAX_INFO_BYTES,
      numbers: "finite",
    });
  } catch (cause) {
    throw new SyntaxError((cause as Error).message, { cause });
  }
  const obj = _check.object(value, "node info");
  const info: NodeInfo = {
    peer_id: _check.match(obj.peer_id, _PEER_ID, "peer_id"),
    arch: _check.match(obj.arch, _NAME, "arch"),
    capabilities: {},
  };
  if (obj.http_url !== undefined) info.http_url = _httpUrl(obj.http_url);
  if (obj.channel !== undefined) info.channel = _check.match(obj.channel, _NAME, "channel");
  if (obj.manifest_sequence !== undefined) {
    info.manifest_sequence = _check.count(obj.manifest_sequence, "manifest_sequence");
  }
  if (obj.boot_attestation !== undefined) {
    info.boot_attestation = parseBootAttestation(obj.boot_attestation);
  }
  const caps = _check.object(obj.capabilities, "capabilities");
  // One entry per job kind the node runs; capabilities of kinds unknown here are dropped.
  for (const name of Object.keys(JOB_KINDS) as (keyof NodeInfo["capabilities"])[]) {
    if (caps[name] === undefined) continue;
    const limits = _check.object(caps[name], `capabilities.${name}`);
    info.capabilities[name] = {
      max_memory_bytes: _check.count(
        limits.max_memory_bytes,
        `capabilities.${name}.max_memory_bytes`,
      ),
      max_duration_ms: _check.count(limits.max_duration_ms, `capabilities.${name}.max_duration_ms`),
    };
  }
  return info;
}

/** The part of a libp2p `Stream` the info protocol uses. */
export interface MessageStreamLike {
  /** True once the remote closed its writing side and every byte was delivered. */
  readonly readableEnded: boolean;
  /** `open`, `closing`, `closed`, `aborted` or `reset`. */
  readonly status?: string;
  /** Queue bytes to send. */
  send(data: Uint8Array): boolean;
  /** Close the writing side once queued bytes are sent. */
  close(options?: { signal?: AbortSignal }): Promise<void>;
  /** Reset the stream. */
  abort(error: Error): void;
  /** `message` (data), `end` (no more data) and `close` events. */
  addEventListener(type: string, listener: (event: Event) => void): void;
  /** Remove a listener. */
  removeEventListener(type: string, listener: (event: Event) => void): void;
}

/**
 * Read everything a stream delivers until the remote closes its writing side, refusing more
 * than `maxBytes`; rejects when `signal` aborts or the stream closes with an error. Unlike
 * iterating a libp2p stream, this also sees an end that happened before it was called.
 *
 * @throws {RangeError} As soon as the message grows past `maxBytes`.
 *
 * @example
 * ```ts
 * import { readStreamMessage } from "./node_info.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = await streamPair();
 * a.send(new Uint8Array([1, 2, 3]));
 * await a.close();
 * assert.deepEqual(await readStreamMessage(b, { maxBytes: 3 }), new Uint8Array([1, 2, 3]));
 * await b.close();
 * ```
 */
export function readStreamMessage(
  stream: MessageStreamLike,
  options: { maxBytes: number; signal?: AbortSignal },
): Promise<Uint8Array> {
  const { maxBytes, signal } = options;
  return new Promise<Uint8Array>((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    const cleanup = () => {
      stream.removeEventListener("message", onMessage);
      stream.removeEventListener("end", onEnd);
      stream.removeEventListener("close", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (error: unknown) => {
      cleanup();
      reject(error);
    };
    const onMessage = (event: Event) => {
      const data = (event as Event & { data: Uint8Array | { subarray(): Uint8Array } }).data;
      const chunk = data instanceof Uint8Array ? data : data.subarray();
      size += chunk.length;
      if (size > maxBytes) {
        const error = new RangeError(`Cannot read message: more than the ${maxBytes} byte cap`);
        fail(error);
        return stream.abort(error);
      }
      parts.push(chunk);
    };
    const onEnd = () => {
      if (stream.status === "reset" || stream.status === "aborted") {
        return fail(new Error(`Cannot read message: the stream was ${stream.status}`));
      }
      cleanup();
      resolve(concatBytes(parts));
    };
    const onClose = (event: Event) => {
      const error = (event as Event & { error?: Error }).error;
      if (error) fail(error);
      else {queueMicrotask(() =>
          stream.readableEnded ? onEnd() : fail(new Error("Stream closed early"))
        );}
    };
    const onAbort = () => {
      const reason = signal!.reason;
      fail(reason);
      stream.abort(reason instanceof Error ? reason : new Error(String(reason)));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    stream.addEventListener("message", onMessage);
    stream.addEventListener("end", onEnd);
    stream.addEventListener("close", onClose);
    // The end may have passed already, with data still buffered: adding the message listener
    // above makes the stream deliver the buffer in a microtask, then emit `end` if not yet done.
    if (stream.readableEnded) queueMicrotask(onEnd);
  });
}

/**
 * Answer one info request on a stream: read the (empty, capped) request to its end, send the
 * info, close.
 *
 * @example
 * ```ts
 * import { requestInfo, serveInfo } from "./node_info.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [asker, node] = await streamPair();
 * const info = { peer_id: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq", arch: "x86_64",
 *   capabilities: {} };
 * const [got] = await Promise.all([requestInfo(asker), serveInfo(node, info)]);
 * assert.deepEqual(got, info);
 * ```
 */
export async function serveInfo(
  stream: MessageStreamLike,
  info: NodeInfo,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const { signal } = options;
  try {
    await readStreamMessage(stream, { maxBytes: MAX_REQUEST_BYTES, ...(signal ? { signal } : {}) });
    stream.send(encodeNodeInfo(info));
    await stream.close(signal ? { signal } : {});
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

/**
 * Ask for info on a fresh stream: close the writing side (the request is empty), then read and
 * validate the one answer.
 *
 * @throws {RangeError} If the answer is over {@linkcode MAX_INFO_BYTES}.
 * @throws {SyntaxError} If it is not JSON.
 * @throws {TypeError} If a field is malformed.
 *
 * @example
 * ```ts
 * import { requestInfo } from "./node_info.ts";
 * import { streamPair } from "@libp2p/utils";
 * import assert from "node:assert/strict";
 *
 * const [asker, evil] = await streamPair();
 * evil.send(new TextEncoder().encode("{oops"));
 * await evil.close();
 * await assert.rejects(requestInfo(asker), SyntaxError);
 * ```
 */
export async function requestInfo(
  stream: MessageStreamLike,
  options: { signal?: AbortSignal } = {},
): Promise<NodeInfo> {
  const { signal } = options;
  try {
    const reading = readStreamMessage(stream, {
      maxBytes: MAX_INFO_BYTES,
      ...(signal ? { signal } : {}),
    });
    reading.catch(() => {});
    await stream.close(signal ? { signal } : {});
    return parseNodeInfo(await reading);
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}

const _check = jsonChecks("Cannot accept node info");

function _httpUrl(value: unknown): string {
  if (typeof value !== "string" || value.length > 2048) {
    throw new TypeError("Cannot accept node info: http_url must be a string of at most 2048 chars");
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`Cannot accept node info: http_url '${value}' is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`Cannot accept node info: http_url '${value}' is not http(s)`);
  }
  return value;
}
