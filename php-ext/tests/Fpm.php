<?php

declare(strict_types=1);

namespace Multiput\Tests;

/**
 * Debian's php-fpm (php-fpm8.2) behind Debian's nginx, for tests and the benchmark: both run
 * in the foreground with their own configuration in a temporary directory, FastCGI and HTTP
 * on free 127.0.0.1 ports, and are stopped by PID. php-fpm starts with a controlled
 * environment (PATH only): nothing reaches it through environment variables, as in
 * production where php-fpm clears the workers' environment anyway.
 */
final class Fpm
{
    public const FPM_BIN = 'php-fpm8.2';
    public const NGINX_BIN = 'nginx';

    public string $dir;
    public int $httpPort;
    public int $fpmPort;
    public int $workers;
    /** @var resource */
    private $fpm;
    /** @var resource */
    private $nginx;

    /** Why php-fpm + nginx cannot run here, or null. */
    public static function missing(): ?string
    {
        foreach ([self::FPM_BIN, self::NGINX_BIN] as $bin) {
            if (self::which($bin) === null) {
                return "$bin is not installed (apt-get install -y php8.2-fpm nginx)";
            }
        }
        return null;
    }

    public static function which(string $bin): ?string
    {
        foreach (['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'] as $d) {
            if (is_executable("$d/$bin")) {
                return "$d/$bin";
            }
        }
        return null;
    }

    /**
     * @param array<string, string> $pages file name => PHP source, served from the docroot
     * @param array<string, string> $ini php.ini settings for the whole server (php-fpm -d):
     *     opcache.preload, ffi.preload, multiput.library, ...
     * @param array<string, string> $pool php_admin_value lines of the pool
     * @param string $poolLines more lines for the pool, as they are ({dir}: the temporary
     *     directory), e.g. "access.log = {dir}/access.log"
     */
    public static function start(array $pages, array $ini = [], array $pool = [], int $workers = 2, string $poolLines = ''): self
    {
        $f = new self();
        $f->workers = $workers;
        $f->dir = self::tempDir();
        $docroot = "$f->dir/www";
        mkdir($docroot, 0755);
        foreach ($pages as $name => $source) {
            file_put_contents("$docroot/$name", $source);
        }
        $root = function_exists('posix_geteuid') && posix_geteuid() === 0;
        for ($attempt = 0; ; $attempt++) {
            $f->fpmPort = self::freePort();
            $f->httpPort = self::freePort();
            try {
                $f->launch($docroot, $ini, $pool, $root, str_replace('{dir}', $f->dir, $poolLines));
                return $f;
            } catch (\RuntimeException $e) {
                $f->stop();
                if ($attempt >= 2) {
                    throw $e;
                }
            }
        }
    }

    /**
     * @param array<string, string> $ini
     * @param array<string, string> $pool
     */
    private function launch(string $docroot, array $ini, array $pool, bool $root, string $poolLines): void
    {
        $d = $this->dir;
        foreach ($pool as $k => $v) {
            $poolLines .= "php_admin_value[$k] = $v\n";
        }
        $user = $root ? "user = root\ngroup = root\n" : '';
        file_put_contents("$d/fpm.conf", <<<CONF
            [global]
            daemonize = no
            pid = $d/fpm.pid
            error_log = $d/fpm.log
            log_level = notice

            [test]
            $user
            listen = 127.0.0.1:$this->fpmPort
            pm = static
            pm.max_children = $this->workers
            catch_workers_output = yes
            decorate_workers_output = no
            php_admin_value[error_log] = $d/php-error.log
            php_admin_flag[log_errors] = on
            $poolLines
            CONF);
        $nginxUser = $root ? 'user root;' : '';
        file_put_contents("$d/nginx.conf", <<<CONF
            daemon off;
            master_process on;
            worker_processes 1;
            $nginxUser
            pid $d/nginx.pid;
            error_log $d/nginx-error.log;
            events { worker_connections 512; }
            http {
                access_log off;
                client_body_temp_path $d/client_body;
                proxy_temp_path $d/proxy;
                fastcgi_temp_path $d/fastcgi;
                uwsgi_temp_path $d/uwsgi;
                scgi_temp_path $d/scgi;
                server {
                    listen 127.0.0.1:$this->httpPort;
                    root $docroot;
                    location ~ \.php$ {
                        include /etc/nginx/fastcgi_params;
                        fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
                        fastcgi_pass 127.0.0.1:$this->fpmPort;
                    }
                }
            }
            CONF);
        $cmd = [self::which(self::FPM_BIN), '-F', '-y', "$d/fpm.conf"];
        if ($root) {
            $cmd[] = '-R';
        }
        foreach ($ini as $k => $v) {
            array_push($cmd, '-d', "$k=$v");
        }
        $env = ['PATH' => '/usr/sbin:/usr/bin:/sbin:/bin'];
        $null = ['file', '/dev/null', 'r'];
        $this->fpm = proc_open($cmd, [0 => $null, 1 => ['file', "$d/fpm.out", 'w'], 2 => ['file', "$d/fpm.out", 'a']], $pipes, $d, $env);
        $this->nginx = proc_open(
            [self::which(self::NGINX_BIN), '-c', "$d/nginx.conf", '-e', "$d/nginx-error.log"],
            [0 => $null, 1 => ['file', "$d/nginx.out", 'w'], 2 => ['file', "$d/nginx.out", 'a']],
            $pipes,
            $d,
            $env
        );
        if (!is_resource($this->fpm) || !is_resource($this->nginx)) {
            throw new \RuntimeException('cannot run php-fpm or nginx');
        }
        // Ready when the FastCGI port accepts and nginx answers (bounded: 15 s).
        $deadline = microtime(true) + 15;
        while (microtime(true) < $deadline) {
            foreach (['fpm' => $this->fpm, 'nginx' => $this->nginx] as $name => $p) {
                if (!proc_get_status($p)['running']) {
                    throw new \RuntimeException("$name exited at start:\n" . $this->logs());
                }
            }
            $s = @stream_socket_client("tcp://127.0.0.1:$this->fpmPort", $errno, $errstr, 0.2);
            $h = $s ? @stream_socket_client("tcp://127.0.0.1:$this->httpPort", $errno, $errstr, 0.2) : false;
            if ($s) {
                fclose($s);
            }
            if ($h) {
                fclose($h);
                return;
            }
            usleep(20000);
        }
        throw new \RuntimeException("php-fpm/nginx did not start:\n" . $this->logs());
    }

