//! Value typing for plain (non-enveloped) values: how a typed value ([`Typed`]) becomes the
//! `(bytes, flags)` pair stored in memcached, and back.
//!
//! Replicated values carry their type in the envelope ([`crate::envelope`]) and are stored with
//! flags 0. Plain values carry it in the memcached `flags` field. By default every binding
//! writes multiput's own flags ([`portable`]), which every binding reads with the value's type;
//! values written by pylibmc, pymemcache or PECL memcached are read by their ecosystem's
//! numbers, and a binding writes those numbers when told to ([`Convention`]), for keys that
//! apps still on those clients read. A value whose flags and bytes disagree is an
//! [`crate::Error::Undecodable`] naming the likely writer ([`check`]). The rules live here
//! once, so every binding (Python, PHP, Node, Rust) agrees on them; docs/interop.md has the
//! user's view.
//!
//! | [`Convention`] | bytes | text | int | float | bool | serialized |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | multiput ([`portable`], the default) | 0 | `0x9000`, UTF-8 | `0xA000`, decimal | `0xB000`, shortest decimal | `0xC000`, `1`/`0` | `0xD000` + format << 8 |
//! | [`Convention::PYTHON`] (pymemcache `python_memcache_serializer`, pylibmc) | 0 | 16, UTF-8 | 2, decimal | 1, pickle | 1, pickle | 1, pickle |
//! | [`Convention::PHP`] (PECL memcached) | 0 (string) | 0 (string) | 1, decimal | 2, `%.17g`-like shortest | 3, `"1"` / `""` | 4 `serialize()`, 6 JSON |
//!
//! Details that matter for compatibility:
//!
//! - **Python.** pymemcache writes `bytes` with 0, `str` with 16 ([`python::TEXT`]), `int` as
//!   ASCII decimal with 2 ([`python::INTEGER`]) and pickles everything else (1,
//!   [`python::PICKLE`]), `bool` and `float` included. pylibmc 1.6 writes `int` with 4
//!   ([`python::LONG`]) and `bool` as `"1"`/`"0"` with 2; both libraries read 2 and 4 as
//!   integers, 16 as text and 1 as pickle, so writing what pymemcache writes is read back
//!   identically by both. A float or bool is written as the smallest pickle of it (protocol 2:
//!   `80 02 47 <f64 big-endian> 2e` for a float, `80 02 88 2e` / `80 02 89 2e` for a bool),
//!   which `pickle.loads` in both libraries turns back into the float or bool; [`decode`]
//!   recognises those small pickles (with or without a protocol-4 frame) so that non-Python
//!   bindings read Python floats and bools too. Any other pickle is
//!   [`Typed::Serialized`] with [`Format::PICKLE`], for the Python binding to unpickle.
//!   Flag 8 ([`python::ZLIB`], pylibmc's and pymemcache's `CompressedSerde` compression) is
//!   not decompressed by [`decode`] (such values decode as [`Plain::Raw`]): inflate them
//!   first with [`crate::compress::inflate`].
//! - **PHP.** PECL memcached keeps the type in the low 4 bits (0 string, 1 long, 2 double,
//!   3 bool, 4 PHP `serialize()`, 5 igbinary, 6 JSON, 7 msgpack), its own flags in bits 4..15
//!   (bit 4 = compressed, bit 5 = zlib, bit 6 = fastlz, bit 7 = zstd) and user flags in bits
//!   16..31. Longs are decimal (read back with `strtol`: leading blanks, trailing garbage and
//!   overflow tolerated); doubles are David Gay's shortest round-trip digits (`g_fmt`: `0.5` is
//!   `.5`, `1e25` is `1e+25`, `1e-5` is `1e-05`, and `Infinity`, `-Infinity`, `NaN`); bools are
//!   `"1"` and `""`. Text has no type of its own in PHP: text and bytes are both written as
//!   strings (0) and read back as [`Typed::Bytes`]. Compressed values decode as
//!   [`Plain::Raw`]; [`crate::compress`] inflates them (zlib and fastlz) and compresses
//!   as PECL does.
//!
//! Decoding never fails: flags a convention does not define, and payloads that do not parse
//! under their flags, come back as [`Plain::Raw`] with the flags, for the binding to handle
//! or hand over as bytes.

use crate::envelope::{Format, Typed, ValueType};
use std::fmt;

pub mod check;
pub mod portable;

pub use check::{decode_checked, undecodable, unreadable_serialized};

/// The flag numbers of the ecosystems multiput shares keys with. Values without multiput's own
/// flags ([`portable`]) are read by one of them; a client of a legacy [`Convention`] also
/// writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// pylibmc and pymemcache (`python_memcache_serializer`): 0 bytes, 1 pickle, 2 int,
    /// 4 long, 8 zlib, 16 text.
    #[default]
    Python,
    /// PECL memcached (php-memcached): type in the low 4 bits (0 string, 1 long, 2 double,
    /// 3 bool, 4 serialized, 5 igbinary, 6 JSON, 7 msgpack), bit 4 compressed.
    Php,
}

