//! The client handle: configuration, every call of the core's blocking clients, multi-key calls
//! in one crossing, CAS updates with a C callback, locks, and results in C structs or in PHP's
//! `serialize()` format.

use crate::phpser::Got;
use crate::value::{In, Out, PlainRules};
use crate::{
    bytes, fail, phpser, run, set_error, text, MULTIPUT_E_ARGUMENT, MULTIPUT_E_CALLBACK,
    MULTIPUT_E_CONFIG, MULTIPUT_E_KEY, MULTIPUT_E_NOT_FOUND, MULTIPUT_E_VALUE, MULTIPUT_OK,
};
use bytes::Bytes;
use multiput::blocking::{Cache, Client, Got as CoreGot, ReplicatedClient};
use multiput::envelope::{Format, ValueType};
use multiput::machine::mode::{Encode, Stored};
use multiput::recipes::{CasOptions, CasOutcome, Fresh, Lock, LockOptions, Update};
use multiput::replication::Versioned;
use multiput::values::Family;
use multiput::StoreMode;
use multiput::{Error, ReadPolicy, WritePolicy, WriteReport};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

mod buffers;
mod cas;
mod config;
mod locks;
mod results;
mod servers;

pub use buffers::*;
pub use cas::*;
pub use config::*;
pub use locks::*;
pub use results::*;
pub use servers::*;

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// A memcached client: plain, or replicated (`replicas` >= 1). Thread-safe: share one handle
/// between threads; it pools connections per server. Free it with [`multiput_client_free`].
#[derive(Clone)]
pub struct MultiputClient {
    /// Plain or replicated behind one API (the core's facade): this file only translates.
    cache: Cache,
    rules: PlainRules,
    cas: CasOptions,
    addresses: Vec<CString>,
}

/// Whether `key` can be sent by this client as it is configured (key prefix, binary keys,
/// protocol): `MULTIPUT_OK`, or `MULTIPUT_E_KEY` with the reason in the last error. Nothing
/// is sent; bindings ask this instead of restating the key rules.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_check_key(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        c.plain().cluster().check_key(key).map_err(|e| fail(&e))
    })
}

/// A second handle on the same replicated client (connections, clock, writer id) with other
/// read and/or write policies (`read`/`write` as in [`multiput_config_set`]; null keeps the
/// current one), for the calls that need them. The replica count and placement do not change.
/// Free it with [`multiput_client_free`]; the original stays valid. A plain client has no
/// policies: `MULTIPUT_E_UNSUPPORTED`.
///
/// # Safety
/// `client` came from [`multiput_client_new`] (or a sibling); `read` and `write` are null or
/// NUL-terminated; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_with_policies(
    client: *const MultiputClient,
    read: *const c_char,
    write: *const c_char,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if client.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "client or out is null"));
        }
        // SAFETY: per the contract above.
        let c = unsafe { &*client };
        // (parsed against the replica count; a plain client is refused by the core)
        let n = c.cache.policy().map_or(1, |p| p.replicas);
        let read = if read.is_null() {
            None
        } else {
            let v = unsafe { text(read, "read") }?;
            Some(ReadPolicy::parse(v, n).map_err(|e| fail(&e))?)
        };
        let write = if write.is_null() {
            None
        } else {
            let v = unsafe { text(write, "write") }?;
            Some(WritePolicy::parse(v, n).map_err(|e| fail(&e))?)
        };
        let view = MultiputClient {
            cache: c.cache.with_policies(read, write).map_err(|e| fail(&e))?,
            ..c.clone()
        };
        unsafe { *out = Box::into_raw(Box::new(view)) };
        Ok(())
    })
}

/// Build a client from a configuration (which can then be changed or freed). No connection is
/// opened until the first call.
///
/// # Safety
/// `config` came from [`multiput_config_new`]; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_new(
    config: *const MultiputConfig,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if config.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "config or out is null"));
        }
        // SAFETY: per the contract above.
        let client = unsafe { &*config }.build().map_err(|e| fail(&e))?;
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// One client kept for the life of the process under a persistent id.
struct Persistent {
    id: String,
    /// The configuration it was built from (`Debug` of the config).
    fingerprint: String,
    client: MultiputClient,
    /// What the binding kept with it (see [`multiput_persistent_set_state`]).
    state: Vec<u8>,
}

