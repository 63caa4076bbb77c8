<?php

/**
 * Used by tests/php_client_test.ts: `php result.php ENDPOINT TOKEN JOB_ID [nowait]` prints
 * `ok <output as JSON>` for a verified result, else `<exception class>: <message>` and exits 1.
 */

declare(strict_types=1);

require __DIR__ . '/../../autoload.php';

[, $endpoint, $token, $jobId] = $argv;
try {
    $result = (new Plasm\Client($endpoint, $token))->result($jobId, ($argv[4] ?? '') !== 'nowait');
    echo 'ok ', json_encode($result->output, JSON_THROW_ON_ERROR), "\n";
} catch (Plasm\Exception\PlasmException $e) {
    echo get_class($e), ': ', $e->getMessage(), "\n";
    exit(1);
}
