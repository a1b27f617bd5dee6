<?php

declare(strict_types=1);

namespace Multiput;

use FFI;

/**
 * A drop-in for the PECL memcached extension's \Memcached class (php-memcached 3.x): the same
 * methods, options, constants (with PECL's numeric values) and result codes, over multiput's
 * core. Swap `new \Memcached()` for `new \Multiput\Memcached()` and existing code runs
 * unchanged; see php-ext/README.md for what is honoured, accepted-and-ignored, or refused.
 *
 * Values are stored with multiput's own flags by default, so Python, Node and Rust apps on
 * multiput read them with their type; with OPT_MULTIPUT_CONVENTION => 'pecl' they are stored
 * exactly as PECL memcached stores them (same flags, same string forms of ints, floats and
 * bools, serialize()/JSON/igbinary/msgpack, zlib compression PECL reads), so both can share
 * keys during a migration. Values PECL wrote are read either way. Keys land on the same
 * servers as PECL's under the
 * same options: libmemcached's default modula distribution when none is set (as PECL),
 * OPT_LIBKETAMA_COMPATIBLE (recommended), or DISTRIBUTION_CONSISTENT with HASH_MD5. With
 * OPT_MULTIPUT_REPLICAS
 * >= 1 values are instead kept in multiput's envelope on N servers (readable by every
 * multiput binding, not by PECL).
 */
class Memcached
{
    use MemcachedByKey;
    use MemcachedMultiGet;
    use MemcachedServers;

    // --- PECL constants, same names and values as the php-memcached extension -------------
    public const LIBMEMCACHED_VERSION_HEX = 16777240;
    public const OPT_COMPRESSION = -1001;
    public const OPT_COMPRESSION_TYPE = -1004;
    public const OPT_PREFIX_KEY = -1002;
    public const OPT_SERIALIZER = -1003;
    public const OPT_USER_FLAGS = -1006;
    public const OPT_STORE_RETRY_COUNT = -1005;
    public const HAVE_IGBINARY = true;
    public const HAVE_JSON = true;
    public const HAVE_MSGPACK = true;
    public const HAVE_ENCODING = false;
    public const HAVE_SESSION = false;
    public const HAVE_SASL = false;
    public const OPT_HASH = 2;
    public const HASH_DEFAULT = 0;
    public const HASH_MD5 = 1;
    public const HASH_CRC = 2;
    public const HASH_FNV1_64 = 3;
    public const HASH_FNV1A_64 = 4;
    public const HASH_FNV1_32 = 5;
    public const HASH_FNV1A_32 = 6;
    public const HASH_HSIEH = 7;
    public const HASH_MURMUR = 8;
    public const OPT_DISTRIBUTION = 9;
    public const DISTRIBUTION_MODULA = 0;
    public const DISTRIBUTION_CONSISTENT = 1;
    public const DISTRIBUTION_VIRTUAL_BUCKET = 6;
    public const OPT_LIBKETAMA_COMPATIBLE = 16;
    public const OPT_LIBKETAMA_HASH = 17;
    public const OPT_TCP_KEEPALIVE = 32;
    public const OPT_BUFFER_WRITES = 10;
    public const OPT_BINARY_PROTOCOL = 18;
    public const OPT_NO_BLOCK = 0;
    public const OPT_TCP_NODELAY = 1;
    public const OPT_SOCKET_SEND_SIZE = 4;
    public const OPT_SOCKET_RECV_SIZE = 5;
    public const OPT_CONNECT_TIMEOUT = 14;
    public const OPT_RETRY_TIMEOUT = 15;
    public const OPT_DEAD_TIMEOUT = 36;
    public const OPT_SEND_TIMEOUT = 19;
    public const OPT_RECV_TIMEOUT = 20;
    public const OPT_POLL_TIMEOUT = 8;
    public const OPT_CACHE_LOOKUPS = 6;
    public const OPT_SERVER_FAILURE_LIMIT = 21;
    public const OPT_AUTO_EJECT_HOSTS = 28;
    public const OPT_HASH_WITH_PREFIX_KEY = 25;
    public const OPT_NOREPLY = 26;
    public const OPT_SORT_HOSTS = 12;
    public const OPT_VERIFY_KEY = 13;
    public const OPT_USE_UDP = 27;
    public const OPT_NUMBER_OF_REPLICAS = 29;
    public const OPT_RANDOMIZE_REPLICA_READ = 30;
    public const OPT_REMOVE_FAILED_SERVERS = 35;
    public const OPT_SERVER_TIMEOUT_LIMIT = 37;
    public const RES_SUCCESS = 0;
    public const RES_FAILURE = 1;
    public const RES_HOST_LOOKUP_FAILURE = 2;
    public const RES_CONNECTION_FAILURE = 3;
    public const RES_CONNECTION_BIND_FAILURE = 4;
    public const RES_WRITE_FAILURE = 5;
    public const RES_READ_FAILURE = 6;
    public const RES_UNKNOWN_READ_FAILURE = 7;
    public const RES_PROTOCOL_ERROR = 8;
    public const RES_CLIENT_ERROR = 9;
    public const RES_SERVER_ERROR = 10;
    public const RES_DATA_EXISTS = 12;
    public const RES_DATA_DOES_NOT_EXIST = 13;
    public const RES_NOTSTORED = 14;
    public const RES_STORED = 15;
    public const RES_NOTFOUND = 16;
    public const RES_PARTIAL_READ = 18;
    public const RES_SOME_ERRORS = 19;
    public const RES_NO_SERVERS = 20;
    public const RES_END = 21;
    public const RES_DELETED = 22;
    public const RES_VALUE = 23;
    public const RES_STAT = 24;
    public const RES_ITEM = 25;
    public const RES_ERRNO = 26;
    public const RES_FAIL_UNIX_SOCKET = 27;
    public const RES_NOT_SUPPORTED = 28;
    public const RES_NO_KEY_PROVIDED = 29;
    public const RES_FETCH_NOTFINISHED = 30;
    public const RES_TIMEOUT = 31;
    public const RES_BUFFERED = 32;
    public const RES_BAD_KEY_PROVIDED = 33;
    public const RES_INVALID_HOST_PROTOCOL = 34;
    public const RES_SERVER_MARKED_DEAD = 35;
    public const RES_UNKNOWN_STAT_KEY = 36;
    public const RES_INVALID_ARGUMENTS = 38;
    public const RES_PARSE_ERROR = 43;
    public const RES_PARSE_USER_ERROR = 44;
    public const RES_DEPRECATED = 45;
    public const RES_IN_PROGRESS = 46;
    public const RES_MAXIMUM_RETURN = 49;
    public const RES_MEMORY_ALLOCATION_FAILURE = 17;
    public const RES_CONNECTION_SOCKET_CREATE_FAILURE = 11;
    public const RES_E2BIG = 37;
    public const RES_KEY_TOO_BIG = 39;
    public const RES_SERVER_TEMPORARILY_DISABLED = 47;
    public const RES_SERVER_MEMORY_ALLOCATION_FAILURE = 48;
    public const RES_AUTH_PROBLEM = 40;
    public const RES_AUTH_FAILURE = 41;
    public const RES_AUTH_CONTINUE = 42;
    public const RES_PAYLOAD_FAILURE = -1001;
    public const SERIALIZER_PHP = 1;
    public const SERIALIZER_IGBINARY = 2;
    public const SERIALIZER_JSON = 3;
    public const SERIALIZER_JSON_ARRAY = 4;
    public const SERIALIZER_MSGPACK = 5;
    public const COMPRESSION_FASTLZ = 2;
    public const COMPRESSION_ZLIB = 1;
    public const GET_PRESERVE_ORDER = 1;
    public const GET_EXTENDED = 2;
    public const GET_ERROR_RETURN_VALUE = false;

