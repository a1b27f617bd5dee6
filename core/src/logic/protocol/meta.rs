//! Encoders and reply parsing for memcached's meta protocol (`mg`, `ms`, `md`, `ma`, `mn`).
//!
//! Written against memcached 1.6's protocol.txt. Flags from later releases (`E` to set a CAS
//! value, `md ... x`) are not sent unless asked for: the servers this project runs in CI
//! (1.6.18) answer them with `CLIENT_ERROR`, so callers detect them and never assume them.
//!
//! A key is sent as text after [`crate::key::validate`], or, for [`MetaKey::Binary`], base64
//! encoded with the `b` flag; memcached then stores the decoded bytes.

use super::text::{fmt_u64, itoa_buf};
use super::{err, excerpt, find_line, parse_u32, parse_u64, DecodeError, ErrorReply, Limits};
use crate::error::Error;
use crate::key;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A key for a meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// A text key (text-protocol rules apply).
    Text(&'a [u8]),
    /// Any bytes, sent base64-encoded with the `b` flag.
    Binary(&'a [u8]),
}

impl MetaKey<'_> {
    fn write(&self, buf: &mut BytesMut) -> Result<bool, Error> {
        match *self {
            MetaKey::Text(k) => {
                key::validate(k)?;
                buf.put_slice(k);
                Ok(false)
            }
            MetaKey::Binary(k) => {
                key::validate_binary(k)?;
                buf.put_slice(key::encode_binary_key(k).as_bytes());
                Ok(true)
            }
        }
    }
}

fn flag(buf: &mut BytesMut, c: u8) {
    buf.put_u8(b' ');
    buf.put_u8(c);
}

fn flag_n(buf: &mut BytesMut, c: u8, n: u64) {
    buf.put_u8(b' ');
    buf.put_u8(c);
    let mut b = itoa_buf();
    buf.put_slice(fmt_u64(&mut b, n));
}

/// Options of a meta get (`mg`). `Default` asks for nothing; set what you need returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaGet {
    /// `v`: return the value.
    pub value: bool,
    /// `f`: return the client flags.
    pub client_flags: bool,
    /// `c`: return the CAS unique.
    pub cas: bool,
    /// `t`: return the remaining TTL in seconds (-1 for none).
    pub ttl: bool,
    /// `k`: echo the key.
    pub key: bool,
    /// `s`: return the item size.
    pub size: bool,
    /// `h`: return whether the item was hit before.
    pub hit_before: bool,
    /// `l`: return seconds since the last access.
    pub last_access: bool,
    /// `u`: do not bump the item in the LRU.
    pub no_bump: bool,
    /// `q`: quiet; a miss (`EN`) is not sent. Close a quiet batch with [`noop`].
    pub quiet: bool,
    /// `O<token>`: an opaque token echoed in the reply.
    pub opaque: Option<u32>,
    /// `T<ttl>`: update the TTL (get-and-touch).
    pub touch: Option<u32>,
    /// `N<ttl>`: on a miss, create a placeholder with this TTL and win the right to fill it.
    pub vivify: Option<u32>,
    /// `R<ttl>`: win the right to recache if the remaining TTL is below this.
    pub recache: Option<u32>,
}

/// `mg <key> <flags>*`.
pub fn get(buf: &mut BytesMut, key: MetaKey<'_>, o: &MetaGet) -> Result<super::Expect, Error> {
    let start = buf.len();
    buf.put_slice(b"mg ");
    let b64 = key.write(buf).inspect_err(|_| buf.truncate(start))?;
    if b64 {
        flag(buf, b'b');
    }
    for (on, c) in [
        (o.value, b'v'),
        (o.client_flags, b'f'),
        (o.cas, b'c'),
        (o.ttl, b't'),
        (o.key, b'k'),
        (o.size, b's'),
        (o.hit_before, b'h'),
        (o.last_access, b'l'),
        (o.no_bump, b'u'),
        (o.quiet, b'q'),
    ] {
        if on {
            flag(buf, c);
        }
    }
    for (v, c) in [
        (o.opaque, b'O'),
        (o.touch, b'T'),
        (o.vivify, b'N'),
        (o.recache, b'R'),
    ] {
        if let Some(n) = v {
            flag_n(buf, c, n.into());
        }
    }
    buf.put_slice(b"\r\n");
    Ok(super::Expect::Meta)
}

