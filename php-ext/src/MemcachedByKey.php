<?php

declare(strict_types=1);

namespace Multiput;

use FFI;

/**
 * PECL's *ByKey calls: the item goes to the server $server_key maps to.
 * (Part of {@see Memcached}; split out by concern.)
 */
trait MemcachedByKey
{
    // --- *ByKey: the item goes to the server $server_key maps to ------------------------------

    /**
     * Run $op with the native client for the server libmemcached would pick for $server_key:
     * with one server, an empty server key or the key itself that is the ordinary client; with
     * several, a one-server client for that server (kept with the main client). Replicated
     * values (OPT_MULTIPUT_REPLICAS) live on several servers: another server key is refused.
     * $op validates its own keys, so a bad key is RES_BAD_KEY_PROVIDED as in PECL.
     */
    private function onServerOf(string $server_key, ?string $key, mixed $fail, callable $op): mixed
    {
        if ($server_key === '' || $server_key === $key || count($this->s->servers) <= 1) {
            return $op();
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return $fail;
        }
        if ($h->enveloped) {
            $this->result(self::RES_NOT_SUPPORTED, 'placing a key by another key (the *ByKey methods) is not supported with OPT_MULTIPUT_REPLICAS');
            return $fail;
        }
        $idx = $h->ffi->new('size_t[1]');
        $n = $h->ffi->new('size_t');
        if ($h->ffi->multiput_client_servers_for($h->client, $server_key, strlen($server_key), $idx, 1, FFI::addr($n)) !== 0) {
            $this->failed($h);
            return $fail;
        }
        $i = $idx[0];
        if (!isset($h->byServer[$i])) {
            $options = $h->options;
            $options['servers'] = explode(',', $options['servers'])[$i];
            $options['mode'] = 'modula';
            try {
                // Persistent ids keep these one-server clients too (under a derived id).
                $pid = $this->persistentId === null ? null : "{$this->persistentId}\x01server:$i";
                $h->byServer[$i] = new Handle($options, $pid);
            } catch (Exception $e) {
                $this->result($e->peclCode, $e->getMessage());
                return $fail;
            }
        }
        $this->s->handle = $h->byServer[$i];
        try {
            return $op();
        } finally {
            if ($this->s->handle === $h->byServer[$i]) {
                $this->s->handle = $h;
            }
        }
    }

    public function getByKey(string $server_key, string $key, ?callable $cache_cb = null, int $get_flags = 0): mixed
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->get($key, $cache_cb, $get_flags));
    }

    public function setByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->set($key, $value, $expiration));
    }

    public function addByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->add($key, $value, $expiration));
    }

    public function replaceByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->replace($key, $value, $expiration));
    }

    public function deleteByKey(string $server_key, string $key, int $time = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->delete($key, $time));
    }

    public function touchByKey(string $server_key, string $key, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->touch($key, $expiration));
    }

    public function getMultiByKey(string $server_key, array $keys, int $get_flags = 0): array|false
    {
        return $this->onServerOf($server_key, null, false, fn () => $this->getMulti($keys, $get_flags));
    }

    public function getDelayedByKey(string $server_key, array $keys, bool $with_cas = false, ?callable $value_cb = null): bool
    {
        return $this->onServerOf($server_key, null, false, fn () => $this->getDelayed($keys, $with_cas, $value_cb));
    }

    public function setMultiByKey(string $server_key, array $items, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, null, false, fn () => $this->setMulti($items, $expiration));
    }

    public function deleteMultiByKey(string $server_key, array $keys, int $time = 0): array
    {
        return $this->onServerOf($server_key, null, [], fn () => $this->deleteMulti($keys, $time));
    }

    public function casByKey(string|int|float|null $cas_token, string $server_key, string $key, mixed $value, int $expiration = 0): bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->cas($cas_token, $key, $value, $expiration));
    }

    public function appendByKey(string $server_key, string $key, string $value): ?bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->concat('appendByKey', Native::APPEND, $key, $value));
    }

    public function prependByKey(string $server_key, string $key, string $value): ?bool
    {
        return $this->onServerOf($server_key, $key, false, fn () => $this->concat('prependByKey', Native::PREPEND, $key, $value));
    }

    public function incrementByKey(string $server_key, string $key, int $offset = 1, int $initial_value = 0, int $expiry = 0): int|false
    {
        $withInitial = func_num_args() >= 4;
        return $this->onServerOf($server_key, $key, false, fn () => $this->arith('incrementByKey', $key, $offset, false, $withInitial, $initial_value, $expiry));
    }

    public function decrementByKey(string $server_key, string $key, int $offset = 1, int $initial_value = 0, int $expiry = 0): int|false
    {
        $withInitial = func_num_args() >= 4;
        return $this->onServerOf($server_key, $key, false, fn () => $this->arith('decrementByKey', $key, $offset, true, $withInitial, $initial_value, $expiry));
    }
}
