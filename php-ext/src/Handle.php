<?php

declare(strict_types=1);

namespace Multiput;

use FFI;
use FFI\CData;

/**
 * One native client (a MultiputClient*) and the result buffer calls fill, shared by
 * Multiput\Client and Multiput\Memcached. Not thread-shared: PHP runs one request per process
 * or thread, and each gets its own handle. Freeing a handle (__destruct) never closes the
 * connections of a persistent client: the library keeps its own reference for the process.
 *
 * @internal
 */
final class Handle
{
    public FFI $ffi;
    /** MultiputClient* */
    public CData $client;
    /** MultiputBuffer, reused by every call that returns bytes */
    public CData $buf;
    /** MultiputBuffer* */
    public CData $bufPtr;
    public bool $enveloped;
    /** @var list<string> host:port in configuration order */
    public array $servers = [];
    /** @var array<string, string|int|float|bool> the options this client was built with */
    public array $options;
    /** @var array<int, Handle> one-server clients by server index (Memcached's *ByKey) */
    public array $byServer = [];
    /** Why the first value dropped by the last values() call could not be read, or ''. */
    public string $badReason = '';

    /**
     * @param array<string, string|int|float|bool> $options ABI option names (multiput_config_set)
     * @param ?string $persistentId keep the native client (its connections) for the life of the
     *     process under this id, shared by every handle with the same id and options; the
     *     registry is in the library (multiput_persistent_get), so it outlives PHP's
     *     request-scoped statics: the next request of a PHP-FPM worker finds the same client
     * @param array<string, mixed> $keep what the caller keeps with a persistent client
     *     (Memcached: its servers and options), returned by restore()
     */
    public function __construct(array $options, ?string $persistentId = null, array $keep = [])
    {
        $ffi = Native::ffi();
        $this->ffi = $ffi;
        $this->options = $options;
        $this->buf = $ffi->new('MultiputBuffer');
        $this->bufPtr = FFI::addr($this->buf);
        if ($persistentId !== null) {
            $kept = $this->adopt($persistentId);
            if ($kept !== null && $kept['options'] === $options) {
                if ($kept['keep'] !== $keep) {
                    $this->keep($persistentId, $keep);
                }
                return;
            }
            if (isset($this->client)) {
                $ffi->multiput_client_free($this->client);
                unset($this->client);
            }
            $this->options = $options;
            $this->servers = [];
        }
        $cfg = $ffi->new('MultiputConfig*');
        self::check($ffi, $ffi->multiput_config_new(FFI::addr($cfg)));
        try {
            foreach ($options as $name => $value) {
                if (is_bool($value)) {
                    $value = $value ? '1' : '0';
                }
                self::check($ffi, $ffi->multiput_config_set($cfg, (string) $name, (string) $value));
            }
            $client = $ffi->new('MultiputClient*');
            self::check($ffi, $persistentId === null
                ? $ffi->multiput_client_new($cfg, FFI::addr($client))
                : $ffi->multiput_client_new_persistent($persistentId, $cfg, FFI::addr($client)));
        } finally {
            $ffi->multiput_config_free($cfg);
        }
        $this->client = $client;
        $this->enveloped = $ffi->multiput_client_replicas($client) > 0;
        $n = $ffi->multiput_client_server_count($client);
        for ($i = 0; $i < $n; $i++) {
            $this->servers[] = (string) $ffi->multiput_client_server_address($client, $i);
        }
        if ($persistentId !== null) {
            $this->keep($persistentId, $keep);
        }
    }

