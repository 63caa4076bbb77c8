/**
 * `docs/api/openapi.yaml` against the code: the document is valid OpenAPI 3.1, its request schema
 * is what the `Client` sends and the API parses, and every answer of two real `start` processes
 * (each documented status we can provoke) validates against the schema documented for that
 * operation and status. A field added, renamed or dropped on either side fails here.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL as toFileUrl } from "node:url";
import { parse } from "yaml";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { ROOT, spawnLocalNode, START_FLAGS } from "./net_spawn.ts";
import { runScript, taskCommand } from "./_task.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { encodeSubmitRequest, SUBMIT_FIELDS } from "../net/submit_options.ts";
import { sha256TagAsync } from "../runtime/digest.ts";

const SPEC = join(ROOT, "docs/api/openapi.yaml");
const FLAGS = [...START_FLAGS, `--allow-run=${Deno.execPath()}`];
const HELLO = join(ROOT, "examples/hello.wasm");
const TRAP = join(ROOT, "runtime/testdata/trap.wasm");
/** A well-formed PeerId of a key no node here has. */
const ABSENT_PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
/** Documented answers no test here provokes: a 224 MiB body, and the node's own failures. */
const NOT_PROVOKED = [
  "POST /jobs 413",
  "POST /jobs 500",
  "GET /jobs/{jobId} 500",
  "GET /jobs/{jobId}/result 500",
];

type Json = Record<string, unknown>;
type Operation = { responses: Record<string, Json>; requestBody?: Json };

