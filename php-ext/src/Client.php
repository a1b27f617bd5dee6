<?php

declare(strict_types=1);

namespace Multiput;

use FFI;

/**
 * multiput's own PHP client: every call of the core, over the C ABI.
 *
 * ```php
 * $c = new Multiput\Client(['servers' => '10.0.0.1,10.0.0.2,10.0.0.3', 'replicas' => 2]);
 * $c->set('user:42', ['name' => 'Ada'], 300);   // throws Multiput\Exception unless stored
 * $c->get('user:42');                            // ['name' => 'Ada'], or null on a miss
 * $c->casUpdate('hits', fn ($cur) => ($cur ?? 0) + 1);
 * $lock = $c->lock('nightly', 30, 5.0);          // null if someone else held it for 5 s
 * ```
 *
 * Options are the library's (see multiput_config_set in ffi/include/multiput.h): `servers`
 * (a comma-separated string or a list), `replicas` (0 = plain values with PECL memcached's
 * flags, the default; N >= 1 = N enveloped copies every binding reads), `write`, `read`,
 * `timeout_ms`, `connect_timeout_ms`, `retry_ms`, `failure_limit`, `prefix`, `mode`,
 * `protocol`, `compress_threshold`, `convention`, ... plus `persistent_id` (keep the
 * connections for the life of the process, shared by clients with the same id and options,
 * as PECL's persistent ids) and `serializer` (PHP side:
 * Memcached::SERIALIZER_PHP = 1, the default, or SERIALIZER_JSON = 3 / JSON_ARRAY = 4;
 * JSON values are readable from every language).
 *
 * Values: strings, ints, floats and bools keep their type (the envelope carries it in
 * replicated mode, PECL's flags in plain mode); null, arrays and objects are serialized.
 * Errors throw Multiput\Exception; a miss is null; conditional writes that are refused
 * (add of an existing key, a CAS that lost...) return false.
 */
final class Client
{
    /** Returned from a casUpdate() function: leave the value as it is. */
    public const KEEP = "\0multiput:keep";
    /** Returned from a casUpdate() function: delete the key. */
    public const DELETE = "\0multiput:delete";

    private Handle $h;
    private int $serializer = Native::SERIALIZER_PHP;

    /** @param array<string, mixed>|string $options an array, or "name=value;name=value" */
    public function __construct(array|string $options)
    {
        if (is_string($options)) {
            $parsed = [];
            foreach (preg_split('/[;\n]/', $options) as $entry) {
                if (trim($entry) !== '') {
                    [$k, $v] = array_pad(explode('=', $entry, 2), 2, '');
                    $parsed[trim($k)] = $v;
                }
            }
            $options = $parsed;
        }
        if (isset($options['serializer'])) {
            $this->serializer = (int) $options['serializer'];
            unset($options['serializer']);
        }
        if (isset($options['servers']) && is_array($options['servers'])) {
            $options['servers'] = implode(',', $options['servers']);
        }
        $persistent = null;
        if (isset($options['persistent_id'])) {
            $persistent = (string) $options['persistent_id'];
            unset($options['persistent_id']);
        }
        $this->h = new Handle($options, $persistent);
    }

    /**
     * This client with other read and/or write policies, for the calls that need them:
     * `$c->withPolicy(write: 'quorum:2')->set($k, $v)`. It shares the connections, clock and
     * writer id; the replica count and placement do not change. Replicated clients only.
     */
    public function withPolicy(?string $read = null, ?string $write = null): self
    {
        $c = clone $this;
        $c->h = $this->h->withPolicies($read, $write);
        return $c;
    }

    private function fail(int $rc): Exception
    {
        return Handle::exception($this->h->ffi, $rc);
    }

    /** The value of $key, or null on a miss. */
    public function get(string $key): mixed
    {
        return $this->fetch($key, Native::GET_RAW);
    }

