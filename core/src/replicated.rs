//! Replicated clients: every value written to N servers inside a timestamped envelope, reads
//! that take the later copy and repair the others, deletes that leave tombstones.
//!
//! [`ReplicatedClient`] wraps a plain client (async [`crate::Client`] or
//! [`crate::blocking::Client`]) the way pymemcache's `RetryingClient` wraps any client. The
//! rules (which servers, which copy wins, what to repair, when a call succeeds) are in
//! [`crate::replication`]; this file only carries them out, once for both drivers.

use crate::envelope::{self, Format, Hlc, Kind, Stamp, ValueType};
use crate::error::Error;
use crate::ops::{self, Value};
use crate::protocol::text::StoreMode;
use crate::replication::{self, Policy, ReadPolicy, Versioned, WriteReport};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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

    /// Let the clock see a timestamp read from a replica, so this client's next write is later.
    /// A timestamp more than [`replication::MAX_OBSERVED_DRIFT_MS`] ahead of the local wall clock is not
    /// followed: one corrupt or far-future value must not drag every later write with it.
    fn observe(&self, ts: u64) {
        if replication::should_observe(ts, envelope::wall_ms(SystemTime::now())) {
            self.hlc.observe(ts);
        }
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            ts: self.hlc.stamp(envelope::wall_ms(SystemTime::now())),
            writer: self.writer,
        }
    }
}

