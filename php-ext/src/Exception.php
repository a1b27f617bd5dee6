<?php

declare(strict_types=1);

namespace Multiput;

/**
 * An error from multiput. getCode() is the library's MULTIPUT_E_* code (see
 * ffi/include/multiput.h); $peclCode is the matching PECL Memcached::RES_* code.
 */
class Exception extends \RuntimeException
{
    public function __construct(string $message, int $code, public readonly int $peclCode = 1, ?\Throwable $previous = null)
    {
        parent::__construct($message, $code, $previous);
    }
}
