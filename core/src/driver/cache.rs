//! One client, plain or replicated: the blocking facade bindings sit on.
//!
//! A binding builds one [`Cache`] and only translates its language's values and errors. Which
//! machine a call is (one plain copy, or replicated, enveloped copies) is picked by the core's
//! [`Mode`] in the logic layer, the same picker the JavaScript client's jobs run; this file only
//! drives what it picked with the blocking client. A value goes in as a [`Payload`] (both of
//! its forms: typed, for an envelope, and plain with its convention's flags; the mode takes the
//! one it stores) and comes out as a [`Got`].

use crate::blocking::{Client, ReplicatedClient};
use crate::envelope::{Format, ValueType};
use crate::error::Error;
use crate::machine::mode::{Encode, Mode, Picked, Stored, WithVersion, Wrote};
use crate::protocol::text::StoreMode;
use crate::recipes::{CasOptions, CasOutcome, FillOptions, Fresh, Lock, LockOptions, Update};
use crate::replication::{Policy, ReadPolicy, WritePolicy, WriteReport};
use bytes::Bytes;

pub use crate::machine::fill::Got;

/// A value as a binding encoded it: the typed form a replicated store puts in its envelope,
/// and the plain form (bytes and client flags, by the binding's value convention) a plain
/// store writes.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The type recorded in the envelope.
    pub value_type: ValueType,
    /// The serializer recorded in the envelope.
    pub format: Format,
    /// The envelope's payload.
    pub typed: &'a [u8],
    /// The plain bytes.
    pub plain: &'a [u8],
    /// The plain client flags.
    pub flags: u32,
    /// The caller set the flags itself (a plain-only notion: replicated stores refuse it).
    pub flags_given: bool,
}

impl<'a> Payload<'a> {
    /// Raw bytes, the same in both forms, flags 0.
    pub fn bytes(data: &'a [u8]) -> Self {
        Payload {
            value_type: ValueType::Bytes,
            format: Format::NONE,
            typed: data,
            plain: data,
            flags: 0,
            flags_given: false,
        }
    }
}

impl Encode for Payload<'_> {
    type Error = Error;
    fn plain(&self) -> Result<(Bytes, u32), Error> {
        Ok((Bytes::copy_from_slice(self.plain), self.flags))
    }
    fn typed(&self) -> Result<(ValueType, Format, Bytes), Error> {
        if self.flags_given {
            return Err(Error::Unsupported {
                server: String::new(),
                feature: "client flags on a replicated store (the envelope records the type)",
            });
        }
        Ok((
            self.value_type,
            self.format,
            Bytes::copy_from_slice(self.typed),
        ))
    }
}

/// Plain or replicated, behind one API (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    plain: Client,
    repl: Option<ReplicatedClient>,
    mode: Mode,
}

fn key_of(key: &[u8]) -> Bytes {
    Bytes::copy_from_slice(key)
}

/// Owned copies of many keys, sharing one allocation.
fn keys_of<K: AsRef<[u8]>>(keys: &[K]) -> Vec<Bytes> {
    let total = keys.iter().map(|k| k.as_ref().len()).sum();
    let mut all = bytes::BytesMut::with_capacity(total);
    keys.iter().for_each(|k| all.extend_from_slice(k.as_ref()));
    let all = all.freeze();
    let mut start = 0;
    keys.iter()
        .map(|k| {
            let end = start + k.as_ref().len();
            let b = all.slice(start..end);
            start = end;
            b
        })
        .collect()
}

impl Cache {
    /// Plain over `plain`, or replicated with `policy`.
    pub fn new(plain: Client, policy: Option<Policy>) -> Result<Self, Error> {
        let repl = policy
            .map(|p| ReplicatedClient::new(plain.clone(), p))
            .transpose()?;
        Ok(Cache::of(plain, repl))
    }

    fn of(plain: Client, repl: Option<ReplicatedClient>) -> Self {
        let mode = repl
            .as_ref()
            .map_or(Mode::Plain, |r| Mode::Replicated(r.rep()));
        Cache { plain, repl, mode }
    }

    /// The same cache with another replicated client (other policies, same connections).
    pub fn with_replicated(&self, repl: Option<ReplicatedClient>) -> Self {
        Cache::of(self.plain.clone(), repl)
    }

    /// The plain client underneath.
    pub fn plain(&self) -> &Client {
        &self.plain
    }

    /// The replicated client, when the cache is replicated.
    pub fn replicated(&self) -> Option<&ReplicatedClient> {
        self.repl.as_ref()
    }

    /// Plain or replicated: the call picker this cache runs.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The replication policy in force (`None` for a plain cache).
    pub fn policy(&self) -> Option<&Policy> {
        self.repl.as_ref().map(ReplicatedClient::policy)
    }

