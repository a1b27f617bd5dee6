//! CAS updates.

use super::*;

/// Leave the key as it is.
pub const MULTIPUT_UPDATE_KEEP: i32 = 0;
/// Store the value in the update.
pub const MULTIPUT_UPDATE_SET: i32 = 1;
/// Delete the key (if it still holds the value that was read).
pub const MULTIPUT_UPDATE_DELETE: i32 = 2;

/// What a CAS-update callback wants done. `data` must stay valid until the callback is called
/// again or [`multiput_cas_update`] returns (the library copies it right away).
#[repr(C)]
pub struct MultiputUpdate {
    /// `MULTIPUT_UPDATE_KEEP` (the default), `_SET` or `_DELETE`.
    pub action: i32,
    /// For `_SET`: a `MULTIPUT_TYPE_*`.
    pub value_type: u8,
    /// For `_SET`: a `MULTIPUT_FORMAT_*`.
    pub format: u8,
    /// For `_SET`: the canonical payload.
    pub data: *const c_char,
    /// Its length.
    pub data_len: usize,
}

/// A CAS-update callback: `current` is the latest value (null when the key is missing; valid
/// only during the call), `update` (zeroed: keep) is filled in by the callback. Return 0 to go
/// on, non-zero to abort the update with [`MULTIPUT_E_CALLBACK`]. It may be called several
/// times (once per conflict) and must only compute.
pub type MultiputUpdateFn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        current: *const MultiputItem,
        update: *mut MultiputUpdate,
    ) -> i32,
>;

/// Read-modify-write `key` without losing concurrent updates: read it, call `f`, write the
/// result with compare-and-swap (or `add` when the key is missing), and on a conflict start
/// over (jittered backoff, at most `cas_attempts` reads within `cas_deadline_ms`). Replicated
/// mode: serialized by CAS on the key's primary replica, then written to the others.
/// `*outcome` (if not null) gets the action taken (`MULTIPUT_UPDATE_*`), `*attempts` the reads
/// it took. `MULTIPUT_E_CAS_RETRIES` when it gave up; `MULTIPUT_E_CALLBACK` when `f` aborted.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `f` is a valid function; `outcome` and
/// `attempts` are null or valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_cas_update(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
    f: MultiputUpdateFn,
    ctx: *mut c_void,
    outcome: *mut i32,
    attempts: *mut u32,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let f = f.ok_or_else(|| set_error(MULTIPUT_E_ARGUMENT, "callback is null"))?;
        // Call the callback on a decoded value; returns what to do, or an error code.
        let aborted: Cell<Option<i32>> = Cell::new(None);
        let ask = |cur: Option<&Out>| -> Option<(i32, Option<Owned>)> {
            let holder = cur.map(|o| item_of(key, MULTIPUT_OK, Some(o)));
            let cur_ptr = holder
                .as_ref()
                .map_or(std::ptr::null(), |(i, _, _)| i as *const _);
            let mut up = MultiputUpdate {
                action: MULTIPUT_UPDATE_KEEP,
                value_type: 0,
                format: 0,
                data: std::ptr::null(),
                data_len: 0,
            };
            // SAFETY: the caller's callback, with pointers valid for the call.
            let rc = unsafe { f(ctx, cur_ptr, &mut up) };
            if rc != 0 {
                aborted.set(Some(set_error(
                    MULTIPUT_E_CALLBACK,
                    format!("the update callback aborted (returned {rc})"),
                )));
                return None;
            }
            match up.action {
                MULTIPUT_UPDATE_SET => {
                    match unsafe { value_arg(up.value_type, up.format, up.data, up.data_len) } {
                        Ok(v) => Some((MULTIPUT_UPDATE_SET, Some(own(v)))),
                        Err(code) => {
                            aborted.set(Some(code));
                            None
                        }
                    }
                }
                MULTIPUT_UPDATE_DELETE => Some((MULTIPUT_UPDATE_DELETE, None)),
                MULTIPUT_UPDATE_KEEP => Some((MULTIPUT_UPDATE_KEEP, None)),
                other => {
                    aborted.set(Some(set_error(
                        MULTIPUT_E_ARGUMENT,
                        format!("the update callback set an unknown action {other}"),
                    )));
                    None
                }
            }
        };
        let opts = CasOptions { ttl, ..c.cas };
        // The core's CAS machine, plain or replicated; each answer is stored in the cache's
        // form (plain: the convention's bytes and flags; replicated: typed, for the envelope).
        let rules = c.rules;
        let result = c
            .cache
            .cas_update(key, opts, |cur| {
                let o = cur.map(|g| match g {
                    CoreGot::Plain(v) => Out::from_value(&v, &rules),
                    CoreGot::Replicated(v) => Out::from_versioned(&v, &rules),
                });
                match ask(o.as_ref()) {
                    Some((MULTIPUT_UPDATE_SET, Some((t, fmt, p)))) => {
                        let v = In {
                            vtype: t,
                            format: fmt,
                            payload: &p,
                        };
                        match c.stored(v, 0, false) {
                            Ok(value) => Ok(Update::from(value)),
                            Err(code) => {
                                aborted.set(Some(code));
                                Ok(Update::Keep)
                            }
                        }
                    }
                    Some((MULTIPUT_UPDATE_DELETE, _)) => Ok(Update::Delete),
                    _ => Ok(Update::Keep),
                }
            })
            .map(|(outcome, report)| {
                c.noted(report);
                outcome
            });
        let n = result.as_ref().map_or(0, CasOutcome::attempts);
        if let Some(code) = aborted.get() {
            return Err(code);
        }
        let outcome_code = match result.map_err(|e| fail(&e))? {
            CasOutcome::Stored { .. } => MULTIPUT_UPDATE_SET,
            CasOutcome::Unchanged { .. } => MULTIPUT_UPDATE_KEEP,
            CasOutcome::Deleted { .. } => MULTIPUT_UPDATE_DELETE,
        };
        if !outcome.is_null() {
            unsafe { write_out(outcome, outcome_code) }?;
        }
        if !attempts.is_null() {
            unsafe { write_out(attempts, n) }?;
        }
        Ok(())
    })
}

