//! Replicated clients: every value written to N servers inside a timestamped envelope, reads
//! that take the later copy and repair the others, deletes that leave tombstones.
//!
//! [`ReplicatedClient`] wraps a plain client (async [`crate::Client`] or
//! [`crate::blocking::Client`]) the way pymemcache's `RetryingClient` wraps any client. The
//! rules (which servers, which copy wins, what to repair, when a call succeeds) are in
//! [`crate::replication`]; this file only carries them out, once for both drivers.

use crate::envelope::{Format, Hlc, Kind, ValueType};
use crate::error::Error;
use crate::machine::replicated::Rule;
use crate::replication::{Policy, ReadPolicy, Versioned, WriteReport};
use bytes::Bytes;
use std::sync::Arc;

/// A replicated client over the plain client `C` ([`crate::Client`] or
/// [`crate::blocking::Client`]). Cheap to clone; clones share connections and the clock.
#[derive(Clone)]
pub struct ReplicatedClient<C> {
    client: C,
    policy: Policy,
    hlc: Arc<Hlc>,
    writer: u64,
}

impl<C> ReplicatedClient<C> {
    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The plain client underneath (for calls replication does not cover; those see the
    /// stored bytes, envelope included).
    pub fn inner(&self) -> &C {
        &self.client
    }

    /// This client's writer id, written into every envelope.
    pub fn writer_id(&self) -> u64 {
        self.writer
    }
}

fn put(
    key: &[u8],
    kind: Kind,
    value_type: ValueType,
    format: Format,
    payload: &[u8],
) -> crate::machine::replicated::Put {
    crate::machine::replicated::Put {
        key: Bytes::copy_from_slice(key),
        kind,
        value_type,
        format,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// The replicated call list, expanded by both drivers.
macro_rules! replicated_api {
    ($client:ty; $($asyncness:ident)?; $($await:tt)*) => {
impl ReplicatedClient<$client> {
    /// Replicate through `client` with `policy` (checked against the server count).
    pub fn new(client: $client, policy: Policy) -> Result<Self, Error> {
        policy.validate(client.cluster().len())?;
        Ok(ReplicatedClient {
            client,
            policy,
            hlc: Arc::new(Hlc::new()),
            writer: crate::driver::entropy::new_writer_id(),
        })
    }

    /// The same client (connections, clock, writer id) with other read and write policies,
    /// for one call or a group of calls:
    /// `rc.with_policies(ReadPolicy::FirstHit, WritePolicy::All)?.get(key)`. The replica count,
    /// failover and tombstone lifetime stay as configured: where a key's copies live must not
    /// change from call to call. A quorum above the replica count is a [`Error::Config`].
    pub fn with_policies(&self, read: ReadPolicy, write: crate::replication::WritePolicy) -> Result<Self, Error> {
        let policy = Policy { read, write, ..self.policy };
        policy.validate(self.client.cluster().len())?;
        Ok(ReplicatedClient { policy, ..self.clone() })
    }

    /// The servers holding `key`'s copies now, primary first.
    pub fn replicas_of(&self, key: impl AsRef<[u8]>) -> Result<Vec<&str>, Error> {
        let cl = self.client.cluster();
        cl.check_key(key.as_ref())?;
        let rs = cl.replicas_for(key.as_ref(), self.policy.replicas, self.policy.failover, crate::driver::mono_ms());
        Ok(rs.into_iter().map(|s| cl.name(s)).collect())
    }

    /// Counters of the servers underneath, with repairs and disagreements.
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.client.cluster().metrics()
    }

    pub(crate) fn rep(&self) -> crate::machine::replicated::Rep {
        crate::machine::replicated::Rep { policy: self.policy, hlc: self.hlc.clone(), writer: self.writer }
    }

    /// Read the latest copy of `key` (`None`: missing everywhere, or deleted).
    pub $($asyncness)? fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Versioned>, Error> {
        self.get_multi(&[key.as_ref()])$($await)*.pop().unwrap_or(Ok(None))
    }

    /// Read many keys: each server gets one request for all the copies it holds, all servers
    /// at once. Aligned with `keys`.
    pub $($asyncness)? fn get_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Versioned>, Error>> {
        let m = crate::machine::replicated::Read::new(self.rep(), keys);
        match self.client.drive_plain(m)$($await)* {
            Ok(v) => v,
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Store `value` (as bytes) on every replica of `key`.
    pub $($asyncness)? fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        self.set_typed(key, ValueType::Bytes, Format::NONE, value, ttl)$($await)*
    }

    /// Store a typed value (how bindings write text, numbers and serialized objects so that
    /// every language reads them back as the same type).
    pub $($asyncness)? fn set_typed(
        &self,
        key: impl AsRef<[u8]>,
        value_type: ValueType,
        format: Format,
        payload: impl AsRef<[u8]>,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let put = put(key.as_ref(), Kind::Value, value_type, format, payload.as_ref());
        self.write("write", vec![put], ttl)$($await)*.pop().unwrap_or_else(|| Ok(WriteReport::default()))
    }

    /// Delete `key` everywhere by writing a tombstone (kept for the policy's tombstone TTL),
    /// so a replica that missed the delete cannot bring the value back.
    pub $($asyncness)? fn delete(&self, key: impl AsRef<[u8]>) -> Result<WriteReport, Error> {
        let put = put(key.as_ref(), Kind::Tombstone, ValueType::Bytes, Format::NONE, b"");
        self.write("delete", vec![put], self.policy.tombstone_ttl)$($await)*.pop().unwrap_or_else(|| Ok(WriteReport::default()))
    }

    /// Store many values (as bytes); one pipelined request per server. Aligned with `items`.
    pub $($asyncness)? fn set_multi<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        items: &[(K, V)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        let puts = items.iter().map(|(k, v)| put(k.as_ref(), Kind::Value, ValueType::Bytes, Format::NONE, v.as_ref())).collect();
        self.write("write", puts, ttl)$($await)*
    }

    /// Store many typed values; one pipelined request per server. Aligned with `items`.
    pub $($asyncness)? fn set_multi_typed<K: AsRef<[u8]>>(
        &self,
        items: &[(K, ValueType, Format, Bytes)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        let puts = items.iter().map(|(k, t, f, v)| put(k.as_ref(), Kind::Value, *t, *f, v)).collect();
        self.write("write", puts, ttl)$($await)*
    }

    /// Delete many keys with tombstones. Aligned with `keys`.
    pub $($asyncness)? fn delete_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<WriteReport, Error>> {
        let puts = keys.iter().map(|k| put(k.as_ref(), Kind::Tombstone, ValueType::Bytes, Format::NONE, b"")).collect();
        self.write("delete", puts, self.policy.tombstone_ttl)$($await)*
    }

    $($asyncness)? fn write(&self, op: &'static str, puts: Vec<crate::machine::replicated::Put>, ttl: u32) -> Vec<Result<WriteReport, Error>> {
        let n = puts.len();
        let m = crate::machine::replicated::Write::new(self.rep(), op, puts, ttl);
        match self.client.drive_plain(m)$($await)* {
            Ok(v) => v,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    /// Read-modify-write a replicated key without losing updates. Updates are serialized by
    /// compare-and-swap on the key's primary replica (the first of its preference list): each
    /// attempt reads every replica, brings the primary up to the latest copy if it lags,
    /// calls `f` on the latest value, and stores the result on the primary with `cas` (`add`
    /// if it has no copy) under a stamp later than the value it replaces; then writes it to
    /// the other replicas. A conflict on the primary retries with jittered backoff. If the
    /// primary cannot be reached the update fails with its error: it is never serialized on
    /// another server. Returns the outcome and where the new value was stored.
    pub $($asyncness)? fn cas_update(
        &self,
        key: impl AsRef<[u8]>,
        opts: crate::recipes::CasOptions,
        mut f: impl FnMut(Option<&Versioned>) -> crate::recipes::Update,
    ) -> Result<(crate::recipes::CasOutcome, WriteReport), Error> {
        let u = self.update(key.as_ref(), Rule::Caller, opts, |v| Ok(f(v)))$($await)*?;
        Ok((u.outcome, u.report))
    }

    /// Run the replicated read-modify-write machine with `rule` (and `decide` for
    /// [`Rule::Caller`]).
    pub $($asyncness)? fn update(
        &self,
        key: &[u8],
        rule: Rule,
        opts: crate::recipes::CasOptions,
        decide: impl FnMut(Option<&Versioned>) -> Result<crate::recipes::Update, Error>,
    ) -> Result<crate::machine::replicated::Updated, Error> {
        let m = crate::machine::replicated::Cas::new(self.rep(), key, rule, opts, fastrand::u64(..));
        self.client.drive(m, decide, <$client>::no_load())$($await)*
    }

    /// A conditional write serialized like [`ReplicatedClient::cas_update`]: `decide` sees
    /// the latest value and returns what to store (`Ok(Some)`), to leave it (`Ok(None)`), or
    /// the error to report without writing (e.g. [`Error::NotStored`]). Bindings build their
    /// own conditions (a PECL-style `cas` on a version token, say) on it.
    pub $($asyncness)? fn conditional(
        &self,
        key: &[u8],
        ttl: u32,
        mut decide: impl FnMut(Option<&Versioned>) -> Result<Option<(ValueType, Format, Vec<u8>)>, Error>,
    ) -> Result<WriteReport, Error> {
        let opts = crate::recipes::CasOptions { ttl, ..Default::default() };
        let u = self
            .update(key, Rule::Caller, opts, |cur| {
                Ok(match decide(cur)? {
                    Some((t, f, v)) => crate::recipes::Update::Typed(t, f, v),
                    None => crate::recipes::Update::Keep,
                })
            })$($await)*?;
        Ok(u.report)
    }

    $($asyncness)? fn ruled(&self, key: &[u8], rule: Rule, ttl: u32) -> Result<crate::machine::replicated::Updated, Error> {
        let opts = crate::recipes::CasOptions { ttl, ..Default::default() };
        self.update(key, rule, opts, crate::driver::no_decision)$($await)*
    }

    /// Store only if the key has no live value (missing everywhere, or deleted):
    /// [`Error::NotStored`] otherwise. Serialized through CAS on the primary replica, so two
    /// adders cannot both win.
    pub $($asyncness)? fn add_typed(
        &self,
        key: impl AsRef<[u8]>,
        value_type: ValueType,
        format: Format,
        payload: impl AsRef<[u8]>,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let rule = Rule::Add(value_type, format, Bytes::copy_from_slice(payload.as_ref()));
        Ok(self.ruled(key.as_ref(), rule, ttl)$($await)*?.report)
    }

    /// Store only if the key has a live value: [`Error::NotStored`] otherwise.
    pub $($asyncness)? fn replace_typed(
        &self,
        key: impl AsRef<[u8]>,
        value_type: ValueType,
        format: Format,
        payload: impl AsRef<[u8]>,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let rule = Rule::Replace(value_type, format, Bytes::copy_from_slice(payload.as_ref()));
        Ok(self.ruled(key.as_ref(), rule, ttl)$($await)*?.report)
    }

    /// Append (or with `prepend`, prepend) bytes to a live bytes or text value:
    /// [`Error::NotStored`] if the key has none, [`Error::Client`] if the value is typed
    /// otherwise (a number, a serialized object). Text stays text while the result is UTF-8.
    pub $($asyncness)? fn append(
        &self,
        key: impl AsRef<[u8]>,
        data: impl AsRef<[u8]>,
        prepend: bool,
        ttl: u32,
    ) -> Result<WriteReport, Error> {
        let rule = Rule::Append { data: Bytes::copy_from_slice(data.as_ref()), prepend };
        Ok(self.ruled(key.as_ref(), rule, ttl)$($await)*?.report)
    }

    /// Give a live value a new TTL on every replica (rewritten under a new stamp): `Ok(false)`
    /// if the key has no live value.
    pub $($asyncness)? fn touch(&self, key: impl AsRef<[u8]>, ttl: u32) -> Result<bool, Error> {
        Ok(self.ruled(key.as_ref(), Rule::Touch, ttl)$($await)*?.found)
    }

    /// Add `delta` to a replicated integer, exactly: a read-modify-write that reads the latest
    /// value (an enveloped int, or a plain decimal), adds, and stores an enveloped int.
    /// `Ok(None)` when the key is missing (like memcached's `incr`); negative results floor at
    /// 0, as memcached's `decr` does. Every replica ends at the same count.
    pub $($asyncness)? fn incr_exact(
        &self,
        key: impl AsRef<[u8]>,
        delta: i64,
        opts: crate::recipes::CasOptions,
    ) -> Result<Option<u64>, Error> {
        self.incr_with_initial(key, delta, None, opts)$($await)*
    }

    /// [`ReplicatedClient::incr_exact`] that creates a missing counter at `initial` (returned
    /// as is, like libmemcached's increment-with-initial).
    pub $($asyncness)? fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: i64,
        initial: Option<u64>,
        opts: crate::recipes::CasOptions,
    ) -> Result<Option<u64>, Error> {
        let u = self.update(key.as_ref(), Rule::Incr { delta, initial }, opts, crate::driver::no_decision)$($await)*?;
        Ok(u.number)
    }
}
    };
}

replicated_api!(crate::blocking::Client; ;);

impl ReplicatedClient<crate::blocking::Client> {
    /// Get `key`, or on a miss load it once and store it on its replicas: the plain client's
    /// `get_or_set` (single flight in this process, a fill lock across processes, jittered
    /// TTL) with replicated reads and writes. The loader's [`crate::recipes::Fresh::typed`]
    /// is the stored type.
    pub fn get_or_set<T: Into<crate::recipes::Fresh>, E: std::fmt::Display>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Versioned, Error> {
        let mode = crate::machine::fill::Mode::Replicated(self.rep());
        self.client
            .get_or_fill(mode, key.as_ref(), ttl, opts, loader)
            .map(fill_versioned)
    }
}

#[cfg(feature = "tokio")]
impl ReplicatedClient<crate::Client> {
    /// Get `key`, or on a miss load it once and store it on its replicas (see the blocking
    /// client's `get_or_set`).
    pub async fn get_or_set<F, Fut, T, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: F,
    ) -> Result<Versioned, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        T: Into<crate::recipes::Fresh>,
        E: std::fmt::Display,
    {
        let mode = crate::machine::fill::Mode::Replicated(self.rep());
        self.client
            .get_or_fill(mode, key.as_ref(), ttl, opts, loader)
            .await
            .map(fill_versioned)
    }
}

/// A fill's value as a replicated read returns it.
fn fill_versioned(g: crate::machine::fill::Got) -> Versioned {
    match g {
        crate::machine::fill::Got::Replicated(v) => v,
        crate::machine::fill::Got::Plain(v) => Versioned {
            data: v.data,
            value_type: ValueType::Bytes,
            format: Format::NONE,
            stamp: Default::default(),
            enveloped: false,
            flags: v.flags,
        },
    }
}
#[cfg(feature = "tokio")]
replicated_api!(crate::Client; async; .await);
