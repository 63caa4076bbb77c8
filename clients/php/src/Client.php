<?php

declare(strict_types=1);

namespace Plasm;

use Plasm\Exception\ApiException;
use Plasm\Exception\ApiUnreachableException;
use Plasm\Exception\FileException;
use Plasm\Exception\InvalidOptionException;
use Plasm\Exception\JobFailedException;
use Plasm\Exception\JobNotFinishedException;
use Plasm\Exception\JobNotFoundException;
use Plasm\Exception\NodeNotFoundException;
use Plasm\Exception\ReceiptMismatchException;

/**
 * Client of a Plasm node's local API (docs/api/openapi.yaml): submit a WebAssembly (WASI) job,
 * get its result, verified here against the worker's PeerId.
 *
 * ```php
 * require 'clients/php/autoload.php';
 *
 * $plasm = new Plasm\Client();                       // the local node, found as `submit` finds it
 * $jobId = $plasm->submit('examples/hello.wasm', ['cpu' => 1, 'input' => 'Hello, World']);
 * $result = $plasm->result($jobId);
 * echo $result->output;                              // dlroW ,olleH
 * ```
 *
 * Without arguments the client reads the node's URL from `<state dir>/api.json` and its bearer
 * token from `<state dir>/api.token`; the state dir is `$stateDir`, else `$PLASM_HOME`, else
 * `$XDG_DATA_HOME/plasm`, else `$HOME/.local/share/plasm`. Or give `endpoint` and `token`.
 * HTTP goes through ext-curl when it is loaded, else through PHP's stream wrappers.
 */
final class Client
{
    /** Submit options and the JSON field each becomes. */
    public const OPTIONS = [
        'input' => 'input',
        'args' => 'args',
        'env' => 'env',
        'memory' => 'memory_bytes',
        'timeout' => 'timeout_ms',
        'max_output' => 'max_output_bytes',
        'fuel' => 'fuel',
        'cpu' => 'cpu',
        'replicas' => 'replicas',
        'worker' => 'worker',
        'search_timeout' => 'search_timeout_ms',
        'require_boot_signer' => 'require_boot_signer',
        'min_boot_sequence' => 'min_boot_sequence',
    ];

    /** Longest wait the node honours per request, in ms. */
    private const WAIT_MS = 60000;

    private const SIZE_UNITS = [
        '' => 1, 'b' => 1, 'k' => 1024, 'kib' => 1024, 'm' => 1048576, 'mib' => 1048576,
        'g' => 1073741824, 'gib' => 1073741824, 'kb' => 1000, 'mb' => 1000000, 'gb' => 1000000000,
    ];
    private const DURATION_UNITS = ['ms' => 1, 's' => 1000, 'm' => 60000, 'h' => 3600000];

    private readonly string $url;
    private readonly string $token;
    /** @var array<string, array{0: string, 1: string}> module and input hash of jobs submitted here */
    private array $submitted = [];

    /**
     * Make a client; nothing is sent until a call.
     *
     * @param ?string $endpoint The API base URL, such as `http://127.0.0.1:4000/`; default: the
     *   `url` of `<state dir>/api.json`.
     * @param ?string $token The bearer token; default: `<state dir>/api.token`.
     * @param ?string $stateDir The node's state dir; default: as `submit` finds it.
     *
     * @throws NodeNotFoundException If no node has recorded its API in the state dir.
     * @throws FileException If `api.json` or `api.token` exists but cannot be read.
     * @throws InvalidOptionException If the endpoint or token is malformed.
     */
    public function __construct(?string $endpoint = null, ?string $token = null, ?string $stateDir = null)
    {
        if ($endpoint === null || $token === null) {
            $dir = $stateDir ?? self::defaultStateDir();
            if ($endpoint === null) {
                $endpoint = self::readEndpoint($dir);
            }
            if ($token === null) {
                $token = self::readToken($dir);
            }
        }
        $parts = parse_url($endpoint);
        if ($parts === false || !in_array($parts['scheme'] ?? '', ['http', 'https'], true) || !isset($parts['host'])) {
            throw new InvalidOptionException("Cannot use API URL '{$endpoint}': expected http://host:port/");
        }
        if (strlen($token) < 16 || preg_match('/[\x00-\x20\x7f]/', $token) === 1) {
            throw new InvalidOptionException('Cannot use API token: expected at least 16 characters without spaces');
        }
        $this->url = str_ends_with($endpoint, '/') ? $endpoint : $endpoint . '/';
        $this->token = $token;
    }

