//! Replicated reads, writes and read-modify-writes as machines: which servers are asked, which
//! copy wins, what is repaired, when a write succeeded, and how an update is serialized by
//! compare-and-swap on the key's primary replica. The rules are [`crate::replication`]'s;
//! this is the order in which they are carried out.

use super::{
    out_of_order, pause_before, Answer, Call, Cx, Input, Item, Machine, Request, Rng, Step,
};
use crate::cluster::{group_by_server, Cluster};
use crate::envelope::{self, Format, Hlc, Kind, Stamp, ValueType};
use crate::error::Error;
use crate::logic::recipe::{no_cas, CasOptions, CasOutcome, Update};
use crate::ops::Value;
use crate::protocol::text::StoreMode;
use crate::replication::{self, Policy, ReadPolicy, Versioned, WriteReport};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;

/// What a replicated machine writes with: the policy, the client's clock and writer id.
#[derive(Debug, Clone)]
pub struct Rep {
    /// The policy.
    pub policy: Policy,
    /// The hybrid logical clock shared by the client's calls.
    pub hlc: Arc<Hlc>,
    /// The writer id put into every envelope.
    pub writer: u64,
}

impl Rep {
    /// A stamp later than every one this clock issued or observed.
    pub fn stamp(&self, wall_ms: u64) -> Stamp {
        Stamp {
            ts: self.hlc.stamp(wall_ms),
            writer: self.writer,
        }
    }

    /// Let the clock see a timestamp read from a replica (unless it is implausibly far ahead:
    /// [`replication::should_observe`]).
    pub fn observe(&self, ts: u64, wall_ms: u64) {
        if replication::should_observe(ts, wall_ms) {
            self.hlc.observe(ts);
        }
    }

    /// `payload` in an envelope stamped now, checked against its declared type and the size
    /// limit.
    pub fn envelope(
        &self,
        cl: &Cluster,
        wall_ms: u64,
        kind: Kind,
        vtype: ValueType,
        format: Format,
        payload: &[u8],
    ) -> Result<Bytes, Error> {
        envelope::check_fields(kind, vtype, format, payload)
            .map_err(|e| Error::Config(format!("value does not match its declared type: {e}")))?;
        cl.check_value(envelope::HEADER_LEN + payload.len())?;
        let mut buf = BytesMut::with_capacity(envelope::HEADER_LEN + payload.len());
        envelope::encode_into(&mut buf, self.stamp(wall_ms), kind, vtype, format, payload)
            .map_err(|e| Error::Config(format!("value does not match its declared type: {e}")))?;
        Ok(buf.freeze())
    }
}

/// One GetMulti per server for the `(key, server)` pairs asked; results are aligned with
/// `asked`. Returns the requests and, per request, the positions in `asked` it covers.
fn fetch(keys: &[Bytes], asked: &[(usize, usize)], full: bool) -> (Vec<Request>, Vec<Vec<usize>>) {
    let groups = group_by_server(asked.iter().enumerate().map(|(a, &(_, s))| (s, a)));
    let mut requests = Vec::with_capacity(groups.len());
    let mut covers = Vec::with_capacity(groups.len());
    for (s, list) in groups {
        let ks = list.iter().map(|&a| keys[asked[a].0].clone()).collect();
        requests.push(Request::new(
            s,
            Call::GetMulti {
                keys: ks,
                cas: full,
                ttl: full,
            },
        ));
        covers.push(list);
    }
    (requests, covers)
}

/// Spread per-server answers back over the asked pairs.
fn spread(
    asked: usize,
    covers: &[Vec<usize>],
    answers: Vec<Result<Answer, Error>>,
) -> Vec<Result<Option<Value>, Error>> {
    let mut out: Vec<Result<Option<Value>, Error>> = (0..asked).map(|_| Ok(None)).collect();
    for (list, a) in covers.iter().zip(answers) {
        match Answer::into_values(a) {
            Ok(values) => {
                for (&i, v) in list.iter().zip(values) {
                    out[i] = Ok(v);
                }
            }
            Err(e) => list.iter().for_each(|&i| out[i] = Err(e.clone())),
        }
    }
    out
}

#[derive(Debug)]
enum ReadState {
    Start,
    /// FirstHit: asking rank `rank` for the keys still pending.
    Rank {
        rank: usize,
        asked: Vec<(usize, usize)>,
        covers: Vec<Vec<usize>>,
    },
    /// All/Quorum: every copy asked.
    All {
        asked: Vec<(usize, usize)>,
        covers: Vec<Vec<usize>>,
    },
    Repairing {
        servers: Vec<usize>,
    },
    Done,
}

