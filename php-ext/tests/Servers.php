<?php

declare(strict_types=1);

namespace Multiput\Tests;

/**
 * memcached processes for the tests, started on free 127.0.0.1 ports and stopped by PID.
 */
final class Servers
{
    /** @var list<array{proc: resource, pid: int, port: int}> */
    private static array $running = [];

    /** @var list<string> host:port of the shared servers */
    public static array $addrs = [];

    public static function startAll(int $n): void
    {
        for ($i = 0; $i < $n; $i++) {
            self::$addrs[] = self::start();
        }
        register_shutdown_function([self::class, 'stopAll']);
    }

    /** Start one more server; returns host:port. */
    /** @param list<string> $extra more memcached arguments (e.g. -Z ... for TLS, -Y FILE) */
    public static function start(array $extra = []): string
    {
        $bin = getenv('MEMCACHED_BIN') ?: 'memcached';
        for ($attempt = 0; $attempt < 5; $attempt++) {
            $port = self::freePort();
            $cmd = [$bin, '-l', '127.0.0.1', '-p', (string) $port, '-U', '0', '-m', '64', '-c', '1024'];
            if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
                array_push($cmd, '-u', 'root');
            }
            $cmd = array_merge($cmd, $extra);
            $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
            if (!is_resource($proc)) {
                throw new \RuntimeException("cannot run $bin (apt-get install memcached)");
            }
            $pid = proc_get_status($proc)['pid'];
            $deadline = microtime(true) + 5;
            while (microtime(true) < $deadline) {
                $s = @stream_socket_client("tcp://127.0.0.1:$port", $errno, $errstr, 0.2);
                if ($s) {
                    fclose($s);
                    self::$running[] = ['proc' => $proc, 'pid' => $pid, 'port' => $port];
                    return "127.0.0.1:$port";
                }
                if (!proc_get_status($proc)['running']) {
                    break; // port taken meanwhile: try another
                }
                usleep(10000);
            }
            proc_terminate($proc, 9);
            proc_close($proc);
        }
        throw new \RuntimeException("memcached did not start");
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    public static function pid(string $addr): int
    {
        foreach (self::$running as $r) {
            if ("127.0.0.1:{$r['port']}" === $addr) {
                return $r['pid'];
            }
        }
        throw new \RuntimeException("no server $addr");
    }

    /** Stop (SIGSTOP) or continue (SIGCONT) a server, by PID. */
    public static function signal(string $addr, int $signal): void
    {
        $pid = self::pid($addr);
        posix_kill($pid, $signal);
        if ($signal !== 19) { // SIGSTOP: wait until every thread is stopped (bounded)
            return;
        }
        $deadline = microtime(true) + 5;
        while (microtime(true) < $deadline) {
            $stopped = true;
            foreach (glob("/proc/$pid/task/*/stat") ?: [] as $f) {
                $stat = (string) @file_get_contents($f);
                $state = substr($stat, strrpos($stat, ')') + 2, 1);
                if ($state !== 'T' && $state !== 't') {
                    $stopped = false;
                    break;
                }
            }
            if ($stopped) {
                return;
            }
            usleep(2000);
        }
        throw new \RuntimeException("memcached at $addr did not stop");
    }

    /** Kill one server (by PID) and forget it. */
    public static function kill(string $addr): void
    {
        foreach (self::$running as $i => $r) {
            if ("127.0.0.1:{$r['port']}" === $addr) {
                proc_terminate($r['proc'], 9);
                proc_close($r['proc']);
                unset(self::$running[$i]);
            }
        }
    }

    public static function stopAll(): void
    {
        foreach (self::$running as $r) {
            @posix_kill($r['pid'], 18); // SIGCONT, in case a test left it stopped
            proc_terminate($r['proc'], 15);
            proc_close($r['proc']);
        }
        self::$running = [];
    }

    /** A raw text-protocol get: [flags, data] or null. */
    public static function rawGet(string $addr, string $key): ?array
    {
        $s = stream_socket_client("tcp://$addr", $errno, $errstr, 2);
        fwrite($s, "get $key\r\n");
        $line = fgets($s);
        if ($line === "END\r\n") {
            fclose($s);
            return null;
        }
        [, , $flags, $len] = explode(' ', trim($line));
        $data = '';
        while (strlen($data) < (int) $len + 2) {
            $data .= fread($s, (int) $len + 2 - strlen($data));
        }
        fgets($s);
        fclose($s);
        return [(int) $flags, substr($data, 0, (int) $len)];
    }

    /** A raw text-protocol set. */
    public static function rawSet(string $addr, string $key, int $flags, string $data): void
    {
        $s = stream_socket_client("tcp://$addr", $errno, $errstr, 2);
        fwrite($s, "set $key $flags 0 " . strlen($data) . "\r\n$data\r\n");
        $reply = fgets($s);
        fclose($s);
        if ($reply !== "STORED\r\n") {
            throw new \RuntimeException("raw set of $key: $reply");
        }
    }
}