/// Process-wide clients by persistent id. Never freed: a binding whose objects live for one
/// request (PHP) finds its client, and its connections, here in the next request.
static PERSISTENT: std::sync::Mutex<Vec<Persistent>> = std::sync::Mutex::new(Vec::new());

fn persistent() -> std::sync::MutexGuard<'static, Vec<Persistent>> {
    PERSISTENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Like [`multiput_client_new`], but the client (its connection pools) is kept for the life of
/// the process under `persistent_id`: a later call with the same id and the same
/// configuration gets a handle on the same connections, even after every earlier handle was
/// freed (PECL memcached's persistent ids; what keeps connections across PHP-FPM requests:
/// the library is linked `-z nodelete`, so it stays loaded, and with it this registry, even
/// when PHP's FFI closes it at the end of a request). A different configuration under the
/// same id replaces the kept client (and drops its state). Each handle is freed with
/// [`multiput_client_free`]; freeing a handle never closes the kept client's connections.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `config` came from [`multiput_config_new`]; `out` is
/// valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_new_persistent(
    persistent_id: *const c_char,
    config: *const MultiputConfig,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if config.is_null() || out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "config or out is null"));
        }
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        // SAFETY: per the contract above.
        let config = unsafe { &*config };
        let fingerprint = format!("{config:?}");
        let mut kept = persistent();
        let client = match kept
            .iter()
            .find(|p| p.id == id && p.fingerprint == fingerprint)
        {
            Some(p) => p.client.clone(),
            None => {
                let c = config.build().map_err(|e| fail(&e))?;
                kept.retain(|p| p.id != id);
                kept.push(Persistent {
                    id: id.to_string(),
                    fingerprint,
                    client: c.clone(),
                    state: Vec::new(),
                });
                c
            }
        };
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// A handle on the client kept under `persistent_id` (by
/// [`multiput_client_new_persistent`]), without building a configuration: `*out` is the
/// handle (free it with [`multiput_client_free`]) and `state` holds the bytes last kept with
/// [`multiput_persistent_set_state`] (empty if none). `MULTIPUT_E_NOT_FOUND` when nothing is
/// kept under that id (`*out` is then null). One lookup per PHP request instead of a
/// configuration rebuilt option by option.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `out` is valid; `state` is a buffer (see
/// [`MultiputBuffer`]).
#[no_mangle]
pub unsafe extern "C" fn multiput_persistent_get(
    persistent_id: *const c_char,
    out: *mut *mut MultiputClient,
    state: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "out is null"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        let mut buf = unsafe { take_buf(state) }?;
        let kept = persistent();
        let Some(p) = kept.iter().find(|p| p.id == id) else {
            put_buf(state, buf);
            return Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                format!("no client is kept under the persistent id {id:?}"),
            ));
        };
        buf.extend_from_slice(&p.state);
        let client = p.client.clone();
        drop(kept);
        put_buf(state, buf);
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// Keep `len` bytes (a binding's own settings, e.g. PHP's serialized server list and options)
/// with the client kept under `persistent_id`, for [`multiput_persistent_get`] to return.
/// `MULTIPUT_E_NOT_FOUND` when no client is kept under that id.
///
/// # Safety
/// `persistent_id` is NUL-terminated; `data` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_persistent_set_state(
    persistent_id: *const c_char,
    data: *const c_char,
    len: usize,
) -> i32 {
    run(|| {
        let id = unsafe { text(persistent_id, "persistent_id") }?;
        let data = unsafe { bytes(data, len, "data") }?;
        let mut kept = persistent();
        let Some(p) = kept.iter_mut().find(|p| p.id == id) else {
            return Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                format!("no client is kept under the persistent id {id:?}"),
            ));
        };
        p.state = data.to_vec();
        Ok(())
    })
}