impl Family {
    /// `"python"` or `"php"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Python => "python",
            Family::Php => "php",
        }
    }

    /// The clients that write this family's flags, for messages.
    pub fn writers(self) -> &'static str {
        match self {
            Family::Python => "pylibmc/pymemcache",
            Family::Php => "PECL memcached",
        }
    }
}

/// How a client writes plain values and reads those written without multiput's flags.
///
/// - [`Convention::multiput`] (every binding's default): values are written with multiput's
///   own flags ([`portable`]), which every multiput binding reads with their type (bytes,
///   text, int, float, bool; structured data as JSON or a language-tagged serialization that
///   other languages refuse with [`crate::Error::Undecodable`]). Values without those flags
///   (written by pylibmc, pymemcache or PECL memcached) are read by the `family`'s numbers,
///   by default the binding's own ecosystem.
/// - [`Convention::PYTHON`] and [`Convention::PHP`] (`convention="pylibmc"`, `"pecl"`): values
///   are written exactly as pylibmc/pymemcache or PECL memcached write them, for a fleet where
///   apps still on those clients read the same keys. Values with multiput's flags are still
///   read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Convention {
    family: Family,
    portable: bool,
}

impl Default for Convention {
    fn default() -> Convention {
        Convention::multiput(Family::Python)
    }
}

impl Convention {
    /// Write as pylibmc and pymemcache do (and read their values).
    pub const PYTHON: Convention = Convention {
        family: Family::Python,
        portable: false,
    };
    /// Write as PECL memcached does (and read its values).
    pub const PHP: Convention = Convention {
        family: Family::Php,
        portable: false,
    };

    /// multiput's own flags, reading values without them as `family` writes them.
    pub const fn multiput(family: Family) -> Convention {
        Convention {
            family,
            portable: true,
        }
    }

    /// Whose numbers values without multiput's flags are read by (and, for a legacy
    /// convention, written with).
    pub const fn family(self) -> Family {
        self.family
    }

    /// True when values are written with multiput's own flags.
    pub const fn is_multiput(self) -> bool {
        self.portable
    }

    /// `"multiput"`, `"python"` or `"php"`.
    pub fn as_str(self) -> &'static str {
        if self.portable {
            "multiput"
        } else {
            self.family.as_str()
        }
    }

    /// The setting as every binding takes it: `multiput` (also `portable`, or empty: the
    /// default, reading other clients' values as `native` writes them), `python` (also
    /// `pylibmc`, `pymemcache`) or `php` (also `pecl`, `php-memcached`), any case.
    pub fn parse(s: &str, native: Family) -> Result<Convention, crate::Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "multiput" | "portable" | "default" => Ok(Convention::multiput(native)),
            "python" | "pylibmc" | "pymemcache" => Ok(Convention::PYTHON),
            "php" | "pecl" | "php-memcached" => Ok(Convention::PHP),
            _ => Err(crate::Error::Config(format!(
                "unknown value convention {s:?}: expected \"multiput\" (the default: every \
                 multiput binding reads the values with their type), \"pylibmc\" (pylibmc and \
                 pymemcache flags) or \"pecl\" (PECL memcached flags)"
            ))),
        }
    }
}

impl std::str::FromStr for Convention {
    type Err = crate::Error;

    /// [`Convention::parse`] with Python as the family of values without multiput's flags.
    fn from_str(s: &str) -> Result<Convention, crate::Error> {
        Convention::parse(s, Family::Python)
    }
}

impl fmt::Display for Convention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// pylibmc's and pymemcache's flag numbers.
pub mod python {
    /// Raw bytes.
    pub const BYTES: u32 = 0;
    /// A pickle (`pickle.dumps`).
    pub const PICKLE: u32 = 1 << 0;
    /// An integer as ASCII decimal (pymemcache's `int`, pylibmc's `bool`).
    pub const INTEGER: u32 = 1 << 1;
    /// An integer as ASCII decimal (pylibmc's `int`, Python 2's `long`).
    pub const LONG: u32 = 1 << 2;
    /// zlib-compressed payload (pylibmc `min_compress_len`, pymemcache `CompressedSerde`).
    pub const ZLIB: u32 = 1 << 3;
    /// UTF-8 text.
    pub const TEXT: u32 = 1 << 4;
}

