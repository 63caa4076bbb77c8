<?php

declare(strict_types=1);

namespace Plasm;

use Plasm\Exception\InvalidPeerIdException;
use Plasm\Exception\InvalidReceiptException;
use Plasm\Exception\ReceiptMismatchException;
use Plasm\Exception\SignatureException;

/**
 * A `phase-receipt:v1` receipt: what a worker signed about a job it ran.
 *
 * `verify()` checks the Ed25519 signature (libsodium) over the exact signed bytes,
 * `phase-receipt:v1:` + the canonical JSON of `{completed_at, job_id, result, schema_version}`,
 * against a key you pin (a 64-hex key or the worker's PeerId), never only the key inside the
 * receipt. `verifyOutput()` checks that it commits to the output (and, when given, the module
 * and input) you hold.
 *
 * ```php
 * $receipt = Receipt::fromJson(file_get_contents('receipt.json'));
 * $receipt->verify('12D3KooW...');              // throws SignatureException if not signed by it
 * $receipt->verifyOutput($output, $module, $input); // throws ReceiptMismatchException
 * ```
 */
final class Receipt
{
    /** The ASCII domain prefix of receipt signatures. */
    public const PREFIX = 'phase-receipt:v1:';

    private const MAX_SAFE_INTEGER = 9007199254740991;
    private const RFC3339_UTC = '/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/';

    /** Hex job id (SHA-256 of the job manifest's signed bytes). */
    public readonly string $jobId;
    /** The signer's Ed25519 public key as the receipt names it, 64 hex. */
    public readonly string $workerPublicKey;
    /** The signature, 128 hex. */
    public readonly string $signature;
    /** When the job completed, RFC 3339 UTC. */
    public readonly string $completedAt;
    /** `stop`, `length`, `cancelled` or `error`. */
    public readonly string $completion;
    /** The output commitment, 64 hex. */
    public readonly string $outputCommitment;
    /** How many output chunks the commitment covers. */
    public readonly int $outputChunkCount;
    /** SHA-256 of the canonical JSON of the job payload, 64 hex. */
    public readonly string $jobSpecHash;
    /** Wall-clock duration of the run, ms. */
    public readonly int $durationMs;
    /** @var array<string, string> `module_hash`, `input_hash`, `exit_code`, `error`, ... */
    public readonly array $extra;

    private function __construct(private readonly \stdClass $data)
    {
        $this->jobId = $data->job_id;
        $this->workerPublicKey = $data->worker_pubkey;
        $this->signature = $data->signature;
        $this->completedAt = $data->completed_at;
        $result = $data->result;
        $this->completion = $result->completion;
        $this->outputCommitment = self::hexOfBytes($result->output_commitment);
        $this->outputChunkCount = (int) $result->output_chunk_count;
        $this->jobSpecHash = self::hexOfBytes($result->job_spec_hash);
        $this->durationMs = (int) $result->metrics->total_duration_ms;
        $extra = [];
        foreach ((array) $result->metrics->extra as $key => $value) {
            $extra[(string) $key] = $value;
        }
        $this->extra = $extra;
    }

