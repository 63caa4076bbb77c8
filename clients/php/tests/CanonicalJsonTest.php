<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\CanonicalJson;

/** Canonical JSON as runtime/canonical_json.ts writes it (cross-checked in tests/php_client_test.ts). */
final class CanonicalJsonTest extends TestCase
{
    public function testKeysAreSortedRecursivelyAndTheOutputIsCompact(): void
    {
        $this->assertSame(
            '{"a":{"c":"x","d":null},"b":[2,1]}',
            CanonicalJson::encode(json_decode('{"b": [2, 1], "a": {"d": null, "c": "x"}}')),
        );
        $this->assertSame('{"a":1,"b":true}', CanonicalJson::encode(['b' => true, 'a' => 1]));
        $this->assertSame('{}', CanonicalJson::encode(new \stdClass()));
        $this->assertSame('[]', CanonicalJson::encode([]));
    }

    public function testStringsAreEscapedAsJsonStringifyDoes(): void
    {
        $this->assertSame('"a\"b\\\\c/d"', CanonicalJson::encode('a"b\\c/d'));
        $this->assertSame('"\b\f\n\r\t\u0000\u001f\u000b"', CanonicalJson::encode("\x08\x0c\n\r\t\x00\x1f\x0b"));
        // Literal UTF-8 for everything else, U+2028, U+2029 and DEL included.
        $this->assertSame("\"é\u{2028}\u{2029}\x7f😀\"", CanonicalJson::encode("é\u{2028}\u{2029}\x7f😀"));
    }

    public function testKeysSortByUtf16CodeUnitsNotByCodePoints(): void
    {
        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FF21 in UTF-16 but after
        // it in UTF-8 byte order; "B" sorts before "a" (code units, not locale).
        $value = ["\u{FF21}" => 1, "\u{1F600}" => 2, 'a' => 3, 'B' => 4, "\u{E000}" => 5, '10' => 6, '9' => 7];
        $this->assertSame(
            "{\"10\":6,\"9\":7,\"B\":4,\"a\":3,\"\u{1F600}\":2,\"\u{E000}\":5,\"\u{FF21}\":1}",
            CanonicalJson::encode($value),
        );
    }

    public function testIntegersOnly(): void
    {
        $this->assertSame('[1,100,0,-5,9007199254740991]', CanonicalJson::encode(json_decode('[1.0, 1e2, -0, -5, 9007199254740991]')));
        foreach ([1.5, 9007199254740992, NAN, INF] as $bad) {
            try {
                CanonicalJson::encode(['x' => $bad]);
                $this->fail('accepted ' . var_export($bad, true));
            } catch (\InvalidArgumentException $e) {
                $this->assertStringStartsWith('Cannot canonicalise $.x: not a safe integer', $e->getMessage());
            }
        }
    }

    public function testNonUtf8StringsAreRefused(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        CanonicalJson::encode(["\xff"]);
    }
}
