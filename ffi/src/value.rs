//! Typed values across the ABI: what a caller passes in (a type code, a serializer and the
//! canonical payload of the envelope's type), how it is stored (inside the envelope when the
//! client replicates; as a plain value with the flags of a [`Convention`] otherwise), and how a
//! stored value comes back out. The typing rules themselves are core's
//! ([`multiput::envelope`], [`multiput::values`]); this module only routes between them.

use multiput::compress;
use multiput::envelope::{self, Envelope, Format, Stamp, Typed, ValueType};
use multiput::replication::Versioned;
use multiput::values::{self, Convention, Plain};
use multiput::Value;

/// Raw bytes (envelope type 0).
pub const MULTIPUT_TYPE_BYTES: u8 = 0;
/// UTF-8 text (1). Passed in, the payload must be valid UTF-8.
pub const MULTIPUT_TYPE_TEXT: u8 = 1;
/// A signed 64-bit integer (2); payload: canonical ASCII decimal (`0`, `-12`; no `+`, no
/// leading zeros, no spaces).
pub const MULTIPUT_TYPE_INT: u8 = 2;
/// A float (3); payload: the 8 bytes of an IEEE-754 binary64, big-endian.
pub const MULTIPUT_TYPE_FLOAT: u8 = 3;
/// A bool (4); payload: one byte, 0 or 1.
pub const MULTIPUT_TYPE_BOOL: u8 = 4;
/// A serialized object (5); the format names the serializer and must not be 0.
pub const MULTIPUT_TYPE_SERIALIZED: u8 = 5;
/// Input only: a string of a language without a text/bytes distinction (PHP): stored as text
/// when it is valid UTF-8, else as bytes.
pub const MULTIPUT_TYPE_STRING: u8 = 16;

/// No serializer (every type but serialized).
pub const MULTIPUT_FORMAT_NONE: u8 = 0;
/// Python pickle.
pub const MULTIPUT_FORMAT_PICKLE: u8 = 1;
/// PHP `serialize()`.
pub const MULTIPUT_FORMAT_PHP_SERIALIZE: u8 = 2;
/// JSON.
pub const MULTIPUT_FORMAT_JSON: u8 = 3;

/// What went wrong with a value.
#[derive(Debug)]
pub struct BadValue(pub String);

/// A value handed in through the ABI, checked: its envelope type and format and its canonical
/// payload (borrowed from the caller).
#[derive(Debug, Clone, Copy)]
pub struct In<'a> {
    pub vtype: ValueType,
    pub format: Format,
    pub payload: &'a [u8],
}