    /** The API base URL this client talks to. */
    public function endpoint(): string
    {
        return $this->url;
    }

    /**
     * Submit a job; returns its hex job id. Everything the job gets is signed by the node into
     * its manifest, hence into its job id and receipt.
     *
     * @param string $wasmPath The module file.
     * @param array{
     *   input?: string, args?: list<string>, env?: array<string, string>, memory?: int|string,
     *   timeout?: int|float|string, max_output?: int|string, fuel?: int|string, cpu?: int,
     *   replicas?: int, worker?: string, search_timeout?: int|float|string,
     *   require_boot_signer?: string, min_boot_sequence?: int
     * } $options `input` (stdin bytes), `args` (after argv[0]), `env` (the whole environment),
     *   `memory` (bytes, or a size such as `64MiB`), `timeout` (seconds, or `500ms`, `30s`, `2m`),
     *   `max_output` (stdout + stderr cap), `fuel` (instruction budget), `cpu` (cores the worker
     *   must offer), `replicas` (workers that must agree), `worker` (a PeerId to run on),
     *   `search_timeout` (how long the node looks for a worker), `require_boot_signer` (a 64-hex
     *   publisher key: run only on workers whose signed boot attestation names it) and
     *   `min_boot_sequence` (with it, the lowest boot sequence accepted).
     *
     * @throws FileException If the module cannot be read.
     * @throws InvalidOptionException If an option is unknown or malformed.
     * @throws ApiException If the node refuses the job (its message says why).
     * @throws ApiUnreachableException If the node does not answer.
     */
    public function submit(string $wasmPath, array $options = []): string
    {
        $module = self::readFile($wasmPath, 'module');
        $body = self::submitBody($module, $options);
        [$status, $json] = $this->call('POST', 'jobs', $body);
        if ($status !== 201 || !is_string($json->job_id ?? null)) {
            $why = is_string($json->error ?? null) ? $json->error : "HTTP {$status}";
            throw new ApiException(str_starts_with($why, 'Cannot ') ? $why : "Cannot submit job: {$why}", $status);
        }
        $this->submitted[$json->job_id] = [
            'sha256:' . hash('sha256', $module),
            'sha256:' . hash('sha256', $options['input'] ?? ''),
        ];
        return $json->job_id;
    }

    /**
     * A finished job's result, verified: every worker's receipt must be signed by the key of its
     * PeerId, name this job and commit to the output returned; the module and input hashes must
     * be the ones the node reports and, for a job submitted by this client, the ones it sent.
     *
     * @param bool $wait Wait until the job is finished (else fail at once if it is not).
     * @param float $timeout With `$wait`, the longest wait in seconds.
     *
     * @throws JobFailedException If the job failed (`kind`: `no_worker_found`, `workers_failed`,
     *   `not_verified`, `replicas_disagree`, `internal`).
     * @throws JobNotFinishedException If it has not finished (without `$wait`, or past `$timeout`).
     * @throws JobNotFoundException If the node does not know the job.
     * @throws Exception\SignatureException|ReceiptMismatchException|Exception\InvalidReceiptException
     *   If a receipt does not verify.
     * @throws ApiUnreachableException If the node does not answer.
     */
    public function result(string $jobId, bool $wait = true, float $timeout = 86400.0): Result
    {
        if (preg_match('/^[0-9a-f]{64}$/', $jobId) !== 1) {
            throw new InvalidOptionException("Cannot use job id '{$jobId}': expected 64 lowercase hex");
        }
        $deadline = microtime(true) + $timeout;
        while (true) {
            $left = (int) (($deadline - microtime(true)) * 1000);
            $query = $wait && $left > 0 ? '?wait=' . min($left, self::WAIT_MS) : '';
            [$status, $json] = $this->call('GET', "jobs/{$jobId}/result{$query}");
            if ($status === 200) {
                return $this->verified($jobId, $json);
            }
            if ($status === 404) {
                throw new JobNotFoundException("Cannot find job {$jobId}", 404);
            }
            if ($status === 409) {
                $error = is_string($json->error ?? null) ? $json->error : 'failed';
                $kind = is_string($json->error_kind ?? null) ? $json->error_kind : 'failed';
                throw new JobFailedException("Job {$jobId} failed: {$error}", $kind, $error);
            }
            if ($status === 202) {
                if ($wait && microtime(true) < $deadline) {
                    continue;
                }
                $state = is_string($json->state ?? null) ? $json->state : '';
                $reason = is_string($json->last_reason ?? null) ? ": {$json->last_reason}" : '';
                $why = $state !== '' && $state !== ($json->status ?? '') ? " ({$state}{$reason})" : '';
                $still = is_string($json->status ?? null) ? $json->status : 'running';
                throw new JobNotFinishedException("Cannot get result of job {$jobId}: it is still {$still}{$why}");
            }
            $why = is_string($json->error ?? null) ? $json->error : "HTTP {$status}";
            throw new ApiException("Cannot get result of job {$jobId}: {$why}", $status);
        }
    }

