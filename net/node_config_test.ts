import assert from "node:assert/strict";
import { defaultNodeConfig, parseNodeConfig } from "./node_config.ts";

Deno.test("parseNodeConfig() overrides only the keys given", () => {
  const config = parseNodeConfig(JSON.stringify({
    mode: "private",
    bootstrap: ["/ip4/127.0.0.1/tcp/4001"],
    mdns: false,
    max_connections: 7,
    capabilities: {},
  }));
  assert.deepEqual(config, {
    ...defaultNodeConfig(),
    mode: "private",
    bootstrap: ["/ip4/127.0.0.1/tcp/4001"],
    mdns: false,
    max_connections: 7,
    capabilities: {},
  });
});

Deno.test("parseNodeConfig() rejects bad values with one-line errors", () => {
  const cases: [string, RegExp][] = [
    ["[]", /expected a JSON object/],
    ['{"mode":"lan"}', /Cannot use config mode 'lan'/],
    ['{"listen":[1]}', /expected an array of multiaddr strings/],
    ['{"mdns":"yes"}', /mdns: expected a boolean/],
    ['{"max_connections":0}', /max_connections: expected a positive integer/],
    ['{"stream_timeout_ms":1.5}', /stream_timeout_ms: expected a positive integer/],
    ['{"capabilities":{"gpu":{}}}', /only wasm is known/],
    ['{"capabilities":{"wasm":{"max_memory_bytes":1}}}', /max_duration_ms/],
    ['{"unknown":1}', /Cannot use config key 'unknown': unknown/],
  ];
  for (const [text, message] of cases) assert.throws(() => parseNodeConfig(text), message, text);
  assert.throws(() => parseNodeConfig("{"), SyntaxError);
});

Deno.test("parseNodeConfig() reads bootstrap_file, a non-empty string", () => {
  const config = parseNodeConfig('{"bootstrap_file":"/etc/plasm/bootstrap.json"}');
  assert.equal(config.bootstrap_file, "/etc/plasm/bootstrap.json");
  assert.equal(defaultNodeConfig().bootstrap_file, undefined);
  assert.throws(
    () => parseNodeConfig('{"bootstrap_file":""}'),
    /Cannot use config bootstrap_file: expected a non-empty string/,
  );
  assert.throws(() => parseNodeConfig('{"bootstrap_file":["a"]}'), /bootstrap_file/);
});
