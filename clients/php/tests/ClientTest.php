<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\Client;
use Plasm\Exception\ApiUnreachableException;
use Plasm\Exception\FileException;
use Plasm\Exception\InvalidOptionException;
use Plasm\Exception\NodeNotFoundException;
use Plasm\Exception\PlasmException;

/** What the client does before it sends anything; tests/php_client_test.ts runs it against real nodes. */
final class ClientTest extends TestCase
{
    private string $dir;
    /** @var array<string, string|false> */
    private array $env = [];

    protected function setUp(): void
    {
        $this->dir = sys_get_temp_dir() . '/plasm-php-' . bin2hex(random_bytes(6));
        mkdir($this->dir, 0700);
        foreach (['PLASM_HOME', 'XDG_DATA_HOME', 'HOME'] as $name) {
            $this->env[$name] = getenv($name);
        }
    }

    protected function tearDown(): void
    {
        foreach ($this->env as $name => $value) {
            putenv($value === false ? $name : "{$name}={$value}");
        }
        foreach (glob("{$this->dir}/{,.}*", GLOB_BRACE) ?: [] as $file) {
            if (is_file($file)) {
                unlink($file);
            }
        }
        rmdir($this->dir);
    }

    public function testSubmitOptionsBecomeTheApiFields(): void
    {
        $body = Client::submitBody("\0asm", [
            'cpu' => 1,
            'input' => 'Hello, World',
            'args' => ['-v', 'two words'],
            'env' => ['GREETING' => 'hi'],
            'memory' => '64MiB',
            'timeout' => 5,
            'max_output' => 1024,
            'fuel' => 1000,
            'replicas' => 2,
            'worker' => '12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf',
            'search_timeout' => '500ms',
            'require_boot_signer' => str_repeat('ab', 32),
            'min_boot_sequence' => 7,
        ]);
        $this->assertSame(
            '{"module":"AGFzbQ==","cpu":1,"input":"SGVsbG8sIFdvcmxk","args":["-v","two words"],'
            . '"env":{"GREETING":"hi"},"memory_bytes":67108864,"timeout_ms":5000,"max_output_bytes":1024,'
            . '"fuel":"1000","replicas":2,"worker":"12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf",'
            . '"search_timeout_ms":500,"require_boot_signer":"' . str_repeat('ab', 32) . '","min_boot_sequence":7}',
            json_encode($body, JSON_UNESCAPED_SLASHES),
        );
        $this->assertSame(['module' => 'AA=='], Client::submitBody("\0", []));
        $this->assertSame('{}', json_encode(Client::submitBody('', ['env' => []])['env']));
        $this->assertSame(1500, Client::submitBody('', ['timeout' => 1.5])['timeout_ms']);
        $this->assertSame(120000, Client::submitBody('', ['timeout' => '2m'])['timeout_ms']);
        $this->assertSame('9223372036854775807', Client::submitBody('', ['fuel' => '9223372036854775807'])['fuel']);
    }

    /** @return iterable<string, array{0: array<string, mixed>, 1: string}> */
    public static function badOptions(): iterable
    {
        yield 'unknown' => [['cpus' => 1], "Cannot submit job: unknown option 'cpus' (known: input, args, env, memory, timeout, max_output, fuel, cpu, replicas, worker, search_timeout, require_boot_signer, min_boot_sequence)"];
        yield 'cpu 0' => [['cpu' => 0], "Cannot submit job: option 'cpu' must be a positive integer"];
        yield 'cpu string' => [['cpu' => '1'], "Cannot submit job: option 'cpu' must be a positive integer"];
        yield 'args map' => [['args' => ['a' => 'b']], "Cannot submit job: option 'args' must be a list of strings"];
        yield 'args number' => [['args' => [1]], "Cannot submit job: option 'args' must be a list of strings"];
        yield 'env =' => [['env' => ['A=B' => 'c']], "Cannot submit job: option 'env' must be a map of names (without '=') to strings"];
        yield 'memory' => [['memory' => '64 parsecs'], "Cannot submit job: option 'memory' must be a size in bytes, or such as 64MiB"];
        yield 'timeout' => [['timeout' => '5 days'], "Cannot submit job: option 'timeout' must be seconds, or a duration such as 500ms, 30s or 2m"];
        yield 'fuel' => [['fuel' => -1], "Cannot submit job: option 'fuel' must be a whole number of instructions"];
        yield 'input' => [['input' => 42], "Cannot submit job: option 'input' must be a string of bytes"];
        yield 'boot signer' => [['require_boot_signer' => 'abc'], "Cannot submit job: option 'require_boot_signer' must be a 64-hex publisher key"];
        yield 'boot sequence' => [['min_boot_sequence' => 0], "Cannot submit job: option 'min_boot_sequence' must be a positive integer"];
    }

