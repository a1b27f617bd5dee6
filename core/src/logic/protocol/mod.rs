//! The memcached wire codec: request encoders and an incremental reply decoder. No I/O.
//!
//! Requests are written into a [`BytesMut`] by the functions in [`text`] and [`meta`]. Each
//! request is paired with an [`Expect`], the shape of the reply it gets; a [`Decoder`] built
//! from that `Expect` consumes bytes as they arrive and returns `Ok(None)` while it needs more,
//! like tokio-util's codecs. It never panics on input: anything that is not memcached protocol
//! is a [`DecodeError`], and every length the server announces is checked against
//! [`Limits`] before a byte is buffered for it, so a broken or hostile server cannot make the
//! client allocate without bound.
//!
//! Server-reported failures (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`) are not decode
//! errors: the stream is still in sync, so they are returned as [`Reply::Error`].

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

pub mod meta;
pub mod text;

pub use meta::{MetaFlags, MetaReply, MetaStatus};

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The classic text protocol, spoken by every memcached.
    Text,
    /// The meta protocol (memcached 1.6+): `mg`, `ms`, `md`, `ma`, `mn`.
    Meta,
}

/// Bounds on what the decoder accepts from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value a reply may announce, in bytes (memcached's `-I`, 1 MiB by default).
    pub max_value_size: usize,
    /// The longest reply line, CRLF included.
    pub max_line: usize,
    /// The most entries one multi-line reply (`stats`, a multi-get, a quiet batch) may hold.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_size: 1024 * 1024,
            max_line: 8 * 1024,
            max_entries: 1 << 20,
        }
    }
}

/// One item returned by a text retrieval command (`get`, `gets`, `gat`, `gats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextValue {
    /// The key as the server echoed it.
    pub key: Bytes,
    /// The item's client flags.
    pub flags: u32,
    /// The CAS unique, for `gets`/`gats`.
    pub cas: Option<u64>,
    /// The data.
    pub data: Bytes,
}

/// A single-line text reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `STORED`
    Stored,
    /// `NOT_STORED`
    NotStored,
    /// `EXISTS`
    Exists,
    /// `NOT_FOUND`
    NotFound,
    /// `DELETED`
    Deleted,
    /// `TOUCHED`
    Touched,
    /// `OK`
    Ok,
    /// The decimal reply of `incr`/`decr`.
    Number(u64),
    /// `VERSION <text>`
    Version(String),
    /// `MN`: the meta no-op's reply, accepted on a text line so a connection probe can send
    /// `version` and `mn` together and learn from one round trip whether meta is spoken.
    MetaNoop,
}

/// Who the server blames in an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR`: an unknown command.
    Unknown,
    /// `CLIENT_ERROR <msg>`: a malformed request.
    Client,
    /// `SERVER_ERROR <msg>`: the server could not do it (out of memory, too large, ...).
    Server,
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A single text status line.
    Status(Status),
    /// The items of a text retrieval (possibly none).
    Values(Vec<TextValue>),
    /// `STAT name value` lines closed by `END`.
    Stats(Vec<(String, String)>),
    /// One meta reply.
    Meta(MetaReply),
    /// The replies of a quiet meta batch, without the closing `MN`.
    MetaBatch(Vec<MetaReply>),
    /// Several replies to several pipelined requests, in order.
    Many(Vec<Reply>),
    /// The server reported an error; the connection is still in sync.
    Error(ErrorReply, String),
}

/// The shape of the reply a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// One text line (storage, delete, incr/decr, touch, flush_all, version, verbosity).
    TextLine,
    /// `VALUE` blocks closed by `END`; `cas` says whether each `VALUE` line carries a CAS unique.
    TextValues {
        /// `gets`/`gats` replies carry a CAS unique.
        cas: bool,
    },
    /// `STAT` lines closed by `END`.
    TextStats,
    /// One meta reply (`VA`, `HD`, `EN`, `NF`, `NS`, `EX`, `MN`).
    Meta,
    /// Meta replies up to and including `MN` (a quiet batch closed by `mn`).
    MetaUntilNoop,
    /// `count` replies of the given shape, pipelined.
    Repeat(usize, Box<Expect>),
    /// Replies of these shapes, in this order, pipelined (e.g. a store then a `gets`).
    Sequence(Vec<Expect>),
}

