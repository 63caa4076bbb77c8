/**
 * The PHP client (`clients/php`): its PHPUnit suite, its canonical JSON against
 * `runtime/canonical_json.ts`, and the README's PHP example against two real `start` processes,
 * with the receipt checked by the PHP SDK and by the TypeScript verifier (`verify receipt`), and
 * tampered answers of a fake node refused.
 *
 * Needs `php` (with sodium and curl) and `phpunit`: `apt-get install php-cli php-curl phpunit`.
 * Without them the tests are skipped, except under CI (`CI=true`), where they fail.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, spawnLocalNode, START_FLAGS } from "./net_spawn.ts";
import { runVerifyReceipt } from "./_task.ts";
import { runVerifyReceiptFiles } from "./_verify_receipt_files.ts";
import { readApiEndpoint } from "../net/api_token.ts";
import { canonicalJson } from "../runtime/canonical_json.ts";
import { verifyReceipt } from "../runtime/receipt.ts";
import { peerPublicKey } from "../net/peer_key.ts";
import { toHex } from "../runtime/digest.ts";

const INSTALL = "apt-get install php-cli php-curl phpunit";
const CI = Deno.env.get("CI") === "true";
const HAVE_PHP = await _runs("php", ["-r", "exit(extension_loaded('sodium') ? 0 : 1);"]);
const HAVE_PHPUNIT = await _runs("phpunit", ["--version"]);
if (!CI && (!HAVE_PHP || !HAVE_PHPUNIT)) {
  console.warn(`php_client_test: skipped: php or phpunit is missing (${INSTALL})`);
}
const FLAGS = [...START_FLAGS, `--allow-run=${Deno.execPath()}`];
const HELLO = join(ROOT, "examples/hello.wasm");

/** Whether `command args` runs and exits 0. */
async function _runs(command: string, args: string[]): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return code === 0;
  } catch {
    return false;
  }
}

