//! Reading a plain value strictly: a value that its flags say is one thing and its bytes say is
//! another is an [`Error::Undecodable`] that names the client that probably wrote it and the
//! setting that reads it, never a wrong value.
//!
//! The flag numbers of pylibmc/pymemcache and PECL memcached collide, so a value one wrote is
//! misread by the other's rules: a PECL int (flags 1, `"42"`) is "a pickle" to pylibmc, a
//! pickled Python list (flags 1) is "the int 0" to PECL's `strtol`. [`decode_checked`] catches
//! each collision that the bytes give away; the one they cannot (flags 2 with a whole number:
//! a pymemcache int or a PECL double) reads as the reading family's type.

use super::{decode_ref, php, portable, python, Convention, Family, TypedRef};
use crate::envelope::Format;
use crate::error::Error;

/// A plain value as a binding should see it, or why it cannot be read. `data` must already be
/// inflated ([`crate::compress::inflate`]). `Ok(TypedRef::Raw)` means flags that name no type
/// any client here writes (user flags, a serializer the binding may know): bindings hand
/// those over as bytes, as pymemcache and PECL do.
pub fn decode_checked(
    convention: Convention,
    data: &[u8],
    flags: u32,
) -> Result<TypedRef<'_>, Error> {
    if portable::is_marked(flags) {
        // memcached counters are unsigned 64-bit: past i64 an int is left to the binding
        // (Python reads it as an int).
        let big_counter = flags & 0xffff == portable::INT
            && data.iter().all(|c| c.is_ascii_digit() || *c == b' ')
            && data.first().is_some_and(u8::is_ascii_digit);
        if big_counter && portable::decode(data, flags).is_none() {
            return Ok(TypedRef::Raw(data, flags));
        }
        return portable::decode(data, flags).ok_or_else(|| {
            undecodable(
                convention,
                data,
                flags,
                "its payload does not match the type multiput's flags give it (a corrupt value, or \
                 one written by a newer multiput)",
            )
        });
    }
    let t = decode_ref(convention, data, flags);
    match convention.family() {
        Family::Python => check_python(convention, data, flags, t),
        Family::Php => check_php(convention, data, flags, t),
    }
}

fn check_python<'a>(
    conv: Convention,
    data: &'a [u8],
    flags: u32,
    t: TypedRef<'a>,
) -> Result<TypedRef<'a>, Error> {
    let bad = |why: &str| Err(undecodable(conv, data, flags, why));
    match flags {
        python::PICKLE if looks_decimal(data) => {
            bad("flags 1 mean a pickle to pylibmc/pymemcache, but the payload is a decimal number")
        }
        python::PICKLE if !looks_like_pickle(data) => bad("the payload is not a pickle"),
        python::INTEGER | python::LONG if matches!(t, TypedRef::Raw(..)) => {
            if data
                .iter()
                .all(|c| c.is_ascii_digit() || *c == b'-' || *c == b' ')
            {
                Ok(t) // beyond 64 bits: the Python binding reads it as a Python int
            } else {
                bad("the flags say an integer, but the payload is not one")
            }
        }
        python::TEXT if matches!(t, TypedRef::Raw(..)) => {
            bad("the flags say UTF-8 text, but the payload is not UTF-8")
        }
        f if pecl_only(f) => bad("these flags are PECL memcached's, not pylibmc's or pymemcache's"),
        _ => Ok(t),
    }
}

fn check_php<'a>(
    conv: Convention,
    data: &'a [u8],
    flags: u32,
    t: TypedRef<'a>,
) -> Result<TypedRef<'a>, Error> {
    let bad = |why: &str| Err(undecodable(conv, data, flags, why));
    if flags & php::COMPRESSED != 0 {
        return Ok(t);
    }
    match flags & php::TYPE_MASK {
        php::LONG if !has_leading_digits(data) => {
            bad("flags 1 mean an int to PECL memcached, but the payload is not a number")
        }
        php::DOUBLE if !looks_like_double(data) => {
            bad("flags 2 mean a float to PECL memcached, but the payload is not a number")
        }
        php::SERIALIZED if looks_decimal(data) => bad(
            "flags 4 mean PHP serialize() output to PECL memcached, but the payload is a decimal \
             number",
        ),
        _ => Ok(t),
    }
}