    /**
     * Read a receipt from its JSON text and check its shape (not its signature: see verify()).
     *
     * @throws InvalidReceiptException If it is not JSON or not a `phase-receipt:v1` receipt.
     */
    public static function fromJson(string $json): self
    {
        try {
            $data = json_decode($json, false, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new InvalidReceiptException('Cannot read receipt: not JSON (' . $e->getMessage() . ')', 0, $e);
        }
        return self::fromData($data);
    }

    /**
     * A receipt from already decoded JSON (objects as `stdClass`, as `json_decode($text, false)`
     * gives them, or associative arrays).
     *
     * @throws InvalidReceiptException If it is not a `phase-receipt:v1` receipt.
     */
    public static function fromData(mixed $data): self
    {
        if (is_array($data) && !array_is_list($data)) {
            $data = json_decode(json_encode($data, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), false, 64, JSON_THROW_ON_ERROR);
        }
        $r = self::object($data, 'receipt');
        if (($r->schema_version ?? null) !== 1) {
            $version = json_encode($r->schema_version ?? null);
            throw new InvalidReceiptException("Cannot read receipt: unsupported schema_version {$version}");
        }
        self::hex($r->job_id ?? null, 'job_id', 32);
        self::hex($r->worker_pubkey ?? null, 'worker_pubkey', 32);
        self::hex($r->signature ?? null, 'signature', 64);
        if (!is_string($r->completed_at ?? null) || preg_match(self::RFC3339_UTC, $r->completed_at) !== 1) {
            throw new InvalidReceiptException('Cannot read receipt: completed_at is not an RFC 3339 UTC time');
        }
        $result = self::object($r->result ?? null, 'result');
        self::bytes32($result->job_spec_hash ?? null, 'result.job_spec_hash');
        self::bytes32($result->output_commitment ?? null, 'result.output_commitment');
        if (!self::isSafeInteger($result->output_chunk_count ?? null) || $result->output_chunk_count < 0) {
            throw new InvalidReceiptException('Cannot read receipt: result.output_chunk_count is not a count');
        }
        if (!in_array($result->completion ?? null, ['stop', 'length', 'cancelled', 'error'], true)) {
            throw new InvalidReceiptException('Cannot read receipt: result.completion is not stop|length|cancelled|error');
        }
        if (!property_exists($result, 'resumption') || $result->resumption !== null) {
            throw new InvalidReceiptException('Cannot read receipt: result.resumption is not null');
        }
        $metrics = self::object($result->metrics ?? null, 'result.metrics');
        foreach (['total_duration_ms', 'prompt_tokens', 'completion_tokens'] as $key) {
            if (!self::isSafeInteger($metrics->{$key} ?? null)) {
                throw new InvalidReceiptException("Cannot read receipt: result.metrics.{$key} is not an integer");
            }
        }
        $extra = self::object($metrics->extra ?? null, 'result.metrics.extra');
        foreach ((array) $extra as $key => $item) {
            if (!is_string($item)) {
                throw new InvalidReceiptException("Cannot read receipt: result.metrics.extra.{$key} is not a string");
            }
        }
        try {
            CanonicalJson::encode($r);
        } catch (\InvalidArgumentException $e) {
            throw new InvalidReceiptException('Cannot read receipt: ' . $e->getMessage(), 0, $e);
        }
        return new self(self::copy($r));
    }

    /** The receipt as JSON (fields as received), for a file `verify receipt` reads. */
    public function toJson(bool $pretty = false): string
    {
        $flags = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_LINE_TERMINATORS;
        return json_encode($this->data, $pretty ? $flags | JSON_PRETTY_PRINT : $flags);
    }

    /** The receipt as decoded JSON (a copy). */
    public function toData(): \stdClass
    {
        return self::copy($this->data);
    }

    /** The exact bytes the signature covers: `phase-receipt:v1:` + canonical JSON. */
    public function signedBytes(): string
    {
        $signed = new \stdClass();
        $signed->completed_at = $this->data->completed_at;
        $signed->job_id = $this->data->job_id;
        $signed->result = $this->data->result;
        $signed->schema_version = $this->data->schema_version;
        return self::PREFIX . CanonicalJson::encode($signed);
    }

    /** The job's exit code from the signed `extra.exit_code`, or null when it did not exit. */
    public function exitCode(): ?int
    {
        return isset($this->extra['exit_code']) ? (int) $this->extra['exit_code'] : null;
    }

    /** The signed `sha256:` hash of the module, or null. */
    public function moduleHash(): ?string
    {
        return $this->extra['module_hash'] ?? null;
    }

    /** The signed `sha256:` hash of the input, or null. */
    public function inputHash(): ?string
    {
        return $this->extra['input_hash'] ?? null;
    }

    /**
     * Check the Ed25519 signature against a pinned key: the worker's PeerId (`12D3KooW...`,
     * `bafz...`) or its public key as 64 hex. With `$jobId`, the receipt must also name it.
     *
     * @throws SignatureException If the receipt names another key or the signature does not verify.
     * @throws ReceiptMismatchException If it names another job id than `$jobId`.
     * @throws InvalidPeerIdException If the pinned key is neither a PeerId nor 64 hex.
     */
    public function verify(string $pinnedKey, ?string $jobId = null): true
    {
        $key = self::pinnedKeyHex($pinnedKey);
        if (!hash_equals($key, $this->workerPublicKey)) {
            throw new SignatureException("Cannot verify receipt: signed for key {$this->workerPublicKey}, expected {$key}");
        }
        try {
            $ok = sodium_crypto_sign_verify_detached(hex2bin($this->signature), $this->signedBytes(), hex2bin($key));
        } catch (\SodiumException $e) {
            throw new SignatureException('Cannot verify receipt: ' . $e->getMessage(), 0, $e);
        }
        if (!$ok) {
            throw new SignatureException('Cannot verify receipt: bad signature');
        }
        if ($jobId !== null && $jobId !== $this->jobId) {
            throw new ReceiptMismatchException('job_id', $jobId, $this->jobId);
        }
        return true;
    }

    /**
     * Check that the receipt commits to this stdout (commitment and chunk count) and, when given,
     * that it names the hashes of this module and this input. Check the signature with
     * verify() too: this alone proves nothing about who signed.
     *
     * @throws ReceiptMismatchException Naming the first field that differs.
     */
    public function verifyOutput(string $output, ?string $module = null, ?string $input = null): true
    {
        $chunks = OutputCommitment::stdoutChunks($output);
        $commitment = bin2hex(OutputCommitment::ofChunks($chunks));
        if (!hash_equals($this->outputCommitment, $commitment)) {
            throw new ReceiptMismatchException('output_commitment', $this->outputCommitment, $commitment);
        }
        if (count($chunks) !== $this->outputChunkCount) {
            throw new ReceiptMismatchException('output_chunk_count', (string) $this->outputChunkCount, (string) count($chunks));
        }
        foreach (['module_hash' => $module, 'input_hash' => $input] as $field => $bytes) {
            if ($bytes === null) {
                continue;
            }
            $actual = 'sha256:' . hash('sha256', $bytes);
            $signed = $this->extra[$field] ?? '(nothing)';
            if (!hash_equals($signed, $actual)) {
                throw new ReceiptMismatchException($field, $signed, $actual);
            }
        }
        return true;
    }

    /** A pinned key as 64 lowercase hex: given as hex, or taken from a PeerId. */
    private static function pinnedKeyHex(string $pinnedKey): string
    {
        if (preg_match('/^[0-9a-fA-F]{64}$/', $pinnedKey) === 1) {
            return strtolower($pinnedKey);
        }
        return PeerId::publicKeyHex($pinnedKey);
    }

    private static function object(mixed $value, string $name): \stdClass
    {
        if (!$value instanceof \stdClass) {
            throw new InvalidReceiptException("Cannot read receipt: {$name} is not an object");
        }
        return $value;
    }

    private static function hex(mixed $value, string $name, int $bytes): void
    {
        if (!is_string($value) || preg_match('/^[0-9a-f]{' . ($bytes * 2) . '}$/', $value) !== 1) {
            throw new InvalidReceiptException("Cannot read receipt: {$name} is not {$bytes} bytes of lowercase hex");
        }
    }

    private static function bytes32(mixed $value, string $name): void
    {
        $ok = is_array($value) && array_is_list($value) && count($value) === 32;
        foreach ($ok ? $value : [] as $byte) {
            if (!self::isSafeInteger($byte) || $byte < 0 || $byte > 255) {
                $ok = false;
            }
        }
        if (!$ok) {
            throw new InvalidReceiptException("Cannot read receipt: {$name} is not 32 byte values");
        }
    }

    private static function isSafeInteger(mixed $value): bool
    {
        if (is_int($value)) {
            return abs($value) <= self::MAX_SAFE_INTEGER;
        }
        return is_float($value) && is_finite($value) && floor($value) === $value && abs($value) <= self::MAX_SAFE_INTEGER;
    }

    /** @param list<int|float> $bytes */
    private static function hexOfBytes(array $bytes): string
    {
        return bin2hex(implode('', array_map(static fn ($b): string => chr((int) $b), $bytes)));
    }

    private static function copy(\stdClass $value): \stdClass
    {
        return unserialize(serialize($value));
    }
}
