//! The C ABI of multiput. This first part exposes the ketama ring, so C and PHP callers place
//! keys exactly as libmemcached (and every other multiput binding) does; the client handle
//! comes with the PHP binding (issue 6).
//!
//! Rules of this ABI:
//! - No panic crosses the boundary: every entry point catches unwinding and returns an error.
//! - Null pointers, bad lengths and invalid UTF-8 where text is required return an error code.
//! - Strings the library returns are freed with [`multiput_string_free`]; handles with their
//!   own `*_free` function. Nothing returned is owned by the caller's allocator.
//! - The last error message of the calling thread is available from
//!   [`multiput_last_error`].

use multiput::{Ring, RingMode, ServerSpec};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Success.
pub const MULTIPUT_OK: i32 = 0;
/// An argument was null, too long, or not valid UTF-8 where text is required.
pub const MULTIPUT_E_ARGUMENT: i32 = 1;
/// The configuration (server list, mode) could not be parsed.
pub const MULTIPUT_E_CONFIG: i32 = 2;
/// A key broke the key rules.
pub const MULTIPUT_E_KEY: i32 = 3;
/// An internal error (a caught panic). Please report it.
pub const MULTIPUT_E_INTERNAL: i32 = 99;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(code: i32, msg: impl Into<String>) -> i32 {
    let msg = msg.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(msg).unwrap_or_default());
    code
}

fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| set_error(MULTIPUT_E_INTERNAL, "internal error (panic caught)"))
}

/// The message of the calling thread's last error, valid until its next call into the library.
/// Never null.
#[no_mangle]
pub extern "C" fn multiput_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// An opaque ketama ring.
pub struct MultiputRing {
    ring: Ring,
    addresses: Vec<CString>,
}

unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, i32> {
    if p.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, format!("{what} is null")));
    }
    // SAFETY: the caller passes a NUL-terminated string, as the header documents.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| set_error(MULTIPUT_E_ARGUMENT, format!("{what} is not valid UTF-8")))
}

/// Build a ring from a comma-separated server list (`host`, `host:port`, `host:port:weight`,
/// `[v6]:port:weight`) and a mode (`libketama_compatible`, the default when `mode` is null, or
/// `ketama_md5`). Host names are hashed as written and never resolved. On success `*out`
/// holds a ring to free with [`multiput_ring_free`].
///
/// # Safety
/// `servers` and `mode` (if not null) are NUL-terminated strings; `out` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn multiput_ring_new(
    servers: *const c_char,
    mode: *const c_char,
    out: *mut *mut MultiputRing,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return set_error(MULTIPUT_E_ARGUMENT, "out is null");
        }
        let servers = match unsafe { text(servers, "servers") } {
            Ok(s) => s,
            Err(c) => return c,
        };
        let mode = if mode.is_null() {
            RingMode::default()
        } else {
            match unsafe { text(mode, "mode") }.map(str::parse::<RingMode>) {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => return set_error(MULTIPUT_E_CONFIG, e.to_string()),
                Err(c) => return c,
            }
        };
        let specs: Result<Vec<ServerSpec>, _> = servers
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect();
        let specs = match specs {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return set_error(MULTIPUT_E_CONFIG, "no servers given"),
            Err(e) => return set_error(MULTIPUT_E_CONFIG, e.to_string()),
        };
        let addresses = specs
            .iter()
            .map(|s| CString::new(s.address()).unwrap_or_default())
            .collect();
        let ring = Ring::new(&specs, mode);
        // SAFETY: checked non-null above.
        unsafe { *out = Box::into_raw(Box::new(MultiputRing { ring, addresses })) };
        MULTIPUT_OK
    })
}

/// Free a ring. Null is ignored.
///
/// # Safety
/// `ring` is null or came from [`multiput_ring_new`] and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_ring_free(ring: *mut MultiputRing) {
    if !ring.is_null() {
        // SAFETY: per the contract above.
        drop(unsafe { Box::from_raw(ring) });
    }
}

