<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\CanonicalJson;
use Plasm\Exception\InvalidPeerIdException;
use Plasm\Exception\InvalidReceiptException;
use Plasm\Exception\ReceiptMismatchException;
use Plasm\Exception\SignatureException;
use Plasm\OutputCommitment;
use Plasm\Receipt;

/** The receipt test vector (runtime/testdata/receipt_v1_vector.json) and tampered copies of it. */
final class ReceiptTest extends TestCase
{
    /** The PeerId of the vector's key (seed bytes 01..20), as js-libp2p derives it. */
    private const PEER_ID = '12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf';

    private static function vector(): \stdClass
    {
        $path = __DIR__ . '/../../../runtime/testdata/receipt_v1_vector.json';
        return json_decode((string) file_get_contents($path), false, 64, JSON_THROW_ON_ERROR);
    }

    private static function receiptJson(): string
    {
        return json_encode(self::vector()->receipt, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
    }

    public function testSignedBytesReproduceTheVectorByteForByte(): void
    {
        $receipt = Receipt::fromJson(self::receiptJson());
        $this->assertSame(self::vector()->signed_message, $receipt->signedBytes());
    }

    public function testTheVectorVerifiesAgainstItsHexKeyAndItsPeerId(): void
    {
        $vector = self::vector();
        $receipt = Receipt::fromJson(self::receiptJson());
        $this->assertTrue($receipt->verify($vector->public_key_hex));
        $this->assertTrue($receipt->verify(strtoupper($vector->public_key_hex)));
        $this->assertTrue($receipt->verify(self::PEER_ID, $vector->receipt->job_id));
        $this->assertSame($vector->receipt->job_id, $receipt->jobId);
        $this->assertSame('stop', $receipt->completion);
        $this->assertSame(0, $receipt->exitCode());
        $this->assertSame('sha256:' . str_repeat('ab', 32), $receipt->moduleHash());
        $this->assertNull($receipt->inputHash());
        $this->assertSame(12, $receipt->durationMs);
        $this->assertSame('fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0', $receipt->outputCommitment);
    }

    public function testKeyOrderAndWhitespaceOfTheJsonDoNotMatter(): void
    {
        $data = self::vector()->receipt;
        $reversed = self::reverseKeys($data);
        $json = json_encode($reversed, JSON_THROW_ON_ERROR | JSON_PRETTY_PRINT);
        $this->assertStringStartsWith("{\n    \"completed_at\"", $json);
        $this->assertTrue(Receipt::fromJson($json)->verify(self::PEER_ID));
    }

    public function testToJsonRoundTrips(): void
    {
        $receipt = Receipt::fromJson(self::receiptJson());
        $again = Receipt::fromJson($receipt->toJson());
        $this->assertSame($receipt->signedBytes(), $again->signedBytes());
        $this->assertEquals(self::vector()->receipt, json_decode($receipt->toJson(true)));
        $this->assertTrue($again->verify(self::PEER_ID));
    }

    /** @return iterable<string, array{0: string}> every signed leaf of the vector */
    public static function signedLeaves(): iterable
    {
        $paths = [];
        self::leaves(self::vector()->receipt, '', $paths);
        foreach ($paths as $path) {
            if (in_array($path, ['schema_version', 'result.resumption', 'worker_pubkey', 'signature'], true)) {
                continue; // their shape is fixed (checked by fromJson) or they are not signed
            }
            yield $path => [$path];
        }
    }

    /** @dataProvider signedLeaves */
    public function testATamperedSignedFieldFailsTheSignature(string $path): void
    {
        $data = self::vector()->receipt;
        $before = CanonicalJson::encode($data);
        self::mutate($data, explode('.', $path));
        $this->assertNotSame($before, CanonicalJson::encode($data), "{$path} must change");
        $receipt = Receipt::fromData($data);
        $this->expectException(SignatureException::class);
        $this->expectExceptionMessage('Cannot verify receipt: bad signature');
        $receipt->verify(self::PEER_ID);
    }

    public function testAddedOrRemovedExtraFieldsFailTheSignature(): void
    {
        foreach (['add', 'remove'] as $change) {
            $data = self::vector()->receipt;
            if ($change === 'add') {
                $data->result->metrics->extra->input_hash = 'sha256:' . str_repeat('00', 32);
            } else {
                unset($data->result->metrics->extra->exit_code);
            }
            $e = $this->thrown(SignatureException::class, fn () => Receipt::fromData($data)->verify(self::PEER_ID), $change);
            $this->assertSame('Cannot verify receipt: bad signature', $e->getMessage());
        }
    }

    public function testEveryBitOfTheSignatureMatters(): void
    {
        $signature = hex2bin(self::vector()->receipt->signature);
        foreach ([0, 31, 32, 63] as $byte) {
            foreach ([0, 7] as $bit) {
                $data = self::vector()->receipt;
                $flipped = $signature;
                $flipped[$byte] = chr(ord($flipped[$byte]) ^ (1 << $bit));
                $data->signature = bin2hex($flipped);
                $e = $this->thrown(
                    SignatureException::class,
                    fn () => Receipt::fromData($data)->verify(self::PEER_ID),
                    "signature byte {$byte} bit {$bit}",
                );
                $this->assertStringStartsWith('Cannot verify receipt', $e->getMessage());
            }
        }
    }

    public function testAnotherPinnedKeyOrAnotherNamedKeyIsRefused(): void
    {
        $other = bin2hex(sodium_crypto_sign_publickey(sodium_crypto_sign_seed_keypair(str_repeat("\x07", 32))));
        $receipt = Receipt::fromJson(self::receiptJson());
        $e = $this->thrown(SignatureException::class, fn () => $receipt->verify($other), 'another key');
        $this->assertSame(
            'Cannot verify receipt: signed for key ' . self::vector()->public_key_hex . ", expected {$other}",
            $e->getMessage(),
        );
        // A receipt that names the pinned key but was signed by another one.
        $data = self::vector()->receipt;
        $data->worker_pubkey = $other;
        $this->expectException(SignatureException::class);
        Receipt::fromData($data)->verify($other);
    }

    public function testAnotherJobIdIsAMismatch(): void
    {
        $this->expectException(ReceiptMismatchException::class);
        $this->expectExceptionMessage('Receipt does not match: job_id: receipt says ' . str_repeat('11', 32));
        Receipt::fromJson(self::receiptJson())->verify(self::PEER_ID, str_repeat('11', 32));
    }

    public function testAMalformedPinnedKeyIsRefused(): void
    {
        $this->expectException(InvalidPeerIdException::class);
        Receipt::fromJson(self::receiptJson())->verify('not a key');
    }

    /** @return iterable<string, array{0: callable(\stdClass): void, 1: string}> */
    public static function malformed(): iterable
    {
        yield 'schema 2' => [fn ($r) => $r->schema_version = 2, 'unsupported schema_version 2'];
        yield 'job id upper' => [fn ($r) => $r->job_id = strtoupper($r->job_id), 'job_id is not 32 bytes of lowercase hex'];
        yield 'short signature' => [fn ($r) => $r->signature = substr($r->signature, 2), 'signature is not 64 bytes'];
        yield 'local time' => [fn ($r) => $r->completed_at = '2026-11-24T19:00:00+01:00', 'completed_at is not an RFC 3339'];
        yield 'byte 256' => [fn ($r) => $r->result->output_commitment[0] = 256, 'result.output_commitment is not 32 byte values'];
        yield 'float' => [fn ($r) => $r->result->metrics->total_duration_ms = 1.5, 'result.metrics.total_duration_ms is not an integer'];
        yield 'extra number' => [fn ($r) => $r->result->metrics->extra->exit_code = 0, 'result.metrics.extra.exit_code is not a string'];
        yield 'completion' => [fn ($r) => $r->result->completion = 'done', 'result.completion is not stop|length|cancelled|error'];
        yield 'resumption' => [fn ($r) => $r->result->resumption = 1, 'result.resumption is not null'];
        yield 'no result' => [fn ($r) => $r->result = [], 'result is not an object'];
    }

    /** @dataProvider malformed */
    public function testAMalformedReceiptIsRefusedWithOneLine(callable $change, string $message): void
    {
        $data = self::vector()->receipt;
        $change($data);
        $this->expectException(InvalidReceiptException::class);
        $this->expectExceptionMessage("Cannot read receipt: {$message}");
        Receipt::fromData($data);
    }

    public function testNotJsonIsRefused(): void
    {
        $this->expectException(InvalidReceiptException::class);
        $this->expectExceptionMessageMatches('/^Cannot read receipt: not JSON/');
        Receipt::fromJson('{"schema_version":');
    }

    public function testVerifyOutputChecksTheCommitmentAndTheHashes(): void
    {
        // A receipt signed here with the vector's key, for real output, module and input.
        [$receipt] = self::signed('dlroW ,olleH', 'module bytes', 'Hello, World');
        $this->assertTrue($receipt->verify(self::PEER_ID));
        $this->assertTrue($receipt->verifyOutput('dlroW ,olleH'));
        $this->assertTrue($receipt->verifyOutput('dlroW ,olleH', 'module bytes', 'Hello, World'));
        $cases = [
            'output_commitment' => ['dlroW ,olleh', null, null],
            'module_hash' => ['dlroW ,olleH', 'module bytez', null],
            'input_hash' => ['dlroW ,olleH', null, 'Hello, World!'],
        ];
        foreach ($cases as $field => [$output, $module, $input]) {
            $e = $this->thrown(
                ReceiptMismatchException::class,
                fn () => $receipt->verifyOutput($output, $module, $input),
                $field,
            );
            $this->assertSame($field, $e->field);
            $this->assertStringStartsWith("Receipt does not match: {$field}: receipt says ", $e->getMessage());
        }
    }

    public function testVerifyOutputChecksTheChunkCount(): void
    {
        $output = str_repeat('x', OutputCommitment::CHUNK_BYTES + 1);
        [$receipt] = self::signed($output, 'm', 'i', 1);
        $e = $this->thrown(ReceiptMismatchException::class, fn () => $receipt->verifyOutput($output), 'a wrong chunk count');
        $this->assertSame('Receipt does not match: output_chunk_count: receipt says 1, got 2', $e->getMessage());
    }

    /**
     * The exception of class `$class` that `$call` throws (any other propagates); the test fails,
     * naming `$case`, when the call returns instead.
     *
     * @template T of \Throwable
     * @param class-string<T> $class
     * @return T
     */
    private function thrown(string $class, callable $call, string $case): \Throwable
    {
        try {
            $call();
        } catch (\Throwable $e) {
            if ($e instanceof $class) {
                return $e;
            }
            throw $e;
        }
        $this->fail("{$case}: verified");
    }

    /**
     * A receipt signed with the vector's secret key.
     *
     * @return array{0: Receipt}
     */
    private static function signed(string $output, string $module, string $input, ?int $chunks = null): array
    {
        $data = self::vector()->receipt;
        $commitment = OutputCommitment::ofStdout($output);
        $data->result->output_commitment = array_map('ord', str_split($commitment));
        $data->result->output_chunk_count = $chunks ?? count(OutputCommitment::stdoutChunks($output));
        $data->result->metrics->extra->module_hash = 'sha256:' . hash('sha256', $module);
        $data->result->metrics->extra->input_hash = 'sha256:' . hash('sha256', $input);
        $keys = sodium_crypto_sign_seed_keypair(hex2bin(self::vector()->secret_key_hex));
        $unsigned = Receipt::fromData($data);
        $data->signature = bin2hex(sodium_crypto_sign_detached($unsigned->signedBytes(), sodium_crypto_sign_secretkey($keys)));
        return [Receipt::fromData($data)];
    }

    /** @param list<string> $paths */
    private static function leaves(mixed $value, string $path, array &$paths): void
    {
        if ($value instanceof \stdClass || is_array($value)) {
            foreach ((array) $value as $key => $item) {
                self::leaves($item, $path === '' ? (string) $key : "{$path}.{$key}", $paths);
            }
            return;
        }
        $paths[] = $path;
    }

    /**
     * Change the leaf at `$path` so that the receipt keeps its shape: flip the low bit of an
     * integer, of a hex digit's value or of a decimal digit, or swap the completion.
     *
     * @param list<string> $path
     */
    private static function mutate(mixed &$node, array $path): void
    {
        $key = array_shift($path);
        if ($node instanceof \stdClass) {
            $child = &$node->{$key};
        } else {
            $child = &$node[(int) $key];
        }
        if ($path !== []) {
            self::mutate($child, $path);
            return;
        }
        if (is_int($child)) {
            $child ^= 1;
        } elseif ($child === 'stop') {
            $child = 'error';
        } elseif (is_string($child)) {
            $last = strlen($child) - 1;
            while (!ctype_xdigit($child[$last]) || ctype_upper($child[$last])) {
                $last--;
            }
            $digit = $child[$last];
            $child[$last] = ctype_digit($digit)
                ? (string) ((int) $digit ^ 1)
                : dechex(hexdec($digit) ^ 1);
        }
    }

    private static function reverseKeys(mixed $value): mixed
    {
        if ($value instanceof \stdClass) {
            $out = new \stdClass();
            foreach (array_reverse((array) $value, true) as $key => $item) {
                $out->{$key} = self::reverseKeys($item);
            }
            return $out;
        }
        return is_array($value) ? array_map([self::class, 'reverseKeys'], $value) : $value;
    }
}