/// PECL memcached (php-memcached 3.x) flag layout.
pub mod php {
    /// Mask of the type field (low 4 bits).
    pub const TYPE_MASK: u32 = 0xf;
    /// A PHP string.
    pub const STRING: u32 = 0;
    /// A PHP int as ASCII decimal.
    pub const LONG: u32 = 1;
    /// A PHP float as `g_fmt` shortest digits.
    pub const DOUBLE: u32 = 2;
    /// A PHP bool: `"1"` or `""`.
    pub const BOOL: u32 = 3;
    /// PHP `serialize()` output.
    pub const SERIALIZED: u32 = 4;
    /// igbinary output.
    pub const IGBINARY: u32 = 5;
    /// JSON (`Memcached::SERIALIZER_JSON`).
    pub const JSON: u32 = 6;
    /// msgpack output.
    pub const MSGPACK: u32 = 7;
    /// Compressed payload (internal flag bit 0, stored at bit 4).
    pub const COMPRESSED: u32 = 1 << 4;
    /// Compressed with zlib (internal flag bit 1).
    pub const COMPRESSION_ZLIB: u32 = 1 << 5;
    /// Compressed with fastlz (internal flag bit 2).
    pub const COMPRESSION_FASTLZ: u32 = 1 << 6;
    /// Compressed with zstd (internal flag bit 3).
    pub const COMPRESSION_ZSTD: u32 = 1 << 7;
    /// Mask of the user flags (`Memcached::OPT_USER_FLAGS`), bits 16..31.
    pub const USER_MASK: u32 = 0xffff_0000;
}

/// A plain value as a binding should see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    /// A value of a type the convention defines.
    Typed(Typed),
    /// Flags the convention does not define here (compressed, an unknown serializer, user
    /// bits), or a payload that does not parse under its flags: the stored bytes as they are,
    /// with the flags.
    Raw {
        /// The stored bytes.
        data: Vec<u8>,
        /// The memcached flags stored with them.
        flags: u32,
    },
}

/// Why a typed value cannot be written as a plain value of a convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrepresentable {
    /// The convention.
    pub convention: Convention,
    /// The serializer that has no flag number there.
    pub format: Format,
}

impl fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a value serialized with format {} has no {} flags; write it enveloped (replicated) or \
             serialize it with the convention's own serializer",
            self.format.0, self.convention
        )
    }
}

impl std::error::Error for Unrepresentable {}

/// The `(payload, flags)` a plain client of `convention` stores for `value`.
///
/// Fails only for a [`Typed::Serialized`] whose format the convention has no flag for
/// (Python: anything but pickle; PHP: anything but `serialize()` and JSON).
pub fn encode(convention: Convention, value: &Typed) -> Result<(Vec<u8>, u32), Unrepresentable> {
    let unrepresentable = |format| Unrepresentable { convention, format };
    if convention.is_multiput() {
        return portable::encode(value).ok_or_else(|| unrepresentable(value.format()));
    }
    Ok(match convention.family() {
        Family::Python => match value {
            Typed::Bytes(b) => (b.clone(), python::BYTES),
            Typed::Text(s) => (s.as_bytes().to_vec(), python::TEXT),
            Typed::Int(i) => (render_int(*i).into_bytes(), python::INTEGER),
            Typed::Float(f) => (pickle_float(*f).to_vec(), python::PICKLE),
            Typed::Bool(b) => (pickle_bool(*b).to_vec(), python::PICKLE),
            Typed::Serialized { format, data } if *format == Format::PICKLE => {
                (data.clone(), python::PICKLE)
            }
            Typed::Serialized { format, .. } => return Err(unrepresentable(*format)),
        },
        Family::Php => match value {
            Typed::Bytes(b) => (b.clone(), php::STRING),
            Typed::Text(s) => (s.as_bytes().to_vec(), php::STRING),
            Typed::Int(i) => (render_int(*i).into_bytes(), php::LONG),
            Typed::Float(f) => (render_php_double(*f).into_bytes(), php::DOUBLE),
            Typed::Bool(b) => (render_php_bool(*b).to_vec(), php::BOOL),
            Typed::Serialized { format, data } if *format == Format::PHP_SERIALIZE => {
                (data.clone(), php::SERIALIZED)
            }
            Typed::Serialized { format, data } if *format == Format::JSON => {
                (data.clone(), php::JSON)
            }
            Typed::Serialized { format, .. } => return Err(unrepresentable(*format)),
        },
    })
}

/// What a plain value stored with `flags` means under `convention`. Never fails.
pub fn decode(convention: Convention, data: &[u8], flags: u32) -> Plain {
    decode_ref(convention, data, flags).to_plain()
}

/// A typed value that borrows its bytes from the stored value: what [`decode_ref`] and
/// [`from_versioned`] return, so that a binding can build its own objects without an extra
/// copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypedRef<'a> {
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// UTF-8 text.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// Serialized bytes and their serializer.
    Serialized(Format, &'a [u8]),
    /// A value of no known type: the stored bytes and flags ([`Plain::Raw`]).
    Raw(&'a [u8], u32),
}

impl TypedRef<'_> {
    /// The owned form.
    pub fn to_plain(self) -> Plain {
        Plain::Typed(match self {
            TypedRef::Bytes(b) => Typed::Bytes(b.to_vec()),
            TypedRef::Text(s) => Typed::Text(s.to_owned()),
            TypedRef::Int(i) => Typed::Int(i),
            TypedRef::Float(f) => Typed::Float(f),
            TypedRef::Bool(b) => Typed::Bool(b),
            TypedRef::Serialized(format, data) => Typed::Serialized {
                format,
                data: data.to_vec(),
            },
            TypedRef::Raw(data, flags) => {
                return Plain::Raw {
                    data: data.to_vec(),
                    flags,
                }
            }
        })
    }
}