    /**
     * The JSON body of `POST /jobs` for a module and submit options (what submit() sends).
     *
     * @param array<string, mixed> $options See submit().
     * @return array<string, mixed>
     *
     * @throws InvalidOptionException If an option is unknown or malformed.
     */
    public static function submitBody(string $module, array $options): array
    {
        $body = ['module' => base64_encode($module)];
        foreach ($options as $name => $value) {
            $field = self::OPTIONS[$name] ?? null;
            if ($field === null) {
                $known = implode(', ', array_keys(self::OPTIONS));
                throw new InvalidOptionException("Cannot submit job: unknown option '{$name}' (known: {$known})");
            }
            $body[$field] = match ($name) {
                'input' => is_string($value) ? base64_encode($value) : self::bad($name, 'a string of bytes'),
                'args' => is_array($value) && array_is_list($value) && array_filter($value, 'is_string') === $value
                    ? $value : self::bad($name, 'a list of strings'),
                'env' => self::env($value),
                'memory', 'max_output' => self::size($name, $value),
                'timeout', 'search_timeout' => self::duration($name, $value),
                'fuel' => (is_int($value) && $value >= 0) || (is_string($value) && preg_match('/^\d{1,19}$/', $value) === 1)
                    ? (string) $value : self::bad($name, 'a whole number of instructions'),
                'cpu', 'replicas' => is_int($value) && $value >= 1 ? $value : self::bad($name, 'a positive integer'),
                'worker' => is_string($value) && $value !== '' ? $value : self::bad($name, 'a PeerId'),
                'require_boot_signer' => is_string($value) && preg_match('/^[0-9a-fA-F]{64}$/', $value) === 1
                    ? $value : self::bad($name, 'a 64-hex publisher key'),
                'min_boot_sequence' => is_int($value) && $value >= 1 ? $value : self::bad($name, 'a positive integer'),
            };
        }
        return $body;
    }

    /** The verified Result of a `200` answer. */
    private function verified(string $jobId, \stdClass $json): Result
    {
        $output = self::base64($json->output ?? null, 'output');
        $stderr = self::base64($json->stderr ?? null, 'stderr');
        $listed = is_array($json->workers ?? null) && $json->workers !== []
            ? $json->workers
            : [(object) ['peer_id' => $json->worker_peer_id ?? '', 'receipt' => $json->receipt ?? null]];
        $workers = [];
        foreach ($listed as $entry) {
            if (!$entry instanceof \stdClass) {
                throw new ApiException('Cannot read job result: workers must be a list of objects', 200);
            }
            $peerId = is_string($entry->peer_id ?? null) ? $entry->peer_id : '';
            $receipt = Receipt::fromData($entry->receipt ?? null);
            // Signed by the key inside the worker's PeerId, for this job, committing to this output.
            $receipt->verify($peerId, $jobId);
            $receipt->verifyOutput($output);
            $workers[] = ['peerId' => $peerId, 'receipt' => $receipt];
        }
        $receipt = $workers[0]['receipt'];
        $expected = [
            'module_hash' => $json->module_hash ?? null,
            'input_hash' => $json->input_hash ?? null,
        ];
        if (isset($this->submitted[$jobId])) {
            [$moduleHash, $inputHash] = $this->submitted[$jobId];
            foreach (['module_hash' => $moduleHash, 'input_hash' => $inputHash] as $field => $sent) {
                if ($expected[$field] !== $sent) {
                    throw new ReceiptMismatchException($field, (string) $expected[$field], $sent);
                }
            }
        }
        foreach ($expected as $field => $value) {
            if (($receipt->extra[$field] ?? null) !== $value) {
                throw new ReceiptMismatchException($field, $receipt->extra[$field] ?? '(nothing)', (string) $value);
            }
        }
        $exitCode = is_int($json->exit_code ?? null) ? $json->exit_code : null;
        if ($receipt->exitCode() !== $exitCode) {
            throw new ReceiptMismatchException('exit_code', (string) ($receipt->extra['exit_code'] ?? 'null'), (string) ($exitCode ?? 'null'));
        }
        $error = null;
        if ($receipt->completion !== 'stop' || isset($receipt->extra['error'])) {
            // The kind is the signed one; the message is the worker's word.
            $kind = $receipt->extra['error'] ?? $receipt->completion;
            $message = $json->error->message ?? null;
            $error = ['kind' => $kind, 'message' => is_string($message) ? $message : $kind];
        }
        return new Result(
            jobId: $jobId,
            output: $output,
            stderr: $stderr,
            exitCode: $exitCode,
            error: $error,
            completion: $receipt->completion,
            receipt: $receipt,
            workerPeerId: $workers[0]['peerId'],
            workerPublicKey: $receipt->workerPublicKey,
            workers: $workers,
            moduleHash: (string) $expected['module_hash'],
            inputHash: (string) $expected['input_hash'],
        );
    }