    // --- multiput's own options (outside PECL's numbering) --------------------------------
    /** Copies per key: 0 (default) plain PECL-compatible values; N >= 1 enveloped copies on N servers. */
    public const OPT_MULTIPUT_REPLICAS = -2001;
    /** Replicated writes succeed when: 'all' (default), 'one', 'quorum:N'. */
    public const OPT_MULTIPUT_WRITE_POLICY = -2002;
    /** Replicated reads: 'all' (latest copy, repair the others; default), 'first_hit', 'quorum:N'. */
    public const OPT_MULTIPUT_READ_POLICY = -2003;
    /** Seconds a replicated delete is remembered (tombstone lifetime); default 86400. */
    public const OPT_MULTIPUT_TOMBSTONE_TTL = -2004;
    /**
     * The flags plain values are written with: 'multiput' (default; every multiput binding,
     * Python, Node, Rust, reads them with their type) or 'pecl' (exactly as PECL memcached
     * writes them, for keys PECL apps still read; also 'pylibmc'). Values without multiput's
     * flags are read as PECL writes them either way.
     */
    public const OPT_MULTIPUT_CONVENTION = -2005;
    /** TLS to every server (memcached -Z): true/false. Implied by the other TLS options. */
    public const OPT_MULTIPUT_TLS = -2006;
    /** PEM file of the CAs that sign the servers' certificates (default: the system's). */
    public const OPT_MULTIPUT_TLS_CA = -2007;
    /** PEM file of a client certificate, for servers that verify clients (with TLS_KEY). */
    public const OPT_MULTIPUT_TLS_CERT = -2008;
    /** PEM file of the client certificate's private key. */
    public const OPT_MULTIPUT_TLS_KEY = -2009;
    /** The name the servers' certificates must carry (default: each server's host). */
    public const OPT_MULTIPUT_TLS_SERVER_NAME = -2010;
    /** memcached's ASCII authentication (-Y): the user name (with OPT_MULTIPUT_PASSWORD). */
    public const OPT_MULTIPUT_USERNAME = -2011;
    /** memcached's ASCII authentication (-Y): the password. */
    public const OPT_MULTIPUT_PASSWORD = -2012;
    /** Only these servers ("host:port,...") speak TLS, the others plain TCP (default: all). */
    public const OPT_MULTIPUT_TLS_SERVERS = -2013;

    /** multiput's string options and the core's names for them. */
    private const STRING_OPTIONS = [
        self::OPT_MULTIPUT_TLS_CA => 'tls_ca',
        self::OPT_MULTIPUT_TLS_CERT => 'tls_cert',
        self::OPT_MULTIPUT_TLS_KEY => 'tls_key',
        self::OPT_MULTIPUT_TLS_SERVER_NAME => 'tls_server_name',
        self::OPT_MULTIPUT_USERNAME => 'username',
        self::OPT_MULTIPUT_PASSWORD => 'password',
        self::OPT_MULTIPUT_TLS_SERVERS => 'tls_servers',
    ];

    /** libmemcached's MEMCACHED_ERROR ("ERROR was returned by server"; PECL names 11 otherwise). */
    private const RES_SERVER_ERROR_REPLY = 11;

    /** libmemcached's distribution value after OPT_LIBKETAMA_COMPATIBLE (consistent, weighted). */
    private const DISTRIBUTION_KETAMA_WEIGHTED = 5;

    /** The PECL ini defaults (memcached.compression_threshold, compression_factor is the library's). */
    private const COMPRESSION_THRESHOLD = 2000;

