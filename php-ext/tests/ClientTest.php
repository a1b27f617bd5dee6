<?php

declare(strict_types=1);

use Multiput\Client;
use Multiput\Exception;
use Multiput\Native;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/** Multiput\Client against real memcached: every call, plain and replicated. */
final class ClientTest extends TestCase
{
    private static function plain(array $extra = []): Client
    {
        return new Client(['servers' => Servers::$addrs[0]] + $extra);
    }

    private static function replicated(int $n = 2, array $extra = []): Client
    {
        return new Client(['servers' => array_slice(Servers::$addrs, 0, 3), 'replicas' => $n, 'timeout_ms' => 300] + $extra);
    }

    /** @return array<string, array{callable(): Client}> */
    public function clients(): array
    {
        return [
            'plain' => [fn () => self::plain()],
            'replicated' => [fn () => self::replicated()],
        ];
    }

    /** @return array<string, mixed> */
    private static function values(): array
    {
        return [
            'string' => 'héllo wörld',
            'binary' => "\x00\xff\r\n bytes",
            'empty' => '',
            // Large: read with one copy into PHP (multiput_get_php's raw strings), whole.
            'large' => str_repeat("\x00\x01 large \xff\r\n", 55000),
            'int' => -42,
            'bigint' => PHP_INT_MAX,
            'float' => 0.1,
            'float2' => -1.5e-300,
            'inf' => INF,
            'true' => true,
            'false' => false,
            'null' => null,
            'array' => ['a' => 1, 'b' => [true, null, 2.5], 7 => 'seven'],
            'object' => (object) ['x' => 1],
            'numeric string' => '42',
        ];
    }

    /** @dataProvider clients */
    public function testTypedValuesRoundTrip(callable $make): void
    {
        $c = $make();
        $p = 'rt:' . uniqid() . ':';
        foreach (self::values() as $name => $v) {
            $key = $p . str_replace(' ', '_', $name);
            $c->set($key, $v);
            $this->assertEquals($v, $c->get($key), $name);
            $this->assertSame(gettype($v), gettype($c->get($key)), $name);
        }
        $keys = array_map(fn ($n) => $p . str_replace(' ', '_', $n), array_keys(self::values()));
        $all = $c->getMulti([...$keys, $p . 'missing']);
        $this->assertCount(count($keys), $all);
        $this->assertEquals(array_combine($keys, array_values(self::values())), $all);
        $this->assertNull($c->get($p . 'missing'));
    }

    /** @dataProvider clients */
    public function testConditionalWritesAndCounters(callable $make): void
    {
        $c = $make();
        $k = 'cond:' . uniqid();
        $this->assertFalse($c->replace($k, 1));
        $this->assertFalse($c->append($k, 'x'));
        $this->assertTrue($c->add($k, 'b'));
        $this->assertFalse($c->add($k, 'c'));
        $this->assertTrue($c->append($k, 'c'));
        $this->assertTrue($c->prepend($k, 'a'));
        $this->assertSame('abc', $c->get($k));
        $v = $c->getWithCas($k);
        $this->assertSame('abc', $v['value']);
        $this->assertIsInt($v['cas']);
        $this->assertTrue($c->cas($v['cas'], $k, ['new']));
        $this->assertFalse($c->cas($v['cas'], $k, ['stale']));
        $this->assertSame(['new'], $c->get($k));
        $this->assertTrue($c->replace($k, 3));
        $this->assertTrue($c->touch($k, 60));
        $this->assertFalse($c->touch($k . ':none', 60));
        $this->assertTrue($c->delete($k));
        $this->assertNull($c->get($k));
        $this->assertNull($c->cas($v['cas'], $k, 1)); // gone: null (a changed value is false)

        $n = 'ctr:' . uniqid();
        $this->assertNull($c->incr($n));
        $this->assertSame(10, $c->incr($n, 1, 10));
        $this->assertSame(15, $c->incr($n, 5));
        $this->assertSame(12, $c->decr($n, 3));
        $this->assertSame(0, $c->decr($n, 100));
    }

    /** @dataProvider clients */
    public function testMultiCalls(callable $make): void
    {
        $c = $make();
        $p = 'multi:' . uniqid() . ':';
        $items = [];
        for ($i = 0; $i < 100; $i++) {
            $items[$p . $i] = $i % 3 === 0 ? $i : ($i % 3 === 1 ? "v$i" : ['i' => $i]);
        }
        $c->setMulti($items, 60);
        $this->assertEquals($items, $c->getMulti(array_keys($items)));
        $deleted = $c->deleteMulti([$p . '1', $p . '2', $p . 'none']);
        $this->assertTrue($deleted[$p . '1']);
        $this->assertTrue($deleted[$p . '2']);
        $this->assertSame($c->replicas() === 0 ? false : true, $deleted[$p . 'none']);
        $this->assertSame([], $c->getMulti([$p . '1', $p . '2']));
        $this->assertSame([], $c->getMulti([]));
    }

