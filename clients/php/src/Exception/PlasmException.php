<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * Implemented by every exception the Plasm client throws, so callers can catch them all:
 * `catch (Plasm\Exception\PlasmException $e)`. Each has one line of message, the action first:
 * `Cannot verify receipt: bad signature`.
 */
interface PlasmException extends \Throwable
{
}
