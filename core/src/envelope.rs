//! The replication envelope: the 24-byte header multiput puts in front of every value it stores,
//! the rule that picks the later of two stored copies, and the hybrid logical clock that makes
//! the timestamps.
//!
//! Replication writes every value to N servers. Copies disagree after failures (a write or a
//! delete that reached only some servers), so every stored value carries a [`Stamp`] — a hybrid
//! logical clock value and the id of the writer — and a reader takes the later copy with
//! [`winner`]. A delete stores a *tombstone* (an envelope with [`Kind::Tombstone`] and no
//! payload) instead of removing the key, so a replica that missed the delete cannot bring the
//! value back.
//!
//! This module is pure logic: no I/O, and no clock reads (wall time is passed in; see
//! [`wall_ms`]). The byte layout is the wire contract every binding (Rust, Python, PHP, JS)
//! shares; it is specified in `docs/envelope.md`, and the test vectors in
//! `docs/vectors/envelope.json` are the contract's executable form.
//!
//! ```text
//! 0..3   magic    E1 4D 50 ("\xE1MP")
//! 3      version  1
//! 4      kind     0 = value, 1 = tombstone
//! 5      type     0 bytes, 1 text, 2 int, 3 float, 4 bool, 5 serialized
//! 6      format   serializer of type 5 (1 pickle, 2 PHP serialize, 3 JSON); 0 otherwise
//! 7      reserved 0 on write, ignored on read
//! 8..16  ts       u64 big-endian: (unix ms << 16) | 16-bit logical counter
//! 16..24 writer   u64 big-endian: random per client instance
//! 24..   payload
//! ```
//!
//! Anything that is not exactly a valid version-1 envelope is a *plain* value (written by a
//! plain memcached client, or by a future multiput version): [`decode`] never fails, it returns
//! [`Decoded::Plain`], and a plain value is older than every enveloped one.
//!
//! ```
//! use multiput::envelope::{self, Decoded, Format, Hlc, Kind, Stamp, Typed};
//!
//! let hlc = Hlc::new();
//! let writer = envelope::new_writer_id();
//! let now = 1_700_000_000_000; // the driver passes wall_ms(SystemTime::now())
//!
//! let old = Typed::Text("Ada".into()).encode(Stamp::new(hlc.stamp(now), writer)).unwrap();
//! let new = Typed::Int(42).encode(Stamp::new(hlc.stamp(now), writer)).unwrap();
//! let gone = envelope::tombstone(Stamp::new(hlc.stamp(now), writer));
//!
//! // Replica 0 missed everything, replica 1 holds a plain value, 2 and 3 the two versions.
//! let replicas = [None, Some(&b"legacy"[..]), Some(&old[..]), Some(&new[..])];
//! assert_eq!(envelope::winner(replicas.iter().copied()), Some(3));
//! assert_eq!(envelope::winner([Some(&new[..]), Some(&gone[..])]), Some(1));
//!
//! match envelope::decode(&new) {
//!     Decoded::Enveloped(env) => {
//!         assert_eq!(env.kind, Kind::Value);
//!         assert_eq!(Typed::from_envelope(&env).unwrap(), Typed::Int(42));
//!     }
//!     Decoded::Plain(_) => unreachable!(),
//! }
//! assert_eq!(envelope::decode(b"legacy"), Decoded::Plain(b"legacy"));
//! # let _ = Format::JSON;
//! ```

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering as MemOrder};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

/// The first three bytes of every envelope: `E1 4D 50` (`"\xE1MP"`). `E1 4D` is not valid
/// UTF-8 and starts no pickle, PHP `serialize()`, JSON, igbinary or zlib stream, so plain
/// values written by other clients practically never look like an envelope.
pub const MAGIC: [u8; 3] = [0xE1, 0x4D, 0x50];

/// The envelope version this module reads and writes. Any other version reads as plain.
pub const VERSION: u8 = 1;

/// The header's length in bytes; the payload starts here.
pub const HEADER_LEN: usize = 24;

/// Bits of a timestamp that hold the logical counter; the bits above hold unix milliseconds.
pub const COUNTER_BITS: u32 = 16;

/// The largest millisecond value a timestamp can hold (48 bits, about the year 10889). Larger
/// wall times are clamped to it.
pub const MAX_WALL_MS: u64 = (1 << (64 - COUNTER_BITS)) - 1;

/// How long a tombstone lives by default, in seconds (one day). A tombstone must outlive the
/// longest time a replica can miss a delete and still come back with the old value; after it
/// expires, a stale copy on a replica that missed the delete can win again.
pub const DEFAULT_TOMBSTONE_TTL_SECS: u32 = 86_400;

/// Byte 4: what the envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A stored value (0).
    Value = 0,
    /// A delete marker (1): the key was deleted at the envelope's stamp. Its type is
    /// [`ValueType::Bytes`], its format [`Format::NONE`] and its payload empty.
    Tombstone = 1,
}

impl Kind {
    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind for a wire byte, `None` when unknown (the value then reads as plain).
    pub const fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Value),
            1 => Some(Kind::Tombstone),
            _ => None,
        }
    }
}

/// Byte 5: how the payload is to be read. Each type has strict payload rules (see
/// [`check_fields`]); a payload that breaks them makes the whole value plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueType {
    /// Raw bytes (0), any payload.
    Bytes = 0,
    /// UTF-8 text (1); the payload must be valid UTF-8 (surrogates and overlong forms refused).
    Text = 1,
    /// A signed 64-bit integer (2) as canonical ASCII decimal: `0`, or an optional `-` and
    /// digits without a leading zero (`-0`, `+1`, `01` and spaces are refused), in `i64` range.
    Int = 2,
    /// An IEEE-754 binary64 float (3): exactly 8 bytes, big-endian. Every bit pattern is valid.
    Float = 3,
    /// A boolean (4): exactly one byte, 0 or 1.
    Bool = 4,
    /// A serialized object (5); the [`Format`] byte names the serializer and must not be 0.
    Serialized = 5,
}

impl ValueType {
    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The type for a wire byte, `None` when unknown (the value then reads as plain).
    pub const fn from_u8(b: u8) -> Option<ValueType> {
        match b {
            0 => Some(ValueType::Bytes),
            1 => Some(ValueType::Text),
            2 => Some(ValueType::Int),
            3 => Some(ValueType::Float),
            4 => Some(ValueType::Bool),
            5 => Some(ValueType::Serialized),
            _ => None,
        }
    }
}

/// Byte 6: the serializer of a [`ValueType::Serialized`] payload, as a `u8` newtype with named
/// constants (not an enum, so that every byte has exactly one representation and unknown
/// formats pass through untouched).
///
/// - 0 [`Format::NONE`]: required for every other type and for tombstones; refused for
///   `Serialized`.
/// - 1..=3: [`PICKLE`](Format::PICKLE), [`PHP_SERIALIZE`](Format::PHP_SERIALIZE),
///   [`JSON`](Format::JSON).
/// - 4..=127: reserved for future registered serializers.
/// - 128..=255: private use (a fleet's own serializer).
///
/// A reader accepts every non-zero format on a `Serialized` value: the stamp still takes part
/// in the winner rule even when the binding cannot deserialize the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Format(pub u8);

impl Format {
    /// 0: no serializer (every type but `Serialized`).
    pub const NONE: Format = Format(0);
    /// 1: Python `pickle` (any protocol; the payload is what `pickle.dumps` returned).
    pub const PICKLE: Format = Format(1);
    /// 2: PHP `serialize()`.
    pub const PHP_SERIALIZE: Format = Format(2);
    /// 3: JSON (UTF-8), the language-neutral choice.
    pub const JSON: Format = Format(3);

    /// True for 1..=3, the serializers this version names.
    pub const fn is_registered(self) -> bool {
        matches!(self.0, 1..=3)
    }

    /// True for 4..=127, reserved for future serializers.
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 4..=127)
    }

    /// True for 128..=255, free for private use.
    pub const fn is_private(self) -> bool {
        self.0 >= 128
    }
}

/// When a version was written and by whom: the order of versions.
///
/// `Ord` is lexicographic on (`ts`, `writer`): the later timestamp wins, and the writer id breaks
/// a tie between two writers that stamped the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Stamp {
    /// A hybrid logical clock value: `(unix milliseconds << 16) | logical counter`. See [`Hlc`].
    pub ts: u64,
    /// The writer's id, random and non-zero per client instance. See [`new_writer_id`].
    pub writer: u64,
}

impl Stamp {
    /// The stamp a plain value is given: `{ ts: 0, writer: 0 }`. Note that the winner rule
    /// orders a plain value before *every* enveloped value, even one stamped `{0, 0}`.
    pub const PLAIN: Stamp = Stamp { ts: 0, writer: 0 };

    /// A stamp.
    pub const fn new(ts: u64, writer: u64) -> Stamp {
        Stamp { ts, writer }
    }

    /// The millisecond part of the timestamp (unix milliseconds, unless the clock ran ahead).
    pub const fn millis(&self) -> u64 {
        self.ts >> COUNTER_BITS
    }

    /// The logical counter part of the timestamp.
    pub const fn counter(&self) -> u16 {
        self.ts as u16
    }
}

