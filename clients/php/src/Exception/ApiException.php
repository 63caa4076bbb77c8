<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * The node answered with an error (bad request, wrong token, unknown job, internal error) or
 * with something that is not its API's JSON. `getStatus()` is the HTTP status.
 */
class ApiException extends \RuntimeException implements PlasmException
{
    public function __construct(string $message, private readonly int $status = 0, ?\Throwable $previous = null)
    {
        parent::__construct($message, $status, $previous);
    }

    /** The HTTP status of the answer (0 when there was no usable answer). */
    public function getStatus(): int
    {
        return $this->status;
    }
}