/// Read many replicated keys: each server gets one request for all the copies it holds.
/// FirstHit asks rank by rank and stops at the first hit; All and Quorum ask every copy,
/// take the later one, count disagreements and repair stale or missing copies.
#[derive(Debug)]
pub struct Read {
    rep: Rep,
    keys: Vec<Bytes>,
    /// Indices of the keys that passed the key rules.
    valid: Vec<usize>,
    placement: Vec<Vec<usize>>,
    out: Vec<Result<Option<Versioned>, Error>>,
    pending: Vec<usize>,
    errors: Vec<Vec<(String, Error)>>,
    state: ReadState,
}

impl Read {
    /// Read `keys` with `rep`'s policy.
    pub fn new<K: AsRef<[u8]>>(rep: Rep, keys: &[K]) -> Self {
        Read {
            rep,
            keys: keys
                .iter()
                .map(|k| Bytes::copy_from_slice(k.as_ref()))
                .collect(),
            valid: Vec::new(),
            placement: Vec::new(),
            out: Vec::new(),
            pending: Vec::new(),
            errors: Vec::new(),
            state: ReadState::Start,
        }
    }

    fn rank(&mut self, rank: usize) -> Step<Vec<Result<Option<Versioned>, Error>>> {
        let asked: Vec<(usize, usize)> = if rank < self.rep.policy.replicas {
            self.pending
                .iter()
                .filter_map(|&v| self.placement[v].get(rank).map(|&s| (v, s)))
                .collect()
        } else {
            Vec::new()
        };
        if asked.is_empty() {
            for &v in &self.pending {
                if self.errors[v].len() == self.placement[v].len() {
                    self.out[self.valid[v]] = Err(Error::Replication {
                        op: "read",
                        acked: 0,
                        required: 1,
                        failures: std::mem::take(&mut self.errors[v]),
                    });
                }
            }
            self.state = ReadState::Done;
            return Step::Done(Ok(std::mem::take(&mut self.out)));
        }
        let keys: Vec<Bytes> = self.valid.iter().map(|&i| self.keys[i].clone()).collect();
        let (requests, covers) = fetch(&keys, &asked, false);
        self.state = ReadState::Rank {
            rank,
            asked,
            covers,
        };
        Step::Send(requests)
    }
}

impl Machine for Read {
    type Output = Vec<Result<Option<Versioned>, Error>>;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Self::Output> {
        let cl = cx.cluster;
        let state = std::mem::replace(&mut self.state, ReadState::Done);
        match (state, input) {
            (ReadState::Start, Input::Start) => {
                let p = &self.rep.policy;
                self.out = self
                    .keys
                    .iter()
                    .map(|k| cl.check_key(k).map(|_| None))
                    .collect();
                self.valid = (0..self.keys.len())
                    .filter(|&i| self.out[i].is_ok())
                    .collect();
                let now = cx.now.mono_ms();
                self.placement = self
                    .valid
                    .iter()
                    .map(|&i| cl.replicas_for(&self.keys[i], p.replicas, p.failover, now))
                    .collect();
                if p.read == ReadPolicy::FirstHit {
                    self.pending = (0..self.valid.len()).collect();
                    self.errors = vec![Vec::new(); self.valid.len()];
                    return self.rank(0);
                }
                let asked: Vec<(usize, usize)> = self
                    .placement
                    .iter()
                    .enumerate()
                    .flat_map(|(v, servers)| servers.iter().map(move |&s| (v, s)))
                    .collect();
                if asked.is_empty() {
                    return Step::Done(Ok(std::mem::take(&mut self.out)));
                }
                let keys: Vec<Bytes> = self.valid.iter().map(|&i| self.keys[i].clone()).collect();
                let (requests, covers) = fetch(&keys, &asked, true);
                self.state = ReadState::All { asked, covers };
                Step::Send(requests)
            }
            (
                ReadState::Rank {
                    rank,
                    asked,
                    covers,
                },
                Input::Answers(a),
            ) => {
                let copies = spread(asked.len(), &covers, a);
                let mut still = Vec::new();
                for ((v, s), copy) in asked.into_iter().zip(copies) {
                    match copy {
                        Ok(Some(value)) => {
                            let d = replication::decode_copy(&value);
                            if d.is_some() {
                                self.rep
                                    .observe(d.as_ref().map_or(0, |d| d.stamp.ts), cx.now.wall_ms);
                            }
                            self.out[self.valid[v]] = Ok(d);
                        }
                        Ok(None) => still.push(v),
                        Err(e) => {
                            self.errors[v].push((cl.name(s).to_string(), e));
                            still.push(v);
                        }
                    }
                }
                self.pending = still;
                self.rank(rank + 1)
            }
            (ReadState::All { asked, covers }, Input::Answers(a)) => {
                let fetched = spread(asked.len(), &covers, a);
                let mut copies: Vec<Vec<Result<Option<Value>, Error>>> = self
                    .placement
                    .iter()
                    .map(|p| Vec::with_capacity(p.len()))
                    .collect();
                for ((v, _), c) in asked.iter().zip(fetched) {
                    copies[*v].push(c);
                }
                let mut repairs: Vec<(usize, Item)> = Vec::new();
                let p = &self.rep.policy;
                for (v, key_copies) in copies.iter().enumerate() {
                    for (rank, c) in key_copies.iter().enumerate() {
                        cl.tally_read(self.placement[v][rank], c);
                    }
                    match replication::resolve(p.read, key_copies, p.read_repair) {
                        Ok(r) => {
                            self.rep.observe(r.winner_ts, cx.now.wall_ms);
                            if r.disagreement {
                                cl.disagreement();
                            }
                            for &rank in &r.stale {
                                cl.server_metrics(self.placement[v][rank]).stale();
                            }
                            if let Some(raw) = &r.winner_raw {
                                for rep in r.repairs {
                                    repairs.push((
                                        self.placement[v][rep.replica],
                                        Item {
                                            key: self.keys[self.valid[v]].clone(),
                                            data: raw.clone(),
                                            mode: rep.mode,
                                            flags: r.winner_flags,
                                            ttl: rep.ttl,
                                        },
                                    ));
                                }
                            }
                            self.out[self.valid[v]] = Ok(r.value);
                        }
                        Err(e) => self.out[self.valid[v]] = Err(e),
                    }
                }
                if repairs.is_empty() {
                    return Step::Done(Ok(std::mem::take(&mut self.out)));
                }
                let groups = group_by_server(repairs);
                self.state = ReadState::Repairing {
                    servers: groups.iter().map(|(s, _)| *s).collect(),
                };
                Step::Send(
                    groups
                        .into_iter()
                        .map(|(s, items)| Request::new(s, Call::StoreItems(items)))
                        .collect(),
                )
            }
            (ReadState::Repairing { servers }, Input::Answers(a)) => {
                // Only repairs that landed are counted.
                for (&s, a) in servers.iter().zip(a) {
                    if let Ok(results) = Answer::into_items(a) {
                        results
                            .iter()
                            .filter(|r| r.is_ok())
                            .for_each(|_| cl.server_metrics(s).repair());
                    }
                }
                Step::Done(Ok(std::mem::take(&mut self.out)))
            }
            (_, input) => out_of_order("replicated read", &input),
        }
    }
}