    private const MESSAGES = [
        0 => 'SUCCESS', 1 => 'FAILURE', 2 => 'getaddrinfo() or getnameinfo() HOSTNAME LOOKUP FAILURE',
        3 => 'CONNECTION FAILURE', 4 => 'CONNECTION BIND FAILURE', 5 => 'WRITE FAILURE', 6 => 'READ FAILURE',
        7 => 'UNKNOWN READ FAILURE', 8 => 'PROTOCOL ERROR', 9 => 'CLIENT ERROR', 10 => 'SERVER ERROR',
        11 => 'ERROR was returned by server', 12 => 'CONNECTION DATA EXISTS', 13 => 'CONNECTION DATA DOES NOT EXIST',
        14 => 'NOT STORED', 15 => 'STORED', 16 => 'NOT FOUND', 17 => 'MEMORY ALLOCATION FAILURE',
        18 => 'PARTIAL READ', 19 => 'SOME ERRORS WERE REPORTED', 20 => 'NO SERVERS DEFINED', 21 => 'SERVER END',
        22 => 'SERVER DELETE', 23 => 'SERVER VALUE', 24 => 'STAT VALUE', 25 => 'ITEM VALUE', 26 => 'SYSTEM ERROR',
        27 => 'COULD NOT OPEN UNIX SOCKET', 28 => 'ACTION NOT SUPPORTED', 29 => 'A KEY LENGTH OF ZERO WAS PROVIDED',
        30 => 'FETCH WAS NOT COMPLETED', 31 => 'A TIMEOUT OCCURRED', 32 => 'ACTION QUEUED',
        33 => 'A BAD KEY WAS PROVIDED/CHARACTERS OUT OF RANGE',
        34 => 'THE HOST TRANSPORT PROTOCOL DOES NOT MATCH THAT OF THE CLIENT', 35 => 'SERVER IS MARKED DEAD',
        36 => 'ENCOUNTERED AN UNKNOWN STAT KEY', 37 => 'ITEM TOO BIG', 38 => 'INVALID ARGUMENTS',
        39 => 'KEY RETURNED FROM SERVER WAS TOO LARGE', 40 => 'FAILED TO SEND AUTHENTICATION TO SERVER',
        41 => 'AUTHENTICATION FAILURE', 42 => 'CONTINUE AUTHENTICATION', 43 => 'ERROR OCCURED WHILE PARSING',
        44 => 'USER INITIATED ERROR OCCURED WHILE PARSING', 45 => 'DEPRECATED', 46 => 'OPERATION IN PROCESS',
        47 => 'SERVER HAS FAILED AND IS DISABLED UNTIL TIMED RETRY', 48 => 'SERVER FAILED TO ALLOCATE OBJECT',
        -1001 => 'PAYLOAD FAILURE',
    ];

    /** @var array<string, MemcachedState> persistent_id => shared state */
    private static array $persistent = [];

    private MemcachedState $s;
    private ?string $persistentId;
    private bool $pristine = true;
    private int $rc = 0;
    private string $detail = '';
    /** @var list<array<string, mixed>> results of getDelayed() not fetched yet */
    private array $delayed = [];

    public function __construct(?string $persistent_id = null, ?callable $callback = null, ?string $connection_str = null)
    {
        // PECL: an empty id is no persistent id.
        $persistent_id = $persistent_id === '' ? null : $persistent_id;
        $this->persistentId = $persistent_id;
        if ($persistent_id !== null && isset(self::$persistent[$persistent_id])) {
            $this->s = self::$persistent[$persistent_id];
            $this->pristine = false;
            return;
        }
        if ($persistent_id !== null && ($kept = self::restore($persistent_id)) !== null) {
            // An earlier request of this process (a PHP-FPM worker) made it: PHP's statics
            // are gone, the library kept the client, its connections, servers and options.
            $this->s = $kept;
            self::$persistent[$persistent_id] = $kept;
            $this->pristine = false;
            return;
        }
        $this->s = new MemcachedState();
        if ($connection_str !== null) {
            foreach (preg_split('/\s+/', trim($connection_str)) as $part) {
                if (preg_match('/^--SERVER=(.+)$/i', $part, $m)) {
                    $spec = explode(':', $m[1]);
                    $this->addServer($spec[0], (int) ($spec[1] ?? 11211), (int) ($spec[2] ?? 0));
                }
            }
        }
        if ($callback !== null) {
            // PECL keeps a persistent instance only once its callback has returned: when the
            // callback throws, the next object with that id is pristine and calls it again.
            $callback($this, $persistent_id);
        }
        if ($persistent_id !== null) {
            self::$persistent[$persistent_id] = $this->s;
            // A client built by the callback is kept with the settings only now that the
            // callback returned (a callback that throws runs again next time, as in PECL).
            $this->s->handle?->keep($persistent_id, $this->kept());
        }
    }

    /** The servers and options of a persistent id kept by the library in an earlier request. */
    private static function restore(string $persistentId): ?MemcachedState
    {
        $r = Handle::restore($persistentId);
        if ($r === null || !isset($r[1]['memcached'])) {
            return null;
        }
        $s = new MemcachedState();
        [$s->servers, $changed] = $r[1]['memcached'];
        $s->options = $changed + $s->options;
        $s->handle = $r[0];
        return $s;
    }

    /**
     * What the library keeps with this object's client when it has a registered persistent
     * id (servers and options, for the next request of this process); nothing otherwise.
     *
     * @return array<string, mixed>
     */
    private function kept(): array
    {
        $id = $this->persistentId;
        if ($id === null || (self::$persistent[$id] ?? null) !== $this->s) {
            return [];
        }
        // Only the options that differ from the defaults: less to decode per request.
        $defaults = (new MemcachedState())->options;
        $changed = [];
        foreach ($this->s->options as $k => $v) {
            if (!array_key_exists($k, $defaults) || $defaults[$k] !== $v) {
                $changed[$k] = $v;
            }
        }
        return ['memcached' => [$this->s->servers, $changed]];
    }

    /** PECL's Memcached objects cannot be cloned. */
    public function __clone()
    {
        throw new \Error('Trying to clone an uncloneable object of class ' . static::class);
    }

    // --- results ----------------------------------------------------------------------------

    public function getResultCode(): int
    {
        return $this->rc;
    }

    public function getResultMessage(): string
    {
        return self::MESSAGES[$this->rc] ?? 'INVALID memcached_return_t';
    }

    public function getLastErrorMessage(): string
    {
        return $this->rc === 0 ? '' : ($this->detail !== '' ? $this->detail : $this->getResultMessage());
    }

    public function getLastErrorCode(): int
    {
        return $this->rc;
    }

