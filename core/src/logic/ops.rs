//! What each client call sends and what its reply means. No I/O.
//!
//! Every call of the Rust API is an [`Op`]: it encodes its request for the connection's
//! [`Dialect`] and turns the decoded [`Reply`] into a typed result. Both drivers run ops the same
//! way (route, encode, round trip, finish), so the meaning of every reply is decided here once.

use crate::error::Error;
use crate::key;
use crate::protocol::meta::{self, MetaKey};
use crate::protocol::text::{self, Retrieval, StoreMode};
use crate::protocol::{
    Dialect, ErrorReply, Expect, MetaReply, MetaStatus, Reply, Status, TextValue,
};
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;

/// A value read from memcached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The stored bytes.
    pub data: Bytes,
    /// The client flags stored with it (type/serializer bits, by convention).
    pub flags: u32,
    /// The CAS unique, when it was asked for (`gets`, `gats`, [`crate::Client::gets`]).
    pub cas: Option<u64>,
    /// The remaining TTL in seconds (-1: no expiry), when it was asked for (meta protocol
    /// only; replication uses it to give repaired copies the winner's lifetime).
    pub ttl: Option<i64>,
}

/// What an op needs to know about the connection it runs on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The connection's protocol.
    pub dialect: Dialect,
    /// The key prefix ([`crate::Config::key_prefix`]).
    pub prefix: &'a [u8],
    /// The value size limit.
    pub max_value_size: usize,
    /// Keys outside the text rules are sent base64-encoded ([`crate::Config::binary_keys`]).
    pub binary_keys: bool,
}

impl Ctx<'_> {
    /// The key as sent on the wire, checked against the key rules.
    pub fn wire_key<'k>(&self, k: &'k [u8]) -> Result<Cow<'k, [u8]>, Error> {
        if k.is_empty() {
            return Err(Error::InvalidKey {
                reason: crate::error::KeyProblem::Empty,
            });
        }
        let wk = if self.prefix.is_empty() {
            Cow::Borrowed(k)
        } else {
            let mut v = Vec::with_capacity(self.prefix.len() + k.len());
            v.extend_from_slice(self.prefix);
            v.extend_from_slice(k);
            Cow::Owned(v)
        };
        if let Err(e) = key::validate(&wk) {
            if !self.binary_keys {
                return Err(e);
            }
            key::validate_binary(&wk)?;
            if self.dialect != Dialect::Meta {
                return Err(Error::Unsupported {
                    server: String::new(),
                    feature: "keys with spaces or control bytes over the text protocol (binary \
                              keys need the meta protocol: use protocol auto or meta)",
                });
            }
        }
        Ok(wk)
    }

    /// A checked wire key as a meta key: base64 (`b`) when it is outside the text rules.
    pub fn meta_key<'k>(&self, wk: &'k [u8]) -> MetaKey<'k> {
        if self.binary_keys && key::validate(wk).is_err() {
            MetaKey::Binary(wk)
        } else {
            MetaKey::Text(wk)
        }
    }

    /// Whether any of these checked wire keys must go base64-encoded.
    fn any_binary<K: AsRef<[u8]>>(&self, wire: &[K]) -> bool {
        self.binary_keys && wire.iter().any(|k| key::validate(k.as_ref()).is_err())
    }

    fn check_value(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.max_value_size {
            return Err(Error::ValueTooLarge {
                size: data.len(),
                max: self.max_value_size,
            });
        }
        Ok(())
    }
}

/// One request/reply exchange with one server.
pub trait Op {
    /// The typed result.
    type Output;
    /// Write the request into `buf` and say what reply to expect. On error nothing was written.
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error>;
    /// Interpret the reply.
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<Self::Output, Error>;
}

/// Turn a reply the op did not expect into an error (server errors keep their text).
pub fn unexpected(reply: Reply) -> Error {
    match reply {
        Reply::Error(ErrorReply::Server, m) => Error::Server {
            server: String::new(),
            message: m,
        },
        Reply::Error(ErrorReply::Client, m) => Error::Client {
            server: String::new(),
            message: m,
        },
        Reply::Error(ErrorReply::Unknown, m) => Error::Client {
            server: String::new(),
            message: if m.is_empty() {
                "ERROR (command unknown to the server)".into()
            } else {
                m
            },
        },
        Reply::Meta(MetaReply {
            status: MetaStatus::Error(k, m),
            ..
        }) => unexpected(Reply::Error(k, m)),
        other => Error::Protocol {
            server: String::new(),
            detail: format!("unexpected reply {other:?}"),
        },
    }
}

