<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A file the client had to read (the module, the node's `api.json` or `api.token`) cannot be read.
 */
class FileException extends \RuntimeException implements PlasmException
{
}
