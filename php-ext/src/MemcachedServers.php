<?php

declare(strict_types=1);

namespace Multiput;

use FFI;

/**
 * Every server at once (stats, versions, flush), key checks, buckets.
 * (Part of {@see Memcached}; split out by concern.)
 */
trait MemcachedServers
{
    // --- servers ----------------------------------------------------------------------------

    public function getStats(?string $type = null): array|false
    {
        $h = $this->handle();
        if ($h === null) {
            return false;
        }
        $rc = $h->ffi->multiput_stats($h->client, $type, $h->bufPtr);
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        $out = [];
        $failed = 0;
        foreach ($h->lines() as $l) {
            [$server, $name, $value] = array_pad($l, 3, '');
            if ($name === '') {
                $failed++;
                continue;
            }
            if (preg_match('/^-?\d+$/', $value)) {
                $value = (int) $value;
            } elseif (is_numeric($value)) {
                $value = (float) $value;
            }
            $out[$server][$name] = $value;
        }
        if ($failed > 0) {
            $this->failed($h); // PECL: false when any server failed
            if ($this->rc === self::RES_CLIENT_ERROR) {
                $this->rc = self::RES_INVALID_ARGUMENTS; // an unknown stats group
            }
            return false;
        }
        $this->ok();
        return $out;
    }

    public function getVersion(): array|false
    {
        $h = $this->handle();
        if ($h === null) {
            return false;
        }
        $rc = $h->ffi->multiput_server_versions($h->client, $h->bufPtr);
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        $out = [];
        foreach ($h->lines() as $l) {
            [$server, $version] = array_pad($l, 2, '');
            if ($version === '') {
                $this->result(self::RES_SOME_ERRORS); // PECL: false when any server failed
                return false;
            }
            $out[$server] = $version;
        }
        $this->ok();
        return $out;
    }

    public function getAllKeys(): array|false
    {
        $this->result(self::RES_NOT_SUPPORTED, 'getAllKeys is not supported');
        return false;
    }

    public function flush(int $delay = 0): bool
    {
        $h = $this->handle();
        if ($h === null) {
            return false;
        }
        $rc = $h->ffi->multiput_flush($h->client, $delay);
        if ($rc !== 0) {
            $this->failed($h);
            $this->rc = self::RES_SOME_ERRORS; // libmemcached's flush, whatever failed
            return false;
        }
        $this->ok();
        return true;
    }

    public function isPersistent(): bool
    {
        return $this->persistentId !== null;
    }

    public function isPristine(): bool
    {
        return $this->pristine;
    }

    /**
     * PECL's methods are internal functions: PHP 8.1+ passes null for a string or int
     * parameter as '' or 0 with a deprecation (a userland method would throw a TypeError).
     */
    private static function nullArg(string $method, int $pos, string $name, mixed $value, string|int $empty): string|int
    {
        if ($value !== null) {
            return $value;
        }
        $type = is_int($empty) ? 'int' : 'string';
        trigger_error("Memcached::$method(): Passing null to parameter #$pos (\$$name) of type $type is deprecated", E_USER_DEPRECATED);
        return $empty;
    }

    /** PECL's MEMC_CHECK_KEY, before anything is sent: sets RES_BAD_KEY_PROVIDED. */
    private function validKey(string $key): bool
    {
        $bad = $key === '' || strlen($key) > 250 || ($this->s->options[self::OPT_BINARY_PROTOCOL]
            ? str_contains($key, "\n")
            : preg_match('/[^\x21-\x7e]/', $key) === 1);
        if ($bad) {
            $this->result(self::RES_BAD_KEY_PROVIDED);
            return false;
        }
        return true;
    }

    /** PECL's check (the key alone, without the prefix), and bytes multiput can send. */
    public function checkKey(string $key): bool
    {
        if ($this->validKey($key) && !$this->unsendable($key)) {
            $this->ok();
            return true;
        }
        $this->result(self::RES_BAD_KEY_PROVIDED);
        return false;
    }

    public function setBucket(array $host_map, ?array $forward_map, int $replicas): bool
    {
        $this->result(self::RES_NOT_SUPPORTED, 'virtual buckets are not supported');
        return false;
    }
}
