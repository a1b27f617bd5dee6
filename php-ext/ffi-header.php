<?php

// Print the header for php.ini's ffi.preload: multiput's declarations with
// `#define FFI_SCOPE "multiput"` and `#define FFI_LIB "<library>"`.
//
//   php php-ext/ffi-header.php [/path/to/libmultiput_ffi.so] > /etc/php/8.2/multiput-ffi.h
//   ; php.ini:  ffi.preload = /etc/php/8.2/multiput-ffi.h
//
// The library defaults to multiput.library / $MULTIPUT_FFI_LIB / <repo>/target/release, the
// declarations come from ffi/include/multiput.h (multiput.header). Regenerate it after
// upgrading multiput. PHP loads it when it starts, before php-fpm forks its workers; a header
// whose library is missing stops PHP from starting ("Unable to start FFI module").

declare(strict_types=1);

require __DIR__ . '/autoload.php';

try {
    $lib = $argv[1] ?? Multiput\Native::libraryPath();
    $real = realpath($lib);
    if ($real === false || !is_file($real)) {
        throw new RuntimeException("$lib: no such file");
    }
    if (preg_match('/["\r\n]/', $real) === 1) {
        throw new RuntimeException("$real: the path cannot contain quotes or newlines");
    }
    echo Multiput\Native::scopeHeader($real, Multiput\Native::headerPath());
} catch (Throwable $e) {
    fwrite(STDERR, 'ffi-header.php: ' . $e->getMessage() . "\n");
    exit(1);
}
