<?php

declare(strict_types=1);

namespace Multiput;

use FFI;
use FFI\CData;

/**
 * A held lock (Client::lock()). Release it with release(); a lock object that is destroyed
 * while held releases itself; a lock never released expires after its TTL. Only the holder
 * releases: a lock that expired and was taken by someone else is left alone.
 */
final class Lock
{
    /** @internal */
    public function __construct(private Handle $h, private ?CData $lock)
    {
    }

    public function __destruct()
    {
        if ($this->lock !== null) {
            $this->h->ffi->multiput_lock_free($this->lock);
            $this->lock = null;
        }
    }

    private function ptr(): CData
    {
        if ($this->lock === null) {
            throw new Exception('the lock was freed', Native::E_ARGUMENT, 38);
        }
        return $this->lock;
    }

    /** True if released now; false if it had expired (and may be someone else's) or was released before. */
    public function release(): bool
    {
        $r = $this->h->ffi->new('int32_t');
        $rc = $this->h->ffi->multiput_lock_release($this->ptr(), FFI::addr($r));
        if ($rc !== 0) {
            throw Handle::exception($this->h->ffi, $rc);
        }
        return $r->cdata === 1;
    }

    /** Give the lock $ttl more seconds if it is still ours (false if not). */
    public function extend(int $ttl): bool
    {
        $r = $this->h->ffi->new('int32_t');
        $rc = $this->h->ffi->multiput_lock_extend($this->ptr(), $ttl, FFI::addr($r));
        if ($rc !== 0) {
            throw Handle::exception($this->h->ffi, $rc);
        }
        return $r->cdata === 1;
    }

    /** The fencing token (when taken with $fencing): larger than every earlier holder's. */
    public function fence(): ?int
    {
        $f = $this->h->ffi->new('uint64_t');
        return $this->h->ffi->multiput_lock_fence($this->ptr(), FFI::addr($f)) === 1 ? $f->cdata : null;
    }

    /** The unique owner token stored under the lock's name. */
    public function token(): string
    {
        return (string) $this->h->ffi->multiput_lock_token($this->ptr());
    }

    /** True until a release (or a failed extend) says the lock is no longer ours. */
    public function isHeld(): bool
    {
        return $this->lock !== null && $this->h->ffi->multiput_lock_is_held($this->lock) === 1;
    }
}
