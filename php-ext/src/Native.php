<?php

declare(strict_types=1);

namespace Multiput;

use FFI;
use FFI\CData;

/**
 * The C ABI (ffi/, libmultiput_ffi.so) loaded through PHP's FFI extension, and the few
 * translations PHP needs: PHP values to the ABI's typed values and back. Value typing itself
 * (envelope types, PECL flags, compression) is in the library; PHP only serializes arrays and
 * objects, which is naturally PHP's job.
 *
 * Loading, in this order (php-ext/README.md, PHP-FPM):
 * - the FFI scope "multiput" when it exists: loaded once, before php-fpm forks its workers,
 *   by ffi.preload (a header from php-ext/ffi-header.php) or by php-ext/preload.php; no
 *   parsing per request. Under PHP's default ffi.enable=preload only preloaded code may use
 *   FFI, so php-ext/preload.php must also be opcache.preload (it preloads these classes);
 * - else FFI::cdef() once per process in the CLI, once per request in a web SAPI (preloaded
 *   classes, or ffi.enable=1). The library is linked -z nodelete: it stays loaded when PHP
 *   closes it at the end of a request, and with it the persistent clients.
 * The library is the php.ini setting multiput.library (read with get_cfg_var(): php.ini,
 * conf.d, `php -d`; php-fpm clears the environment, so no environment variable is needed),
 * else $MULTIPUT_FFI_LIB, else <repo>/target/release/libmultiput_ffi.so, else
 * <repo>/target/debug/...; the header is multiput.header, else $MULTIPUT_FFI_HEADER, else
 * <repo>/ffi/include/multiput.h. When none of this works, ffi() throws one Multiput\Exception
 * (E_CONFIG, PECL code RES_FAILURE) naming the setting to fix, logged once per request with
 * error_log(): Multiput\Memcached turns it into false + RES_FAILURE, Multiput\Client throws it.
 *
 * @internal
 */
final class Native
{
    public const OK = 0;
    public const E_ARGUMENT = 1;
    public const E_CONFIG = 2;
    public const E_KEY = 3;
    public const E_VALUE_TOO_LARGE = 4;
    public const E_NOT_STORED = 5;
    public const E_EXISTS = 6;
    public const E_NOT_FOUND = 7;
    public const E_LOCK_NOT_ACQUIRED = 18;
    public const E_VALUE = 19;
    public const E_CALLBACK = 20;
    public const E_AUTH = 21;
    public const E_TLS_UNTRUSTED = 22;
    public const E_TLS_HOSTNAME = 23;
    public const E_TLS_EXPIRED = 24;
    public const E_TLS_CLIENT_CERT = 25;
    public const E_TLS_NOT_TLS = 26;
    public const E_TLS_REQUIRED = 27;
    public const E_TLS = 28;

    public const TYPE_BYTES = 0;
    public const TYPE_TEXT = 1;
    public const TYPE_INT = 2;
    public const TYPE_FLOAT = 3;
    public const TYPE_BOOL = 4;
    public const TYPE_SERIALIZED = 5;
    public const TYPE_STRING = 16;

    public const FORMAT_NONE = 0;
    public const FORMAT_PICKLE = 1;
    public const FORMAT_PHP = 2;
    public const FORMAT_JSON = 3;

    public const SET = 0;
    public const ADD = 1;
    public const REPLACE = 2;
    public const APPEND = 3;
    public const PREPEND = 4;

    public const GET_CAS = 1;
    public const GET_PRESERVE_ORDER = 2;
    public const GET_EXTENDED = 4;
    /** multiput_get_php: a string value as its bytes (buffer's raw = 1), not serialize()d. */
    public const GET_RAW = 8;

    public const UPDATE_KEEP = 0;
    public const UPDATE_SET = 1;
    public const UPDATE_DELETE = 2;

    public const DEFER_PHP = 1;
    public const DEFER_JSON = 2;
    public const DEFER_IGBINARY = 3;
    public const DEFER_MSGPACK = 4;
    public const DEFER_PICKLE = 5;
    public const DEFER_UNKNOWN = 6;

    /** Serializers (the numbers are PECL's Memcached::SERIALIZER_*). */
    public const SERIALIZER_PHP = 1;
    public const SERIALIZER_IGBINARY = 2;
    public const SERIALIZER_JSON = 3;
    public const SERIALIZER_JSON_ARRAY = 4;
    public const SERIALIZER_MSGPACK = 5;

    /** PECL flag type numbers for the serializers PHP writes itself in plain mode. */
    private const PECL_IGBINARY = 5;
    private const PECL_MSGPACK = 7;

    /** The FFI scope php-ext/preload.php loads (FFI_SCOPE of its header). */
    public const SCOPE = 'multiput';
    /** php.ini settings (get_cfg_var: php.ini, conf.d, -d; not pool php_value). */
    public const INI_LIBRARY = 'multiput.library';
    public const INI_HEADER = 'multiput.header';