fn meta_only(ctx: &Ctx<'_>) -> Result<(), Error> {
    if ctx.dialect != Dialect::Meta {
        return Err(Error::Unsupported {
            server: String::new(),
            feature: "the meta protocol",
        });
    }
    Ok(())
}

fn meta_value(m: MetaReply) -> Value {
    Value {
        data: m.value.unwrap_or_default(),
        flags: m.flags.client_flags.unwrap_or(0),
        cas: m.flags.cas,
        ttl: m.flags.ttl,
    }
}

fn mismatch(detail: String) -> Error {
    Error::Protocol {
        server: String::new(),
        detail,
    }
}

/// Prove a text retrieval reply answers a request for `wire` (the key as sent): at most one
/// `VALUE` block, naming that key. A reply for another key (a desynchronised stream, a
/// process sharing its parent's socket) is a protocol error, never a value.
fn own_text_value(wire: &[u8], values: Vec<TextValue>) -> Result<Option<TextValue>, Error> {
    let mut it = values.into_iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(mismatch(format!(
            "a get of {} returned more than one value",
            crate::protocol::excerpt(wire)
        )));
    }
    match first {
        Some(t) if t.key[..] != *wire => Err(mismatch(format!(
            "a get of {} returned the value of {}",
            crate::protocol::excerpt(wire),
            crate::protocol::excerpt(&t.key)
        ))),
        other => Ok(other),
    }
}

/// Prove a meta reply answers a request for `wire` with opaque token `opaque`: an echoed key
/// (`k`) must be that key, and an opaque token must be the one sent (none if none was sent).
fn own_meta_reply(wire: &[u8], opaque: Option<u32>, m: &MetaReply) -> Result<(), Error> {
    if let Some(k) = &m.flags.key {
        // Text echoes compare in place; only base64 ones are decoded.
        let same = if m.flags.base64 {
            m.flags.decoded_key().as_deref() == Some(wire)
        } else {
            k[..] == *wire
        };
        if !same {
            return Err(mismatch(format!(
                "a meta request for {} got the reply for {}",
                crate::protocol::excerpt(wire),
                crate::protocol::excerpt(k)
            )));
        }
    }
    if m.flags.opaque.is_some() && m.flags.opaque != opaque {
        return Err(mismatch(format!(
            "a meta reply carries opaque token {:?}, the request sent {opaque:?}",
            m.flags.opaque
        )));
    }
    Ok(())
}

/// Whether a meta get asks for the key echo: for text keys. Not for binary (base64) keys:
/// memcached 1.6.18 echoes the raw bytes of an item rewritten by append/prepend instead of
/// their base64 (measured: `VA 2 f0 kp:a b\0\x01\r\n\xff`), which would break the reply
/// line; those replies are matched by position (and, in batches, by opaque token) only.
fn echo_key(ctx: &Ctx<'_>, wire: &[u8]) -> bool {
    matches!(ctx.meta_key(wire), MetaKey::Text(_))
}

/// [`own_meta_reply`] for a single-key op without an opaque token, on any reply.
fn own_reply(ctx: &Ctx<'_>, key: &[u8], reply: Reply) -> Result<Reply, Error> {
    if let Reply::Meta(m) = &reply {
        own_meta_reply(&ctx.wire_key(key)?, None, m)?;
    }
    Ok(reply)
}

/// `get`/`gets`/`gat`/`gats` of one key.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Return the CAS unique.
    pub cas: bool,
    /// Also set a new TTL (get-and-touch).
    pub touch: Option<u32>,
}

impl Op for Get<'_> {
    type Output = Option<Value>;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        match ctx.dialect {
            Dialect::Text => {
                let cmd = match (self.cas, self.touch) {
                    (false, None) => Retrieval::Get,
                    (true, None) => Retrieval::Gets,
                    (false, Some(t)) => Retrieval::Gat(t),
                    (true, Some(t)) => Retrieval::Gats(t),
                };
                text::retrieval(buf, cmd, &[&*k])
            }
            Dialect::Meta => meta::get(
                buf,
                ctx.meta_key(&k),
                &meta::MetaGet {
                    value: true,
                    client_flags: true,
                    cas: self.cas,
                    touch: self.touch,
                    // The key echo proves the value is this key's (see `own_meta_reply`).
                    key: echo_key(ctx, &k),
                    ..Default::default()
                },
            ),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<Option<Value>, Error> {
        let wire = ctx.wire_key(self.key)?;
        match reply {
            Reply::Values(v) => Ok(own_text_value(&wire, v)?.map(|t| Value {
                data: t.data,
                flags: t.flags,
                cas: t.cas,
                ttl: None,
            })),
            Reply::Meta(m) if m.status == MetaStatus::Value => {
                own_meta_reply(&wire, None, &m)?;
                if m.flags.key.is_none() && echo_key(ctx, &wire) {
                    return Err(mismatch(format!(
                        "a meta get of {} got a value without its key echo",
                        crate::protocol::excerpt(&wire)
                    )));
                }
                Ok(Some(meta_value(m)))
            }
            Reply::Meta(m) if m.status == MetaStatus::Miss => Ok(None),
            other => Err(unexpected(other)),
        }
    }
}

