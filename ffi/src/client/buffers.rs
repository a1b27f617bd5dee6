//! Buffers: text and PHP results.

use super::*;

/// A byte buffer the library fills and owns. Zero-initialize it (`MultiputBuffer b = {0};`),
/// pass it to calls that fill it (each call reuses its allocation), and release it once with
/// [`multiput_buffer_free`]. One thread at a time.
#[repr(C)]
pub struct MultiputBuffer {
    /// The bytes (null before the first fill).
    pub data: *mut u8,
    /// Bytes filled.
    pub len: usize,
    /// Allocated size (the library's business).
    pub capacity: usize,
    /// Multi-key PHP results: keys found.
    pub hits: usize,
    /// Keys missing.
    pub misses: usize,
    /// Keys whose server failed.
    pub errors: usize,
    /// Values emitted as `Multiput\Deferred` objects (see [`multiput_get_php`]).
    pub deferred: usize,
    /// The first per-key error code (0 if none); its message is the thread's last error.
    pub first_error: i32,
    /// 1 when [`multiput_get_php`] with [`MULTIPUT_GET_RAW`] wrote a PHP string's bytes as they
    /// are (`len` may then be 0: an empty string, not a miss).
    pub raw: i32,
}

pub(crate) unsafe fn take_buf(b: *mut MultiputBuffer) -> Result<Vec<u8>, i32> {
    if b.is_null() {
        return Err(set_error(MULTIPUT_E_ARGUMENT, "buffer is null"));
    }
    // SAFETY: the caller passes a zero-initialized buffer or one the library filled.
    let b = unsafe { &mut *b };
    let v = if b.data.is_null() {
        Vec::new()
    } else {
        // SAFETY: data/capacity came from a Vec<u8> this library leaked into the buffer.
        unsafe { Vec::from_raw_parts(b.data, 0, b.capacity) }
    };
    b.data = std::ptr::null_mut();
    b.len = 0;
    b.capacity = 0;
    b.hits = 0;
    b.misses = 0;
    b.errors = 0;
    b.deferred = 0;
    b.first_error = 0;
    b.raw = 0;
    Ok(v)
}