/** The document, and a checker of bodies against the schemas it gives for each answer. */
async function loadSpec() {
  const doc = parse(await Deno.readTextFile(SPEC)) as {
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Json; responses: Record<string, Json> };
  };
  // The component schemas as one JSON Schema 2020-12 document, references rewritten to it.
  const rewrite = (value: unknown): unknown =>
    JSON.parse(
      JSON.stringify(value).replaceAll('"#/components/schemas/', '"plasm-api#/$defs/'),
    );
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  (addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
  ajv.addSchema({ $id: "plasm-api", $defs: rewrite(doc.components.schemas) as Json });
  const schemaOf = (response: Json): Json => {
    const ref = response.$ref as string | undefined;
    const resolved = ref ? doc.components.responses[ref.split("/").at(-1)!]! : response;
    const content = resolved.content as Record<string, { schema: Json }> | undefined;
    assert.ok(content?.["application/json"], "every answer is documented as JSON");
    return rewrite(content["application/json"].schema) as Json;
  };
  const seen = new Set<string>();
  return {
    doc,
    seen,
    /** Assert that `body` is what the document says `method path` answers with `status`. */
    check(method: string, path: string, status: number, body: unknown): void {
      const operation = doc.paths[path]?.[method.toLowerCase()];
      assert.ok(operation, `${method} ${path} is documented`);
      const response = operation.responses[String(status)];
      assert.ok(response, `${method} ${path} documents status ${status}: ${JSON.stringify(body)}`);
      const validate = ajv.compile(schemaOf(response));
      assert.ok(
        validate(body),
        `${method} ${path} ${status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
      );
      seen.add(`${method} ${path} ${status}`);
    },
    /** Assert that `body` is a valid `POST /jobs` request body. */
    checkRequest(body: unknown): void {
      const request = doc.paths["/jobs"]!.post!.requestBody as Json;
      const validate = ajv.compile(schemaOf(request));
      assert.ok(validate(body), `request: ${ajv.errorsText(validate.errors)}`);
    },
    /** Whether `body` is valid for that answer, without asserting. */
    valid(method: string, path: string, status: number, body: unknown): boolean {
      const response = doc.paths[path]![method.toLowerCase()]!.responses[String(status)]!;
      return ajv.compile(schemaOf(response))(body) as boolean;
    },
  };
}

Deno.test("docs/api/openapi.yaml is a valid OpenAPI 3.1 document whose schemas compile strictly", async () => {
  const validator = new Validator();
  const result = await validator.validate(parse(await Deno.readTextFile(SPEC)));
  assert.equal(validator.version, "3.1");
  assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
  // Strict Ajv refuses unknown keywords (a typo such as `additionalProperty`) in every schema.
  const spec = await loadSpec();
  assert.deepEqual(Object.keys(spec.doc.paths), [
    "/jobs",
    "/jobs/{jobId}",
    "/jobs/{jobId}/result",
    "/status",
  ]);
});

Deno.test("the documented request body is exactly what the Client sends and the API parses", async () => {
  const spec = await loadSpec();
  const request = spec.doc.components.schemas.SubmitRequest as { properties: Json };
  assert.deepEqual(
    Object.keys(request.properties).sort(),
    ["module", ...Object.values(SUBMIT_FIELDS).map((f) => f.field)].sort(),
  );
  spec.checkRequest(encodeSubmitRequest(new Uint8Array([0, 97, 115, 109]), {
    input: new TextEncoder().encode("Hello, World"),
    cpu: 1,
    memoryBytes: 2 ** 26,
    timeoutMs: 5000,
    replicas: 2,
    worker: ABSENT_PEER,
    args: ["-v"],
    env: { GREETING: "hi" },
    maxOutputBytes: 1024,
    fuel: 10n ** 12n,
    searchTimeoutMs: 3000,
  }));
  spec.checkRequest({ module: "AA==", fuel: 7 });
  // The document refuses what the API refuses.
  assert.throws(() => spec.checkRequest({ module: "AA==", cpus: 1 }));
  assert.throws(() => spec.checkRequest({ module: "AA==", cpu: "1" }));
  assert.throws(() => spec.checkRequest({ input: "AA==" }));
});

Deno.test({
  name: "every answer of two running nodes validates against docs/api/openapi.yaml",
  async fn(t) {
    const spec = await loadSpec();
    const root = await Deno.makeTempDir({ prefix: "plasm-openapi-" });
    const spawn = (dir: string, args: string[]) => spawnLocalNode(dir, args, { flags: FLAGS });
    await using b = await spawn(`${root}/b`, []);
    await using a = await spawn(`${root}/a`, ["--bootstrap", b.multiaddrs[0]!]);
    try {
      await a.waitForLog((l) => l.event === "api_listening");
      await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === b.peerId, 20_000);
      const { url, token } = await readApiEndpoint(`${root}/a`);
      const call = async (
        method: "GET" | "POST",
        path: string,
        options: { body?: unknown; token?: string; query?: string } = {},
      ): Promise<{ status: number; json: Json }> => {
        const id = path.split("/")[2] ?? "";
        const response = await fetch(new URL(`${path.slice(1)}${options.query ?? ""}`, url), {
          method,
          headers: { authorization: `Bearer ${options.token ?? token}` },
          ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        });
        assert.equal(response.headers.get("content-type"), "application/json");
        const json = await response.json();
        spec.check(method, id ? path.replace(id, "{jobId}") : path, response.status, json);
        return { status: response.status, json };
      };
      const module = (await Deno.readFile(HELLO)).toBase64();
      const submit = async (body: Json): Promise<string> => {
        spec.checkRequest(body);
        const { status, json } = await call("POST", "/jobs", { body });
        assert.equal(status, 201, JSON.stringify(json));
        return json.job_id as string;
      };

      await t.step("401, 400 and 404 answers", async () => {
        assert.equal(
          (await call("POST", "/jobs", { body: {}, token: "x".repeat(64) })).status,
          401,
        );
        assert.equal(
          (await call("GET", `/jobs/${"ab".repeat(32)}`, { token: "wrong" })).status,
          401,
        );
        assert.equal(
          (await call("GET", `/jobs/${"ab".repeat(32)}/result`, { token: "" })).status,
          401,
        );
        assert.equal(
          (await call("POST", "/jobs", { body: { module: "AA==", cpu: "2" } })).status,
          400,
        );
        assert.equal((await call("POST", "/jobs", { body: { module, cpu: 1000 } })).status, 400);
        assert.equal((await call("GET", `/jobs/${"cd".repeat(32)}`)).status, 404);
        assert.equal((await call("GET", `/jobs/${"cd".repeat(32)}/result`)).status, 404);
      });

      await t.step("a job run by a peer: 201, its status, its result", async () => {
        const id = await submit({ module, input: btoa("Hello, World"), worker: b.peerId, cpu: 1 });
        assert.equal((await call("GET", `/jobs/${id}`)).status, 200);
        const { status, json } = await call("GET", `/jobs/${id}/result`, { query: "?wait=30000" });
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(atob(json.output as string), "dlroW ,olleH");
        assert.equal(json.worker_peer_id, b.peerId);
        assert.equal(json.error, null);
        const done = await call("GET", `/jobs/${id}`);
        assert.equal(done.json.status, "done");
        assert.equal((await call("GET", `/jobs/${id}/result`, { query: "?wait=x" })).status, 400);
      });

      await t.step(
        "a job with files run by a peer: its result carries the output tree",
        async () => {
          const { encodeFileTree, makeFileTree } = await import("../runtime/file_tree.ts");
          const data = new TextEncoder().encode("tree");
          const inputs = encodeFileTree(
            makeFileTree([{ path: "in.txt", type: "file", executable: false, data }]),
          );
          const copy = await Deno.readFile(
            new URL("../runtime/testdata/copy_file.wasm", import.meta.url),
          );
          const id = await submit({
            module: copy.toBase64(),
            inputs: inputs.toBase64(),
            worker: b.peerId,
          });
          const { status, json } = await call("GET", `/jobs/${id}/result`, {
            query: "?wait=30000",
          });
          assert.equal(status, 200, JSON.stringify(json));
          const files = Uint8Array.fromBase64(json.files as string);
          const receipt = json.receipt as {
            result: { metrics: { extra: Record<string, string> } };
          };
          assert.equal(receipt.result.metrics.extra.outputs_hash, await sha256TagAsync(files));
        },
      );

      await t.step("a job that traps: 200 with the error and a null exit code", async () => {
        const trap = (await Deno.readFile(TRAP)).toBase64();
        const id = await submit({ module: trap, worker: b.peerId, args: ["x"], env: { K: "v" } });
        const { status, json } = await call("GET", `/jobs/${id}/result`, { query: "?wait=30000" });
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(json.exit_code, null);
        assert.equal((json.error as Json).kind, "trap");
      });

      await t.step("a job no worker takes: status while waiting, 202, then 409", async () => {
        // No worker offers 256 cores: the node keeps looking until the search bound.
        const id = await submit({ module, cpu: 256, search_timeout_ms: 8000 });
        const waiting = await call("GET", `/jobs/${id}`);
        assert.notEqual(waiting.json.status, "failed");
        assert.equal((await call("GET", `/jobs/${id}/result`)).status, 202);
        const failed = await call("GET", `/jobs/${id}/result`, { query: "?wait=30000" });
        assert.equal(failed.status, 409, JSON.stringify(failed.json));
        assert.equal(failed.json.error_kind, "no_worker_found");
        assert.equal((await call("GET", `/jobs/${id}`)).json.status, "failed");
      });

      await t.step("the README's TypeScript Client example prints dlroW ,olleH", async () => {
        const readme = await Deno.readTextFile(join(ROOT, "README.md"));
        const section = readme.split(/^## /m).find((s) => s.startsWith("Clients\n"))!;
        const snippet = /```ts ignore\n([\s\S]*?)```/.exec(section)![1]!;
        const file = join(root, "client_example.ts");
        await Deno.writeTextFile(
          file,
          snippet.replace('"@phase/plasm"', JSON.stringify(toFileUrl(join(ROOT, "mod.ts")).href)),
        );
        // With the flags of the `submit` task, as a user's script would need.
        const { flags } = await taskCommand("submit");
        const config = ["--config", join(ROOT, "deno.json")];
        const run = await runScript([...flags, ...config], file, [], {
          env: { PLASM_HOME: `${root}/a` },
        });
        assert.equal(run.err, "");
        assert.equal(run.out, "dlroW ,olleH\n");
      });

      await t.step("GET /status: 200 with the peer and how it is connected, 401", async () => {
        const { status, json } = await call("GET", "/status");
        assert.equal(status, 200, JSON.stringify(json));
        const peers = json.peers as Json[];
        assert.equal(peers.find((p) => p.peer_id === b.peerId)?.connection, "direct");
        assert.equal((await call("GET", "/status", { token: "wrong" })).status, 401);
      });

      await t.step("every documented answer was seen, but those no test can provoke", () => {
        const documented = Object.entries(spec.doc.paths).flatMap(([path, operations]) =>
          Object.entries(operations).flatMap(([method, operation]) =>
            method === "parameters"
              ? []
              : Object.keys(operation.responses).map((status) =>
                `${method.toUpperCase()} ${path} ${status}`
              )
          )
        );
        const missing = documented.filter((answer) => !spec.seen.has(answer)).sort();
        assert.deepEqual(missing, [...NOT_PROVOKED].sort());
      });
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("the schemas refuse an undocumented field, so drift fails the test above", async () => {
  const spec = await loadSpec();
  const status = {
    job_id: "ab".repeat(32),
    status: "running",
    state: "executing",
    attempts: 1,
    created_at: "2026-01-01T00:00:00.000Z",
    updated_at: "2026-01-01T00:00:01.000Z",
  };
  assert.equal(spec.valid("GET", "/jobs/{jobId}", 200, status), true);
  assert.equal(spec.valid("GET", "/jobs/{jobId}", 200, { ...status, progress: 1 }), false);
  assert.equal(spec.valid("GET", "/jobs/{jobId}", 200, { ...status, state: "thinking" }), false);
  const { attempts: _, ...withoutAttempts } = status;
  assert.equal(spec.valid("GET", "/jobs/{jobId}", 200, withoutAttempts), false);
});
