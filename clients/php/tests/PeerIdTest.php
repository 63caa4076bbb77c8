<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\Exception\InvalidPeerIdException;
use Plasm\PeerId;

final class PeerIdTest extends TestCase
{
    private const KEY = '79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664';

    public function testABase58PeerIdGivesItsEd25519Key(): void
    {
        $this->assertSame(self::KEY, PeerId::publicKeyHex('12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf'));
        $this->assertSame(hex2bin(self::KEY), PeerId::publicKey('12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf'));
    }

    public function testACidPeerIdGivesTheSameKey(): void
    {
        $this->assertSame(self::KEY, PeerId::publicKeyHex('bafzaajaiaejca6nvkyxi7zsu7fahrmis5cuyxj4qd6ctvzuvx3l6by4rbowqjfte'));
    }

    /** @return iterable<string, array{0: string, 1: string}> */
    public static function bad(): iterable
    {
        yield 'nonsense' => ['nonsense', "Cannot parse PeerId 'nonsense'"];
        yield 'one char short' => ['12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqY', "Cannot parse PeerId '12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqY'"];
        yield 'hash only' => ['QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', 'Cannot use peer QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N: it has no Ed25519 key (it holds only a hash of its key)'];
        yield 'secp256k1' => ['16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY', 'Cannot use peer 16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY: it has no Ed25519 key'];
    }

    /** @dataProvider bad */
    public function testAPeerIdWithoutAnEd25519KeyIsRefused(string $peerId, string $message): void
    {
        $this->expectException(InvalidPeerIdException::class);
        $this->expectExceptionMessage($message);
        PeerId::publicKey($peerId);
    }
}