/// One key's copies gathered from its replicas, in preference order.
type Copies = Vec<Result<Option<Value>, Error>>;

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
            writer: envelope::new_writer_id(),
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
        let rs = cl.replicas_for(key.as_ref(), self.policy.replicas, self.policy.failover, Instant::now());
        Ok(rs.into_iter().map(|s| cl.name(s)).collect())
    }

    /// Counters of the servers underneath, with repairs and disagreements.
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.client.cluster().metrics()
    }

    /// Read the latest copy of `key` (`None`: missing everywhere, or deleted).
    pub $($asyncness)? fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Versioned>, Error> {
        self.get_multi(&[key.as_ref()])$($await)*.pop().expect("one key in, one result out")
    }

    /// Read many keys: each server gets one request for all the copies it holds, all servers
    /// at once. Aligned with `keys`.
    pub $($asyncness)? fn get_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Versioned>, Error>> {
        let cl = self.client.cluster();
        let n = self.policy.replicas;
        let now = Instant::now();
        let mut out: Vec<Result<Option<Versioned>, Error>> =
            keys.iter().map(|k| cl.check_key(k.as_ref()).map(|_| None)).collect();
        let valid: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_ok()).collect();
        let placement: Vec<Vec<usize>> = valid
            .iter()
            .map(|&i| cl.replicas_for(keys[i].as_ref(), n, self.policy.failover, now))
            .collect();
        if self.policy.read == ReadPolicy::FirstHit {
            // Rank by rank: ask each unresolved key's next replica, stop at the first hit.
            let mut pending: Vec<usize> = (0..valid.len()).collect();
            let mut errors: Vec<Vec<(String, Error)>> = vec![Vec::new(); valid.len()];
            for rank in 0..n {
                if pending.is_empty() {
                    break;
                }
                let asked: Vec<(usize, usize)> = pending
                    .iter()
                    .filter_map(|&v| placement[v].get(rank).map(|&s| (v, s)))
                    .collect();
                let copies = self.fetch(keys, &valid, &asked, false)$($await)*;
                let mut still = Vec::new();
                for ((v, s), copy) in asked.into_iter().zip(copies) {
                    match copy {
                        Ok(Some(value)) => {
                            out[valid[v]] = Ok(replication::decode_copy(&value));
                        }
                        Ok(None) => still.push(v),
                        Err(e) => {
                            errors[v].push((cl.name(s).to_string(), e));
                            still.push(v);
                        }
                    }
                }
                pending = still;
            }
            for v in pending {
                if errors[v].len() == placement[v].len() {
                    out[valid[v]] = Err(Error::Replication {
                        op: "read",
                        acked: 0,
                        required: 1,
                        failures: std::mem::take(&mut errors[v]),
                    });
                }
            }
            return out;
        }
        // All / Quorum: every copy of every key, in one request per server.
        let asked: Vec<(usize, usize)> = placement
            .iter()
            .enumerate()
            .flat_map(|(v, servers)| servers.iter().map(move |&s| (v, s)))
            .collect();
        let fetched = self.fetch(keys, &valid, &asked, true)$($await)*;
        let mut copies: Vec<Copies> = placement.iter().map(|p| Vec::with_capacity(p.len())).collect();
        for ((v, _), c) in asked.iter().zip(fetched) {
            copies[*v].push(c);
        }
        let mut repairs: Vec<(usize, usize, Bytes, u32, replication::Repair)> = Vec::new();
        for (v, key_copies) in copies.iter().enumerate() {
            for (rank, c) in key_copies.iter().enumerate() {
                cl.tally_read(placement[v][rank], c);
            }
            match replication::resolve(self.policy.read, key_copies, self.policy.read_repair) {
                Ok(r) => {
                    self.observe(r.winner_ts);
                    if r.disagreement {
                        cl.disagreement();
                    }
                    for &rank in &r.stale {
                        cl.server_metrics(placement[v][rank]).stale();
                    }
                    if let Some(raw) = &r.winner_raw {
                        for rep in r.repairs {
                            repairs.push((v, placement[v][rep.replica], raw.clone(), r.winner_flags, rep));
                        }
                    }
                    out[valid[v]] = Ok(r.value);
                }
                Err(e) => out[valid[v]] = Err(e),
            }
        }
        if !repairs.is_empty() {
            self.repair(keys, &valid, repairs)$($await)*;
        }
        out
    }

    /// Ask server `s` for key `v` for every `(v, s)` in `asked`; one request per server.
    /// Results are aligned with `asked`.
    $($asyncness)? fn fetch<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        valid: &[usize],
        asked: &[(usize, usize)],
        full: bool,
    ) -> Copies {
        let cl = self.client.cluster();
        let groups = crate::cluster::group_by_server(asked.iter().enumerate().map(|(a, &(_, s))| (s, a)));
        let lists = crate::cluster::gather(&groups, |a| keys[valid[asked[a].0]].as_ref());
        let ops = crate::cluster::zip_ops(&groups, &lists, |keys| ops::GetMulti { keys, cas: full, ttl: full });
        let rs = self.client.run_each(ops)$($await)*;
        let mut out: Copies = asked.iter().map(|_| Ok(None)).collect();
        crate::cluster::merge(&mut out, &groups, crate::cluster::lift(rs));
        let _ = cl;
        out
    }

    /// Write winners back: `(key position, server, raw winner, flags, repair)`.
    $($asyncness)? fn repair<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        valid: &[usize],
        repairs: Vec<(usize, usize, Bytes, u32, replication::Repair)>,
    ) {
        let cl = self.client.cluster();
        let groups = crate::cluster::group_by_server(repairs.iter().enumerate().map(|(r, rep)| (rep.1, r)));
        let lists = crate::cluster::gather(&groups, |r| {
            let (v, _, raw, flags, rep) = &repairs[r];
            ops::Item { key: keys[valid[*v]].as_ref(), data: raw, mode: rep.mode, flags: *flags, ttl: rep.ttl }
        });
        let ops = crate::cluster::zip_ops(&groups, &lists, |items| ops::StoreItems { items });
        for ((s, _), r) in groups.iter().zip(self.client.run_each(ops)$($await)*) {
            if let Ok(results) = r {
                results.iter().filter(|r| r.is_ok()).for_each(|_| cl.server_metrics(*s).repair());
            }
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
        let item = [(key.as_ref(), payload.as_ref())];
        self.write_multi("write", Kind::Value, value_type, format, &item, ttl)$($await)*.pop().expect("one item")
    }

    /// Delete `key` everywhere by writing a tombstone (kept for the policy's tombstone TTL),
    /// so a replica that missed the delete cannot bring the value back.
    pub $($asyncness)? fn delete(&self, key: impl AsRef<[u8]>) -> Result<WriteReport, Error> {
        let item = [(key.as_ref(), &b""[..])];
        let ttl = self.policy.tombstone_ttl;
        self.write_multi("delete", Kind::Tombstone, ValueType::Bytes, Format::NONE, &item, ttl)$($await)*.pop().expect("one item")
    }

    /// Store many values (as bytes); one pipelined request per server. Aligned with `items`.
    pub $($asyncness)? fn set_multi<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        items: &[(K, V)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        self.write_multi("write", Kind::Value, ValueType::Bytes, Format::NONE, items, ttl)$($await)*
    }

    /// Delete many keys with tombstones. Aligned with `keys`.
    pub $($asyncness)? fn delete_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<WriteReport, Error>> {
        let items: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_ref(), &b""[..])).collect();
        let ttl = self.policy.tombstone_ttl;
        self.write_multi("delete", Kind::Tombstone, ValueType::Bytes, Format::NONE, &items, ttl)$($await)*
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
        use crate::recipes::{CasOutcome, Update};
        let key = key.as_ref();
        let cl = self.client.cluster();
        cl.check_key(key)?;
        let start = Instant::now();
        let mut attempts = 0;
        while attempts < opts.max_attempts.max(1) {
            attempts += 1;
            let placement = cl.replicas_for(key, self.policy.replicas, self.policy.failover, Instant::now());
            let asked: Vec<(usize, usize)> = placement.iter().map(|&s| (0, s)).collect();
            let copies = self.fetch(&[key], &[0], &asked, true)$($await)*;
            let primary = match &copies[0] {
                Err(e) => return Err(e.clone()),
                Ok(p) => p.clone(),
            };
            let resolved = replication::resolve(ReadPolicy::All, &copies, true)?;
            self.observe(resolved.winner_ts);
            let latest = resolved.winner_raw.clone();
            // The primary must hold the latest copy before it can serialize an update of it.
            if latest.is_some() && primary.as_ref().map(|p| &p.data) != latest.as_ref() {
                if let Some(rep) = resolved.repairs.iter().find(|r| r.replica == 0) {
                    let raw = latest.clone().unwrap_or_default();
                    let item = [ops::Item { key, data: &raw, mode: rep.mode, flags: resolved.winner_flags, ttl: rep.ttl }];
                    let _ = self.client.run_each(vec![(placement[0], ops::StoreItems { items: &item })])$($await)*;
                }
                continue;
            }
            let (kind, vtype, format, payload) = match f(resolved.value.as_ref()) {
                Update::Keep => return Ok((CasOutcome::Unchanged { attempts }, WriteReport::default())),
                Update::Delete if resolved.value.is_none() => {
                    return Ok((CasOutcome::Deleted { attempts }, WriteReport::default()))
                }
                Update::Delete => (Kind::Tombstone, ValueType::Bytes, Format::NONE, Vec::new()),
                Update::Set(v) => (Kind::Value, ValueType::Bytes, Format::NONE, v),
                Update::Typed(t, fmt, v) => (Kind::Value, t, fmt, v),
            };
            envelope::check_fields(kind, vtype, format, &payload)
                .map_err(|e| Error::Config(format!("value does not match its declared type: {e}")))?;
            cl.check_value(envelope::HEADER_LEN + payload.len())?;
            let mut buf = BytesMut::with_capacity(envelope::HEADER_LEN + payload.len());
            envelope::encode_into(&mut buf, self.stamp(), kind, vtype, format, &payload)
                .expect("fields checked above");
            let ttl = if kind == Kind::Tombstone { self.policy.tombstone_ttl } else { opts.ttl };
            let mode = match &primary {
                Some(p) => StoreMode::Cas(p.cas.ok_or_else(|| crate::recipes::no_cas(key))?),
                None => StoreMode::Add,
            };
            let first = [ops::Item { key, data: &buf, mode, flags: 0, ttl }];
            let r = self.client.run_each(vec![(placement[0], ops::StoreItems { items: &first })])$($await)*;
            match r.into_iter().next().expect("one op").and_then(|mut v| v.pop().expect("one item")) {
                Ok(()) => {
                    cl.tally_store(placement[0], &Ok(()));
                    let rest = [ops::Item { key, data: &buf, mode: StoreMode::Set, flags: 0, ttl }];
                    let ops = placement[1..].iter().map(|&s| (s, ops::StoreItems { items: &rest })).collect();
                    let rs = self.client.run_each(ops)$($await)*;
                    let mut results = vec![(cl.name(placement[0]).to_string(), Ok(()))];
                    for (&s, r) in placement[1..].iter().zip(rs) {
                        let r = r.and_then(|mut v| v.pop().expect("one item"));
                        cl.tally_store(s, &r);
                        results.push((cl.name(s).to_string(), r));
                    }
                    let report = WriteReport {
                        stored: results.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| s.clone()).collect(),
                        failed: results.into_iter().filter_map(|(s, r)| r.err().map(|e| (s, e))).collect(),
                    };
                    let outcome = if kind == Kind::Tombstone {
                        CasOutcome::Deleted { attempts }
                    } else {
                        CasOutcome::Stored { attempts }
                    };
                    return Ok((outcome, report));
                }
                Err(Error::Exists | Error::NotFound | Error::NotStored) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= opts.deadline {
                break;
            }
            let pause = crate::recipes::backoff(attempts, opts.base_backoff, opts.max_backoff, fastrand::f64());
            <$client>::pause(pause.min(opts.deadline.saturating_sub(start.elapsed())))$($await)*;
        }
        Err(Error::CasRetriesExhausted { key: String::from_utf8_lossy(key).into_owned(), attempts })
    }

    /// A conditional write serialized like [`ReplicatedClient::cas_update`]: `decide` sees
    /// the latest value and returns what to store (`Ok(Some)`), to leave it (`Ok(None)`), or
    /// the error to report without writing (e.g. [`Error::NotStored`]). The replicated
    /// add/replace/append/touch are built on it; bindings build their own conditions (a
    /// PECL-style `cas` on a version token, say) on it too, rather than on raw CAS loops.
    pub $($asyncness)? fn conditional(
        &self,
        key: &[u8],
        ttl: u32,
        mut decide: impl FnMut(Option<&Versioned>) -> Result<Option<(ValueType, Format, Vec<u8>)>, Error>,
    ) -> Result<WriteReport, Error> {
        let mut verdict = Ok(());
        let opts = crate::recipes::CasOptions { ttl, ..Default::default() };
        let (_, report) = self
            .cas_update(key, opts, |cur| match decide(cur) {
                Ok(Some((t, f, v))) => {
                    verdict = Ok(());
                    crate::recipes::Update::Typed(t, f, v)
                }
                Ok(None) => {
                    verdict = Ok(());
                    crate::recipes::Update::Keep
                }
                Err(e) => {
                    verdict = Err(e);
                    crate::recipes::Update::Keep
                }
            })$($await)*?;
        verdict.map(|()| report)
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
        let payload = payload.as_ref();
        self.conditional(key.as_ref(), ttl, |cur| match cur {
            Some(_) => Err(Error::NotStored),
            None => Ok(Some((value_type, format, payload.to_vec()))),
        })$($await)*
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
        let payload = payload.as_ref();
        self.conditional(key.as_ref(), ttl, |cur| match cur {
            None => Err(Error::NotStored),
            Some(_) => Ok(Some((value_type, format, payload.to_vec()))),
        })$($await)*
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
        let data = data.as_ref();
        self.conditional(key.as_ref(), ttl, |cur| {
            let Some(cur) = cur else { return Err(Error::NotStored) };
            if !matches!(cur.value_type, ValueType::Bytes | ValueType::Text) {
                return Err(Error::Client {
                    server: String::new(),
                    message: "append/prepend needs a bytes or text value".into(),
                });
            }
            let joined = if prepend { [data, &cur.data[..]].concat() } else { [&cur.data[..], data].concat() };
            let t = if cur.value_type == ValueType::Text && std::str::from_utf8(&joined).is_ok() {
                ValueType::Text
            } else {
                ValueType::Bytes
            };
            Ok(Some((t, Format::NONE, joined)))
        })$($await)*
    }

    /// Give a live value a new TTL on every replica (rewritten under a new stamp): `Ok(false)`
    /// if the key has no live value.
    pub $($asyncness)? fn touch(&self, key: impl AsRef<[u8]>, ttl: u32) -> Result<bool, Error> {
        let mut found = false;
        self.conditional(key.as_ref(), ttl, |cur| {
            found = cur.is_some();
            Ok(cur.map(|v| (v.value_type, v.format, v.data.to_vec())))
        })$($await)*?;
        Ok(found)
    }

    /// Add `delta` to a replicated integer, exactly: a [`ReplicatedClient::cas_update`] that
    /// reads the latest value (an enveloped int, or a plain decimal), adds, and stores an
    /// enveloped int. `Ok(None)` when the key is missing (like memcached's `incr`); negative
    /// results floor at 0, as memcached's `decr` does. Every replica ends at the same count.
    pub $($asyncness)? fn incr_exact(
        &self,
        key: impl AsRef<[u8]>,
        delta: i64,
        opts: crate::recipes::CasOptions,
    ) -> Result<Option<u64>, Error> {
        let mut result: Result<Option<u64>, Error> = Ok(None);
        self.cas_update(key, opts, |cur| {
            use crate::recipes::Update;
            let Some(v) = cur else {
                result = Ok(None);
                return Update::Keep;
            };
            let Some(n) = std::str::from_utf8(&v.data).ok().and_then(|t| t.trim().parse::<u64>().ok()) else {
                result = Err(Error::Client {
                    server: String::new(),
                    message: "cannot increment or decrement a non-numeric value".into(),
                });
                return Update::Keep;
            };
            let next = if delta >= 0 { n.wrapping_add(delta as u64) } else { n.saturating_sub(delta.unsigned_abs()) };
            result = Ok(Some(next));
            Update::Typed(ValueType::Int, Format::NONE, next.to_string().into_bytes())
        })$($await)*?;
        result
    }

    $($asyncness)? fn write_multi<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        op: &'static str,
        kind: Kind,
        value_type: ValueType,
        format: Format,
        items: &[(K, V)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        let cl = self.client.cluster();
        let now = Instant::now();
        let mut out: Vec<Result<WriteReport, Error>> = items
            .iter()
            .map(|(k, v)| {
                cl.check_key(k.as_ref())?;
                cl.check_value(envelope::HEADER_LEN + v.as_ref().len())?;
                Ok(WriteReport::default())
            })
            .collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_ok()).collect();
        // The envelope refuses a payload that does not match its declared type (text that is
        // not UTF-8, say): it would read back as a plain value and lose to every other copy.
        for &i in &valid {
            if let Err(e) = envelope::check_fields(kind, value_type, format, items[i].1.as_ref()) {
                out[i] = Err(Error::Config(format!("value does not match its declared type: {e}")));
            }
        }
        let valid: Vec<usize> = valid.into_iter().filter(|&i| out[i].is_ok()).collect();
        let encoded: Vec<Bytes> = valid
            .iter()
            .map(|&i| {
                let mut buf = BytesMut::with_capacity(envelope::HEADER_LEN + items[i].1.as_ref().len());
                envelope::encode_into(&mut buf, self.stamp(), kind, value_type, format, items[i].1.as_ref())
                    .expect("fields checked above");
                buf.freeze()
            })
            .collect();
        // (valid position, server) pairs, grouped by server.
        let placement: Vec<Vec<usize>> = valid
            .iter()
            .map(|&i| cl.replicas_for(items[i].0.as_ref(), self.policy.replicas, self.policy.failover, now))
            .collect();
        let groups = crate::cluster::group_by_server(
            placement.iter().enumerate().flat_map(|(v, servers)| servers.iter().map(move |&s| (s, (v, s)))),
        );
        let lists: Vec<Vec<ops::Item<'_>>> = groups
            .iter()
            .map(|(_, list)| {
                list.iter()
                    .map(|&(v, _)| ops::Item {
                        key: items[valid[v]].0.as_ref(),
                        data: &encoded[v],
                        mode: StoreMode::Set,
                        // Enveloped values carry flags 0, so plain clients read raw bytes.
                        flags: 0,
                        ttl,
                    })
                    .collect()
            })
            .collect();
        let ops: Vec<(usize, ops::StoreItems<'_>)> =
            groups.iter().zip(&lists).map(|((s, _), items)| (*s, ops::StoreItems { items })).collect();
        let rs = self.client.run_each(ops)$($await)*;
        let mut per_item: Vec<Vec<(usize, Result<(), Error>)>> = vec![Vec::new(); valid.len()];
        for ((s, list), r) in groups.iter().zip(rs) {
            match r {
                Ok(results) => {
                    for (&(v, _), r) in list.iter().zip(results) {
                        cl.tally_store(*s, &r);
                        per_item[v].push((*s, r.map_err(|e| e.at_server(cl.name(*s)))));
                    }
                }
                Err(e) => list.iter().for_each(|&(v, _)| per_item[v].push((*s, Err(e.clone())))),
            }
        }
        for (v, mut results) in per_item.into_iter().enumerate() {
            // Report in preference order.
            results.sort_by_key(|(s, _)| placement[v].iter().position(|p| p == s));
            let named = results.into_iter().map(|(s, r)| (cl.name(s).to_string(), r)).collect();
            out[valid[v]] = replication::write_outcome(op, self.policy.write, named);
        }
        out
    }
}
    };
}

replicated_api!(crate::blocking::Client; ;);
#[cfg(feature = "tokio")]
replicated_api!(crate::Client; async; .await);
