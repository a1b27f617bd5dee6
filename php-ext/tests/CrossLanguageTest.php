<?php

declare(strict_types=1);

use Multiput\Client;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/**
 * PHP reads what Rust and Python wrote, and the reverse:
 * - Rust: the `multiput` CLI ($MULTIPUT_CLI, else target/debug/multiput; build it with
 *   `cargo build -p multiput-cli`), plain and with --replicas;
 * - Python: the `multiput` package, when `$MULTIPUT_PYTHON -c "import multiput"` works
 *   (default: the repo's .venv/bin/python); skipped otherwise;
 * - every binding: tests/vectors/cross_language.json, the exact bytes PHP stores for each
 *   typed value (regenerate with MULTIPUT_WRITE_VECTORS=1).
 */
final class CrossLanguageTest extends TestCase
{
    private static function cli(): string
    {
        $cli = getenv('MULTIPUT_CLI') ?: dirname(__DIR__, 2) . '/target/debug/multiput';
        if (!is_executable($cli)) {
            self::markTestSkipped("the multiput CLI is not built ($cli): cargo build -p multiput-cli");
        }
        return $cli;
    }

    /** @return array{int, string, string} [exit status, stdout, stderr] */
    private static function exec(array $cmd, ?string $stdin = null): array
    {
        $p = proc_open($cmd, [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        if ($stdin !== null) {
            fwrite($pipes[0], $stdin);
        }
        fclose($pipes[0]);
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($p), $out, $err];
    }

    private static function servers(): string
    {
        return implode(',', array_slice(Servers::$addrs, 0, 3));
    }

    /**
     * Multiput\Memcached writes multiput's flags by default (docs/interop.md) and PECL's on
     * request; it reads PECL's values either way, and refuses a Python pickle by name.
     */
    public function testDefaultConventionIsMultiputsAndPeclIsAChoice(): void
    {
        $addr = Servers::$addrs[0];
        [$h, $port] = explode(':', $addr);
        $p = 'conv:' . uniqid() . ':';
        $m = new \Multiput\Memcached();
        $m->addServer($h, (int) $port);
        $this->assertTrue($m->set("{$p}int", 42));
        $this->assertSame([0xa000, '42'], Servers::rawGet($addr, "{$p}int"));
        $this->assertTrue($m->set("{$p}text", 'héllo'));
        $this->assertSame([0x9000, 'héllo'], Servers::rawGet($addr, "{$p}text"));
        $pecl = new \Multiput\Memcached();
        $pecl->addServer($h, (int) $port);
        $this->assertTrue($pecl->setOption(\Multiput\Memcached::OPT_MULTIPUT_CONVENTION, 'pecl'));
        $this->assertTrue($pecl->set("{$p}pecl", 42));
        $this->assertSame([1, '42'], Servers::rawGet($addr, "{$p}pecl"));
        $this->assertSame(42, $m->get("{$p}pecl"));
        $this->assertSame(42, $pecl->get("{$p}int"));
        // A Python pickle (pylibmc's flags 1): false + PAYLOAD FAILURE naming the pickle.
        Servers::rawSet($addr, "{$p}pickle", 1, "\x80\x04]\x94.");
        $this->assertFalse($m->get("{$p}pickle"));
        $this->assertSame(\Multiput\Memcached::RES_PAYLOAD_FAILURE, $m->getResultCode());
        $this->assertStringContainsString('pickle', $m->getLastErrorMessage());
        // An unknown convention is refused like any invalid option value.
        $this->assertFalse(@$m->setOption(\Multiput\Memcached::OPT_MULTIPUT_CONVENTION, 'ruby'));
    }

    public function testRustCliReadsWhatPhpWroteReplicated(): void
    {
        $cli = self::cli();
        $c = new Client(['servers' => self::servers(), 'replicas' => 2]);
        $p = 'xl:php:' . uniqid() . ':';
        $cases = [
            'text' => ['héllo from PHP', 'type=text', 'héllo from PHP'],
            'int' => [-42, 'type=int', '-42'],
            'bool' => [true, 'type=bool', "\x01"],
            'float' => [2.5, 'type=float', pack('E', 2.5)],
            'array' => [['a' => 1], 'type=serialized format=2', serialize(['a' => 1])],
        ];
        foreach ($cases as $k => [$value, $type, $payload]) {
            $c->set($p . $k, $value);
            [$rc, $out, $err] = self::exec([$cli, '--servers', self::servers(), '--replicas', '2', 'get', '-v', $p . $k]);
            $this->assertSame(0, $rc, $err);
            $this->assertSame($payload, $out, $k);
            $this->assertStringContainsString("enveloped=yes $type", $err, $k);
        }
    }

    public function testPhpReadsWhatTheRustCliWrote(): void
    {
        $cli = self::cli();
        $p = 'xl:rust:' . uniqid() . ':';
        [$rc, , $err] = self::exec([$cli, '--servers', self::servers(), '--replicas', '2', 'set', "{$p}r", 'written by Rust']);
        $this->assertSame(0, $rc, $err);
        [$rc, , $err] = self::exec([$cli, '--servers', self::servers(), 'set', "{$p}plain", 'plain from Rust']);
        $this->assertSame(0, $rc, $err);
        $r = new Client(['servers' => self::servers(), 'replicas' => 2]);
        $this->assertSame('written by Rust', $r->get("{$p}r"));
        $plain = new Client(['servers' => self::servers()]);
        $this->assertSame('plain from Rust', $plain->get("{$p}plain"));
        $m = new Multiput\Memcached();
        $m->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true); // the CLI's default ring
        foreach (array_slice(Servers::$addrs, 0, 3) as $s) {
            [$h, $port] = explode(':', $s);
            $m->addServer($h, (int) $port);
        }
        $this->assertSame('plain from Rust', $m->get("{$p}plain"));
        if (extension_loaded('memcached')) {
            $pecl = new \Memcached();
            $pecl->setOption(\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
            foreach (array_slice(Servers::$addrs, 0, 3) as $s) {
                [$h, $port] = explode(':', $s);
                $pecl->addServer($h, (int) $port);
            }
            $this->assertSame('plain from Rust', $pecl->get("{$p}plain"), 'PECL finds the key where the Rust CLI put it');
        }
        // And the CLI's ring agrees with PHP's placement.
        [$rc, $out] = self::exec([$cli, 'ring', '--servers', self::servers(), "{$p}plain"]);
        $this->assertSame(0, $rc);
        $this->assertSame("{$p}plain\t" . $plain->serverFor("{$p}plain") . "\n", $out);
    }

    private static function python(): string
    {
        $py = getenv('MULTIPUT_PYTHON') ?: dirname(__DIR__, 2) . '/.venv/bin/python';
        if (!is_executable($py)) {
            self::markTestSkipped("no Python at $py (set MULTIPUT_PYTHON)");
        }
        [$rc, , $err] = self::exec([$py, '-c', 'import multiput']);
        if ($rc !== 0) {
            self::markTestSkipped("`import multiput` fails in $py (build the Python binding: pip install ./python): " . trim((string) strrchr(trim($err), "\n")));
        }
        return $py;
    }

    public function testPythonAndPhpReadEachOther(): void
    {
        $py = self::python();
        $p = 'xl:py:' . uniqid() . ':';
        $php = new Client(['servers' => self::servers(), 'replicas' => 2, 'serializer' => 3]);
        $fromPhp = ['text' => 'héllo', 'int' => 7, 'float' => 0.25, 'bool' => false, 'json' => ['a' => [1, 2]]];
        foreach ($fromPhp as $k => $v) {
            $php->set("{$p}php:$k", $v);
        }
        $script = <<<'PY'
import json, sys, multiput
servers, prefix = sys.argv[1], sys.argv[2]
c = multiput.Client(servers, replicas=2)
for k, v in {"text": "héllo", "int": 7, "float": 0.25, "bool": False, "bytes": b"\x00\xff"}.items():
    c.set(prefix + "py:" + k, v)
got = {}
for k in ["text", "int", "float", "bool", "json"]:
    v = c.get(prefix + "php:" + k)
    got[k] = [type(v).__name__, v]
print(json.dumps(got))
PY;
        [$rc, $out, $err] = self::exec([$py, '-c', $script, self::servers(), $p]);
        $this->assertSame(0, $rc, $err);
        $got = json_decode($out, true);
        $this->assertSame(['str', 'héllo'], $got['text']);
        $this->assertSame(['int', 7], $got['int']);
        $this->assertSame(['float', 0.25], $got['float']);
        $this->assertSame(['bool', false], $got['bool']);
        $this->assertSame(['a' => [1, 2]], $got['json'][1]);
        $this->assertSame('héllo', $php->get("{$p}py:text"));
        $this->assertSame(7, $php->get("{$p}py:int"));
        $this->assertSame(0.25, $php->get("{$p}py:float"));
        $this->assertFalse($php->get("{$p}py:bool"));
        $this->assertSame("\x00\xff", $php->get("{$p}py:bytes"));
    }

    /**
     * The bytes PHP stores for each value, as a vector file other bindings check against
     * (tests/vectors/cross_language.json): replicated values in the envelope (stamp bytes 8..24
     * vary per write and are zeroed in the file), plain values with multiput's own flags (the
     * default) and with PECL's flags (convention "pecl").
     */
    public function testCrossLanguageVectors(): void
    {
        $file = __DIR__ . '/vectors/cross_language.json';
        $addr = Servers::$addrs[0];
        $values = [
            'text' => ['héllo', 'text', 'héllo'],
            'binary string' => ["\xff\x00", 'bytes', base64_encode("\xff\x00")],
            'int' => [-42, 'int', -42],
            'float' => [0.1, 'float', 0.1],
            'true' => [true, 'bool', true],
            'php array' => [['a' => 1], 'serialized', serialize(['a' => 1])],
            'json array' => [['a' => 1], 'serialized', '{"a":1}'],
        ];
        $cases = [];
        $modes = ['enveloped' => [1, 'multiput'], 'plain-multiput' => [0, 'multiput'], 'plain-php' => [0, 'pecl']];
        foreach ($modes as $mode => [$replicas, $convention]) {
            foreach ($values as $name => [$v, $type, $expect]) {
                $serializer = str_starts_with($name, 'json') ? 3 : 1;
                $c = new Client(['servers' => $addr, 'replicas' => $replicas, 'serializer' => $serializer, 'convention' => $convention]);
                $key = 'vec:' . uniqid();
                $c->set($key, $v);
                [$flags, $raw] = Servers::rawGet($addr, $key);
                if ($replicas) {
                    $raw = substr($raw, 0, 8) . str_repeat("\0", 16) . substr($raw, 24);
                }
                $cases[] = [
                    'name' => $name,
                    'mode' => $mode,
                    'flags' => $flags,
                    'raw_hex' => bin2hex($raw),
                    'type' => $type,
                    'value' => $expect,
                ];
                $got = $c->get($key);
                $this->assertSame($v, is_object($got) ? (array) $got : $got, "$mode $name"); // JSON objects come back as stdClass
            }
        }
        $doc = [
            'description' => 'What the PHP binding stores for typed values. mode "enveloped": replicated writes '
                . '(docs/envelope.md; stamp bytes 8..24 zeroed here), flags 0. mode "plain-multiput": multiput\'s own '
                . 'flags, the default (core/src/logic/values/portable.rs). mode "plain-php": PECL memcached flags '
                . '(convention "pecl"). "value" is the decoded value (bytes: base64; serialized: the serializer '
                . 'output). Generated by php-ext/tests/CrossLanguageTest.php (MULTIPUT_WRITE_VECTORS=1).',
            'cases' => $cases,
        ];
        $json = json_encode($doc, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION) . "\n";
        if (getenv('MULTIPUT_WRITE_VECTORS') || !is_file($file)) {
            @mkdir(dirname($file), 0777, true);
            file_put_contents($file, $json);
        }
        $this->assertSame(json_decode(file_get_contents($file), true)['cases'], json_decode($json, true)['cases'], 'PHP stores what the vectors say');
    }
}
