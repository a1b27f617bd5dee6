//! JavaScript values ↔ the core's typed values ([`Typed`]).
//!
//! | JavaScript | envelope type (replicated) | plain, `multiput` (default) | plain, `pylibmc` | plain, `pecl` |
//! | --- | --- | --- | --- | --- |
//! | `Uint8Array` / `Buffer` | 0 bytes | flags 0 | flags 0 | flags 0 |
//! | `string` | 1 text | text (UTF-8) | flags 0 (UTF-8) | flags 0 (UTF-8) |
//! | `number`, a safe integer | 2 int | int, decimal | flags 2, decimal | flags 1, decimal |
//! | `number`, otherwise (incl. `-0`, `NaN`) | 3 float | float, shortest decimal | flags 1, small pickle | flags 2, `g_fmt` |
//! | `bigint` within i64 | 2 int | int | flags 2 | flags 1 |
//! | `boolean` | 4 bool | bool, `1`/`0` | flags 1, small pickle | flags 3, `"1"`/`""` |
//! | object, array | 5 serialized, format 3 JSON | JSON | refused | flags 6 JSON |
//! | `null`, `undefined`, functions, symbols | refused (a stored `null` would read as a miss) | | | |
//!
//! Under multiput's own flags ([`multiput::values::portable`], the default) every type comes
//! back as written, in every binding. Under the legacy conventions strings are written with
//! flags 0 (not pymemcache's 16): that is what every Node and PHP client writes for a string,
//! and pylibmc/pymemcache read it as bytes; such a read cannot tell a string from bytes and
//! returns a `Uint8Array`.

use js_sys::{Object, Uint8Array, JSON};
use multiput::compress;
use multiput::envelope::{self, Decoded, Format, Kind, Typed};
use multiput::values::{self, Convention, TypedRef};
use multiput::Error;
use wasm_bindgen::prelude::*;

use crate::js;

/// The typed value of a JavaScript value (see the module table).
pub(crate) fn typed_from_js(v: &JsValue) -> Result<Typed, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(Typed::Text(s));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Typed::Bool(b));
    }
    if v.is_bigint() {
        return i64::try_from(v.clone())
            .map(Typed::Int)
            .map_err(|_| config("a bigint value must fit a signed 64-bit integer"));
    }
    if let Some(f) = v.as_f64() {
        let int = f.fract() == 0.0
            && f.abs() <= js::MAX_SAFE as f64
            && !(f == 0.0 && f.is_sign_negative());
        return Ok(if int {
            Typed::Int(f as i64)
        } else {
            Typed::Float(f)
        });
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(Typed::Bytes(a.to_vec()));
    }
    if let Some(b) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Typed::Bytes(Uint8Array::new(b).to_vec()));
    }
    if v.is_object() && !v.is_function() {
        let s = JSON::stringify(v)?
            .as_string()
            .ok_or_else(|| config("JSON.stringify returned no text for this value"))?;
        return Ok(Typed::Serialized {
            format: Format::JSON,
            data: s.into_bytes(),
        });
    }
    Err(config(
        "cannot store this value: use a Buffer/Uint8Array, string, number, bigint, boolean, or a JSON-serializable object",
    ))
}

fn config(msg: &str) -> JsValue {
    js::error(&Error::Config(msg.to_string()))
}

/// The `(bytes, flags)` a plain (non-enveloped) store writes for `v` under `convention`.
pub(crate) fn plain_from_js(
    convention: Convention,
    v: &JsValue,
) -> Result<(Vec<u8>, u32), JsValue> {
    match typed_from_js(v)? {
        // Bytes: flags 0 everywhere; strings: flags 0 under the legacy conventions (see the
        // module docs).
        Typed::Bytes(b) => Ok((b, 0)),
        Typed::Text(s) if !convention.is_multiput() => Ok((s.into_bytes(), 0)),
        t => values::encode(convention, &t).map_err(|e| js::error(&Error::Config(e.to_string()))),
    }
}

