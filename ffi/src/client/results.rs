//! Results in C structs.

use super::*;

/// One value read, or one key's result in a multi-key call.
///
/// `data`/`data_len` hold the canonical payload of `value_type`: the bytes of a bytes, text or
/// serialized value; ASCII decimal for an int; 8 big-endian bytes for a float; one byte 0/1
/// for a bool. `int_value` (int, bool) and `float_value` (float) hold the same number decoded.
#[repr(C)]
pub struct MultiputItem {
    /// The key (multi-key results; the requested key for single gets).
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The payload (never null; may be empty).
    pub data: *const u8,
    /// Its length.
    pub data_len: usize,
    /// The integer of an int or bool value.
    pub int_value: i64,
    /// The float of a float value.
    pub float_value: f64,
    /// The CAS unique (plain, when asked for) or the version token (replicated).
    pub cas: u64,
    /// The memcached flags stored with the value.
    pub flags: u32,
    /// Multi-key results: `MULTIPUT_OK` (a hit, or stored/deleted), `MULTIPUT_E_NOT_FOUND`
    /// (a miss), or the error of the key's server.
    pub status: i32,
    /// `MULTIPUT_TYPE_*` (never `STRING`).
    pub value_type: u8,
    /// `MULTIPUT_FORMAT_*` for serialized values.
    pub format: u8,
    /// 1 when the value carried multiput's envelope.
    pub enveloped: u8,
    /// 1 for a plain value whose flags the convention does not define (igbinary, msgpack, an
    /// unknown or corrupt compressed value): `data` is the stored bytes, `flags` say what
    /// they are.
    pub raw: u8,
}

#[repr(C)]
pub(crate) struct OwnedItem {
    pub(crate) item: MultiputItem,
    pub(crate) key: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

pub(crate) fn item_of(
    key: &[u8],
    status: i32,
    out: Option<&Out>,
) -> (MultiputItem, Vec<u8>, Vec<u8>) {
    let key = key.to_vec();
    let data = out.map(|o| o.payload.clone()).unwrap_or_default();
    let o = out.cloned().unwrap_or_default();
    let item = MultiputItem {
        key: key.as_ptr(),
        key_len: key.len(),
        data: data.as_ptr(),
        data_len: data.len(),
        int_value: o.int_value,
        float_value: o.float_value,
        cas: o.cas,
        flags: o.flags,
        status,
        value_type: o.vtype,
        format: o.format,
        enveloped: u8::from(o.enveloped),
        raw: u8::from(o.raw),
    };
    (item, key, data)
}

pub(crate) fn boxed_item(key: &[u8], out: &Out) -> *mut MultiputItem {
    let (item, key, data) = item_of(key, MULTIPUT_OK, Some(out));
    Box::into_raw(Box::new(OwnedItem { item, key, data })).cast()
}

/// Free an item returned by the library. Null is ignored.
///
/// # Safety
/// `item` is null or came from [`multiput_get`] and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_item_free(item: *mut MultiputItem) {
    if !item.is_null() {
        // SAFETY: every single item is the first field of a boxed OwnedItem (repr(C)).
        let _ =
            std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(item.cast::<OwnedItem>()) }));
    }
}

/// Results of a multi-key call, aligned with the keys given. Free with [`multiput_items_free`].
#[repr(C)]
pub struct MultiputItems {
    /// `count` items, in the order of the keys.
    pub items: *const MultiputItem,
    /// Number of items.
    pub count: usize,
    /// Items with status `MULTIPUT_OK`.
    pub ok: usize,
    /// Items with status `MULTIPUT_E_NOT_FOUND`.
    pub not_found: usize,
    /// Items with any other status.
    pub errors: usize,
    /// The status of the first item in error (0 if none); its message is the thread's last
    /// error.
    pub first_error: i32,
}

