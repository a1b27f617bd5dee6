//! multiput's own flags for plain values: the default of every binding, so that a Django app,
//! a PHP app, a Node app and a Rust program on one fleet read each other's values with their
//! type.
//!
//! The flags of pylibmc/pymemcache and of PECL memcached collide (1 is a pickle to one and an
//! int to the other, 2 an int and a double), so neither can be the common language. multiput's
//! flags use bits no other client writes, and read as harmless raw bytes in the clients that
//! do not know them:
//!
//! | bits | meaning |
//! | --- | --- |
//! | 0..7 | always 0: pylibmc, pymemcache and PECL see "bytes"/"string" and return the payload |
//! | 8..10 | the serializer of a serialized value ([`Format`] 1..7) |
//! | 11 | the payload is a zlib stream ([`ZLIB`]) |
//! | 12..14 | the [`ValueType`] (1 text .. 5 serialized) |
//! | 15 | [`MARK`]: these are multiput's flags |
//! | 16..31 | not used (PECL memcached keeps its user flags there) |
//!
//! Bytes are stored with flags 0, as every client stores them. The payloads are the ones a
//! person reading the key with `get` in a terminal understands: UTF-8 text, an integer in
//! canonical decimal (so memcached's `incr` works on it), a float in the shortest decimal that
//! reads back as the same float (`inf`, `-inf`, `NaN`), a bool as `1` or `0`, and a serialized
//! value as its serializer wrote it.

use super::TypedRef;
use crate::envelope::{Format, Typed, ValueType};

/// Bit 15: the value carries multiput's flags.
pub const MARK: u32 = 1 << 15;
/// Bit 11: the payload is a zlib stream (with its header and Adler-32 trailer).
pub const ZLIB: u32 = 1 << 11;
const TYPE_SHIFT: u32 = 12;
const FORMAT_SHIFT: u32 = 8;
/// Text.
pub const TEXT: u32 = MARK | (ValueType::Text as u32) << TYPE_SHIFT;
/// An integer.
pub const INT: u32 = MARK | (ValueType::Int as u32) << TYPE_SHIFT;
/// A float.
pub const FLOAT: u32 = MARK | (ValueType::Float as u32) << TYPE_SHIFT;
/// A bool.
pub const BOOL: u32 = MARK | (ValueType::Bool as u32) << TYPE_SHIFT;
/// A serialized value (its format in bits 8..10).
pub const SERIALIZED: u32 = MARK | (ValueType::Serialized as u32) << TYPE_SHIFT;

/// True when `flags` are multiput's: [`MARK`] set, the bits other clients type by (0..7)
/// clear. Bits 16..31 are ignored.
pub const fn is_marked(flags: u32) -> bool {
    flags & MARK != 0 && flags & 0xff == 0
}

/// The flags of a value of this type whose payload is stored as given (bytes, text,
/// serialized): `None` for int, float and bool (see [`encode`]) and for formats past 7.
pub fn flags_for(vtype: ValueType, format: Format) -> Option<u32> {
    match vtype {
        ValueType::Bytes => Some(0),
        ValueType::Text => Some(TEXT),
        ValueType::Serialized if (1..=7).contains(&format.0) => {
            Some(SERIALIZED | u32::from(format.0) << FORMAT_SHIFT)
        }
        _ => None,
    }
}

/// The payload and flags of `value`; `None` for a serialized value whose format has no
/// number here (8 and above).
pub fn encode(value: &Typed) -> Option<(Vec<u8>, u32)> {
    Some(match value {
        Typed::Bytes(b) => (b.clone(), 0),
        Typed::Text(s) => (s.as_bytes().to_vec(), TEXT),
        Typed::Int(i) => (i.to_string().into_bytes(), INT),
        Typed::Float(f) => (render_float(*f).into_bytes(), FLOAT),
        Typed::Bool(b) => (vec![if *b { b'1' } else { b'0' }], BOOL),
        Typed::Serialized { format, data } => {
            (data.clone(), flags_for(ValueType::Serialized, *format)?)
        }
    })
}

/// A float as the shortest decimal that reads back as the same float: `1.5`, `0.1`, `1e300`,
/// `-0.0`, `inf`, `-inf`, `NaN`.
pub fn render_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

/// The value of a payload with multiput's flags; `None` when the payload breaks its type's
/// rules or the flags name no type (the caller reports [`crate::Error::Undecodable`]) or the
/// payload is compressed ([`ZLIB`]: inflate it first, with [`crate::compress::inflate`]).
pub fn decode(data: &[u8], flags: u32) -> Option<TypedRef<'_>> {
    if flags & ZLIB != 0 {
        return None;
    }
    let format = ((flags >> FORMAT_SHIFT) & 0x7) as u8;
    let vtype = ValueType::from_u8(((flags >> TYPE_SHIFT) & 0x7) as u8)?;
    if (vtype == ValueType::Serialized) != (format != 0) {
        return None;
    }
    Some(match vtype {
        ValueType::Bytes => TypedRef::Bytes(data),
        ValueType::Text => TypedRef::Text(std::str::from_utf8(data).ok()?),
        ValueType::Int => TypedRef::Int(parse_int(data)?),
        ValueType::Float => TypedRef::Float(parse_float(data)?),
        ValueType::Bool => match data {
            b"1" => TypedRef::Bool(true),
            b"0" => TypedRef::Bool(false),
            _ => return None,
        },
        ValueType::Serialized => TypedRef::Serialized(Format(format), data),
    })
}

