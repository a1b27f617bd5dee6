<?php

declare(strict_types=1);

// The smallest PHP program on multiput, in a Composer project that requires multiput/multiput:
//
//   php -d ffi.enable=1 hello.php 127.0.0.1:11211,127.0.0.1:11212
//
// The library: MULTIPUT_FFI_LIB=/path/to/libmultiput_ffi.so in the CLI, the php.ini setting
// multiput.library under PHP-FPM (php-ext/README.md).

require getcwd() . '/vendor/autoload.php';

$servers = $argv[1] ?? getenv('MULTIPUT_SERVERS') ?: '127.0.0.1:11211';
$m = new Multiput\Memcached();
$m->setOption(Multiput\Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
foreach (explode(',', $servers) as $s) {
    [$host, $port] = explode(':', $s);
    $m->addServer($host, (int) $port);
}
if (!$m->set('hello:php', ['from' => 'PHP', 'n' => 1], 60)) {
    fwrite(STDERR, 'set: ' . $m->getLastErrorMessage() . "\n");
    exit(1);
}
$v = $m->get('hello:php');
if ($v !== ['from' => 'PHP', 'n' => 1]) {
    fwrite(STDERR, 'get: ' . var_export($v, true) . ' ' . $m->getLastErrorMessage() . "\n");
    exit(1);
}
echo 'hello:php = ', json_encode($v), "\n";