impl<'a> In<'a> {
    /// Check a caller's type code, format and payload.
    pub fn new(type_code: u8, format: u8, payload: &'a [u8]) -> Result<In<'a>, BadValue> {
        let vtype = if type_code == MULTIPUT_TYPE_STRING {
            if std::str::from_utf8(payload).is_ok() {
                ValueType::Text
            } else {
                ValueType::Bytes
            }
        } else {
            ValueType::from_u8(type_code).ok_or_else(|| {
                BadValue(format!(
                    "unknown value type {type_code} (0 bytes, 1 text, 2 int, 3 float, 4 bool, \
                     5 serialized, 16 string)"
                ))
            })?
        };
        let format = Format(format);
        envelope::check_fields(envelope::Kind::Value, vtype, format, payload)
            .map_err(|e| BadValue(format!("value does not match its type: {e}")))?;
        Ok(In {
            vtype,
            format,
            payload,
        })
    }

    /// The typed value (copies the payload).
    pub fn typed(&self) -> Typed {
        Typed::from_envelope(&Envelope::value(
            Stamp::PLAIN,
            self.vtype,
            self.format,
            self.payload,
        ))
        .expect("fields checked in In::new")
    }
}

/// How plain (non-enveloped) values are written and read.
#[derive(Debug, Clone, Copy)]
pub struct PlainRules {
    pub convention: Convention,
    /// Compress values of at least this many bytes (0: never): as PECL does under the PHP
    /// convention, as a zlib stream with multiput's flags under multiput's (never under
    /// Python's).
    pub compress_threshold: usize,
}

impl PlainRules {
    /// The bytes and flags a plain client of the convention stores for `v`, with `user_flags`
    /// OR-ed in (PECL's `OPT_USER_FLAGS` live in bits 16..31).
    pub fn encode(&self, v: In<'_>, user_flags: u32) -> Result<(Vec<u8>, u32), BadValue> {
        let (data, flags) = if v.vtype == ValueType::Bytes
            || (v.vtype == ValueType::Text && self.convention == Convention::PHP)
        {
            (v.payload.to_vec(), 0)
        } else {
            values::encode(self.convention, &v.typed()).map_err(|e| BadValue(e.to_string()))?
        };
        let compressible = matches!(
            v.vtype,
            ValueType::Bytes | ValueType::Text | ValueType::Serialized
        );
        if compressible && self.convention == Convention::PHP {
            if let Some((z, extra)) = compress::pecl_compress(&data, self.compress_threshold) {
                return Ok((z, flags | extra | user_flags));
            }
        } else if compressible && self.convention.is_multiput() {
            if let Some((z, flags)) =
                compress::portable_compress(&data, flags, self.compress_threshold)
            {
                return Ok((z, flags | user_flags));
            }
        }
        Ok((data, flags | user_flags))
    }

    /// Read a plain value: inflated if compressed, then typed by the core's strict rules
    /// ([`values::decode_checked`]). A value that cannot be read comes out raw, with the
    /// core's explanation in `problem` (it names the likely writer and the setting to use).
    pub fn decode(&self, data: &[u8], flags: u32) -> Out {
        let bad = |e: multiput::Error| Out {
            raw: true,
            problem: Some(e.to_string()),
            ..Out::from_plain(Plain::Raw {
                data: data.to_vec(),
                flags,
            })
        };
        if let Some(inflated) =
            compress::inflate(self.convention, data, flags, compress::MAX_DECOMPRESSED)
        {
            return match inflated {
                Ok((raw, rest)) => {
                    let mut out = self.decode(&raw, rest);
                    out.flags = flags;
                    out
                }
                Err(e) => bad(values::undecodable(
                    self.convention,
                    data,
                    flags,
                    &format!("the flags say compressed, but it does not inflate ({e})"),
                )),
            };
        }
        match values::decode_checked(self.convention, data, flags) {
            Ok(t) => {
                let mut out = Out::from_plain(t.to_plain());
                out.flags = flags;
                out
            }
            Err(e) => bad(e),
        }
    }
}

/// A value on its way out: the type and canonical payload, and what was stored with it.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub vtype: u8,
    pub format: u8,
    pub payload: Vec<u8>,
    pub int_value: i64,
    pub float_value: f64,
    pub flags: u32,
    pub cas: u64,
    pub enveloped: bool,
    /// A plain value whose flags the convention does not define (the payload is the stored
    /// bytes and `flags` says what they are).
    pub raw: bool,
    /// Why a raw value could not be read (a corrupt compressed value, flags of another
    /// client's convention), if that is why: the core's message.
    pub problem: Option<String>,
}

impl Out {
    fn from_typed(t: Typed) -> Out {
        let mut o = Out {
            vtype: t.vtype().as_u8(),
            format: t.format().0,
            ..Out::default()
        };
        match t {
            Typed::Bytes(b) | Typed::Serialized { data: b, .. } => o.payload = b,
            Typed::Text(s) => o.payload = s.into_bytes(),
            Typed::Int(i) => {
                o.int_value = i;
                o.payload = i.to_string().into_bytes();
            }
            Typed::Float(f) => {
                o.float_value = f;
                o.payload = f.to_be_bytes().to_vec();
            }
            Typed::Bool(b) => {
                o.int_value = i64::from(b);
                o.payload = vec![u8::from(b)];
            }
        }
        o
    }

