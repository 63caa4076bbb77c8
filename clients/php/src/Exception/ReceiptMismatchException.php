<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A validly signed receipt that does not describe what it came with: another job id, output,
 * module, input or exit code. `field` names the first field that differs.
 */
class ReceiptMismatchException extends \RuntimeException implements PlasmException
{
    public function __construct(
        public readonly string $field,
        public readonly string $signed,
        public readonly string $actual,
        ?\Throwable $previous = null,
    ) {
        parent::__construct("Receipt does not match: {$field}: receipt says {$signed}, got {$actual}", 0, $previous);
    }
}
