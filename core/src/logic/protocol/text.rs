//! Encoders for memcached's classic text protocol.
//!
//! Every encoder checks its keys with [`crate::key::validate`] before writing a byte, so a key
//! with a space, CR or LF can never reach the wire; on error `buf` is left as it was.

use super::Expect;
use crate::error::Error;
use crate::key;
use bytes::{BufMut, BytesMut};

/// The retrieval commands; `Gat`/`Gats` also set a new expiration time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retrieval {
    /// `get`: values and flags.
    Get,
    /// `gets`: values, flags and CAS uniques.
    Gets,
    /// `gat <exptime>`: get and touch.
    Gat(u32),
    /// `gats <exptime>`: get and touch, with CAS uniques.
    Gats(u32),
}

impl Retrieval {
    /// Whether replies carry a CAS unique.
    pub fn returns_cas(self) -> bool {
        matches!(self, Retrieval::Gets | Retrieval::Gats(_))
    }
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key is missing.
    Add,
    /// Store only if the key exists.
    Replace,
    /// Append data to an existing item.
    Append,
    /// Prepend data to an existing item.
    Prepend,
    /// Store only if the item's CAS unique still equals this one.
    Cas(u64),
}

fn put_u64(buf: &mut BytesMut, n: u64) {
    let mut b = itoa_buf();
    buf.put_slice(fmt_u64(&mut b, n));
}

pub(crate) fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Format `n` in decimal into `b`, returning the used tail.
pub(crate) fn fmt_u64(b: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &b[i..]
}

/// `get|gets|gat|gats [exptime] <key>*`. Returns the reply shape.
pub fn retrieval<K: AsRef<[u8]>>(
    buf: &mut BytesMut,
    cmd: Retrieval,
    keys: &[K],
) -> Result<Expect, Error> {
    if keys.is_empty() {
        return Err(Error::Config("a retrieval needs at least one key".into()));
    }
    for k in keys {
        key::validate(k.as_ref())?;
    }
    let (name, exptime): (&[u8], Option<u32>) = match cmd {
        Retrieval::Get => (b"get", None),
        Retrieval::Gets => (b"gets", None),
        Retrieval::Gat(t) => (b"gat", Some(t)),
        Retrieval::Gats(t) => (b"gats", Some(t)),
    };
    buf.reserve(8 + keys.iter().map(|k| k.as_ref().len() + 1).sum::<usize>());
    buf.put_slice(name);
    if let Some(t) = exptime {
        buf.put_u8(b' ');
        put_u64(buf, t.into());
    }
    for k in keys {
        buf.put_u8(b' ');
        buf.put_slice(k.as_ref());
    }
    buf.put_slice(b"\r\n");
    Ok(Expect::TextValues {
        cas: cmd.returns_cas(),
    })
}

/// `set|add|replace|append|prepend|cas <key> <flags> <exptime> <bytes> [cas] [noreply]` and the
/// data block. With `noreply` the server sends nothing back and the result is `None`.
pub fn store(
    buf: &mut BytesMut,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    exptime: u32,
    data: &[u8],
    noreply: bool,
) -> Result<Option<Expect>, Error> {
    key::validate(key)?;
    let name: &[u8] = match mode {
        StoreMode::Set => b"set ",
        StoreMode::Add => b"add ",
        StoreMode::Replace => b"replace ",
        StoreMode::Append => b"append ",
        StoreMode::Prepend => b"prepend ",
        StoreMode::Cas(_) => b"cas ",
    };
    buf.reserve(name.len() + key.len() + 64 + data.len());
    buf.put_slice(name);
    buf.put_slice(key);
    buf.put_u8(b' ');
    put_u64(buf, flags.into());
    buf.put_u8(b' ');
    put_u64(buf, exptime.into());
    buf.put_u8(b' ');
    put_u64(buf, data.len() as u64);
    if let StoreMode::Cas(c) = mode {
        buf.put_u8(b' ');
        put_u64(buf, c);
    }
    if noreply {
        buf.put_slice(b" noreply");
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
    Ok((!noreply).then_some(Expect::TextLine))
}

/// `delete <key> [noreply]`.
pub fn delete(buf: &mut BytesMut, key: &[u8], noreply: bool) -> Result<Option<Expect>, Error> {
    key::validate(key)?;
    buf.put_slice(b"delete ");
    buf.put_slice(key);
    finish(buf, noreply)
}

/// `incr|decr <key> <delta> [noreply]`.
pub fn incr_decr(
    buf: &mut BytesMut,
    incr: bool,
    key: &[u8],
    delta: u64,
    noreply: bool,
) -> Result<Option<Expect>, Error> {
    key::validate(key)?;
    buf.put_slice(if incr { b"incr " } else { b"decr " });
    buf.put_slice(key);
    buf.put_u8(b' ');
    put_u64(buf, delta);
    finish(buf, noreply)
}

/// `touch <key> <exptime> [noreply]`.
pub fn touch(
    buf: &mut BytesMut,
    key: &[u8],
    exptime: u32,
    noreply: bool,
) -> Result<Option<Expect>, Error> {
    key::validate(key)?;
    buf.put_slice(b"touch ");
    buf.put_slice(key);
    buf.put_u8(b' ');
    put_u64(buf, exptime.into());
    finish(buf, noreply)
}

/// `flush_all [delay] [noreply]`.
pub fn flush_all(buf: &mut BytesMut, delay: Option<u32>, noreply: bool) -> Option<Expect> {
    buf.put_slice(b"flush_all");
    if let Some(d) = delay {
        buf.put_u8(b' ');
        put_u64(buf, d.into());
    }
    finish(buf, noreply).unwrap_or(None)
}

/// `cache_memlimit <megabytes>`: change the server's memory limit at run time (`OK`).
pub fn cache_memlimit(buf: &mut BytesMut, megabytes: u32) -> Expect {
    buf.put_slice(b"cache_memlimit ");
    put_u64(buf, megabytes.into());
    buf.put_slice(b"\r\n");
    Expect::TextLine
}

/// `version`.
pub fn version(buf: &mut BytesMut) -> Expect {
    buf.put_slice(b"version\r\n");
    Expect::TextLine
}

/// `stats [group]`, e.g. `stats settings`, `stats slabs`, `stats items`, `stats conns`; a
/// group may be several words separated by single spaces (`stats cachedump 1 10`).
pub fn stats(buf: &mut BytesMut, group: Option<&str>) -> Result<Expect, Error> {
    if let Some(g) = group {
        let bad_word = |w: &str| w.is_empty() || w.bytes().any(|b| b <= b' ' || b == 0x7f);
        if g.split(' ').any(bad_word) {
            return Err(Error::Config(format!("invalid stats group {g:?}")));
        }
    }
    buf.put_slice(b"stats");
    if let Some(g) = group {
        buf.put_u8(b' ');
        buf.put_slice(g.as_bytes());
    }
    buf.put_slice(b"\r\n");
    Ok(Expect::TextStats)
}

fn finish(buf: &mut BytesMut, noreply: bool) -> Result<Option<Expect>, Error> {
    if noreply {
        buf.put_slice(b" noreply\r\n");
        Ok(None)
    } else {
        buf.put_slice(b"\r\n");
        Ok(Some(Expect::TextLine))
    }
}
