//! Results encoded in PHP's `serialize()` format, so that a PHP caller turns a whole multi-get
//! into an array with one `unserialize()` call instead of crossing the FFI boundary for every
//! key and field (those crossings, not the bytes, dominate FFI cost).
//!
//! - bytes and text: `s:<len>:"<bytes>";`; int: `i:<n>;`; float: `d:<shortest repr>;`
//!   (`INF`, `-INF`, `NAN`); bool: `b:0;` / `b:1;`; a miss (when asked for): `N;`.
//! - Values PHP must decode itself (PHP `serialize()` payloads, whose back-references would
//!   be renumbered if spliced into the outer array; JSON; igbinary; msgpack; anything this
//!   library cannot read) come as an object of class `Multiput\Deferred` with properties
//!   `kind` (see the `MULTIPUT_DEFER_*` constants), `data` (the bytes), `flags` and `reason`
//!   (why it cannot be read, the core's message; empty when PHP may read it), and are counted in
//!   the buffer's `deferred` field, so a caller only looks for them when there are some.
//! - Extended form (PECL `Memcached::GET_EXTENDED`):
//!   `a:3:{s:5:"value";<value>s:3:"cas";i:<cas>;s:5:"flags";i:<flags >> 16>;}`; a CAS
//!   unique above `PHP_INT_MAX` is a decimal string, as PECL returns it.

use crate::value::{Out, PlainRules, MULTIPUT_FORMAT_JSON, MULTIPUT_FORMAT_PHP_SERIALIZE};
use multiput::envelope::Format;
use multiput::values::{self, php, portable, Family};
use multiput::Value;
use std::io::Write;

/// `Multiput\Deferred::kind`: a PHP `serialize()` payload.
pub const MULTIPUT_DEFER_PHP: u8 = 1;
/// JSON.
pub const MULTIPUT_DEFER_JSON: u8 = 2;
/// igbinary (PECL flag type 5).
pub const MULTIPUT_DEFER_IGBINARY: u8 = 3;
/// msgpack (PECL flag type 7).
pub const MULTIPUT_DEFER_MSGPACK: u8 = 4;
/// A Python pickle: not readable in PHP.
pub const MULTIPUT_DEFER_PICKLE: u8 = 5;
/// Anything else: flags this library does not know, a corrupt compressed value, a private
/// serializer.
pub const MULTIPUT_DEFER_UNKNOWN: u8 = 6;

/// Append the decimal digits of `n` (the hot path of every string and int: no `fmt`, no
/// `memcpy` call for a handful of bytes).
pub fn uint(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        buf.push(d);
    }
}

/// Append a signed integer.
pub fn int(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    uint(buf, n.unsigned_abs());
}

/// Append one PHP string.
pub fn string(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(b"s:");
    uint(buf, s.len() as u64);
    buf.extend_from_slice(b":\"");
    buf.extend_from_slice(s);
    buf.extend_from_slice(b"\";");
}

/// Append an array key. (PHP's `unserialize()` turns canonical decimal string keys into int
/// keys, as PECL's getMulti does.)
pub fn key(buf: &mut Vec<u8>, k: &[u8]) {
    string(buf, k);
}

/// A value as read: undecoded from the plain client (most values are plain PHP strings, which
/// are written straight from the reply), or decoded.
pub enum Got {
    /// Read by the plain client.
    Plain(Value),
    /// Read by the replicated client, already decoded.
    Decoded(Out),
}

impl Got {
    /// The decoded value.
    pub fn into_out(self, rules: &PlainRules) -> Out {
        match self {
            Got::Plain(v) => Out::from_value(&v, rules),
            Got::Decoded(o) => o,
        }
    }
}

/// The bytes of a value read that is a PHP string as stored: a PECL string, or multiput's
/// text (PECL's type bits are 0 for both), uncompressed. `None` for anything to decode.
pub fn php_string<'a>(g: &'a Got, rules: &PlainRules) -> Option<&'a [u8]> {
    let Got::Plain(v) = g else { return None };
    let low = v.flags & 0xffff;
    let php_string = rules.convention.family() == Family::Php
        && low & (php::TYPE_MASK | php::COMPRESSED) == php::STRING
        && (low & portable::MARK == 0 || low == portable::TEXT);
    php_string.then_some(&v.data[..])
}

/// Append a value read (extended form if asked); returns true when it was deferred.
pub fn got(buf: &mut Vec<u8>, g: Got, rules: &PlainRules, extended: bool) -> bool {
    if !extended {
        // A string is written straight from the reply.
        if let Some(bytes) = php_string(&g, rules) {
            string(buf, bytes);
            return false;
        }
    }
    let out = g.into_out(rules);
    if extended {
        self::extended(buf, &out)
    } else {
        value(buf, &out)
    }
}

