<?php

declare(strict_types=1);

require_once __DIR__ . '/Fpm.php';

use Multiput\Native;
use Multiput\Tests\Fpm;
use Multiput\Tests\Servers;
use PHPUnit\Framework\TestCase;

/**
 * PHP-FPM as a first-class target (DESIGN lesson 10): Debian's php-fpm behind Debian's nginx,
 * with PHP's DEFAULT ffi.enable (preload), configured as php-ext/README.md says, driven over
 * HTTP. Pages read through Multiput\Memcached('...') with a persistent id: the right values,
 * no new memcached connection per request once every worker made one, at most one connection
 * per worker and server; a misconfigured server answers false + RES_FAILURE (HTTP 200, not a
 * fatal error) and logs one line naming the setting.
 */
final class FpmTest extends TestCase
{
    private const WORKERS = 2;

    /** @var list<string> two servers of our own, with their idle curr_connections */
    private static array $servers = [];
    /** @var array<string, int> */
    private static array $idle = [];

    private ?Fpm $fpm = null;
    private ?string $header = null;

    protected function setUp(): void
    {
        $missing = Fpm::missing();
        if ($missing !== null) {
            $this->markTestSkipped($missing);
        }
        if (self::$servers === []) {
            for ($i = 0; $i < 2; $i++) {
                $addr = Servers::start();
                self::$servers[] = $addr;
                self::$idle[$addr] = (int) Fpm::stats($addr)['curr_connections'];
            }
            $m = $this->cliClient();
            for ($i = 0; $i < 10; $i++) {
                $this->assertTrue($m->set("fpm:k$i", self::value($i)), $m->getLastErrorMessage());
            }
        }
    }

    protected function tearDown(): void
    {
        $this->fpm?->stop();
        $this->fpm = null;
        if ($this->header !== null) {
            @unlink($this->header);
            $this->header = null;
        }
    }

    private static function value(int $i): mixed
    {
        return match ($i % 3) {
            0 => "value-$i",
            1 => $i * 1000,
            default => ['i' => $i, 'list' => [1, 2, 3]],
        };
    }

    private function cliClient(): Multiput\Memcached
    {
        $m = new Multiput\Memcached();
        $m->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
        foreach (self::$servers as $s) {
            [$h, $p] = explode(':', $s);
            $m->addServer($h, (int) $p);
        }
        return $m;
    }

    /** The pages: 10 gets through Multiput\Memcached, and the same through Multiput\Client. */
    private static function pages(): array
    {
        $autoload = var_export(dirname(__DIR__) . '/autoload.php', true);
        $servers = var_export(array_map(static fn ($a) => [explode(':', $a)[0], (int) explode(':', $a)[1]], self::$servers), true);
        $list = var_export(implode(',', self::$servers), true);
        $common = <<<PHP
            <?php
            require $autoload;
            header('Content-Type: application/json');
            if (isset(\$_GET['sleep'])) {
                usleep(100000); // keeps this worker busy: parallel requests reach every worker
            }

            PHP;
        return [
            'info.php' => "<?php echo json_encode(['ffi.enable' => ini_get('ffi.enable')]);",
            'get10.php' => $common . <<<PHP
                \$m = new Multiput\Memcached('fpm-test');
                \$pristine = \$m->isPristine();
                if (!\$m->getServerList()) {
                    \$m->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
                    \$m->addServers($servers);
                }
                \$values = [];
                \$codes = [];
                for (\$i = 0; \$i < 10; \$i++) {
                    \$values[] = \$m->get("fpm:k\$i");
                    \$codes[] = \$m->getResultCode();
                }
                echo json_encode(['values' => \$values, 'codes' => \$codes, 'message' => \$m->getLastErrorMessage(),
                    'pid' => getmypid(), 'pristine' => \$pristine]);
                PHP,
            'client.php' => $common . <<<PHP
                try {
                    \$c = new Multiput\Client(['servers' => $list, 'mode' => 'libketama_compatible', 'persistent_id' => 'fpm-client']);
                    \$values = [];
                    for (\$i = 0; \$i < 10; \$i++) {
                        \$values[] = \$c->get("fpm:k\$i");
                    }
                    // a CAS update (a PHP closure called back from the library) and a lock
                    \$n = \$c->casUpdate('fpm:counter', static fn (\$v) => (\$v ?? 0) + 1);
                    \$lock = \$c->lock('fpm:lock:' . getmypid(), 10, 1.0);
                    \$locked = \$lock !== null && \$lock->release();
                    echo json_encode(['values' => \$values, 'counter' => \$c->get('fpm:counter'), 'locked' => \$locked, 'pid' => getmypid()]);
                } catch (Multiput\Exception \$e) {
                    echo json_encode(['exception' => get_class(\$e), 'message' => \$e->getMessage(), 'code' => \$e->getCode(), 'pecl' => \$e->peclCode]);
                }
                PHP,
        ];
    }