    /**
     * One API call; returns the status and the decoded JSON answer.
     *
     * @param ?array<string, mixed> $body
     * @return array{0: int, 1: \stdClass}
     */
    private function call(string $method, string $path, ?array $body = null): array
    {
        $url = $this->url . $path;
        $headers = ["Authorization: Bearer {$this->token}", 'Accept: application/json'];
        $content = null;
        if ($body !== null) {
            $content = json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
            $headers[] = 'Content-Type: application/json';
        }
        [$status, $text] = extension_loaded('curl')
            ? $this->curl($method, $url, $headers, $content)
            : $this->stream($method, $url, $headers, $content);
        try {
            $json = json_decode($text, false, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ApiException("Cannot parse API answer (HTTP {$status})", $status, $e);
        }
        if (!$json instanceof \stdClass) {
            throw new ApiException("Cannot parse API answer (HTTP {$status}): not a JSON object", $status);
        }
        return [$status, $json];
    }

    /**
     * @param list<string> $headers
     * @return array{0: int, 1: string}
     */
    private function curl(string $method, string $url, array $headers, ?string $content): array
    {
        $handle = curl_init($url);
        curl_setopt_array($handle, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT => 10,
            CURLOPT_TIMEOUT => (int) (self::WAIT_MS / 1000) + 30,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROXY => '',
        ]);
        if ($content !== null) {
            curl_setopt($handle, CURLOPT_POSTFIELDS, $content);
        }
        $text = curl_exec($handle);
        $status = (int) curl_getinfo($handle, CURLINFO_RESPONSE_CODE);
        $error = curl_error($handle);
        if (!is_string($text) || $status === 0) {
            throw new ApiUnreachableException("Cannot reach the node API at {$this->url}: " . self::oneLine($error));
        }
        return [$status, $text];
    }

    /**
     * @param list<string> $headers
     * @return array{0: int, 1: string}
     */
    private function stream(string $method, string $url, array $headers, ?string $content): array
    {
        $context = stream_context_create(['http' => [
            'method' => $method,
            'header' => implode("\r\n", $headers),
            'content' => $content ?? '',
            'ignore_errors' => true,
            'timeout' => (self::WAIT_MS / 1000) + 30,
            'follow_location' => 0,
            'protocol_version' => 1.1,
        ]]);
        $warning = '';
        set_error_handler(static function (int $no, string $message) use (&$warning): bool {
            $warning = $message;
            return true;
        });
        try {
            $text = file_get_contents($url, false, $context);
            $responseHeaders = function_exists('http_get_last_response_headers')
                ? http_get_last_response_headers() ?? []
                : ($http_response_header ?? []);
        } finally {
            restore_error_handler();
        }
        $status = preg_match('{^HTTP/\S+ (\d{3})}', $responseHeaders[0] ?? '', $m) === 1 ? (int) $m[1] : 0;
        if ($text === false || $status === 0) {
            $why = preg_replace('/^.*?: /', '', $warning);
            throw new ApiUnreachableException("Cannot reach the node API at {$this->url}: " . self::oneLine((string) $why));
        }
        return [$status, $text];
    }