    public function getLastErrorErrno(): int
    {
        return 0;
    }

    public function getLastDisconnectedServer(): array|false
    {
        return false;
    }

    private function ok(): void
    {
        $this->rc = 0;
        $this->detail = '';
    }

    private function result(int $code, string $detail = ''): void
    {
        $this->rc = $code;
        $this->detail = $detail;
    }

    /** Record the library's last error (its PECL code and message). */
    private function failed(Handle $h): void
    {
        [$msg, $pecl] = $h->lastError();
        $this->rc = $pecl;
        $this->detail = $msg;
    }

    // --- servers and options --------------------------------------------------------------

    public function addServer(string $host, int $port, int $weight = 0): bool
    {
        if (str_contains($host, ':') && $host[0] !== '[') {
            $host = "[$host]";
        }
        $this->s->servers[] = [$host, $port, $weight];
        $this->s->handle = null;
        $this->ok();
        return true;
    }

    /** @param list<array{0: string, 1?: int, 2?: int}> $servers */
    public function addServers(array $servers): bool
    {
        foreach (array_values($servers) as $i => $srv) {
            if (!is_array($srv) || $srv === []) {
                trigger_error('Memcached::addServers(): server list entry #' . ($i + 1) . ' is not an array', E_USER_WARNING);
                continue;
            }
            // PECL reads host, port and weight by position, whatever the entry's keys.
            $srv = array_values($srv);
            $this->addServer((string) $srv[0], (int) ($srv[1] ?? 11211), (int) ($srv[2] ?? 0));
        }
        return true;
    }

    public function getServerList(): array
    {
        $out = [];
        foreach ($this->s->servers as [$host, $port]) {
            $out[] = ['host' => trim($host, '[]'), 'port' => $port, 'type' => 'TCP'];
        }
        return $out;
    }

    public function getServerByKey(string $server_key): array|false
    {
        $h = $this->handle();
        if ($h === null) {
            return false;
        }
        $idx = $h->ffi->new('size_t[1]');
        $n = $h->ffi->new('size_t');
        $rc = $h->ffi->multiput_client_servers_for($h->client, $server_key, strlen($server_key), $idx, 1, FFI::addr($n));
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        [$host, $port] = $this->s->servers[$idx[0]];
        $this->ok();
        return ['host' => trim($host, '[]'), 'port' => $port, 'weight' => 0]; // PECL reports 0
    }

    public function resetServerList(): bool
    {
        $this->s->servers = [];
        $this->s->handle = null;
        return true;
    }

    public function quit(): bool
    {
        $this->s->handle = null;
        return true;
    }

    public function flushBuffers(): bool
    {
        return true;
    }

    public function getOption(int $option): mixed
    {
        $this->constructed();
        return $this->s->options[$option] ?? 0;
    }

    public function setOptions(array $options): bool
    {
        $ok = true;
        $this->ok();
        foreach ($options as $opt => $value) {
            $ok = $this->setOptionFrom('setOptions', (int) $opt, $value) && $ok;
        }
        return $ok;
    }

    /**
     * PECL leaves the result code alone when an option is set, and warns (E_WARNING there,
     * E_USER_WARNING here) when it refuses one.
     */
    public function setOption(int $option, mixed $value): bool
    {
        return $this->setOptionFrom('setOption', $option, $value);
    }