/// A `get_or_set` loader: fills `value` (`value_type` bytes, text or string; `data` valid until
/// the call returns) and returns 0, or non-zero to fail the call with [`MULTIPUT_E_CALLBACK`].
pub type MultiputLoadFn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, value: *mut MultiputUpdate) -> i32>;

/// Get `key`, or on a miss load it once and store it (miss-storm protection, see
/// docs/recipes.md): concurrent callers in this process share one load; across processes one
/// fills (a short `add` lock on `<key>:fill`) while the others wait for its value; the stored
/// TTL gets ±10% jitter. `*out` is the value found or loaded (free with
/// [`multiput_item_free`]). Plain and replicated alike (replicated: read and stored on the
/// key's replicas, typed as the loader says); a plain client stores the loaded value as a
/// plain string (flags 0), so its loader returns bytes or text.
///
/// # Safety
/// `client` is live; `key` points to `key_len` bytes; `f` is a valid function; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn multiput_get_or_set(
    client: *const MultiputClient,
    key: *const c_char,
    key_len: usize,
    ttl: u32,
    f: MultiputLoadFn,
    ctx: *mut c_void,
    out: *mut *mut MultiputItem,
) -> i32 {
    run(|| {
        let c = unsafe { client_ref(client) }?;
        let key = unsafe { key_arg(key, key_len) }?;
        let f = f.ok_or_else(|| set_error(MULTIPUT_E_ARGUMENT, "loader is null"))?;
        unsafe { write_out(out, std::ptr::null_mut()) }?;
        let loader = || -> Result<Fresh, String> {
            let mut v = MultiputUpdate {
                action: MULTIPUT_UPDATE_SET,
                value_type: 0,
                format: 0,
                data: std::ptr::null(),
                data_len: 0,
            };
            // SAFETY: the caller's loader, with a pointer valid for the call.
            let rc = unsafe { f(ctx, &mut v) };
            if rc != 0 {
                return Err(format!("the loader returned {rc}"));
            }
            let v = unsafe { value_arg(v.value_type, v.format, v.data, v.data_len) }
                .map_err(|_| "the loader's value is invalid".to_string())?;
            // Stored in the mode's form: plain values by the convention (as a set would).
            c.stored(v, 0, false)
                .map(Fresh::from)
                .map_err(|_| crate::last_message())
        };
        let opts = multiput::recipes::FillOptions::default();
        let item = match c
            .cache
            .get_or_set(key, ttl, opts, loader)
            .map_err(|e| fail(&e))?
        {
            CoreGot::Plain(v) => Out::from_value(&v, &c.rules),
            CoreGot::Replicated(v) => Out::from_versioned(&v, &c.rules),
        };
        unsafe { write_out(out, boxed_item(key, &item)) }
    })
}
