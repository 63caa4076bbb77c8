<?php

declare(strict_types=1);

namespace Plasm\Exception;

/** The node does not know this job id (HTTP 404). */
class JobNotFoundException extends ApiException
{
}
