<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * The node's local API does not answer at its URL (no node running there, or it stopped).
 */
class ApiUnreachableException extends \RuntimeException implements PlasmException
{
}
