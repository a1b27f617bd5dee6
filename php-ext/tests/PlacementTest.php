<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use PHPUnit\Framework\TestCase;

/**
 * Keys land where PECL memcached puts them under the same options (its default modula
 * distribution, OPT_LIBKETAMA_COMPATIBLE, DISTRIBUTION_CONSISTENT + HASH_MD5): compared with
 * the real extension's getServerByKey() and with the libmemcached vectors. Nothing connects.
 */
final class PlacementTest extends TestCase
{
    /** @return array<string, array{list<array{string, int, int}>}> */
    public function serverLists(): array
    {
        return [
            'one server' => [[['10.0.0.1', 11211, 0]]],
            'three, default port' => [[['10.0.0.1', 11211, 0], ['10.0.0.2', 11211, 0], ['10.0.0.3', 11211, 0]]],
            'custom ports' => [[['127.0.0.1', 21211, 0], ['127.0.0.1', 21212, 0], ['127.0.0.1', 21213, 0], ['127.0.0.1', 21214, 0]]],
            'weights' => [[['192.0.2.1', 11211, 3], ['192.0.2.2', 11212, 1], ['192.0.2.3', 11211, 7], ['192.0.2.4', 11213, 2]]],
            'host names' => [[['cache-a.example.com', 11211, 0], ['cache-b.example.com', 11300, 0], ['localhost', 11211, 0]]],
            'eight servers' => [array_map(static fn ($i) => ["198.51.100.$i", 11211 + $i % 3, $i % 4], range(1, 8))],
        ];
    }

    /** @return array<string, array{list<array{string, int, int}>, array<int, int|bool>}> */
    public function serverListsAndOptions(): array
    {
        $out = [];
        $placements = [
            'ketama' => [\Memcached::OPT_LIBKETAMA_COMPATIBLE => true],
            'defaults (modula)' => [],
            'consistent md5' => [\Memcached::OPT_DISTRIBUTION => \Memcached::DISTRIBUTION_CONSISTENT, \Memcached::OPT_HASH => \Memcached::HASH_MD5],
        ];
        foreach ($this->serverLists() as $name => [$servers]) {
            foreach ($placements as $p => $options) {
                $out["$name, $p"] = [$servers, $options];
            }
        }
        return $out;
    }

