<?php

// PHP-FPM (and any web SAPI) entry point: in php.ini
//
//   opcache.enable = 1
//   opcache.preload = /path/to/php-ext/preload.php
//   opcache.preload_user = www-data       ; only when the server starts as root (see README)
//   multiput.library = /path/to/libmultiput_ffi.so   ; if not <repo>/target/{release,debug}
//
// Preloading runs once, in the server's master process, before it forks its workers. It
// compiles the Multiput classes (preloaded code is what PHP's default ffi.enable=preload lets
// use FFI) and loads libmultiput_ffi.so into the FFI scope "multiput" (Native::preload()),
// which every worker then inherits, loaded for the life of the process. It opens no socket
// and starts no thread: clients connect on their first call, in the worker that makes it, and
// keep their connections for the worker's life under a persistent id. A failure is logged
// (one error_log line naming the setting) and never stops the server: the calls then report
// it (Multiput\Memcached: false + RES_FAILURE; Multiput\Client: Multiput\Exception).

declare(strict_types=1);

require __DIR__ . '/autoload.php';

foreach (['Exception', 'Deferred', 'Native', 'Handle', 'Lock', 'MemcachedState', 'MemcachedByKey', 'MemcachedMultiGet', 'MemcachedServers', 'Memcached', 'Client'] as $class) {
    require_once __DIR__ . "/src/$class.php";
}

Multiput\Native::preload();