/// One value (or tombstone) of a replicated write.
#[derive(Debug, Clone)]
pub struct Put {
    /// The key.
    pub key: Bytes,
    /// A value or a tombstone.
    pub kind: Kind,
    /// Its type.
    pub value_type: ValueType,
    /// Its serializer.
    pub format: Format,
    /// The payload (empty for a tombstone).
    pub payload: Bytes,
}

#[derive(Debug)]
enum WriteState {
    Start,
    Storing {
        groups: Vec<(usize, Vec<usize>)>,
        valid: Vec<usize>,
        placement: Vec<Vec<usize>>,
    },
    Done,
}

/// Write values or tombstones to every replica of their keys, in envelopes stamped now: one
/// pipelined request per server. Each item's result follows the write policy.
#[derive(Debug)]
pub struct Write {
    rep: Rep,
    op: &'static str,
    puts: Vec<Put>,
    ttl: u32,
    out: Vec<Result<WriteReport, Error>>,
    state: WriteState,
}

impl Write {
    /// Write `puts` with TTL `ttl`; `op` names the write in errors (`write`, `delete`).
    pub fn new(rep: Rep, op: &'static str, puts: Vec<Put>, ttl: u32) -> Self {
        Write {
            rep,
            op,
            puts,
            ttl,
            out: Vec::new(),
            state: WriteState::Start,
        }
    }
}