/// The error for a value that cannot be read: what its flags mean under `convention`, `why`
/// it does not fit, the client that probably wrote it, and the setting that reads it.
pub fn undecodable(convention: Convention, data: &[u8], flags: u32, why: &str) -> Error {
    let guess = writer_guess(convention.family(), data, flags);
    Error::Undecodable {
        flags,
        detail: format!(
            "a value stored with flags {flags} cannot be read with the {} convention: {why}. {guess}",
            convention.as_str(),
        ),
    }
}

/// The error for a serialized value the reading language (`reader`: "Python", "PHP",
/// "JavaScript") has no deserializer for: a pickle read in PHP, PHP `serialize()` output read
/// in Python.
pub fn unreadable_serialized(format: Format, reader: &str) -> Error {
    let what = match format {
        Format::PICKLE => "a Python pickle (written by a Python app)".to_string(),
        Format::PHP_SERIALIZE => "PHP serialize() output (written by a PHP app)".to_string(),
        Format::JSON => "JSON".to_string(),
        f => format!("serialized with format {} (not one multiput names)", f.0),
    };
    Error::Undecodable {
        flags: 0,
        detail: format!(
            "the value is {what}, which {reader} cannot read: have the writer store \
             JSON-compatible data or plain types (text, bytes, int, float, bool), which every \
             multiput binding reads"
        ),
    }
}

/// Who probably wrote a value the `family` cannot read, and what to do.
fn writer_guess(family: Family, data: &[u8], flags: u32) -> String {
    if portable::is_marked(flags) {
        return "It has multiput's own flags (written by a multiput client)".into();
    }
    let other = match family {
        Family::Python => Family::Php,
        Family::Php => Family::Python,
    };
    let by_other = match other {
        Family::Php => matches!(flags & php::TYPE_MASK, 1..=7) || flags & php::COMPRESSED != 0,
        Family::Python => matches!(flags & !python::ZLIB, 1 | 2 | 4 | 16),
    };
    let pickle = looks_like_pickle(data) && !looks_decimal(data);
    let what = if pickle {
        "It looks like a Python pickle, written by pylibmc, pymemcache or a multiput client with \
         convention \"pylibmc\""
            .to_string()
    } else if by_other {
        format!(
            "It was probably written by {} (or a multiput client with convention \"{}\")",
            other.writers(),
            match other {
                Family::Python => "pylibmc",
                Family::Php => "pecl",
            }
        )
    } else {
        "Its writer is unknown".to_string()
    };
    let fix = match (pickle, by_other) {
        (true, _) if family == Family::Python => {
            "; the pickle does not load here: check the writer's Python classes are importable"
                .to_string()
        }
        (true, _) => "; only Python reads pickles: have the writer store JSON-compatible data or \
                      plain types (str, bytes, int, float, bool), which every binding reads"
            .to_string(),
        (false, true) => format!(
            "; read such values with convention=\"{}\", or have the writer use multiput's default \
             convention, which every binding reads",
            match other {
                Family::Python => "pylibmc",
                Family::Php => "pecl",
            }
        ),
        (false, false) => String::new(),
    };
    format!("{what}{fix}.")
}

/// Flags only PECL memcached writes (a bool, igbinary, JSON, msgpack, or its compression bits),
/// which no Python client writes.
fn pecl_only(flags: u32) -> bool {
    matches!(flags & php::TYPE_MASK, 3 | 5..=7)
        || (flags & php::COMPRESSED != 0
            && flags & (php::COMPRESSION_ZLIB | php::COMPRESSION_FASTLZ | php::COMPRESSION_ZSTD)
                != 0)
}

/// An optional `-` and digits (what pymemcache, pylibmc and PECL write for ints).
fn looks_decimal(data: &[u8]) -> bool {
    let d = data.strip_prefix(b"-").unwrap_or(data);
    !d.is_empty() && d.iter().all(u8::is_ascii_digit)
}