pub(crate) fn put_buf(b: *mut MultiputBuffer, mut v: Vec<u8>) {
    if v.capacity() > (1 << 20) && v.len() < v.capacity() / 4 {
        v.shrink_to(v.len().max(4096));
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `b` was checked by take_buf in the same call.
    let b = unsafe { &mut *b };
    b.data = v.as_mut_ptr();
    b.len = v.len();
    b.capacity = v.capacity();
}

/// Release a buffer's bytes and zero it (it can be filled again). Null is ignored.
///
/// # Safety
/// `buffer` is null or a buffer only this library filled.
#[no_mangle]
pub unsafe extern "C" fn multiput_buffer_free(buffer: *mut MultiputBuffer) {
    if !buffer.is_null() {
        let _ = std::panic::catch_unwind(|| unsafe { take_buf(buffer) });
    }
}

/// Get `key` as PHP's `serialize()` of its value into `*out` (see `phpser` in the docs of
/// the crate): `out->len == 0` is a miss. `opts`: [`MULTIPUT_GET_CAS`],
/// [`MULTIPUT_GET_EXTENDED`], [`MULTIPUT_GET_RAW`]. A value PHP must decode itself
/// (PHP-serialized, JSON, igbinary, msgpack, unreadable) is an object of class
/// `Multiput\Deferred` {kind, data, flags} and `out->deferred` is 1. With
/// [`MULTIPUT_GET_RAW`] (and not extended), a value that is a PHP string is written as its
/// bytes and `out->raw` is 1: PHP takes it with one copy instead of three.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `out` is a buffer (see
/// [`MultiputBuffer`]).
#[no_mangle]
pub unsafe extern "C" fn multiput_get_php(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    opts: u32,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let cas = opts & (MULTIPUT_GET_CAS | MULTIPUT_GET_EXTENDED) != 0;
        let got = c.get_one(key, cas);
        let mut deferred = false;
        let mut raw = false;
        let extended = opts & MULTIPUT_GET_EXTENDED != 0;
        let r = match got {
            Ok(Some(g)) => {
                match phpser::php_string(&g, &c.rules) {
                    Some(bytes) if opts & MULTIPUT_GET_RAW != 0 && !extended => {
                        buf.extend_from_slice(bytes);
                        raw = true;
                    }
                    _ => deferred = phpser::got(&mut buf, g, &c.rules, extended),
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(fail(&e)),
        };
        put_buf(out, buf);
        // SAFETY: checked by take_buf.
        let o = unsafe { &mut *out };
        o.deferred = usize::from(deferred);
        o.raw = i32::from(raw);
        o.hits = usize::from(o.len > 0 || raw);
        o.misses = usize::from(o.len == 0 && !raw && r.is_ok());
        r
    })
}

/// Get many keys (separated by `sep`) as PHP's `serialize()` of an array `key => value`, in the
/// order given, into `*out`. Misses are left out (or `null` with
/// [`MULTIPUT_GET_PRESERVE_ORDER`]); keys whose server failed are left out and counted in
/// `out->errors` (`out->first_error` and the thread's last error say why). Values as in
/// [`multiput_get_php`] (`MULTIPUT_GET_EXTENDED` for PECL's extended arrays).
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_multi_php(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    opts: u32,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let cas = opts & (MULTIPUT_GET_CAS | MULTIPUT_GET_EXTENDED) != 0;
        // Encode straight from the core's results (no intermediate vector per call).
        let rules = c.rules;
        let (hits, misses, errors, deferred, first) = if cas {
            let rs = c.cache.gets_multi(&keys);
            encode_multi(&mut buf, &keys, rs, opts, &rules, |(g, _)| c.got(g))
        } else {
            encode_multi(
                &mut buf,
                &keys,
                c.cache.get_multi(&keys),
                opts,
                &rules,
                |g| c.got(g),
            )
        };
        put_buf(out, buf);
        // SAFETY: checked by take_buf.
        let o = unsafe { &mut *out };
        o.hits = hits;
        o.misses = misses;
        o.errors = errors;
        o.deferred = deferred;
        o.first_error = first;
        Ok(())
    })
}

/// Write `rs` (aligned with `keys`) as PHP's `serialize()` of `key => value`; returns (hits,
/// misses, errors, deferred, first error code).
pub(crate) fn encode_multi<T: HasLen>(
    buf: &mut Vec<u8>,
    keys: &[&[u8]],
    rs: Vec<Result<Option<T>, Error>>,
    opts: u32,
    rules: &PlainRules,
    to_got: impl Fn(T) -> Got,
) -> (usize, usize, usize, usize, i32) {
    let keep_misses = opts & MULTIPUT_GET_PRESERVE_ORDER != 0;
    let extended = opts & MULTIPUT_GET_EXTENDED != 0;
    let (mut hits, mut misses, mut errors, mut deferred, mut first) = (0, 0, 0, 0, 0);
    let mut size = 16;
    for (k, r) in keys.iter().zip(&rs) {
        match r {
            Ok(Some(v)) => {
                hits += 1;
                size += k.len() + 32 + v.len_hint();
            }
            Ok(None) => {
                misses += 1;
                size += k.len() + 16;
            }
            Err(e) => {
                errors += 1;
                if first == 0 {
                    first = fail(e);
                }
            }
        }
    }
    let n = hits + if keep_misses { misses } else { 0 };
    buf.reserve(size);
    buf.extend_from_slice(b"a:");
    phpser::uint(buf, n as u64);
    buf.extend_from_slice(b":{");
    for (k, r) in keys.iter().zip(rs) {
        match r {
            Ok(Some(v)) => {
                phpser::key(buf, k);
                deferred += usize::from(phpser::got(buf, to_got(v), rules, extended));
            }
            Ok(None) if keep_misses => {
                phpser::key(buf, k);
                buf.extend_from_slice(b"N;");
            }
            _ => {}
        }
    }
    buf.push(b'}');
    (hits, misses, errors, deferred, first)
}