impl Machine for Write {
    type Output = Vec<Result<WriteReport, Error>>;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Self::Output> {
        let cl = cx.cluster;
        let state = std::mem::replace(&mut self.state, WriteState::Done);
        match (state, input) {
            (WriteState::Start, Input::Start) => {
                let mut bodies: Vec<Bytes> = Vec::with_capacity(self.puts.len());
                let mut out = Vec::with_capacity(self.puts.len());
                for p in &self.puts {
                    let r = cl.check_key(&p.key).and_then(|()| {
                        self.rep.envelope(
                            cl,
                            cx.now.wall_ms,
                            p.kind,
                            p.value_type,
                            p.format,
                            &p.payload,
                        )
                    });
                    out.push(
                        r.map(|env| bodies.push(env))
                            .map(|()| WriteReport::default()),
                    );
                }
                self.out = out;
                let valid: Vec<usize> = (0..self.puts.len())
                    .filter(|&i| self.out[i].is_ok())
                    .collect();
                let p = &self.rep.policy;
                let now = cx.now.mono_ms();
                let placement: Vec<Vec<usize>> = valid
                    .iter()
                    .map(|&i| cl.replicas_for(&self.puts[i].key, p.replicas, p.failover, now))
                    .collect();
                let groups = group_by_server(
                    placement
                        .iter()
                        .enumerate()
                        .flat_map(|(v, servers)| servers.iter().map(move |&s| (s, v))),
                );
                if groups.is_empty() {
                    return Step::Done(Ok(std::mem::take(&mut self.out)));
                }
                let requests = groups
                    .iter()
                    .map(|(s, list)| {
                        let items = list
                            .iter()
                            .map(|&v| Item {
                                key: self.puts[valid[v]].key.clone(),
                                data: bodies[v].clone(),
                                mode: StoreMode::Set,
                                // Enveloped values carry flags 0, so plain clients read raw bytes.
                                flags: 0,
                                ttl: self.ttl,
                            })
                            .collect();
                        Request::new(*s, Call::StoreItems(items))
                    })
                    .collect();
                self.state = WriteState::Storing {
                    groups,
                    valid,
                    placement,
                };
                Step::Send(requests)
            }
            (
                WriteState::Storing {
                    groups,
                    valid,
                    placement,
                },
                Input::Answers(answers),
            ) => {
                let mut per_item: Vec<Vec<(usize, Result<(), Error>)>> =
                    vec![Vec::new(); valid.len()];
                for ((s, list), a) in groups.iter().zip(answers) {
                    match Answer::into_items(a) {
                        Ok(results) => {
                            for (&v, r) in list.iter().zip(results) {
                                cl.tally_store(*s, &r);
                                per_item[v].push((*s, r.map_err(|e| e.at_server(cl.name(*s)))));
                            }
                        }
                        Err(e) => list
                            .iter()
                            .for_each(|&v| per_item[v].push((*s, Err(e.clone())))),
                    }
                }
                for (v, mut results) in per_item.into_iter().enumerate() {
                    // Report in preference order.
                    results.sort_by_key(|(s, _)| placement[v].iter().position(|p| p == s));
                    let named = results
                        .into_iter()
                        .map(|(s, r)| (cl.name(s).to_string(), r))
                        .collect();
                    self.out[valid[v]] =
                        replication::write_outcome(self.op, self.rep.policy.write, named);
                }
                Step::Done(Ok(std::mem::take(&mut self.out)))
            }
            (_, input) => out_of_order("replicated write", &input),
        }
    }
}

/// A decision taken inside the machine instead of by the caller's function: the replicated
/// add/replace/append/touch and the exact counter, so every binding runs the same rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Ask the caller ([`Step::Decide`]).
    Caller,
    /// Store only if the key has no live value; [`Error::NotStored`] otherwise.
    Add(ValueType, Format, Bytes),
    /// Store only if the key has a live value; [`Error::NotStored`] otherwise.
    Replace(ValueType, Format, Bytes),
    /// Append (or prepend) bytes to a live bytes or text value.
    Append {
        /// The bytes.
        data: Bytes,
        /// Prepend instead.
        prepend: bool,
    },
    /// Rewrite a live value unchanged (with the call's TTL); `found` says whether there was one.
    Touch,
    /// Store only if the live value still has this version token
    /// ([`Versioned::version_token`], what a replicated `gets` hands out): [`Error::Exists`]
    /// when it changed, [`Error::NotFound`] when the key has no live value.
    IfVersion(u64, ValueType, Format, Bytes),
    /// Add `delta` to an integer (floored at 0); with `initial`, a missing key is created with
    /// it (memcached's incr-with-initial, as libmemcached's `increment_with_initial`).
    Incr {
        /// The amount (negative: decrement).
        delta: i64,
        /// The value a missing key starts at.
        initial: Option<u64>,
    },
}

/// A replicated counter's value: the envelope holds a signed 64-bit integer, so a value past
/// `i64::MAX` is refused with what to do instead of failing the envelope's type check.
fn counter_value(n: u64) -> Result<u64, Error> {
    if n > i64::MAX as u64 {
        return Err(Error::Config(format!(
            "a replicated counter holds a signed 64-bit integer: {n} is past 2^63-1 \
             (use a plain key for a counter that wraps at 2^64)"
        )));
    }
    Ok(n)
}

/// What a replicated read-modify-write did.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The outcome.
    pub outcome: CasOutcome,
    /// Where the new value was stored.
    pub report: WriteReport,
    /// Whether the key had a live value ([`Rule::Touch`], [`Rule::Incr`]).
    pub found: bool,
    /// The counter's new value ([`Rule::Incr`]).
    pub number: Option<u64>,
}

#[derive(Debug)]
enum CasState {
    Start,
    Reading {
        placement: Vec<usize>,
        covers: Vec<Vec<usize>>,
    },
    CatchingUp,
    Deciding {
        placement: Vec<usize>,
        primary: Option<Value>,
        current: Option<Versioned>,
    },
    Primary {
        placement: Vec<usize>,
        kind: Kind,
        item: Item,
    },
    Others {
        placement: Vec<usize>,
        kind: Kind,
    },
    Waiting,
    Done,
}

