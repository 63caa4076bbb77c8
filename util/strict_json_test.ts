import assert from "node:assert/strict";
import { parseStrictJson, StrictJsonError } from "./strict_json.ts";

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = [
  "a",
  "Z",
  "0",
  " ",
  '"',
  "\\",
  "/",
  "\n",
  "\u0001",
  "é",
  "€",
  "😀",
  "\u2028",
  "__proto__",
  "constructor",
];

function randomString(rand: () => number): string {
  let out = "";
  const n = Math.floor(rand() * 6);
  for (let i = 0; i < n; i++) out += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return out;
}

function randomValue(rand: () => number, depth: number, floats: boolean): unknown {
  const pick = Math.floor(rand() * (depth > 4 ? 5 : 7));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2: {
      if (floats && rand() < 0.5) return (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20);
      const big = rand() < 0.2;
      return Math.floor((rand() - 0.5) * (big ? Number.MAX_SAFE_INTEGER : 2000));
    }
    case 3:
    case 4:
      return randomString(rand);
    case 5: {
      const n = Math.floor(rand() * 4);
      return Array.from({ length: n }, () => randomValue(rand, depth + 1, floats));
    }
    default: {
      const out: Record<string, unknown> = {};
      const n = Math.floor(rand() * 4);
      for (let i = 0; i < n; i++) {
        Object.defineProperty(out, randomString(rand), {
          value: randomValue(rand, depth + 1, floats),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
  }
}

Deno.test("parseStrictJson() reads random JSON.stringify output exactly as JSON.parse does", () => {
  const rand = prng(15);
  for (let n = 0; n < 3000; n++) {
    const floats = n % 2 === 1;
    const value = randomValue(rand, 0, floats);
    for (const text of [JSON.stringify(value), JSON.stringify(value, null, n % 5)]) {
      const got = parseStrictJson(text, { numbers: floats ? "finite" : "integers" });
      assert.deepEqual(got, JSON.parse(text), text);
      assert.equal(JSON.stringify(got), JSON.stringify(JSON.parse(text)), text);
    }
  }
});

Deno.test("parseStrictJson() on fuzzed mutations throws only StrictJsonError, and calls not JSON only what JSON.parse refuses", () => {
  const rand = prng(1515);
  const pieces = ['"', "\\", "{", "}", "[", "]", ",", ":", "1", ".0", "e", "-", " ", "\\ud800"];
  let accepted = 0;
  for (let n = 0; n < 6000; n++) {
    let text = JSON.stringify(randomValue(rand, 0, false));
    const edits = 1 + Math.floor(rand() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * (text.length + 1));
      const op = Math.floor(rand() * 3);
      const piece = pieces[Math.floor(rand() * pieces.length)]!;
      if (op === 0) text = text.slice(0, at) + piece + text.slice(at);
      else if (op === 1) text = text.slice(0, at) + text.slice(at + 1);
      else text = text.slice(0, at) + piece + text.slice(at + piece.length);
    }
    let loose: { ok: true; value: unknown } | { ok: false };
    try {
      loose = { ok: true, value: JSON.parse(text) };
    } catch {
      loose = { ok: false };
    }
    try {
      const value = parseStrictJson(text, { numbers: "finite" });
      accepted++;
      assert.ok(loose.ok, `accepted what JSON.parse refuses: ${text}`);
      assert.deepEqual(value, loose.value, text);
    } catch (error) {
      assert.ok(error instanceof StrictJsonError, `${text}: ${error}`);
      // Not JSON only where JSON.parse agrees; a strict rule may refuse what it takes.
      if (error.notJson) assert.ok(!loose.ok, `${text}: ${error.message}`);
      assert.ok(!error.message.includes("\n"), "one line");
    }
  }
  assert.ok(accepted > 100, `some mutations stay valid JSON (${accepted})`);
});

Deno.test("parseStrictJson() refuses a duplicate key at any depth, naming the path", () => {
  const cases: [string, string][] = [
    ['{"a":1,"a":1}', "duplicate key 'a' at top level"],
    [
      '{"result":{"completion":"error","completion":"stop"}}',
      "duplicate key 'completion' at result",
    ],
    ['{"signatures":[{"k":1},{"k":1,"k":2}]}', "duplicate key 'k' at signatures[1]"],
    ['{"artifacts":{"a b":{"hash":"x","hash":"y"}}}', "duplicate key 'hash' at artifacts['a b']"],
    ['{"a\\u0062":1,"ab":2}', "duplicate key 'ab' at top level"],
    ['{"__proto__":1,"__proto__":2}', "duplicate key '__proto__' at top level"],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseStrictJson(text, { what: "receipt" }), {
      name: "StrictJsonError",
      message: `Cannot parse receipt: ${reason}`,
    });
    assert.doesNotThrow(() => JSON.parse(text), "JSON.parse takes it");
  }
});

Deno.test("parseStrictJson() refuses non-integers, -0 and unsafe integers in signed data", () => {
  for (
    const [text, reason] of [
      ['{"n":1.0}', "non-integer number 1.0 at n"],
      ['{"n":1e3}', "non-integer number 1e3 at n"],
      ['{"n":1E+0}', "non-integer number 1E+0 at n"],
      ['{"a":[0,-0]}', "negative zero at a[1]"],
      ["9007199254740992", "integer 9007199254740992 at top level is outside the safe range"],
      ["-9007199254740992", "integer -9007199254740992 at top level is outside the safe range"],
    ]
  ) {
    assert.throws(() => parseStrictJson(text!), { message: `Cannot parse JSON: ${reason}` });
  }
  assert.equal(parseStrictJson("9007199254740991"), Number.MAX_SAFE_INTEGER);
  assert.equal(parseStrictJson("-9007199254740991"), -Number.MAX_SAFE_INTEGER);
  assert.equal(parseStrictJson("1e3", { numbers: "finite" }), 1000);
  assert.throws(() => parseStrictJson("1e400", { numbers: "finite" }), /1e400 .* out of range/);
});

Deno.test("parseStrictJson() refuses lone surrogates in strings and keys, raw or escaped", () => {
  const refused: [string, string][] = [
    ['"\\ud800"', "lone surrogate in a string at top level"],
    ['{"x":"a\\udc00b"}', "lone surrogate in a string at x"],
    ['["\\udc00\\ud800"]', "lone surrogate in a string at [0]"],
    ['{"a":{"\\ud83d":1}}', "lone surrogate in a key in a"],
    ['{"x":"\ud800"}', "lone surrogate in a string at x"],
  ];
  for (const [text, reason] of refused) {
    assert.throws(() => parseStrictJson(text), {
      name: "StrictJsonError",
      message: `Cannot parse JSON: ${reason}`,
    });
  }
  assert.equal(parseStrictJson('"\\ud83d\\ude00"'), "😀");
  assert.equal(parseStrictJson('"\ud83d\\ude00"'), "😀");
  assert.equal(parseStrictJson(new TextEncoder().encode('"😀"')), "😀");
});

Deno.test("parseStrictJson() refuses what is not JSON: BOM, trailing data, bad UTF-8, bad escapes", () => {
  const notJson: [string | Uint8Array, RegExp][] = [
    ["\ufeff{}", /starts with a byte order mark$/],
    [Uint8Array.of(0xef, 0xbb, 0xbf, 0x7b, 0x7d), /starts with a byte order mark$/],
    [Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22), /not UTF-8$/], // an encoded surrogate
    [Uint8Array.of(0x22, 0xff, 0x22), /not UTF-8$/],
    ["{} {}", /trailing data at offset 3$/],
    ["{}x", /trailing data at offset 2$/],
    ["", /unexpected end of input$/],
    ['{"a":1,}', /unexpected '}' at offset 7$/],
    ["[1,]", /unexpected '\]' at offset 3$/],
    ["01", /trailing data at offset 1$/],
    ["+1", /unexpected '\+' at offset 0$/],
    ["1.", /unexpected end of input$/],
    ['"a\tb"', /control character in a string at offset 2$/],
    ['"\\x"', /bad escape at offset 1$/],
    ['"\\u12g4"', /bad \\u escape at offset 1$/],
    ['"abc', /unterminated string$/],
    ["\u00a0{}", /unexpected U\+00A0 at offset 0$/],
    ["nul", /unexpected 'n' at offset 0$/],
    ["{'a':1}", /unexpected ''' at offset 1$/],
  ];
  for (const [input, reason] of notJson) {
    assert.throws(() => parseStrictJson(input), (error) => {
      assert.ok(error instanceof StrictJsonError);
      assert.match(error.message, /^Cannot parse JSON: /);
      assert.match(error.reason, reason);
      assert.equal(error.notJson, true, error.message);
      return true;
    });
  }
});

Deno.test("parseStrictJson() bounds nesting without recursing into it and bounds size in bytes", () => {
  const deep = "[".repeat(1_000_000);
  assert.throws(() => parseStrictJson(deep), {
    message: `Cannot parse JSON: nesting deeper than 64 at ${"[0]".repeat(64)}`,
  });
  assert.deepEqual(parseStrictJson('{"a":{"b":[]}}', { maxDepth: 3 }), { a: { b: [] } });
  assert.throws(() => parseStrictJson('{"a":{"b":[]}}', { maxDepth: 2 }), /deeper than 2 at a.b$/);
  assert.throws(() => parseStrictJson("1", { maxDepth: 1001 }), RangeError);

  assert.equal(parseStrictJson('"ééé"', { maxBytes: 8 }), "ééé");
  assert.throws(() => parseStrictJson('"éééé"', { maxBytes: 9 }), {
    message: "Cannot parse JSON: larger than 9 bytes",
  });
  assert.throws(() => parseStrictJson(new Uint8Array(10).fill(0x20), { maxBytes: 9 }), {
    message: "Cannot parse JSON: larger than 9 bytes",
  });
});

Deno.test("parseStrictJson() makes __proto__ an own property, never a prototype", () => {
  const value = parseStrictJson('{"__proto__":{"polluted":1},"constructor":2}') as Record<
    string,
    unknown
  >;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.deepEqual(Object.keys(value), ["__proto__", "constructor"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(JSON.stringify(value), '{"__proto__":{"polluted":1},"constructor":2}');
});