/// The `M` mode switch of a meta set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetMode {
    /// `MS`: store unconditionally (the default).
    #[default]
    Set,
    /// `ME`: store only if missing ("add").
    Add,
    /// `MR`: store only if present.
    Replace,
    /// `MA`: append to the existing value.
    Append,
    /// `MP`: prepend to the existing value.
    Prepend,
}

/// Options of a meta set (`ms`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaSet {
    /// `M<mode>`.
    pub mode: SetMode,
    /// `F<flags>`: client flags to store.
    pub client_flags: u32,
    /// `T<ttl>`: expiration (0 = never).
    pub ttl: u32,
    /// `C<cas>`: store only if the item's CAS unique equals this.
    pub compare_cas: Option<u64>,
    /// `I`: with `C`, a CAS older than the item's marks it stale instead of failing.
    pub invalidate: bool,
    /// `c`: return the new CAS unique.
    pub return_cas: bool,
    /// `k`: echo the key.
    pub key: bool,
    /// `q`: quiet; success (`HD`) is not sent.
    pub quiet: bool,
    /// `O<token>`.
    pub opaque: Option<u32>,
    /// `N<ttl>`: with append/prepend, create the item if missing.
    pub vivify: Option<u32>,
}

/// `ms <key> <datalen> <flags>*\r\n<data>\r\n`.
pub fn set(
    buf: &mut BytesMut,
    key: MetaKey<'_>,
    data: &[u8],
    o: &MetaSet,
) -> Result<super::Expect, Error> {
    let start = buf.len();
    buf.reserve(300 + data.len());
    buf.put_slice(b"ms ");
    let b64 = key.write(buf).inspect_err(|_| buf.truncate(start))?;
    buf.put_u8(b' ');
    let mut b = itoa_buf();
    buf.put_slice(fmt_u64(&mut b, data.len() as u64));
    if b64 {
        flag(buf, b'b');
    }
    if o.client_flags != 0 {
        flag_n(buf, b'F', o.client_flags.into());
    }
    if o.ttl != 0 {
        flag_n(buf, b'T', o.ttl.into());
    }
    if let Some(c) = o.compare_cas {
        flag_n(buf, b'C', c);
    }
    let mode = match o.mode {
        SetMode::Set => None,
        SetMode::Add => Some(b'E'),
        SetMode::Replace => Some(b'R'),
        SetMode::Append => Some(b'A'),
        SetMode::Prepend => Some(b'P'),
    };
    if let Some(m) = mode {
        buf.put_slice(b" M");
        buf.put_u8(m);
    }
    for (on, c) in [
        (o.invalidate, b'I'),
        (o.return_cas, b'c'),
        (o.key, b'k'),
        (o.quiet, b'q'),
    ] {
        if on {
            flag(buf, c);
        }
    }
    for (v, c) in [(o.opaque, b'O'), (o.vivify, b'N')] {
        if let Some(n) = v {
            flag_n(buf, c, n.into());
        }
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
    Ok(super::Expect::Meta)
}

/// Options of a meta delete (`md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaDelete {
    /// `C<cas>`: delete only if the CAS unique matches (compare-and-delete).
    pub compare_cas: Option<u64>,
    /// `I`: mark the item stale instead of removing it.
    pub invalidate: bool,
    /// `T<ttl>`: with `I`, the stale item's new TTL.
    pub ttl: Option<u32>,
    /// `k`: echo the key.
    pub key: bool,
    /// `q`: quiet; success is not sent.
    pub quiet: bool,
    /// `O<token>`.
    pub opaque: Option<u32>,
}

/// `md <key> <flags>*`.
pub fn delete(
    buf: &mut BytesMut,
    key: MetaKey<'_>,
    o: &MetaDelete,
) -> Result<super::Expect, Error> {
    let start = buf.len();
    buf.put_slice(b"md ");
    let b64 = key.write(buf).inspect_err(|_| buf.truncate(start))?;
    if b64 {
        flag(buf, b'b');
    }
    if let Some(c) = o.compare_cas {
        flag_n(buf, b'C', c);
    }
    for (on, c) in [(o.invalidate, b'I'), (o.key, b'k'), (o.quiet, b'q')] {
        if on {
            flag(buf, c);
        }
    }
    for (v, c) in [(o.ttl, b'T'), (o.opaque, b'O')] {
        if let Some(n) = v {
            flag_n(buf, c, n.into());
        }
    }
    buf.put_slice(b"\r\n");
    Ok(super::Expect::Meta)
}

