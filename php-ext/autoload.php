<?php

// Autoloader for the Multiput\ namespace (php-ext/src), for use without Composer:
//   require '/path/to/php-ext/autoload.php';
spl_autoload_register(static function (string $class): void {
    if (strncmp($class, 'Multiput\\', 9) === 0) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 9)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