/// A replicated read-modify-write, serialized by compare-and-swap on the key's primary
/// replica: each attempt reads every replica, brings the primary up to the latest copy if it
/// lags, decides on the latest value, stores the result on the primary with `cas` (`add` if it
/// has no copy) under a later stamp, then on the other replicas. A conflict on the primary
/// retries with jittered backoff; an unreachable primary fails the update (it is never
/// serialized on another server).
#[derive(Debug)]
pub struct Cas {
    rep: Rep,
    key: Bytes,
    rule: Rule,
    opts: CasOptions,
    rng: Rng,
    attempts: u32,
    start: Duration,
    found: bool,
    number: Option<u64>,
    state: CasState,
}

impl Cas {
    /// Update `key` by `rule` with `opts`; `seed` feeds the backoff jitter.
    pub fn new(rep: Rep, key: &[u8], rule: Rule, opts: CasOptions, seed: u64) -> Self {
        Cas {
            rep,
            key: Bytes::copy_from_slice(key),
            rule,
            opts,
            rng: Rng::new(seed),
            attempts: 0,
            start: Duration::ZERO,
            found: false,
            number: None,
            state: CasState::Start,
        }
    }

    fn attempt(&mut self, cx: &Cx<'_>) -> Step<Updated, Versioned> {
        self.attempts += 1;
        let p = &self.rep.policy;
        let placement =
            cx.cluster
                .replicas_for(&self.key, p.replicas, p.failover, cx.now.mono_ms());
        if placement.is_empty() {
            // A validated policy always has a replica; never index an empty placement.
            return self.done(Err(Error::Config(
                "a replicated update needs at least one replica".into(),
            )));
        }
        let asked: Vec<(usize, usize)> = placement.iter().map(|&s| (0, s)).collect();
        let (requests, covers) = fetch(std::slice::from_ref(&self.key), &asked, true);
        self.state = CasState::Reading { placement, covers };
        Step::Send(requests)
    }

    fn done(&mut self, r: Result<Updated, Error>) -> Step<Updated, Versioned> {
        self.state = CasState::Done;
        Step::Done(r)
    }

    fn finished(&mut self, outcome: CasOutcome, report: WriteReport) -> Step<Updated, Versioned> {
        let (found, number) = (self.found, self.number);
        self.done(Ok(Updated {
            outcome,
            report,
            found,
            number,
        }))
    }

    /// The built-in rules' decisions.
    fn decide(&mut self, current: Option<&Versioned>) -> Result<Update, Error> {
        self.found = current.is_some();
        match (&self.rule, current) {
            (Rule::Caller, _) => Ok(Update::Keep),
            (Rule::Add(..), Some(_)) | (Rule::Replace(..), None) | (Rule::Append { .. }, None) => {
                Err(Error::NotStored)
            }
            (Rule::Add(t, f, v), None) | (Rule::Replace(t, f, v), Some(_)) => {
                Ok(Update::Typed(*t, *f, v.to_vec()))
            }
            (Rule::Append { data, prepend }, Some(cur)) => {
                if !matches!(cur.value_type, ValueType::Bytes | ValueType::Text) {
                    return Err(Error::Client {
                        server: String::new(),
                        message: "append/prepend needs a bytes or text value".into(),
                    });
                }
                let joined = if *prepend {
                    [&data[..], &cur.data[..]].concat()
                } else {
                    [&cur.data[..], &data[..]].concat()
                };
                let t = if cur.value_type == ValueType::Text && std::str::from_utf8(&joined).is_ok()
                {
                    ValueType::Text
                } else {
                    ValueType::Bytes
                };
                Ok(Update::Typed(t, Format::NONE, joined))
            }
            (Rule::IfVersion(..), None) => Err(Error::NotFound),
            (Rule::IfVersion(token, ..), Some(cur)) if cur.version_token() != *token => {
                Err(Error::Exists)
            }
            (Rule::IfVersion(_, t, f, v), Some(_)) => Ok(Update::Typed(*t, *f, v.to_vec())),
            (Rule::Touch, None) => Ok(Update::Keep),
            (Rule::Touch, Some(cur)) => {
                Ok(Update::Typed(cur.value_type, cur.format, cur.data.to_vec()))
            }
            (Rule::Incr { initial: None, .. }, None) => {
                self.number = None;
                Ok(Update::Keep)
            }
            (
                Rule::Incr {
                    initial: Some(n), ..
                },
                None,
            ) => {
                let n = counter_value(*n)?;
                self.number = Some(n);
                Ok(Update::Typed(
                    ValueType::Int,
                    Format::NONE,
                    n.to_string().into_bytes(),
                ))
            }
            (Rule::Incr { delta, .. }, Some(cur)) => {
                let Some(n) = std::str::from_utf8(&cur.data)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                else {
                    return Err(Error::Client {
                        server: String::new(),
                        message: "cannot increment or decrement a non-numeric value".into(),
                    });
                };
                let next = if *delta >= 0 {
                    n.wrapping_add(*delta as u64)
                } else {
                    n.saturating_sub(delta.unsigned_abs())
                };
                let next = counter_value(next)?;
                self.number = Some(next);
                Ok(Update::Typed(
                    ValueType::Int,
                    Format::NONE,
                    next.to_string().into_bytes(),
                ))
            }
        }
    }

