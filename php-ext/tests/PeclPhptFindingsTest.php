<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/**
 * Differences found by running php-memcached's own .phpt suite against Multiput\Memcached
 * (see php-ext/README.md), each pinned here so it stays fixed. Where the real extension is
 * installed the behaviour is checked against it too.
 */
final class PeclPhptFindingsTest extends TestCase
{
    private static function client(array $servers, array $options = [], string $class = MultiputMemcached::class): object
    {
        $m = new $class();
        foreach ($options as $k => $v) {
            TestCase::assertTrue($m->setOption($k, $v));
        }
        foreach ($servers as $s) {
            [$h, $p] = explode(':', $s);
            $m->addServer($h, (int) $p);
        }
        return $m;
    }

    /** @return list<array<int, mixed>> */
    public static function placements(): array
    {
        return [
            'modula (default)' => [[]],
            'libketama' => [[MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE => true]],
        ];
    }

    /**
     * The *ByKey methods put the item on the server of the server key, not of the key (they
     * used to refuse any server key other than the key with RES_NOT_SUPPORTED).
     *
     * @dataProvider placements
     */
    public function testByKeyPlacesItemsOnTheServerOfTheServerKey(array $options): void
    {
        $servers = array_slice(Servers::$addrs, 0, 3);
        $m = self::client($servers, $options + [MultiputMemcached::OPT_COMPRESSION => false]);
        $p = 'bykey:' . uniqid() . ':';
        for ($g = 0; $g < 12; $g++) {
            $group = "group$g";
            $srv = $m->getServerByKey($group);
            $addr = "{$srv['host']}:{$srv['port']}";
            for ($i = 0; $i < 4; $i++) {
                $this->assertTrue($m->setByKey($group, "$p$g:$i", "v$i"));
                $this->assertSame("v$i", Servers::rawGet($addr, "$p$g:$i")[1] ?? null, "group $group key $i on $addr");
                $this->assertSame("v$i", $m->getByKey($group, "$p$g:$i"));
            }
            $this->assertSame(["$p$g:0" => 'v0', "$p$g:3" => 'v3'], $m->getMultiByKey($group, ["$p$g:0", "$p$g:3"]));
            $this->assertTrue($m->setMultiByKey($group, ["$p$g:n" => 5]));
            $this->assertSame(6, $m->incrementByKey($group, "$p$g:n"));
            $this->assertTrue($m->appendByKey($group, "$p$g:0", '+'));
            $this->assertSame('v0+', Servers::rawGet($addr, "$p$g:0")[1] ?? null);
            $this->assertSame(["$p$g:1" => true, "$p$g:2" => true], $m->deleteMultiByKey($group, ["$p$g:1", "$p$g:2"]));
            $this->assertTrue($m->deleteByKey($group, "$p$g:3"));
            $this->assertNull(Servers::rawGet($addr, "$p$g:3"));
            // the ordinary methods still use the key's own server afterwards
            $this->assertTrue($m->set("$p$g:plain", 1));
            $own = $m->getServerByKey("$p$g:plain");
            $this->assertSame('1', Servers::rawGet("{$own['host']}:{$own['port']}", "$p$g:plain")[1] ?? null);
        }
    }