    /**
     * The handle on the client kept under $persistentId and what its creator kept with it, in
     * one call into the library (what a PHP-FPM request pays for its persistent client), or
     * null when nothing is kept (or the library cannot be loaded).
     *
     * @return ?array{Handle, array<string, mixed>}
     */
    public static function restore(string $persistentId): ?array
    {
        try {
            $h = (new \ReflectionClass(self::class))->newInstanceWithoutConstructor();
            $h->ffi = Native::ffi();
            $h->buf = $h->ffi->new('MultiputBuffer');
            $h->bufPtr = FFI::addr($h->buf);
            $kept = $h->adopt($persistentId);
        } catch (Exception) {
            return null;
        }
        return $kept === null ? null : [$h, $kept['keep']];
    }

    /**
     * Take the client kept under $id (multiput_persistent_get) and the settings kept with it;
     * null when none is kept, or it was kept without them (by another binding).
     *
     * @return ?array{options: array<string, mixed>, keep: array<string, mixed>}
     */
    private function adopt(string $id): ?array
    {
        $ffi = $this->ffi;
        $client = $ffi->new('MultiputClient*');
        if ($ffi->multiput_persistent_get($id, FFI::addr($client), $this->bufPtr) !== Native::OK) {
            return null;
        }
        $this->client = $client;
        $state = $this->buf->len === 0 ? false : @unserialize($this->bytes(), ['allowed_classes' => false]);
        if (!is_array($state) || !isset($state['options'], $state['servers'], $state['enveloped'], $state['keep'])) {
            return null;
        }
        $this->options = $state['options'];
        $this->servers = $state['servers'];
        $this->enveloped = $state['enveloped'];
        return $state;
    }

    /**
     * Keep this handle's settings (and $keep) with the client kept under $id.
     *
     * @param array<string, mixed> $keep
     */
    public function keep(string $id, array $keep): void
    {
        $state = serialize([
            'options' => $this->options,
            'servers' => $this->servers,
            'enveloped' => $this->enveloped,
            'keep' => $keep,
        ]);
        $this->ffi->multiput_persistent_set_state($id, $state, strlen($state));
    }

    /**
     * A second native handle on the same replicated client (connections, clock, writer id)
     * with other read and/or write policies (null keeps the current one).
     */
    public function withPolicies(?string $read, ?string $write): self
    {
        $ffi = $this->ffi;
        $client = $ffi->new('MultiputClient*');
        self::check($ffi, $ffi->multiput_client_with_policies($this->client, $read, $write, FFI::addr($client)));
        $h = (new \ReflectionClass(self::class))->newInstanceWithoutConstructor();
        $h->ffi = $ffi;
        $h->options = $this->options;
        $h->client = $client;
        $h->buf = $ffi->new('MultiputBuffer');
        $h->bufPtr = FFI::addr($h->buf);
        $h->enveloped = $this->enveloped;
        $h->servers = $this->servers;
        return $h;
    }

    public function __destruct()
    {
        if (isset($this->bufPtr)) {
            $this->ffi->multiput_buffer_free($this->bufPtr);
        }
        if (isset($this->client)) {
            $this->ffi->multiput_client_free($this->client);
        }
    }

    /** Throw the library's last error unless $rc is MULTIPUT_OK. */
    public static function check(FFI $ffi, int $rc): void
    {
        if ($rc !== Native::OK) {
            throw self::exception($ffi, $rc);
        }
    }

    public static function exception(FFI $ffi, int $rc): Exception
    {
        return new Exception((string) $ffi->multiput_last_error(), $rc, $ffi->multiput_last_error_pecl());
    }

    /** The calling thread's last error: [message, PECL RES_* code]. */
    public function lastError(): array
    {
        return [(string) $this->ffi->multiput_last_error(), $this->ffi->multiput_last_error_pecl()];
    }

    /** The buffer's bytes. */
    public function bytes(): string
    {
        $len = $this->buf->len;
        return $len === 0 ? '' : FFI::string($this->buf->data, $len);
    }

