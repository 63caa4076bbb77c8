<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A receipt whose Ed25519 signature does not verify against the pinned key, or that names another key.
 */
class SignatureException extends \RuntimeException implements PlasmException
{
}