/// A store: set, add, replace, append, prepend or cas.
#[derive(Debug, Clone, Copy)]
pub struct Store<'a> {
    /// Which store.
    pub mode: StoreMode,
    /// The key.
    pub key: &'a [u8],
    /// The data.
    pub data: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiration (memcached's exptime: seconds, or a Unix time when over 30 days).
    pub ttl: u32,
}

fn meta_set_opts(mode: StoreMode, flags: u32, ttl: u32) -> meta::MetaSet {
    let (m, cas) = match mode {
        StoreMode::Set => (meta::SetMode::Set, None),
        StoreMode::Add => (meta::SetMode::Add, None),
        StoreMode::Replace => (meta::SetMode::Replace, None),
        StoreMode::Append => (meta::SetMode::Append, None),
        StoreMode::Prepend => (meta::SetMode::Prepend, None),
        StoreMode::Cas(c) => (meta::SetMode::Set, Some(c)),
    };
    meta::MetaSet {
        mode: m,
        client_flags: flags,
        ttl,
        compare_cas: cas,
        ..Default::default()
    }
}

fn store_result(reply: Reply) -> Result<(), Error> {
    match reply {
        Reply::Status(Status::Stored) => Ok(()),
        Reply::Status(Status::NotStored) => Err(Error::NotStored),
        Reply::Status(Status::Exists) => Err(Error::Exists),
        Reply::Status(Status::NotFound) => Err(Error::NotFound),
        Reply::Meta(m) => match m.status {
            MetaStatus::Stored => Ok(()),
            MetaStatus::NotStored => Err(Error::NotStored),
            MetaStatus::Exists => Err(Error::Exists),
            MetaStatus::NotFound => Err(Error::NotFound),
            _ => Err(too_large(unexpected(Reply::Meta(m)))),
        },
        other => Err(too_large(unexpected(other))),
    }
}

/// memcached's refusal of an item over its `-I` limit (value, key and item header together:
/// a value just under the configured `max_value_size` can still be refused) is the same typed
/// error as the client's own size check, so callers handle one error, as libmemcached's
/// `MEMCACHED_E2BIG` covers both. The size is filled in by ops that know it.
fn too_large(e: Error) -> Error {
    match e {
        Error::Server { message, .. } if message.starts_with("object too large") => {
            Error::ValueTooLarge { size: 0, max: 0 }
        }
        e => e,
    }
}

/// [`too_large`] with the value's size.
fn sized(r: Result<(), Error>, len: usize) -> Result<(), Error> {
    r.map_err(|e| match e {
        Error::ValueTooLarge { max: 0, .. } => Error::ValueTooLarge { size: len, max: 0 },
        e => e,
    })
}

impl Op for Store<'_> {
    type Output = ();
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        ctx.check_value(self.data)?;
        match ctx.dialect {
            Dialect::Text => {
                text::store(buf, self.mode, &k, self.flags, self.ttl, self.data, false)
                    .map(|e| e.unwrap_or(Expect::TextLine))
            }
            Dialect::Meta => meta::set(
                buf,
                ctx.meta_key(&k),
                self.data,
                &meta_set_opts(self.mode, self.flags, self.ttl),
            ),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<(), Error> {
        let reply = own_reply(ctx, self.key, reply)?;
        sized(store_result(reply), self.data.len())
    }
}

/// `delete`: true when the key existed.
#[derive(Debug, Clone, Copy)]
pub struct Delete<'a> {
    /// The key.
    pub key: &'a [u8],
}

fn delete_result(reply: Reply) -> Result<bool, Error> {
    match reply {
        Reply::Status(Status::Deleted) => Ok(true),
        Reply::Status(Status::NotFound) => Ok(false),
        Reply::Meta(m) if m.status == MetaStatus::Stored => Ok(true),
        Reply::Meta(m) if m.status == MetaStatus::NotFound => Ok(false),
        other => Err(unexpected(other)),
    }
}