    /** One key through multiput_get_php with $getFlags; null on a miss. */
    private function fetch(string $key, int $getFlags): mixed
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_get_php($h->client, $key, strlen($key), $getFlags, $h->bufPtr);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        if ($h->buf->raw === 1) {
            return $h->bytes(); // a string, taken as is
        }
        if ($h->buf->len === 0) {
            return null;
        }
        [$ok, $v] = $h->value($this->serializer);
        if (!$ok) {
            throw new Exception("the value of $key cannot be decoded in PHP" . (is_string($v) ? ": $v" : ''), Native::E_VALUE, -1001);
        }
        return $v;
    }

    /**
     * $key's value and CAS token (the memcached CAS unique; in replicated mode a version token
     * that changes with every write), or null on a miss.
     *
     * @return array{value: mixed, cas: int, flags: int}|null
     */
    public function getWithCas(string $key): ?array
    {
        return $this->fetch($key, Native::GET_EXTENDED);
    }

    /**
     * Many keys in one round trip per server: key => value for the keys found. Throws if a
     * server failed (the message says which), unless $partial is true: then the keys of failed
     * servers are simply left out.
     *
     * @param list<string|int> $keys
     * @return array<string|int, mixed>
     */
    public function getMulti(array $keys, bool $partial = false): array
    {
        if ($keys === []) {
            return [];
        }
        $h = $this->h;
        $joined = implode("\n", $keys);
        $rc = $h->ffi->multiput_get_multi_php($h->client, $joined, strlen($joined), 10, 0, $h->bufPtr);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        $b = $h->buf;
        if ($b->hits + $b->misses + $b->errors !== count($keys)) {
            throw new Exception('a key contains a newline', Native::E_KEY, 33);
        }
        if ($b->errors > 0 && !$partial) {
            throw $this->fail($b->first_error);
        }
        return $h->values($this->serializer, false)[0];
    }

    private function store(int $mode, string $key, mixed $value, int $ttl): int
    {
        $h = $this->h;
        [$type, $format, $payload, $flags] = Native::encode($value, $this->serializer, $h->enveloped);
        return $h->ffi->multiput_store(
            $h->client,
            $mode,
            $key,
            strlen($key),
            $type,
            $format,
            $payload,
            strlen($payload),
            $ttl,
            $flags
        );
    }

    /** Store unconditionally; throws unless stored (replicated: on as many replicas as the write policy requires). */
    public function set(string $key, mixed $value, int $ttl = 0): void
    {
        $rc = $this->store(Native::SET, $key, $value, $ttl);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
    }

    private function conditional(int $mode, string $key, mixed $value, int $ttl): bool
    {
        $rc = $this->store($mode, $key, $value, $ttl);
        if ($rc === Native::E_NOT_STORED) {
            return false;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return true;
    }

    /** Store only if $key is missing; false if it exists. */
    public function add(string $key, mixed $value, int $ttl = 0): bool
    {
        return $this->conditional(Native::ADD, $key, $value, $ttl);
    }

    /** Store only if $key exists; false if it is missing. */
    public function replace(string $key, mixed $value, int $ttl = 0): bool
    {
        return $this->conditional(Native::REPLACE, $key, $value, $ttl);
    }

    /** Append to a string value; false if $key is missing. */
    public function append(string $key, string $value): bool
    {
        return $this->conditional(Native::APPEND, $key, $value, 0);
    }

    /** Prepend to a string value; false if $key is missing. */
    public function prepend(string $key, string $value): bool
    {
        return $this->conditional(Native::PREPEND, $key, $value, 0);
    }

    /**
     * Store only if $key still has $cas (from getWithCas()): true stored, false if it changed
     * since (a CAS conflict), null if it is gone (as the Python binding's cas).
     */
    public function cas(int $cas, string $key, mixed $value, int $ttl = 0): ?bool
    {
        $h = $this->h;
        [$type, $format, $payload, $flags] = Native::encode($value, $this->serializer, $h->enveloped);
        $rc = $h->ffi->multiput_cas($h->client, $key, strlen($key), $type, $format, $payload, strlen($payload), $ttl, $flags, $cas);
        if ($rc === Native::E_EXISTS) {
            return false;
        }
        if ($rc === Native::E_NOT_FOUND) {
            return null;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return true;
    }

    /** Delete $key; false if it did not exist (plain mode; replicated deletes always write a tombstone and return true). */
    public function delete(string $key): bool
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_delete($h->client, $key, strlen($key));
        if ($rc === Native::E_NOT_FOUND) {
            return false;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return true;
    }

    /**
     * Store many items, pipelined per server; throws unless every item was stored.
     *
     * @param array<string|int, mixed> $items
     */
    public function setMulti(array $items, int $ttl = 0): void
    {
        $h = $this->h;
        foreach (Native::packItems($items, $this->serializer, $h->enveloped) as $flags => $buf) {
            $rc = $h->ffi->multiput_set_multi($h->client, $buf, strlen($buf), $ttl, $flags, null);
            if ($rc !== 0) {
                throw $this->fail($rc);
            }
        }
    }

    /**
     * Delete many keys: key => true (deleted) or false (did not exist).
     *
     * @param list<string|int> $keys
     * @return array<string|int, bool>
     */
    public function deleteMulti(array $keys): array
    {
        if ($keys === []) {
            return [];
        }
        $h = $this->h;
        $joined = implode("\n", $keys);
        $out = $h->ffi->new('MultiputItems*');
        $rc = $h->ffi->multiput_delete_multi($h->client, $joined, strlen($joined), 10, FFI::addr($out));
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        try {
            $items = $out[0];
            if ($items->count !== count($keys)) {
                throw new Exception('a key contains a newline', Native::E_KEY, 33);
            }
            if ($items->errors > 0) {
                throw $this->fail($items->first_error);
            }
            $result = [];
            foreach (array_values($keys) as $i => $k) {
                $result[$k] = $items->items[$i]->status === 0;
            }
            return $result;
        } finally {
            $h->ffi->multiput_items_free($out);
        }
    }

    /**
     * Add $delta to a counter; null if $key is missing (unless $initial is given: then it is
     * created with $initial, which is returned). Replicated: exact on every replica.
     */
    public function incr(string $key, int $delta = 1, ?int $initial = null, int $ttl = 0): ?int
    {
        return $this->arith($key, $delta, false, $initial, $ttl);
    }

    /** Subtract $delta (floors at 0); null if $key is missing (unless $initial is given). */
    public function decr(string $key, int $delta = 1, ?int $initial = null, int $ttl = 0): ?int
    {
        return $this->arith($key, $delta, true, $initial, $ttl);
    }

    private function arith(string $key, int $delta, bool $decr, ?int $initial, int $ttl): ?int
    {
        if ($delta < 0) {
            [$delta, $decr] = [-$delta, !$decr];
        }
        $h = $this->h;
        $v = $h->ffi->new('uint64_t');
        $rc = $h->ffi->multiput_incr(
            $h->client,
            $key,
            strlen($key),
            $delta,
            $decr ? 1 : 0,
            $initial === null ? 0 : 1,
            $initial ?? 0,
            $ttl,
            FFI::addr($v)
        );
        if ($rc === Native::E_NOT_FOUND) {
            return null;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return $v->cdata;
    }

    /** Give $key a new TTL; false if it is missing. */
    public function touch(string $key, int $ttl): bool
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_touch($h->client, $key, strlen($key), $ttl);
        if ($rc === Native::E_NOT_FOUND) {
            return false;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return true;
    }

    /**
     * Read-modify-write without losing concurrent updates: $fn(current value or null, bool
     * exists) returns the new value, Client::KEEP or Client::DELETE. A missing key is created
     * with add, a present one replaced with compare-and-swap; conflicts retry with backoff
     * (replicated: serialized on the key's primary replica). $fn may run several times.
     *
     * @return string 'stored', 'unchanged' or 'deleted'
     */
    public function casUpdate(string $key, callable $fn, int $ttl = 0): string
    {
        [$rc, $outcome] = $this->h->casUpdate($key, $ttl, $this->serializer, static function (bool $exists, mixed $cur) use ($fn): array {
            $next = $fn($cur, $exists);
            if ($next === self::KEEP) {
                return [Native::UPDATE_KEEP, null];
            }
            if ($next === self::DELETE) {
                return [Native::UPDATE_DELETE, null];
            }
            return [Native::UPDATE_SET, $next];
        });
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return match ($outcome) {
            Native::UPDATE_SET => 'stored',
            Native::UPDATE_DELETE => 'deleted',
            default => 'unchanged',
        };
    }

    /**
     * $key's value, or on a miss $load() once and store it for $ttl seconds (± 10% jitter):
     * callers in this process share one load, other processes wait for the one that fills it
     * instead of loading too (miss-storm protection). Plain and replicated alike (the core's
     * fill, as in every multiput binding); the value is a string. A loader that throws makes
     * it throw a Multiput\Exception (E_CALLBACK, the Loader error) with the loader's
     * exception as getPrevious().
     */
    public function getOrSet(string $key, callable $load, int $ttl = 0): string
    {
        [$rc, $value] = $this->h->getOrSet($key, $ttl, $load);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return $value;
    }

    /**
     * Acquire the lock $name (an add of a unique token on its ring owner only), waiting up to
     * $waitSeconds; null if someone else held it the whole time. A lock lives $ttl seconds if
     * never released. Throws if its server cannot be reached (a lock is never taken elsewhere).
     * With $quorum = N it is held on a majority of the name's first N replicas instead, so
     * losing one server does not drop it.
     */
    public function lock(string $name, int $ttl, float $waitSeconds = 0.0, bool $fencing = false, ?int $quorum = null): ?Lock
    {
        $h = $this->h;
        $out = $h->ffi->new('MultiputLock*');
        $wait = (int) round($waitSeconds * 1000);
        $rc = $quorum === null
            ? $h->ffi->multiput_lock($h->client, $name, strlen($name), $ttl, $wait, $fencing ? 1 : 0, FFI::addr($out))
            : $h->ffi->multiput_lock_quorum($h->client, $name, strlen($name), $ttl, $wait, $fencing ? 1 : 0, max(0, $quorum), FFI::addr($out));
        if ($rc === Native::E_LOCK_NOT_ACQUIRED) {
            return null;
        }
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        return new Lock($h, $out);
    }

    /** host:port of the server that owns $key (the primary replica). */
    public function serverFor(string $key): string
    {
        return $this->serversFor($key)[0];
    }

    /**
     * host:port of the servers holding $key's copies, primary first.
     *
     * @return list<string>
     */
    public function serversFor(string $key): array
    {
        $h = $this->h;
        $idx = $h->ffi->new('size_t[16]');
        $n = $h->ffi->new('size_t');
        $rc = $h->ffi->multiput_client_servers_for($h->client, $key, strlen($key), $idx, 16, FFI::addr($n));
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        $out = [];
        for ($i = 0; $i < min(16, $n->cdata); $i++) {
            $out[] = $h->servers[$idx[$i]];
        }
        return $out;
    }

    /** @return list<string> host:port of every server, in configuration order */
    public function servers(): array
    {
        return $this->h->servers;
    }

    /** Copies per key: 0 for a plain client. */
    public function replicas(): int
    {
        return $this->h->ffi->multiput_client_replicas($this->h->client);
    }

    /**
     * How many replicas stored, and how many did not, in the last replicated write.
     *
     * @return array{stored: int, failed: int}
     */
    public function lastWrite(): array
    {
        $ffi = $this->h->ffi;
        $s = $ffi->new('size_t');
        $f = $ffi->new('size_t');
        $ffi->multiput_last_write(FFI::addr($s), FFI::addr($f));
        return ['stored' => $s->cdata, 'failed' => $f->cdata];
    }

    /**
     * `stats [group]` of every server: host:port => [name => value]; a server that failed maps
     * to its error message.
     *
     * @return array<string, array<string, string>|string>
     */
    public function stats(?string $group = null): array
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_stats($h->client, $group, $h->bufPtr);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        $out = [];
        foreach ($h->lines() as $l) {
            [$server, $name, $value] = array_pad($l, 3, '');
            if ($name === '') {
                $out[$server] = $value;
            } else {
                $out[$server][$name] = $value;
            }
        }
        return $out;
    }

    /** @return array<string, string> host:port => version (or the error message) */
    public function versions(): array
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_server_versions($h->client, $h->bufPtr);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        $out = [];
        foreach ($h->lines() as $l) {
            [$server, $version, $error] = array_pad($l, 3, '');
            $out[$server] = $version !== '' ? $version : $error;
        }
        return $out;
    }

    /**
     * Counters per server and in total.
     *
     * @return array<string, array<string, int>>
     */
    public function metrics(): array
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_metrics($h->client, $h->bufPtr);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
        $names = ['hits', 'misses', 'sets', 'errors', 'timeouts', 'down_events', 'repairs', 'stale', 'disagreements'];
        $out = [];
        foreach ($h->lines() as $l) {
            $server = array_shift($l);
            $out[$server] = array_combine(array_slice($names, 0, count($l)), array_map('intval', $l));
        }
        return $out;
    }

    /** flush_all on every server ($delay seconds later if > 0). */
    public function flush(int $delay = 0): void
    {
        $h = $this->h;
        $rc = $h->ffi->multiput_flush($h->client, $delay);
        if ($rc !== 0) {
            throw $this->fail($rc);
        }
    }
}
