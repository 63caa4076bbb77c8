<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * No node has recorded its local API in the state dir (is `start` running with this state dir?).
 */
class NodeNotFoundException extends \RuntimeException implements PlasmException
{
}