    /**
     * The value in the buffer after multiput_get_php (the caller checked it is a hit).
     *
     * @return array{bool, mixed} [decoded, value]
     */
    public function value(int $serializer): array
    {
        $v = unserialize(FFI::string($this->buf->data, $this->buf->len), Native::UNSERIALIZE_OPTIONS);
        if ($this->buf->deferred === 0) {
            return [true, $v];
        }
        if ($v instanceof Deferred) {
            return Native::resolve($v, $serializer);
        }
        if (is_array($v) && ($v['value'] ?? null) instanceof Deferred) {
            [$ok, $v['value']] = Native::resolve($v['value'], $serializer);
            return [$ok, $v];
        }
        return [true, $v];
    }

    /**
     * The array in the buffer after multiput_get_multi_php, with deferred values decoded;
     * keys whose value could not be decoded are dropped and counted (the first one's reason
     * kept in $this->badReason).
     *
     * @return array{array<int|string, mixed>, int} [values, undecodable]
     */
    public function values(int $serializer, bool $extended): array
    {
        $arr = unserialize(FFI::string($this->buf->data, $this->buf->len), Native::UNSERIALIZE_OPTIONS);
        $bad = 0;
        $this->badReason = '';
        if ($this->buf->deferred !== 0) {
            foreach ($arr as $k => $v) {
                $d = $extended ? ($v['value'] ?? null) : $v;
                if ($d instanceof Deferred) {
                    [$ok, $value] = Native::resolve($d, $serializer);
                    if (!$ok) {
                        unset($arr[$k]);
                        $bad++;
                        if ($this->badReason === '' && is_string($value)) {
                            $this->badReason = "$k: $value";
                        }
                    } elseif ($extended) {
                        $arr[$k]['value'] = $value;
                    } else {
                        $arr[$k] = $value;
                    }
                }
            }
        }
        return [$arr, $bad];
    }

    /**
     * Lines of a text buffer (stats, versions) split on tabs.
     *
     * @return list<list<string>>
     */
    public function lines(): array
    {
        $out = [];
        foreach (explode("\n", rtrim($this->bytes(), "\n")) as $line) {
            if ($line !== '') {
                $out[] = explode("\t", $line);
            }
        }
        return $out;
    }

    /**
     * The native callback of every CAS update, created once per process: PHP's FFI keeps each
     * closure it turns into a C function pointer until the end of the request, so one per call
     * would grow a long-running worker's memory. It holds no handle (it reads the update under
     * way from self::$updates, a stack, so updates may nest), so handles are freed as usual.
     */
    private static ?CData $callback = null;

    /** @var list<array{decide: \Closure, serializer: int, enveloped: bool, keep: ?CData, error: ?\Throwable}> */
    private static array $updates = [];

    private static function callback(FFI $ffi): CData
    {
        if (self::$callback === null) {
            $holder = $ffi->new('struct { MultiputUpdateFn f; }');
            $holder->f = static function ($ctx, $cur, $up): int {
                $top = count(self::$updates) - 1;
                $u = &self::$updates[$top];
                try {
                    if ($cur === null) {
                        [$action, $value] = ($u['decide'])(false, null);
                    } else {
                        [$ok, $current] = Native::itemValue($cur[0], $u['serializer']);
                        if (!$ok) {
                            throw new Exception('the current value cannot be decoded', Native::E_VALUE, -1001);
                        }
                        [$action, $value] = ($u['decide'])(true, $current);
                    }
                    $up[0]->action = $action;
                    if ($action === Native::UPDATE_SET) {
                        [$type, $format, $payload, $flags] = Native::encode($value, $u['serializer'], $u['enveloped']);
                        if ($flags !== 0) {
                            [$type, $format, $payload] = [Native::TYPE_SERIALIZED, Native::FORMAT_PHP, serialize($value)];
                        }
                        // The library copies the payload before it calls back again, so
                        // replacing the previous one here is safe.
                        $u['keep'] = FFI::new('char[' . max(1, strlen($payload)) . ']');
                        FFI::memcpy($u['keep'], $payload, strlen($payload));
                        $up[0]->value_type = $type;
                        $up[0]->format = $format;
                        $up[0]->data = FFI::cast('char*', $u['keep']);
                        $up[0]->data_len = strlen($payload);
                    }
                    return 0;
                } catch (\Throwable $e) {
                    $u['error'] = $e;
                    return 1;
                }
            };
            self::$callback = $holder;
        }
        return self::$callback->f;
    }