/// [`decode`] without copying the bytes.
pub fn decode_ref(convention: Convention, data: &[u8], flags: u32) -> TypedRef<'_> {
    let typed = if portable::is_marked(flags) {
        portable::decode(data, flags)
    } else {
        match convention.family() {
            Family::Python => decode_python(data, flags),
            Family::Php => decode_php(data, flags),
        }
    };
    typed.unwrap_or(TypedRef::Raw(data, flags))
}

/// What a value read through a replicated client means: the envelope's type for an enveloped
/// value, the convention's flags for a plain one (written by a plain client).
pub fn from_versioned(convention: Convention, v: &crate::replication::Versioned) -> TypedRef<'_> {
    if !v.enveloped {
        return decode_ref(convention, &v.data, v.flags);
    }
    typed_payload(v.value_type, v.format, &v.data).unwrap_or(TypedRef::Raw(&v.data, v.flags))
}

/// The typed view of an envelope payload (`None` when it breaks its type's rules, which
/// [`crate::envelope::decode`] never lets through).
pub fn typed_payload(vtype: ValueType, format: Format, p: &[u8]) -> Option<TypedRef<'_>> {
    Some(match vtype {
        ValueType::Bytes => TypedRef::Bytes(p),
        ValueType::Text => TypedRef::Text(std::str::from_utf8(p).ok()?),
        ValueType::Int => TypedRef::Int(std::str::from_utf8(p).ok()?.parse().ok()?),
        ValueType::Float => TypedRef::Float(f64::from_be_bytes(p.try_into().ok()?)),
        ValueType::Bool => match p {
            [0] => TypedRef::Bool(false),
            [1] => TypedRef::Bool(true),
            _ => return None,
        },
        ValueType::Serialized => TypedRef::Serialized(format, p),
    })
}

/// The flags a plain client of `convention` stores with a value of this type whose plain
/// payload is the typed payload itself (bytes, text, serialized), so a binding can store the
/// caller's buffer without copying it. `None` for int, float and bool, whose plain payload
/// differs (use [`encode`]), and for a serializer the convention has no flag for.
pub fn flags_for(convention: Convention, vtype: ValueType, format: Format) -> Option<u32> {
    if convention.is_multiput() {
        return portable::flags_for(vtype, format);
    }
    match (convention.family(), vtype) {
        (Family::Python, ValueType::Bytes) => Some(python::BYTES),
        (Family::Python, ValueType::Text) => Some(python::TEXT),
        (Family::Python, ValueType::Serialized) if format == Format::PICKLE => Some(python::PICKLE),
        (Family::Php, ValueType::Bytes | ValueType::Text) => Some(php::STRING),
        (Family::Php, ValueType::Serialized) if format == Format::PHP_SERIALIZE => {
            Some(php::SERIALIZED)
        }
        (Family::Php, ValueType::Serialized) if format == Format::JSON => Some(php::JSON),
        _ => None,
    }
}

fn decode_python(data: &[u8], flags: u32) -> Option<TypedRef<'_>> {
    // pymemcache tests the bits in this order (text, integer, long, pickle); pylibmc requires
    // exactly one type bit. They agree on every value either of them writes.
    if flags & python::ZLIB != 0 {
        return None;
    }
    if flags == python::BYTES {
        return Some(TypedRef::Bytes(data));
    }
    if flags & python::TEXT != 0 {
        return std::str::from_utf8(data).ok().map(TypedRef::Text);
    }
    if flags & (python::INTEGER | python::LONG) != 0 {
        return parse_python_int(data).map(TypedRef::Int);
    }
    if flags & python::PICKLE != 0 {
        return Some(small_pickle(data).unwrap_or(TypedRef::Serialized(Format::PICKLE, data)));
    }
    None
}

fn decode_php(data: &[u8], flags: u32) -> Option<TypedRef<'_>> {
    if flags & php::COMPRESSED != 0 {
        return None;
    }
    Some(match flags & php::TYPE_MASK {
        php::STRING => TypedRef::Bytes(data),
        php::LONG => TypedRef::Int(parse_php_long(data)),
        php::DOUBLE => TypedRef::Float(parse_php_double(data)?),
        php::BOOL => TypedRef::Bool(parse_php_bool(data)),
        php::SERIALIZED => TypedRef::Serialized(Format::PHP_SERIALIZE, data),
        php::JSON => TypedRef::Serialized(Format::JSON, data),
        _ => return None,
    })
}

/// An integer as every ecosystem writes it: ASCII decimal, `-` for negatives.
pub fn render_int(i: i64) -> String {
    i.to_string()
}