    /** Stop nginx and php-fpm by PID (TERM, then KILL after 10 s), and remove the directory. */
    public function stop(bool $keepDir = false): void
    {
        foreach (['nginx', 'fpm'] as $name) {
            $p = $this->$name ?? null;
            if (!is_resource($p)) {
                continue;
            }
            $pid = proc_get_status($p)['pid'];
            @posix_kill($pid, SIGTERM);
            $deadline = microtime(true) + 10;
            while (proc_get_status($p)['running'] && microtime(true) < $deadline) {
                usleep(10000);
            }
            if (proc_get_status($p)['running']) {
                @posix_kill($pid, SIGKILL);
            }
            proc_close($p);
            $this->$name = null;
        }
        if (!$keepDir && isset($this->dir) && is_dir($this->dir)) {
            self::removeTree($this->dir);
        }
    }

    public function __destruct()
    {
        $this->stop();
    }

    /** php-fpm's, the workers' and nginx's logs (for failure messages). */
    public function logs(): string
    {
        $out = '';
        foreach (['fpm.log', 'fpm.out', 'php-error.log', 'nginx-error.log', 'nginx.out'] as $f) {
            $t = @file_get_contents("$this->dir/$f");
            if (is_string($t) && $t !== '') {
                $out .= "--- $f\n$t";
            }
        }
        return $out;
    }

    /** The lines PHP's error_log() wrote in the workers. */
    public function errorLog(): string
    {
        return (string) @file_get_contents("$this->dir/php-error.log");
    }

    /**
     * GET one page: [HTTP status, body]. HTTP/1.0, bounded by $timeout seconds.
     *
     * @return array{int, string}
     */
    public function get(string $path, float $timeout = 10.0): array
    {
        return $this->getParallel([$path], $timeout)[0];
    }

    /**
     * GET several pages at once (one connection each): [status, body] per path, in order.
     *
     * @param list<string> $paths
     * @return list<array{int, string}>
     */
    public function getParallel(array $paths, float $timeout = 10.0): array
    {
        $socks = [];
        $bufs = [];
        foreach ($paths as $i => $path) {
            $s = stream_socket_client("tcp://127.0.0.1:$this->httpPort", $errno, $errstr, $timeout);
            if ($s === false) {
                throw new \RuntimeException("connect to nginx: $errstr");
            }
            fwrite($s, "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            stream_set_blocking($s, false);
            $socks[$i] = $s;
            $bufs[$i] = '';
        }
        $deadline = microtime(true) + $timeout;
        $open = $socks;
        while ($open !== [] && microtime(true) < $deadline) {
            $r = array_values($open);
            $w = $e = null;
            if (stream_select($r, $w, $e, 0, 100000) === false) {
                break;
            }
            foreach ($open as $i => $s) {
                $chunk = fread($s, 65536);
                if ($chunk !== false && $chunk !== '') {
                    $bufs[$i] .= $chunk;
                } elseif (feof($s)) {
                    fclose($s);
                    unset($open[$i]);
                }
            }
        }
        foreach ($open as $s) {
            fclose($s);
        }
        if ($open !== []) {
            throw new \RuntimeException('no complete answer within ' . $timeout . " s:\n" . $this->logs());
        }
        $out = [];
        foreach ($paths as $i => $path) {
            [$head, $body] = array_pad(explode("\r\n\r\n", $bufs[$i], 2), 2, '');
            $status = preg_match('#^HTTP/\d\.\d (\d{3})#', $head, $m) === 1 ? (int) $m[1] : 0;
            $out[] = [$status, $body];
        }
        return $out;
    }

    /** A memcached server's `stats` as name => value (one connection, counted by the server). */
    public static function stats(string $addr): array
    {
        $s = stream_socket_client("tcp://$addr", $errno, $errstr, 2);
        if ($s === false) {
            throw new \RuntimeException("stats of $addr: $errstr");
        }
        stream_set_timeout($s, 2);
        fwrite($s, "stats\r\n");
        $stats = [];
        for ($i = 0; $i < 500 && ($line = fgets($s)) !== false; $i++) {
            if (str_starts_with($line, 'END')) {
                break;
            }
            $parts = explode(' ', trim($line));
            if (count($parts) === 3) {
                $stats[$parts[1]] = $parts[2];
            }
        }
        fclose($s);
        return $stats;
    }

    private static function tempDir(): string
    {
        for ($i = 0; $i < 10; $i++) {
            $d = sys_get_temp_dir() . '/multiput-fpm-' . bin2hex(random_bytes(6));
            if (@mkdir($d, 0755)) {
                return $d;
            }
        }
        throw new \RuntimeException('cannot create a temporary directory');
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    private static function removeTree(string $dir): void
    {
        $it = new \RecursiveIteratorIterator(
            new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS),
            \RecursiveIteratorIterator::CHILD_FIRST
        );
        foreach ($it as $f) {
            $f->isDir() && !$f->isLink() ? @rmdir($f->getPathname()) : @unlink($f->getPathname());
        }
        @rmdir($dir);
    }
}