    /// The same cache (connections, clock, writer id) with other read and/or write policies
    /// (`None` keeps the current one), for the calls that need them. The replica count and
    /// placement do not change. A plain cache has no policy to change: `Unsupported`.
    pub fn with_policies(
        &self,
        read: Option<ReadPolicy>,
        write: Option<WritePolicy>,
    ) -> Result<Self, Error> {
        let Some(r) = &self.repl else {
            return Err(Error::Unsupported {
                server: String::new(),
                feature: "per-call read/write policies on a plain client (it has none: they \
                          need replicas > 1 or the replicated mode)",
            });
        };
        let p = r.policy();
        let repl = r.with_policies(read.unwrap_or(p.read), write.unwrap_or(p.write))?;
        Ok(self.with_replicated(Some(repl)))
    }

    /// The servers holding `key`'s copies, primary first.
    pub fn replicas_of(&self, key: &[u8]) -> Result<Vec<&str>, Error> {
        let cl = self.plain.cluster();
        cl.check_key(key)?;
        Ok(self
            .servers_for(key)
            .into_iter()
            .map(|s| cl.name(s))
            .collect())
    }

    /// The indices (configuration order) of the servers `key` hashes to, primary first,
    /// without checking it against the key rules (libmemcached's `*ByKey` server keys are any
    /// string).
    pub fn servers_for(&self, key: &[u8]) -> Vec<usize> {
        let (n, failover) = self.mode.copies();
        self.plain
            .cluster()
            .replicas_for(key, n, failover, crate::driver::mono_ms())
    }

    fn run<T>(&self, m: Picked<T>) -> Result<T, Error> {
        self.plain.drive_plain(m)
    }

    fn run_each<T>(&self, m: Picked<Vec<Result<T, Error>>>, n: usize) -> Vec<Result<T, Error>> {
        match self.run(m) {
            Ok(v) => v,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    fn report(&self, w: Wrote) -> WriteReport {
        w.report(self.plain.cluster())
    }

    fn stored(&self, p: &Payload<'_>) -> Result<Stored, Error> {
        self.mode.encode(p)
    }

    /// The value of `key` (replicated: the latest copy; stale copies are repaired).
    pub fn get(&self, key: &[u8]) -> Result<Option<Got>, Error> {
        self.run(self.mode.get(key_of(key), false))
            .map(|v| v.map(|(g, _)| g))
    }

    /// Many values, one request per server; aligned with `keys`.
    pub fn get_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Got>, Error>> {
        self.gets_each(keys, false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|(g, _)| g)))
            .collect()
    }

