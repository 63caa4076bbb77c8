<?php

declare(strict_types=1);

namespace Plasm\Exception;

/**
 * A receipt that is not JSON or does not have the `phase-receipt:v1` shape.
 */
class InvalidReceiptException extends \UnexpectedValueException implements PlasmException
{
}