    fn apply(
        &mut self,
        cx: &Cx<'_>,
        placement: Vec<usize>,
        primary: Option<Value>,
        exists: bool,
        update: Update,
    ) -> Step<Updated, Versioned> {
        let attempts = self.attempts;
        let (kind, vtype, format, payload) = match update {
            Update::Keep => {
                return self.finished(CasOutcome::Unchanged { attempts }, WriteReport::default())
            }
            Update::Delete if !exists => {
                return self.finished(CasOutcome::Deleted { attempts }, WriteReport::default())
            }
            Update::Delete => (Kind::Tombstone, ValueType::Bytes, Format::NONE, Vec::new()),
            Update::Set(v) | Update::Plain(v, _) => {
                (Kind::Value, ValueType::Bytes, Format::NONE, v)
            }
            Update::Typed(t, f, v) => (Kind::Value, t, f, v),
        };
        let env = match self
            .rep
            .envelope(cx.cluster, cx.now.wall_ms, kind, vtype, format, &payload)
        {
            Ok(e) => e,
            Err(e) => return self.done(Err(e)),
        };
        let ttl = if kind == Kind::Tombstone {
            self.rep.policy.tombstone_ttl
        } else {
            self.opts.ttl
        };
        let mode = match &primary {
            Some(p) => match p.cas {
                Some(c) => StoreMode::Cas(c),
                None => return self.done(Err(no_cas(&self.key))),
            },
            None => StoreMode::Add,
        };
        let item = Item {
            key: self.key.clone(),
            data: env,
            mode,
            flags: 0,
            ttl,
        };
        let req = Request::new(placement[0], Call::StoreItems(vec![item.clone()]));
        self.state = CasState::Primary {
            placement,
            kind,
            item,
        };
        Step::Send(vec![req])
    }

    fn retry(&mut self, cx: &Cx<'_>) -> Step<Updated, Versioned> {
        let elapsed = cx.now.mono.saturating_sub(self.start);
        if self.attempts >= self.opts.max_attempts.max(1) || elapsed >= self.opts.deadline {
            return self.done(Err(Error::CasRetriesExhausted {
                key: String::from_utf8_lossy(&self.key).into_owned(),
                attempts: self.attempts,
            }));
        }
        self.state = CasState::Waiting;
        Step::Wait(pause_before(
            self.attempts,
            self.opts.base_backoff,
            self.opts.max_backoff,
            &mut self.rng,
            cx.now.mono,
            self.start,
            self.opts.deadline,
        ))
    }
}

fn first_item(a: Option<Result<Answer, Error>>) -> Result<(), Error> {
    let a = a.unwrap_or_else(|| {
        Err(Error::Client {
            server: String::new(),
            message: "no answer (a driver bug)".into(),
        })
    });
    Answer::into_items(a).and_then(|mut v| v.pop().unwrap_or(Ok(())))
}