/** Run `php` (or `phpunit`) with `args` from the project root. */
async function php(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; command?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const { env = {}, stdin, command = "php" } = options;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      cwd: ROOT,
      env: { PLASM_HOME: "/nonexistent", ...env },
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (cause) {
    throw new Error(`Cannot run ${command}: ${INSTALL}`, { cause });
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/** The PHP block of README.md's "Clients" section. */
async function readmeSnippet(): Promise<string> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const section = readme.split(/^## /m).find((s) => s.startsWith("Clients\n"));
  assert.ok(section, "README.md has a Clients section");
  const block = /```php\n([\s\S]*?)```/.exec(section);
  assert.ok(block, "the Clients section has a php block");
  return block[1]!;
}

const ignore = !CI && (!HAVE_PHP || !HAVE_PHPUNIT);

/** A `200` answer of `GET /jobs/:id/result`, as far as the tampering below needs it. */
type ResultBody = Record<string, unknown> & {
  receipt: Record<string, unknown> & { signature: string };
  workers: Record<string, unknown>[];
};

Deno.test({
  name: "PHP client: its PHPUnit suite passes (receipt vector, tampered copies, PeerIds, options)",
  ignore,
  async fn() {
    const run = await php(["-c", "clients/php/phpunit.xml.dist"], { command: "phpunit" });
    assert.equal(run.code, 0, `phpunit failed:\n${run.out}${run.err}`);
    assert.match(run.out, /^OK \(\d+ tests, \d+ assertions\)$/m, run.out);
  },
});

Deno.test({
  name: "PHP client: its canonical JSON equals runtime/canonical_json.ts, byte for byte",
  ignore,
  async fn() {
    // Fixed tricky values, then random ones from a seeded generator.
    const values: unknown[] = [
      { b: [2, 1], a: { d: null, c: "x" } },
      { "\uFF21": 1, "\u{1F600}": 2, a: 3, B: 4, "\uE000": 5, "10": 6, "9": 7, "": 8 },
      ['\b\f\n\r\t\0\x1f\x7f\u2028\u2029/\\"é😀', -0, 9007199254740991, -9007199254740991],
      { nested: [{ z: [], y: {} }, [[true, false, null]]] },
    ];
    let seed = 0x2545f491;
    const random = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const ranges = [[0, 0x40], [0x20, 0x7f], [0x80, 0x800], [0xe000, 0x10000], [0x10000, 0x10ffff]];
    const text = () => {
      let s = "";
      for (let i = random(8); i > 0; i--) {
        const [lo, hi] = ranges[random(ranges.length)]!;
        s += String.fromCodePoint(lo! + random(hi! - lo!));
      }
      return s;
    };
    const value = (depth: number): unknown => {
      switch (depth > 3 ? random(4) : random(6)) {
        case 0:
          return text();
        case 1:
          return random(2 ** 31) - 2 ** 30;
        case 2:
          return [null, true, false][random(3)];
        case 3:
          return random(2) ? 2 ** 53 - 1 - random(1000) : text();
        case 4:
          return Array.from({ length: random(4) }, () => value(depth + 1));
        default:
          return Object.fromEntries(
            // PHP objects cannot have a property name starting with NUL: such JSON is refused.
            Array.from({ length: random(5) }, () => [text().replace(/^\0/, "x"), value(depth + 1)]),
          );
      }
    };
    for (let i = 0; i < 300; i++) values.push(value(0));
    const script = `require 'clients/php/autoload.php';
foreach (json_decode(stream_get_contents(STDIN), false, 512, JSON_THROW_ON_ERROR) as $v) {
  echo base64_encode(Plasm\\CanonicalJson::encode($v)), "\\n";
}`;
    const run = await php(["-r", script], { stdin: JSON.stringify(values) });
    assert.equal(run.code, 0, run.err);
    const lines = run.out.trimEnd().split("\n");
    assert.equal(lines.length, values.length);
    values.forEach((v, i) => {
      const got = new TextDecoder().decode(Uint8Array.fromBase64(lines[i]!));
      assert.equal(got, canonicalJson(v), `value ${i}: ${JSON.stringify(v)}`);
    });
  },
});

Deno.test({
  name:
    "PHP client: the README example runs a job on a real peer; its receipt verifies in PHP and TypeScript",
  ignore,
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "plasm-php-" });
    const spawn = (dir: string, args: string[]) => spawnLocalNode(dir, args, { flags: FLAGS });
    // A requester that runs no jobs itself, and a worker: the job crosses the network.
    await using b = await spawn(`${root}/b`, []);
    await using a = await spawn(`${root}/a`, ["--no-worker", "--bootstrap", b.multiaddrs[0]!]);
    const env = { PLASM_HOME: `${root}/a` };
    try {
      await a.waitForLog((l) => l.event === "api_listening");
      await a.waitForLog((l) => l.event === "peer_connected" && l.peer_id === b.peerId, 20_000);

      await t.step("the README's snippet prints dlroW ,olleH", async () => {
        const run = await php([], { env, stdin: await readmeSnippet() });
        assert.equal(run.err, "");
        assert.equal(run.code, 0);
        assert.equal(run.out, "dlroW ,olleH");
      });

      let jobId = "";
      for (const transport of ["curl", "streams"]) {
        await t.step(
          `over ${transport}: the receipt verifies with the SDK and with verify receipt`,
          async () => {
            // `php -n` loads no extension from the ini files: no curl, so the client uses streams.
            const args = transport === "curl" ? [] : ["-n"];
            const run = await php([...args, "clients/php/examples/hello.php"], { env });
            assert.equal(run.code, 0, run.out + run.err);
            const [output, line] = run.out.split("\n");
            assert.equal(output, "dlroW ,olleH");
            const report = JSON.parse(line!);
            assert.equal(report.transport, transport);
            assert.equal(report.worker_peer_id, b.peerId);
            assert.equal(report.worker_public_key, toHex(peerPublicKey(b.peerId)));
            assert.equal(report.exit_code, 0);
            assert.equal(report.error, null);
            jobId = report.job_id;
            // The TypeScript verifier, in process and as the CLI, pinned to the worker's PeerId.
            const input = new TextEncoder().encode("Hello, World");
            const module = await Deno.readFile(HELLO);
            await verifyReceipt(report.receipt, {
              publicKey: peerPublicKey(b.peerId),
              jobId,
              module,
              input,
              output: new TextEncoder().encode("dlroW ,olleH"),
            });
            const dir = `${root}/${transport}`;
            await Deno.mkdir(dir);
            await Deno.writeTextFile(`${dir}/receipt.json`, JSON.stringify(report.receipt));
            const verified = await runVerifyReceiptFiles(
              `${dir}/receipt.json`,
              b.peerId,
              { dir, module: HELLO, input, output: "dlroW ,olleH" },
              ["--job-id", jobId],
            );
            assert.equal(verified.code, 0, verified.out + verified.err);
            // Pinned to the requester's PeerId instead, the CLI refuses it.
            const wrong = await runVerifyReceipt(`${dir}/receipt.json`, a.peerId);
            assert.equal(wrong.code, 1, wrong.out + wrong.err);
          },
        );
      }

      await t.step("tampered answers of a node are refused with one typed error", async () => {
        const { url, token } = await readApiEndpoint(`${root}/a`);
        const response = await fetch(new URL(`jobs/${jobId}/result`, url), {
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(response.status, 200);
        const real = await response.json();
        const flip = (hex: string) => (hex[0] === "0" ? "1" : "0") + hex.slice(1);
        const cases: [string, (body: ResultBody) => unknown, string][] = [
          ["untouched", (body) => body, 'ok "dlroW ,olleH"'],
          [
            "another output",
            (body) => ({ ...body, output: btoa("dlroW ,olleh") }),
            "Plasm\\Exception\\ReceiptMismatchException: Receipt does not match: output_commitment",
          ],
          [
            "a flipped signature",
            (body) => {
              const receipt = { ...body.receipt, signature: flip(body.receipt.signature) };
              return { ...body, receipt, workers: [{ ...body.workers[0], receipt }] };
            },
            "Plasm\\Exception\\SignatureException: Cannot verify receipt: bad signature",
          ],
          [
            "another worker named",
            (body) => ({
              ...body,
              worker_peer_id: a.peerId,
              workers: [{ ...body.workers[0], peer_id: a.peerId }],
            }),
            `Plasm\\Exception\\SignatureException: Cannot verify receipt: signed for key ${
              toHex(peerPublicKey(b.peerId))
            }, expected ${toHex(peerPublicKey(a.peerId))}`,
          ],
          [
            "another module hash",
            (body) => ({ ...body, module_hash: `sha256:${"0".repeat(64)}` }),
            "Plasm\\Exception\\ReceiptMismatchException: Receipt does not match: module_hash",
          ],
          [
            "another exit code",
            (body) => ({ ...body, exit_code: 1 }),
            "Plasm\\Exception\\ReceiptMismatchException: Receipt does not match: exit_code: receipt says 0, got 1",
          ],
          [
            "a failed job",
            () => ({
              status: 409,
              error: "Cannot run job: no worker found",
              error_kind: "no_worker_found",
            }),
            `Plasm\\Exception\\JobFailedException: Job ${jobId} failed: Cannot run job: no worker found`,
          ],
          [
            "an unfinished job, without waiting",
            () => ({
              status: 202,
              job_status: "running",
              state: "waiting_for_workers",
              last_reason: "none yet",
            }),
            `Plasm\\Exception\\JobNotFinishedException: Cannot get result of job ${jobId}: it is still running (waiting_for_workers: none yet)`,
          ],
        ];
        let answer: { status: number; body: unknown } = { status: 200, body: real };
        await using server = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          (request) => {
            if (request.headers.get("authorization") !== `Bearer ${token}`) {
              return Response.json({ error: "Cannot use the API: wrong token" }, { status: 401 });
            }
            return Response.json(answer.body, { status: answer.status });
          },
        );
        const endpoint = `http://127.0.0.1:${server.addr.port}/`;
        for (const [name, change, expected] of cases) {
          const changed = change(structuredClone(real)) as Record<string, unknown>;
          const status = typeof changed.status === "number" ? changed.status : 200;
          const body = status === 200 ? changed : {
            job_id: jobId,
            status: status === 409 ? "failed" : changed.job_status,
            ...Object.fromEntries(
              Object.entries(changed).filter(([k]) => k !== "status" && k !== "job_status"),
            ),
          };
          answer = { status, body };
          const run = await php(
            [
              "clients/php/tests/e2e/result.php",
              endpoint,
              token,
              jobId,
              status === 202 ? "nowait" : "",
            ],
          );
          assert.equal(run.err, "", name);
          assert.equal(run.out.split("\n").length, 2, `${name}: one line: ${run.out}`);
          assert.ok(run.out.startsWith(expected), `${name}: ${run.out}`);
          assert.equal(run.code, name === "untouched" ? 0 : 1, name);
        }
      });
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await Deno.remove(root, { recursive: true });
    }
  },
});