/// The server that owns a key: its index in the configured list goes to `*index` and, if
/// `address` is not null, a pointer to its `host:port` (owned by the ring, valid until it is
/// freed) to `*address`. Keys are bytes (`key_len` of them) and must obey the key rules.
///
/// # Safety
/// `ring` came from [`multiput_ring_new`]; `key` points to `key_len` readable bytes; `index`
/// is valid; `address` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_ring_server_for(
    ring: *const MultiputRing,
    key: *const u8,
    key_len: usize,
    index: *mut usize,
    address: *mut *const c_char,
) -> i32 {
    guard(|| {
        if ring.is_null() || key.is_null() || index.is_null() {
            return set_error(MULTIPUT_E_ARGUMENT, "ring, key or index is null");
        }
        if key_len > 4096 {
            return set_error(MULTIPUT_E_ARGUMENT, "key_len is implausibly large");
        }
        // SAFETY: per the contract above.
        let (r, key) = unsafe { (&*ring, std::slice::from_raw_parts(key, key_len)) };
        if let Err(e) = multiput::key::validate(key) {
            return set_error(MULTIPUT_E_KEY, e.to_string());
        }
        let i = r.ring.server_for(key).unwrap_or(0);
        // SAFETY: checked non-null above; `address` checked before use.
        unsafe {
            *index = i;
            if !address.is_null() {
                *address = r.addresses[i].as_ptr();
            }
        }
        MULTIPUT_OK
    })
}

/// The library version, a static string.
#[no_mangle]
pub extern "C" fn multiput_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_through_the_abi_matches_the_core() {
        let servers = CString::new("192.0.2.1,192.0.2.2:11212,192.0.2.3:11211:2").unwrap();
        let mut ring = std::ptr::null_mut();
        assert_eq!(
            unsafe { multiput_ring_new(servers.as_ptr(), std::ptr::null(), &mut ring) },
            0
        );
        let core: Vec<ServerSpec> = ["192.0.2.1", "192.0.2.2:11212", "192.0.2.3:11211:2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let core = Ring::new(&core, RingMode::LibketamaCompatible);
        for i in 0..500 {
            let k = format!("key:{i}");
            let (mut idx, mut addr) = (0usize, std::ptr::null());
            let rc =
                unsafe { multiput_ring_server_for(ring, k.as_ptr(), k.len(), &mut idx, &mut addr) };
            assert_eq!(rc, 0);
            assert_eq!(Some(idx), core.server_for(k.as_bytes()));
        }
        let bad = b"a b";
        let mut idx = 0usize;
        let rc = unsafe {
            multiput_ring_server_for(ring, bad.as_ptr(), 3, &mut idx, std::ptr::null_mut())
        };
        assert_eq!(rc, MULTIPUT_E_KEY);
        let msg = unsafe { CStr::from_ptr(multiput_last_error()) }
            .to_str()
            .unwrap();
        assert!(msg.contains("invalid key"), "{msg}");
        unsafe { multiput_ring_free(ring) };
    }

    #[test]
    fn bad_arguments_are_errors_not_crashes() {
        let mut ring = std::ptr::null_mut();
        assert_eq!(
            unsafe { multiput_ring_new(std::ptr::null(), std::ptr::null(), &mut ring) },
            MULTIPUT_E_ARGUMENT
        );
        let s = CString::new("").unwrap();
        assert_eq!(
            unsafe { multiput_ring_new(s.as_ptr(), std::ptr::null(), &mut ring) },
            MULTIPUT_E_CONFIG
        );
        let s = CString::new("a:notaport").unwrap();
        assert_eq!(
            unsafe { multiput_ring_new(s.as_ptr(), std::ptr::null(), &mut ring) },
            MULTIPUT_E_CONFIG
        );
        let m = CString::new("nonsense").unwrap();
        let s = CString::new("a").unwrap();
        assert_eq!(
            unsafe { multiput_ring_new(s.as_ptr(), m.as_ptr(), &mut ring) },
            MULTIPUT_E_CONFIG
        );
        let bytes = [0xffu8, 0xfe, 0];
        assert_eq!(
            unsafe { multiput_ring_new(bytes.as_ptr().cast(), std::ptr::null(), &mut ring) },
            MULTIPUT_E_ARGUMENT
        );
        unsafe { multiput_ring_free(std::ptr::null_mut()) };
    }
}
