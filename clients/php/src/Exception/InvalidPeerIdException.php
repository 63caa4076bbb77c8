<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A PeerId (or pinned key) that does not parse or holds no Ed25519 key.
 */
class InvalidPeerIdException extends \InvalidArgumentException implements PlasmException
{
}