/// Build a client from options in one string: `name=value` entries separated by newlines or
/// `;` (see [`multiput_config_set`] for the names), e.g.
/// `"servers=10.0.0.1,10.0.0.2:11212;replicas=2;timeout_ms=250"`.
///
/// # Safety
/// `options` is NUL-terminated; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_open(
    options: *const c_char,
    out: *mut *mut MultiputClient,
) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(set_error(MULTIPUT_E_ARGUMENT, "out is null"));
        }
        let options = unsafe { text(options, "options") }?;
        let mut config = MultiputConfig::default();
        for entry in options
            .split(['\n', ';'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, value) = entry.split_once('=').ok_or_else(|| {
                set_error(
                    MULTIPUT_E_CONFIG,
                    format!("option {entry:?} is not name=value"),
                )
            })?;
            config
                .set(name, value)
                .map_err(|e| set_error(MULTIPUT_E_CONFIG, e))?;
        }
        let client = config.build().map_err(|e| fail(&e))?;
        // SAFETY: checked non-null.
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// Free a client (its connections are closed). Null is ignored.
///
/// # Safety
/// `client` is null or came from a `multiput_client_*` constructor and was not freed before;
/// no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn multiput_client_free(client: *mut MultiputClient) {
    if !client.is_null() {
        // SAFETY: per the contract above.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(client) })
        }));
    }
}

unsafe fn client_ref<'a>(c: *const MultiputClient) -> Result<&'a MultiputClient, i32> {
    if c.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "client is null"));
    }
    // SAFETY: the caller passes a live client.
    Ok(unsafe { &*c })
}

unsafe fn key_arg<'a>(p: *const c_char, len: usize) -> Result<&'a [u8], i32> {
    if len > 65536 {
        return Err(set_error(
            MULTIPUT_E_KEY,
            format!("invalid key: {len} bytes is over the limit of 250"),
        ));
    }
    unsafe { bytes(p, len, "key") }
}

unsafe fn value_arg<'a>(
    vtype: u8,
    format: u8,
    data: *const c_char,
    len: usize,
) -> Result<In<'a>, i32> {
    let payload = unsafe { bytes(data, len, "data") }?;
    In::new(vtype, format, payload).map_err(|e| set_error(MULTIPUT_E_ARGUMENT, e.0))
}

unsafe fn write_out<T>(out: *mut T, v: T) -> Result<(), i32> {
    if out.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "an output pointer is null"));
    }
    // SAFETY: checked non-null; the caller passes a valid pointer.
    unsafe { out.write(v) };
    Ok(())
}

thread_local! {
    static LAST_WRITE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn note_write(r: &WriteReport) {
    LAST_WRITE.with(|w| w.set((r.stored.len(), r.failed.len())));
}

/// How many replicas stored, and how many did not, in the calling thread's last successful
/// replicated write (set, delete, CAS update...). A write that succeeded under its policy may
/// still have missed replicas (`*failed` > 0): they are repaired by later reads.
///
/// # Safety
/// `stored` and `failed` are null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_last_write(stored: *mut usize, failed: *mut usize) {
    let (s, f) = LAST_WRITE.with(Cell::get);
    // SAFETY: checked non-null; the caller passes valid pointers.
    unsafe {
        if !stored.is_null() {
            *stored = s;
        }
        if !failed.is_null() {
            *failed = f;
        }
    }
}

/// Store modes of [`multiput_store`].
pub const MULTIPUT_SET: u32 = 0;
/// Store only if missing.
pub const MULTIPUT_ADD: u32 = 1;
/// Store only if present.
pub const MULTIPUT_REPLACE: u32 = 2;
/// Append to a present value.
pub const MULTIPUT_APPEND: u32 = 3;
/// Prepend to a present value.
pub const MULTIPUT_PREPEND: u32 = 4;

/// Get option: also return the CAS unique (plain) or version token (replicated).
pub const MULTIPUT_GET_CAS: u32 = 1;
/// PHP output option: emit a miss as `null` (PECL `GET_PRESERVE_ORDER`) instead of omitting it.
pub const MULTIPUT_GET_PRESERVE_ORDER: u32 = 2;
/// PHP output option: each value as PECL's `GET_EXTENDED` array (value, cas, flags).
pub const MULTIPUT_GET_EXTENDED: u32 = 4;
/// PHP output option of [`multiput_get_php`]: a PHP string value as its bytes, not
/// `serialize()`d (`out->raw` says so).
pub const MULTIPUT_GET_RAW: u32 = 8;