/// Append `out`'s value; returns true when it was deferred.
pub fn value(buf: &mut Vec<u8>, out: &Out) -> bool {
    let defer = |buf: &mut Vec<u8>, kind: u8, reason: &str| {
        buf.extend_from_slice(b"O:17:\"Multiput\\Deferred\":4:{s:4:\"kind\";");
        buf.extend_from_slice(b"i:");
        uint(buf, u64::from(kind));
        buf.extend_from_slice(b";s:4:\"data\";");
        string(buf, &out.payload);
        buf.extend_from_slice(b"s:5:\"flags\";i:");
        uint(buf, u64::from(out.flags));
        buf.extend_from_slice(b";s:6:\"reason\";");
        string(buf, reason.as_bytes());
        buf.push(b'}');
        true
    };
    if out.raw {
        let kind = if out.problem.is_some() {
            MULTIPUT_DEFER_UNKNOWN
        } else {
            match out.flags & php::TYPE_MASK {
                php::IGBINARY => MULTIPUT_DEFER_IGBINARY,
                php::MSGPACK => MULTIPUT_DEFER_MSGPACK,
                _ => MULTIPUT_DEFER_UNKNOWN,
            }
        };
        return defer(buf, kind, out.problem.as_deref().unwrap_or(""));
    }
    match out.vtype {
        2 => {
            buf.extend_from_slice(b"i:");
            int(buf, out.int_value);
            buf.push(b';');
        }
        3 => {
            let f = out.float_value;
            if f.is_nan() {
                buf.extend_from_slice(b"d:NAN;");
            } else if f.is_infinite() {
                buf.extend_from_slice(if f > 0.0 { b"d:INF;" } else { b"d:-INF;" });
            } else {
                let _ = write!(buf, "d:{f:?};");
            }
        }
        4 => buf.extend_from_slice(if out.int_value != 0 { b"b:1;" } else { b"b:0;" }),
        5 => {
            let kind = match out.format {
                MULTIPUT_FORMAT_PHP_SERIALIZE => MULTIPUT_DEFER_PHP,
                MULTIPUT_FORMAT_JSON => MULTIPUT_DEFER_JSON,
                1 => MULTIPUT_DEFER_PICKLE,
                _ => MULTIPUT_DEFER_UNKNOWN,
            };
            let reason = match kind {
                MULTIPUT_DEFER_PICKLE | MULTIPUT_DEFER_UNKNOWN => {
                    values::unreadable_serialized(Format(out.format), "PHP").to_string()
                }
                _ => String::new(),
            };
            return defer(buf, kind, &reason);
        }
        _ => string(buf, &out.payload),
    }
    false
}

/// Append `out` in PECL's extended form.
pub fn extended(buf: &mut Vec<u8>, out: &Out) -> bool {
    buf.extend_from_slice(b"a:3:{s:5:\"value\";");
    let deferred = value(buf, out);
    buf.extend_from_slice(b"s:3:\"cas\";");
    if out.cas > i64::MAX as u64 {
        string(buf, out.cas.to_string().as_bytes());
    } else {
        buf.extend_from_slice(b"i:");
        uint(buf, out.cas);
        buf.push(b';');
    }
    buf.extend_from_slice(b"s:5:\"flags\";i:");
    uint(buf, u64::from(out.flags >> 16));
    buf.extend_from_slice(b";}");
    deferred
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(o: Out) -> String {
        let mut b = Vec::new();
        value(&mut b, &o);
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn integers() {
        for n in [0i64, 7, -7, 10, 99, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            int(&mut b, n);
            assert_eq!(String::from_utf8(b).unwrap(), n.to_string());
        }
        let mut b = Vec::new();
        uint(&mut b, u64::MAX);
        assert_eq!(String::from_utf8(b).unwrap(), u64::MAX.to_string());
    }

    #[test]
    fn scalars() {
        let o = |vtype, payload: &[u8], i, f| Out {
            vtype,
            payload: payload.to_vec(),
            int_value: i,
            float_value: f,
            ..Out::default()
        };
        assert_eq!(enc(o(0, b"a\"b", 0, 0.0)), "s:3:\"a\"b\";");
        assert_eq!(enc(o(2, b"-7", -7, 0.0)), "i:-7;");
        assert_eq!(enc(o(3, b"", 0, 0.1)), "d:0.1;");
        assert_eq!(enc(o(3, b"", 0, 1e300)), "d:1e300;");
        assert_eq!(enc(o(3, b"", 0, f64::NEG_INFINITY)), "d:-INF;");
        assert_eq!(enc(o(4, b"\x01", 1, 0.0)), "b:1;");
        let d = Out {
            vtype: 5,
            format: 2,
            payload: b"a:0:{}".to_vec(),
            ..Out::default()
        };
        assert_eq!(
            enc(d),
            "O:17:\"Multiput\\Deferred\":4:{s:4:\"kind\";i:1;s:4:\"data\";s:6:\"a:0:{}\";s:5:\"flags\";i:0;s:6:\"reason\";s:0:\"\";}"
        );
        let mut b = Vec::new();
        extended(
            &mut b,
            &Out {
                cas: u64::MAX,
                flags: 3 << 16,
                ..Out::default()
            },
        );
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "a:3:{s:5:\"value\";s:0:\"\";s:3:\"cas\";s:20:\"18446744073709551615\";s:5:\"flags\";i:3;}"
        );
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p multiput-ffi --lib -- --ignored --nocapture phpser_cost`
    #[test]
    #[ignore]
    fn phpser_cost() {
        let rules = PlainRules {
            convention: multiput::values::Convention::PHP,
            compress_threshold: 0,
        };
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("bench:key:{i}").into_bytes())
            .collect();
        let n = 20_000;
        let mut spent = std::time::Duration::ZERO;
        let mut total = 0;
        for _ in 0..n {
            let vals: Vec<Got> = (0..100)
                .map(|_| {
                    Got::Plain(Value {
                        data: vec![b'v'; 100].into(),
                        flags: 0,
                        cas: None,
                        ttl: None,
                    })
                })
                .collect();
            let start = std::time::Instant::now();
            let mut buf = Vec::with_capacity(16 * 1024);
            for (k, g) in keys.iter().zip(vals) {
                key(&mut buf, k);
                got(&mut buf, g, &rules, false);
            }
            total += buf.len();
            spent += start.elapsed();
        }
        let per = spent / n;
        println!("100 values encoded in {per:?} ({total} bytes)");
    }
}