    /**
     * @dataProvider serverListsAndOptions
     * @param list<array{string, int, int}> $servers
     * @param array<int, int|bool> $options
     */
    public function testSameServerAsPeclGetServerByKey(array $servers, array $options): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed (apt-get install php-memcached)');
        }
        $pecl = new \Memcached();
        $ours = new MultiputMemcached();
        foreach ($options as $k => $v) {
            $this->assertTrue($pecl->setOption($k, $v));
            $this->assertTrue($ours->setOption($k, $v));
        }
        $this->assertSame($pecl->getOption(\Memcached::OPT_DISTRIBUTION), $ours->getOption(\Memcached::OPT_DISTRIBUTION));
        $this->assertSame($pecl->getOption(\Memcached::OPT_HASH), $ours->getOption(\Memcached::OPT_HASH));
        foreach ($servers as [$h, $p, $w]) {
            $pecl->addServer($h, $p, $w);
            $ours->addServer($h, $p, $w);
        }
        $mismatch = 0;
        $n = 3000;
        for ($i = 0; $i < $n; $i++) {
            $key = match ($i % 4) {
                0 => "user:$i",
                1 => "session:" . md5((string) $i),
                2 => "k$i",
                default => "caf\u{e9}:$i:\u{1f600}",
            };
            $a = $pecl->getServerByKey($key);
            $b = $ours->getServerByKey($key);
            if ($a === false || $b === false || [$a['host'], $a['port']] !== [$b['host'], $b['port']]) {
                $mismatch++;
            }
        }
        $this->assertSame(0, $mismatch, "$mismatch of $n keys placed differently from PECL");
        $this->assertSame(MultiputMemcached::RES_SUCCESS, $ours->getResultCode());
    }

    /** @return array<string, array{string}> */
    public function vectorFiles(): array
    {
        // The repo's ketama vectors (made by libmemcached, scripts/gen-ketama-vectors.sh) and
        // modula vectors (made with php-memcached's getServerByKey()); MULTIPUT_VECTORS adds a
        // folder of more.
        $extra = getenv('MULTIPUT_VECTORS');
        $files = array_merge($extra ? (glob("$extra/*.json") ?: []) : [], glob(dirname(__DIR__, 2) . '/docs/vectors/ring/*.json') ?: []);
        if ($files === []) {
            return ['(no vectors found)' => ['']];
        }
        $out = [];
        foreach ($files as $f) {
            $out[basename($f)] = [$f];
        }
        return $out;
    }

    /** @dataProvider vectorFiles */
    public function testSharedLibmemcachedVectors(string $file): void
    {
        if ($file === '') {
            $this->fail('no ring vectors found in docs/vectors/ring');
        }
        $v = json_decode(file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
        $m = new MultiputMemcached();
        if ($v['mode'] === 'ketama_md5') {
            $this->assertTrue($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_CONSISTENT));
            $this->assertTrue($m->setOption(MultiputMemcached::OPT_HASH, MultiputMemcached::HASH_MD5));
        } elseif ($v['mode'] === 'libketama_compatible') {
            $this->assertTrue($m->setOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE, true));
        } else {
            $this->assertSame('modula', $v['mode']); // PECL's default: no option at all
        }
        foreach ($v['servers'] as $s) {
            $m->addServer($s['host'], $s['port'], $s['weight']);
        }
        $bad = [];
        foreach ($v['cases'] as $c) {
            $got = $m->getServerByKey($c['key']);
            $addr = $got === false ? 'false' : "{$got['host']}:{$got['port']}";
            if ($addr !== $c['server']) {
                $bad[] = "{$c['key']} -> $addr, want {$c['server']}";
            }
        }
        $this->assertSame([], array_slice($bad, 0, 5), count($bad) . ' of ' . count($v['cases']) . ' cases differ');
        $this->assertGreaterThanOrEqual(900, count($v['cases']));
    }

    public function testUnsupportedDistributionsAreRefused(): void
    {
        $m = new MultiputMemcached();
        // PECL's defaults, and modula is a placement multiput reproduces.
        $this->assertSame(0, $m->getOption(MultiputMemcached::OPT_DISTRIBUTION));
        $this->assertSame(0, $m->getOption(MultiputMemcached::OPT_HASH));
        $this->assertSame(0, $m->getOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE));
        $this->assertTrue($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_MODULA));
        $this->assertFalse($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_VIRTUAL_BUCKET));
        $this->assertSame(MultiputMemcached::RES_NOT_SUPPORTED, $m->getResultCode());
        // A pair that is neither: refused when the client is used, never placed elsewhere.
        $this->assertTrue($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_CONSISTENT));
        $m->addServer('192.0.2.1', 11211);
        $m->addServer('192.0.2.2', 11211);
        $this->assertFalse($m->getServerByKey('k'));
        $this->assertSame(MultiputMemcached::RES_NOT_SUPPORTED, $m->getResultCode());
        $this->assertTrue($m->setOption(MultiputMemcached::OPT_HASH, MultiputMemcached::HASH_MD5));
        $this->assertIsArray($m->getServerByKey('k'));
        $this->assertFalse($m->setOption(MultiputMemcached::OPT_HASH, MultiputMemcached::HASH_CRC));
        $this->assertTrue($m->setOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE, true));
        $this->assertSame(5, $m->getOption(MultiputMemcached::OPT_DISTRIBUTION));
        $this->assertSame(1, $m->getOption(MultiputMemcached::OPT_HASH));
    }
}
