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
 * The library is found at $MULTIPUT_FFI_LIB, else <repo>/target/release/libmultiput_ffi.so,
 * else <repo>/target/debug/libmultiput_ffi.so; the header at $MULTIPUT_FFI_HEADER, else
 * <repo>/ffi/include/multiput.h. FFI must be allowed: the CLI allows it by default
 * (ffi.enable=preload); web SAPIs need ffi.enable=1 or preloading.
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

    private static ?FFI $ffi = null;

    /** Options for unserialize() of result buffers: only our marker class may appear. */
    public const UNSERIALIZE_OPTIONS = ['allowed_classes' => [Deferred::class]];

    public static function ffi(): FFI
    {
        if (self::$ffi === null) {
            self::$ffi = FFI::cdef(self::cdef(self::headerPath()), self::libraryPath());
        }
        return self::$ffi;
    }

    public static function libraryPath(): string
    {
        $env = getenv('MULTIPUT_FFI_LIB');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $root = dirname(__DIR__, 2);
        foreach (['release', 'debug'] as $profile) {
            $p = "$root/target/$profile/libmultiput_ffi.so";
            if (is_file($p)) {
                return $p;
            }
        }
        throw new Exception(
            'libmultiput_ffi.so not found: build it (cargo build -p multiput-ffi --release) or set MULTIPUT_FFI_LIB',
            self::E_CONFIG
        );
    }

    public static function headerPath(): string
    {
        $env = getenv('MULTIPUT_FFI_HEADER');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        return dirname(__DIR__, 2) . '/ffi/include/multiput.h';
    }

    /** The header as FFI::cdef() takes it: no preprocessor lines, no C++ guard. */
    public static function cdef(string $headerPath): string
    {
        $h = @file_get_contents($headerPath);
        if ($h === false) {
            throw new Exception("cannot read the multiput header at $headerPath", self::E_CONFIG);
        }
        $h = preg_replace('/^#ifdef __cplusplus.*?^#endif[^\n]*\n/ms', '', $h);
        return preg_replace('/^#.*$/m', '', $h);
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
     * Decode a value the library could not hand over as a PHP scalar.
     *
     * @return array{bool, mixed} [ok, value]
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
                return [false, null];
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
