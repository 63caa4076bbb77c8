<?php

declare(strict_types=1);

namespace Plasm;

/**
 * The output commitment of Phase receipts (docs/protocol.md):
 * `s0 = SHA256("phase-protocol:v1:commitment")`, then per chunk
 * `s = SHA256(s || u64be(seq) || u32be(len(kind)) || kind || u32be(len(data)) || data)`.
 * Plasm commits to stdout in 64 KiB chunks of kind `stdout`, at least one (empty output is one
 * empty chunk).
 *
 * ```php
 * bin2hex(OutputCommitment::ofStdout(''));
 * // fa9b4526d069cad21010765604a145c410fc8e16505eb38ef843ce1e3370282e
 * ```
 */
final class OutputCommitment
{
    /** Size of the stdout chunks Plasm commits to. */
    public const CHUNK_BYTES = 65536;

    private const SEED = 'phase-protocol:v1:commitment';

    /**
     * The commitment (32 raw bytes) over chunks.
     *
     * @param iterable<array{0: string, 1: string}> $chunks `[kind, data]` pairs in order.
     */
    public static function ofChunks(iterable $chunks): string
    {
        $state = hash('sha256', self::SEED, true);
        $seq = 0;
        foreach ($chunks as [$kind, $data]) {
            $state = hash(
                'sha256',
                $state . pack('J', $seq++) . pack('N', strlen($kind)) . $kind . pack('N', strlen($data)) . $data,
                true,
            );
        }
        return $state;
    }

    /**
     * The stdout chunks Plasm commits to.
     *
     * @return list<array{0: string, 1: string}>
     */
    public static function stdoutChunks(string $stdout): array
    {
        $chunks = [];
        for ($offset = 0; $offset < strlen($stdout) || $chunks === []; $offset += self::CHUNK_BYTES) {
            $chunks[] = ['stdout', substr($stdout, $offset, self::CHUNK_BYTES)];
        }
        return $chunks;
    }

    /** The commitment (32 raw bytes) of a job's stdout. */
    public static function ofStdout(string $stdout): string
    {
        return self::ofChunks(self::stdoutChunks($stdout));
    }
}
