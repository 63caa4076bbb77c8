<?php

declare(strict_types=1);

namespace Plasm;

use Plasm\Exception\InvalidPeerIdException;

/**
 * The Ed25519 public key inside a libp2p PeerId: receipts bind to the worker's PeerId this way.
 * A PeerId is base58btc (`12D3KooW...`) or a CIDv1 in base32 (`bafz...`, codec `libp2p-key`)
 * of an identity multihash of the protobuf `PublicKey {Type: Ed25519, Data: 32 bytes}`.
 *
 * ```php
 * PeerId::publicKeyHex('12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf');
 * // 79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664
 * ```
 */
final class PeerId
{
    private const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
    private const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
    /** Identity multihash (0x00) of 36 bytes: protobuf key type 1 (Ed25519), 32 bytes of data. */
    private const ED25519_PREFIX = "\x00\x24\x08\x01\x12\x20";
    /** The multicodec of a CID that names a libp2p key. */
    private const LIBP2P_KEY = 0x72;

    /**
     * The raw 32-byte Ed25519 public key of a PeerId.
     *
     * @throws InvalidPeerIdException If it does not parse or holds no Ed25519 key (an RSA or
     *   secp256k1 PeerId, or a `Qm...` one that holds only a hash of its key).
     */
    public static function publicKey(string $peerId): string
    {
        $shown = strlen($peerId) > 80 ? substr($peerId, 0, 80) . '...' : $peerId;
        $multihash = null;
        if (preg_match('/^[1-9A-HJ-NP-Za-km-z]{40,60}$/', $peerId) === 1) {
            $multihash = self::base58Decode($peerId);
        } elseif (preg_match('/^b[a-z2-7]{40,100}$/', $peerId) === 1) {
            $cid = self::base32Decode(substr($peerId, 1));
            if ($cid !== null && strlen($cid) > 2 && ord($cid[0]) === 1 && ord($cid[1]) === self::LIBP2P_KEY) {
                $multihash = substr($cid, 2);
            }
        }
        if ($multihash === null || strlen($multihash) < 2) {
            throw new InvalidPeerIdException("Cannot parse PeerId '{$shown}'");
        }
        if (strlen($multihash) === 34 && str_starts_with($multihash, "\x12\x20")) {
            throw new InvalidPeerIdException("Cannot use peer {$shown}: it has no Ed25519 key (it holds only a hash of its key)");
        }
        if (ord($multihash[0]) !== 0 || ord($multihash[1]) !== strlen($multihash) - 2) {
            throw new InvalidPeerIdException("Cannot parse PeerId '{$shown}'");
        }
        if (strlen($multihash) !== strlen(self::ED25519_PREFIX) + 32 || !str_starts_with($multihash, self::ED25519_PREFIX)) {
            throw new InvalidPeerIdException("Cannot use peer {$shown}: it has no Ed25519 key");
        }
        return substr($multihash, strlen(self::ED25519_PREFIX));
    }

    /** {@see publicKey()} as 64 lowercase hex, the form receipts use. */
    public static function publicKeyHex(string $peerId): string
    {
        return bin2hex(self::publicKey($peerId));
    }

    /** Base58btc (bitcoin alphabet) to bytes; leading `1`s are zero bytes. */
    private static function base58Decode(string $text): string
    {
        $bytes = []; // little-endian base-256 digits
        for ($i = 0, $n = strlen($text); $i < $n; $i++) {
            $carry = strpos(self::BASE58, $text[$i]);
            foreach ($bytes as $j => $byte) {
                $carry += $byte * 58;
                $bytes[$j] = $carry & 0xff;
                $carry >>= 8;
            }
            while ($carry > 0) {
                $bytes[] = $carry & 0xff;
                $carry >>= 8;
            }
        }
        $zeros = strspn($text, '1');
        return str_repeat("\x00", $zeros) . implode('', array_map('chr', array_reverse($bytes)));
    }

    /** RFC 4648 base32, lowercase, no padding (multibase `b`), or null if bits are left over. */
    private static function base32Decode(string $text): ?string
    {
        $out = '';
        $buffer = 0;
        $bits = 0;
        for ($i = 0, $n = strlen($text); $i < $n; $i++) {
            $buffer = ($buffer << 5) | strpos(self::BASE32, $text[$i]);
            $bits += 5;
            if ($bits >= 8) {
                $bits -= 8;
                $out .= chr(($buffer >> $bits) & 0xff);
            }
            $buffer &= (1 << $bits) - 1;
        }
        return $bits >= 5 || $buffer !== 0 ? null : $out;
    }
}
