<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A job that has not finished yet (`result($jobId, false)` while it still runs).
 */
class JobNotFinishedException extends \RuntimeException implements PlasmException
{
}