/// The smallest pickle of a float (protocol 2): `80 02 'G' <binary64 big-endian> '.'`.
pub fn pickle_float(f: f64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..3].copy_from_slice(&[0x80, 0x02, b'G']);
    out[3..11].copy_from_slice(&f.to_be_bytes());
    out[11] = b'.';
    out
}

/// The smallest pickle of a bool (protocol 2): `80 02 88 '.'` (True) or `80 02 89 '.'`.
pub fn pickle_bool(b: bool) -> [u8; 4] {
    [0x80, 0x02, if b { 0x88 } else { 0x89 }, b'.']
}

/// Recognise a pickle that holds only a float, a bool or a small int (what `pickle.dumps`
/// returns for them with protocol 2 or later, with or without a protocol-4 frame).
fn small_pickle(p: &[u8]) -> Option<TypedRef<'static>> {
    let p = match p {
        [0x80, proto, rest @ ..] if *proto >= 2 => rest,
        _ => return None,
    };
    // FRAME opcode (protocol 4+): 0x95 and an 8-byte little-endian length of the rest.
    let p = match p {
        [0x95, rest @ ..] if rest.len() >= 8 => {
            let len = u64::from_le_bytes(rest[..8].try_into().ok()?);
            let body = &rest[8..];
            if len != body.len() as u64 {
                return None;
            }
            body
        }
        _ => p,
    };
    let (value, rest) = match p {
        [b'G', rest @ ..] if rest.len() >= 8 => (
            TypedRef::Float(f64::from_be_bytes(rest[..8].try_into().ok()?)),
            &rest[8..],
        ),
        [0x88, rest @ ..] => (TypedRef::Bool(true), rest),
        [0x89, rest @ ..] => (TypedRef::Bool(false), rest),
        [b'K', n, rest @ ..] => (TypedRef::Int(i64::from(*n)), rest),
        [b'M', a, b, rest @ ..] => (TypedRef::Int(i64::from(u16::from_le_bytes([*a, *b]))), rest),
        [b'J', a, b, c, d, rest @ ..] => (
            TypedRef::Int(i64::from(i32::from_le_bytes([*a, *b, *c, *d]))),
            rest,
        ),
        _ => return None,
    };
    (rest == b".").then_some(value)
}

