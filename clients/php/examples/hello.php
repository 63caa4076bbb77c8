<?php

/**
 * The README's example, with the receipt checked again by hand: run from the repository root
 * with a node running (`deno task start`), `php clients/php/examples/hello.php`. Prints the
 * output, then one JSON line with the job id, the worker and its receipt (which
 * `deno task verify receipt FILE --key <worker_peer_id>` accepts).
 */

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

$module = getenv('PLASM_EXAMPLE_MODULE') ?: 'examples/hello.wasm';

$plasm = new Plasm\Client();
$jobId = $plasm->submit($module, ['cpu' => 1, 'input' => 'Hello, World']);
$result = $plasm->result($jobId);
echo $result->output, "\n"; // dlroW ,olleH

// result() has verified the receipt already; the same checks, spelled out:
$result->receipt->verify($result->workerPeerId, $jobId);            // signed by that worker, for this job
$result->receipt->verifyOutput($result->output, file_get_contents($module), 'Hello, World');

echo json_encode([
    'job_id' => $jobId,
    'worker_peer_id' => $result->workerPeerId,
    'worker_public_key' => $result->workerPublicKey,
    'exit_code' => $result->exitCode,
    'error' => $result->error,
    'stderr' => $result->stderr,
    'module_hash' => $result->moduleHash,
    'input_hash' => $result->inputHash,
    'transport' => extension_loaded('curl') ? 'curl' : 'streams',
    'receipt' => $result->receipt->toData(),
], JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