    /** @dataProvider clients */
    public function testCasUpdate(callable $make): void
    {
        $c = $make();
        $k = 'upd:' . uniqid();
        $this->assertSame('stored', $c->casUpdate($k, fn ($cur, $exists) => $exists ? 'no' : ['n' => 1]));
        $this->assertSame('stored', $c->casUpdate($k, fn ($cur) => ['n' => $cur['n'] + 1]));
        $this->assertSame(['n' => 2], $c->get($k));
        $this->assertSame('unchanged', $c->casUpdate($k, fn () => Client::KEEP));
        $this->assertSame('deleted', $c->casUpdate($k, fn () => Client::DELETE));
        $this->assertNull($c->get($k));
        // A typed counter, and an exception inside the function reaches the caller.
        for ($i = 0; $i < 5; $i++) {
            $c->casUpdate("$k:n", fn ($cur) => ($cur ?? 0) + 1);
        }
        $this->assertSame(5, $c->get("$k:n"));
        try {
            $c->casUpdate($k, function () {
                throw new \DomainException('from the callback');
            });
            $this->fail('no exception');
        } catch (\DomainException $e) {
            $this->assertSame('from the callback', $e->getMessage());
        }
    }

    /** Concurrent processes updating one key with casUpdate lose nothing. */
    public function testConcurrentCasUpdatesFromProcesses(): void
    {
        foreach (['plain' => 0, 'replicated' => 2] as $label => $replicas) {
            $k = "race:$label:" . uniqid();
            $servers = $replicas ? implode(',', array_slice(Servers::$addrs, 0, 3)) : Servers::$addrs[0];
            $script = sprintf(
                'require %s; $c = new Multiput\Client(["servers" => %s, "replicas" => %d]); for ($i = 0; $i < 25; $i++) { $c->casUpdate(%s, fn ($v) => ($v ?? 0) + 1); }',
                var_export(dirname(__DIR__) . '/autoload.php', true),
                var_export($servers, true),
                $replicas,
                var_export($k, true)
            );
            $procs = [];
            for ($i = 0; $i < 4; $i++) {
                $procs[] = proc_open([PHP_BINARY, '-r', $script], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            }
            foreach ($procs as $p) {
                $this->assertSame(0, proc_close($p));
            }
            $c = $replicas ? self::replicated($replicas) : self::plain();
            $this->assertSame(100, $c->get($k), $label);
        }
    }

    /** @dataProvider clients */
    public function testLocks(callable $make): void
    {
        $c = $make();
        $name = 'lock:' . uniqid();
        $a = $c->lock($name, 10, 0.0, true);
        $this->assertNotNull($a);
        $this->assertTrue($a->isHeld());
        $this->assertGreaterThanOrEqual(1, $a->fence());
        $this->assertNull($c->lock($name, 10, 0.05));
        $this->assertTrue($a->extend(20));
        $this->assertTrue($a->release());
        $this->assertFalse($a->release());
        $b = $c->lock($name, 10, 0.0, true);
        $this->assertGreaterThan($a->fence(), $b->fence());
        unset($b); // released when destroyed
        $this->assertNotNull($c->lock($name, 10));
    }

    public function testReplicationWritesEnvelopesOnTheRingReplicas(): void
    {
        $c = self::replicated(2);
        $k = 'env:' . uniqid();
        $c->set($k, 'copy');
        $this->assertSame(['stored' => 2, 'failed' => 0], $c->lastWrite());
        $holders = $c->serversFor($k);
        $this->assertCount(2, $holders);
        $this->assertSame($holders[0], $c->serverFor($k));
        foreach (array_slice(Servers::$addrs, 0, 3) as $addr) {
            $raw = Servers::rawGet($addr, $k);
            if (in_array($addr, $holders, true)) {
                $this->assertNotNull($raw, "copy on $addr");
                $this->assertSame(0, $raw[0]);
                $this->assertSame("\xE1MP\x01\x00\x01", substr($raw[1], 0, 6)); // value, text
                $this->assertSame('copy', substr($raw[1], 24));
            } else {
                $this->assertNull($raw, "no copy on $addr");
            }
        }
        // A stale replica is outvoted and repaired.
        Servers::rawSet($holders[1], $k, 0, 'plain and old');
        $this->assertSame('copy', $c->get($k));
        $this->assertSame('copy', substr(Servers::rawGet($holders[1], $k)[1], 24));
        // Deletes leave tombstones that beat stale copies.
        $c->delete($k);
        $this->assertNull($c->get($k));
        $this->assertSame(24, strlen(Servers::rawGet($holders[0], $k)[1]));
    }

    public function testAStoppedReplicaCostsOneTimeoutThenIsSkipped(): void
    {
        $extra = Servers::start();
        $servers = [Servers::$addrs[0], Servers::$addrs[1], $extra];
        $c = new Client(['servers' => $servers, 'replicas' => 3, 'timeout_ms' => 200, 'retry_ms' => 60000]);
        $k = 'down:' . uniqid();
        $c->set($k, 1);
        Servers::signal($extra, 19); // SIGSTOP
        try {
            try {
                $c->set($k, 2);
                $this->fail('the write to a stopped replica should fail under the All policy');
            } catch (Exception $e) {
                $this->assertSame(16, $e->getCode()); // MULTIPUT_E_REPLICATION
                $this->assertStringContainsString('timed out', $e->getMessage());
            }
            $c->set($k, 3); // the stopped server is now marked down: skipped, not waited for
            $this->assertSame(['stored' => 2, 'failed' => 1], $c->lastWrite());
            // One timeout in all (the counters, not a clock, show it was not waited for again).
            $m = $c->metrics()[$extra];
            $this->assertSame(1, $m['timeouts'], json_encode($m));
            $this->assertSame(1, $m['down_events'], json_encode($m));
            $this->assertSame(3, $c->get($k));
        } finally {
            Servers::signal($extra, 18); // SIGCONT
            Servers::kill($extra);
        }
    }

    public function testPoliciesCanBeOverriddenPerCall(): void
    {
        $extra = Servers::start();
        $servers = [Servers::$addrs[0], Servers::$addrs[1], $extra];
        $c = new Client(['servers' => $servers, 'replicas' => 3, 'timeout_ms' => 300, 'retry_ms' => 60000]);
        $k = 'policy:' . uniqid();
        $c->set($k, 'v1');
        Servers::kill($extra);
        try {
            $c->set($k, 'v2');
            $this->fail('the All policy needs every live replica');
        } catch (Exception $e) {
            $this->assertSame(16, $e->getCode()); // MULTIPUT_E_REPLICATION
        }
        $q = $c->withPolicy(write: 'quorum:2');
        $q->set($k, 'v3');
        $this->assertSame(['stored' => 2, 'failed' => 1], $q->lastWrite());
        $this->assertSame('v3', $c->get($k));
        $this->assertSame('v3', $c->withPolicy(read: 'first_hit')->get($k));
        try {
            $c->withPolicy(read: 'quorum:4');
            $this->fail('a read quorum above the replica count');
        } catch (Exception $e) {
            $this->assertStringContainsString('quorum', $e->getMessage());
        }
        try {
            self::plain()->withPolicy(read: 'first_hit');
            $this->fail('a plain client has no policy');
        } catch (Exception $e) {
            $this->assertStringContainsString('replicated', $e->getMessage());
        }
    }

    public function testErrorsAreExceptionsWithCodes(): void
    {
        $c = self::plain();
        foreach (['bad key', '', str_repeat('k', 251), "new\nline"] as $key) {
            try {
                $c->set($key, 1);
                $this->fail("key " . json_encode($key) . " accepted");
            } catch (Exception $e) {
                $this->assertSame(3, $e->getCode());
                $this->assertSame(33, $e->peclCode);
            }
        }
        try {
            $c->set('big:' . uniqid(), random_bytes(2 << 20));
            $this->fail('2 MiB accepted');
        } catch (Exception $e) {
            $this->assertSame(37, $e->peclCode);
        }
        try {
            new Client(['servers' => Servers::$addrs[0], 'nonsense' => 1]);
            $this->fail('unknown option accepted');
        } catch (Exception $e) {
            $this->assertSame(2, $e->getCode());
            $this->assertStringContainsString('nonsense', $e->getMessage());
        }
        $dead = new Client(['servers' => '127.0.0.1:1', 'timeout_ms' => 100]);
        try {
            $dead->get('k');
            $this->fail('a dead server answered');
        } catch (Exception $e) {
            $this->assertSame(3, $e->peclCode); // RES_CONNECTION_FAILURE
        }
        try {
            $dead->get('k');
            $this->fail('a dead server answered');
        } catch (Exception $e) {
            $this->assertSame(47, $e->peclCode); // skipped until its retry time, as PECL says
        }
    }

    public function testServerCalls(): void
    {
        $c = self::replicated(2);
        $this->assertSame(array_slice(Servers::$addrs, 0, 3), $c->servers());
        $this->assertSame(2, $c->replicas());
        foreach ($c->versions() as $addr => $v) {
            $this->assertMatchesRegularExpression('/^1\.\d+\.\d+/', $v, $addr);
        }
        $stats = $c->stats();
        $this->assertCount(3, $stats);
        $this->assertArrayHasKey('curr_items', $stats[Servers::$addrs[0]]);
        $m = $c->metrics();
        $this->assertArrayHasKey('total', $m);
        $this->assertArrayHasKey('hits', $m['total']);
        $p = new Client(['servers' => Servers::$addrs[3]]);
        $p->set('f', 1);
        $p->flush();
        $this->assertNull($p->get('f'));
    }

    public function testJsonSerializerAndPrefix(): void
    {
        $c = new Client(['servers' => Servers::$addrs[0], 'serializer' => 3, 'prefix' => 'app1:']);
        $k = 'json:' . uniqid();
        $c->set($k, ['a' => [1, 2]]);
        $raw = Servers::rawGet(Servers::$addrs[0], "app1:$k");
        $this->assertSame([0xd300, '{"a":[1,2]}'], $raw); // multiput's JSON flags: every binding reads it
        $this->assertEquals((object) ['a' => [1, 2]], $c->get($k));
        $arr = new Client(['servers' => Servers::$addrs[0], 'serializer' => 4, 'prefix' => 'app1:']);
        $this->assertSame(['a' => [1, 2]], $arr->get($k));
    }

    /** Clients with the same persistent id reuse the process's connections. */
    public function testPersistentClientsShareConnections(): void
    {
        $addr = Servers::$addrs[2];
        $connections = fn () => (int) (new Client(['servers' => $addr]))->stats()[$addr]['total_connections'];
        $id = 'pool:' . uniqid();
        $a = new Client(['servers' => $addr, 'persistent_id' => $id]);
        $a->set('p', 1);
        unset($a);
        $before = $connections();
        for ($i = 0; $i < 5; $i++) {
            $b = new Client(['servers' => $addr, 'persistent_id' => $id]);
            $this->assertSame(1, $b->get('p'));
            unset($b);
        }
        // One connection for each stats probe above, none for the persistent clients.
        $this->assertSame($before + 1, $connections());
        $m1 = new Multiput\Memcached($id . ':m');
        $m1->addServer('127.0.0.1', (int) explode(':', $addr)[1]);
        $this->assertTrue($m1->isPristine());
        $m1->get('p');
        $m2 = new Multiput\Memcached($id . ':m');
        $this->assertFalse($m2->isPristine());
        $this->assertCount(1, $m2->getServerList());
        $this->assertSame(1, $m2->get('p'));
    }

    /** casUpdate reuses one native callback: a long-running worker's memory does not grow. */
    public function testCasUpdateDoesNotGrowMemory(): void
    {
        $c = self::plain();
        $k = 'mem:' . uniqid();
        for ($i = 0; $i < 100; $i++) {
            $c->casUpdate($k, fn ($v) => ($v ?? 0) + 1);
        }
        $before = memory_get_usage();
        for ($i = 0; $i < 2000; $i++) {
            $c->casUpdate($k, fn ($v) => ($v ?? 0) + 1);
        }
        $this->assertLessThan(16 * 1024, memory_get_usage() - $before);
        $this->assertSame(2100, $c->get($k));
    }

    public function testGetOrSetLoadsOnce(): void
    {
        $c = self::plain();
        $k = 'fill:' . uniqid();
        $loads = 0;
        $load = function () use (&$loads) {
            $loads++;
            return 'loaded';
        };
        $this->assertSame('loaded', $c->getOrSet($k, $load, 60));
        $this->assertSame('loaded', $c->getOrSet($k, $load, 60));
        $this->assertSame(1, $loads);
        try {
            $c->getOrSet("$k:x", fn () => throw new \LogicException('backend down'));
            $this->fail('no exception');
        } catch (Exception $e) {
            // The core's Loader error, as in every binding; the loader's own exception is kept.
            $this->assertSame(Native::E_CALLBACK, $e->getCode());
            $this->assertInstanceOf(\LogicException::class, $e->getPrevious());
            $this->assertSame('backend down', $e->getPrevious()->getMessage());
        }
        $this->assertNull($c->get("$k:x"));
        // Replicated: the same fill, read and stored on the key's replicas.
        $r = self::replicated();
        $rk = 'rfill:' . uniqid();
        $this->assertSame('loaded', $r->getOrSet($rk, $load, 60));
        $this->assertSame('loaded', $r->getOrSet($rk, $load, 60));
        $this->assertSame(2, $loads);
        $this->assertSame('loaded', $r->get($rk));
    }
}
