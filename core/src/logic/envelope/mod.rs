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
//! let writer = multiput::driver::entropy::new_writer_id();
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
use std::fmt;
use std::hash::Hash;
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
    /// The writer's id, random and non-zero per client instance. See [`crate::driver::entropy::new_writer_id`].
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
#[cfg(test)]
mod tests;
