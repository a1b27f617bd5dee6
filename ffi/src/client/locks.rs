//! Locks.

use super::*;

/// A held lock (see docs/recipes.md): released by [`multiput_lock_release`], or when freed.
/// One thread at a time.
pub struct MultiputLock {
    pub(crate) lock: Lock<Client>,
    pub(crate) token: CString,
}

/// Acquire the lock `name`: an `add` of a unique owner token on the name's ring owner (the
/// primary, in replicated mode), retried with jittered backoff for up to `wait_ms`.
/// `MULTIPUT_E_LOCK_NOT_ACQUIRED` when someone else held it the whole time; the server's error
/// (e.g. `MULTIPUT_E_SERVER_DOWN`) if its server cannot be reached — a lock is never taken on
/// another server. `ttl` (seconds, >= 1) bounds how long a crashed holder keeps it. With
/// `fencing` non-zero, also takes a fencing token ([`multiput_lock_fence`]).
///
/// # Safety
/// `client` is live; `name` points to `name_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    out: *mut *mut MultiputLock,
) -> i32 {
    // SAFETY: as this function's contract.
    unsafe { lock(client, name, name_len, ttl, wait_ms, fencing, None, out) }
}

/// [`multiput_lock`] on a majority of the name's first `replicas` servers (its ring
/// preference list) instead of its one owner, so losing one server does not drop the lock:
/// acquired when a majority stored the token with time left of its TTL; release and extend
/// act on every server held and succeed with a majority.
///
/// # Safety
/// As [`multiput_lock`].
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_quorum(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    replicas: u32,
    out: *mut *mut MultiputLock,
) -> i32 {
    // SAFETY: as this function's contract.
    unsafe {
        lock(
            client,
            name,
            name_len,
            ttl,
            wait_ms,
            fencing,
            Some(replicas as usize),
            out,
        )
    }
}

/// [`multiput_lock`] and [`multiput_lock_quorum`]: the core's lock (on the name's owner, or
/// with `quorum` on a majority of its first `quorum` replicas).
///
/// # Safety
/// As [`multiput_lock`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn lock(
    client: *const MultiputClient,
    name: *const c_char,
    name_len: usize,
    ttl: u32,
    wait_ms: u64,
    fencing: i32,
    quorum: Option<usize>,
    out: *mut *mut MultiputLock,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let name = unsafe { key_arg(name, name_len) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let mut opts = LockOptions::new(ttl, Duration::from_millis(wait_ms));
        if ttl == 0 {
            opts.ttl = 0;
        }
        if fencing != 0 {
            opts = opts.fencing();
        }
        let lock = c.cache.lock(name, opts, quorum).map_err(|e| fail(&e))?;
        let token = CString::new(lock.token()).unwrap_or_default();
        unsafe { write_out(out, Box::into_raw(Box::new(MultiputLock { lock, token }))) }
    })
}

pub(crate) unsafe fn lock_mut<'a>(l: *mut MultiputLock) -> Result<&'a mut MultiputLock, i32> {
    if l.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "lock is null"));
    }
    // SAFETY: the caller passes a live lock.
    Ok(unsafe { &mut *l })
}

/// Release the lock if this holder still owns it (compare-and-delete on what it stored).
/// `*released` = 1 released; 0 it had expired and may belong to someone else now (left alone),
/// or was already released.
///
/// # Safety
/// `lock` is live; `released` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_release(lock: *mut MultiputLock, released: *mut i32) -> i32 {
    run(|| {
        let l = unsafe { lock_mut(lock) }?;
        let r = l.lock.release().map_err(|e| fail(&e))?;
        if !released.is_null() {
            unsafe { write_out(released, i32::from(r)) }?;
        }
        Ok(())
    })
}

/// Give the lock a new TTL if this holder still owns it: `*held` = 1 extended, 0 no longer ours.
///
/// # Safety
/// `lock` is live; `held` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_extend(
    lock: *mut MultiputLock,
    ttl: u32,
    held: *mut i32,
) -> i32 {
    run(|| {
        let l = unsafe { lock_mut(lock) }?;
        let r = l.lock.extend(ttl).map_err(|e| fail(&e))?;
        if !held.is_null() {
            unsafe { write_out(held, i32::from(r)) }?;
        }
        Ok(())
    })
}

/// The fencing token (larger than every earlier holder's) into `*fence`; returns 1 if the lock
/// has one (it was taken with `fencing`), 0 if not or `lock` is null.
///
/// # Safety
/// `lock` is null or live; `fence` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_fence(lock: *const MultiputLock, fence: *mut u64) -> i32 {
    if lock.is_null() {
        return 0;
    }
    match unsafe { &*lock }.lock.fence() {
        Some(f) => {
            if !fence.is_null() {
                unsafe { *fence = f };
            }
            1
        }
        None => 0,
    }
}

/// This holder's owner token (what is stored under the lock's name), owned by the lock.
///
/// # Safety
/// `lock` is null (null is returned) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_token(lock: *const MultiputLock) -> *const c_char {
    if lock.is_null() {
        return std::ptr::null();
    }
    unsafe { &*lock }.token.as_ptr()
}

/// 1 until a release (or a failed extend) says the lock is no longer ours.
///
/// # Safety
/// `lock` is null (0) or live.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_is_held(lock: *const MultiputLock) -> i32 {
    if lock.is_null() {
        return 0;
    }
    i32::from(unsafe { &*lock }.lock.is_held())
}

/// Free a lock, releasing it first if it is still held (errors ignored: an unreleased lock
/// expires after its TTL). Null is ignored.
///
/// # Safety
/// `lock` is null or live and not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_lock_free(lock: *mut MultiputLock) {
    if !lock.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: per the contract above.
            drop(unsafe { Box::from_raw(lock) })
        }));
    }
}
