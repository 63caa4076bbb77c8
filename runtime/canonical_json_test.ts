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

Deno.test("canonicalJson() refuses objects that are not plain data, naming the path", () => {
  class Point {
    x = 1;
  }
  const cases: [unknown, string][] = [
    [{ at: new Date(0) }, "$.at: not a plain object (Date)"],
    [{ m: new Map([["a", 1]]) }, "$.m: not a plain object (Map)"],
    [{ s: new Set([1]) }, "$.s: not a plain object (Set)"],
    [{ b: [new Uint8Array(2)] }, "$.b[0]: not a plain object (Uint8Array)"],
    [{ b: new ArrayBuffer(2) }, "$.b: not a plain object (ArrayBuffer)"],
    [{ p: new Point() }, "$.p: not a plain object (Point)"],
    [{ r: /x/ }, "$.r: not a plain object (RegExp)"],
    [{ n: Object(1) }, "$.n: not a plain object (Number)"],
    [{ s: Object("x") }, "$.s: not a plain object (String)"],
    [{ t: { toJSON: () => 1 } }, "$.t: an object with a toJSON method"],
    [{ y: { [Symbol("k")]: 1 } }, "$.y: an object with symbol keys"],
    [{ y: Symbol("v") }, "$.y: unsupported type symbol"],
    [{ f: () => 1 }, "$.f: unsupported type function"],
    [{ a: [1, undefined] }, "$.a[1]: undefined in an array"],
    // deno-lint-ignore no-sparse-arrays
    [{ a: [1, , 2] }, "$.a[1]: a hole in an array"],
    [{ s: "a\ud800" }, "$.s: string with a lone surrogate"],
    [{ o: { "\udc00": 1 } }, "$.o: a key with a lone surrogate"],
    [{ x: -1.5 }, "$.x: not a safe integer: -1.5"],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => canonicalJson(value), {
      name: "TypeError",
      message: `Cannot canonicalise ${message}`,
    });
  }
});

Deno.test("canonicalJson() takes null-prototype objects and well-formed surrogate pairs", () => {
  const bare = Object.create(null) as Record<string, unknown>;
  bare.b = "😀";
  bare.a = [Object.assign(Object.create(null), { z: 1 })];
  assert.equal(canonicalJson(bare), '{"a":[{"z":1}],"b":"😀"}');
  const own = JSON.parse('{"__proto__":1}');
  assert.equal(canonicalJson(own), '{"__proto__":1}');
});