    /**
     * @dataProvider badOptions
     * @param array<string, mixed> $options
     */
    public function testBadOptionsAreRefusedWithOneLine(array $options, string $message): void
    {
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage($message);
        Client::submitBody('', $options);
    }

    public function testTheNodeIsFoundInTheStateDirAsSubmitFindsIt(): void
    {
        file_put_contents("{$this->dir}/api.json", '{"url":"http://127.0.0.1:4000/","pid":1}');
        file_put_contents("{$this->dir}/api.token", str_repeat('a', 64) . "\n");
        $this->assertSame('http://127.0.0.1:4000/', (new Client(stateDir: $this->dir))->endpoint());
        putenv("PLASM_HOME={$this->dir}");
        $this->assertSame('http://127.0.0.1:4000/', (new Client())->endpoint());
        putenv('PLASM_HOME');
        putenv('XDG_DATA_HOME=' . dirname($this->dir));
        try {
            new Client();
            $this->fail('found a node in $XDG_DATA_HOME/plasm');
        } catch (NodeNotFoundException $e) {
            $this->assertSame(
                "Cannot find the node's API in '" . dirname($this->dir) . "/plasm': no node has recorded one there (is start running with this state dir?)",
                $e->getMessage(),
            );
        }
        putenv('XDG_DATA_HOME');
        putenv('HOME=/nonexistent-home');
        try {
            new Client();
            $this->fail('found a node in $HOME');
        } catch (NodeNotFoundException $e) {
            $this->assertStringContainsString("'/nonexistent-home/.local/share/plasm'", $e->getMessage());
        }
        putenv('HOME');
        $this->expectException(NodeNotFoundException::class);
        $this->expectExceptionMessage('Cannot find a state dir: set PLASM_HOME (or HOME)');
        new Client();
    }

    public function testAnEndpointAndTokenNeedNoStateDir(): void
    {
        putenv('PLASM_HOME=/nonexistent');
        $client = new Client('http://127.0.0.1:4000', str_repeat('t', 32));
        $this->assertSame('http://127.0.0.1:4000/', $client->endpoint());
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage("Cannot use API URL 'ftp://x/': expected http://host:port/");
        new Client('ftp://x/', str_repeat('t', 32));
    }

    public function testAShortTokenIsRefused(): void
    {
        file_put_contents("{$this->dir}/api.json", '{"url":"http://127.0.0.1:4000/"}');
        file_put_contents("{$this->dir}/api.token", 'short');
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage("Cannot use API token in '{$this->dir}/api.token': too short");
        new Client(stateDir: $this->dir);
    }

    public function testAMissingModuleIsAFileException(): void
    {
        $client = new Client('http://127.0.0.1:9/', str_repeat('t', 32));
        $this->expectException(FileException::class);
        $this->expectExceptionMessage("Cannot read module '{$this->dir}/none.wasm': no such file");
        $client->submit("{$this->dir}/none.wasm");
    }

    public function testNoNodeListeningIsApiUnreachable(): void
    {
        // A port that was just free: nobody listens there.
        $server = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($server, false), ':'), 1);
        fclose($server);
        file_put_contents("{$this->dir}/m.wasm", "\0asm");
        $client = new Client("http://127.0.0.1:{$port}/", str_repeat('t', 32));
        try {
            $client->submit("{$this->dir}/m.wasm");
            $this->fail('submitted to nobody');
        } catch (ApiUnreachableException $e) {
            $this->assertInstanceOf(PlasmException::class, $e);
            $this->assertStringStartsWith("Cannot reach the node API at http://127.0.0.1:{$port}/: ", $e->getMessage());
            $this->assertStringNotContainsString("\n", $e->getMessage());
        }
    }

    public function testAMalformedJobIdIsRefusedBeforeAnyRequest(): void
    {
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage("Cannot use job id 'abc': expected 64 lowercase hex");
        (new Client('http://127.0.0.1:9/', str_repeat('t', 32)))->result('abc');
    }
}