/// The server sent something that is not memcached protocol; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for crate::Error {
    fn from(e: DecodeError) -> Self {
        crate::Error::Protocol {
            server: String::new(),
            detail: e.0,
        }
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// Show a short, printable excerpt of bytes for error messages.
pub(crate) fn excerpt(b: &[u8]) -> String {
    let cut = &b[..b.len().min(64)];
    let mut s = String::with_capacity(cut.len());
    for &c in cut {
        if c.is_ascii_graphic() || c == b' ' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > 64 {
        s.push('…');
    }
    s
}

/// Find a complete line (ending in `\r\n`) at the start of `buf`; returns its length without
/// the CRLF. Errors if no line end appears within `max_line` bytes or a bare LF is seen.
pub(crate) fn find_line(buf: &[u8], max_line: usize) -> Result<Option<usize>, DecodeError> {
    let scan = &buf[..buf.len().min(max_line)];
    match memchr_lf(scan) {
        Some(i) if i > 0 && scan[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => err(format!("line without CR before LF: {}", excerpt(buf))),
        None if buf.len() >= max_line => err(format!(
            "reply line longer than {max_line} bytes: {}",
            excerpt(buf)
        )),
        None => Ok(None),
    }
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Parse an unsigned decimal with no sign, no spaces and no overflow.
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

pub(crate) fn parse_u32(b: &[u8]) -> Option<u32> {
    parse_u64(b).and_then(|n| u32::try_from(n).ok())
}

/// If `line` is an error reply, decode it. The message is what follows `ERROR `, or what
/// follows `CLIENT_ERROR`/`SERVER_ERROR` and one optional space.
fn error_line(line: &[u8]) -> Option<Reply> {
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
    if line == b"ERROR" {
        return Some(Reply::Error(ErrorReply::Unknown, String::new()));
    }
    if let Some(rest) = line.strip_prefix(b"ERROR ") {
        return Some(Reply::Error(ErrorReply::Unknown, text(rest)));
    }
    [
        (&b"CLIENT_ERROR"[..], ErrorReply::Client),
        (b"SERVER_ERROR", ErrorReply::Server),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| {
        let rest = line.strip_prefix(prefix)?;
        Some(Reply::Error(
            kind,
            text(rest.strip_prefix(b" ").unwrap_or(rest)),
        ))
    })
}

/// An error reply line: who is blamed, and the server's text.
pub(crate) type ErrorLine = (ErrorReply, String);

/// An incremental decoder for one reply of a known shape.
///
/// Feed it the connection's read buffer with [`Decoder::decode`] each time bytes arrive. It
/// consumes (advances past) complete parts as it goes, so a large multi-get is parsed once,
/// not re-scanned on every read.
#[derive(Debug)]
pub struct Decoder {
    expect: Expect,
    limits: Limits,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    Values(Vec<TextValue>),
    Stats(Vec<(String, String)>),
    Batch(Vec<MetaReply>),
    Many(Vec<Reply>, Box<Decoder>),
}

impl Decoder {
    /// A decoder for a reply of shape `expect`.
    pub fn new(expect: Expect, limits: Limits) -> Self {
        Decoder {
            expect,
            limits,
            state: State::Start,
        }
    }

    /// The shape this decoder reads.
    pub fn expect(&self) -> &Expect {
        &self.expect
    }

    /// Consume bytes from `buf`. `Ok(None)`: the reply is not complete yet (what was consumed is
    /// kept inside the decoder). `Ok(Some(reply))`: done; bytes after it are left in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        match self.expect.clone() {
            Expect::TextLine => self.text_line(buf),
            Expect::TextValues { cas } => self.text_values(buf, cas),
            Expect::TextStats => self.text_stats(buf),
            Expect::Meta => meta::decode_one(buf, &self.limits).map(|o| o.map(meta_or_error)),
            Expect::MetaUntilNoop => self.meta_batch(buf),
            Expect::Repeat(count, inner) => self.repeat(buf, count, *inner),
            Expect::Sequence(shapes) => self.sequence(buf, shapes),
        }
    }

    fn text_line(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        let Some(n) = find_line(buf, self.limits.max_line)? else {
            return Ok(None);
        };
        let line = buf.split_to(n + 2);
        let line = &line[..n];
        let reply = if let Some(e) = error_line(line) {
            e
        } else {
            Reply::Status(match line {
                b"STORED" => Status::Stored,
                b"NOT_STORED" => Status::NotStored,
                b"EXISTS" => Status::Exists,
                b"NOT_FOUND" => Status::NotFound,
                b"DELETED" => Status::Deleted,
                b"TOUCHED" => Status::Touched,
                b"OK" => Status::Ok,
                b"MN" => Status::MetaNoop,
                _ => {
                    if let Some(v) = line.strip_prefix(b"VERSION ") {
                        Status::Version(String::from_utf8_lossy(v).into_owned())
                    } else if let Some(n) = parse_u64(trim_end_spaces(line)) {
                        // memcached pads incr/decr results with trailing spaces in some versions.
                        Status::Number(n)
                    } else {
                        return err(format!("unexpected reply line: {}", excerpt(line)));
                    }
                }
            })
        };
        Ok(Some(reply))
    }

    fn text_values(&mut self, buf: &mut BytesMut, cas: bool) -> Result<Option<Reply>, DecodeError> {
        loop {
            let Some(n) = find_line(buf, self.limits.max_line)? else {
                return Ok(None);
            };
            if matches!(self.state, State::Start) {
                if let Some(e) = error_line(&buf[..n]) {
                    buf.advance(n + 2);
                    return Ok(Some(e));
                }
                self.state = State::Values(Vec::new());
            }
            let line = &buf[..n];
            if line == b"END" {
                buf.advance(n + 2);
                let State::Values(v) = std::mem::replace(&mut self.state, State::Start) else {
                    unreachable!("state set above")
                };
                return Ok(Some(Reply::Values(v)));
            }
            let Some(rest) = line.strip_prefix(b"VALUE ") else {
                return err(format!("expected VALUE or END, got: {}", excerpt(line)));
            };
            let mut parts = rest.split(|&c| c == b' ');
            let (Some(key), Some(flags), Some(len)) = (parts.next(), parts.next(), parts.next())
            else {
                return err(format!("short VALUE line: {}", excerpt(line)));
            };
            let cas_v = if cas {
                match parts.next().and_then(parse_u64) {
                    Some(c) => Some(c),
                    None => return err(format!("VALUE line without CAS: {}", excerpt(line))),
                }
            } else {
                None
            };
            if parts.next().is_some() || key.is_empty() {
                return err(format!("malformed VALUE line: {}", excerpt(line)));
            }
            let (Some(flags), Some(len)) = (parse_u32(flags), parse_u64(len)) else {
                return err(format!("bad numbers in VALUE line: {}", excerpt(line)));
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > self.limits.max_value_size {
                return err(format!(
                    "server announced a {len}-byte value, over the {}-byte limit",
                    self.limits.max_value_size
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
                return err("value block not terminated by CRLF");
            }
            // One split, no copies: the key and the data are both slices of the block.
            let key_len = key.len();
            let block = buf.split_to(total).freeze();
            let key = block.slice(6..6 + key_len); // after "VALUE "
            let block = block.slice(n + 2..n + 2 + len);
            let State::Values(v) = &mut self.state else {
                unreachable!("state set above")
            };
            if v.len() >= self.limits.max_entries {
                return err("too many values in one reply");
            }
            v.push(TextValue {
                key,
                flags,
                cas: cas_v,
                data: block,
            });
        }
    }

    fn text_stats(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        loop {
            let Some(n) = find_line(buf, self.limits.max_line)? else {
                return Ok(None);
            };
            if matches!(self.state, State::Start) {
                if let Some(e) = error_line(&buf[..n]) {
                    buf.advance(n + 2);
                    return Ok(Some(e));
                }
                self.state = State::Stats(Vec::new());
            }
            let line = buf.split_to(n + 2);
            let line = &line[..n];
            if line == b"END" {
                let State::Stats(v) = std::mem::replace(&mut self.state, State::Start) else {
                    unreachable!("state set above")
                };
                return Ok(Some(Reply::Stats(v)));
            }
            // `stats cachedump` lists its items as `ITEM <key> [<size> b; <time> s]`.
            let Some(rest) = line
                .strip_prefix(b"STAT ")
                .or_else(|| line.strip_prefix(b"ITEM "))
            else {
                return err(format!(
                    "expected STAT, ITEM or END, got: {}",
                    excerpt(line)
                ));
            };
            let (name, value) = match rest.iter().position(|&c| c == b' ') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            let State::Stats(v) = &mut self.state else {
                unreachable!("state set above")
            };
            if v.len() >= self.limits.max_entries {
                return err("too many STAT lines in one reply");
            }
            v.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }

    fn meta_batch(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        if matches!(self.state, State::Start) {
            self.state = State::Batch(Vec::new());
        }
        loop {
            let Some(one) = meta::decode_one(buf, &self.limits)? else {
                return Ok(None);
            };
            let State::Batch(v) = &mut self.state else {
                unreachable!("state set above")
            };
            match one {
                Ok(r) if r.status == MetaStatus::Noop => {
                    let State::Batch(v) = std::mem::replace(&mut self.state, State::Start) else {
                        unreachable!("state set above")
                    };
                    return Ok(Some(Reply::MetaBatch(v)));
                }
                Ok(r) => {
                    if v.len() >= self.limits.max_entries {
                        return err("too many replies in one quiet batch");
                    }
                    v.push(r)
                }
                // An error inside a batch answers one request; keep it in order as an entry.
                Err((kind, msg)) => {
                    if v.len() >= self.limits.max_entries {
                        return err("too many replies in one quiet batch");
                    }
                    v.push(MetaReply::error(kind, msg))
                }
            }
        }
    }

    fn sequence(
        &mut self,
        buf: &mut BytesMut,
        shapes: Vec<Expect>,
    ) -> Result<Option<Reply>, DecodeError> {
        let Some(first) = shapes.first() else {
            return Ok(Some(Reply::Many(Vec::new())));
        };
        if !matches!(self.state, State::Many(..)) {
            let dec = Box::new(Decoder::new(first.clone(), self.limits));
            self.state = State::Many(Vec::with_capacity(shapes.len()), dec);
        }
        loop {
            let State::Many(done, dec) = &mut self.state else {
                unreachable!("set above")
            };
            let Some(r) = dec.decode(buf)? else {
                return Ok(None);
            };
            done.push(r);
            match shapes.get(done.len()) {
                Some(next) => **dec = Decoder::new(next.clone(), self.limits),
                None => {
                    let State::Many(done, _) = std::mem::replace(&mut self.state, State::Start)
                    else {
                        unreachable!("matched above")
                    };
                    return Ok(Some(Reply::Many(done)));
                }
            }
        }
    }

    fn repeat(
        &mut self,
        buf: &mut BytesMut,
        count: usize,
        inner: Expect,
    ) -> Result<Option<Reply>, DecodeError> {
        if count == 0 {
            return Ok(Some(Reply::Many(Vec::new())));
        }
        if matches!(self.state, State::Start) {
            self.state = State::Many(
                Vec::with_capacity(count.min(1024)),
                Box::new(Decoder::new(inner, self.limits)),
            );
        }
        loop {
            let State::Many(done, dec) = &mut self.state else {
                unreachable!("state set above")
            };
            let Some(r) = dec.decode(buf)? else {
                return Ok(None);
            };
            done.push(r);
            if done.len() == count {
                let State::Many(done, _) = std::mem::replace(&mut self.state, State::Start) else {
                    unreachable!("state set above")
                };
                return Ok(Some(Reply::Many(done)));
            }
        }
    }
}

fn meta_or_error(r: Result<MetaReply, (ErrorReply, String)>) -> Reply {
    match r {
        Ok(m) => Reply::Meta(m),
        Err((k, m)) => Reply::Error(k, m),
    }
}

fn trim_end_spaces(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests;
