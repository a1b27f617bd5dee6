//! The replication envelope (docs/envelope.md): encode, decode, compare, pick the winner, and
//! the hybrid logical clock, with wall time passed in from JavaScript (`Date.now()`).

use js_sys::{Array, Object};
use multiput::envelope::{self, Decoded, Format, Hlc as CoreHlc, Kind, Stamp, Typed, ValueType};
use multiput::values::typed_payload;
use multiput::Error;
use std::cmp::Ordering;
use wasm_bindgen::prelude::*;

use crate::{js, values};

fn invalid(e: envelope::Invalid) -> JsValue {
    js::error(&Error::Config(format!("invalid envelope: {e}")))
}

fn kind_of(k: u8) -> Result<Kind, JsValue> {
    Kind::from_u8(k).ok_or(invalid(envelope::Invalid::UnknownKind(k)))
}

fn type_of(t: u8) -> Result<ValueType, JsValue> {
    ValueType::from_u8(t).ok_or(invalid(envelope::Invalid::UnknownType(t)))
}

/// Encode an envelope from its fields (`ts` and `writer` are `BigInt`s; `kind`, `type`,
/// `format` the wire bytes). Throws when the fields are inconsistent (they would read back
/// as a plain value, and the write would be lost).
#[wasm_bindgen(js_name = envelopeEncode)]
pub fn envelope_encode(
    ts: u64,
    writer: u64,
    kind: u8,
    vtype: u8,
    format: u8,
    payload: &[u8],
) -> Result<Vec<u8>, JsValue> {
    envelope::encode(
        Stamp::new(ts, writer),
        kind_of(kind)?,
        type_of(vtype)?,
        Format(format),
        payload,
    )
    .map_err(invalid)
}

/// A tombstone (24 bytes) with this stamp.
#[wasm_bindgen(js_name = envelopeTombstone)]
pub fn envelope_tombstone(ts: u64, writer: u64) -> Vec<u8> {
    envelope::tombstone(Stamp::new(ts, writer)).to_vec()
}

/// Decode stored bytes: `null` for a plain value (anything that is not a valid version-1
/// envelope), else `{ts, writer, kind, type, format, payload}` (`ts`/`writer` as `BigInt`).
/// Never throws.
#[wasm_bindgen(js_name = envelopeDecode)]
pub fn envelope_decode(raw: &[u8]) -> JsValue {
    match envelope::decode(raw) {
        Decoded::Plain(_) => JsValue::NULL,
        Decoded::Enveloped(e) => {
            let o = Object::new();
            js::set(&o, "ts", js::big(e.stamp.ts));
            js::set(&o, "writer", js::big(e.stamp.writer));
            js::set(&o, "kind", e.kind.as_u8());
            js::set(&o, "type", e.vtype.as_u8());
            js::set(&o, "format", e.format.0);
            js::set(&o, "payload", js::u8a(e.payload));
            o.into()
        }
    }
}

/// Why bytes are not an envelope (`undefined` when they are one): for diagnostics.
#[wasm_bindgen(js_name = envelopeWhyPlain)]
pub fn envelope_why_plain(raw: &[u8]) -> Option<String> {
    envelope::parse(raw).err().map(|e| e.to_string())
}

fn opt_bytes(v: &JsValue) -> Option<Vec<u8>> {
    if js::is_nullish(v) {
        None
    } else {
        js::bytes_of(v)
    }
}

/// Compare two stored copies by the winner rule: `1` when `a` is the later version, `-1` when
/// `b` is, `0` for identical copies. `null`/`undefined` is an absent copy.
#[wasm_bindgen(js_name = envelopeCompare)]
pub fn envelope_compare(a: &JsValue, b: &JsValue) -> i32 {
    match envelope::compare(opt_bytes(a).as_deref(), opt_bytes(b).as_deref()) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// The index of the winning copy among a key's replicas (`null` = absent), or `undefined`
/// when every copy is absent.
#[wasm_bindgen(js_name = envelopeWinner)]
pub fn envelope_winner(replicas: &Array) -> Option<u32> {
    let copies: Vec<Option<Vec<u8>>> = replicas.iter().map(|v| opt_bytes(&v)).collect();
    envelope::winner(copies.iter().map(|c| c.as_deref())).map(|i| i as u32)
}

/// The envelope fields of a JavaScript value: `{type, format, payload}` (see the type table
/// in the package docs).
#[wasm_bindgen(js_name = typedFromValue)]
pub fn typed_from_value(value: &JsValue) -> Result<JsValue, JsValue> {
    let t = values::typed_from_js(value)?;
    let o = Object::new();
    js::set(&o, "type", t.vtype().as_u8());
    js::set(&o, "format", t.format().0);
    js::set(&o, "payload", js::u8a(&t.encode_payload()));
    Ok(o.into())
}

/// The JavaScript value of an envelope payload of `type`/`format`; throws when the payload
/// breaks its type's rules or the format cannot be read in JavaScript (pickle, PHP).
#[wasm_bindgen(js_name = valueFromTyped)]
pub fn value_from_typed(vtype: u8, format: u8, payload: &[u8]) -> Result<JsValue, JsValue> {
    let vtype = type_of(vtype)?;
    envelope::check_fields(Kind::Value, vtype, Format(format), payload).map_err(invalid)?;
    let t = typed_payload(vtype, Format(format), payload)
        .ok_or_else(|| invalid(envelope::Invalid::Int))?;
    values::typed_to_js(t)
}

/// Encode a JavaScript value as a value envelope with this stamp.
#[wasm_bindgen(js_name = envelopeOfValue)]
pub fn envelope_of_value(value: &JsValue, ts: u64, writer: u64) -> Result<Vec<u8>, JsValue> {
    let t: Typed = values::typed_from_js(value)?;
    t.encode(Stamp::new(ts, writer)).map_err(invalid)
}

/// The hybrid logical clock of docs/envelope.md: `stamp(Date.now())` gives a timestamp later
/// than everything stamped or observed before; `observe(ts)` takes a read value's stamp into
/// account. Timestamps are `BigInt`s.
#[wasm_bindgen]
#[derive(Default)]
pub struct Hlc {
    inner: CoreHlc,
}

#[wasm_bindgen]
impl Hlc {
    /// A clock that has seen nothing.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// A timestamp for a write at wall time `wall_ms` (unix milliseconds, `Date.now()`).
    pub fn stamp(&self, wall_ms: f64) -> u64 {
        self.inner.stamp(js::ms(wall_ms))
    }

    /// See a timestamp read from a stored copy.
    pub fn observe(&self, ts: u64) {
        self.inner.observe(ts)
    }

    /// The latest timestamp stamped or observed.
    #[wasm_bindgen(getter)]
    pub fn last(&self) -> u64 {
        self.inner.last()
    }
}

/// `[ms, counter]` of a timestamp (its wall-clock part and logical counter).
#[wasm_bindgen(js_name = stampParts)]
pub fn stamp_parts(ts: u64) -> Array {
    let s = Stamp::new(ts, 0);
    [
        JsValue::from_f64(s.millis() as f64),
        JsValue::from(s.counter()),
    ]
    .into_iter()
    .collect()
}