/// Options of a meta arithmetic command (`ma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaArithmetic {
    /// Increment (`MI`, the default) or decrement (`MD`).
    pub incr: bool,
    /// `D<delta>`.
    pub delta: u64,
    /// `N<ttl>`: create the item if missing, with this TTL.
    pub vivify: Option<u32>,
    /// `J<initial>`: the value of an item created by `N`.
    pub initial: Option<u64>,
    /// `T<ttl>`: update the TTL.
    pub ttl: Option<u32>,
    /// `C<cas>`: only if the CAS unique matches.
    pub compare_cas: Option<u64>,
    /// `v`: return the new value.
    pub value: bool,
    /// `c`: return the CAS unique.
    pub return_cas: bool,
    /// `q`: quiet.
    pub quiet: bool,
    /// `O<token>`.
    pub opaque: Option<u32>,
}

impl Default for MetaArithmetic {
    fn default() -> Self {
        MetaArithmetic {
            incr: true,
            delta: 1,
            vivify: None,
            initial: None,
            ttl: None,
            compare_cas: None,
            value: true,
            return_cas: false,
            quiet: false,
            opaque: None,
        }
    }
}

/// `ma <key> <flags>*`.
pub fn arithmetic(
    buf: &mut BytesMut,
    key: MetaKey<'_>,
    o: &MetaArithmetic,
) -> Result<super::Expect, Error> {
    let start = buf.len();
    buf.put_slice(b"ma ");
    let b64 = key.write(buf).inspect_err(|_| buf.truncate(start))?;
    if b64 {
        flag(buf, b'b');
    }
    if !o.incr {
        buf.put_slice(b" MD");
    }
    if o.delta != 1 {
        flag_n(buf, b'D', o.delta);
    }
    for (v, c) in [(o.initial, b'J'), (o.compare_cas, b'C')] {
        if let Some(n) = v {
            flag_n(buf, c, n);
        }
    }
    for (v, c) in [(o.vivify, b'N'), (o.ttl, b'T'), (o.opaque, b'O')] {
        if let Some(n) = v {
            flag_n(buf, c, n.into());
        }
    }
    for (on, c) in [(o.value, b'v'), (o.return_cas, b'c'), (o.quiet, b'q')] {
        if on {
            flag(buf, c);
        }
    }
    buf.put_slice(b"\r\n");
    Ok(super::Expect::Meta)
}

/// `mn`: the no-op that closes a quiet batch; its `MN` reply says every earlier reply was sent.
pub fn noop(buf: &mut BytesMut) -> super::Expect {
    buf.put_slice(b"mn\r\n");
    super::Expect::Meta
}

/// The status code of a meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaStatus {
    /// `VA`: a value follows.
    Value,
    /// `HD`: success, no value.
    Stored,
    /// `EN`: miss (mg).
    Miss,
    /// `NF`: not found (md, ma, ms with CAS or replace-type modes).
    NotFound,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: CAS mismatch.
    Exists,
    /// `MN`: the no-op's reply.
    Noop,
    /// An error reply in place of a meta reply (inside a batch).
    Error(ErrorReply, String),
}

/// The flags a meta reply returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaFlags {
    /// `c`: CAS unique.
    pub cas: Option<u64>,
    /// `f`: client flags.
    pub client_flags: Option<u32>,
    /// `t`: remaining TTL in seconds; `Some(-1)` for no expiry.
    pub ttl: Option<i64>,
    /// `k`: the key as sent (still base64 when `base64` is set).
    pub key: Option<Bytes>,
    /// `b`: the echoed key is base64.
    pub base64: bool,
    /// `O`: the opaque token.
    pub opaque: Option<u32>,
    /// `s`: the item size.
    pub size: Option<u64>,
    /// `h`: hit before.
    pub hit_before: Option<bool>,
    /// `l`: seconds since the last access.
    pub last_access: Option<u64>,
    /// `W`: this client won the right to recache/fill.
    pub win: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `Z`: another client already won.
    pub already_won: bool,
}

impl MetaFlags {
    /// The echoed key, decoded from base64 when needed.
    pub fn decoded_key(&self) -> Option<Vec<u8>> {
        let k = self.key.as_ref()?;
        if self.base64 {
            key::decode_binary_key(k)
        } else {
            Some(k.to_vec())
        }
    }
}

/// One decoded meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    /// The status code.
    pub status: MetaStatus,
    /// Returned flags.
    pub flags: MetaFlags,
    /// The value, for `VA`.
    pub value: Option<Bytes>,
}