    private function setOptionFrom(string $method, int $option, mixed $value): bool
    {
        $this->constructed();
        $o = &$this->s->options;
        $invalid = function (string $warning) use ($method): bool {
            $this->result(self::RES_INVALID_ARGUMENTS, $warning);
            trigger_error("Memcached::$method(): $warning", E_USER_WARNING);
            return false;
        };
        if (!in_array($option, self::knownOptions(), true)) {
            return $invalid('error setting memcached option: INVALID ARGUMENTS');
        }
        $refuse = function (string $why): bool {
            $this->result(self::RES_NOT_SUPPORTED, $why);
            return false;
        };
        switch ($option) {
            case self::OPT_LIBKETAMA_COMPATIBLE:
                $o[$option] = $value ? 1 : 0;
                $o[self::OPT_DISTRIBUTION] = $value ? self::DISTRIBUTION_KETAMA_WEIGHTED : self::DISTRIBUTION_MODULA;
                $o[self::OPT_HASH] = $value ? self::HASH_MD5 : self::HASH_DEFAULT;
                $o[self::OPT_LIBKETAMA_HASH] = $value ? self::HASH_MD5 : self::HASH_DEFAULT;
                break;
            case self::OPT_DISTRIBUTION:
                // Outside libmemcached's distributions (0-6) PECL warns INVALID ARGUMENTS, as here;
                // a real distribution multiput does not reproduce is RES_NOT_SUPPORTED.
                if ((int) $value < 0 || (int) $value > 6) {
                    return $invalid('error setting memcached option: INVALID ARGUMENTS');
                }
                if (!in_array((int) $value, [self::DISTRIBUTION_MODULA, self::DISTRIBUTION_CONSISTENT, self::DISTRIBUTION_KETAMA_WEIGHTED], true)) {
                    return $refuse('multiput places keys as libmemcached does with DISTRIBUTION_MODULA (HASH_DEFAULT), OPT_LIBKETAMA_COMPATIBLE, or DISTRIBUTION_CONSISTENT with HASH_MD5');
                }
                $o[$option] = (int) $value;
                break;
            case self::OPT_HASH:
                // An unknown hash (not one of PECL's HASH_* 0-8): PECL returns true, no warning,
                // and the hash stays as it was; so does this.
                if ((int) $value < 0 || (int) $value > 8) {
                    break;
                }
                if (!in_array((int) $value, [self::HASH_DEFAULT, self::HASH_MD5], true)) {
                    return $refuse('multiput hashes keys as libmemcached does with HASH_DEFAULT (one-at-a-time, modula) or HASH_MD5 (ketama)');
                }
                $o[$option] = (int) $value;
                break;
            case self::OPT_NUMBER_OF_REPLICAS:
                return $refuse('libmemcached replicas are not supported: use Multiput\Memcached::OPT_MULTIPUT_REPLICAS');
            case self::OPT_PREFIX_KEY:
                // PECL checks the characters (text protocol rules), not the length: a long
                // prefix makes every key too long instead.
                if (preg_match('/[^\x21-\x7e]/', (string) $value) === 1) {
                    return $invalid('bad key provided');
                }
                $o[$option] = (string) $value;
                break;
            case self::OPT_SERIALIZER:
                if (!in_array((int) $value, [1, 2, 3, 4, 5], true)) {
                    return $invalid('invalid serializer provided');
                }
                $o[$option] = (int) $value;
                break;
            case self::OPT_COMPRESSION_TYPE:
                if (!in_array((int) $value, [self::COMPRESSION_FASTLZ, self::COMPRESSION_ZLIB], true)) {
                    $this->result(self::RES_INVALID_ARGUMENTS, 'invalid compression type'); // (no warning)
                    return false;
                }
                $o[$option] = (int) $value;
                break;
            case self::OPT_COMPRESSION:
            case self::OPT_BINARY_PROTOCOL:
            case self::OPT_TCP_NODELAY:
            case self::OPT_REMOVE_FAILED_SERVERS:
                $o[$option] = $option === self::OPT_COMPRESSION ? (bool) $value : ((bool) $value ? 1 : 0);
                break;
            case self::OPT_USER_FLAGS:
                if ((int) $value > 65535) {
                    return $invalid('MEMC_OPT_USER_FLAGS must be < 65535');
                }
                $o[$option] = (int) $value;
                break;
            case self::OPT_MULTIPUT_WRITE_POLICY:
            case self::OPT_MULTIPUT_READ_POLICY:
            case self::OPT_MULTIPUT_TLS_CA:
            case self::OPT_MULTIPUT_TLS_CERT:
            case self::OPT_MULTIPUT_TLS_KEY:
            case self::OPT_MULTIPUT_TLS_SERVER_NAME:
            case self::OPT_MULTIPUT_USERNAME:
            case self::OPT_MULTIPUT_PASSWORD:
            case self::OPT_MULTIPUT_TLS_SERVERS:
                $o[$option] = is_array($value) ? implode(',', $value) : (string) $value;
                break;
            case self::OPT_MULTIPUT_TLS:
                $o[$option] = (bool) $value;
                break;
            case self::OPT_MULTIPUT_CONVENTION:
                $c = strtolower(trim((string) $value));
                if (!in_array($c, ['multiput', 'pecl', 'php', 'php-memcached', 'pylibmc', 'pymemcache', 'python'], true)) {
                    return $invalid("OPT_MULTIPUT_CONVENTION must be 'multiput', 'pecl' or 'pylibmc', not '$c'");
                }
                $o[$option] = $c;
                break;
            default:
                // libmemcached keeps behaviours as numbers: getOption() gives back ints.
                $o[$option] = is_bool($value) ? (int) $value : (is_numeric($value) ? (int) $value : $value);
        }
        $this->s->handle = null;
        if ($option >= 0) {
            $this->ok(); // a libmemcached behaviour; PECL's own options leave the code alone
        }
        return true;
    }

    /** A subclass whose constructor did not call this one: PECL throws this Error. */
    private function constructed(): void
    {
        if (!isset($this->s)) {
            throw new \Error('Memcached constructor was not called');
        }
    }

    /** @return list<int> the options PECL knows (OPT_* constants) and multiput's own */
    private static function knownOptions(): array
    {
        static $known = null;
        if ($known === null) {
            $known = [];
            foreach ((new \ReflectionClass(self::class))->getConstants() as $name => $v) {
                if (str_starts_with($name, 'OPT_')) {
                    $known[] = $v;
                }
            }
        }
        return $known;
    }

    /** The native client for the current servers and options, built on first use. */
    private function handle(): ?Handle
    {
        $this->constructed();
        if ($this->s->handle !== null) {
            return $this->s->handle;
        }
        if ($this->s->servers === []) {
            $this->result(self::RES_NO_SERVERS);
            return null;
        }
        $o = $this->s->options;
        $servers = array_map(static fn ($s) => "$s[0]:$s[1]:$s[2]", $this->s->servers);
        $timeout = $o[self::OPT_POLL_TIMEOUT];
        foreach ([self::OPT_RECV_TIMEOUT, self::OPT_SEND_TIMEOUT] as $us) {
            if ($o[$us] > 0) {
                $timeout = max(1, intdiv($o[$us] + 999, 1000));
                break;
            }
        }
        try {
            $mode = self::ringMode($o);
        } catch (Exception $e) {
            $this->result($e->peclCode, $e->getMessage()); // the library cannot be loaded
            return null;
        }
        if ($mode === null) {
            $this->result(self::RES_NOT_SUPPORTED, 'this OPT_DISTRIBUTION/OPT_HASH pair is a placement multiput does not reproduce: use DISTRIBUTION_MODULA with HASH_DEFAULT, OPT_LIBKETAMA_COMPATIBLE, or DISTRIBUTION_CONSISTENT with HASH_MD5');
            return null;
        }
        $replicas = (int) ($o[self::OPT_MULTIPUT_REPLICAS] ?? 0);
        $options = [
            'servers' => implode(',', $servers),
            'mode' => $mode,
            'timeout_ms' => max(1, $timeout),
            'connect_timeout_ms' => max(1, $o[self::OPT_CONNECT_TIMEOUT]),
            'retry_ms' => max(1, $o[self::OPT_RETRY_TIMEOUT]) * 1000,
            'failure_limit' => max(1, $o[self::OPT_SERVER_FAILURE_LIMIT]),
            'tcp_nodelay' => (bool) $o[self::OPT_TCP_NODELAY],
            // PECL's binary protocol carries keys with spaces and control bytes; multiput sends
            // them base64-encoded over meta, and memcached stores the same raw key.
            'binary_keys' => (bool) $o[self::OPT_BINARY_PROTOCOL],
            'prefix' => $o[self::OPT_PREFIX_KEY],
            'convention' => $o[self::OPT_MULTIPUT_CONVENTION] ?? 'multiput',
            'compress_threshold' => $o[self::OPT_COMPRESSION] ? self::COMPRESSION_THRESHOLD : 0,
        ];
        foreach (self::STRING_OPTIONS as $opt => $name) {
            if (isset($o[$opt]) && $o[$opt] !== '') {
                $options[$name] = $o[$opt];
            }
        }
        if (!empty($o[self::OPT_MULTIPUT_TLS])) {
            $options['tls'] = true;
        }
        if ($replicas > 0) {
            $options['replicas'] = $replicas;
            $options['failover'] = (bool) $o[self::OPT_REMOVE_FAILED_SERVERS];
            if (isset($o[self::OPT_MULTIPUT_WRITE_POLICY])) {
                $options['write'] = $o[self::OPT_MULTIPUT_WRITE_POLICY];
            }
            if (isset($o[self::OPT_MULTIPUT_READ_POLICY])) {
                $options['read'] = $o[self::OPT_MULTIPUT_READ_POLICY];
            }
            if (isset($o[self::OPT_MULTIPUT_TOMBSTONE_TTL])) {
                $options['tombstone_ttl'] = $o[self::OPT_MULTIPUT_TOMBSTONE_TTL];
            }
        }
        try {
            $this->s->handle = new Handle($options, $this->persistentId, $this->kept());
        } catch (Exception $e) {
            $this->result($e->peclCode, $e->getMessage());
            return null;
        }
        return $this->s->handle;
    }

