<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/**
 * DESIGN lesson 8: pcntl_fork() after the client made calls. Every child must read its own
 * replies (PECL and pylibmc serve other keys' values here), and the parent must stay in
 * sync: 4 children x 3,000 reads of keys with known values, 0 wrong, 0 errors.
 */
final class ForkTest extends TestCase
{
    private const KEYS = 3000;
    private const CHILDREN = 4;

    protected function setUp(): void
    {
        if (!function_exists('pcntl_fork')) {
            $this->markTestSkipped('pcntl is not loaded (Debian: part of php8.2-cli)');
        }
    }

    /** @return array<string, array{int}> */
    public static function replicas(): array
    {
        return ['plain' => [0], 'replicas=2' => [2]];
    }

    private static function value(string $p, int $i): string
    {
        // distinct lengths too, so a reply meant for another key cannot pass by accident
        return "value-$p-$i-" . str_repeat('x', $i % 37);
    }

    /** @dataProvider replicas */
    public function testChildrenOfAForkReadTheirOwnRepliesAndTheParentStaysInSync(int $replicas): void
    {
        $m = new MultiputMemcached();
        $m->setOption(MultiputMemcached::OPT_LIBKETAMA_COMPATIBLE, true);
        $m->setOption(MultiputMemcached::OPT_MULTIPUT_REPLICAS, $replicas);
        $m->setOption(MultiputMemcached::OPT_POLL_TIMEOUT, 2000);
        foreach (array_slice(Servers::$addrs, 0, 3) as $s) {
            [$h, $port] = explode(':', $s);
            $m->addServer($h, (int) $port);
        }
        $p = 'fork:' . uniqid() . ":$replicas";
        $items = [];
        for ($i = 0; $i < self::KEYS; $i++) {
            $items["$p:$i"] = self::value($p, $i);
        }
        foreach (array_chunk($items, 500, true) as $chunk) {
            $this->assertTrue($m->setMulti($chunk), $m->getLastErrorMessage());
        }
        // The client made calls: its connections are open when the process forks.
        for ($i = 0; $i < 50; $i++) {
            $this->assertSame(self::value($p, $i), $m->get("$p:$i"));
        }

        $files = [];
        $pids = [];
        for ($n = 0; $n < self::CHILDREN; $n++) {
            $files[$n] = tempnam(sys_get_temp_dir(), 'multiput-fork');
            $pid = pcntl_fork();
            $this->assertNotSame(-1, $pid, 'fork failed');
            if ($pid === 0) {
                pcntl_alarm(120); // bounded: a hung child dies
                $wrong = 0;
                $errors = 0;
                for ($j = 0; $j < self::KEYS; $j++) {
                    $i = ($j + $n * intdiv(self::KEYS, self::CHILDREN)) % self::KEYS;
                    $v = $m->get("$p:$i");
                    if ($v === false && $m->getResultCode() !== MultiputMemcached::RES_NOTFOUND) {
                        $errors++;
                    } elseif ($v !== self::value($p, $i)) {
                        $wrong++;
                    }
                }
                file_put_contents($files[$n], "$wrong $errors");
                posix_kill(getmypid(), SIGKILL); // no shutdown functions, no destructors
            }
            $pids[$n] = $pid;
        }

        $deadline = microtime(true) + 180;
        foreach ($pids as $n => $pid) {
            while (pcntl_waitpid($pid, $status, WNOHANG) === 0) {
                if (microtime(true) > $deadline) {
                    posix_kill($pid, SIGKILL);
                    pcntl_waitpid($pid, $status);
                    break;
                }
                usleep(10000);
            }
        }
        $reports = [];
        foreach ($files as $n => $file) {
            $reports[$n] = (string) file_get_contents($file);
            unlink($file);
        }
        $this->assertSame(array_fill(0, self::CHILDREN, '0 0'), $reports, 'per child: "wrong errors" (empty: the child died)');

        // The parent's next calls still succeed, with the right values.
        for ($i = 0; $i < 300; $i++) {
            $k = ($i * 7) % self::KEYS;
            $this->assertSame(self::value($p, $k), $m->get("$p:$k"), "parent read of $k: " . $m->getLastErrorMessage());
        }
        $this->assertTrue($m->set("$p:after", 'after'), $m->getLastErrorMessage());
        $this->assertSame('after', $m->get("$p:after"));
    }
}