/// A valid version-1 envelope, borrowed from the raw stored bytes.
///
/// [`decode`] only returns envelopes whose fields are consistent ([`Envelope::check`] passes).
/// The fields are public so that one can be built by hand; an inconsistent hand-built envelope
/// is refused by [`Envelope::encode_into`] and [`Typed::from_envelope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope<'a> {
    /// When and by whom it was written.
    pub stamp: Stamp,
    /// A value or a tombstone.
    pub kind: Kind,
    /// How to read the payload.
    pub vtype: ValueType,
    /// The serializer, for [`ValueType::Serialized`]; [`Format::NONE`] otherwise.
    pub format: Format,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// A value envelope.
    pub const fn value(
        stamp: Stamp,
        vtype: ValueType,
        format: Format,
        payload: &'a [u8],
    ) -> Envelope<'a> {
        Envelope {
            stamp,
            kind: Kind::Value,
            vtype,
            format,
            payload,
        }
    }

    /// A tombstone envelope.
    pub const fn tombstone(stamp: Stamp) -> Envelope<'static> {
        Envelope {
            stamp,
            kind: Kind::Tombstone,
            vtype: ValueType::Bytes,
            format: Format::NONE,
            payload: &[],
        }
    }

    /// True for a delete marker.
    pub const fn is_tombstone(&self) -> bool {
        matches!(self.kind, Kind::Tombstone)
    }

    /// Whether the fields are consistent, i.e. whether the encoded bytes would decode as this
    /// envelope. See [`check_fields`].
    pub fn check(&self) -> Result<(), Invalid> {
        check_fields(self.kind, self.vtype, self.format, self.payload)
    }

    /// The encoded length: header plus payload.
    pub const fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Append the encoded envelope to `buf`; see [`encode_into`].
    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<(), Invalid> {
        encode_into(
            buf,
            self.stamp,
            self.kind,
            self.vtype,
            self.format,
            self.payload,
        )
    }

    /// The encoded envelope; see [`encode`].
    pub fn to_vec(&self) -> Result<Vec<u8>, Invalid> {
        encode(self.stamp, self.kind, self.vtype, self.format, self.payload)
    }
}

/// What a stored value is: a multiput envelope, or a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoded<'a> {
    /// A valid version-1 envelope.
    Enveloped(Envelope<'a>),
    /// Anything else, returned whole as raw bytes: a value written by a plain memcached client,
    /// a corrupt or future-version envelope. It counts as older than every enveloped value.
    Plain(&'a [u8]),
}

impl<'a> Decoded<'a> {
    /// The envelope's stamp, or [`Stamp::PLAIN`] for a plain value.
    pub const fn stamp(&self) -> Stamp {
        match self {
            Decoded::Enveloped(e) => e.stamp,
            Decoded::Plain(_) => Stamp::PLAIN,
        }
    }

    /// True for a tombstone (a plain value never is one).
    pub const fn is_tombstone(&self) -> bool {
        match self {
            Decoded::Enveloped(e) => e.is_tombstone(),
            Decoded::Plain(_) => false,
        }
    }

    /// The value's bytes: an envelope's payload, or a plain value whole.
    pub const fn payload(&self) -> &'a [u8] {
        match self {
            Decoded::Enveloped(e) => e.payload,
            Decoded::Plain(raw) => raw,
        }
    }
}

/// Why bytes are not a valid version-1 envelope, or why fields cannot be encoded as one.
///
/// For readers this is only a diagnostic ([`parse`]): [`decode`] turns every one of these into
/// [`Decoded::Plain`]. For writers it is a refusal: multiput never stores bytes that would read
/// back as plain, because a plain value loses to every enveloped one and the write would be
/// silently lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// Fewer bytes than the 24-byte header.
    #[error("{len} bytes is shorter than the {HEADER_LEN}-byte envelope header")]
    TooShort {
        /// The length seen.
        len: usize,
    },
    /// The first three bytes are not [`MAGIC`].
    #[error("the value does not start with the envelope magic E1 4D 50")]
    BadMagic,
    /// A version other than [`VERSION`].
    #[error("envelope version {0} is not {VERSION}, the only version this reader knows (upgrade every reader before any writer writes a new version)")]
    UnknownVersion(u8),
    /// A kind byte other than 0 or 1.
    #[error("envelope kind {0} is unknown (0 = value, 1 = tombstone)")]
    UnknownKind(u8),
    /// A type byte above 5.
    #[error("envelope value type {0} is unknown (0..=5)")]
    UnknownType(u8),
    /// A non-zero format on a type other than `Serialized`, or on a tombstone.
    #[error("format {} is only allowed on serialized values, not on {vtype:?} / {kind:?}", format.0)]
    UnexpectedFormat {
        /// The kind.
        kind: Kind,
        /// The type.
        vtype: ValueType,
        /// The format that should have been 0.
        format: Format,
    },
    /// A `Serialized` value with format 0.
    #[error("a serialized value needs a format (1 pickle, 2 PHP serialize, 3 JSON, 128..=255 private); 0 is not one")]
    MissingFormat,
    /// A tombstone whose type is not `Bytes`.
    #[error("a tombstone must have type bytes (0), not {0:?}")]
    TombstoneType(ValueType),
    /// A tombstone with a payload.
    #[error("a tombstone must have an empty payload, this one has {len} bytes")]
    TombstonePayload {
        /// The payload's length.
        len: usize,
    },
    /// A `Text` payload that is not valid UTF-8.
    #[error("text payload is not valid UTF-8 (first bad byte at offset {valid_up_to})")]
    Text {
        /// Offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// An `Int` payload that is not a canonical ASCII decimal `i64`.
    #[error("int payload is not a canonical ASCII decimal i64 (0, or optional '-' then digits without a leading zero)")]
    Int,
    /// A `Float` payload that is not exactly 8 bytes.
    #[error("float payload is {len} bytes, not 8")]
    Float {
        /// The payload's length.
        len: usize,
    },
    /// A `Bool` payload that is not exactly one byte 0 or 1.
    #[error("bool payload must be one byte 0 or 1")]
    Bool,
    /// [`Typed::from_envelope`] was given a tombstone, which holds no value.
    #[error(
        "a tombstone holds no value; check Envelope::is_tombstone first (a read of it is a miss)"
    )]
    IsTombstone,
}

/// Check that `kind`, `vtype`, `format` and `payload` form a valid version-1 envelope: the rules
/// a reader applies after the header's fixed bytes, and a writer before storing.
///
/// - A tombstone has type `Bytes`, format 0 and an empty payload.
/// - Format is non-zero for `Serialized` and zero for every other type.
/// - The payload obeys its type (see [`ValueType`]).
pub fn check_fields(
    kind: Kind,
    vtype: ValueType,
    format: Format,
    payload: &[u8],
) -> Result<(), Invalid> {
    match (vtype, format) {
        (ValueType::Serialized, Format::NONE) => return Err(Invalid::MissingFormat),
        (ValueType::Serialized, _) | (_, Format::NONE) => {}
        _ => {
            return Err(Invalid::UnexpectedFormat {
                kind,
                vtype,
                format,
            })
        }
    }
    if kind == Kind::Tombstone {
        if vtype != ValueType::Bytes {
            return Err(Invalid::TombstoneType(vtype));
        }
        if !payload.is_empty() {
            return Err(Invalid::TombstonePayload { len: payload.len() });
        }
        return Ok(());
    }
    match vtype {
        ValueType::Bytes | ValueType::Serialized => Ok(()),
        ValueType::Text => std::str::from_utf8(payload)
            .map(drop)
            .map_err(|e| Invalid::Text {
                valid_up_to: e.valid_up_to(),
            }),
        ValueType::Int => parse_int(payload).map(drop).ok_or(Invalid::Int),
        ValueType::Float => parse_float(payload)
            .map(drop)
            .ok_or(Invalid::Float { len: payload.len() }),
        ValueType::Bool => parse_bool(payload).map(drop).ok_or(Invalid::Bool),
    }
}

/// A canonical ASCII decimal i64: `0`, or `-`? then `[1-9][0-9]*`, in range.
fn parse_int(p: &[u8]) -> Option<i64> {
    let digits = p.strip_prefix(b"-").unwrap_or(p);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || digits.len() != p.len()) {
        return None; // leading zero or "-0"
    }
    std::str::from_utf8(p).ok()?.parse().ok()
}

fn parse_float(p: &[u8]) -> Option<f64> {
    Some(f64::from_be_bytes(p.try_into().ok()?))
}

fn parse_bool(p: &[u8]) -> Option<bool> {
    match p {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// Parse `raw` as a version-1 envelope, saying why when it is not one. Readers use [`decode`];
/// this is for diagnostics (logs, the CLI, tests).
pub fn parse(raw: &[u8]) -> Result<Envelope<'_>, Invalid> {
    let Some((header, payload)) = raw.split_first_chunk::<HEADER_LEN>() else {
        return Err(Invalid::TooShort { len: raw.len() });
    };
    if header[..3] != MAGIC {
        return Err(Invalid::BadMagic);
    }
    if header[3] != VERSION {
        return Err(Invalid::UnknownVersion(header[3]));
    }
    let kind = Kind::from_u8(header[4]).ok_or(Invalid::UnknownKind(header[4]))?;
    let vtype = ValueType::from_u8(header[5]).ok_or(Invalid::UnknownType(header[5]))?;
    let format = Format(header[6]);
    // header[7] is reserved: ignored on read.
    let ts = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let writer = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
    check_fields(kind, vtype, format, payload)?;
    Ok(Envelope {
        stamp: Stamp { ts, writer },
        kind,
        vtype,
        format,
        payload,
    })
}

/// Read a stored value: a valid version-1 envelope, or else a plain value. Never fails and never
/// panics; does not allocate.
pub fn decode(raw: &[u8]) -> Decoded<'_> {
    match parse(raw) {
        Ok(envelope) => Decoded::Enveloped(envelope),
        Err(_) => Decoded::Plain(raw),
    }
}