/// What `pickle.dumps` output starts with: `\x80` and a protocol (2 and later), or one of
/// protocol 0/1's opcodes for the values Python stores.
fn looks_like_pickle(data: &[u8]) -> bool {
    match data {
        [0x80, proto, ..] => (2..=5).contains(proto),
        [first, ..] => b"(]})NIFLSVUXTcKMJGe\x88\x89".contains(first) && data.ends_with(b"."),
        [] => false,
    }
}

/// PECL's `strtol` reads at least one digit.
fn has_leading_digits(data: &[u8]) -> bool {
    let s = data.trim_ascii_start();
    let s = s
        .strip_prefix(b"-")
        .or_else(|| s.strip_prefix(b"+"))
        .unwrap_or(s);
    s.first().is_some_and(u8::is_ascii_digit)
}

/// A PECL double: `Infinity`, `-Infinity`, `NaN`, or text that starts like a decimal number.
fn looks_like_double(data: &[u8]) -> bool {
    if matches!(data, b"Infinity" | b"-Infinity" | b"NaN") {
        return true;
    }
    let s = data.trim_ascii_start();
    let s = s
        .strip_prefix(b"-")
        .or_else(|| s.strip_prefix(b"+"))
        .unwrap_or(s);
    match s {
        [b'.', d, ..] => d.is_ascii_digit(),
        [d, ..] => d.is_ascii_digit(),
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Typed};
    use super::*;

    fn kind(r: Result<TypedRef<'_>, Error>) -> String {
        match r {
            Ok(t) => format!("{t:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn each_collision_is_an_error_naming_the_writer() {
        let py = Convention::multiput(Family::Python);
        let php = Convention::multiput(Family::Php);
        // A PECL int read by Python: not a pickle.
        let e = kind(decode_checked(py, b"42", 1));
        assert!(
            e.contains("PECL memcached") && e.contains("convention=\"pecl\""),
            "{e}"
        );
        // A PECL float read by Python.
        let e = kind(decode_checked(py, b"1.5", 2));
        assert!(e.contains("PECL memcached"), "{e}");
        // A PECL bool (3) and serialized array (4) read by Python.
        assert!(kind(decode_checked(py, b"1", 3)).contains("PECL"));
        assert!(kind(decode_checked(py, b"a:0:{}", 4)).starts_with("error"));
        // A pickled list read by PHP: not "the int 0".
        let e = kind(decode_checked(php, b"\x80\x04]\x94.", 1));
        assert!(e.contains("pickle") && e.contains("JSON"), "{e}");
        // A pylibmc long (4) read by PHP: not PHP serialize() output.
        let e = kind(decode_checked(php, b"42", 4));
        assert!(e.contains("pylibmc"), "{e}");
        // A corrupt multiput value.
        let e = kind(decode_checked(py, b"x", portable::INT));
        assert!(e.contains("multiput"), "{e}");
    }

    #[test]
    fn what_each_writes_reads_back_in_its_own_family() {
        for (conv, v) in [
            (Convention::PYTHON, Typed::Int(7)),
            (Convention::PYTHON, Typed::Float(1.5)),
            (Convention::PYTHON, Typed::Text("é".into())),
            (Convention::PHP, Typed::Int(-7)),
            (Convention::PHP, Typed::Float(0.5)),
            (Convention::PHP, Typed::Bool(false)),
            (Convention::PHP, Typed::Bool(true)),
        ] {
            let (data, flags) = encode(conv, &v).unwrap();
            let t = decode_checked(conv, &data, flags).unwrap();
            assert_eq!(t.to_plain(), super::super::Plain::Typed(v), "{conv}");
        }
        // Big Python ints are left to the Python binding.
        let big = b"123456789012345678901234567890";
        assert!(matches!(
            decode_checked(Convention::PYTHON, big, 2),
            Ok(TypedRef::Raw(..))
        ));
        // Unknown user flags are bytes, as pymemcache and PECL return them.
        assert!(matches!(
            decode_checked(Convention::PYTHON, b"x", 1 << 20),
            Ok(TypedRef::Raw(..))
        ));
    }
}
