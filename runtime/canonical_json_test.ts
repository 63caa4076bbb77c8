import assert from "node:assert/strict";
import { canonicalJson } from "./canonical_json.ts";

Deno.test("canonicalJson() sorts keys at every depth, including inside arrays", () => {
  assert.equal(
    canonicalJson({ z: 1, a: [{ y: true, b: null }], m: { d: 'é\n"', c: -5 } }),
    '{"a":[{"b":null,"y":true}],"m":{"c":-5,"d":"é\\n\\""},"z":1}',
  );
});

Deno.test("canonicalJson() leaves out undefined members and writes empty containers", () => {
  assert.equal(canonicalJson({ a: undefined, b: {}, c: [] }), '{"b":{},"c":[]}');
});

Deno.test("canonicalJson() sorts keys by UTF-16 code units, as JSON.stringify-based peers do", () => {
  assert.equal(canonicalJson({ b: 1, B: 2, "é": 3, a: 4 }), '{"B":2,"a":4,"b":1,"é":3}');
});

Deno.test("canonicalJson() refuses floats, non-finite numbers and unsafe integers", () => {
  for (const bad of [1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(() => canonicalJson({ x: bad }), /Cannot canonicalise \$\.x: not a safe integer/);
  }
  assert.throws(() => canonicalJson({ x: [1n] }), /\$\.x\[0\]: unsupported type bigint/);
});