/// A typed value as JavaScript: bytes as a `Uint8Array`, text as a string, an int as a number
/// when exact (else a `BigInt`), a float, a bool, JSON parsed. Serialized formats JavaScript
/// cannot read (pickle, PHP `serialize()`, private ones) are an error carrying the raw bytes,
/// never handed back as if they were the value.
pub(crate) fn typed_to_js(t: TypedRef<'_>) -> Result<JsValue, JsValue> {
    Ok(match t {
        TypedRef::Bytes(b) | TypedRef::Raw(b, _) => js::u8a(b).into(),
        TypedRef::Text(s) => JsValue::from_str(s),
        TypedRef::Int(i) => js::int(i),
        TypedRef::Float(f) => JsValue::from_f64(f),
        TypedRef::Bool(b) => JsValue::from_bool(b),
        TypedRef::Serialized(f, data) if f == Format::JSON => {
            let text = std::str::from_utf8(data)
                .map_err(|_| unreadable(f, data, "its JSON is not UTF-8"))?;
            JSON::parse(text).map_err(|_| unreadable(f, data, "its JSON does not parse"))?
        }
        TypedRef::Serialized(f, data) => {
            let e = js::error(&values::unreadable_serialized(f, "JavaScript"));
            let o: &Object = e.unchecked_ref();
            js::set(o, "format", f.0);
            js::set(o, "data", js::u8a(data));
            return Err(e);
        }
    })
}

fn unreadable(f: Format, data: &[u8], why: &str) -> JsValue {
    let e = js::error(&Error::Undecodable {
        flags: 0,
        detail: format!(
            "the stored value cannot be read in JavaScript: {why} (envelope format {})",
            f.0
        ),
    });
    let o: &Object = e.unchecked_ref();
    js::set(o, "format", f.0);
    js::set(o, "data", js::u8a(data));
    e
}

/// What a stored value means to a reader: an envelope's typed payload (`None` for a
/// tombstone), or a plain value typed by its flags under `convention`.
pub(crate) fn stored_to_js(
    convention: Convention,
    data: &[u8],
    flags: u32,
) -> Result<Option<JsValue>, JsValue> {
    match envelope::decode(data) {
        Decoded::Enveloped(env) if env.kind == Kind::Tombstone => Ok(None),
        Decoded::Enveloped(env) => {
            let t = values::typed_payload(env.vtype, env.format, env.payload)
                .unwrap_or(TypedRef::Bytes(env.payload));
            typed_to_js(t).map(Some)
        }
        Decoded::Plain(raw) => match compress::inflate(convention, raw, flags, MAX_INFLATED) {
            None => checked_to_js(convention, raw, flags),
            Some(Ok((raw, rest))) => checked_to_js(convention, &raw, rest),
            Some(Err(e)) => Err(js::error(&values::undecodable(
                convention,
                raw,
                flags,
                &format!("the flags say compressed, but it does not inflate ({e})"),
            ))),
        },
    }
}

/// A plain value by the core's strict rules ([`values::decode_checked`]): a value whose flags
/// and bytes disagree is an `UndecodableError` naming the likely writer.
fn checked_to_js(
    convention: Convention,
    raw: &[u8],
    flags: u32,
) -> Result<Option<JsValue>, JsValue> {
    let t = values::decode_checked(convention, raw, flags).map_err(|e| js::error(&e))?;
    typed_to_js(t).map(Some)
}

/// The bound on an inflated plain value in Node: memcached's largest item (1 MiB by default,
/// `-I` up to 1 GiB) compresses ~10:1 at best on real data; 128 MiB is the core's cap.
const MAX_INFLATED: usize = compress::MAX_DECOMPRESSED;

/// What a stored value is to a reader, without building a JavaScript value yet: bytes and
/// text stay borrowed (the packed multi-get copies them into one buffer).
pub(crate) enum Stored<'a> {
    /// A miss: a tombstone.
    Missing,
    /// Bytes (an envelope's bytes payload, or a plain value the convention reads as bytes).
    Bytes(&'a [u8]),
    /// Valid UTF-8 text.
    Text(&'a [u8]),
    /// A compressed plain value, or one the strict rules refuse: read it (or its error) with
    /// [`stored_to_js`], the slow path.
    Slow,
    /// Anything else (numbers, bools, serialized, raw values of unknown flags).
    Other(TypedRef<'a>),
}

pub(crate) fn stored_ref(convention: Convention, data: &[u8], flags: u32) -> Stored<'_> {
    let t = match envelope::decode(data) {
        Decoded::Enveloped(env) if env.kind == Kind::Tombstone => return Stored::Missing,
        Decoded::Enveloped(env) => values::typed_payload(env.vtype, env.format, env.payload)
            .unwrap_or(TypedRef::Bytes(env.payload)),
        Decoded::Plain(raw) if compress::inflate(convention, raw, flags, 0).is_some() => {
            return Stored::Slow
        }
        Decoded::Plain(raw) => match values::decode_checked(convention, raw, flags) {
            Ok(t) => t,
            Err(_) => return Stored::Slow,
        },
    };
    match t {
        TypedRef::Bytes(b) | TypedRef::Raw(b, _) => Stored::Bytes(b),
        TypedRef::Text(s) => Stored::Text(s.as_bytes()),
        other => Stored::Other(other),
    }
}