#[repr(C)]
pub(crate) struct OwnedItems {
    pub(crate) head: MultiputItems,
    pub(crate) items: Vec<MultiputItem>,
    pub(crate) store: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) fn boxed_items<'k>(
    results: impl Iterator<Item = (&'k [u8], Result<Option<Out>, Error>)>,
) -> *mut MultiputItems {
    let mut owned = OwnedItems {
        head: MultiputItems {
            items: std::ptr::null(),
            count: 0,
            ok: 0,
            not_found: 0,
            errors: 0,
            first_error: 0,
        },
        items: Vec::new(),
        store: Vec::new(),
    };
    for (key, r) in results {
        let (status, out) = match &r {
            Ok(Some(o)) => (MULTIPUT_OK, Some(o)),
            Ok(None) => (MULTIPUT_E_NOT_FOUND, None),
            Err(e) => {
                let c = crate::code_of(e);
                if owned.head.first_error == 0 {
                    fail(e);
                    owned.head.first_error = c;
                }
                (c, None)
            }
        };
        match status {
            MULTIPUT_OK => owned.head.ok += 1,
            MULTIPUT_E_NOT_FOUND => owned.head.not_found += 1,
            _ => owned.head.errors += 1,
        }
        let (item, k, d) = item_of(key, status, out);
        owned.items.push(item);
        owned.store.push((k, d));
    }
    owned.head.items = owned.items.as_ptr();
    owned.head.count = owned.items.len();
    Box::into_raw(Box::new(owned)).cast()
}

/// Free multi-key results. Null is ignored.
///
/// # Safety
/// `items` is null or came from the library and was not freed before.
#[no_mangle]
pub unsafe extern "C" fn multiput_items_free(items: *mut MultiputItems) {
    if !items.is_null() {
        // SAFETY: every MultiputItems is the first field of a boxed OwnedItems (repr(C)).
        let _ =
            std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(items.cast::<OwnedItems>()) }));
    }
}

/// Get `key`. On a hit `*out` is an item to free with [`multiput_item_free`]; on a miss
/// `*out` is null and the call returns `MULTIPUT_OK`. `opts`: [`MULTIPUT_GET_CAS`].
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    opts: u32,
    out: *mut *mut MultiputItem,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let got = c
            .get_one(key, opts & MULTIPUT_GET_CAS != 0)
            .map_err(|e| fail(&e))?;
        if let Some(g) = got {
            unsafe { write_out(out, boxed_item(key, &g.into_out(&c.rules))) }?;
        }
        Ok(())
    })
}

/// Get many keys in one call: `keys` holds `keys_len` bytes of keys separated by the byte
/// `sep` (e.g. `'\n'`; keys cannot contain whitespace or control bytes). Each server gets one
/// request for all its keys, all servers at once. `*out` (free with [`multiput_items_free`])
/// has one item per key, in order: a hit, a miss (`MULTIPUT_E_NOT_FOUND`) or the error of the
/// key's server, so one failed server does not hide the others' answers. Returns `MULTIPUT_OK`
/// unless the arguments are bad.
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_multi(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    opts: u32,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let rules = c.rules;
        let rs = c
            .get_many(&keys, opts & MULTIPUT_GET_CAS != 0)
            .into_iter()
            .map(|r| r.map(|g| g.map(|g| g.into_out(&rules))));
        unsafe { write_out(out, boxed_items(keys.iter().copied().zip(rs))) }
    })
}