impl Machine for Cas {
    type Output = Updated;
    type View = Versioned;

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Updated, Versioned> {
        let cl = cx.cluster;
        let state = std::mem::replace(&mut self.state, CasState::Done);
        match (state, input) {
            (CasState::Start, Input::Start) => {
                if let Err(e) = cl.check_key(&self.key) {
                    return self.done(Err(e));
                }
                self.start = cx.now.mono;
                self.attempt(cx)
            }
            (CasState::Reading { placement, covers }, Input::Answers(a)) => {
                let copies = spread(placement.len(), &covers, a);
                let primary = match &copies[0] {
                    Err(e) => return self.done(Err(e.clone())),
                    Ok(p) => p.clone(),
                };
                let resolved = match replication::resolve(ReadPolicy::All, &copies, true) {
                    Ok(r) => r,
                    Err(e) => return self.done(Err(e)),
                };
                self.rep.observe(resolved.winner_ts, cx.now.wall_ms);
                let latest = resolved.winner_raw.clone();
                // The primary must hold the latest copy before it can serialize an update of it.
                if latest.is_some() && primary.as_ref().map(|p| &p.data) != latest.as_ref() {
                    if let Some(rep) = resolved.repairs.iter().find(|r| r.replica == 0) {
                        let item = Item {
                            key: self.key.clone(),
                            data: latest.unwrap_or_default(),
                            mode: rep.mode,
                            flags: resolved.winner_flags,
                            ttl: rep.ttl,
                        };
                        self.state = CasState::CatchingUp;
                        return Step::Send(vec![Request::new(
                            placement[0],
                            Call::StoreItems(vec![item]),
                        )]);
                    }
                    return self.attempt(cx);
                }
                let current = resolved.value;
                if let Rule::Caller = self.rule {
                    self.state = CasState::Deciding {
                        placement,
                        primary,
                        current: current.clone(),
                    };
                    return Step::Decide(current);
                }
                let exists = current.is_some();
                match self.decide(current.as_ref()) {
                    Ok(u) => self.apply(cx, placement, primary, exists, u),
                    Err(e) => self.done(Err(e)),
                }
            }
            (CasState::CatchingUp, Input::Answers(_)) => self.attempt(cx),
            (
                CasState::Deciding {
                    placement,
                    primary,
                    current,
                },
                Input::Decided(d),
            ) => {
                self.found = current.is_some();
                match d {
                    Ok(u) => self.apply(cx, placement, primary, current.is_some(), u),
                    Err(e) => self.done(Err(e)),
                }
            }
            (
                CasState::Primary {
                    placement,
                    kind,
                    item,
                },
                Input::Answers(a),
            ) => match first_item(a.into_iter().next()) {
                Ok(()) => {
                    cl.tally_store(placement[0], &Ok(()));
                    if placement.len() == 1 {
                        return self.finish_write(cx, placement, kind, Vec::new());
                    }
                    let rest = Item {
                        mode: StoreMode::Set,
                        ..item
                    };
                    let requests = placement[1..]
                        .iter()
                        .map(|&s| Request::new(s, Call::StoreItems(vec![rest.clone()])))
                        .collect();
                    self.state = CasState::Others { placement, kind };
                    Step::Send(requests)
                }
                Err(Error::Exists | Error::NotFound | Error::NotStored) => self.retry(cx),
                Err(e) => self.done(Err(e)),
            },
            (CasState::Others { placement, kind }, Input::Answers(a)) => {
                self.finish_write(cx, placement, kind, a)
            }
            (CasState::Waiting, Input::Woke) => self.attempt(cx),
            (_, input) => out_of_order("replicated cas_update", &input),
        }
    }
}