    private static ?FFI $ffi = null;
    /** Why the library cannot be used (thrown again on every call of this request). */
    private static ?Exception $unavailable = null;

    /** Options for unserialize() of result buffers: only our marker class may appear. */
    public const UNSERIALIZE_OPTIONS = ['allowed_classes' => [Deferred::class]];

    public static function ffi(): FFI
    {
        return self::$ffi ?? self::load();
    }

    private static function load(): FFI
    {
        if (self::$unavailable !== null) {
            throw self::$unavailable;
        }
        try {
            return self::$ffi = self::checked(self::open());
        } catch (\Throwable $e) {
            $ex = $e instanceof Exception ? $e : self::config('cannot load the multiput library: ' . $e->getMessage());
            self::$unavailable = $ex;
            error_log('multiput: ' . $ex->getMessage());
            throw $ex;
        }
    }

    /**
     * $ffi, once its declarations are known to match the library: a header from another
     * version would have the library write past the buffers PHP allocates.
     */
    private static function checked(FFI $ffi): FFI
    {
        $fix = 'use the multiput.h shipped with the library (' . self::INI_HEADER . ' in php.ini, or '
            . 'regenerate the ffi.preload header with php php-ext/ffi-header.php)';
        try {
            $lib = $ffi->multiput_abi_buffer_size();
        } catch (\FFI\Exception) {
            throw self::config("the multiput header is older than the library: $fix");
        }
        $header = FFI::sizeof($ffi->type('MultiputBuffer'));
        if ($lib !== $header) {
            throw self::config("the multiput header does not match the library (MultiputBuffer: $header bytes in the header, $lib in the library): $fix");
        }
        return $ffi;
    }

    private static function config(string $message): Exception
    {
        return new Exception($message, self::E_CONFIG, 1); // PECL: RES_FAILURE
    }

    private static function open(): FFI
    {
        $preload = dirname(__DIR__) . '/preload.php';
        if (!extension_loaded('ffi')) {
            $pre = get_cfg_var('ffi.preload');
            throw self::config(is_string($pre) && $pre !== ''
                ? "PHP's FFI extension did not start: ffi.preload=$pre names a header whose library does not load (regenerate it with php php-ext/ffi-header.php)"
                : "PHP's FFI extension is not loaded: enable it in php.ini (extension=ffi; Debian: part of php8.2-cli and php8.2-fpm)");
        }
        $enable = strtolower(trim((string) ini_get('ffi.enable')));
        if (in_array($enable, ['', '0', 'false', 'off', 'no'], true)) {
            throw self::config("FFI is disabled (ffi.enable=$enable): set ffi.enable=preload (PHP's default) in php.ini, with opcache.preload=$preload");
        }
        // Loaded once for the process by ffi.preload (or by preload.php): nothing to parse.
        try {
            return FFI::scope(self::SCOPE);
        } catch (\FFI\Exception) {
        }
        // Else read and parse the declarations (per request under php-fpm: about 0.1-0.3 ms,
        // what ffi.preload saves); the library itself is linked -z nodelete, so it stays
        // loaded, with its persistent clients, across requests.
        $lib = self::libraryPath();
        $decls = self::declarations(self::headerPath());
        try {
            return FFI::cdef($decls, $lib);
        } catch (\FFI\Exception $e) {
            if (str_contains($e->getMessage(), 'restricted')) {
                $preloaded = (string) ini_get('opcache.preload');
                throw self::config($preloaded === ''
                    ? "ffi.enable=$enable lets only preloaded code use FFI: set opcache.preload=$preload and opcache.enable=1 in php.ini (see php-ext/README.md, PHP-FPM)"
                    : "opcache.preload=$preloaded did not preload the Multiput classes, and ffi.enable=$enable lets only preloaded code use FFI: set opcache.preload=$preload");
            }
            throw self::config("FFI could not load $lib ({$e->getMessage()}): check " . self::INI_LIBRARY . ' in php.ini');
        }
    }