impl MultiputClient {
    fn plain(&self) -> &Client {
        self.cache.plain()
    }

    fn repl(&self) -> Option<&ReplicatedClient> {
        self.cache.replicated()
    }

    /// A value the core's facade read, as this ABI hands it out.
    fn got(&self, g: CoreGot) -> Got {
        match g {
            CoreGot::Plain(v) => Got::Plain(v),
            CoreGot::Replicated(v) => Got::Decoded(Out::from_versioned(&v, &self.rules)),
        }
    }

    fn get_one(&self, key: &[u8], cas: bool) -> Result<Option<Got>, Error> {
        Ok(if cas {
            self.cache.gets(key)?.map(|(g, _)| self.got(g))
        } else {
            self.cache.get(key)?.map(|g| self.got(g))
        })
    }

    fn get_many(&self, keys: &[&[u8]], cas: bool) -> Vec<Result<Option<Got>, Error>> {
        if cas {
            let rs = self.cache.gets_multi(keys);
            return rs
                .into_iter()
                .map(|r| r.map(|v| v.map(|(g, _)| self.got(g))))
                .collect();
        }
        let rs = self.cache.get_multi(keys);
        rs.into_iter()
            .map(|r| r.map(|v| v.map(|g| self.got(g))))
            .collect()
    }

    /// `v` in the form the client's mode stores (the core asks [`CValue`] for it): plain,
    /// encoded by the value convention and compressed when large, or typed for an envelope.
    /// `raw`: append/prepend bytes, stored as they are.
    pub(crate) fn stored(&self, v: In<'_>, flags: u32, raw: bool) -> Result<Stored, i32> {
        let value = CValue {
            v,
            flags,
            raw,
            rules: &self.rules,
        };
        self.cache.mode().encode(&value)
    }

    /// Record a replicated write's report for [`multiput_last_write`].
    fn noted(&self, report: WriteReport) {
        if self.repl().is_some() {
            note_write(&report);
        }
    }

    fn store(&self, mode: u32, key: &[u8], v: In<'_>, ttl: u32, flags: u32) -> Result<(), i32> {
        let m = match mode {
            MULTIPUT_SET => StoreMode::Set,
            MULTIPUT_ADD => StoreMode::Add,
            MULTIPUT_REPLACE => StoreMode::Replace,
            MULTIPUT_APPEND => StoreMode::Append,
            MULTIPUT_PREPEND => StoreMode::Prepend,
            _ => {
                return Err(set_error(
                    MULTIPUT_E_ARGUMENT,
                    format!("unknown store mode {mode}"),
                ))
            }
        };
        let appending = matches!(m, StoreMode::Append | StoreMode::Prepend);
        if appending && !matches!(v.vtype, ValueType::Bytes | ValueType::Text) {
            return Err(set_error(
                MULTIPUT_E_VALUE,
                "append/prepend takes a string (bytes or text)",
            ));
        }
        // Append and prepend add raw bytes to what is stored: no convention encoding.
        let value = self.stored(v, flags, appending)?;
        let rep = self.cache.put(m, key, value, ttl).map_err(|e| fail(&e))?;
        self.noted(rep);
        Ok(())
    }

    fn incr(
        &self,
        key: &[u8],
        delta: u64,
        decr: bool,
        initial: Option<u64>,
        ttl: u32,
    ) -> Result<u64, i32> {
        // The core's counters: increment-with-initial (plain), the exact replicated counter.
        let got = self
            .cache
            .incr(key, !decr, delta, initial, ttl)
            .map_err(|e| fail(&e))?;
        got.ok_or_else(|| set_error(MULTIPUT_E_NOT_FOUND, "not found: the key does not exist"))
    }
}

/// A typed value to store, owned: type, format, canonical payload.
/// Both forms of a value for the core's facade: the caller's typed value, and its plain
/// encoding with `flags`.
/// A value from C, in both forms on demand: the client's mode asks for the one it stores.
pub(crate) struct CValue<'a> {
    v: In<'a>,
    flags: u32,
    raw: bool,
    rules: &'a PlainRules,
}