/// Append an envelope to `buf`: the 24-byte header (reserved byte 0) then the payload.
///
/// Refuses (and appends nothing) when the fields are inconsistent ([`check_fields`]): such
/// bytes would read back as plain, the oldest possible version, and the write would be lost.
/// With consistent fields it cannot fail.
pub fn encode_into(
    buf: &mut BytesMut,
    stamp: Stamp,
    kind: Kind,
    vtype: ValueType,
    format: Format,
    payload: &[u8],
) -> Result<(), Invalid> {
    check_fields(kind, vtype, format, payload)?;
    buf.reserve(HEADER_LEN + payload.len());
    put_header(buf, stamp, kind, vtype, format);
    buf.put_slice(payload);
    Ok(())
}

/// The encoded envelope as a new vector; see [`encode_into`].
pub fn encode(
    stamp: Stamp,
    kind: Kind,
    vtype: ValueType,
    format: Format,
    payload: &[u8],
) -> Result<Vec<u8>, Invalid> {
    check_fields(kind, vtype, format, payload)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    put_header(&mut out, stamp, kind, vtype, format);
    out.extend_from_slice(payload);
    Ok(out)
}

/// A tombstone: the 24-byte header alone, kind 1, type 0, format 0. Store it (with the
/// tombstone TTL, [`DEFAULT_TOMBSTONE_TTL_SECS`] by default) instead of deleting the key.
pub fn tombstone(stamp: Stamp) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    put_header(
        &mut &mut out[..],
        stamp,
        Kind::Tombstone,
        ValueType::Bytes,
        Format::NONE,
    );
    out
}

fn put_header(buf: &mut impl BufMut, stamp: Stamp, kind: Kind, vtype: ValueType, format: Format) {
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(kind.as_u8());
    buf.put_u8(vtype.as_u8());
    buf.put_u8(format.0);
    buf.put_u8(0); // reserved
    buf.put_u64(stamp.ts);
    buf.put_u64(stamp.writer);
}

/// A decoded value with its type, for bindings that map envelope types to their language's.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    /// [`ValueType::Bytes`].
    Bytes(Vec<u8>),
    /// [`ValueType::Text`].
    Text(String),
    /// [`ValueType::Int`].
    Int(i64),
    /// [`ValueType::Float`] (compares with `==`, so a NaN is unequal to itself).
    Float(f64),
    /// [`ValueType::Bool`].
    Bool(bool),
    /// [`ValueType::Serialized`]: the serializer's output, left to the binding to deserialize.
    Serialized {
        /// The serializer; must not be [`Format::NONE`].
        format: Format,
        /// The serialized bytes.
        data: Vec<u8>,
    },
}

impl Typed {
    /// The envelope type byte this value is written with.
    pub const fn vtype(&self) -> ValueType {
        match self {
            Typed::Bytes(_) => ValueType::Bytes,
            Typed::Text(_) => ValueType::Text,
            Typed::Int(_) => ValueType::Int,
            Typed::Float(_) => ValueType::Float,
            Typed::Bool(_) => ValueType::Bool,
            Typed::Serialized { .. } => ValueType::Serialized,
        }
    }

    /// The envelope format byte this value is written with.
    pub const fn format(&self) -> Format {
        match self {
            Typed::Serialized { format, .. } => *format,
            _ => Format::NONE,
        }
    }

    /// The payload bytes: as is for bytes, text and serialized; canonical ASCII decimal for an
    /// int; 8 big-endian bytes for a float; one byte 0/1 for a bool.
    pub fn encode_payload(&self) -> Vec<u8> {
        match self {
            Typed::Bytes(b) | Typed::Serialized { data: b, .. } => b.clone(),
            Typed::Text(s) => s.as_bytes().to_vec(),
            Typed::Int(i) => i.to_string().into_bytes(),
            Typed::Float(f) => f.to_be_bytes().to_vec(),
            Typed::Bool(b) => vec![u8::from(*b)],
        }
    }

    /// Append the encoded value envelope to `buf`. Fails only for
    /// `Serialized { format: Format::NONE, .. }`.
    pub fn encode_into(&self, buf: &mut BytesMut, stamp: Stamp) -> Result<(), Invalid> {
        let (vtype, format) = (self.vtype(), self.format());
        match self {
            Typed::Bytes(b) | Typed::Serialized { data: b, .. } => {
                encode_into(buf, stamp, Kind::Value, vtype, format, b)
            }
            Typed::Text(s) => encode_into(buf, stamp, Kind::Value, vtype, format, s.as_bytes()),
            _ => encode_into(
                buf,
                stamp,
                Kind::Value,
                vtype,
                format,
                &self.encode_payload(),
            ),
        }
    }

    /// The encoded value envelope as a new vector. Fails only for
    /// `Serialized { format: Format::NONE, .. }`.
    pub fn encode(&self, stamp: Stamp) -> Result<Vec<u8>, Invalid> {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf, stamp)?;
        Ok(buf.to_vec())
    }

    /// The typed value of an envelope. Never fails for a value envelope returned by [`decode`]
    /// (decode already refused inconsistent ones); fails with [`Invalid::IsTombstone`] for a
    /// tombstone, and with the reason for a hand-built inconsistent envelope.
    pub fn from_envelope(envelope: &Envelope<'_>) -> Result<Typed, Invalid> {
        envelope.check()?;
        if envelope.is_tombstone() {
            return Err(Invalid::IsTombstone);
        }
        let p = envelope.payload;
        // check() passed, so every parse below succeeds.
        Ok(match envelope.vtype {
            ValueType::Bytes => Typed::Bytes(p.to_vec()),
            ValueType::Text => {
                Typed::Text(String::from_utf8(p.to_vec()).map_err(|e| Invalid::Text {
                    valid_up_to: e.utf8_error().valid_up_to(),
                })?)
            }
            ValueType::Int => Typed::Int(parse_int(p).ok_or(Invalid::Int)?),
            ValueType::Float => {
                Typed::Float(parse_float(p).ok_or(Invalid::Float { len: p.len() })?)
            }
            ValueType::Bool => Typed::Bool(parse_bool(p).ok_or(Invalid::Bool)?),
            ValueType::Serialized => Typed::Serialized {
                format: envelope.format,
                data: p.to_vec(),
            },
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Value => "value",
            Kind::Tombstone => "tombstone",
        })
    }
}

/// Where a present copy stands in the winner rule: plain (`None`, by raw bytes) before enveloped
/// (by stamp, then raw bytes).
type OrderKey<'a> = (Option<Stamp>, &'a [u8]);

/// The order key of a stored copy; absent (`None`) is before every present copy.
fn order_key(raw: Option<&[u8]>) -> Option<OrderKey<'_>> {
    raw.map(|raw| match decode(raw) {
        Decoded::Enveloped(e) => (Some(e.stamp), raw),
        Decoded::Plain(_) => (None, raw),
    })
}

/// Compare two stored copies of one key by the winner rule; `Greater` means `a` is the later
/// version. `None` is an absent copy (a miss).
///
/// The rule, identical in every binding:
///
/// 1. An absent copy is older than everything, including an empty plain value.
/// 2. A plain value (anything [`decode`] does not accept) is older than every enveloped value.
/// 3. Two enveloped values compare by [`Stamp`]: timestamp, then writer id. A tombstone and a
///    value compare like any two versions, so a delete wins over the value it deleted and a
///    later write wins over the tombstone.
/// 4. Otherwise (two plain values, or equal stamps) the raw stored bytes compare
///    lexicographically, unsigned, a proper prefix before the longer value; the larger wins.
///    `Equal` means byte-identical copies: the same version.
pub fn compare(a: Option<&[u8]>, b: Option<&[u8]>) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// The index of the winning copy among the replicas of one key (`None` = absent: a miss, or a
/// replica that did not answer), or `None` when every copy is absent (or there are none).
///
/// The winner is the maximum under [`compare`]; when several replicas hold the identical
/// winning bytes the lowest index is returned. Each copy is decoded once; nothing is allocated.
/// A winning tombstone means the key is deleted: the read is a miss.
pub fn winner<'a, I>(replicas: I) -> Option<usize>
where
    I: IntoIterator<Item = Option<&'a [u8]>>,
{
    let mut best: Option<(usize, OrderKey<'a>)> = None;
    for (i, raw) in replicas.into_iter().enumerate() {
        let Some(key) = order_key(raw) else { continue };
        match &best {
            Some((_, best_key)) if key <= *best_key => {}
            _ => best = Some((i, key)),
        }
    }
    best.map(|(i, _)| i)
}

/// A hybrid logical clock: timestamps that follow wall time but never go backwards and are
/// later than every timestamp seen, so versions keep their order across app servers whose
/// clocks are skewed.
///
/// A timestamp is `(unix milliseconds << 16) | counter`: 48 bits of milliseconds (until about the
/// year 10889; larger wall times are clamped to [`MAX_WALL_MS`]) and a 16-bit logical counter.
/// [`Hlc::stamp`] returns `max(last + 1, wall_ms << 16)`: when the wall clock has moved on, the
/// counter restarts at 0; when it has not (or went backwards), the counter counts up, and when
/// the counter would overflow 16 bits the carry advances the millisecond part, so the clock runs
/// ahead of the wall until the wall catches up. At `u64::MAX` the clock saturates (only possible
/// after observing a corrupt timestamp).
///
/// Lock-free: one `AtomicU64` updated with a compare-and-swap loop; share one per client
/// instance (with one writer id) between threads.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A clock that has stamped and seen nothing yet.
    pub const fn new() -> Hlc {
        Hlc {
            last: AtomicU64::new(0),
        }
    }

    /// A new timestamp for a write at wall time `wall_ms` (unix milliseconds, see [`wall_ms`]):
    /// strictly greater than every timestamp this clock returned or observed before (unless
    /// saturated at `u64::MAX`), and at least `wall_ms << 16`.
    pub fn stamp(&self, wall_ms: u64) -> u64 {
        let floor = wall_ms.min(MAX_WALL_MS) << COUNTER_BITS;
        // Read-modify-write operations on one atomic are totally ordered whatever the memory
        // ordering, which is all the uniqueness and monotonicity guarantees need.
        let mut last = self.last.load(MemOrder::Relaxed);
        loop {
            let next = last.saturating_add(1).max(floor);
            match self
                .last
                .compare_exchange_weak(last, next, MemOrder::Relaxed, MemOrder::Relaxed)
            {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// Take a timestamp read from a stored value into account, so the next local stamp is
    /// later. Call it for the winning copy of every read (a tombstone's too): a later write from
    /// this client then beats the value it read even when this server's clock is behind the
    /// writer's.
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, MemOrder::Relaxed);
    }

    /// The latest timestamp stamped or observed (0 for a new clock).
    pub fn last(&self) -> u64 {
        self.last.load(MemOrder::Relaxed)
    }
}

/// Unix milliseconds of `t`, for [`Hlc::stamp`]: 0 before 1970, clamped to [`MAX_WALL_MS`].
/// Drivers call it with `SystemTime::now()`; the logic layer never reads the clock itself.
pub fn wall_ms(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_WALL_MS),
        Err(_) => 0,
    }
}