    /** @dataProvider placements */
    public function testByKeySharesItemsWithPecl(array $options): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed');
        }
        $servers = array_slice(Servers::$addrs, 0, 3);
        $ours = self::client($servers, $options);
        $pecl = self::client($servers, $options, \Memcached::class);
        $p = 'bykeypecl:' . uniqid() . ':';
        for ($g = 0; $g < 10; $g++) {
            $this->assertTrue($pecl->setByKey("g$g", "{$p}a$g", [$g]));
            $this->assertSame([$g], $ours->getByKey("g$g", "{$p}a$g"));
            $this->assertTrue($ours->setByKey("g$g", "{$p}b$g", "x$g"));
            $this->assertSame("x$g", $pecl->getByKey("g$g", "{$p}b$g"));
            $this->assertSame($pecl->getServerByKey("g$g"), $ours->getServerByKey("g$g"));
        }
    }

    /** The key is checked first; an empty server key means the key's own server. */
    public function testByKeyChecksTheKeyNotTheServerKey(): void
    {
        $m = self::client(array_slice(Servers::$addrs, 0, 2));
        $k = 'bykeycheck:' . uniqid();
        $this->assertFalse($m->deleteByKey('g', ''));
        $this->assertSame(MultiputMemcached::RES_BAD_KEY_PROVIDED, $m->getResultCode());
        $this->assertFalse($m->deleteByKey('g', 'has space'));
        $this->assertSame(MultiputMemcached::RES_BAD_KEY_PROVIDED, $m->getResultCode());
        $this->assertFalse($m->deleteByKey('', $k));
        $this->assertSame(MultiputMemcached::RES_NOTFOUND, $m->getResultCode());
        $this->assertTrue($m->addByKey('', $k, 1));
        $this->assertFalse($m->addByKey('g', 'g', 1) && $m->addByKey('g', 'g', 1));
    }

    public function testByKeyWarningsNameTheByKeyMethod(): void
    {
        $m = self::client(array_slice(Servers::$addrs, 0, 2));
        $warnings = [];
        set_error_handler(function (int $no, string $msg) use (&$warnings): bool {
            $warnings[] = $msg;
            return true;
        });
        try {
            $this->assertFalse($m->incrementByKey('g', 'k', -1));
            $this->assertFalse($m->decrementByKey('g', 'k', -1));
            $this->assertNull($m->appendByKey('g', 'k', 'x')); // compression is on by default
        } finally {
            restore_error_handler();
        }
        $this->assertSame([
            'Memcached::incrementByKey(): offset cannot be a negative value',
            'Memcached::decrementByKey(): offset cannot be a negative value',
            'Memcached::appendByKey(): cannot append/prepend with compression turned on',
        ], $warnings);
    }

    public function testByKeyIsRefusedForReplicatedValues(): void
    {
        $m = self::client(array_slice(Servers::$addrs, 0, 3), [MultiputMemcached::OPT_MULTIPUT_REPLICAS => 2]);
        $this->assertFalse($m->setByKey('group', 'k' . uniqid(), 1));
        $this->assertSame(MultiputMemcached::RES_NOT_SUPPORTED, $m->getResultCode());
    }

    /** getServerByKey() reports weight 0 whatever the server's weight, as PECL does. */
    public function testGetServerByKeyWeightIsZero(): void
    {
        $m = new MultiputMemcached();
        $m->addServer('127.0.0.1', 11211, 3);
        $this->assertSame(['host' => '127.0.0.1', 'port' => 11211, 'weight' => 0], $m->getServerByKey('k'));
        if (extension_loaded('memcached')) {
            $p = new \Memcached();
            $p->addServer('127.0.0.1', 11211, 3);
            $this->assertSame($p->getServerByKey('k'), $m->getServerByKey('k'));
        }
    }

    /** addServers() reads host, port and weight by position, whatever the entry's keys. */
    public function testAddServersTakesEntriesByPosition(): void
    {
        $m = new MultiputMemcached();
        $this->assertTrue($m->addServers([['name' => 'localhost', 11211, 3], ['h' => '127.0.0.1', 'p' => 11212]]));
        $expected = [
            ['host' => 'localhost', 'port' => 11211, 'type' => 'TCP'],
            ['host' => '127.0.0.1', 'port' => 11212, 'type' => 'TCP'],
        ];
        $this->assertSame($expected, $m->getServerList());
    }

    /** A persistent instance is kept only once its init callback returned. */
    public function testPersistentCallbackThatThrowsIsCalledAgain(): void
    {
        $id = 'cbthrow' . uniqid();
        $calls = 0;
        $throw = function () use (&$calls): void {
            $calls++;
            throw new \RuntimeException('no');
        };
        for ($i = 0; $i < 2; $i++) {
            try {
                new MultiputMemcached($id, $throw);
                $this->fail('the callback exception is not thrown');
            } catch (\RuntimeException) {
            }
        }
        $this->assertSame(2, $calls);
        $ok = function (MultiputMemcached $m) use (&$calls): void {
            $calls++;
            $m->addServer('127.0.0.1', 11211);
        };
        $a = new MultiputMemcached($id, $ok);
        $b = new MultiputMemcached($id, $ok);
        $this->assertSame(3, $calls);
        $this->assertTrue($a->isPristine());
        $this->assertFalse($b->isPristine());
        $this->assertCount(1, $b->getServerList());
    }

    public function testEmptyPersistentIdIsNotPersistent(): void
    {
        $this->assertFalse((new MultiputMemcached(''))->isPersistent());
        if (extension_loaded('memcached')) {
            $this->assertFalse((new \Memcached(''))->isPersistent());
        }
    }

    public function testCannotBeCloned(): void
    {
        $this->expectException(\Error::class);
        $this->expectExceptionMessage('Trying to clone an uncloneable object of class Multiput\Memcached');
        $m = new MultiputMemcached();
        clone $m;
    }

    public function testSubclassWithoutParentConstructorThrows(): void
    {
        $m = new class () extends MultiputMemcached {
            public function __construct()
            {
            }
        };
        $this->expectException(\Error::class);
        $this->expectExceptionMessage('Memcached constructor was not called');
        $m->setOption(MultiputMemcached::OPT_BINARY_PROTOCOL, true);
    }

    /**
     * PECL's methods are internal: a null key or expiry is '' or 0 with a deprecation (a
     * userland method would throw a TypeError); a null CAS token is 0, silently.
     */
    public function testNullArgumentsAsInternalFunctions(): void
    {
        $m = self::client([Servers::$addrs[0]], [MultiputMemcached::OPT_BINARY_PROTOCOL => true]);
        $k = 'nullargs:' . uniqid();
        $deprecations = [];
        set_error_handler(function (int $no, string $msg) use (&$deprecations): bool {
            $deprecations[] = $msg;
            return true;
        }, E_USER_DEPRECATED | E_DEPRECATED);
        try {
            $this->assertFalse($m->set(null, 1));
            $this->assertSame(MultiputMemcached::RES_BAD_KEY_PROVIDED, $m->getResultCode());
            $this->assertTrue($m->set($k, 'v', null));
            $this->assertFalse($m->get(null));
            $this->assertTrue($m->cas(null, $k, 'w')); // binary protocol: CAS 0 stores
            $this->assertSame('w', $m->get($k));
        } finally {
            restore_error_handler();
        }
        $this->assertSame([
            'Memcached::set(): Passing null to parameter #1 ($key) of type string is deprecated',
            'Memcached::set(): Passing null to parameter #3 ($expiration) of type int is deprecated',
            'Memcached::get(): Passing null to parameter #1 ($key) of type string is deprecated',
        ], $deprecations);
    }
}