    private static function defaultStateDir(): string
    {
        $home = getenv('PLASM_HOME');
        if (is_string($home) && $home !== '') {
            return $home;
        }
        $data = getenv('XDG_DATA_HOME');
        if (is_string($data) && $data !== '') {
            return "{$data}/plasm";
        }
        $user = getenv('HOME');
        if (is_string($user) && $user !== '') {
            return "{$user}/.local/share/plasm";
        }
        throw new NodeNotFoundException('Cannot find a state dir: set PLASM_HOME (or HOME)');
    }

    private static function readEndpoint(string $dir): string
    {
        $path = "{$dir}/api.json";
        if (!file_exists($path)) {
            throw new NodeNotFoundException(
                "Cannot find the node's API in '{$dir}': no node has recorded one there (is start running with this state dir?)",
            );
        }
        $record = json_decode(self::readFile($path, 'api.json'), false);
        if (!is_string($record->url ?? null)) {
            throw new NodeNotFoundException("Cannot find the node's API in '{$dir}': api.json has no url");
        }
        return $record->url;
    }

    private static function readToken(string $dir): string
    {
        $path = "{$dir}/api.token";
        if (!file_exists($path)) {
            throw new NodeNotFoundException(
                "Cannot find the node's API in '{$dir}': no api.token there (is start running with this state dir?)",
            );
        }
        $token = trim(self::readFile($path, 'API token'));
        if (strlen($token) < 16) {
            throw new InvalidOptionException("Cannot use API token in '{$path}': too short");
        }
        return $token;
    }

    private static function readFile(string $path, string $what): string
    {
        $why = match (true) {
            !file_exists($path) => 'no such file',
            is_dir($path) => 'is a directory',
            !is_readable($path) => 'permission denied',
            default => null,
        };
        $bytes = $why === null ? @file_get_contents($path) : false;
        if ($bytes === false) {
            $why ??= self::oneLine(error_get_last()['message'] ?? 'cannot read it');
            throw new FileException("Cannot read {$what} '{$path}': {$why}");
        }
        return $bytes;
    }

    private static function env(mixed $value): \stdClass
    {
        if (!is_array($value)) {
            self::bad('env', 'a map of names to strings');
        }
        foreach ($value as $key => $item) {
            if (!is_string($key) || $key === '' || str_contains($key, '=') || !is_string($item)) {
                self::bad('env', "a map of names (without '=') to strings");
            }
        }
        return (object) $value;
    }

    private static function size(string $name, mixed $value): int
    {
        if (is_int($value) && $value >= 1) {
            return $value;
        }
        if (is_string($value) && preg_match('/^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/', trim($value), $m) === 1) {
            $unit = self::SIZE_UNITS[strtolower($m[2])] ?? null;
            if ($unit !== null && (int) floor((float) $m[1] * $unit) >= 1) {
                return (int) floor((float) $m[1] * $unit);
            }
        }
        self::bad($name, 'a size in bytes, or such as 64MiB');
    }

    private static function duration(string $name, mixed $value): int
    {
        if ((is_int($value) || is_float($value)) && $value > 0 && is_finite((float) $value)) {
            return (int) round($value * 1000);
        }
        if (is_string($value) && preg_match('/^(\d+(?:\.\d+)?)(ms|s|m|h)?$/', trim($value), $m) === 1) {
            $ms = (int) round((float) $m[1] * self::DURATION_UNITS[$m[2] ?? 's']);
            if ($ms >= 1) {
                return $ms;
            }
        }
        self::bad($name, 'seconds, or a duration such as 500ms, 30s or 2m');
    }

    private static function bad(string $name, string $expected): never
    {
        throw new InvalidOptionException("Cannot submit job: option '{$name}' must be {$expected}");
    }

    private static function base64(mixed $value, string $field): string
    {
        $bytes = is_string($value) ? base64_decode($value, true) : false;
        if ($bytes === false) {
            throw new ApiException("Cannot read job result: {$field} is not base64", 200);
        }
        return $bytes;
    }

    private static function oneLine(string $text): string
    {
        $line = trim((string) preg_replace('/\s+/', ' ', $text));
        return $line === '' ? 'no answer' : $line;
    }
}