/// A new random, non-zero writer id for a client instance.
///
/// Source: std's `RandomState`, whose SipHash keys come from the operating system's random
/// generator (getrandom and its equivalents), hashing a process-wide counter, the process id and
/// the thread id. No extra dependency, and no clock read. Two ids collide with probability
/// about n²/2⁶⁵ for n clients; a collision only matters when the two also stamp the same
/// timestamp, and even then the raw-bytes tie-break keeps every reader agreeing.
///
/// On targets without OS randomness (`wasm32-unknown-unknown`), std's keys are fixed, so this
/// function would give every instance the same id sequence: there, the binding must supply the
/// id from the platform's generator (JS `crypto.getRandomValues`), non-zero.
pub fn new_writer_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = RandomState::new().build_hasher();
        COUNTER.fetch_add(1, MemOrder::Relaxed).hash(&mut h);
        // No process id on wasm32-unknown-unknown (it panics there), and RandomState's keys
        // are fixed: WASM hosts must supply their own random writer id.
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        std::process::id().hash(&mut h);
        std::thread::current().id().hash(&mut h);
        let id = h.finish();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    const WALL: u64 = 1_700_000_000_000;

    fn st(ts: u64, writer: u64) -> Stamp {
        Stamp::new(ts, writer)
    }

    fn val(stamp: Stamp, vtype: ValueType, format: Format, payload: &[u8]) -> Vec<u8> {
        encode(stamp, Kind::Value, vtype, format, payload).unwrap()
    }

    /// A valid header followed by a payload, with the given raw bytes 3..8.
    fn raw_header(
        version: u8,
        kind: u8,
        vtype: u8,
        format: u8,
        reserved: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[version, kind, vtype, format, reserved]);
        v.extend_from_slice(&(WALL << 16).to_be_bytes());
        v.extend_from_slice(&7u64.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn known_answer_header_layout() {
        let raw = val(
            st(0x0102_0304_0506_0708, 0x1112_1314_1516_1718),
            ValueType::Text,
            Format::NONE,
            b"hi",
        );
        assert_eq!(
            raw,
            [
                0xE1, 0x4D, 0x50, 1, 0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14,
                0x15, 0x16, 0x17, 0x18, b'h', b'i'
            ]
        );
        assert_eq!(&MAGIC, b"\xE1MP");
        let t = tombstone(st(1, u64::MAX));
        assert_eq!(
            t,
            [
                0xE1, 0x4D, 0x50, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF,
                0xFF, 0xFF, 0xFF, 0xFF
            ]
        );
        let mut buf = BytesMut::from(&b"prefix"[..]);
        encode_into(
            &mut buf,
            st(9, 9),
            Kind::Value,
            ValueType::Bool,
            Format::NONE,
            &[1],
        )
        .unwrap();
        assert_eq!(&buf[..6], b"prefix");
        assert_eq!(
            &buf[6..],
            &val(st(9, 9), ValueType::Bool, Format::NONE, &[1])[..]
        );
    }

    #[test]
    fn round_trip_every_type() {
        let values = [
            Typed::Bytes(vec![]),
            Typed::Bytes(vec![0, 0xFF, 0x80, b'\n']),
            Typed::Text(String::new()),
            Typed::Text("héllo ✓ 🦀 日本".into()),
            Typed::Int(0),
            Typed::Int(-42),
            Typed::Int(i64::MAX),
            Typed::Int(i64::MIN),
            Typed::Float(-0.5),
            Typed::Float(1e300),
            Typed::Float(f64::MIN_POSITIVE),
            Typed::Float(f64::INFINITY),
            Typed::Bool(true),
            Typed::Bool(false),
            Typed::Serialized {
                format: Format::PICKLE,
                data: vec![0x80, 2, b'K', 1, b'.'],
            },
            Typed::Serialized {
                format: Format::PHP_SERIALIZE,
                data: b"i:1;".to_vec(),
            },
            Typed::Serialized {
                format: Format::JSON,
                data: b"{\"a\":1}".to_vec(),
            },
            Typed::Serialized {
                format: Format(200),
                data: vec![],
            },
        ];
        for (i, v) in values.iter().enumerate() {
            let stamp = st(WALL << 16 | i as u64, 0xDEAD_BEEF);
            let raw = v.encode(stamp).unwrap();
            assert_eq!(raw.len(), HEADER_LEN + v.encode_payload().len());
            let Decoded::Enveloped(env) = decode(&raw) else {
                panic!("{v:?} decoded as plain")
            };
            assert_eq!(env.stamp, stamp);
            assert_eq!(env.kind, Kind::Value);
            assert_eq!(env.vtype, v.vtype());
            assert_eq!(env.format, v.format());
            assert_eq!(env.payload, &v.encode_payload()[..]);
            assert_eq!(&Typed::from_envelope(&env).unwrap(), v);
            assert_eq!(env.to_vec().unwrap(), raw);
        }
        // A NaN keeps its exact bits.
        let nan = f64::from_bits(0x7FF8_0000_0000_0001);
        let raw = Typed::Float(nan).encode(st(1, 1)).unwrap();
        let Decoded::Enveloped(env) = decode(&raw) else {
            panic!()
        };
        let Typed::Float(back) = Typed::from_envelope(&env).unwrap() else {
            panic!()
        };
        assert_eq!(back.to_bits(), nan.to_bits());
    }

    #[test]
    fn tombstone_round_trip() {
        let raw = tombstone(st(WALL << 16, 5));
        let d = decode(&raw);
        assert!(d.is_tombstone());
        assert_eq!(d.stamp(), st(WALL << 16, 5));
        assert_eq!(
            d,
            Decoded::Enveloped(Envelope::tombstone(st(WALL << 16, 5)))
        );
        let Decoded::Enveloped(env) = d else { panic!() };
        assert_eq!(Typed::from_envelope(&env), Err(Invalid::IsTombstone));
        assert_eq!(
            encode(
                st(WALL << 16, 5),
                Kind::Tombstone,
                ValueType::Bytes,
                Format::NONE,
                b""
            )
            .unwrap(),
            raw
        );
    }

    #[test]
    fn malformed_reads_as_plain() {
        let good = raw_header(1, 0, 0, 0, 0, b"x");
        assert!(matches!(decode(&good), Decoded::Enveloped(_)));
        let cases: Vec<(Vec<u8>, Invalid)> = vec![
            (vec![], Invalid::TooShort { len: 0 }),
            (good[..23].to_vec(), Invalid::TooShort { len: 23 }),
            (b"hello world, a plain value".to_vec(), Invalid::BadMagic),
            (
                {
                    let mut v = good.clone();
                    v[0] = 0xE2;
                    v
                },
                Invalid::BadMagic,
            ),
            (
                {
                    let mut v = good.clone();
                    v[2] = b'Q';
                    v
                },
                Invalid::BadMagic,
            ),
            (raw_header(0, 0, 0, 0, 0, b""), Invalid::UnknownVersion(0)),
            (raw_header(2, 0, 0, 0, 0, b""), Invalid::UnknownVersion(2)),
            (
                raw_header(255, 0, 0, 0, 0, b""),
                Invalid::UnknownVersion(255),
            ),
            (raw_header(1, 2, 0, 0, 0, b""), Invalid::UnknownKind(2)),
            (raw_header(1, 0, 6, 0, 0, b""), Invalid::UnknownType(6)),
            (raw_header(1, 0, 255, 0, 0, b""), Invalid::UnknownType(255)),
            (
                raw_header(1, 1, 0, 0, 0, b"x"),
                Invalid::TombstonePayload { len: 1 },
            ),
            (
                raw_header(1, 1, 1, 0, 0, b""),
                Invalid::TombstoneType(ValueType::Text),
            ),
            (
                raw_header(1, 1, 0, 3, 0, b""),
                Invalid::UnexpectedFormat {
                    kind: Kind::Tombstone,
                    vtype: ValueType::Bytes,
                    format: Format::JSON,
                },
            ),
            (
                raw_header(1, 0, 1, 1, 0, b"a"),
                Invalid::UnexpectedFormat {
                    kind: Kind::Value,
                    vtype: ValueType::Text,
                    format: Format::PICKLE,
                },
            ),
            (raw_header(1, 0, 5, 0, 0, b"{}"), Invalid::MissingFormat),
            (
                raw_header(1, 0, 1, 0, 0, b"ok\xFF"),
                Invalid::Text { valid_up_to: 2 },
            ),
            (
                raw_header(1, 0, 1, 0, 0, b"\xED\xA0\x80"),
                Invalid::Text { valid_up_to: 0 },
            ),
            (
                raw_header(1, 0, 1, 0, 0, b"\xC0\xAF"),
                Invalid::Text { valid_up_to: 0 },
            ),
            (
                raw_header(1, 0, 3, 0, 0, &[0; 7]),
                Invalid::Float { len: 7 },
            ),
            (
                raw_header(1, 0, 3, 0, 0, &[0; 9]),
                Invalid::Float { len: 9 },
            ),
            (raw_header(1, 0, 3, 0, 0, b""), Invalid::Float { len: 0 }),
            (raw_header(1, 0, 4, 0, 0, &[2]), Invalid::Bool),
            (raw_header(1, 0, 4, 0, 0, b""), Invalid::Bool),
            (raw_header(1, 0, 4, 0, 0, &[0, 1]), Invalid::Bool),
            (raw_header(1, 0, 4, 0, 0, b"1"), Invalid::Bool),
        ];
        for bad_int in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b"-01",
            b" 1",
            b"1 ",
            b"1.5",
            b"1e3",
            b"0x10",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"\xD9\xA1", // ARABIC-INDIC DIGIT ONE
        ] {
            assert_eq!(
                parse(&raw_header(1, 0, 2, 0, 0, bad_int)),
                Err(Invalid::Int),
                "{bad_int:?}"
            );
            assert_eq!(
                decode(&raw_header(1, 0, 2, 0, 0, bad_int)),
                Decoded::Plain(&raw_header(1, 0, 2, 0, 0, bad_int)[..])
            );
        }
        for (raw, why) in &cases {
            assert_eq!(parse(raw), Err(*why), "{raw:02x?}");
            assert_eq!(decode(raw), Decoded::Plain(&raw[..]), "{raw:02x?}");
            assert_eq!(decode(raw).stamp(), Stamp::PLAIN);
            assert!(!decode(raw).is_tombstone());
            assert!(!why.to_string().is_empty());
        }
    }

    #[test]
    fn lenient_where_the_spec_says_so() {
        // Reserved byte ignored on read.
        let raw = raw_header(1, 0, 0, 0, 0xAB, b"x");
        assert!(matches!(decode(&raw), Decoded::Enveloped(e) if e.payload == b"x"));
        // Reserved and private formats are valid serialized values.
        for f in [4, 127, 128, 255] {
            let raw = raw_header(1, 0, 5, f, 0, b"data");
            let Decoded::Enveloped(e) = decode(&raw) else {
                panic!("format {f}")
            };
            assert_eq!(e.format, Format(f));
        }
        // Edge ints.
        for (s, n) in [
            (&b"0"[..], 0),
            (b"-1", -1),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ] {
            let raw = raw_header(1, 0, 2, 0, 0, s);
            let Decoded::Enveloped(e) = decode(&raw) else {
                panic!()
            };
            assert_eq!(Typed::from_envelope(&e).unwrap(), Typed::Int(n));
        }
        // Trailing bytes after the header are the payload, whatever the length.
        let big = raw_header(1, 0, 0, 0, 0, &[7; 100_000]);
        assert_eq!(decode(&big).payload().len(), 100_000);
    }

    #[test]
    fn format_classes() {
        assert!(Format::PICKLE.is_registered() && Format::JSON.is_registered());
        assert!(!Format::NONE.is_registered() && !Format::NONE.is_reserved());
        assert!(Format(4).is_reserved() && Format(127).is_reserved() && !Format(128).is_reserved());
        assert!(Format(128).is_private() && Format(255).is_private() && !Format(127).is_private());
        for b in 0..=255u8 {
            assert_eq!(Kind::from_u8(b).map(Kind::as_u8), (b <= 1).then_some(b));
            assert_eq!(
                ValueType::from_u8(b).map(ValueType::as_u8),
                (b <= 5).then_some(b)
            );
        }
    }

    #[test]
    fn writers_refuse_what_would_read_as_plain() {
        let s = st(1, 1);
        assert_eq!(
            encode(s, Kind::Value, ValueType::Serialized, Format::NONE, b"x"),
            Err(Invalid::MissingFormat)
        );
        assert!(matches!(
            encode(s, Kind::Value, ValueType::Bytes, Format::JSON, b"x"),
            Err(Invalid::UnexpectedFormat { .. })
        ));
        assert_eq!(
            encode(s, Kind::Tombstone, ValueType::Bytes, Format::NONE, b"x"),
            Err(Invalid::TombstonePayload { len: 1 })
        );
        assert_eq!(
            encode(s, Kind::Tombstone, ValueType::Int, Format::NONE, b""),
            Err(Invalid::TombstoneType(ValueType::Int))
        );
        assert_eq!(
            encode(s, Kind::Value, ValueType::Int, Format::NONE, b"007"),
            Err(Invalid::Int)
        );
        assert_eq!(
            encode(s, Kind::Value, ValueType::Text, Format::NONE, b"\xFF"),
            Err(Invalid::Text { valid_up_to: 0 })
        );
        let mut buf = BytesMut::new();
        assert!(encode_into(
            &mut buf,
            s,
            Kind::Value,
            ValueType::Float,
            Format::NONE,
            b"1"
        )
        .is_err());
        assert!(buf.is_empty(), "nothing appended on refusal");
        assert_eq!(
            Typed::Serialized {
                format: Format::NONE,
                data: vec![]
            }
            .encode(s),
            Err(Invalid::MissingFormat)
        );
        let hand_built = Envelope::value(s, ValueType::Bool, Format::NONE, b"yes");
        assert_eq!(Typed::from_envelope(&hand_built), Err(Invalid::Bool));
    }

    #[test]
    fn stamp_order_and_parts() {
        assert!(st(2, 1) > st(1, u64::MAX));
        assert!(st(1, 2) > st(1, 1));
        assert_eq!(Stamp::PLAIN, Stamp::default());
        let s = st(WALL << 16 | 0xBEEF, 1);
        assert_eq!((s.millis(), s.counter()), (WALL, 0xBEEF));
    }

    fn w(replicas: &[Option<&[u8]>]) -> Option<usize> {
        let fwd = winner(replicas.iter().copied());
        // The winner's bytes do not depend on the order of the replicas.
        let mut rev: Vec<Option<&[u8]>> = replicas.to_vec();
        rev.reverse();
        let back = winner(rev.iter().copied());
        assert_eq!(fwd.map(|i| replicas[i]), back.map(|i| rev[i]));
        fwd
    }

    #[test]
    fn winner_rule() {
        let t = WALL << 16;
        let a = val(st(t, 5), ValueType::Text, Format::NONE, b"a");
        let b = val(st(t + 1, 1), ValueType::Text, Format::NONE, b"b");
        let c = val(st(t + 1, 2), ValueType::Text, Format::NONE, b"c");
        let zero = val(Stamp::PLAIN, ValueType::Bytes, Format::NONE, b"");
        // Absent.
        assert_eq!(w(&[]), None);
        assert_eq!(w(&[None, None]), None);
        assert_eq!(w(&[None, Some(b""), None]), Some(1));
        // Timestamp first, then writer.
        assert_eq!(w(&[Some(&a), Some(&b)]), Some(1));
        assert_eq!(w(&[Some(&c), Some(&b), Some(&a)]), Some(0));
        assert_eq!(compare(Some(&b), Some(&a)), Ordering::Greater);
        assert_eq!(compare(Some(&b), Some(&c)), Ordering::Less);
        // Plain is older than every envelope, even one stamped {0, 0}.
        assert_eq!(w(&[Some(b"\xFF\xFF\xFF"), Some(&a)]), Some(1));
        assert_eq!(w(&[Some(b"\xFF\xFF\xFF"), Some(&zero)]), Some(1));
        assert_eq!(compare(Some(b""), None), Ordering::Greater);
        // Plain vs plain: raw bytes, larger wins, a prefix is smaller.
        assert_eq!(w(&[Some(b"b"), Some(b"a")]), Some(0));
        assert_eq!(w(&[Some(b"a"), Some(b"ab")]), Some(1));
        assert_eq!(
            w(&[Some(b"\x80"), Some(b"\x7F\xFF")]),
            Some(0),
            "unsigned bytes"
        );
        // Identical copies: the same version, lowest index.
        assert_eq!(w(&[Some(&b), Some(&b)]), Some(0));
        assert_eq!(w(&[Some(&a), Some(&b), Some(&b)]), Some(1));
        assert_eq!(compare(Some(&b), Some(&b)), Ordering::Equal);
        // Equal stamps, different bytes: raw bytes decide.
        let x1 = val(st(t, 9), ValueType::Text, Format::NONE, b"x1");
        let x2 = val(st(t, 9), ValueType::Text, Format::NONE, b"x2");
        assert_eq!(w(&[Some(&x2), Some(&x1)]), Some(0));
        // Tombstones order by stamp like any version.
        let del_late = tombstone(st(t + 2, 1));
        let del_early = tombstone(st(t - 1, 1));
        assert_eq!(w(&[Some(&b), Some(&del_late)]), Some(1));
        assert_eq!(w(&[Some(&del_early), Some(&b)]), Some(1));
        // Malformed envelopes with huge stamps are plain: they lose.
        let mut bad = val(st(u64::MAX, u64::MAX), ValueType::Bytes, Format::NONE, b"");
        bad[3] = 2;
        assert_eq!(w(&[Some(&bad), Some(&a)]), Some(1));
    }

    #[test]
    fn hlc_monotonic_when_the_wall_goes_backwards() {
        let hlc = Hlc::new();
        assert_eq!(hlc.last(), 0);
        let t1 = hlc.stamp(WALL);
        assert_eq!(t1, WALL << 16);
        let t2 = hlc.stamp(WALL);
        assert_eq!(t2, (WALL << 16) + 1);
        let t3 = hlc.stamp(WALL - 5_000); // wall clock stepped back 5 s
        assert_eq!(t3, (WALL << 16) + 2);
        let t4 = hlc.stamp(WALL + 1);
        assert_eq!(
            t4,
            (WALL + 1) << 16,
            "counter restarts when the wall moves on"
        );
        let mut last = t4;
        for wall in (WALL - 100..WALL + 100).rev() {
            let t = hlc.stamp(wall);
            assert!(t > last && t >= wall << 16);
            last = t;
        }
        assert_eq!(hlc.last(), last);
    }

    #[test]
    fn hlc_observe() {
        let hlc = Hlc::new();
        let local = hlc.stamp(WALL);
        // Another app server, 10 s ahead, wrote what we just read.
        let remote = (WALL + 10_000) << 16 | 3;
        hlc.observe(remote);
        let next = hlc.stamp(WALL + 1);
        assert_eq!(next, remote + 1);
        assert!(next > local);
        // Observing something older changes nothing.
        hlc.observe(local);
        assert_eq!(hlc.stamp(WALL), remote + 2);
        // Wall time that passes the observed one takes over again.
        assert_eq!(hlc.stamp(WALL + 20_000), (WALL + 20_000) << 16);
    }

    #[test]
    fn hlc_counter_overflow_advances_the_millisecond() {
        let hlc = Hlc::new();
        hlc.observe(WALL << 16 | 0xFFFE);
        assert_eq!(hlc.stamp(WALL), WALL << 16 | 0xFFFF);
        let carried = hlc.stamp(WALL);
        assert_eq!(carried, (WALL + 1) << 16);
        assert_eq!(Stamp::new(carried, 1).millis(), WALL + 1);
        assert_eq!(hlc.stamp(WALL + 1), ((WALL + 1) << 16) + 1);
    }

    #[test]
    fn hlc_clamps_and_saturates() {
        let hlc = Hlc::new();
        assert_eq!(hlc.stamp(u64::MAX), MAX_WALL_MS << 16);
        hlc.observe(u64::MAX);
        assert_eq!(hlc.stamp(WALL), u64::MAX);
        assert_eq!(hlc.stamp(WALL), u64::MAX);
    }

    #[test]
    fn hlc_concurrent_stamps_are_distinct() {
        let hlc = Arc::new(Hlc::new());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let hlc = Arc::clone(&hlc);
                std::thread::spawn(move || {
                    let mut out = Vec::with_capacity(20_000);
                    for n in 0..20_000u64 {
                        // Each thread sees a different, jittering wall clock.
                        let t = hlc.stamp(WALL + (n / 7) + i * 3);
                        if let Some(&prev) = out.last() {
                            assert!(t > prev, "per-thread order");
                        }
                        out.push(t);
                    }
                    out
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            for ts in t.join().unwrap() {
                assert!(all.insert(ts), "duplicate timestamp {ts}");
            }
        }
        assert_eq!(all.len(), 80_000);
    }

    #[test]
    fn wall_ms_helper() {
        assert_eq!(wall_ms(UNIX_EPOCH), 0);
        assert_eq!(wall_ms(UNIX_EPOCH + Duration::from_millis(WALL)), WALL);
        assert_eq!(wall_ms(UNIX_EPOCH + Duration::from_micros(1_999)), 1);
        assert_eq!(wall_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn writer_ids_are_nonzero_and_distinct() {
        let ids: HashSet<u64> = (0..1_000).map(|_| new_writer_id()).collect();
        assert_eq!(ids.len(), 1_000);
        assert!(!ids.contains(&0));
    }

    /// Regenerates `docs/vectors/envelope.json`. The committed file is the contract; run this
    /// only when the contract deliberately changes, and review the diff:
    /// `cargo test -p multiput --lib envelope::tests::generate_vectors -- --ignored`.
    #[test]
    #[ignore = "writes docs/vectors/envelope.json"]
    fn generate_vectors() {
        use serde::Serialize;
        use serde_json::{json, Value};

        #[derive(Serialize)]
        struct StampJ {
            ts: String,
            writer: String,
        }
        #[derive(Serialize)]
        struct FieldsJ {
            stamp: StampJ,
            kind: u8,
            #[serde(rename = "type")]
            vtype: u8,
            format: u8,
            payload_hex: String,
        }
        #[derive(Serialize)]
        struct EncodeJ {
            name: String,
            stamp: StampJ,
            kind: u8,
            #[serde(rename = "type")]
            vtype: u8,
            format: u8,
            payload_hex: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            value: Option<Value>,
            encoded_hex: String,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum ExpectJ {
            Plain(&'static str),
            Fields(FieldsJ),
        }
        #[derive(Serialize)]
        struct DecodeJ {
            name: String,
            raw_hex: String,
            expect: ExpectJ,
        }
        #[derive(Serialize)]
        struct WinnerJ {
            name: String,
            replicas_hex: Vec<Option<String>>,
            winner: Option<usize>,
        }
        #[derive(Serialize)]
        struct DocJ {
            description: &'static str,
            spec: &'static str,
            version: u8,
            encode: Vec<EncodeJ>,
            decode: Vec<DecodeJ>,
            winner: Vec<WinnerJ>,
        }

        fn hex(b: &[u8]) -> String {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        fn stamp_json(s: Stamp) -> StampJ {
            StampJ {
                ts: s.ts.to_string(),
                writer: s.writer.to_string(),
            }
        }
        fn fields(e: &Envelope<'_>) -> FieldsJ {
            FieldsJ {
                stamp: stamp_json(e.stamp),
                kind: e.kind.as_u8(),
                vtype: e.vtype.as_u8(),
                format: e.format.0,
                payload_hex: hex(e.payload),
            }
        }

        // A realistic stamp: 2023-11-14T22:13:20Z, counter 1; writer ids below.
        let t = WALL << 16 | 1;
        let w = 0x5EED_CAFE_F00D_0001u64;
        let s = st(t, w);

        let mut encode_cases = Vec::new();
        let mut add_encode = |name: &str,
                              stamp: Stamp,
                              kind: Kind,
                              vtype: ValueType,
                              format: Format,
                              payload: &[u8],
                              value: Option<Value>| {
            let raw = encode(stamp, kind, vtype, format, payload).unwrap();
            encode_cases.push(EncodeJ {
                name: name.to_string(),
                stamp: stamp_json(stamp),
                kind: kind.as_u8(),
                vtype: vtype.as_u8(),
                format: format.0,
                payload_hex: hex(payload),
                value,
                encoded_hex: hex(&raw),
            });
        };
        let pickle = [
            0x80, 0x02, 0x7d, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x4b,
            0x01, 0x73, 0x2e,
        ];
        add_encode(
            "bytes empty",
            s,
            Kind::Value,
            ValueType::Bytes,
            Format::NONE,
            b"",
            None,
        );
        add_encode(
            "bytes binary",
            s,
            Kind::Value,
            ValueType::Bytes,
            Format::NONE,
            &[0x00, 0xff, 0x80, 0x0a, 0x0d, 0x20, 0xe1, 0x4d, 0x50, 0x01],
            None,
        );
        add_encode(
            "text empty",
            s,
            Kind::Value,
            ValueType::Text,
            Format::NONE,
            b"",
            Some(json!({ "text": "" })),
        );
        add_encode(
            "text ascii",
            s,
            Kind::Value,
            ValueType::Text,
            Format::NONE,
            b"Ada Lovelace",
            Some(json!({ "text": "Ada Lovelace" })),
        );
        let uni = "h\u{e9}llo w\u{f6}rld \u{2713} \u{1f980} \u{65e5}\u{672c}\u{8a9e}";
        add_encode(
            "text unicode (2, 3 and 4-byte UTF-8)",
            s,
            Kind::Value,
            ValueType::Text,
            Format::NONE,
            uni.as_bytes(),
            Some(json!({ "text": uni })),
        );
        for (name, n) in [
            ("int zero", 0i64),
            ("int positive", 42),
            ("int negative", -42),
            ("int i64 max", i64::MAX),
            ("int i64 min", i64::MIN),
        ] {
            add_encode(
                name,
                s,
                Kind::Value,
                ValueType::Int,
                Format::NONE,
                n.to_string().as_bytes(),
                Some(json!({ "int": n.to_string() })),
            );
        }
        for (name, f) in [
            ("float -0.5", -0.5f64),
            ("float 1e300", 1e300),
            ("float 0.1", 0.1),
            ("float negative zero", -0.0),
        ] {
            add_encode(
                name,
                s,
                Kind::Value,
                ValueType::Float,
                Format::NONE,
                &f.to_be_bytes(),
                Some(json!({ "float": f })),
            );
        }
        add_encode(
            "bool true",
            s,
            Kind::Value,
            ValueType::Bool,
            Format::NONE,
            &[1],
            Some(json!({ "bool": true })),
        );
        add_encode(
            "bool false",
            s,
            Kind::Value,
            ValueType::Bool,
            Format::NONE,
            &[0],
            Some(json!({ "bool": false })),
        );
        add_encode(
            "serialized pickle (protocol 2, {'a': 1})",
            s,
            Kind::Value,
            ValueType::Serialized,
            Format::PICKLE,
            &pickle,
            None,
        );
        add_encode(
            "serialized PHP serialize() (['a' => 1])",
            s,
            Kind::Value,
            ValueType::Serialized,
            Format::PHP_SERIALIZE,
            br#"a:1:{s:1:"a";i:1;}"#,
            None,
        );
        add_encode(
            "serialized JSON ({\"a\":1})",
            s,
            Kind::Value,
            ValueType::Serialized,
            Format::JSON,
            br#"{"a":1}"#,
            None,
        );
        add_encode(
            "serialized private format 200",
            s,
            Kind::Value,
            ValueType::Serialized,
            Format(200),
            b"\x00custom",
            None,
        );
        add_encode(
            "tombstone",
            s,
            Kind::Tombstone,
            ValueType::Bytes,
            Format::NONE,
            b"",
            None,
        );
        add_encode(
            "max u64 writer and timestamp",
            st(u64::MAX, u64::MAX),
            Kind::Value,
            ValueType::Text,
            Format::NONE,
            b"x",
            Some(json!({ "text": "x" })),
        );
        add_encode(
            "counter at 0xffff",
            st(WALL << 16 | 0xFFFF, 1),
            Kind::Value,
            ValueType::Bytes,
            Format::NONE,
            b"c",
            None,
        );
        add_encode(
            "zero stamp",
            Stamp::PLAIN,
            Kind::Value,
            ValueType::Bytes,
            Format::NONE,
            b"z",
            None,
        );
        add_encode(
            "tombstone, max writer",
            st(t + 5, u64::MAX),
            Kind::Tombstone,
            ValueType::Bytes,
            Format::NONE,
            b"",
            None,
        );

        let hdr = |version: u8, kind: u8, vtype: u8, format: u8, reserved: u8, payload: &[u8]| {
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&[version, kind, vtype, format, reserved]);
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&w.to_be_bytes());
            v.extend_from_slice(payload);
            v
        };
        let good = hdr(1, 0, 0, 0, 0, b"x");
        let decode_inputs: Vec<(&str, Vec<u8>)> = vec![
            // Valid envelopes, including the lenient corners.
            ("valid bytes", good.clone()),
            (
                "valid: reserved byte is ignored",
                hdr(1, 0, 0, 0, 0xAB, b"x"),
            ),
            (
                "valid: header only, empty bytes value",
                hdr(1, 0, 0, 0, 0, b""),
            ),
            (
                "valid: reserved serializer format 4",
                hdr(1, 0, 5, 4, 0, b"data"),
            ),
            (
                "valid: private serializer format 255",
                hdr(1, 0, 5, 255, 0, b"data"),
            ),
            (
                "valid: float NaN bits are kept",
                hdr(1, 0, 3, 0, 0, &[0x7f, 0xf8, 0, 0, 0, 0, 0, 1]),
            ),
            (
                "valid: int -9223372036854775808",
                hdr(1, 0, 2, 0, 0, b"-9223372036854775808"),
            ),
            ("valid: tombstone", hdr(1, 1, 0, 0, 0, b"")),
            (
                "valid: bytes whose payload is itself an envelope",
                hdr(1, 0, 0, 0, 0, &good),
            ),
            // Plain values.
            ("plain: empty value", vec![]),
            ("plain: ascii value", b"hello".to_vec()),
            ("plain: pickle from pylibmc", pickle.to_vec()),
            (
                "plain: PHP serialize() from PECL memcached",
                br#"a:1:{s:1:"a";i:1;}"#.to_vec(),
            ),
            (
                "plain: magic and version only",
                vec![0xE1, 0x4D, 0x50, 0x01],
            ),
            (
                "plain: 23 bytes, one short of a header",
                good[..23].to_vec(),
            ),
            ("plain: wrong first magic byte", {
                let mut v = good.clone();
                v[0] = 0xE2;
                v
            }),
            ("plain: wrong third magic byte", {
                let mut v = good.clone();
                v[2] = 0x51;
                v
            }),
            ("plain: version 0", hdr(0, 0, 0, 0, 0, b"x")),
            (
                "plain: version 2 (a future version)",
                hdr(2, 0, 0, 0, 0, b"x"),
            ),
            ("plain: version 255", hdr(255, 0, 0, 0, 0, b"x")),
            ("plain: kind 2", hdr(1, 2, 0, 0, 0, b"x")),
            ("plain: kind 255", hdr(1, 255, 0, 0, 0, b"")),
            ("plain: type 6", hdr(1, 0, 6, 0, 0, b"x")),
            ("plain: type 255", hdr(1, 0, 255, 0, 0, b"x")),
            ("plain: tombstone with a payload", hdr(1, 1, 0, 0, 0, b"x")),
            ("plain: tombstone with type text", hdr(1, 1, 1, 0, 0, b"")),
            ("plain: tombstone with a format", hdr(1, 1, 0, 3, 0, b"")),
            ("plain: text with a format", hdr(1, 0, 1, 1, 0, b"a")),
            ("plain: bytes with a format", hdr(1, 0, 0, 200, 0, b"a")),
            ("plain: serialized with format 0", hdr(1, 0, 5, 0, 0, b"{}")),
            (
                "plain: text, invalid UTF-8 byte ff",
                hdr(1, 0, 1, 0, 0, b"ok\xff"),
            ),
            (
                "plain: text, truncated UTF-8 sequence",
                hdr(1, 0, 1, 0, 0, b"\xe2\x9c"),
            ),
            (
                "plain: text, UTF-16 surrogate encoded as UTF-8 (CESU)",
                hdr(1, 0, 1, 0, 0, b"\xed\xa0\x80"),
            ),
            (
                "plain: text, overlong encoding of '/'",
                hdr(1, 0, 1, 0, 0, b"\xc0\xaf"),
            ),
            ("plain: int empty", hdr(1, 0, 2, 0, 0, b"")),
            ("plain: int '-'", hdr(1, 0, 2, 0, 0, b"-")),
            ("plain: int '+1'", hdr(1, 0, 2, 0, 0, b"+1")),
            ("plain: int leading zero '01'", hdr(1, 0, 2, 0, 0, b"01")),
            ("plain: int '-0'", hdr(1, 0, 2, 0, 0, b"-0")),
            ("plain: int leading space", hdr(1, 0, 2, 0, 0, b" 1")),
            ("plain: int trailing newline", hdr(1, 0, 2, 0, 0, b"1\n")),
            ("plain: int '1.5'", hdr(1, 0, 2, 0, 0, b"1.5")),
            ("plain: int '1e3'", hdr(1, 0, 2, 0, 0, b"1e3")),
            ("plain: int '0x10'", hdr(1, 0, 2, 0, 0, b"0x10")),
            (
                "plain: int i64 max + 1",
                hdr(1, 0, 2, 0, 0, b"9223372036854775808"),
            ),
            (
                "plain: int i64 min - 1",
                hdr(1, 0, 2, 0, 0, b"-9223372036854775809"),
            ),
            (
                "plain: int non-ASCII digit",
                hdr(1, 0, 2, 0, 0, "\u{661}".as_bytes()),
            ),
            ("plain: float 7 bytes", hdr(1, 0, 3, 0, 0, &[0; 7])),
            ("plain: float 9 bytes", hdr(1, 0, 3, 0, 0, &[0; 9])),
            ("plain: float empty", hdr(1, 0, 3, 0, 0, b"")),
            ("plain: float as ASCII '0.5'", hdr(1, 0, 3, 0, 0, b"0.5")),
            ("plain: bool 2", hdr(1, 0, 4, 0, 0, &[2])),
            ("plain: bool ASCII '1'", hdr(1, 0, 4, 0, 0, b"1")),
            ("plain: bool empty", hdr(1, 0, 4, 0, 0, b"")),
            ("plain: bool 2 bytes", hdr(1, 0, 4, 0, 0, &[0, 1])),
        ];
        let decode_cases: Vec<DecodeJ> = decode_inputs
            .iter()
            .map(|(name, raw)| {
                let expect = match decode(raw) {
                    Decoded::Enveloped(e) => {
                        assert!(name.starts_with("valid"), "{name}");
                        ExpectJ::Fields(fields(&e))
                    }
                    Decoded::Plain(_) => {
                        assert!(name.starts_with("plain"), "{name}");
                        ExpectJ::Plain("plain")
                    }
                };
                DecodeJ {
                    name: name.to_string(),
                    raw_hex: hex(raw),
                    expect,
                }
            })
            .collect();

        let v = |stamp: Stamp, text: &str| {
            encode(
                stamp,
                Kind::Value,
                ValueType::Text,
                Format::NONE,
                text.as_bytes(),
            )
            .unwrap()
        };
        let a = v(st(t, 7), "a");
        let b = v(st(t + 1, 3), "b");
        let c = v(st(t + 1, 4), "c");
        let late = v(st((WALL + 1) << 16, 1), "late");
        let zero = v(Stamp::PLAIN, "zero");
        let x1 = v(st(t, 9), "x1");
        let x2 = v(st(t, 9), "x2");
        let del_late = tombstone(st(t + 2, 1)).to_vec();
        let del_early = tombstone(st(t - 1, 1)).to_vec();
        let mut future = v(st(u64::MAX, u64::MAX), "future");
        future[3] = 2;
        let bad_int = hdr(1, 0, 2, 0, 0, b"01");
        let bad_huge = {
            let mut r = bad_int.clone();
            r[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
            r
        };
        type Case<'a> = (&'a str, Vec<Option<&'a [u8]>>, Option<usize>);
        let winner_inputs: Vec<Case<'_>> = vec![
            ("no replicas", vec![], None),
            ("all absent", vec![None, None, None], None),
            (
                "one present among absent",
                vec![None, Some(&b), None],
                Some(1),
            ),
            (
                "empty plain value beats absent",
                vec![None, Some(b"")],
                Some(1),
            ),
            ("later timestamp wins", vec![Some(&a), Some(&b)], Some(1)),
            (
                "later timestamp wins over larger writer",
                vec![Some(&late), Some(&c)],
                Some(0),
            ),
            (
                "equal timestamp: larger writer wins",
                vec![Some(&c), Some(&b)],
                Some(0),
            ),
            (
                "enveloped beats plain",
                vec![Some(b"\xff\xff\xff\xff"), Some(&a)],
                Some(1),
            ),
            (
                "enveloped with zero stamp beats plain",
                vec![Some(b"\xff\xff\xff\xff"), Some(&zero)],
                Some(1),
            ),
            (
                "plain vs plain: larger bytes win",
                vec![Some(b"apple"), Some(b"banana")],
                Some(1),
            ),
            (
                "plain vs plain: a prefix is smaller",
                vec![Some(b"ab"), Some(b"a")],
                Some(0),
            ),
            (
                "plain vs plain: bytes compare unsigned",
                vec![Some(b"\x7f\xff"), Some(b"\x80")],
                Some(1),
            ),
            (
                "identical copies: lowest index",
                vec![Some(&b), Some(&b), Some(&b)],
                Some(0),
            ),
            (
                "identical winning copies after an older one",
                vec![Some(&a), None, Some(&b), Some(&b)],
                Some(2),
            ),
            (
                "equal stamps, different bytes: larger raw bytes win",
                vec![Some(&x1), Some(&x2)],
                Some(1),
            ),
            (
                "tombstone newer than value wins",
                vec![Some(&b), Some(&del_late)],
                Some(1),
            ),
            (
                "value newer than tombstone wins",
                vec![Some(&del_early), Some(&a)],
                Some(1),
            ),
            (
                "tombstone beats plain",
                vec![Some(b"legacy"), Some(&del_early)],
                Some(1),
            ),
            (
                "future version with huge stamp is plain and loses",
                vec![Some(&future), Some(&a)],
                Some(1),
            ),
            (
                "malformed payload with huge stamp is plain and loses",
                vec![Some(&bad_huge), Some(&a)],
                Some(1),
            ),
            (
                "mixed: absent, plain, value, tombstone, newer value",
                vec![
                    None,
                    Some(b"legacy"),
                    Some(&a),
                    Some(&del_late),
                    Some(&late),
                ],
                Some(4),
            ),
        ];
        let winner_cases: Vec<WinnerJ> = winner_inputs
            .iter()
            .map(|(name, replicas, expected)| {
                assert_eq!(winner(replicas.iter().copied()), *expected, "{name}");
                let hexes: Vec<Option<String>> = replicas.iter().map(|r| r.map(hex)).collect();
                WinnerJ {
                    name: name.to_string(),
                    replicas_hex: hexes,
                    winner: *expected,
                }
            })
            .collect();

        let doc = DocJ {
            description:
                "multiput envelope v1 test vectors: the contract every binding's tests run. \
                u64 fields are decimal strings (JS and PHP lose precision above 2^53); kind, type \
                and format are the wire byte values; an absent replica is null.",
            spec: "docs/envelope.md",
            version: VERSION,
            encode: encode_cases,
            decode: decode_cases,
            winner: winner_cases,
        };
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/envelope.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_string_pretty(&doc).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }

    fn arb_fields() -> impl Strategy<Value = (Stamp, Kind, ValueType, Format, Vec<u8>)> {
        let stamp = (any::<u64>(), any::<u64>()).prop_map(|(ts, w)| Stamp::new(ts, w));
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|p| (
                ValueType::Bytes,
                Format::NONE,
                p
            )),
            ".{0,20}".prop_map(|s: String| (ValueType::Text, Format::NONE, s.into_bytes())),
            any::<i64>().prop_map(|i| (ValueType::Int, Format::NONE, i.to_string().into_bytes())),
            any::<u64>().prop_map(|b| (ValueType::Float, Format::NONE, b.to_be_bytes().to_vec())),
            any::<bool>().prop_map(|b| (ValueType::Bool, Format::NONE, vec![u8::from(b)])),
            (1..=255u8, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(f, p)| (
                ValueType::Serialized,
                Format(f),
                p
            )),
        ]
        .prop_map(|(t, f, p)| (Kind::Value, t, f, p));
        let kind_fields = prop_oneof![
            4 => value,
            1 => Just((Kind::Tombstone, ValueType::Bytes, Format::NONE, vec![])),
        ];
        (stamp, kind_fields).prop_map(|(s, (k, t, f, p))| (s, k, t, f, p))
    }

    proptest! {
        #[test]
        fn prop_decode_encode_round_trip((stamp, kind, vtype, format, payload) in arb_fields()) {
            let raw = encode(stamp, kind, vtype, format, &payload).unwrap();
            let expected = Envelope { stamp, kind, vtype, format, payload: &payload };
            prop_assert_eq!(decode(&raw), Decoded::Enveloped(expected));
            let mut buf = BytesMut::new();
            expected.encode_into(&mut buf).unwrap();
            prop_assert_eq!(&buf[..], &raw[..]);
            if kind == Kind::Value {
                let typed = Typed::from_envelope(&expected).unwrap();
                prop_assert_eq!(typed.encode(stamp).unwrap(), raw);
            }
        }

        #[test]
        fn prop_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = decode(&raw);
            if let Decoded::Enveloped(e) = d {
                prop_assert_eq!(e.to_vec().unwrap().len(), raw.len());
                prop_assert!(e.check().is_ok());
            }
        }

        #[test]
        fn prop_decode_never_panics_behind_a_valid_prefix(
            b in proptest::collection::vec(any::<u8>(), 0..40),
            keep in 0..=8usize,
        ) {
            // Keep the magic and some of the fixed bytes so the later checks are reached.
            let mut raw = raw_header(1, 0, 0, 0, 0, b"");
            raw.truncate(keep.max(3));
            raw.extend_from_slice(&b);
            let d = decode(&raw);
            if let Decoded::Enveloped(e) = d {
                // Re-encoding gives the same bytes except the ignored reserved byte.
                let mut again = e.to_vec().unwrap();
                again[7] = raw[7];
                prop_assert_eq!(again, raw);
            }
        }

        #[test]
        fn prop_winner_is_the_maximum_and_order_free(
            picks in proptest::collection::vec(proptest::option::of(0..6usize), 0..6),
            rot in 0..6usize,
        ) {
            let versions: Vec<Vec<u8>> = vec![
                b"plain".to_vec(),
                b"plain2".to_vec(),
                val(st(5, 1), ValueType::Text, Format::NONE, b"x"),
                val(st(5, 2), ValueType::Text, Format::NONE, b"y"),
                tombstone(st(6, 1)).to_vec(),
                val(st(6, 1), ValueType::Text, Format::NONE, b"z"),
            ];
            let replicas: Vec<Option<&[u8]>> =
                picks.iter().map(|p| p.map(|i| &versions[i][..])).collect();
            let win = winner(replicas.iter().copied());
            match win {
                None => prop_assert!(replicas.iter().all(Option::is_none)),
                Some(i) => {
                    for (j, r) in replicas.iter().enumerate() {
                        let ord = compare(replicas[i], *r);
                        prop_assert!(ord == Ordering::Greater || (ord == Ordering::Equal && i <= j));
                    }
                }
            }
            let mut rotated = replicas.clone();
            if !rotated.is_empty() {
                let n = rot % rotated.len();
                rotated.rotate_left(n);
            }
            let win2 = winner(rotated.iter().copied());
            prop_assert_eq!(win.map(|i| replicas[i]), win2.map(|i| rotated[i]));
        }
    }
}