    /**
     * The core's ring mode for libmemcached's distribution options, or null for a pair it does
     * not reproduce (modula over MD5, consistent over one-at-a-time).
     *
     * @param array<int, mixed> $o
     */
    private static function ringMode(array $o): ?string
    {
        // PECL's options as libmemcached's distribution and hash; the core decides the placement.
        $dist = (int) $o[self::OPT_DISTRIBUTION];
        $distribution = match (true) {
            $o[self::OPT_LIBKETAMA_COMPATIBLE] || $dist === self::DISTRIBUTION_KETAMA_WEIGHTED => 'consistent_weighted',
            $dist === self::DISTRIBUTION_CONSISTENT => 'consistent',
            $dist === self::DISTRIBUTION_MODULA => 'modula',
            default => null,
        };
        if ($distribution === null) {
            return null;
        }
        $hash = [
            self::HASH_DEFAULT => 'default', self::HASH_MD5 => 'md5', self::HASH_CRC => 'crc',
            self::HASH_FNV1_64 => 'fnv1_64', self::HASH_FNV1A_64 => 'fnv1a_64', self::HASH_FNV1_32 => 'fnv1_32',
            self::HASH_FNV1A_32 => 'fnv1a_32', self::HASH_HSIEH => 'hsieh', self::HASH_MURMUR => 'murmur',
        ][(int) $o[self::OPT_HASH]] ?? 'unknown';
        $ffi = Native::ffi();
        $mode = $ffi->new('const char*');
        if ($ffi->multiput_ring_mode_for($distribution, $hash, FFI::addr($mode)) !== 0) {
            return null;
        }
        return FFI::string($mode);
    }

    /**
     * A negative expiry as PECL's libmemcached sends it: over the binary protocol as an
     * unsigned 32-bit absolute time (year 2106: the value is kept, as with 0); over text as a
     * negative number (memcached expires the value at once), which the core sends too.
     */
    private function ttl(int $expiration): int
    {
        return $expiration < 0 && $this->s->options[self::OPT_BINARY_PROTOCOL] ? 0 : $expiration;
    }

    private function userFlags(): int
    {
        $f = $this->s->options[self::OPT_USER_FLAGS];
        return $f > 0 ? $f << 16 : 0;
    }

    private function serializer(): int
    {
        return $this->s->options[self::OPT_SERIALIZER];
    }

    // --- reads ------------------------------------------------------------------------------

