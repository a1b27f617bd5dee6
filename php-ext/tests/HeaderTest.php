<?php

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

/**
 * A header from another version than the library is refused with a clear error when the
 * library loads, before any call could have the library write past a PHP-allocated buffer.
 * Each case runs in a fresh PHP process with MULTIPUT_FFI_HEADER pointing at a doctored copy.
 */
final class HeaderTest extends TestCase
{
    /** [exit code, output] of a PHP process that creates a client with $header. */
    private function load(string $header): array
    {
        $script = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
            . 'try { new Multiput\Client(["servers" => "127.0.0.1:1"]); echo "loaded"; }'
            . ' catch (Multiput\Exception $e) { echo $e->getMessage(); exit(3); }';
        $env = getenv();
        $env['MULTIPUT_FFI_HEADER'] = $header;
        $proc = proc_open([PHP_BINARY, '-r', $script], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env);
        $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($proc), $out];
    }

    private function doctored(string $from, string $to): string
    {
        $h = file_get_contents(dirname(__DIR__, 2) . '/ffi/include/multiput.h');
        $this->assertStringContainsString($from, $h);
        $path = tempnam(sys_get_temp_dir(), 'multiput-h');
        file_put_contents($path, str_replace($from, $to, $h));
        return $path;
    }

    public function testTheShippedHeaderLoads(): void
    {
        [$rc, $out] = $this->load(dirname(__DIR__, 2) . '/ffi/include/multiput.h');
        $this->assertSame([0, 'loaded'], [$rc, $out]);
    }

    public function testAHeaderWithAnotherBufferLayoutIsRefused(): void
    {
        $path = $this->doctored("  size_t deferred;\n", '');
        try {
            [$rc, $out] = $this->load($path);
        } finally {
            unlink($path);
        }
        $this->assertSame(3, $rc, $out);
        $this->assertStringContainsString('does not match the library', $out);
    }

    public function testAHeaderOlderThanTheLibraryIsRefused(): void
    {
        $path = $this->doctored('size_t multiput_abi_buffer_size(void);', '');
        try {
            [$rc, $out] = $this->load($path);
        } finally {
            unlink($path);
        }
        $this->assertSame(3, $rc, $out);
        $this->assertStringContainsString('older than the library', $out);
    }
}
