<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/**
 * Multiput\Memcached next to the real PECL extension (Debian's php-memcached):
 * - the same scenario run on both gives the same return values and result codes;
 * - both share keys during a migration: what one writes the other reads, with the same flags.
 */
final class PeclCompatibilityTest extends TestCase
{
    protected function setUp(): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed (apt-get install php-memcached)');
        }
    }

    /** @param array<int, mixed> $options */
    private static function pair(array $options = [], ?array $servers = null): array
    {
        $servers ??= [Servers::$addrs[0], Servers::$addrs[1]];
        $out = [];
        foreach ([new \Memcached(), new MultiputMemcached()] as $m) {
            if ($m instanceof MultiputMemcached) {
                // A fleet where PECL apps read the same keys: PECL's flags, explicitly.
                TestCase::assertTrue($m->setOption(MultiputMemcached::OPT_MULTIPUT_CONVENTION, 'pecl'));
            }
            $m->setOption(\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
            foreach ($options as $k => $v) {
                TestCase::assertTrue($m->setOption($k, $v), get_class($m) . " setOption($k)");
            }
            foreach ($servers as $s) {
                [$h, $p] = explode(':', $s);
                $m->addServer($h, (int) $p);
            }
            $out[] = $m;
        }
        return $out;
    }

    /** A scenario: returns a log of [return value, result code] of each call. */
    private static function scenario(object $m, string $p): array
    {
        $log = [];
        $r = function ($v) use ($m, &$log) {
            $log[] = [$v, $m->getResultCode(), $m->getResultMessage()];
        };
        $r($m->get("{$p}nokey"));
        $r($m->set("{$p}a", 1));
        $r($m->add("{$p}a", 1));
        $r($m->add("{$p}b", 'bee', 100));
        $r($m->getMulti(["{$p}nokey1", "{$p}nokey2"]));
        $r($m->getMulti(["{$p}a", "{$p}nokey2", "{$p}b"]));
        $r($m->getMulti(["{$p}a", "{$p}nokey2"], \Memcached::GET_PRESERVE_ORDER));
        $x = $m->get("{$p}a", null, \Memcached::GET_EXTENDED);
        $r(is_array($x) ? [$x['value'], $x['flags'], is_int($x['cas'])] : $x);
        $r($m->replace("{$p}zz", 1));
        $r($m->replace("{$p}a", 2.5));
        $r($m->get("{$p}a"));
        $r($m->delete("{$p}zz"));
        $r($m->deleteMulti(["{$p}a", "{$p}zz"]));
        $r($m->increment("{$p}cnt"));
        $m->set("{$p}cnt", 5);
        $r($m->increment("{$p}cnt", 3));
        $r($m->decrement("{$p}cnt", 10));
        $r($m->touch("{$p}cnt", 10));
        $r($m->touch("{$p}nothing", 10));
        $r($m->cas(123, "{$p}nope", 1));
        $m->set("{$p}cc", 'v');
        $x = $m->get("{$p}cc", null, \Memcached::GET_EXTENDED);
        $r($m->cas($x['cas'] + 1, "{$p}cc", 1));
        $r($m->cas($x['cas'], "{$p}cc", 2));
        $r($m->get("{$p}cc"));
        if (!$m->getOption(\Memcached::OPT_BINARY_PROTOCOL)) {
            // Over the binary protocol PECL accepts keys with spaces; multiput never does
            // (a documented difference).
            $r($m->get('bad key'));
        }
        $r($m->set(str_repeat('k', 251), 1));
        $r($m->set('', 1));
        $r($m->set("{$p}big", random_bytes(2 * 1024 * 1024)));
        $vals = [
            'arr' => ['x' => 1, 'y' => [true, null]], 'nul' => null, 'f' => 0.1, 'f2' => 1e25,
            'f3' => -0.0, 'f4' => 1.0, 't' => true, 'fa' => false, 's' => 'str', 'i' => -7,
            'e' => '', 'obj' => new ArrayObject([1]), 'n1' => '123', 'long' => str_repeat('abc', 2000),
        ];
        foreach ($vals as $k => $v) {
            $m->set("{$p}$k", $v);
        }
        $r($m->getMulti(array_map(fn ($k) => "{$p}$k", array_keys($vals))));
        $r($m->setMulti(["{$p}m1" => 1, "{$p}m2" => 'two', "{$p}m3" => [3]], 60));
        $r($m->getMulti(["{$p}m1", "{$p}m2", "{$p}m3"]));
        // Rows come in server reply order: compare them sorted.
        $sorted = function (array|false $rows): array|false {
            if ($rows !== false) {
                usort($rows, fn ($x, $y) => strcmp($x['key'], $y['key']));
                $rows = array_map(function ($row) {
                    if (isset($row['cas'])) {
                        $row['cas'] = is_int($row['cas']);
                    }
                    return $row;
                }, $rows);
            }
            return $rows;
        };
        $r($m->getDelayed(["{$p}m1", "{$p}m2", "{$p}m3"]));
        $first = $m->fetch();
        $r($sorted(array_merge([$first], $m->fetchAll())));
        $r($m->fetch());
        $r($m->getDelayed(["{$p}m1", "{$p}m2"], true));
        $r($sorted($m->fetchAll()));
        $r($m->getMulti([]));
        $r(count($m->getServerList()));
        $r(array_keys($m->getVersion()));
        if (!$m->getOption(\Memcached::OPT_BINARY_PROTOCOL)) {
            $r($m->checkKey('ok') && !$m->checkKey('not ok'));
        }
        // Read-through cache callback.
        $r($m->get("{$p}rt", function ($memc, $key, &$value) {
            $value = "loaded $key";
            return true;
        }));
        $r($m->get("{$p}rt"));
        return $log;
    }

    /** @return array<string, array{array<int, mixed>}> */
    public function optionSets(): array
    {
        return [
            'defaults' => [[]],
            'no compression' => [[\Memcached::OPT_COMPRESSION => false]],
            'zlib compression' => [[\Memcached::OPT_COMPRESSION_TYPE => \Memcached::COMPRESSION_ZLIB]],
            'json serializer' => [[\Memcached::OPT_SERIALIZER => \Memcached::SERIALIZER_JSON]],
            'json array serializer' => [[\Memcached::OPT_SERIALIZER => \Memcached::SERIALIZER_JSON_ARRAY]],
            'igbinary' => [[\Memcached::OPT_SERIALIZER => \Memcached::SERIALIZER_IGBINARY]],
            'prefix and user flags' => [[\Memcached::OPT_PREFIX_KEY => 'app:', \Memcached::OPT_USER_FLAGS => 7]],
            'binary protocol, timeouts' => [[
                \Memcached::OPT_BINARY_PROTOCOL => true,
                \Memcached::OPT_CONNECT_TIMEOUT => 500,
                \Memcached::OPT_POLL_TIMEOUT => 500,
                \Memcached::OPT_RETRY_TIMEOUT => 1,
                \Memcached::OPT_TCP_NODELAY => true,
                \Memcached::OPT_SERVER_FAILURE_LIMIT => 2,
                \Memcached::OPT_REMOVE_FAILED_SERVERS => true,
            ]],
        ];
    }

    /**
     * @dataProvider optionSets
     * @param array<int, mixed> $options
     */
    public function testSameResultsAsPecl(array $options): void
    {
        [$pecl, $ours] = self::pair($options);
        $id = uniqid();
        $a = self::scenario($pecl, "pecl:$id:");
        $b = self::scenario($ours, "mp:$id:");
        $strip = fn ($log, $p) => json_decode(str_replace($p, '', json_encode($log, JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION)), true);
        $a = $strip($a, "pecl:$id:");
        $b = $strip($b, "mp:$id:");
        foreach ($a as $i => $step) {
            $this->assertEquals($step, $b[$i], "step $i differs: PECL " . json_encode($step) . ' vs multiput ' . json_encode($b[$i]));
        }
        foreach ($options as $opt => $v) {
            $this->assertEquals($pecl->getOption($opt), $ours->getOption($opt), "getOption($opt)");
        }
    }

    /** @return array<string, mixed> */
    private static function migrationValues(): array
    {
        return [
            'string' => 'hello', 'binary' => "\x00\x01\xff", 'empty' => '', 'int' => 123456789,
            'negint' => -5, 'zero' => 0, 'float' => 3.14159, 'tiny' => 1.5e-7, 'huge' => 1e300,
            'inf' => -INF, 'true' => true, 'false' => false, 'null' => null,
            'array' => ['k' => 'v', 'n' => [1, 2, 3]], 'object' => new ArrayObject(['a' => 1]),
            'compressible' => str_repeat('compress me ', 1000), // > 2000 bytes: compressed
            'incompressible' => base64_encode(random_bytes(3000)),
            'compressible array' => array_fill(0, 500, 'same string'),
        ];
    }

    /**
     * @dataProvider optionSets
     * @param array<int, mixed> $options
     */
    public function testPeclWritesMultiputReads(array $options): void
    {
        [$pecl, $ours] = self::pair($options);
        $p = 'mig1:' . uniqid() . ':';
        $serializer = $options[\Memcached::OPT_SERIALIZER] ?? 1;
        foreach (self::migrationValues() as $k => $v) {
            $this->assertTrue($pecl->set($p . str_replace(' ', '_', $k), $v), $k);
        }
        foreach (self::migrationValues() as $k => $v) {
            $key = $p . str_replace(' ', '_', $k);
            $expected = $pecl->get($key);
            $this->assertSame(\Memcached::RES_SUCCESS, $pecl->getResultCode());
            $got = $ours->get($key);
            $this->assertSame(MultiputMemcached::RES_SUCCESS, $ours->getResultCode(), "$k: " . $ours->getLastErrorMessage());
            $this->assertEquals($expected, $got, "$k (serializer $serializer)");
            $this->assertSame(gettype($expected), gettype($got), $k);
        }
        $keys = array_map(fn ($k) => $p . str_replace(' ', '_', $k), array_keys(self::migrationValues()));
        $this->assertEquals($pecl->getMulti($keys), $ours->getMulti($keys));
    }

    /**
     * @dataProvider optionSets
     * @param array<int, mixed> $options
     */
    public function testMultiputWritesPeclReads(array $options): void
    {
        [$pecl, $ours] = self::pair($options);
        $p = 'mig2:' . uniqid() . ':';
        foreach (self::migrationValues() as $k => $v) {
            $this->assertTrue($ours->set($p . str_replace(' ', '_', $k), $v), $k);
        }
        foreach (self::migrationValues() as $k => $v) {
            $key = $p . str_replace(' ', '_', $k);
            $got = $pecl->get($key);
            $this->assertSame(\Memcached::RES_SUCCESS, $pecl->getResultCode(), "$k: " . $pecl->getResultMessage());
            $this->assertEquals($ours->get($key), $got, $k);
        }
        // CAS tokens and counters are shared too.
        $ours->set("{$p}ctr", 10);
        $this->assertSame(11, $pecl->increment("{$p}ctr"));
        $this->assertSame(13, $ours->increment("{$p}ctr", 2));
        $x = $pecl->get("{$p}string", null, \Memcached::GET_EXTENDED);
        $this->assertTrue($ours->cas($x['cas'], "{$p}string", 'changed by multiput'));
        $this->assertSame('changed by multiput', $pecl->get("{$p}string"));
    }

    /**
     * With OPT_BINARY_PROTOCOL, PECL stores keys with spaces and control bytes; multiput sends
     * them base64-encoded over meta, which memcached decodes to the same raw key: each client
     * reads, replaces and deletes what the other wrote, one key at a time and in multi-key calls.
     */
    public function testBinaryProtocolKeysAreSharedBothWays(): void
    {
        [$pecl, $ours] = self::pair([\Memcached::OPT_BINARY_PROTOCOL => true, \Memcached::OPT_COMPRESSION => false]);
        $p = 'bink:' . uniqid() . ':';
        $keys = ["{$p}with space", "{$p}tab\there", "{$p}nul\0byte", "{$p}cr\rbell\x07", "{$p}del\x7f"];
        foreach ($keys as $i => $k) {
            $this->assertTrue($pecl->set($k, "pecl $i"), bin2hex($k) . ': ' . $pecl->getResultMessage());
            $this->assertSame("pecl $i", $ours->get($k), bin2hex($k) . ': ' . $ours->getResultMessage());
            $this->assertTrue($ours->set($k, "ours $i"));
            $this->assertSame("ours $i", $pecl->get($k), bin2hex($k));
        }
        $expected = [];
        foreach ($keys as $i => $k) {
            $expected[$k] = "ours $i";
        }
        $this->assertEquals($expected, $ours->getMulti($keys)); // (order: by server, as PECL's)
        $this->assertEquals($expected, $pecl->getMulti($keys));
        $this->assertSame($expected, $ours->getMulti($keys, \Memcached::GET_PRESERVE_ORDER));
        $this->assertTrue($ours->setMulti(array_map(fn ($v) => "$v again", $expected)));
        $this->assertSame("ours 0 again", $pecl->get($keys[0]));
        $this->assertTrue($pecl->delete($keys[1]));
        $this->assertFalse($ours->get($keys[1]));
        $this->assertSame(MultiputMemcached::RES_NOTFOUND, $ours->getResultCode());
        $this->assertSame(array_fill_keys([$keys[0], $keys[2]], true), $ours->deleteMulti([$keys[0], $keys[2]]));
        $this->assertFalse($pecl->get($keys[2]));
        // A newline is refused by both, before anything is sent.
        $this->assertFalse($ours->set("{$p}new\nline", 'x'));
        $this->assertSame(MultiputMemcached::RES_BAD_KEY_PROVIDED, $ours->getResultCode());
        $this->assertFalse($pecl->set("{$p}new\nline", 'x'));
        $this->assertSame(\Memcached::RES_BAD_KEY_PROVIDED, $pecl->getResultCode());
    }

    /** Both clients store the same bytes and flags for the same value (compression aside). */
    public function testSameFlagsAndBytesOnTheWire(): void
    {
        [$pecl, $ours] = self::pair([\Memcached::OPT_COMPRESSION => false, \Memcached::OPT_USER_FLAGS => 3], [Servers::$addrs[0]]);
        $addr = Servers::$addrs[0];
        foreach (self::migrationValues() as $k => $v) {
            $k = str_replace(' ', '_', $k);
            $pecl->set("wire:pecl:$k", $v);
            $ours->set("wire:mp:$k", $v);
            $a = Servers::rawGet($addr, "wire:pecl:$k");
            $b = Servers::rawGet($addr, "wire:mp:$k");
            $this->assertSame($a, $b, "$k: PECL stored " . json_encode([$a[0], bin2hex(substr($a[1], 0, 64))]));
        }
    }

    /** PECL's fastlz (its default) and zlib compressed values are read; ours are zlib. */
    public function testCompressedValuesBothWays(): void
    {
        $addr = Servers::$addrs[0];
        $value = str_repeat('fastlz or zlib? ', 500);
        foreach ([\Memcached::COMPRESSION_FASTLZ => 0x50, \Memcached::COMPRESSION_ZLIB => 0x30] as $type => $bits) {
            [$pecl, $ours] = self::pair([\Memcached::OPT_COMPRESSION_TYPE => $type], [$addr]);
            $k = "z:$type:" . uniqid();
            $pecl->set($k, $value);
            $this->assertSame($bits, Servers::rawGet($addr, $k)[0] & 0xf0, "PECL compressed with type $type");
            $this->assertSame($value, $ours->get($k));
            $ours->set("$k:mp", $value);
            $raw = Servers::rawGet($addr, "$k:mp");
            $this->assertSame(0x30, $raw[0] & 0xf0, 'multiput compresses with zlib');
            $this->assertLessThan(strlen($value) / 4, strlen($raw[1]));
            $this->assertSame($value, $pecl->get("$k:mp"));
        }
        // A corrupt compressed value is a payload failure, not a crash.
        Servers::rawSet($addr, 'z:corrupt', 0x50, "\xff\xff\x00\x00garbage");
        [, $ours] = self::pair([], [$addr]);
        $this->assertFalse($ours->get('z:corrupt'));
        $this->assertSame(MultiputMemcached::RES_PAYLOAD_FAILURE, $ours->getResultCode());
    }

    /** A PECL app on a 3-server fleet and multiput agree on which server holds each key. */
    public function testSharedFleetPlacement(): void
    {
        [$pecl, $ours] = self::pair([\Memcached::OPT_COMPRESSION => false], array_slice(Servers::$addrs, 0, 3));
        $p = 'fleet:' . uniqid() . ':';
        for ($i = 0; $i < 300; $i++) {
            $pecl->set("$p$i", $i);
        }
        $found = 0;
        for ($i = 0; $i < 300; $i++) {
            $found += $ours->get("$p$i") === $i ? 1 : 0;
            $srv = $ours->getServerByKey("$p$i");
            $this->assertNotNull(Servers::rawGet("{$srv['host']}:{$srv['port']}", "$p$i"));
        }
        $this->assertSame(300, $found);
    }
}