impl Op for Delete<'_> {
    type Output = bool;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        match ctx.dialect {
            Dialect::Text => text::delete(buf, &k, false).map(|e| e.unwrap_or(Expect::TextLine)),
            Dialect::Meta => meta::delete(buf, ctx.meta_key(&k), &meta::MetaDelete::default()),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<bool, Error> {
        delete_result(own_reply(ctx, self.key, reply)?)
    }
}

/// `incr`/`decr`: the new value, or `None` when the key is missing. memcached decrements stop
/// at 0 and increments wrap at 2^64.
#[derive(Debug, Clone, Copy)]
pub struct Arith<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Increment (true) or decrement.
    pub incr: bool,
    /// The amount.
    pub delta: u64,
}

impl Op for Arith<'_> {
    type Output = Option<u64>;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        match ctx.dialect {
            Dialect::Text => text::incr_decr(buf, self.incr, &k, self.delta, false)
                .map(|e| e.unwrap_or(Expect::TextLine)),
            Dialect::Meta => meta::arithmetic(
                buf,
                ctx.meta_key(&k),
                &meta::MetaArithmetic {
                    incr: self.incr,
                    delta: self.delta,
                    ..Default::default()
                },
            ),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<Option<u64>, Error> {
        match own_reply(ctx, self.key, reply)? {
            Reply::Status(Status::Number(n)) => Ok(Some(n)),
            Reply::Status(Status::NotFound) => Ok(None),
            Reply::Meta(m) if m.status == MetaStatus::NotFound => Ok(None),
            Reply::Meta(m) if m.status == MetaStatus::Value => {
                let v = m.value.unwrap_or_default();
                crate::protocol::parse_u64(v.trim_ascii())
                    .map(Some)
                    .ok_or_else(|| Error::Protocol {
                        server: String::new(),
                        detail: format!(
                            "ma returned a non-number {:?}",
                            crate::protocol::excerpt(&v)
                        ),
                    })
            }
            other => Err(unexpected(other)),
        }
    }
}

/// `touch`: set a new TTL; true when the key existed.
#[derive(Debug, Clone, Copy)]
pub struct Touch<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The new TTL.
    pub ttl: u32,
}

impl Op for Touch<'_> {
    type Output = bool;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        match ctx.dialect {
            Dialect::Text => {
                text::touch(buf, &k, self.ttl, false).map(|e| e.unwrap_or(Expect::TextLine))
            }
            Dialect::Meta => meta::get(
                buf,
                ctx.meta_key(&k),
                &meta::MetaGet {
                    touch: Some(self.ttl),
                    ..Default::default()
                },
            ),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<bool, Error> {
        match own_reply(ctx, self.key, reply)? {
            Reply::Status(Status::Touched) => Ok(true),
            Reply::Status(Status::NotFound) => Ok(false),
            Reply::Meta(m) if m.status == MetaStatus::Stored => Ok(true),
            Reply::Meta(m) if m.status == MetaStatus::Miss => Ok(false),
            other => Err(unexpected(other)),
        }
    }
}

/// `version`.
#[derive(Debug, Clone, Copy)]
pub struct Version;