impl Cas {
    fn finish_write(
        &mut self,
        cx: &Cx<'_>,
        placement: Vec<usize>,
        kind: Kind,
        others: Vec<Result<Answer, Error>>,
    ) -> Step<Updated, Versioned> {
        let cl = cx.cluster;
        let mut report = WriteReport {
            stored: vec![cl.name(placement[0]).to_string()],
            failed: Vec::new(),
        };
        for (&s, a) in placement[1..].iter().zip(others) {
            let r = first_item(Some(a));
            cl.tally_store(s, &r);
            match r {
                Ok(()) => report.stored.push(cl.name(s).to_string()),
                Err(e) => report.failed.push((cl.name(s).to_string(), e)),
            }
        }
        let attempts = self.attempts;
        let outcome = if kind == Kind::Tombstone {
            CasOutcome::Deleted { attempts }
        } else {
            CasOutcome::Stored { attempts }
        };
        self.finished(outcome, report)
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;

    fn rep(replicas: usize) -> Rep {
        Rep {
            policy: Policy {
                replicas,
                ..Policy::default()
            },
            hlc: Arc::new(Hlc::new()),
            writer: 7,
        }
    }

    /// A stored copy: `payload` in an envelope stamped `ts`, with CAS unique `cas`.
    fn copy(payload: &str, ts: u64, cas: u64) -> Value {
        let mut buf = BytesMut::new();
        envelope::encode_into(
            &mut buf,
            Stamp { ts, writer: 1 },
            Kind::Value,
            ValueType::Text,
            Format::NONE,
            payload.as_bytes(),
        )
        .unwrap();
        Value {
            data: buf.freeze(),
            flags: 0,
            cas: Some(cas),
            ttl: Some(-1),
        }
    }

    /// Answers for a send step: each request answered by what its server holds.
    fn answer(requests: &[Request], held: impl Fn(usize) -> Option<Value>) -> Input {
        Input::Answers(
            requests
                .iter()
                .map(|r| match &r.call {
                    Call::GetMulti { keys, .. } => Ok(Answer::Values(
                        keys.iter().map(|_| held(r.server)).collect(),
                    )),
                    Call::StoreItems(items) => {
                        Ok(Answer::Items(items.iter().map(|_| Ok(())).collect()))
                    }
                    other => panic!("unexpected {other:?}"),
                })
                .collect(),
        )
    }

    #[test]
    fn a_read_takes_the_later_copy_and_repairs_the_others() {
        let cl = cluster(3);
        let p = cl.replicas_for(b"k", 3, false, 0);
        let held = |s: usize| {
            if s == p[0] {
                Some(copy("new", 2 << 16, 11))
            } else if s == p[1] {
                Some(copy("old", 1 << 16, 12))
            } else {
                None
            }
        };
        let mut m = Read::new(rep(3), &["k"]);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 3);
        let Step::Send(repairs) = m.step(&at(&cl, 1), answer(&r, held)) else {
            panic!()
        };
        // The older copy is replaced only if unchanged (cas), the missing one only if still
        // missing (add): a repair never overwrites a newer write.
        let mode_at = |s: usize| match &repairs.iter().find(|q| q.server == s).unwrap().call {
            Call::StoreItems(items) => items[0].mode,
            _ => panic!(),
        };
        assert_eq!(repairs.len(), 2);
        assert_eq!(mode_at(p[1]), StoreMode::Cas(12));
        assert_eq!(mode_at(p[2]), StoreMode::Add);
        let Step::Done(Ok(values)) = m.step(&at(&cl, 2), answer(&repairs, held)) else {
            panic!()
        };
        let v = values[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(&v.data[..], b"new");
        assert_eq!(cl.metrics().total.repairs, 2);
        assert_eq!(cl.metrics().total.disagreements, 1);
    }

    #[test]
    fn a_version_cas_stores_on_the_primary_first_and_loses_to_a_newer_write() {
        let cl = cluster(3);
        let current = copy("v1", 1 << 16, 40);
        let token = replication::decode_copy(&current).unwrap().version_token();
        let rule = |t| Rule::IfVersion(t, ValueType::Text, Format::NONE, Bytes::from_static(b"v2"));
        let mut m = Cas::new(rep(3), b"k", rule(token), CasOptions::default(), 1);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        let Step::Send(primary) = m.step(&at(&cl, 1), answer(&r, |_| Some(current.clone()))) else {
            panic!()
        };
        let p = cl.replicas_for(b"k", 3, false, 0);
        assert_eq!(primary.len(), 1);
        assert_eq!(primary[0].server, p[0]);
        assert!(
            matches!(&primary[0].call, Call::StoreItems(items) if items[0].mode == StoreMode::Cas(40))
        );
        let Step::Send(others) = m.step(&at(&cl, 2), answer(&primary, |_| None)) else {
            panic!()
        };
        assert_eq!(others.len(), 2);
        let Step::Done(Ok(u)) = m.step(&at(&cl, 3), answer(&others, |_| None)) else {
            panic!()
        };
        assert_eq!(u.outcome, CasOutcome::Stored { attempts: 1 });
        assert_eq!(u.report.stored.len(), 3);

        // A token from before another write: Exists, nothing sent.
        let mut m = Cas::new(rep(3), b"k", rule(token ^ 1), CasOptions::default(), 1);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        let Step::Done(Err(Error::Exists)) =
            m.step(&at(&cl, 1), answer(&r, |_| Some(current.clone())))
        else {
            panic!()
        };
    }

    #[test]
    fn a_counter_past_the_envelopes_int_range_is_a_clear_error() {
        let cl = cluster(3);
        let rule = Rule::Incr {
            delta: 1,
            initial: Some(u64::MAX),
        };
        let mut m = Cas::new(rep(3), b"n", rule, CasOptions::default(), 1);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        let Step::Done(Err(Error::Config(why))) = m.step(&at(&cl, 1), answer(&r, |_| None)) else {
            panic!()
        };
        assert!(why.contains("plain key"), "{why}");
    }

    #[test]
    fn a_write_meets_its_policy_or_names_the_replicas_that_failed() {
        let cl = cluster(3);
        let put = Put {
            key: Bytes::from_static(b"k"),
            kind: Kind::Value,
            value_type: ValueType::Bytes,
            format: Format::NONE,
            payload: Bytes::from_static(b"x"),
        };
        let mut m = Write::new(rep(3), "write", vec![put], 0);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 3);
        let failed = r[1].server;
        let answers = r
            .iter()
            .map(|q| {
                if q.server == failed {
                    Err(Error::Timeout {
                        server: String::new(),
                        phase: crate::error::Phase::Read,
                        after: Duration::from_millis(5),
                    })
                } else {
                    Ok(Answer::Items(vec![Ok(())]))
                }
            })
            .collect();
        let Step::Done(Ok(results)) = m.step(&at(&cl, 1), Input::Answers(answers)) else {
            panic!()
        };
        let Err(Error::Replication {
            acked: 2,
            required: 3,
            failures,
            ..
        }) = &results[0]
        else {
            panic!("{results:?}")
        };
        assert_eq!(failures.len(), 1);
    }
}