/// Store a typed value. `mode`: [`MULTIPUT_SET`], [`MULTIPUT_ADD`], [`MULTIPUT_REPLACE`],
/// [`MULTIPUT_APPEND`], [`MULTIPUT_PREPEND`]. `value_type` is a `MULTIPUT_TYPE_*`, `format` a
/// `MULTIPUT_FORMAT_*` (serialized values only), `data` the canonical payload (see
/// [`MultiputItem`]). `ttl` is memcached's exptime. `flags` are OR-ed into the flags of a plain
/// value (PECL user flags live in bits 16..31); enveloped values are stored with flags 0.
///
/// Plain mode: the value is stored with the flags of the configured convention (multiput's
/// own by default, read with their type by every binding; `pecl`: PECL memcached's),
/// compressed above `compress_threshold`. Replicated
/// mode: in the envelope on every replica; add, replace, append and prepend are conditional
/// updates serialized by CAS on the key's primary replica. Errors:
/// `MULTIPUT_E_NOT_STORED` (add/replace/append/prepend refused), `MULTIPUT_E_KEY`,
/// `MULTIPUT_E_VALUE_TOO_LARGE`, `MULTIPUT_E_REPLICATION`, server errors.
///
/// # Safety
/// `client` is live; `key` and `data` point to their lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_store(
    client: *const MultiputClient,
    mode: u32,
    key: *const c_char,
    key_len: usize,
    value_type: u8,
    format: u8,
    data: *const c_char,
    data_len: usize,
    ttl: u32,
    flags: u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let v = unsafe { value_arg(value_type, format, data, data_len) }?;
        c.store(mode, key, v, ttl, flags)
    })
}

/// Compare-and-swap: store only if the key still has `cas` (a CAS unique from a get with
/// [`MULTIPUT_GET_CAS`]; in replicated mode the version token). `MULTIPUT_E_EXISTS` if it
/// changed, `MULTIPUT_E_NOT_FOUND` if it is gone.
///
/// # Safety
/// As [`multiput_store`].
#[no_mangle]
pub unsafe extern "C" fn multiput_cas(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    value_type: u8,
    format: u8,
    data: *const c_char,
    data_len: usize,
    ttl: u32,
    flags: u32,
    cas: u64,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let v = unsafe { value_arg(value_type, format, data, data_len) }?;
        // A CAS unique (plain) or a version token (replicated): the core's facade decides.
        let value = c.stored(v, flags, false)?;
        let rep = c
            .cache
            .put(StoreMode::Cas(cas), key, value, ttl)
            .map_err(|e| fail(&e))?;
        c.noted(rep);
        Ok(())
    })
}

/// Store many typed values in one call. `items` is `items_len` bytes of records, each:
/// `u32 key_len (little-endian) | u32 data_len (LE) | u8 value_type | u8 format | key | data`.
/// Pipelined per server, all servers at once. Returns `MULTIPUT_OK` when every item was stored,
/// else the first failure's code; `*out` (if `out` is not null; free with
/// [`multiput_items_free`]) gets one status per item.
///
/// # Safety
/// `client` is live; `items` points to `items_len` bytes; `out` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_set_multi(
    client: *const MultiputClient,
    items: *const c_char,
    items_len: usize,
    ttl: u32,
    flags: u32,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let buf = unsafe { bytes(items, items_len, "items") }?;
        if !out.is_null() {
            unsafe { write_out(out, std::ptr::null_mut()) }?;
        }
        let parsed = parse_records(buf)?;
        // A value the convention cannot represent fails the whole call before anything is
        // sent (PECL's setMulti does the same with a payload failure).
        let mut items = Vec::with_capacity(parsed.len());
        for (k, v) in &parsed {
            items.push((Bytes::copy_from_slice(k), c.stored(*v, flags, false)?));
        }
        let results: Vec<Result<Option<Out>, Error>> = c
            .cache
            .put_multi(items, ttl)
            .into_iter()
            .map(|r| {
                r.map(|rep| {
                    c.noted(rep);
                    Some(Out::default())
                })
            })
            .collect();
        let first = results.iter().find_map(|r| r.as_ref().err()).cloned();
        if !out.is_null() {
            let keys: Vec<&[u8]> = parsed.iter().map(|(k, _)| *k).collect();
            unsafe { write_out(out, boxed_items(keys.into_iter().zip(results))) }?;
        }
        match first {
            Some(e) => Err(fail(&e)),
            None => Ok(()),
        }
    })
}