    /**
     * Run by php-ext/preload.php (opcache.preload), in the process that later forks the
     * workers: when ffi.preload did not load the FFI scope "multiput" already, load it here
     * with FFI::load() if PHP allows it (PHP 8.2 refuses FFI::load() in preloading as soon as
     * opcache.preload_user is set, i.e. whenever the server starts as root: then each request
     * parses the declarations, or set ffi.preload). Opens no socket and starts no thread:
     * clients connect on their first call, in the worker. Never throws: a failure is one
     * error_log() line naming the setting, and the calls then report it.
     */
    public static function preload(): bool
    {
        try {
            try {
                FFI::scope(self::SCOPE);
                return true; // ffi.preload
            } catch (\FFI\Exception) {
            }
            if ((string) ini_get('opcache.preload_user') !== '') {
                return false;
            }
            $lib = self::libraryPath();
            if (preg_match('/["\r\n]/', $lib) === 1) {
                throw self::config(self::INI_LIBRARY . "=$lib: the path cannot contain quotes or newlines");
            }
            // FFI::load() takes a file: a private temporary one (tempnam: created 0600, never
            // a name another user could have prepared), removed once parsed.
            $tmp = tempnam(sys_get_temp_dir(), 'multiput-ffi-');
            if ($tmp === false) {
                throw self::config('cannot create a temporary file in ' . sys_get_temp_dir() . ' (sys_temp_dir in php.ini)');
            }
            try {
                file_put_contents($tmp, self::scopeHeader($lib, self::headerPath()));
                $ffi = FFI::load($tmp);
            } finally {
                @unlink($tmp);
            }
            if ($ffi === null) {
                throw self::config("FFI::load() could not load $lib: check " . self::INI_LIBRARY . ' in php.ini');
            }
            return true;
        } catch (\Throwable $e) {
            error_log('multiput: preloading failed: ' . $e->getMessage());
            return false;
        }
    }

    /**
     * The header ffi.preload takes (what php-ext/ffi-header.php prints): the declarations
     * with FFI_SCOPE "multiput" and FFI_LIB $lib.
     */
    public static function scopeHeader(string $lib, string $headerPath): string
    {
        return '#define FFI_SCOPE "' . self::SCOPE . "\"\n#define FFI_LIB \"$lib\"\n" . self::declarations($headerPath);
    }

    public static function libraryPath(): string
    {
        $ini = get_cfg_var(self::INI_LIBRARY);
        if (is_string($ini) && $ini !== '') {
            if (!is_file($ini)) {
                throw self::config(self::INI_LIBRARY . "=$ini (php.ini): no such file; set it to the path of libmultiput_ffi.so (cargo build -p multiput-ffi --release)");
            }
            return $ini;
        }
        $env = getenv('MULTIPUT_FFI_LIB');
        if (is_string($env) && $env !== '') {
            if (!is_file($env)) {
                throw self::config("MULTIPUT_FFI_LIB=$env: no such file; set it, or " . self::INI_LIBRARY . ' in php.ini, to the path of libmultiput_ffi.so');
            }
            return $env;
        }
        $root = dirname(__DIR__, 2);
        foreach (['release', 'debug'] as $profile) {
            $p = "$root/target/$profile/libmultiput_ffi.so";
            if (is_file($p)) {
                return $p;
            }
        }
        throw self::config(
            "libmultiput_ffi.so not found (no $root/target/{release,debug}/libmultiput_ffi.so): set "
            . self::INI_LIBRARY . '=/path/to/libmultiput_ffi.so in php.ini (or MULTIPUT_FFI_LIB in the CLI); build it with cargo build -p multiput-ffi --release'
        );
    }

    public static function headerPath(): string
    {
        $ini = get_cfg_var(self::INI_HEADER);
        if (is_string($ini) && $ini !== '') {
            if (!is_file($ini)) {
                throw self::config(self::INI_HEADER . "=$ini (php.ini): no such file; set it to the path of multiput.h (ffi/include/multiput.h)");
            }
            return $ini;
        }
        $env = getenv('MULTIPUT_FFI_HEADER');
        $p = is_string($env) && $env !== '' ? $env : dirname(__DIR__, 2) . '/ffi/include/multiput.h';
        if (!is_file($p)) {
            throw self::config("the multiput header $p is missing: set " . self::INI_HEADER . '=/path/to/multiput.h in php.ini (it is ffi/include/multiput.h)');
        }
        return $p;
    }

    /** The header as FFI::cdef() takes it: no preprocessor lines, no C++ guard. */
    public static function cdef(string $headerPath): string
    {
        $h = @file_get_contents($headerPath);
        if ($h === false) {
            throw self::config("cannot read the multiput header at $headerPath: set " . self::INI_HEADER . ' in php.ini');
        }
        $h = preg_replace('/^#ifdef __cplusplus.*?^#endif[^\n]*\n/ms', '', $h);
        return preg_replace('/^#.*$/m', '', $h);
    }

    /** cdef() without comments and blank lines: half the parsing time. */
    public static function declarations(string $headerPath): string
    {
        return preg_replace(['#/\*.*?\*/#s', '/\n\s*\n+/'], ['', "\n"], self::cdef($headerPath));
    }