/// Python's `int(bytes)` for what pymemcache and pylibmc store: optional ASCII whitespace
/// around (memcached pads a decremented counter with spaces), an optional sign, digits
/// (`_` between digits allowed, as `int()` does). `None` when it is not an integer or does not
/// fit an i64.
pub fn parse_python_int(data: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(data)
        .ok()?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let b = digits.as_bytes();
    if b.is_empty() || b[0] == b'_' || b[b.len() - 1] == b'_' || digits.contains("__") {
        return None;
    }
    let mut v: i128 = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                v = v * 10 + i128::from(c - b'0');
                if v > i128::from(i64::MAX) + 1 {
                    return None;
                }
            }
            b'_' => {}
            _ => return None,
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// PHP's `strtol(payload, NULL, 10)`: leading whitespace, an optional sign, then digits up to
/// the first non-digit; 0 when there are none; saturates at the i64 bounds.
pub fn parse_php_long(data: &[u8]) -> i64 {
    let mut i = 0;
    while i < data.len() && matches!(data[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < data.len() && (data[i] == b'-' || data[i] == b'+') {
        neg = data[i] == b'-';
        i += 1;
    }
    let mut v: i128 = 0;
    while i < data.len() && data[i].is_ascii_digit() {
        v = (v * 10 + i128::from(data[i] - b'0')).min(i128::from(i64::MAX) + 1);
        i += 1;
    }
    let v = if neg { -v } else { v };
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A PHP bool as PECL memcached writes it: `"1"` or `""`.
pub fn render_php_bool(b: bool) -> &'static [u8] {
    if b {
        b"1"
    } else {
        b""
    }
}

/// PECL memcached's bool reading: true when the payload starts with `1`.
pub fn parse_php_bool(data: &[u8]) -> bool {
    data.first() == Some(&b'1')
}

/// A double as PECL memcached writes it (`php_memcached_g_fmt`, David Gay's `g_fmt`): the
/// shortest digits that read back as the same double; plain notation unless the decimal
/// exponent is below -4 or more than 5 past the digits; no leading `0` before the point
/// (`.5`); an exponent with a sign and at least two digits (`1e+25`, `1.5e-07`); `Infinity`,
/// `-Infinity` and `NaN`.
pub fn render_php_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like dtoa mode 0: "1.2345e-5".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let nd = digits.len() as i32;
    let decpt = exp + 1; // position of the decimal point relative to the digits
    if decpt <= -4 || decpt > nd + 5 {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", e.abs()));
    } else if decpt <= 0 {
        out.push('.');
        for _ in decpt..0 {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt >= nd {
        out.push_str(&digits);
        for _ in nd..decpt {
            out.push('0');
        }
    } else {
        let (int_part, frac) = digits.split_at(decpt as usize);
        out.push_str(int_part);
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// PECL memcached's double reading: `Infinity`, `-Infinity`, `NaN`, else `zend_strtod` (the
/// longest prefix that is a decimal number; 0 when there is none). `None` only for bytes that
/// are not ASCII text at all.
pub fn parse_php_double(data: &[u8]) -> Option<f64> {
    match data {
        b"Infinity" => return Some(f64::INFINITY),
        b"-Infinity" => return Some(f64::NEG_INFINITY),
        b"NaN" => return Some(f64::NAN),
        _ => {}
    }
    let s = std::str::from_utf8(data).ok()?;
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    // Longest prefix of the form [+-]digits[.digits][e[+-]digits].
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start_digits = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == start_digits || (i == start_digits + 1 && b[start_digits] == b'.') {
        return Some(0.0);
    }
    let mantissa_end = i;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            i = j;
        }
    }
    let end = if i > mantissa_end { i } else { mantissa_end };
    s[..end].parse::<f64>().ok().or(Some(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(v: &Typed) -> (Vec<u8>, u32) {
        encode(Convention::PYTHON, v).unwrap()
    }

    fn php(v: &Typed) -> (Vec<u8>, u32) {
        encode(Convention::PHP, v).unwrap()
    }

    #[test]
    fn python_flags_are_pymemcaches() {
        assert_eq!(py(&Typed::Bytes(b"ab".to_vec())), (b"ab".to_vec(), 0));
        assert_eq!(py(&Typed::Text("é".into())), ("é".as_bytes().to_vec(), 16));
        assert_eq!(py(&Typed::Int(-42)), (b"-42".to_vec(), 2));
        assert_eq!(
            py(&Typed::Int(i64::MIN)).0,
            b"-9223372036854775808".to_vec()
        );
        // pickle.dumps(1.5, protocol=2) and pickle.dumps(True, protocol=2)
        assert_eq!(
            py(&Typed::Float(1.5)),
            (b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.".to_vec(), 1)
        );
        assert_eq!(py(&Typed::Bool(true)), (b"\x80\x02\x88.".to_vec(), 1));
        assert_eq!(py(&Typed::Bool(false)), (b"\x80\x02\x89.".to_vec(), 1));
        let pickled = Typed::Serialized {
            format: Format::PICKLE,
            data: b"\x80\x05]\x94.".to_vec(),
        };
        assert_eq!(py(&pickled), (b"\x80\x05]\x94.".to_vec(), 1));
        let json = Typed::Serialized {
            format: Format::JSON,
            data: b"[]".to_vec(),
        };
        let err = encode(Convention::PYTHON, &json).unwrap_err();
        assert_eq!(err.format, Format::JSON);
        assert!(err.to_string().contains("no python flags"));
    }

    #[test]
    fn python_round_trips() {
        for v in [
            Typed::Bytes(vec![0, 255, 10]),
            Typed::Bytes(vec![]),
            Typed::Text(String::new()),
            Typed::Text("Iñtërnâtiônàlizætiøn".into()),
            Typed::Int(0),
            Typed::Int(i64::MAX),
            Typed::Int(i64::MIN),
            Typed::Float(-0.0),
            Typed::Float(f64::INFINITY),
            Typed::Float(1e300),
            Typed::Bool(true),
            Typed::Bool(false),
        ] {
            let (data, flags) = py(&v);
            assert_eq!(
                decode(Convention::PYTHON, &data, flags),
                Plain::Typed(v.clone()),
                "{v:?}"
            );
        }
    }

    #[test]
    fn python_reads_what_pylibmc_and_pymemcache_write() {
        // pylibmc: int with LONG (4), bool as "1"/"0" with INTEGER (2).
        assert_eq!(
            decode(Convention::PYTHON, b"7", 4),
            Plain::Typed(Typed::Int(7))
        );
        assert_eq!(
            decode(Convention::PYTHON, b"1", 2),
            Plain::Typed(Typed::Int(1))
        );
        // memcached pads a decremented counter with spaces: "10" decr 1 -> "9 ".
        assert_eq!(
            decode(Convention::PYTHON, b"9 ", 2),
            Plain::Typed(Typed::Int(9))
        );
        // Protocol-5 pickles with a frame, as pickle.dumps(x, 5) writes them.
        let f = b"\x80\x05\x95\n\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.";
        assert_eq!(
            decode(Convention::PYTHON, f, 1),
            Plain::Typed(Typed::Float(1.5))
        );
        assert_eq!(
            decode(Convention::PYTHON, b"\x80\x05\x88.", 1),
            Plain::Typed(Typed::Bool(true))
        );
        assert_eq!(
            decode(Convention::PYTHON, b"\x80\x04K\x07.", 1),
            Plain::Typed(Typed::Int(7))
        );
        assert_eq!(
            decode(Convention::PYTHON, b"\x80\x04J\xff\xff\xff\xff.", 1),
            Plain::Typed(Typed::Int(-1))
        );
        // Anything else pickled is left to the Python binding.
        let list = b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.";
        assert_eq!(
            decode(Convention::PYTHON, list, 1),
            Plain::Typed(Typed::Serialized {
                format: Format::PICKLE,
                data: list.to_vec()
            })
        );
        // A frame whose length is wrong is not a small pickle.
        let bad = b"\x80\x05\x95\x09\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.";
        assert!(matches!(
            decode(Convention::PYTHON, bad, 1),
            Plain::Typed(Typed::Serialized { .. })
        ));
    }

    #[test]
    fn python_unknowns_are_raw() {
        // Compressed, undefined bits, text that is not UTF-8, an int out of i64 range.
        for (data, flags) in [
            (&b"x\x9c"[..], 8u32),
            (&b"x\x9c"[..], 1 | 8),
            (&b"abc"[..], 64),
            (&b"\xff"[..], 16),
            (&b"99999999999999999999"[..], 2),
            (&b"1.5"[..], 2),
            (&b""[..], 4),
        ] {
            assert_eq!(
                decode(Convention::PYTHON, data, flags),
                Plain::Raw {
                    data: data.to_vec(),
                    flags
                },
                "{data:?} {flags}"
            );
        }
    }

    #[test]
    fn python_int_parsing_matches_int() {
        assert_eq!(parse_python_int(b" +12 \r\n"), Some(12));
        assert_eq!(parse_python_int(b"1_000"), Some(1000));
        assert_eq!(parse_python_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_python_int(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-", b"_1", b"1_", b"1__0", b"0x10", b"1 2"] {
            assert_eq!(parse_python_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn php_flags_are_pecl_memcacheds() {
        assert_eq!(php(&Typed::Bytes(b"ab".to_vec())), (b"ab".to_vec(), 0));
        assert_eq!(php(&Typed::Text("ab".into())), (b"ab".to_vec(), 0));
        assert_eq!(php(&Typed::Int(-5)), (b"-5".to_vec(), 1));
        assert_eq!(php(&Typed::Float(0.5)), (b".5".to_vec(), 2));
        assert_eq!(php(&Typed::Bool(true)), (b"1".to_vec(), 3));
        assert_eq!(php(&Typed::Bool(false)), (b"".to_vec(), 3));
        let ser = Typed::Serialized {
            format: Format::PHP_SERIALIZE,
            data: b"a:0:{}".to_vec(),
        };
        assert_eq!(php(&ser), (b"a:0:{}".to_vec(), 4));
        let json = Typed::Serialized {
            format: Format::JSON,
            data: b"{}".to_vec(),
        };
        assert_eq!(php(&json), (b"{}".to_vec(), 6));
        let pickle = Typed::Serialized {
            format: Format::PICKLE,
            data: b"\x80\x02N.".to_vec(),
        };
        assert!(encode(Convention::PHP, &pickle).is_err());
    }

    #[test]
    fn php_doubles_render_like_g_fmt() {
        for (f, s) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (100.0, "100"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.5, ".5"),
            (0.001, ".001"),
            (0.0001, ".0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.0, "123456"),
            (1e5, "100000"),
            (1e6, "1e+06"),
            (1e7, "1e+07"),
            (12e6, "1.2e+07"),
            (123e5, "12300000"),
            (1e25, "1e+25"),
            (1e100, "1e+100"),
            (0.1 + 0.2, ".30000000000000004"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(render_php_double(f), s, "{f:e}");
        }
    }

    #[test]
    fn php_round_trips() {
        for v in [
            Typed::Bytes(b"x y".to_vec()),
            Typed::Int(i64::MIN),
            Typed::Int(i64::MAX),
            Typed::Float(0.1),
            Typed::Float(-1e-300),
            Typed::Float(123.456),
            Typed::Float(f64::NEG_INFINITY),
            Typed::Bool(true),
            Typed::Bool(false),
        ] {
            let (data, flags) = php(&v);
            assert_eq!(
                decode(Convention::PHP, &data, flags),
                Plain::Typed(v.clone()),
                "{v:?}"
            );
        }
        let (data, flags) = php(&Typed::Float(f64::NAN));
        match decode(Convention::PHP, &data, flags) {
            Plain::Typed(Typed::Float(f)) => assert!(f.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn php_reads_like_pecl() {
        // strtol: blanks, sign, trailing garbage, overflow saturates, no digits is 0.
        assert_eq!(
            decode(Convention::PHP, b" -12abc", 1),
            Plain::Typed(Typed::Int(-12))
        );
        assert_eq!(
            decode(Convention::PHP, b"9 ", 1),
            Plain::Typed(Typed::Int(9))
        );
        assert_eq!(
            decode(Convention::PHP, b"99999999999999999999", 1),
            Plain::Typed(Typed::Int(i64::MAX))
        );
        assert_eq!(
            decode(Convention::PHP, b"x", 1),
            Plain::Typed(Typed::Int(0))
        );
        assert_eq!(
            decode(Convention::PHP, b"1e3", 2),
            Plain::Typed(Typed::Float(1000.0))
        );
        assert_eq!(
            decode(Convention::PHP, b"2.5xyz", 2),
            Plain::Typed(Typed::Float(2.5))
        );
        assert_eq!(
            decode(Convention::PHP, b"abc", 2),
            Plain::Typed(Typed::Float(0.0))
        );
        assert_eq!(
            decode(Convention::PHP, b"1.", 2),
            Plain::Typed(Typed::Float(1.0))
        );
        assert_eq!(
            decode(Convention::PHP, b"10", 3),
            Plain::Typed(Typed::Bool(true))
        );
        assert_eq!(
            decode(Convention::PHP, b"0", 3),
            Plain::Typed(Typed::Bool(false))
        );
        // User flags in the upper half do not change the type.
        assert_eq!(
            decode(Convention::PHP, b"7", 1 | (5 << 16)),
            Plain::Typed(Typed::Int(7))
        );
        // Compressed, igbinary, msgpack and undefined types are raw.
        for flags in [
            php::COMPRESSED,
            php::COMPRESSED | php::COMPRESSION_ZLIB,
            5,
            7,
            9,
            15,
        ] {
            assert!(
                matches!(decode(Convention::PHP, b"z", flags), Plain::Raw { .. }),
                "{flags}"
            );
        }
    }

    #[test]
    fn flags_for_matches_encode() {
        for conv in [Convention::PYTHON, Convention::PHP] {
            for v in [
                Typed::Bytes(b"b".to_vec()),
                Typed::Text("t".into()),
                Typed::Serialized {
                    format: Format::PICKLE,
                    data: b"p".to_vec(),
                },
                Typed::Serialized {
                    format: Format::JSON,
                    data: b"j".to_vec(),
                },
                Typed::Serialized {
                    format: Format::PHP_SERIALIZE,
                    data: b"s".to_vec(),
                },
            ] {
                let by_encode = encode(conv, &v).ok().map(|(_, f)| f);
                assert_eq!(
                    flags_for(conv, v.vtype(), v.format()),
                    by_encode,
                    "{conv} {v:?}"
                );
            }
            for t in [ValueType::Int, ValueType::Float, ValueType::Bool] {
                assert_eq!(flags_for(conv, t, Format::NONE), None);
            }
        }
    }

    #[test]
    fn versioned_values_read_by_envelope_or_flags() {
        use crate::envelope::Stamp;
        use crate::replication::Versioned;
        let v = |data: &[u8], t, format, enveloped, flags| Versioned {
            data: bytes::Bytes::copy_from_slice(data),
            value_type: t,
            format,
            stamp: Stamp::PLAIN,
            enveloped,
            flags,
        };
        let int = v(b"-7", ValueType::Int, Format::NONE, true, 0);
        assert_eq!(from_versioned(Convention::PYTHON, &int), TypedRef::Int(-7));
        let f = v(
            &2.5f64.to_be_bytes(),
            ValueType::Float,
            Format::NONE,
            true,
            0,
        );
        assert_eq!(from_versioned(Convention::PHP, &f), TypedRef::Float(2.5));
        let b = v(&[1], ValueType::Bool, Format::NONE, true, 0);
        assert_eq!(from_versioned(Convention::PYTHON, &b), TypedRef::Bool(true));
        let t = v("é".as_bytes(), ValueType::Text, Format::NONE, true, 0);
        assert_eq!(from_versioned(Convention::PYTHON, &t), TypedRef::Text("é"));
        let s = v(b"x", ValueType::Serialized, Format::JSON, true, 0);
        assert_eq!(
            from_versioned(Convention::PYTHON, &s),
            TypedRef::Serialized(Format::JSON, b"x")
        );
        // A plain value (written by pymemcache) is read by its flags.
        let plain = v(b"42", ValueType::Bytes, Format::NONE, false, 2);
        assert_eq!(
            from_versioned(Convention::PYTHON, &plain),
            TypedRef::Int(42)
        );
        assert_eq!(
            from_versioned(Convention::PHP, &plain),
            TypedRef::Float(42.0)
        );
        // An inconsistent typed payload falls back to raw bytes.
        let bad = v(b"1.5", ValueType::Int, Format::NONE, true, 0);
        assert_eq!(
            from_versioned(Convention::PYTHON, &bad),
            TypedRef::Raw(b"1.5", 0)
        );
    }

    #[test]
    fn convention_names() {
        assert_eq!("PyLibMC".parse::<Convention>().unwrap(), Convention::PYTHON);
        assert_eq!("php".parse::<Convention>().unwrap(), Convention::PHP);
        assert!("ruby".parse::<Convention>().is_err());
        assert_eq!(Convention::default().to_string(), "multiput");
        assert_eq!(
            Convention::parse("", Family::Php).unwrap(),
            Convention::multiput(Family::Php)
        );
        assert_eq!(
            Convention::parse("Multiput", Family::Python)
                .unwrap()
                .family(),
            Family::Python
        );
    }
}
