<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * The job failed: no worker was found, no worker returned a verified result, or replicas
 * disagreed. `kind` says which (`no_worker_found`, `workers_failed`, `not_verified`,
 * `replicas_disagree`, `internal`); `reason` is the node's message.
 */
class JobFailedException extends \RuntimeException implements PlasmException
{
    public function __construct(
        string $message,
        public readonly string $kind,
        public readonly string $reason,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }
}