impl Encode for CValue<'_> {
    type Error = i32;
    fn plain(&self) -> Result<(Bytes, u32), i32> {
        if self.raw {
            return Ok((Bytes::copy_from_slice(self.v.payload), 0));
        }
        self.rules
            .encode(self.v, self.flags)
            .map(|(data, flags)| (Bytes::from(data), flags))
            .map_err(|e| set_error(MULTIPUT_E_VALUE, e.0))
    }
    fn typed(&self) -> Result<(ValueType, Format, Bytes), i32> {
        Ok((
            self.v.vtype,
            self.v.format,
            Bytes::copy_from_slice(self.v.payload),
        ))
    }
}

type Owned = (ValueType, Format, Vec<u8>);

fn own(v: In<'_>) -> Owned {
    (v.vtype, v.format, v.payload.to_vec())
}

/// Split `keys` (`len` bytes) at every `sep` byte. An empty buffer is no keys.
unsafe fn split_keys<'a>(keys: *const c_char, len: usize, sep: u8) -> Result<Vec<&'a [u8]>, i32> {
    let all = unsafe { bytes(keys, len, "keys") }?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    Ok(all.split(|b| *b == sep).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_thread_safe() {
        fn is<T: Send + Sync>() {}
        is::<MultiputClient>();
    }

    /// Random bytes never make the record parser, the decompressors or the value checks panic.
    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && buf.len() >= 10 {
                // plausible headers with small lengths
                buf[0] = (next() % 8) as u8;
                buf[1..4].fill(0);
                buf[4] = (next() % 8) as u8;
                buf[5..8].fill(0);
                buf[8] = (next() % 7) as u8;
            }
            let _ = parse_records(&buf);
            let _ = multiput::compress::fastlz_decompress(&buf, 256);
            let _ = multiput::compress::pecl_decompress(&buf, 0x50);
            let _ = multiput::compress::pecl_decompress(&buf, 0x30);
            let rules = PlainRules {
                convention: multiput::values::Convention::multiput(Family::Php),
                compress_threshold: 0,
            };
            let _ = rules.decode(&buf, (next() % 0x100) as u32);
            let _ = In::new((next() % 18) as u8, (next() % 4) as u8, &buf);
        }
    }

    /// The core's multi-get alone, and through the PHP entry point, against a running server:
    /// `MULTIPUT_BENCH_SERVER=127.0.0.1:PORT taskset -c 0 cargo test --release -p multiput-ffi
    /// --lib -- --ignored --nocapture multi_get_cost` (keys bench:key:0..99 must exist).
    #[test]
    #[ignore]
    fn multi_get_cost() {
        let Ok(server) = std::env::var("MULTIPUT_BENCH_SERVER") else {
            return;
        };
        let opts = CString::new(format!("servers={server}")).unwrap();
        let mut c = std::ptr::null_mut();
        assert_eq!(unsafe { multiput_client_open(opts.as_ptr(), &mut c) }, 0);
        let keys: Vec<String> = (0..100).map(|i| format!("bench:key:{i}")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let joined = keys.join("\n");
        let client = unsafe { &*c };
        let n = 20_000u32;
        for round in 0..2 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                assert_eq!(client.plain().get_multi(&refs).len(), 100);
            }
            let core = t.elapsed() / n;
            let mut b = MultiputBuffer {
                data: std::ptr::null_mut(),
                len: 0,
                capacity: 0,
                hits: 0,
                misses: 0,
                errors: 0,
                deferred: 0,
                first_error: 0,
                raw: 0,
            };
            let t = std::time::Instant::now();
            for _ in 0..n {
                let rc = unsafe {
                    multiput_get_multi_php(
                        c,
                        joined.as_ptr().cast(),
                        joined.len(),
                        b'\n',
                        0,
                        &mut b,
                    )
                };
                assert_eq!(rc, 0);
                assert_eq!(b.hits, 100);
            }
            let php = t.elapsed() / n;
            unsafe { multiput_buffer_free(&mut b) };
            println!("round {round}: core get_multi {core:?}, multiput_get_multi_php {php:?} per 100 keys");
        }
        unsafe { multiput_client_free(c) };
    }
}