    /**
     * A PHP value as the ABI's (type, format, payload) and the extra PECL flags of a value PHP
     * serialized itself (igbinary, msgpack: plain mode only).
     *
     * @return array{int, int, string, int}
     */
    public static function encode(mixed $value, int $serializer, bool $enveloped): array
    {
        if (is_string($value)) {
            return [self::TYPE_STRING, 0, $value, 0];
        }
        if (is_int($value)) {
            return [self::TYPE_INT, 0, (string) $value, 0];
        }
        if (is_float($value)) {
            return [self::TYPE_FLOAT, 0, pack('E', $value), 0];
        }
        if (is_bool($value)) {
            return [self::TYPE_BOOL, 0, $value ? "\x01" : "\x00", 0];
        }
        switch ($serializer) {
            case self::SERIALIZER_JSON:
            case self::SERIALIZER_JSON_ARRAY:
                $json = json_encode($value);
                if ($json === false) {
                    throw new Exception('json_encode failed: ' . json_last_error_msg(), self::E_VALUE);
                }
                return [self::TYPE_SERIALIZED, self::FORMAT_JSON, $json, 0];
            case self::SERIALIZER_IGBINARY:
                if (!$enveloped && function_exists('igbinary_serialize')) {
                    return [self::TYPE_BYTES, 0, (string) igbinary_serialize($value), self::PECL_IGBINARY];
                }
                break;
            case self::SERIALIZER_MSGPACK:
                if (!$enveloped && function_exists('msgpack_pack')) {
                    return [self::TYPE_BYTES, 0, (string) msgpack_pack($value), self::PECL_MSGPACK];
                }
                break;
        }
        return [self::TYPE_SERIALIZED, self::FORMAT_PHP, serialize($value), 0];
    }

    /**
     * Decode a value the library could not hand over as a PHP scalar. On failure the second
     * element is why (the core's message naming the likely writer), or null.
     *
     * @return array{bool, mixed} [ok, value or reason]
     */
    public static function resolve(Deferred $d, int $serializer): array
    {
        switch ($d->kind) {
            case self::DEFER_PHP:
                if ($d->data === 'b:0;') {
                    return [true, false];
                }
                $v = @unserialize($d->data);
                return [$v !== false, $v];
            case self::DEFER_JSON:
                $v = json_decode($d->data, $serializer === self::SERIALIZER_JSON_ARRAY);
                return [json_last_error() === JSON_ERROR_NONE, $v];
            case self::DEFER_IGBINARY:
                if (function_exists('igbinary_unserialize')) {
                    $v = @igbinary_unserialize($d->data);
                    return [$v !== false || $d->data === igbinary_serialize(false), $v];
                }
                return [false, null];
            case self::DEFER_MSGPACK:
                if (function_exists('msgpack_unpack')) {
                    return [true, msgpack_unpack($d->data)];
                }
                return [false, null];
            default:
                return [false, $d->reason !== '' ? $d->reason : null];
        }
    }

    /**
     * A value read through a C item (cas_update callbacks): the item's payload decoded.
     *
     * @return array{bool, mixed}
     */
    public static function itemValue(CData $item, int $serializer): array
    {
        $data = FFI::string($item->data, $item->data_len);
        if ($item->raw) {
            $type = $item->flags & 0xf;
            $kind = $type === self::PECL_IGBINARY ? self::DEFER_IGBINARY
                : ($type === self::PECL_MSGPACK ? self::DEFER_MSGPACK : self::DEFER_UNKNOWN);
            return self::resolve(new Deferred($kind, $data, $item->flags), $serializer);
        }
        switch ($item->value_type) {
            case self::TYPE_INT:
                return [true, $item->int_value];
            case self::TYPE_FLOAT:
                return [true, $item->float_value];
            case self::TYPE_BOOL:
                return [true, $item->int_value !== 0];
            case self::TYPE_SERIALIZED:
                $kind = match ($item->format) {
                    self::FORMAT_PHP => self::DEFER_PHP,
                    self::FORMAT_JSON => self::DEFER_JSON,
                    self::FORMAT_PICKLE => self::DEFER_PICKLE,
                    default => self::DEFER_UNKNOWN,
                };
                return self::resolve(new Deferred($kind, $data, $item->flags), $serializer);
            default:
                return [true, $data];
        }
    }

    /**
     * Pack items for multiput_set_multi (records of u32 key_len, u32 data_len, u8 type,
     * u8 format, key, data), grouped by the extra PECL flags PHP-serialized values need
     * (igbinary, msgpack), since one call stores with one flags value.
     *
     * @param array<int|string, mixed> $items
     * @return array<int, string> extra flags => packed records
     */
    public static function packItems(array $items, int $serializer, bool $enveloped): array
    {
        $groups = [];
        foreach ($items as $key => $value) {
            $key = (string) $key;
            [$type, $format, $payload, $flags] = self::encode($value, $serializer, $enveloped);
            $record = pack('VVCC', strlen($key), strlen($payload), $type, $format) . $key . $payload;
            $groups[$flags] = ($groups[$flags] ?? '') . $record;
        }
        return $groups;
    }
}
