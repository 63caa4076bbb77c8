<?php

declare(strict_types=1);

namespace Plasm;

/**
 * A finished job's result, as `Client::result()` returns it after verifying it: every worker's
 * receipt is signed by the key of that worker's PeerId, names this job, and commits to `output`;
 * the module and input hashes match what was submitted (when this client submitted it).
 */
final class Result
{
    /**
     * @param string $jobId Hex job id.
     * @param string $output The job's stdout (raw bytes).
     * @param string $stderr The job's stderr (raw bytes).
     * @param ?int $exitCode The exit code, or null when the job did not end by itself.
     * @param ?array{kind: string, message: string} $error Why the job did not run to its end
     *   (`trap`, `timeout`, `memory_limit`, `invalid_module`, `output_limit`, `fuel_exhausted`...),
     *   or null.
     * @param string $completion `stop`, `length`, `cancelled` or `error`.
     * @param Receipt $receipt The (first) worker's signed receipt.
     * @param string $workerPeerId The (first) worker's PeerId.
     * @param string $workerPublicKey That worker's Ed25519 public key, 64 hex (from its PeerId).
     * @param list<array{peerId: string, receipt: Receipt}> $workers Every worker that ran it
     *   (several with replicas), each with its verified receipt.
     * @param string $moduleHash `sha256:` hash of the module.
     * @param string $inputHash `sha256:` hash of the input.
     */
    public function __construct(
        public readonly string $jobId,
        public readonly string $output,
        public readonly string $stderr,
        public readonly ?int $exitCode,
        public readonly ?array $error,
        public readonly string $completion,
        public readonly Receipt $receipt,
        public readonly string $workerPeerId,
        public readonly string $workerPublicKey,
        public readonly array $workers,
        public readonly string $moduleHash,
        public readonly string $inputHash,
    ) {
    }
}