    public function get(?string $key, ?callable $cache_cb = null, int $get_flags = 0): mixed
    {
        $key ??= self::nullArg('get', 1, 'key', null, '');
        if (!$this->validKey($key)) {
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        $extended = ($get_flags & self::GET_EXTENDED) !== 0;
        $rc = $h->ffi->multiput_get_php($h->client, $key, strlen($key), $extended ? Native::GET_EXTENDED : Native::GET_RAW, $h->bufPtr);
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        if ($h->buf->raw === 1) {
            $this->rc = 0;
            $this->detail = '';
            return $h->bytes(); // a string, taken as is
        }
        if ($h->buf->len === 0) {
            $this->rc = self::RES_NOTFOUND;
            $this->detail = '';
            if ($cache_cb !== null) {
                return $this->readThrough($key, $cache_cb, $extended);
            }
            return false;
        }
        if ($h->buf->deferred === 0) {
            $this->rc = 0;
            $this->detail = '';
            return unserialize(FFI::string($h->buf->data, $h->buf->len), Native::UNSERIALIZE_OPTIONS);
        }
        [$ok, $v] = $h->value($this->serializer());
        if (!$ok) {
            $this->result(self::RES_PAYLOAD_FAILURE, "the value of $key cannot be decoded" . (is_string($v) ? ": $v" : ''));
            return false;
        }
        $this->ok();
        return $v;
    }

    /** PECL's read-through callback: cb($memc, $key, &$value) returns true to store $value. */
    private function readThrough(string $key, callable $cb, bool $extended): mixed
    {
        $value = null;
        $expiration = 0;
        if (!$cb($this, $key, $value, $expiration) || $extended) {
            // PECL 3.x calls the callback with GET_EXTENDED too, but stores and returns nothing.
            $this->result(self::RES_NOTFOUND);
            return false;
        }
        if (!$this->set($key, $value, (int) $expiration)) {
            return false;
        }
        return $value;
    }

    // --- writes -----------------------------------------------------------------------------

    private function store(int $mode, string $key, mixed $value, int $expiration): bool
    {
        if (!$this->validKey($key)) {
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        [$type, $format, $payload, $flags] = $this->encode($value, $h);
        $rc = $h->ffi->multiput_store(
            $h->client,
            $mode,
            $key,
            strlen($key),
            $type,
            $format,
            $payload,
            strlen($payload),
            $this->ttl($expiration),
            $flags | $this->userFlags()
        );
        if ($rc !== 0) {
            $this->failed($h);
            if ($rc === Native::E_VALUE_TOO_LARGE && $mode === Native::SET) {
                $this->dropTooLarge($h, $key);
            }
            if ($rc === Native::E_NOT_STORED && $this->s->options[self::OPT_BINARY_PROTOCOL]) {
                // What PECL reports over the binary protocol, which has no NOT_STORED for these.
                if ($mode === Native::ADD) {
                    $this->rc = self::RES_DATA_EXISTS;
                } elseif ($mode === Native::REPLACE) {
                    $this->rc = self::RES_NOTFOUND;
                }
            }
            return false;
        }
        $this->rc = 0;
        $this->detail = '';
        return true;
    }

    public function set(?string $key, mixed $value, ?int $expiration = 0): bool
    {
        if ($key === null || $expiration === null) {
            [$key, $expiration] = [self::nullArg('set', 1, 'key', $key, ''), self::nullArg('set', 3, 'expiration', $expiration, 0)];
        }
        return $this->store(Native::SET, $key, $value, $expiration);
    }

    public function add(?string $key, mixed $value, ?int $expiration = 0): bool
    {
        if ($key === null || $expiration === null) {
            [$key, $expiration] = [self::nullArg('add', 1, 'key', $key, ''), self::nullArg('add', 3, 'expiration', $expiration, 0)];
        }
        return $this->store(Native::ADD, $key, $value, $expiration);
    }

    public function replace(?string $key, mixed $value, ?int $expiration = 0): bool
    {
        if ($key === null || $expiration === null) {
            [$key, $expiration] = [self::nullArg('replace', 1, 'key', $key, ''), self::nullArg('replace', 3, 'expiration', $expiration, 0)];
        }
        return $this->store(Native::REPLACE, $key, $value, $expiration);
    }

    public function append(string $key, string $value): ?bool
    {
        return $this->concat('append', Native::APPEND, $key, $value);
    }

    public function prepend(string $key, string $value): ?bool
    {
        return $this->concat('prepend', Native::PREPEND, $key, $value);
    }

    private function concat(string $method, int $mode, string $key, string $value): ?bool
    {
        if ($this->s->options[self::OPT_COMPRESSION]) {
            trigger_error("Memcached::$method(): cannot append/prepend with compression turned on", E_USER_WARNING);
            return null;
        }
        return $this->store($mode, $key, $value, 0);
    }

    public function cas(string|int|float|null $cas_token, string $key, mixed $value, int $expiration = 0): bool
    {
        if (!$this->validKey($key)) {
            return false;
        }
        if ((int) $cas_token === 0) {
            // What PECL gets for a CAS unique of 0: over the binary protocol an unconditional
            // store, over text memcached's ERROR (and the value is kept).
            if ($this->s->options[self::OPT_BINARY_PROTOCOL]) {
                return $this->set($key, $value, $expiration);
            }
            $this->result(self::RES_SERVER_ERROR_REPLY);
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        [$type, $format, $payload, $flags] = $this->encode($value, $h);
        $rc = $h->ffi->multiput_cas(
            $h->client,
            $key,
            strlen($key),
            $type,
            $format,
            $payload,
            strlen($payload),
            $this->ttl($expiration),
            $flags | $this->userFlags(),
            (int) $cas_token
        );
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        $this->ok();
        return true;
    }

    /**
     * PECL stores the items one by one and keeps the result code of the last: true when the
     * last item was stored, whatever happened to the others. Items with a key PECL refuses
     * (empty, over 250 bytes) or multiput cannot send get RES_BAD_KEY_PROVIDED, unsent.
     */
    public function setMulti(array $items, int $expiration = 0): bool
    {
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        $codes = [];
        $keys = [];
        $tooLarge = [];
        $groups = []; // flags => [records, positions]
        $i = 0;
        foreach ($items as $key => $value) {
            $key = (string) $key;
            $pos = $i++;
            $keys[$pos] = $key;
            if ($key === '' || strlen($key) > 250 || $this->unsendable($key)) {
                $codes[$pos] = self::RES_BAD_KEY_PROVIDED;
                continue;
            }
            [$type, $format, $payload, $flags] = $this->encode($value, $h);
            $groups[$flags][0] = ($groups[$flags][0] ?? '') . pack('VVCC', strlen($key), strlen($payload), $type, $format) . $key . $payload;
            $groups[$flags][1][] = $pos;
        }
        $out = $h->ffi->new('MultiputItems*');
        foreach ($groups as $flags => [$buf, $positions]) {
            $rc = $h->ffi->multiput_set_multi($h->client, $buf, strlen($buf), $this->ttl($expiration), $flags | $this->userFlags(), FFI::addr($out));
            if (FFI::isNull($out)) {
                // Refused as a whole (a value the convention cannot represent, ...).
                $this->failed($h);
                $code = $this->rc;
                foreach ($positions as $pos) {
                    $codes[$pos] = $code;
                }
                continue;
            }
            $items = $out[0];
            foreach ($positions as $j => $pos) {
                $status = $j < $items->count ? $items->items[$j]->status : $rc;
                $codes[$pos] = $status === 0 ? 0 : $h->ffi->multiput_pecl_result($status);
                if ($status === Native::E_VALUE_TOO_LARGE) {
                    $tooLarge[] = $keys[$pos];
                }
            }
            $h->ffi->multiput_items_free($out);
        }
        foreach ($tooLarge as $key) {
            $this->dropTooLarge($h, $key);
        }
        if ($codes === []) {
            $this->ok();
            return true;
        }
        $this->result($codes[$i - 1]);
        return $this->rc === 0;
    }

    /**
     * memcached drops the value it had when a set is refused as too large ("avoid stale
     * data"); the core refuses values over 1 MiB before sending, so do what the server would.
     */
    private function dropTooLarge(Handle $h, string $key): void
    {
        if ($h->enveloped) {
            return;
        }
        [$rc, $detail] = [$this->rc, $this->detail];
        $h->ffi->multiput_delete($h->client, $key, strlen($key));
        [$this->rc, $this->detail] = [$rc, $detail];
    }

    /** Native::encode; a value that cannot be serialized is RES_PAYLOAD_FAILURE (as PECL). */
    private function encode(mixed $value, Handle $h): array
    {
        try {
            return Native::encode($value, $this->serializer(), $h->enveloped);
        } catch (\Throwable $e) {
            $this->result(self::RES_PAYLOAD_FAILURE);
            throw $e;
        }
    }

    public function delete(?string $key, int $time = 0): bool
    {
        $key ??= self::nullArg('delete', 1, 'key', null, '');
        if (!$this->validKey($key)) {
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        $rc = $h->ffi->multiput_delete($h->client, $key, strlen($key));
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        $this->ok();
        return true;
    }

    /** @return array<string|int, true|int> key => true, or the key's RES_* code */
    public function deleteMulti(array $keys, int $time = 0): array
    {
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return [];
        }
        if ($keys === []) {
            $this->ok();
            return [];
        }
        // PECL skips empty keys (they are not in the result); other keys multiput cannot
        // send are RES_BAD_KEY_PROVIDED without being sent.
        $all = [];
        $send = [];
        foreach ($keys as $k) {
            $k = (string) $k;
            if ($k === '') {
                continue;
            }
            $all[] = $k;
            if (strlen($k) <= 250 && !$this->unsendable($k)) {
                $send[] = $k;
            }
        }
        $status = [];
        if ($send !== []) {
            $joined = implode("\n", $send);
            $out = $h->ffi->new('MultiputItems*');
            $rc = $h->ffi->multiput_delete_multi($h->client, $joined, strlen($joined), 10, FFI::addr($out));
            if ($rc !== 0) {
                $this->failed($h);
                return [];
            }
            $items = $out[0];
            $n = min($items->count, count($send));
            for ($i = 0; $i < $n; $i++) {
                $status[] = $items->items[$i]->status;
            }
            $h->ffi->multiput_items_free($out);
        }
        $result = [];
        $last = 0;
        $j = 0;
        foreach ($all as $k) {
            if (strlen($k) > 250 || $this->unsendable($k)) {
                $last = self::RES_BAD_KEY_PROVIDED;
            } else {
                $st = $status[$j++] ?? Native::E_KEY;
                $last = $st === 0 ? 0 : $h->ffi->multiput_pecl_result($st);
            }
            $result[$k] = $last === 0 ? true : $last;
        }
        $this->result($last); // PECL: the code of the last key
        return $result;
    }

    public function increment(string $key, int $offset = 1, int $initial_value = 0, int $expiry = 0): int|false
    {
        return $this->arith('increment', $key, $offset, false, func_num_args() >= 3, $initial_value, $expiry);
    }

    public function decrement(string $key, int $offset = 1, int $initial_value = 0, int $expiry = 0): int|false
    {
        return $this->arith('decrement', $key, $offset, true, func_num_args() >= 3, $initial_value, $expiry);
    }

    private function arith(string $method, string $key, int $offset, bool $decr, bool $withInitial, int $initial, int $expiry): int|false
    {
        $this->ok(); // PECL clears the result code first
        if (!$this->validKey($key)) {
            return false;
        }
        if ($offset < 0) {
            trigger_error("Memcached::$method(): offset cannot be a negative value", E_USER_WARNING);
            return false;
        }
        if ($withInitial && !$this->s->options[self::OPT_BINARY_PROTOCOL]) {
            // PECL's rule; multiput emulates increment-with-initial on every protocol, but a
            // drop-in must fail where PECL fails.
            trigger_error("Memcached::$method(): Initial value is only supported with binary protocol", E_USER_WARNING);
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        $v = $h->ffi->new('uint64_t');
        $rc = $h->ffi->multiput_incr(
            $h->client,
            $key,
            strlen($key),
            $offset,
            $decr ? 1 : 0,
            $withInitial ? 1 : 0,
            $initial,
            $this->ttl($expiry),
            FFI::addr($v)
        );
        if ($rc !== 0) {
            $this->failed($h);
            if ($this->rc === self::RES_CLIENT_ERROR && $this->s->options[self::OPT_BINARY_PROTOCOL]) {
                $this->rc = self::RES_UNKNOWN_READ_FAILURE; // PECL's code for a non-numeric value over binary
            }
            return false;
        }
        $this->ok();
        return $v->cdata;
    }

    public function touch(string $key, int $expiration = 0): bool
    {
        if (!$this->validKey($key)) {
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        $rc = $h->ffi->multiput_touch($h->client, $key, strlen($key), $this->ttl($expiration));
        if ($rc !== 0) {
            $this->failed($h);
            if (in_array($this->rc, [self::RES_CONNECTION_FAILURE, self::RES_SERVER_TEMPORARILY_DISABLED, self::RES_SERVER_MARKED_DEAD], true)) {
                $this->rc = self::RES_WRITE_FAILURE; // libmemcached's touch writes without checking the server first
            }
            return false;
        }
        $this->ok();
        return true;
    }

    public function setSaslAuthData(string $username, string $password): bool
    {
        $this->result(self::RES_NOT_SUPPORTED, 'SASL needs the binary protocol, which multiput does not speak: use memcached\'s ASCII authentication (memcached -Y) with OPT_MULTIPUT_USERNAME and OPT_MULTIPUT_PASSWORD');
        return false;
    }

    public function setEncodingKey(string $key): bool
    {
        $this->result(self::RES_NOT_SUPPORTED, 'value encryption (setEncodingKey) is not supported');
        return false;
    }
}
