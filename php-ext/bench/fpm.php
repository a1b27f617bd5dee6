<?php

declare(strict_types=1);

/*
 * One page, 10 gets, under Debian's php-fpm behind nginx: PECL memcached's \Memcached with a
 * persistent id vs Multiput\Memcached with a persistent id, served by the same php-fpm (one
 * pool, PHP's default ffi.enable=preload, configured as php-ext/README.md says), against two
 * memcached processes this script starts. Prints per-request medians and the ratio.
 *
 *   cargo build --release -p multiput-ffi
 *   php php-ext/bench/fpm.php [--requests=2000] [--rounds=5] [--workers=2] [--setup=ffi.preload]
 *
 * --setup: ffi.preload (ffi.preload + opcache.preload: the recommended lines), or
 * opcache.preload (opcache.preload alone: declarations parsed per request).
 * Sequential: this script's own HTTP/1.0 loop, --requests per page, split into --rounds that
 * alternate the pages (latency per request, and php-fpm's own duration of each request from
 * its access log). Concurrent: wrk (Debian's) with 1 and 4 keep-alive connections, 2 s per
 * page and round. Medians; the ratio multiput/PECL. No assertion: numbers only. Measure
 * ratios within one run: on these 2-vCPU machines absolute numbers move from run to run.
 */

require __DIR__ . '/../autoload.php';
require __DIR__ . '/../tests/Servers.php';
require __DIR__ . '/../tests/Fpm.php';

use Multiput\Native;
use Multiput\Tests\Fpm;
use Multiput\Tests\Servers;

$opts = getopt('', ['requests:', 'rounds:', 'workers:', 'setup:']);
$requests = max(1, (int) ($opts['requests'] ?? 2000));
$rounds = max(1, (int) ($opts['rounds'] ?? 5));
$workers = max(1, (int) ($opts['workers'] ?? 2));
$setup = $opts['setup'] ?? 'ffi.preload';

if ($missing = Fpm::missing()) {
    fwrite(STDERR, "$missing\n");
    exit(1);
}
if (!extension_loaded('memcached')) {
    fwrite(STDERR, "php-memcached is not installed: apt-get install -y php-memcached\n");
    exit(1);
}
$lib = getenv('MULTIPUT_FFI_LIB') ?: dirname(__DIR__, 2) . '/target/release/libmultiput_ffi.so';
if (!is_file($lib)) {
    fwrite(STDERR, "$lib missing: cargo build --release -p multiput-ffi\n");
    exit(1);
}
putenv("MULTIPUT_FFI_LIB=$lib");

Servers::startAll(2);
$servers = var_export(array_map(static fn ($a) => [explode(':', $a)[0], (int) explode(':', $a)[1]], Servers::$addrs), true);
$seed = new Multiput\Memcached();
$seed->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
$seed->addServers(array_map(static fn ($a) => explode(':', $a), Servers::$addrs));
for ($i = 0; $i < 10; $i++) {
    $seed->set("bench:k$i", str_repeat(chr(97 + $i), 32));
}
unset($seed);

