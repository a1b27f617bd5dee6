<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/** Multiput\Memcached with OPT_MULTIPUT_REPLICAS: the PECL surface over replicated keys. */
final class MemcachedReplicationTest extends TestCase
{
    private function client(int $replicas = 2): MultiputMemcached
    {
        $m = new MultiputMemcached();
        $m->setOption(MultiputMemcached::OPT_MULTIPUT_REPLICAS, $replicas);
        $m->setOption(MultiputMemcached::OPT_POLL_TIMEOUT, 300);
        foreach (array_slice(Servers::$addrs, 0, 3) as $s) {
            [$h, $p] = explode(':', $s);
            $m->addServer($h, (int) $p);
        }
        return $m;
    }

    public function testThePeclSurfaceWorksOnReplicatedKeys(): void
    {
        $m = $this->client();
        $p = 'mrep:' . uniqid() . ':';
        $this->assertTrue($m->set("{$p}a", ['x' => 1]));
        $this->assertSame(['x' => 1], $m->get("{$p}a"));
        $this->assertFalse($m->add("{$p}a", 2));
        $this->assertSame(MultiputMemcached::RES_NOTSTORED, $m->getResultCode());
        $this->assertTrue($m->add("{$p}b", 'bee'));
        $this->assertFalse($m->replace("{$p}none", 1));
        $this->assertTrue($m->replace("{$p}b", 'B'));
        $x = $m->get("{$p}b", null, MultiputMemcached::GET_EXTENDED);
        $this->assertSame('B', $x['value']);
        $this->assertTrue($m->cas($x['cas'], "{$p}b", 'C'));
        $this->assertFalse($m->cas($x['cas'], "{$p}b", 'D'));
        $this->assertSame(MultiputMemcached::RES_DATA_EXISTS, $m->getResultCode());
        $this->assertSame([$p . 'a' => ['x' => 1], $p . 'b' => 'C'], $m->getMulti(["{$p}a", "{$p}b", "{$p}c"]));
        $this->assertTrue($m->setMulti(["{$p}m1" => 1, "{$p}m2" => 2.5]));
        $this->assertSame([$p . 'm1' => 1, $p . 'm2' => 2.5], $m->getMulti(["{$p}m1", "{$p}m2"]));
        $m->set("{$p}n", 5);
        $this->assertSame(8, $m->increment("{$p}n", 3));
        $this->assertSame(6, $m->decrement("{$p}n", 2));
        $this->assertTrue($m->touch("{$p}n", 100));
        $this->assertTrue($m->delete("{$p}n"));
        $this->assertFalse($m->get("{$p}n"));
        $this->assertSame(MultiputMemcached::RES_NOTFOUND, $m->getResultCode());
        // Two copies of every key, enveloped, on its first two ring servers.
        $copies = 0;
        foreach (array_slice(Servers::$addrs, 0, 3) as $addr) {
            $raw = Servers::rawGet($addr, "{$p}a");
            if ($raw !== null) {
                $copies++;
                $this->assertSame("\xE1MP\x01", substr($raw[1], 0, 4));
                $this->assertSame(0, $raw[0]);
            }
        }
        $this->assertSame(2, $copies);
    }

    public function testADeadReplicaFailsOneWriteThenIsSkipped(): void
    {
        $m = new MultiputMemcached();
        $m->setOption(MultiputMemcached::OPT_MULTIPUT_REPLICAS, 2);
        $m->addServer('127.0.0.1', (int) explode(':', Servers::$addrs[0])[1]);
        $m->addServer('127.0.0.1', 1); // nothing listens there
        // The first write meets the refusing replica: it fails (the All policy) with PECL's code.
        $this->assertFalse($m->set('mrep:down:0', 0));
        $this->assertSame(MultiputMemcached::RES_CONNECTION_FAILURE, $m->getResultCode());
        $this->assertStringContainsString('127.0.0.1:1', $m->getLastErrorMessage());
        // Then that replica is marked down and skipped: writes succeed on the live one.
        for ($i = 1; $i < 20; $i++) {
            $this->assertTrue($m->set("mrep:down:$i", $i), $m->getLastErrorMessage());
            $this->assertSame($i, $m->get("mrep:down:$i"));
        }
        $m->setOption(MultiputMemcached::OPT_MULTIPUT_WRITE_POLICY, 'one');
        $this->assertTrue($m->set('mrep:down:one', 1));
        $this->assertSame(1, $m->get('mrep:down:one'));
    }
}