impl MetaReply {
    pub(crate) fn error(kind: ErrorReply, msg: String) -> Self {
        MetaReply {
            status: MetaStatus::Error(kind, msg),
            flags: MetaFlags::default(),
            value: None,
        }
    }
}

/// Parse a reply's flags. With `source` (the frozen reply that `tokens` is part of), an
/// echoed key is a slice of it instead of a copy.
fn parse_flags(tokens: &[u8], source: Option<&Bytes>) -> Result<MetaFlags, DecodeError> {
    let mut f = MetaFlags::default();
    for tok in tokens.split(|&c| c == b' ').filter(|t| !t.is_empty()) {
        let (c, v) = (tok[0], &tok[1..]);
        let bad = || DecodeError(format!("bad meta flag {:?}", excerpt(tok)));
        match c {
            b'c' => f.cas = Some(parse_u64(v).ok_or_else(bad)?),
            b'f' => f.client_flags = Some(parse_u32(v).ok_or_else(bad)?),
            b't' => {
                f.ttl = Some(if v == b"-1" {
                    -1
                } else {
                    parse_u64(v)
                        .and_then(|n| i64::try_from(n).ok())
                        .ok_or_else(bad)?
                })
            }
            b'k' => {
                f.key = Some(match source {
                    Some(src) => src.slice_ref(v),
                    None => Bytes::copy_from_slice(v),
                })
            }
            b'b' => f.base64 = true,
            b'O' => f.opaque = Some(parse_u32(v).ok_or_else(bad)?),
            b's' => f.size = Some(parse_u64(v).ok_or_else(bad)?),
            b'h' => f.hit_before = Some(v == b"1"),
            b'l' => f.last_access = Some(parse_u64(v).ok_or_else(bad)?),
            b'W' => f.win = true,
            b'X' => f.stale = true,
            b'Z' => f.already_won = true,
            // Flags this client does not know are ignored, as the protocol asks.
            _ => {}
        }
    }
    Ok(f)
}

/// Decode one meta reply (or an error line) from the front of `buf`.
pub(crate) fn decode_one(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Result<MetaReply, super::ErrorLine>>, DecodeError> {
    let Some(n) = find_line(buf, limits.max_line)? else {
        return Ok(None);
    };
    let line = &buf[..n];
    if let Some(super::Reply::Error(k, m)) = super::error_line(line) {
        buf.advance(n + 2);
        return Ok(Some(Err((k, m))));
    }
    if line.len() < 2 || (line.len() > 2 && line[2] != b' ') {
        return err(format!("malformed meta reply: {}", excerpt(line)));
    }
    let status = match &line[..2] {
        b"VA" => MetaStatus::Value,
        b"HD" => MetaStatus::Stored,
        b"EN" => MetaStatus::Miss,
        b"NF" => MetaStatus::NotFound,
        b"NS" => MetaStatus::NotStored,
        b"EX" => MetaStatus::Exists,
        b"MN" => MetaStatus::Noop,
        _ => return err(format!("unknown meta reply: {}", excerpt(line))),
    };
    let rest = if line.len() > 3 { &line[3..] } else { &b""[..] };
    if status == MetaStatus::Value {
        // Where the flags start in the line (after "VA <len> ").
        let (len_tok, flags_at) = match rest.iter().position(|&c| c == b' ') {
            Some(i) => (&rest[..i], 3 + i + 1),
            None => (rest, n),
        };
        let Some(len) = parse_u64(len_tok) else {
            return err(format!("VA without a length: {}", excerpt(line)));
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limits.max_value_size {
            return err(format!(
                "server announced a {len}-byte value, over the {}-byte limit",
                limits.max_value_size
            ));
        }
        let Some(total) = len.checked_add(n + 4) else {
            return err(format!("announced value length {len} overflows"));
        };
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        if &buf[n + 2 + len..total] != b"\r\n" {
            return err("meta value block not terminated by CRLF");
        }
        // One split, no copies: the echoed key and the value are slices of the block.
        let block = buf.split_to(total).freeze();
        let flags = parse_flags(&block[flags_at..n], Some(&block))?;
        return Ok(Some(Ok(MetaReply {
            status,
            flags,
            value: Some(block.slice(n + 2..n + 2 + len)),
        })));
    }
    let flags = parse_flags(rest, None)?;
    buf.advance(n + 2);
    Ok(Some(Ok(MetaReply {
        status,
        flags,
        value: None,
    })))
}