    /**
     * Run a CAS update whose callback receives the current value (decoded) and returns
     * [action, value]. Exceptions thrown by the callback are re-thrown after the native call.
     *
     * @param callable(bool, mixed): array{int, mixed} $decide
     * @return array{int, int, int} [rc, outcome (Native::UPDATE_*), attempts]
     */
    public function casUpdate(string $key, int $ttl, int $serializer, callable $decide): array
    {
        $ffi = $this->ffi;
        $fn = self::callback($ffi);
        self::$updates[] = [
            'decide' => \Closure::fromCallable($decide),
            'serializer' => $serializer,
            'enveloped' => $this->enveloped,
            'keep' => null,
            'error' => null,
        ];
        $outcome = $ffi->new('int32_t');
        $attempts = $ffi->new('uint32_t');
        try {
            $rc = $ffi->multiput_cas_update(
                $this->client,
                $key,
                strlen($key),
                $ttl,
                $fn,
                null,
                FFI::addr($outcome),
                FFI::addr($attempts)
            );
        } finally {
            $u = array_pop(self::$updates);
        }
        if ($u['error'] !== null) {
            throw $u['error'];
        }
        return [$rc, $outcome->cdata, $attempts->cdata];
    }

    private static ?CData $loadCallback = null;

    /** @var list<array{load: \Closure, keep: ?CData, error: ?\Throwable}> */
    private static array $loads = [];

    /**
     * multiput_get_or_set with a PHP loader returning a string (one native callback per
     * process, as for casUpdate). On a hit or after the load, the value is in the returned item.
     *
     * @return array{int, ?string} [rc, value]
     */
    public function getOrSet(string $key, int $ttl, callable $load): array
    {
        $ffi = $this->ffi;
        if (self::$loadCallback === null) {
            $holder = $ffi->new('struct { MultiputLoadFn f; }');
            $holder->f = static function ($ctx, $v): int {
                $u = &self::$loads[count(self::$loads) - 1];
                try {
                    $value = ($u['load'])();
                    if (!is_string($value)) {
                        throw new Exception('getOrSet loaders return strings', Native::E_VALUE, -1001);
                    }
                    $u['keep'] = FFI::new('char[' . max(1, strlen($value)) . ']');
                    FFI::memcpy($u['keep'], $value, strlen($value));
                    $v[0]->value_type = Native::TYPE_STRING;
                    $v[0]->data = FFI::cast('char*', $u['keep']);
                    $v[0]->data_len = strlen($value);
                    return 0;
                } catch (\Throwable $e) {
                    $u['error'] = $e;
                    return 1;
                }
            };
            self::$loadCallback = $holder;
        }
        self::$loads[] = ['load' => \Closure::fromCallable($load), 'keep' => null, 'error' => null];
        $out = $ffi->new('MultiputItem*');
        try {
            $rc = $ffi->multiput_get_or_set($this->client, $key, strlen($key), $ttl, self::$loadCallback->f, null, FFI::addr($out));
        } finally {
            $u = array_pop(self::$loads);
        }
        if ($u['error'] !== null) {
            // The core's Loader error (as in every binding), the loader's exception its cause.
            $e = $u['error'];
            throw new Exception('getOrSet: the loader failed: ' . $e->getMessage(), Native::E_CALLBACK, -1001, $e);
        }
        if ($rc !== 0) {
            return [$rc, null];
        }
        $value = FFI::string($out[0]->data, $out[0]->data_len);
        $ffi->multiput_item_free($out);
        return [0, $value];
    }
}