/// The payload size of a value read, to size a result buffer once.
pub(crate) trait HasLen {
    fn len_hint(&self) -> usize;
}

impl HasLen for multiput::Value {
    fn len_hint(&self) -> usize {
        self.data.len()
    }
}

impl HasLen for CoreGot {
    fn len_hint(&self) -> usize {
        match self {
            CoreGot::Plain(v) => v.len_hint(),
            CoreGot::Replicated(v) => v.len_hint(),
        }
    }
}

impl HasLen for (CoreGot, u64) {
    fn len_hint(&self) -> usize {
        self.0.len_hint()
    }
}

impl HasLen for Versioned {
    fn len_hint(&self) -> usize {
        self.data.len() + 64
    }
}

/// `stats [group]` of every server into `*out` as text lines `server\tname\tvalue\n`; a server
/// that failed is one line `server\t\terror message\n`. `group` may be null.
///
/// # Safety
/// `client` is live; `group` is null or NUL-terminated; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_stats(
    client: *const MultiputClient,
    group: *const c_char,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let group = if group.is_null() {
            None
        } else {
            Some(unsafe { text(group, "group") }?)
        };
        let buf = unsafe { take_buf(out) }?;
        per_server_lines(out, buf, c.plain().stats(group), |buf, server, stats| {
            for (k, v) in stats {
                buf.extend_from_slice(format!("{server}\t{k}\t{v}\n").as_bytes());
            }
        });
        Ok(())
    })
}

/// Write one answer per server into `out` (`line` for a success, `server\t\terror\n` for a
/// failure, whose error also becomes the last error) and count the failures in `errors`.
pub(crate) fn per_server_lines<T>(
    out: *mut MultiputBuffer,
    mut buf: Vec<u8>,
    results: Vec<(String, Result<T, Error>)>,
    line: impl Fn(&mut Vec<u8>, &str, T),
) {
    let mut errors = 0;
    for (server, r) in results {
        match r {
            Ok(v) => line(&mut buf, &server, v),
            Err(e) => {
                errors += 1;
                fail(&e);
                let msg = e.to_string().replace(['\n', '\t'], " ");
                buf.extend_from_slice(format!("{server}\t\t{msg}\n").as_bytes());
            }
        }
    }
    put_buf(out, buf);
    // SAFETY: `out` was checked by `take_buf`, which produced `buf`.
    unsafe { (*out).errors = errors };
}

/// The `version` of every server into `*out` as lines `server\tversion\n`, or
/// `server\t\terror message\n` for a server that failed.
///
/// # Safety
/// `client` is live; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_server_versions(
    client: *const MultiputClient,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let buf = unsafe { take_buf(out) }?;
        per_server_lines(out, buf, c.plain().version(), |buf, server, v| {
            buf.extend_from_slice(format!("{server}\t{v}\n").as_bytes());
        });
        Ok(())
    })
}

/// Counters per server as lines `server\thits\tmisses\tsets\terrors\ttimeouts\tdown_events\t
/// repairs\tstale\n` (tab-separated), then a line `total\t...` with the sums and a last column
/// of replica disagreements.
///
/// # Safety
/// `client` is live; `out` is a buffer.
#[no_mangle]
pub unsafe extern "C" fn multiput_metrics(
    client: *const MultiputClient,
    out: *mut MultiputBuffer,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let mut buf = unsafe { take_buf(out) }?;
        let m = c.plain().metrics();
        let line = |name: &str, x: &multiput::metrics::Counters| {
            format!(
                "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                x.hits, x.misses, x.sets, x.errors, x.timeouts, x.down_events, x.repairs, x.stale
            )
        };
        for (s, x) in &m.servers {
            buf.extend_from_slice(format!("{}\n", line(s, x)).as_bytes());
        }
        let t = line("total", &m.total);
        buf.extend_from_slice(format!("{t}\t{}\n", m.total.disagreements).as_bytes());
        put_buf(out, buf);
        Ok(())
    })
}
