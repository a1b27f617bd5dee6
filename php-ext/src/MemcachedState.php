<?php

declare(strict_types=1);

namespace Multiput;

/**
 * The servers, options and native client of one Memcached object, shared by every object
 * created with the same persistent id (as PECL shares them).
 *
 * @internal
 */
final class MemcachedState
{
    /** @var list<array{string, int, int}> */
    public array $servers = [];
    public ?Handle $handle = null;
    /** @var array<int, mixed> PECL's defaults (placement: libmemcached's modula distribution) */
    public array $options = [
        Memcached::OPT_LIBKETAMA_COMPATIBLE => 0,
        Memcached::OPT_DISTRIBUTION => Memcached::DISTRIBUTION_MODULA,
        Memcached::OPT_HASH => Memcached::HASH_DEFAULT,
        Memcached::OPT_POLL_TIMEOUT => 5000,
        Memcached::OPT_CONNECT_TIMEOUT => 4000,
        Memcached::OPT_SEND_TIMEOUT => 0,
        Memcached::OPT_RECV_TIMEOUT => 0,
        Memcached::OPT_RETRY_TIMEOUT => 2,
        Memcached::OPT_COMPRESSION => true,
        Memcached::OPT_COMPRESSION_TYPE => Memcached::COMPRESSION_FASTLZ,
        Memcached::OPT_SERIALIZER => Memcached::SERIALIZER_PHP,
        Memcached::OPT_PREFIX_KEY => '',
        Memcached::OPT_TCP_NODELAY => 0,
        Memcached::OPT_BINARY_PROTOCOL => 0,
        Memcached::OPT_SERVER_FAILURE_LIMIT => 5,
        Memcached::OPT_REMOVE_FAILED_SERVERS => 0,
        Memcached::OPT_USER_FLAGS => -1,
        Memcached::OPT_MULTIPUT_REPLICAS => 0,
        Memcached::OPT_CACHE_LOOKUPS => 1,
        Memcached::OPT_LIBKETAMA_HASH => 0,
    ];
}