impl Op for Version {
    type Output = String;
    fn encode(&self, _: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        Ok(text::version(buf))
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<String, Error> {
        match reply {
            Reply::Status(Status::Version(v)) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

/// `stats [group]`.
#[derive(Debug, Clone, Copy)]
pub struct Stats<'a> {
    /// `None` for general stats, or a group such as `settings`, `slabs`, `items`.
    pub group: Option<&'a str>,
}

impl Op for Stats<'_> {
    type Output = Vec<(String, String)>;
    fn encode(&self, _: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        text::stats(buf, self.group)
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<Self::Output, Error> {
        match reply {
            Reply::Stats(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

/// `flush_all [delay]`.
#[derive(Debug, Clone, Copy)]
pub struct FlushAll {
    /// Seconds until the flush takes effect.
    pub delay: Option<u32>,
}

impl Op for FlushAll {
    type Output = ();
    fn encode(&self, _: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        Ok(text::flush_all(buf, self.delay, false).unwrap_or(Expect::TextLine))
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<(), Error> {
        match reply {
            Reply::Status(Status::Ok) => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// `cache_memlimit <megabytes>`: the server's item memory limit, changed at run time.
#[derive(Debug, Clone, Copy)]
pub struct CacheMemlimit {
    /// The new limit in megabytes.
    pub megabytes: u32,
}

impl Op for CacheMemlimit {
    type Output = ();
    fn encode(&self, _: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        Ok(text::cache_memlimit(buf, self.megabytes))
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<(), Error> {
        match reply {
            Reply::Status(Status::Ok) => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// A raw meta command; the reply is returned as is (error replies become errors). The quiet
/// flag is cleared: a single quiet command could leave nothing to wait for.
#[derive(Debug, Clone, Copy)]
pub enum Meta<'a> {
    /// `mg`
    Get(MetaKey<'a>, meta::MetaGet),
    /// `ms`
    Set(MetaKey<'a>, &'a [u8], meta::MetaSet),
    /// `md`
    Delete(MetaKey<'a>, meta::MetaDelete),
    /// `ma`
    Arithmetic(MetaKey<'a>, meta::MetaArithmetic),
    /// `mn`
    Noop,
}

impl Op for Meta<'_> {
    type Output = MetaReply;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        meta_only(ctx)?;
        let key = match *self {
            Meta::Get(k, _) | Meta::Set(k, _, _) | Meta::Delete(k, _) | Meta::Arithmetic(k, _) => {
                Some(k)
            }
            Meta::Noop => None,
        };
        // The key prefix applies to text keys; binary keys are sent as given.
        let wk = match key {
            Some(MetaKey::Text(t)) => Some(ctx.wire_key(t)?.into_owned()),
            _ => None,
        };
        match *self {
            Meta::Get(k, mut o) => {
                o.quiet = false;
                meta::get(buf, rekey(ctx, k, &wk), &o)
            }
            Meta::Set(k, data, mut o) => {
                ctx.check_value(data)?;
                o.quiet = false;
                meta::set(buf, rekey(ctx, k, &wk), data, &o)
            }
            Meta::Delete(k, mut o) => {
                o.quiet = false;
                meta::delete(buf, rekey(ctx, k, &wk), &o)
            }
            Meta::Arithmetic(k, mut o) => {
                o.quiet = false;
                meta::arithmetic(buf, rekey(ctx, k, &wk), &o)
            }
            Meta::Noop => Ok(meta::noop(buf)),
        }
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<MetaReply, Error> {
        let sent = match self {
            Meta::Get(_, o) => o.opaque,
            Meta::Set(_, _, o) => o.opaque,
            Meta::Delete(_, o) => o.opaque,
            Meta::Arithmetic(_, o) => o.opaque,
            Meta::Noop => None,
        };
        match reply {
            Reply::Meta(m) if m.flags.opaque.is_some() && m.flags.opaque != sent => {
                Err(mismatch(format!(
                    "a meta reply carries opaque token {:?}, the request sent {sent:?}",
                    m.flags.opaque
                )))
            }
            Reply::Meta(m) if !matches!(m.status, MetaStatus::Error(..)) => Ok(m),
            other => Err(unexpected(other)),
        }
    }
}

fn rekey<'k>(ctx: &Ctx<'_>, k: MetaKey<'k>, wk: &'k Option<Vec<u8>>) -> MetaKey<'k> {
    match (k, wk) {
        (MetaKey::Text(_), Some(w)) => ctx.meta_key(w),
        _ => k,
    }
}

/// A multi-get of many keys on one server: one `get` line per chunk of keys (text) or a quiet
/// `mg` batch closed by `mn` (meta). The result is aligned with `keys`.
#[derive(Debug, Clone, Copy)]
pub struct GetMulti<'a, K> {
    /// The keys, all on this op's server.
    pub keys: &'a [K],
    /// Return CAS uniques.
    pub cas: bool,
    /// Return remaining TTLs (meta protocol; ignored on text).
    pub ttl: bool,
}

/// Longest text `get` line the client sends; memcached reads longer `get` lines too, but other
/// commands are limited to 2048 bytes, so stay well below that for `gat`.
const TEXT_GET_LINE: usize = 1900;

impl<K: AsRef<[u8]>> Op for GetMulti<'_, K> {
    type Output = Vec<Option<Value>>;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let wire: Vec<Cow<'_, [u8]>> = self
            .keys
            .iter()
            .map(|k| ctx.wire_key(k.as_ref()))
            .collect::<Result<_, _>>()?;
        // Text `get`/`gets` even on meta connections: memcached 1.6.18 spends about half the
        // CPU on one 100-key `get` line that it spends on 100 quiet `mg` lines (measured,
        // docs/benchmarks.md). Only the remaining TTL, which replication's repair needs,
        // requires meta, and so do binary keys (base64 `mg`; the wire keys were checked).
        match (ctx.dialect, self.ttl || ctx.any_binary(&wire)) {
            (Dialect::Text, _) | (Dialect::Meta, false) => {
                let cmd = if self.cas {
                    Retrieval::Gets
                } else {
                    Retrieval::Get
                };
                let mut chunks = 0;
                let mut start = 0;
                let mut len = 0;
                for (i, k) in wire.iter().enumerate() {
                    if i > start && len + k.len() + 1 > TEXT_GET_LINE {
                        text::retrieval(buf, cmd, &wire[start..i])?;
                        chunks += 1;
                        start = i;
                        len = 0;
                    }
                    len += k.len() + 1;
                }
                text::retrieval(buf, cmd, &wire[start..])?;
                chunks += 1;
                Ok(Expect::Repeat(
                    chunks,
                    Box::new(Expect::TextValues { cas: self.cas }),
                ))
            }
            (Dialect::Meta, true) => {
                let o = meta::MetaGet {
                    value: true,
                    client_flags: true,
                    cas: self.cas,
                    ttl: self.ttl,
                    quiet: true,
                    // The opaque token places a reply, the key echo proves it.
                    ..Default::default()
                };
                for (i, k) in wire.iter().enumerate() {
                    meta::get(
                        buf,
                        ctx.meta_key(k),
                        &meta::MetaGet {
                            opaque: Some(i as u32),
                            key: echo_key(ctx, k),
                            ..o
                        },
                    )?;
                }
                meta::noop(buf);
                Ok(Expect::MetaUntilNoop)
            }
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<Self::Output, Error> {
        let mut out = vec![None; self.keys.len()];
        match reply {
            Reply::Many(chunks) => {
                // memcached answers a multi-key get in request order, skipping misses (a key
                // asked twice comes back twice), so one forward walk places every value.
                let mut next = 0;
                for chunk in chunks {
                    let Reply::Values(vals) = chunk else {
                        return Err(unexpected(chunk));
                    };
                    for v in vals {
                        // The prefix is checked once per value, not once per candidate key.
                        let Some(bare) = v.key.strip_prefix(ctx.prefix) else {
                            return Err(Error::Protocol {
                                server: String::new(),
                                detail: format!(
                                    "multi-get returned a key without the client's prefix: {}",
                                    crate::protocol::excerpt(&v.key)
                                ),
                            });
                        };
                        let is_key = |k: &K| k.as_ref() == bare;
                        let Some(j) = self.keys[next..].iter().position(is_key) else {
                            return Err(Error::Protocol {
                                server: String::new(),
                                detail: format!(
                                    "multi-get returned a key not asked for, or out of order: {}",
                                    crate::protocol::excerpt(&v.key)
                                ),
                            });
                        };
                        out[next + j] = Some(Value {
                            data: v.data,
                            flags: v.flags,
                            cas: v.cas,
                            ttl: None,
                        });
                        next += j + 1;
                    }
                }
                Ok(out)
            }
            Reply::MetaBatch(replies) => {
                for m in replies {
                    match m.status {
                        MetaStatus::Value => {
                            let i = opaque_index(&m, out.len())?;
                            let wire = ctx.wire_key(self.keys[i].as_ref())?;
                            own_meta_reply(&wire, m.flags.opaque, &m)?;
                            if m.flags.key.is_none() && echo_key(ctx, &wire) {
                                return Err(mismatch(
                                    "a batch value without its key echo".to_string(),
                                ));
                            }
                            out[i] = Some(meta_value(m));
                        }
                        MetaStatus::Miss => {}
                        _ => return Err(unexpected(Reply::Meta(m))),
                    }
                }
                Ok(out)
            }
            other => Err(unexpected(other)),
        }
    }
}

fn opaque_index(m: &MetaReply, n: usize) -> Result<usize, Error> {
    match m.flags.opaque {
        Some(o) if (o as usize) < n => Ok(o as usize),
        _ => Err(Error::Protocol {
            server: String::new(),
            detail: format!(
                "batch reply with a missing or unknown opaque token: {:?}",
                m.flags.opaque
            ),
        }),
    }
}

/// One item of a [`StoreItems`] batch.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The data.
    pub data: &'a [u8],
    /// Which store; `Cas(unique)` makes this item a compare-and-swap.
    pub mode: StoreMode,
    /// Client flags.
    pub flags: u32,
    /// Expiration.
    pub ttl: u32,
}

/// Many stores on one server, pipelined: quiet `ms` lines closed by `mn` (meta) or plain
/// pipelined stores (text). Each item has its own mode, flags and TTL. The result is aligned
/// with `items`: every item reports whether it was stored.
#[derive(Debug, Clone, Copy)]
pub struct StoreItems<'a, I = Item<'a>> {
    /// The items, all on this op's server.
    pub items: &'a [I],
}

/// An item a [`StoreItems`] batch can store: [`Item`] itself, or an owning item that lends
/// one (the machines' `machine::Item`), so a batch is encoded without copying its items.
pub trait AsItem {
    /// The item, borrowed.
    fn item(&self) -> Item<'_>;
}

impl AsItem for Item<'_> {
    fn item(&self) -> Item<'_> {
        *self
    }
}

impl<I: AsItem> Op for StoreItems<'_, I> {
    type Output = Vec<Result<(), Error>>;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        for it in self.items {
            let it = it.item();
            ctx.wire_key(it.key)?;
            ctx.check_value(it.data)?;
        }
        match ctx.dialect {
            Dialect::Text => {
                for it in self.items {
                    let it = it.item();
                    let k = ctx.wire_key(it.key)?;
                    text::store(buf, it.mode, &k, it.flags, it.ttl, it.data, false)?;
                }
                Ok(Expect::Repeat(self.items.len(), Box::new(Expect::TextLine)))
            }
            Dialect::Meta => {
                // Not quiet: memcached's error lines (`SERVER_ERROR object too large for
                // cache`, out of memory) carry no opaque token, so in a quiet batch an error
                // could not be pinned on its item. With a reply per item, in request order,
                // every reply is placed by position (and checked against its opaque).
                for (i, it) in self.items.iter().enumerate() {
                    let it = it.item();
                    let k = ctx.wire_key(it.key)?;
                    let o = meta::MetaSet {
                        quiet: false,
                        opaque: Some(i as u32),
                        ..meta_set_opts(it.mode, it.flags, it.ttl)
                    };
                    meta::set(buf, ctx.meta_key(&k), it.data, &o)?;
                }
                meta::noop(buf);
                Ok(Expect::MetaUntilNoop)
            }
        }
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<Self::Output, Error> {
        batch_results(reply, self.items.len(), store_result, || Ok(()))
    }
}

/// Many deletes on one server, pipelined. `Ok(true)` when the key existed.
#[derive(Debug, Clone, Copy)]
pub struct DeleteMulti<'a, K> {
    /// The keys, all on this op's server.
    pub keys: &'a [K],
}

impl<K: AsRef<[u8]>> Op for DeleteMulti<'_, K> {
    type Output = Vec<Result<bool, Error>>;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        for k in self.keys {
            ctx.wire_key(k.as_ref())?;
        }
        match ctx.dialect {
            Dialect::Text => {
                for k in self.keys {
                    text::delete(buf, &ctx.wire_key(k.as_ref())?, false)?;
                }
                Ok(Expect::Repeat(self.keys.len(), Box::new(Expect::TextLine)))
            }
            Dialect::Meta => {
                for (i, k) in self.keys.iter().enumerate() {
                    let o = meta::MetaDelete {
                        quiet: true,
                        opaque: Some(i as u32),
                        ..Default::default()
                    };
                    meta::delete(buf, ctx.meta_key(&ctx.wire_key(k.as_ref())?), &o)?;
                }
                meta::noop(buf);
                Ok(Expect::MetaUntilNoop)
            }
        }
    }
    fn finish(self, _: &Ctx<'_>, reply: Reply) -> Result<Self::Output, Error> {
        batch_results(reply, self.keys.len(), delete_result, || Ok(true))
    }
}

/// Spread the replies of a pipelined batch over its items. Quiet meta batches only answer for
/// items that did not succeed; the others get `quiet_ok`.
fn batch_results<T>(
    reply: Reply,
    n: usize,
    one: impl Fn(Reply) -> Result<T, Error>,
    quiet_ok: impl Fn() -> Result<T, Error>,
) -> Result<Vec<Result<T, Error>>, Error> {
    match reply {
        Reply::Many(rs) if rs.len() == n => Ok(rs.into_iter().map(one).collect()),
        // A reply for every request (a batch sent without the quiet flag): in request order,
        // so error lines, which carry no opaque token, belong to their position.
        Reply::MetaBatch(rs) if rs.len() == n => rs
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.status {
                MetaStatus::Error(k, msg) => Ok(one(Reply::Error(k, msg))),
                _ if m.flags.opaque.is_some() && opaque_index(&m, n)? != i => {
                    Err(Error::Protocol {
                        server: String::new(),
                        detail: format!("meta reply {i} carries another request's opaque token"),
                    })
                }
                _ => Ok(one(Reply::Meta(m))),
            })
            .collect(),
        Reply::MetaBatch(rs) => {
            let mut out: Vec<Option<Result<T, Error>>> = (0..n).map(|_| None).collect();
            for m in rs {
                if let MetaStatus::Error(k, msg) = m.status {
                    // An error line carries no opaque token; it cannot be placed. Fail the batch.
                    return Err(unexpected(Reply::Error(k, msg)));
                }
                let i = opaque_index(&m, n)?;
                out[i] = Some(one(Reply::Meta(m)));
            }
            Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(&quiet_ok))
                .collect())
        }
        other => Err(unexpected(other)),
    }
}

/// Delete a key only if its CAS unique is still `cas`: meta `md <k> C<cas>`; on text-only
/// servers `cas` with an expiry in the past, which memcached treats as expired at once.
/// `Ok(())` deleted; [`Error::Exists`] it changed; [`Error::NotFound`] it is gone.
#[derive(Debug, Clone, Copy)]
pub struct CasDelete<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The unique it must still have.
    pub cas: u64,
}

impl Op for CasDelete<'_> {
    type Output = ();
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        match ctx.dialect {
            Dialect::Meta => meta::delete(
                buf,
                ctx.meta_key(&k),
                &meta::MetaDelete {
                    compare_cas: Some(self.cas),
                    ..Default::default()
                },
            ),
            Dialect::Text => text::store(
                buf,
                StoreMode::Cas(self.cas),
                &k,
                0,
                crate::logic::recipe::EXPIRED,
                b"",
                false,
            )
            .map(|e| e.unwrap_or(Expect::TextLine)),
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<(), Error> {
        match own_reply(ctx, self.key, reply)? {
            Reply::Meta(m) if m.status == MetaStatus::Stored => Ok(()),
            other => store_result(other),
        }
    }
}

/// A store that also returns the item's new CAS unique: meta `ms ... c`; on text servers
/// the store then a `gets` in the same pipelined request. Used by locks, whose release must
/// compare against the unique their acquisition wrote.
#[derive(Debug, Clone, Copy)]
pub struct StoreReturningCas<'a> {
    /// The store (`Add` to acquire, `Cas(unique)` to extend).
    pub mode: StoreMode,
    /// The key.
    pub key: &'a [u8],
    /// The data.
    pub data: &'a [u8],
    /// Expiration.
    pub ttl: u32,
}

impl Op for StoreReturningCas<'_> {
    type Output = u64;
    fn encode(&self, ctx: &Ctx<'_>, buf: &mut BytesMut) -> Result<Expect, Error> {
        let k = ctx.wire_key(self.key)?;
        ctx.check_value(self.data)?;
        match ctx.dialect {
            Dialect::Meta => {
                let o = meta::MetaSet {
                    return_cas: true,
                    ..meta_set_opts(self.mode, 0, self.ttl)
                };
                meta::set(buf, ctx.meta_key(&k), self.data, &o)
            }
            Dialect::Text => {
                text::store(buf, self.mode, &k, 0, self.ttl, self.data, false)?;
                text::retrieval(buf, Retrieval::Gets, &[&*k])?;
                Ok(text_store_then_gets())
            }
        }
    }
    fn finish(self, ctx: &Ctx<'_>, reply: Reply) -> Result<u64, Error> {
        let wire = ctx.wire_key(self.key)?;
        if let Reply::Meta(m) = &reply {
            own_meta_reply(&wire, None, m)?;
        }
        match reply {
            Reply::Meta(m) if m.status == MetaStatus::Stored => {
                m.flags.cas.ok_or_else(|| Error::Protocol {
                    server: String::new(),
                    detail: "ms c returned no CAS".into(),
                })
            }
            Reply::Many(mut rs) if rs.len() == 2 => {
                let gets = rs.pop().expect("two replies");
                store_result(rs.pop().expect("two replies"))?;
                match gets {
                    Reply::Values(v) => match own_text_value(&wire, v)? {
                        // Our data must be what is there: otherwise someone replaced it
                        // between the store and the gets.
                        Some(t) if t.data[..] == *self.data => {
                            t.cas.ok_or_else(|| Error::Protocol {
                                server: String::new(),
                                detail: "gets returned no CAS".into(),
                            })
                        }
                        _ => Err(Error::Exists),
                    },
                    other => Err(unexpected(other)),
                }
            }
            other => store_result(other).and(Err(Error::Protocol {
                server: String::new(),
                detail: "store succeeded without a CAS".into(),
            })),
        }
    }
}

/// The reply shapes of a text store followed by a `gets`.
fn text_store_then_gets() -> Expect {
    Expect::Sequence(vec![Expect::TextLine, Expect::TextValues { cas: true }])
}