    /** php.ini settings of a php-fpm configured as README.md says. */
    private function ini(bool $ffiPreload, ?string $library = null): array
    {
        $root = function_exists('posix_geteuid') && posix_geteuid() === 0;
        $ini = [
            'opcache.enable' => '1',
            'opcache.preload' => dirname(__DIR__) . '/preload.php',
            'multiput.library' => $library ?? Native::libraryPath(),
        ];
        if ($root) {
            $ini['opcache.preload_user'] = 'root';
        }
        if ($ffiPreload) {
            $this->header = tempnam(sys_get_temp_dir(), 'multiput-ffi-h');
            file_put_contents($this->header, Native::scopeHeader(Native::libraryPath(), Native::headerPath()));
            $ini['ffi.preload'] = $this->header;
        }
        return $ini;
    }

    private function start(array $ini, array $pool = [], string $ffiEnable = 'preload'): Fpm
    {
        $this->fpm = Fpm::start(self::pages(), $ini, $pool, self::WORKERS);
        $this->assertSame('preload', $this->phpIni('ffi.enable'), 'php-fpm\'s default ffi.enable');
        $info = $this->page('info.php', $this->fpm->get('/info.php'));
        $this->assertSame($ffiEnable, $info['ffi.enable'], 'ffi.enable in the workers');
        return $this->fpm;
    }

    /** An ini value as php-fpm's workers see it (php-fpm8.2 -i with the same -d settings). */
    private function phpIni(string $name): string
    {
        exec(escapeshellarg((string) Fpm::which(Fpm::FPM_BIN)) . ' -i 2>/dev/null', $lines);
        foreach ($lines as $l) {
            if (str_starts_with($l, "$name => ")) {
                return explode(' => ', $l)[1];
            }
        }
        return '';
    }

    /** @return array<string, mixed> the JSON body of a 200 answer */
    private function page(string $path, array $answer): array
    {
        [$status, $body] = $answer;
        $this->assertSame(200, $status, "$path: $body\n" . $this->fpm->logs());
        $json = json_decode($body, true);
        $this->assertIsArray($json, "$path: $body\n" . $this->fpm->logs());
        return $json;
    }

    private function assertRightValues(array $page): void
    {
        $expected = array_map(self::value(...), range(0, 9));
        $this->assertSame($expected, $page['values'], $page['message'] ?? '');
        $this->assertSame(array_fill(0, 10, 0), $page['codes'] ?? array_fill(0, 10, 0));
    }

    /** Requests in parallel until every worker answered at least once (bounded: 20 rounds). */
    private function warmUp(Fpm $f, string $page): void
    {
        $pids = [];
        for ($round = 0; $round < 20 && count($pids) < self::WORKERS; $round++) {
            foreach ($f->getParallel(array_fill(0, self::WORKERS, "/$page?sleep=1")) as $a) {
                $p = $this->page($page, $a);
                $pids[$p['pid']] = true;
            }
        }
        $this->assertCount(self::WORKERS, $pids, 'every worker answered');
    }

    /** @return array<string, array{string}> */
    public static function setups(): array
    {
        return [
            'ffi.preload + opcache.preload' => ['ffi.preload'],
            'opcache.preload alone' => ['opcache.preload'],
            'ffi.enable=1 in the pool, no preloading' => ['ffi.enable=1'],
        ];
    }