$autoload = var_export(dirname(__DIR__) . '/autoload.php', true);
$page = static fn (string $new) => <<<PHP
    <?php
    require $autoload;
    \$m = $new;
    if (!\$m->getServerList()) {
        \$m->setOption(\\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
        \$m->addServers($servers);
    }
    \$n = 0;
    for (\$i = 0; \$i < 10; \$i++) {
        \$n += strlen((string) \$m->get("bench:k\$i"));
    }
    echo \$n;
    PHP;
$pages = [
    'pecl.php' => $page("new \\Memcached('bench')"),
    'multiput.php' => $page("new Multiput\\Memcached('bench')"),
    'empty.php' => "<?php require $autoload; echo '320';",
];

$root = function_exists('posix_geteuid') && posix_geteuid() === 0;
$ini = ['opcache.enable' => '1', 'opcache.preload' => dirname(__DIR__) . '/preload.php', 'multiput.library' => $lib];
if ($root) {
    $ini['opcache.preload_user'] = 'root';
}
$header = null;
if ($setup === 'ffi.preload') {
    $header = tempnam(sys_get_temp_dir(), 'multiput-ffi-h');
    file_put_contents($header, Native::scopeHeader($lib, Native::headerPath()));
    $ini['ffi.preload'] = $header;
}
// php-fpm's own measure of each request (start to end in the worker), in its access log.
$fpm = Fpm::start($pages, $ini, [], $workers, "access.log = {dir}/access.log\naccess.format = \"%{micro}d %r\"\n");

/** php-fpm's request durations (µs) by path since the last call, from its access log. */
function fpmDurations(Fpm $fpm): array
{
    usleep(100000);
    $file = "$fpm->dir/access.log";
    $d = [];
    foreach (file($file, FILE_IGNORE_NEW_LINES) ?: [] as $l) {
        $parts = explode(' ', trim($l), 3);
        if (count($parts) >= 2) {
            $d[basename(explode('?', $parts[2] ?? $parts[1])[0])][] = (int) $parts[0];
        }
    }
    file_put_contents($file, '');
    return $d;
}

/** @return list<float> ms per request, sequential, one new HTTP connection each */
function sequential(Fpm $fpm, string $path, int $n): array
{
    $lat = [];
    for ($i = 0; $i < $n; $i++) {
        $t = hrtime(true);
        [$status, $body] = $fpm->get($path);
        $lat[] = (hrtime(true) - $t) / 1e6;
        if ($status !== 200 || (int) $body !== 320) {
            throw new RuntimeException("$path: $status $body\n" . $fpm->logs());
        }
    }
    return $lat;
}

function median(array $xs): float
{
    sort($xs);
    $n = count($xs);
    return $n % 2 ? (float) $xs[intdiv($n, 2)] : ($xs[$n / 2 - 1] + $xs[$n / 2]) / 2;
}

/** wrk -c$c -d$seconds (keep-alive): [requests, median ms, req/s]. */
function concurrent(Fpm $fpm, string $path, int $c, int $seconds): array
{
    $out = (string) shell_exec(sprintf('/usr/bin/wrk -t%d -c%d -d%ds --latency http://127.0.0.1:%d%s 2>&1', min($c, 2), $c, $seconds, $fpm->httpPort, $path));
    if (!preg_match('/(\d+) requests in/', $out, $r) || !preg_match('/\s50%\s+([\d.]+)(us|ms|s)/', $out, $m)) {
        throw new RuntimeException("wrk: $out");
    }
    if (preg_match('/Non-2xx or 3xx responses: (\d+)/', $out, $bad)) {
        throw new RuntimeException("wrk: {$bad[1]} failed responses\n$out");
    }
    preg_match('/Requests\/sec:\s+([\d.]+)/', $out, $rps);
    return [(int) $r[1], (float) $m[1] * ['us' => 0.001, 'ms' => 1, 's' => 1000][$m[2]], (float) ($rps[1] ?? 0)];
}

$names = ['empty', 'pecl', 'multiput'];
try {
    // Warm every worker: each makes its persistent connections.
    for ($i = 0; $i < 10 * $workers; $i++) {
        $fpm->getParallel(array_fill(0, $workers, '/pecl.php'));
        $fpm->getParallel(array_fill(0, $workers, '/multiput.php'));
    }
    fpmDurations($fpm);
    $conn = static fn () => array_map(static fn ($a) => (int) Fpm::stats($a)['total_connections'], Servers::$addrs);
    $before = $conn();
    $seq = [];
    $per = (int) ceil($requests / $rounds);
    for ($r = 0; $r < $rounds; $r++) {
        foreach ($names as $name) {
            $seq[$name] = array_merge($seq[$name] ?? [], sequential($fpm, "/$name.php", $per));
        }
    }
    $inWorker = fpmDurations($fpm);
    $wrk = [];
    if (is_executable('/usr/bin/wrk')) {
        foreach ([1, 4] as $c) {
            for ($r = 0; $r < $rounds; $r++) {
                foreach ($names as $name) {
                    $wrk[$c][$name][] = concurrent($fpm, "/$name.php", $c, 2);
                }
            }
        }
    }
    fpmDurations($fpm);
    $after = $conn();
    $new = array_sum($after) - array_sum($before) - count(Servers::$addrs);
    $curr = array_map(static fn ($a) => (int) Fpm::stats($a)['curr_connections'], Servers::$addrs);

    printf("php-fpm (%d workers, pm=static) + nginx, a page of 10 gets, setup %s; %d sequential requests per page (%d rounds, alternating), wrk 2 s x %d rounds per page and concurrency\n", $workers, $setup, $per * $rounds, $rounds, $rounds);
    printf("%-9s %14s %14s %13s %12s %13s %12s\n", 'page', 'seq ms (p50)', 'in fpm us p50', 'wrk c1 ms', 'c1 req/s', 'wrk c4 ms', 'c4 req/s');
    $m = [];
    foreach ($names as $name) {
        $w1 = $wrk[1][$name] ?? null;
        $w4 = $wrk[4][$name] ?? null;
        $m[$name] = [
            median($seq[$name]),
            median($inWorker[$name . '.php'] ?? [0]),
            $w1 ? median(array_column($w1, 1)) : null,
            $w1 ? median(array_column($w1, 2)) : null,
            $w4 ? median(array_column($w4, 1)) : null,
            $w4 ? median(array_column($w4, 2)) : null,
            $w1 && $w4 ? min(array_sum(array_column($w1, 0)), array_sum(array_column($w4, 0))) : 0,
        ];
        $f = static fn ($v, $fmt) => $v === null ? '-' : sprintf($fmt, $v);
        printf("%-9s %14.3f %14.0f %13s %12s %13s %12s\n", $name, $m[$name][0], $m[$name][1], $f($m[$name][2], '%.3f'), $f($m[$name][3], '%.0f'), $f($m[$name][4], '%.3f'), $f($m[$name][5], '%.0f'));
    }
    $ratio = static fn (int $i) => $m['pecl'][$i] ? $m['multiput'][$i] / $m['pecl'][$i] : 0;
    printf("multiput/PECL: sequential %.3f, in fpm %.3f", $ratio(0), $ratio(1));
    if ($wrk !== []) {
        printf(", wrk c1 %.3f, wrk c4 %.3f (wrk requests per page: >= %d)", $ratio(2), $ratio(4), min($m['pecl'][6], $m['multiput'][6]));
    }
    printf("\nmemcached: %d new connections during the measurement (after warm-up); curr_connections %s (listener + stats + workers x {PECL, multiput})\n", $new, json_encode($curr));
} finally {
    $fpm->stop();
    if ($header !== null) {
        @unlink($header);
    }
}
