<?php

declare(strict_types=1);

// PHPUnit bootstrap: the Multiput autoloader, the library, and real memcached servers.
//
// Starts MULTIPUT_TEST_SERVER_COUNT (default 4) memcached processes on free 127.0.0.1 ports
// (`-u root` when running as root), waits until they answer, and stops them by PID when the
// run ends. The library is $MULTIPUT_FFI_LIB, else target/{release,debug}/libmultiput_ffi.so
// (build it first: cargo build -p multiput-ffi).

require __DIR__ . '/../autoload.php';
require __DIR__ . '/Servers.php';

if (!extension_loaded('ffi')) {
    fwrite(STDERR, "PHP's FFI extension is not loaded (Debian: it is part of php8.2-cli)\n");
    exit(1);
}
if (ini_get('ffi.enable') === '0' || ini_get('ffi.enable') === 'false') {
    fwrite(STDERR, "FFI is disabled: run with -d ffi.enable=1\n");
    exit(1);
}
Multiput\Native::ffi(); // fail early if the library or header is missing

Multiput\Tests\Servers::startAll((int) (getenv('MULTIPUT_TEST_SERVER_COUNT') ?: 4));