    fn gets_each<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        versions: bool,
    ) -> Vec<Result<Option<WithVersion>, Error>> {
        self.run_each(self.mode.get_multi(keys_of(keys), versions), keys.len())
    }

    /// Get `key` and give it a new TTL (`gat`): plain only. A replicated key's TTL lives in
    /// every copy's envelope write, so a one-copy `gat` would leave the others out of step:
    /// [`Error::Unsupported`] (use `touch`, which rewrites every replica).
    pub fn gat(&self, key: &[u8], ttl: u32) -> Result<Option<Got>, Error> {
        if self.repl.is_some() {
            return Err(Error::Unsupported {
                server: String::new(),
                feature: "gat with replication (use touch: it rewrites every replica)",
            });
        }
        self.plain.gat(key, ttl, false).map(|v| v.map(Got::Plain))
    }

    /// Store `p` under `key`.
    pub fn set(&self, key: &[u8], p: &Payload<'_>, ttl: u32) -> Result<WriteReport, Error> {
        self.store(StoreMode::Set, key, p, ttl)
    }

    /// A conditional store: `Add` (only if missing), `Replace` (only if present), `Append` or
    /// `Prepend` (bytes to a present value). [`Error::NotStored`] when the condition fails.
    /// Replicated keys follow the same conditions, serialized by CAS on the primary replica.
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        p: &Payload<'_>,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let v = self.stored(p)?;
        self.put(mode, key, v, ttl)
    }

    /// [`Cache::store`] of a value already in the mode's form ([`Mode::encode`] of a
    /// binding's own [`Encode`] value).
    pub fn put(
        &self,
        mode: StoreMode,
        key: &[u8],
        v: Stored,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let m = self
            .mode
            .store(mode, key_of(key), v, ttl, fastrand::u64(..));
        self.run(m).map(|w| self.report(w))
    }

    /// The value of `key` with its version: the CAS unique (plain) or the version token
    /// (replicated, [`crate::replication::Versioned::version_token`]), for [`Cache::cas`].
    pub fn gets(&self, key: &[u8]) -> Result<Option<(Got, u64)>, Error> {
        self.run(self.mode.get(key_of(key), true))
    }

    /// [`Cache::gets`] of many keys, one request per server; aligned with `keys`.
    pub fn gets_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<(Got, u64)>, Error>> {
        self.gets_each(keys, true)
    }

    /// Store `p` only if `key` still has `version` (from [`Cache::gets`]): [`Error::Exists`]
    /// when it changed, [`Error::NotFound`] when it is gone. Replicated: serialized by CAS on
    /// the primary replica, like every replicated conditional write.
    pub fn cas(
        &self,
        key: &[u8],
        p: &Payload<'_>,
        version: u64,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        self.store(StoreMode::Cas(version), key, p, ttl)
    }

    /// Delete `key`: true when it existed (replicated: tombstones on every replica; true once
    /// the write policy was met), and where the delete was written.
    pub fn delete(&self, key: &[u8]) -> Result<(bool, WriteReport), Error> {
        self.run(self.mode.delete(key_of(key)))
            .map(|(e, w)| (e, self.report(w)))
    }

    /// Add (`incr`) or subtract `delta`; `None` when missing, unless `initial` creates it (with
    /// `ttl`). Replicated: the exact counter.
    pub fn incr(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        initial: Option<u64>,
        ttl: u32,
    ) -> Result<Option<u64>, Error> {
        let seed = fastrand::u64(..);
        self.run(self.mode.incr(key_of(key), incr, delta, initial, ttl, seed))
    }

    /// A new TTL for `key`: true when it had a value.
    pub fn touch(&self, key: &[u8], ttl: u32) -> Result<bool, Error> {
        self.run(self.mode.touch(key_of(key), ttl, fastrand::u64(..)))
    }

    /// Store many values, one request per server; aligned with `items`.
    pub fn set_multi<K: AsRef<[u8]>>(
        &self,
        items: &[(K, Payload<'_>)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        let mut list = Vec::with_capacity(items.len());
        for (k, p) in items {
            match self.stored(p) {
                Ok(v) => list.push((key_of(k.as_ref()), v)),
                Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        self.put_multi(list, ttl)
    }

    /// [`Cache::set_multi`] of values already in the mode's form ([`Mode::encode`] of a
    /// binding's own [`Encode`] value).
    pub fn put_multi(
        &self,
        items: Vec<(Bytes, Stored)>,
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        let n = items.len();
        self.run_each(self.mode.set_multi(items, ttl), n)
            .into_iter()
            .map(|r| r.map(|w| self.report(w)))
            .collect()
    }

    /// Delete many keys; aligned with `keys` (true: existed; replicated: tombstoned).
    pub fn delete_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        self.run_each(self.mode.delete_multi(keys_of(keys)), keys.len())
    }

    /// The update a binding's function asks for, storing `p` in this cache's form.
    pub fn update_to(&self, p: &Payload<'_>) -> Result<Update, Error> {
        self.stored(p).map(Update::from)
    }

    /// Read-modify-write without losing concurrent updates (the core's CAS machines): `f` sees
    /// the current value and says what to store ([`Cache::update_to`]), to keep or to delete.
    pub fn cas_update(
        &self,
        key: &[u8],
        opts: CasOptions,
        mut f: impl FnMut(Option<Got>) -> Result<Update, Error>,
    ) -> Result<(CasOutcome, WriteReport), Error> {
        let m = self.mode.cas_update(key, opts, fastrand::u64(..));
        self.plain
            .drive(m, |v| f(v.cloned()), Client::no_load())
            .map(|(o, w)| (o, self.report(w)))
    }

    /// What a `get_or_set` loader produced, in this cache's form (as [`Cache::update_to`]).
    pub fn fresh(&self, p: &Payload<'_>) -> Result<Fresh, Error> {
        self.stored(p).map(Fresh::from)
    }

    /// The value of `key`, or on a miss `loader`'s, loaded once (the core's fill) and stored.
    pub fn get_or_set(
        &self,
        key: &[u8],
        ttl: u32,
        opts: FillOptions,
        loader: impl FnOnce() -> Result<Fresh, String>,
    ) -> Result<Got, Error> {
        self.plain
            .get_or_fill(self.mode.clone(), key, ttl, opts, loader)
    }

    /// A lock on `name`'s ring owner, or with `quorum`, on a majority of its first `quorum`
    /// replicas. Locks are plain items in either mode.
    pub fn lock(
        &self,
        name: &[u8],
        opts: LockOptions,
        quorum: Option<usize>,
    ) -> Result<Lock<Client>, Error> {
        match quorum {
            Some(n) => self.plain.lock_quorum(name, n, opts),
            None => self.plain.lock(name, opts),
        }
    }
}
