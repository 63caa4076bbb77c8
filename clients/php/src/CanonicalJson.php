<?php

declare(strict_types=1);

namespace Plasm;

/**
 * Canonical JSON as Phase signs it, byte for byte the same as the TypeScript
 * `runtime/canonical_json.ts`: object keys sorted recursively by UTF-16 code units (as
 * JavaScript's `sort()` does), compact, integers only, strings escaped as `JSON.stringify`
 * writes them (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`,
 * everything else, `/` and U+2028 included, as literal UTF-8).
 *
 * Objects are `stdClass` (as `json_decode($text, false)` gives them) or non-list arrays; lists
 * are list arrays. Numbers must be integers within ±(2^53-1); an integral float such as the `1.0`
 * or `1e2` of a JSON text counts as that integer, as in JavaScript.
 *
 * ```php
 * CanonicalJson::encode(json_decode('{"b":[2,1],"a":{"d":null,"c":"x"}}'));
 * // {"a":{"c":"x","d":null},"b":[2,1]}
 * ```
 */
final class CanonicalJson
{
    private const MAX_SAFE_INTEGER = 9007199254740991;

    private const ESCAPES = [
        '"' => '\\"',
        '\\' => '\\\\',
        "\x08" => '\\b',
        "\x0c" => '\\f',
        "\n" => '\\n',
        "\r" => '\\r',
        "\t" => '\\t',
    ];

    /**
     * Serialise a value as canonical JSON.
     *
     * @throws \InvalidArgumentException If the value holds a float that is not a safe integer,
     *   a string that is not UTF-8, or another type (resource, object other than stdClass).
     */
    public static function encode(mixed $value): string
    {
        return self::encodeAt($value, '$');
    }

    private static function encodeAt(mixed $value, string $path): string
    {
        if ($value === null) {
            return 'null';
        }
        if (is_bool($value)) {
            return $value ? 'true' : 'false';
        }
        if (is_int($value)) {
            if ($value > self::MAX_SAFE_INTEGER || $value < -self::MAX_SAFE_INTEGER) {
                throw new \InvalidArgumentException("Cannot canonicalise {$path}: not a safe integer: {$value}");
            }
            return (string) $value;
        }
        if (is_float($value)) {
            if (!is_finite($value) || floor($value) !== $value || abs($value) > self::MAX_SAFE_INTEGER) {
                throw new \InvalidArgumentException("Cannot canonicalise {$path}: not a safe integer: " . var_export($value, true));
            }
            return (string) (int) $value;
        }
        if (is_string($value)) {
            return self::string($value, $path);
        }
        if (is_array($value) && array_is_list($value)) {
            $items = [];
            foreach ($value as $i => $item) {
                $items[] = self::encodeAt($item, "{$path}[{$i}]");
            }
            return '[' . implode(',', $items) . ']';
        }
        if ($value instanceof \stdClass || is_array($value)) {
            $members = [];
            foreach ((array) $value as $key => $item) {
                $members[(string) $key] = $item;
            }
            $keys = array_keys($members);
            $sortKeys = [];
            foreach ($keys as $key) {
                $key = (string) $key;
                $sortKeys[$key] = self::utf16($key, $path);
            }
            usort($keys, static fn ($a, $b): int => strcmp($sortKeys[(string) $a], $sortKeys[(string) $b]));
            $parts = [];
            foreach ($keys as $key) {
                $key = (string) $key;
                $parts[] = self::string($key, $path) . ':' . self::encodeAt($members[$key], "{$path}.{$key}");
            }
            return '{' . implode(',', $parts) . '}';
        }
        throw new \InvalidArgumentException("Cannot canonicalise {$path}: unsupported type " . get_debug_type($value));
    }

    /** A string as `JSON.stringify` writes it. */
    private static function string(string $text, string $path): string
    {
        if (preg_match('//u', $text) !== 1) {
            throw new \InvalidArgumentException("Cannot canonicalise {$path}: a string is not UTF-8");
        }
        return '"' . preg_replace_callback(
            '/[\x00-\x1f"\\\\]/',
            static fn (array $m): string => self::ESCAPES[$m[0]] ?? sprintf('\\u%04x', ord($m[0])),
            $text,
        ) . '"';
    }

    /** The UTF-16BE bytes of a UTF-8 string: comparing them with strcmp orders by UTF-16 code units. */
    private static function utf16(string $text, string $path): string
    {
        if (preg_match('//u', $text) !== 1) {
            throw new \InvalidArgumentException("Cannot canonicalise {$path}: a key is not UTF-8");
        }
        $out = '';
        $length = strlen($text);
        for ($i = 0; $i < $length;) {
            $byte = ord($text[$i]);
            if ($byte < 0x80) {
                $cp = $byte;
                $i += 1;
            } elseif ($byte < 0xe0) {
                $cp = (($byte & 0x1f) << 6) | (ord($text[$i + 1]) & 0x3f);
                $i += 2;
            } elseif ($byte < 0xf0) {
                $cp = (($byte & 0x0f) << 12) | ((ord($text[$i + 1]) & 0x3f) << 6) | (ord($text[$i + 2]) & 0x3f);
                $i += 3;
            } else {
                $cp = (($byte & 0x07) << 18) | ((ord($text[$i + 1]) & 0x3f) << 12)
                    | ((ord($text[$i + 2]) & 0x3f) << 6) | (ord($text[$i + 3]) & 0x3f);
                $i += 4;
            }
            if ($cp >= 0x10000) {
                $cp -= 0x10000;
                $out .= pack('nn', 0xd800 | ($cp >> 10), 0xdc00 | ($cp & 0x3ff));
            } else {
                $out .= pack('n', $cp);
            }
        }
        return $out;
    }
}