    fn from_plain(p: Plain) -> Out {
        match p {
            Plain::Typed(t) => Out::from_typed(t),
            Plain::Raw { data, flags } => Out {
                vtype: MULTIPUT_TYPE_BYTES,
                payload: data,
                flags,
                raw: true,
                ..Out::default()
            },
        }
    }

    /// A value read by the plain client.
    pub fn from_value(v: &Value, rules: &PlainRules) -> Out {
        let mut o = rules.decode(&v.data, v.flags);
        o.cas = v.cas.unwrap_or(0);
        o
    }

    /// A value read by the replicated client.
    pub fn from_versioned(v: &Versioned, rules: &PlainRules) -> Out {
        if !v.enveloped {
            let mut o = rules.decode(&v.data, v.flags);
            o.cas = v.version_token();
            return o;
        }
        let env = Envelope::value(v.stamp, v.value_type, v.format, &v.data);
        let mut o = match Typed::from_envelope(&env) {
            Ok(t) => Out::from_typed(t),
            // The core only returns consistent envelopes; keep the bytes if that ever changes.
            Err(_) => Out {
                vtype: v.value_type.as_u8(),
                format: v.format.0,
                payload: v.data.to_vec(),
                ..Out::default()
            },
        };
        o.enveloped = true;
        o.flags = v.flags;
        o.cas = v.version_token();
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        assert!(In::new(MULTIPUT_TYPE_INT, 0, b"12").is_ok());
        assert!(In::new(MULTIPUT_TYPE_INT, 0, b"+12").is_err());
        assert!(In::new(MULTIPUT_TYPE_TEXT, 0, b"\xff").is_err());
        assert_eq!(
            In::new(MULTIPUT_TYPE_STRING, 0, b"\xff").unwrap().vtype,
            ValueType::Bytes
        );
        assert_eq!(
            In::new(MULTIPUT_TYPE_STRING, 0, b"ok").unwrap().vtype,
            ValueType::Text
        );
        assert!(In::new(MULTIPUT_TYPE_SERIALIZED, 0, b"x").is_err());
        assert!(In::new(MULTIPUT_TYPE_FLOAT, 0, b"1.5").is_err());
        assert!(In::new(9, 0, b"").is_err());
    }

    #[test]
    fn php_plain_values_round_trip_with_pecl_flags() {
        let rules = PlainRules {
            convention: Convention::PHP,
            compress_threshold: 2000,
        };
        let cases: [(u8, u8, &[u8], u32); 5] = [
            (MULTIPUT_TYPE_STRING, 0, b"hi", 0),
            (MULTIPUT_TYPE_INT, 0, b"-5", 1),
            (MULTIPUT_TYPE_FLOAT, 0, &0.5f64.to_be_bytes(), 2),
            (MULTIPUT_TYPE_BOOL, 0, &[1], 3),
            (MULTIPUT_TYPE_SERIALIZED, 2, b"a:0:{}", 4),
        ];
        for (t, f, p, flags) in cases {
            let (data, got) = rules.encode(In::new(t, f, p).unwrap(), 0).unwrap();
            assert_eq!(got, flags);
            let out = rules.decode(&data, got);
            assert_eq!(out.payload, p);
        }
        let big = "0123456789".repeat(300);
        let (data, flags) = rules
            .encode(
                In::new(MULTIPUT_TYPE_STRING, 0, big.as_bytes()).unwrap(),
                7 << 16,
            )
            .unwrap();
        assert_eq!(flags, 0x30 | (7 << 16));
        assert!(data.len() < 1000);
        let out = rules.decode(&data, flags);
        assert_eq!(out.payload, big.as_bytes());
        assert!(!out.raw);
        let bad = rules.decode(b"\x10\0\0\0junk", 0x50);
        assert!(bad.raw && bad.problem.is_some());
    }
}
