<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use PHPUnit\Framework\TestCase;

/**
 * Keys land where PECL memcached (OPT_LIBKETAMA_COMPATIBLE) puts them: compared with the real
 * extension's getServerByKey() and with the shared libmemcached vectors. Nothing connects.
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

    /**
     * @dataProvider serverLists
     * @param list<array{string, int, int}> $servers
     */
    public function testSameServerAsPeclGetServerByKey(array $servers): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed (apt-get install php-memcached)');
        }
        $pecl = new \Memcached();
        $pecl->setOption(\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
        $ours = new MultiputMemcached();
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
        $dir = getenv('MULTIPUT_VECTORS') ?: dirname(__DIR__, 3) . '/shared/vectors';
        $files = glob("$dir/*.json") ?: [];
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
            $this->markTestSkipped('../shared/vectors not found (set MULTIPUT_VECTORS)');
        }
        $v = json_decode(file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
        $m = new MultiputMemcached();
        if ($v['mode'] === 'ketama_md5') {
            $m->setOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE, false);
            $this->assertTrue($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_CONSISTENT));
            $this->assertTrue($m->setOption(MultiputMemcached::OPT_HASH, MultiputMemcached::HASH_MD5));
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
        $this->assertCount(1000, $v['cases']);
    }

    public function testUnsupportedDistributionsAreRefused(): void
    {
        $m = new MultiputMemcached();
        $this->assertFalse($m->setOption(MultiputMemcached::OPT_DISTRIBUTION, MultiputMemcached::DISTRIBUTION_MODULA));
        $this->assertSame(MultiputMemcached::RES_NOT_SUPPORTED, $m->getResultCode());
        $this->assertFalse($m->setOption(MultiputMemcached::OPT_HASH, MultiputMemcached::HASH_CRC));
        $this->assertTrue($m->setOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE, true));
        $this->assertSame(5, $m->getOption(MultiputMemcached::OPT_DISTRIBUTION));
        $this->assertSame(1, $m->getOption(MultiputMemcached::OPT_HASH));
    }
}
