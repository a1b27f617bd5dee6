<?php

declare(strict_types=1);

/*
 * get, set and getMulti (100-byte values), and get and set of a 500 KB value, from PHP: PECL memcached (the php-memcached extension) vs
 * Multiput\Memcached and Multiput\Client (FFI over libmultiput_ffi), in the same run, against
 * one local memcached this script starts (and stops by PID).
 *
 *   taskset -c 0 php php-ext/bench/bench.php     # pinned: client and server on one vCPU
 *   php php-ext/bench/bench.php                  # unpinned
 *
 * Options: --seconds=S per measurement (default 1), --rounds=R (default 3; the median is
 * reported), --server=host:port (use a running server instead of starting one).
 * The library: $MULTIPUT_FFI_LIB, else target/release/libmultiput_ffi.so
 * (cargo build -p multiput-ffi --release). memcached inherits this process's CPU affinity.
 */

require __DIR__ . '/../autoload.php';

$opts = getopt('', ['seconds:', 'rounds:', 'server:']);
$seconds = (float) ($opts['seconds'] ?? 1.0);
$rounds = (int) ($opts['rounds'] ?? 3);

if (!extension_loaded('memcached')) {
    fwrite(STDERR, "php-memcached is not installed: apt-get install -y php-memcached\n");
    exit(1);
}

$proc = null;
if (isset($opts['server'])) {
    [$host, $port] = explode(':', $opts['server']);
} else {
    $s = stream_socket_server('tcp://127.0.0.1:0');
    $name = stream_socket_get_name($s, false);
    fclose($s);
    $host = '127.0.0.1';
    $port = substr($name, strrpos($name, ':') + 1);
    $cmd = ['memcached', '-l', $host, '-p', $port, '-U', '0', '-m', '256', '-t', '1'];
    if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
        array_push($cmd, '-u', 'root');
    }
    $proc = proc_open($cmd, [], $pipes);
    for ($i = 0; $i < 200 && !@stream_socket_client("tcp://$host:$port"); $i++) {
        usleep(10000);
    }
    register_shutdown_function(static function () use ($proc): void {
        proc_terminate($proc);
        proc_close($proc);
    });
}
$port = (int) $port;

$affinity = trim((string) @shell_exec('taskset -pc ' . getmypid() . ' 2>/dev/null'));
$lib = Multiput\Native::libraryPath();
printf("# PHP %s, server %s:%d, %s\n# library %s\n", PHP_VERSION, $host, $port, $affinity, $lib);

$pecl = new Memcached();
$pecl->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
$pecl->addServer($host, $port);
$mpm = new Multiput\Memcached();
$mpm->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
$mpm->addServer($host, $port);
$mpc = new Multiput\Client(['servers' => "$host:$port"]);

$value = str_repeat('v', 100);
// A large value (memcached's default item limit is 1 MiB): random bytes, so that neither
// client's compression (PECL compresses above 2000 bytes by default) makes it small.
$big = random_bytes(500 * 1024);
$pecl->set('bench:big', $big);
$keys = [];
for ($i = 0; $i < 100; $i++) {
    $keys[] = "bench:key:$i";
    $pecl->set("bench:key:$i", $value);
}

/** Calls per second of $fn over $seconds (checked every 64 calls). */
function measure(callable $fn, float $seconds): float
{
    for ($i = 0; $i < 200; $i++) {
        $fn(); // warm up: connections, caches
    }
    $n = 0;
    $start = hrtime(true);
    $limit = $start + (int) ($seconds * 1e9);
    do {
        for ($i = 0; $i < 64; $i++) {
            $fn();
        }
        $n += 64;
        $now = hrtime(true);
    } while ($now < $limit);
    return $n / (($now - $start) / 1e9);
}

$clients = ['pecl' => $pecl, 'Multiput\\Memcached' => $mpm, 'Multiput\\Client' => $mpc];
$ops = [
    'get' => static fn ($c) => static fn () => $c->get('bench:key:7'),
    'set' => static fn ($c) => static fn () => $c->set('bench:set', $value),
    'getMulti(100)' => static fn ($c) => static fn () => $c->getMulti($keys),
    'get 500KB' => static fn ($c) => static fn () => $c->get('bench:big'),
    'set 500KB' => static fn ($c) => static fn () => $c->set('bench:bigset', $big),
    // The same with compression off where a client has it (PECL and Multiput\Memcached try to
    // compress above 2000 bytes by default): the transfer alone.
    'set 500KB nocomp' => static fn ($c) => nocomp($c, static fn () => $c->set('bench:bigset', $big)),
];

/** $fn with $c's compression off (Multiput\Client never compresses unless configured to). */
function nocomp($c, callable $fn): callable
{
    if ($c instanceof Memcached || $c instanceof Multiput\Memcached) {
        $c->setOption(Memcached::OPT_COMPRESSION, false);
    }
    return $fn;
}
// Sanity: every client sees the same data.
foreach ($clients as $name => $c) {
    if ($c->get('bench:key:7') !== $value || count($c->getMulti($keys)) !== 100 || $c->get('bench:big') !== $big) {
        fwrite(STDERR, "$name does not read the benchmark keys\n");
        exit(1);
    }
}

printf("%-14s %-20s %12s %9s\n", 'op', 'client', 'calls/s', 'vs pecl');
foreach ($ops as $op => $make) {
    $results = [];
    for ($r = 0; $r < $rounds; $r++) {
        // Interleave clients within a round so drift hits all of them alike.
        foreach ($clients as $name => $c) {
            $results[$name][] = measure($make($c), $seconds);
        }
    }
    $median = static function (array $xs): float {
        sort($xs);
        return $xs[intdiv(count($xs), 2)];
    };
    $base = $median($results['pecl']);
    foreach ($results as $name => $xs) {
        $m = $median($xs);
        printf("%-14s %-20s %12.0f %8.2fx\n", $op, $name, $m, $m / $base);
    }
}
