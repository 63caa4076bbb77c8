<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A caller's mistake: an unknown or malformed submit option, a malformed job id, endpoint or token.
 */
class InvalidOptionException extends \InvalidArgumentException implements PlasmException
{
}