/// An integer payload: decimal, optional `-`. memcached's `incr`/`decr` may leave trailing
/// spaces (a shrinking decrement pads the old length), which are allowed.
fn parse_int(data: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(data).ok()?.trim_end_matches(' ');
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_float(data: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(data).ok()?;
    match s {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            && !s.is_empty() =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Typed) {
        let (data, flags) = encode(&v).unwrap();
        assert!(flags == 0 || is_marked(flags), "{flags:#x}");
        let back = decode(&data, flags).unwrap().to_plain();
        match (&v, back) {
            (Typed::Float(a), super::super::Plain::Typed(Typed::Float(b))) if a.is_nan() => {
                assert!(b.is_nan())
            }
            (Typed::Float(a), super::super::Plain::Typed(Typed::Float(b))) => {
                assert_eq!(a.to_bits(), b.to_bits())
            }
            (_, back) => assert_eq!(back, super::super::Plain::Typed(v.clone())),
        }
    }

    #[test]
    fn every_type_round_trips() {
        for v in [
            Typed::Bytes(vec![0, 0xff]),
            Typed::Text("héllo".into()),
            Typed::Text(String::new()),
            Typed::Int(0),
            Typed::Int(i64::MIN),
            Typed::Int(i64::MAX),
            Typed::Float(1.5),
            Typed::Float(-0.0),
            Typed::Float(0.1),
            Typed::Float(1e300),
            Typed::Float(5e-324),
            Typed::Float(f64::INFINITY),
            Typed::Float(f64::NEG_INFINITY),
            Typed::Float(f64::NAN),
            Typed::Bool(true),
            Typed::Bool(false),
            Typed::Serialized {
                format: Format::PICKLE,
                data: b"\x80\x05]\x94.".to_vec(),
            },
            Typed::Serialized {
                format: Format::JSON,
                data: b"[1]".to_vec(),
            },
            Typed::Serialized {
                format: Format::PHP_SERIALIZE,
                data: b"a:0:{}".to_vec(),
            },
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn the_numbers_are_fixed() {
        // These numbers are a wire contract shared by every binding: never renumber.
        assert_eq!(TEXT, 0x9000);
        assert_eq!(INT, 0xa000);
        assert_eq!(FLOAT, 0xb000);
        assert_eq!(BOOL, 0xc000);
        assert_eq!(
            flags_for(ValueType::Serialized, Format::PICKLE),
            Some(0xd100)
        );
        assert_eq!(
            flags_for(ValueType::Serialized, Format::PHP_SERIALIZE),
            Some(0xd200)
        );
        assert_eq!(flags_for(ValueType::Serialized, Format::JSON), Some(0xd300));
        assert_eq!(flags_for(ValueType::Serialized, Format(8)), None);
        assert_eq!(flags_for(ValueType::Int, Format::NONE), None);
        assert_eq!(encode(&Typed::Float(1.5)).unwrap().0, b"1.5");
        assert_eq!(encode(&Typed::Int(-42)).unwrap().0, b"-42");
        assert_eq!(encode(&Typed::Bool(false)).unwrap().0, b"0");
    }

    #[test]
    fn marked_means_bit_15_and_nothing_in_the_low_byte() {
        assert!(is_marked(TEXT));
        assert!(is_marked(INT | 0x1234_0000)); // PECL user flags are ignored
        assert!(!is_marked(0));
        assert!(!is_marked(MARK | 1)); // a legacy type bit: not ours
        assert!(!is_marked(16));
    }

    #[test]
    fn broken_payloads_are_refused() {
        assert_eq!(decode(b"12a", INT), None);
        assert_eq!(decode(b"", INT), None);
        assert_eq!(decode(b"+1", INT), None);
        assert_eq!(decode(b"7  ", INT), Some(TypedRef::Int(7)));
        assert_eq!(decode(b"1.5x", FLOAT), None);
        assert_eq!(decode(b"yes", BOOL), None);
        assert_eq!(decode(b"\xff", TEXT), None);
        assert_eq!(decode(b"x", SERIALIZED), None); // a serialized value needs its format
        assert_eq!(decode(b"x", MARK | 6 << 12), None); // no type 6
        assert_eq!(decode(b"x", TEXT | ZLIB), None); // inflate first
    }
}