pub(crate) fn parse_records(buf: &[u8]) -> Result<Vec<(&[u8], In<'_>)>, i32> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let bad = |what: &str| set_error(MULTIPUT_E_ARGUMENT, format!("items: {what}"));
    while at < buf.len() {
        let head = buf
            .get(at..at + 10)
            .ok_or_else(|| bad("truncated record header"))?;
        let kl = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let dl = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let (t, f) = (head[8], head[9]);
        at += 10;
        let key = buf
            .get(at..at + kl)
            .ok_or_else(|| bad("key runs past the end"))?;
        at += kl;
        let data = buf
            .get(at..at + dl)
            .ok_or_else(|| bad("data runs past the end"))?;
        at += dl;
        let v = In::new(t, f, data).map_err(|e| set_error(MULTIPUT_E_ARGUMENT, e.0))?;
        out.push((key, v));
    }
    Ok(out)
}

/// Delete `key`. Plain: `MULTIPUT_E_NOT_FOUND` if it did not exist. Replicated: writes a
/// tombstone on every replica (so a replica that missed the delete cannot bring the value
/// back) and returns `MULTIPUT_OK` whether or not the key existed.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_delete(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        // Plain: whether it existed; replicated: tombstones, so it always "existed".
        let (existed, rep) = c.cache.delete(key).map_err(|e| fail(&e))?;
        c.noted(rep);
        if existed {
            Ok(())
        } else {
            Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                "not found: the key does not exist",
            ))
        }
    })
}

/// Delete many keys (separated by `sep`, as [`multiput_get_multi`]). `*out` gets one status
/// per key: `MULTIPUT_OK` deleted, `MULTIPUT_E_NOT_FOUND` (plain mode) it did not exist, or an
/// error.
///
/// # Safety
/// `client` is live; `keys` points to `keys_len` bytes; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_delete_multi(
    client: *const MultiputClient,
    keys: *const c_char,
    keys_len: usize,
    sep: u8,
    out: *mut *mut MultiputItems,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let keys = unsafe { split_keys(keys, keys_len, sep) }?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        // Cache::delete_multi: existed (plain), or tombstoned (replicated: true).
        let rs: Vec<Result<Option<Out>, Error>> = c
            .cache
            .delete_multi(&keys)
            .into_iter()
            .map(|r| r.map(|existed| existed.then(Out::default)))
            .collect();
        unsafe { write_out(out, boxed_items(keys.iter().copied().zip(rs))) }
    })
}

/// Increment (or, with `decrement` non-zero, decrement) a counter by `delta`; the new value goes
/// to `*value`. A missing key is `MULTIPUT_E_NOT_FOUND`, unless `has_initial` is non-zero: then
/// it is created with `initial` (and `ttl`) and `*value` is `initial`, as libmemcached's
/// `increment_with_initial`. Plain: memcached's own `incr`/`decr` (wraps at 2^64, floors at
/// 0). Replicated: an exact CAS-serialized update of an enveloped integer on every replica.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `value` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_incr(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    delta: u64,
    decrement: i32,
    has_initial: i32,
    initial: u64,
    ttl: u32,
    value: *mut u64,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let init = (has_initial != 0).then_some(initial);
        let n = c.incr(key, delta, decrement != 0, init, ttl)?;
        if !value.is_null() {
            unsafe { write_out(value, n) }?;
        }
        Ok(())
    })
}

/// Give `key` a new TTL; `MULTIPUT_E_NOT_FOUND` if it does not exist. Replicated: rewrites the
/// latest value with the new TTL on every replica (a CAS-serialized update).
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn multiput_touch(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        match c.cache.touch(key, ttl).map_err(|e| fail(&e))? {
            true => Ok(()),
            false => Err(set_error(
                MULTIPUT_E_NOT_FOUND,
                "not found: the key does not exist",
            )),
        }
    })
}

/// `flush_all` on every server (`delay` seconds later when non-zero). Returns the first
/// server's failure, if any.
///
/// # Safety
/// `client` is live.
#[no_mangle]
pub unsafe extern "C" fn multiput_flush(client: *const MultiputClient, delay: u32) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let d = (delay > 0).then_some(delay);
        for (_, r) in c.plain().flush_all(d) {
            r.map_err(|e| fail(&e))?;
        }
        Ok(())
    })
}