    /** @dataProvider setups */
    public function testTenGetsWithoutNewConnectionsPerRequest(string $setup): void
    {
        $f = match ($setup) {
            'ffi.preload' => $this->start($this->ini(true)),
            'opcache.preload' => $this->start($this->ini(false)),
            'ffi.enable=1' => $this->start(['multiput.library' => Native::libraryPath()], ['ffi.enable' => '1'], '1'),
        };
        $this->warmUp($f, 'get10.php');

        $before = array_map(Fpm::stats(...), self::$servers);
        $requests = 0;
        $restored = 0;
        for ($i = 0; $i < 60; $i++) {
            $p = $this->page('get10.php', $f->get('/get10.php'));
            $this->assertRightValues($p);
            $restored += $p['pristine'] ? 0 : 1;
            $requests++;
        }
        for ($i = 0; $i < 10; $i++) {
            foreach ($f->getParallel(array_fill(0, 4, '/get10.php')) as $a) {
                $this->assertRightValues($this->page('get10.php', $a));
                $requests++;
            }
        }
        $after = array_map(Fpm::stats(...), self::$servers);

        // The persistent object came back with its servers in every request after the first.
        $this->assertSame(60, $restored);
        foreach (self::$servers as $i => $addr) {
            // after - before: the second `stats` connection itself, nothing else.
            $new = (int) $after[$i]['total_connections'] - (int) $before[$i]['total_connections'] - 1;
            $this->assertSame(0, $new, "new connections to $addr in $requests requests");
            $held = (int) $after[$i]['curr_connections'] - self::$idle[$addr];
            $this->assertLessThanOrEqual(self::WORKERS, $held, "connections held at $addr");
            $this->assertGreaterThanOrEqual(1, $held, "connections held at $addr");
        }
        $this->assertStringNotContainsString('multiput', $f->errorLog());
    }

    public function testClientCasUpdatesAndLocksUnderFpm(): void
    {
        $f = $this->start($this->ini(true));
        $this->warmUp($f, 'client.php');
        $before = array_map(Fpm::stats(...), self::$servers);
        $last = 0;
        for ($i = 0; $i < 20; $i++) {
            $p = $this->page('client.php', $f->get('/client.php'));
            $this->assertArrayNotHasKey('exception', $p, $p['message'] ?? '');
            $this->assertRightValues($p);
            $this->assertTrue($p['locked']);
            $this->assertGreaterThan($last, $p['counter']);
            $last = $p['counter'];
        }
        $after = array_map(Fpm::stats(...), self::$servers);
        foreach (self::$servers as $i => $addr) {
            $new = (int) $after[$i]['total_connections'] - (int) $before[$i]['total_connections'] - 1;
            $this->assertSame(0, $new, "new connections to $addr");
        }
    }

    public function testAWrongLibraryPathIsFalseAndAResultCodeNotAFatalError(): void
    {
        $f = $this->start($this->ini(false, '/nonexistent/libmultiput_ffi.so'));
        for ($i = 0; $i < 3; $i++) {
            $p = $this->page('get10.php', $f->get('/get10.php'));
            $this->assertSame(array_fill(0, 10, false), $p['values']);
            $this->assertSame(array_fill(0, 10, Multiput\Memcached::RES_FAILURE), $p['codes']);
            $this->assertStringContainsString('multiput.library=/nonexistent/libmultiput_ffi.so', $p['message']);
        }
        $c = $this->page('client.php', $f->get('/client.php'));
        $this->assertSame(Multiput\Exception::class, $c['exception'] ?? null);
        $this->assertSame(Native::E_CONFIG, $c['code']);
        $this->assertStringContainsString('multiput.library', $c['message']);
        // One error_log line per request (4 requests, 10 + 1 calls), naming the setting.
        $lines = array_values(array_filter(explode("\n", $f->errorLog()), static fn ($l) => str_contains($l, 'multiput')));
        $this->assertCount(4, $lines, $f->errorLog());
        foreach ($lines as $l) {
            $this->assertStringContainsString('multiput.library', $l);
        }
        $this->assertStringNotContainsString('Fatal', $f->logs());
    }

    public function testWithoutPreloadingTheDefaultFfiEnableIsFalseAndAResultCode(): void
    {
        $f = $this->start([]);
        $p = $this->page('get10.php', $f->get('/get10.php'));
        $this->assertSame(array_fill(0, 10, false), $p['values']);
        $this->assertSame(array_fill(0, 10, Multiput\Memcached::RES_FAILURE), $p['codes']);
        $this->assertStringContainsString('opcache.preload=' . dirname(__DIR__) . '/preload.php', $p['message']);
        $this->assertStringContainsString('opcache.preload', $f->errorLog());
        $this->assertStringNotContainsString('Fatal', $f->logs());
    }
}
