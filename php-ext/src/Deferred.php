<?php

declare(strict_types=1);

namespace Multiput;

/**
 * A value the library hands to PHP undecoded, inside a result buffer (PHP serialize()
 * payloads, JSON, igbinary, msgpack, or bytes it could not read). Resolved by the client
 * before any value reaches the caller; never returned to applications.
 *
 * @internal
 */
final class Deferred
{
    public function __construct(
        public int $kind = 0,
        public string $data = '',
        public int $flags = 0,
        /** Why it cannot be read (the core's message, naming the likely writer), or ''. */
        public string $reason = '',
    ) {
    }
}
