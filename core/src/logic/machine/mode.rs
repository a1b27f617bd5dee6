//! One client, plain or replicated: the call picker every binding's client runs.
//!
//! A binding holds one [`Mode`] and asks it for the machine of each call: [`Mode::get`],
//! [`Mode::store`], [`Mode::cas_update`], ... Each answer is a [`Picked`] machine with one
//! output type whatever the mode (a plain call is a request to the key's owner, a replicated
//! one the replicated read, write or read-modify-write), and its decide steps show a [`Got`].
//! So no binding, and no driver, branches on the mode: the blocking facade
//! ([`crate::driver::cache`]) and the JavaScript client's jobs run what this module picked.
//!
//! Values cross in the form the mode stores: a binding's value implements [`Encode`] (both
//! forms, made on demand) and [`Mode::encode`] asks for the one it needs ([`Stored`]).

use super::cas::CasUpdate;
use super::counter::IncrInitial;
use super::fill::Fill;
use super::plain::{Deletes, Each, Gets, GetsWithCas, Single, Stores};
use super::replicated::{Cas, Put, Read, Rep, Rule, Write};
use super::{Answer, Call, Cx, Input, Item, Machine, Step};
use crate::cluster::Cluster;
use crate::envelope::{Format, Kind, ValueType};
use crate::error::Error;
use crate::logic::recipe::{CasOptions, CasOutcome, FillOptions, Fresh, Update};
use crate::protocol::text::StoreMode;
use crate::replication::WriteReport;
use bytes::Bytes;

pub use super::fill::Got;

/// Plain or replicated: how a client reads and stores its keys.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One copy on the key's server, stored as bytes with client flags.
    Plain,
    /// Copies on the key's replicas, in envelopes.
    Replicated(Rep),
}

/// A value in the form its mode stores.
#[derive(Debug, Clone)]
pub enum Stored {
    /// Bytes with the client flags of the binding's value convention.
    Plain {
        /// The bytes.
        data: Bytes,
        /// The client flags.
        flags: u32,
    },
    /// A typed payload, for an envelope.
    Typed {
        /// Its type.
        value_type: ValueType,
        /// Its serializer.
        format: Format,
        /// The payload.
        payload: Bytes,
    },
}

/// A binding's value, which can be made into either form; [`Mode::encode`] asks for the one
/// the mode stores, so a binding converts each value once and never asks which mode it is in.
pub trait Encode {
    /// The binding's error, for a value that cannot be stored in that form.
    type Error;
    /// The plain form: bytes and client flags.
    fn plain(&self) -> Result<(Bytes, u32), Self::Error>;
    /// The typed form: type, serializer and payload.
    fn typed(&self) -> Result<(ValueType, Format, Bytes), Self::Error>;
}

impl From<Stored> for Update {
    fn from(s: Stored) -> Update {
        match s {
            Stored::Plain { data, flags } => Update::Plain(data.to_vec(), flags),
            Stored::Typed {
                value_type,
                format,
                payload,
            } => Update::Typed(value_type, format, payload.to_vec()),
        }
    }
}

impl From<Stored> for Fresh {
    fn from(s: Stored) -> Fresh {
        match s {
            Stored::Plain { data, flags } => Fresh {
                data: data.to_vec(),
                flags,
                typed: None,
            },
            Stored::Typed {
                value_type,
                format,
                payload,
            } => Fresh {
                data: payload.to_vec(),
                flags: 0,
                typed: Some((value_type, format)),
            },
        }
    }
}

/// Where a write went: the key's server (a plain write), or a replicated write's report.
/// Kept as a server index for a plain write, so a binding that shows it can reuse what it
/// made for that server ([`Wrote::report`] names it).
#[derive(Debug, Clone)]
pub enum Wrote {
    /// Stored on this server (its index in the configuration).
    On(usize),
    /// A replicated write's report.
    Report(WriteReport),
}

impl Wrote {
    /// As a write report, servers by name.
    pub fn report(self, cl: &Cluster) -> WriteReport {
        match self {
            Wrote::On(s) => WriteReport {
                stored: vec![cl.name(s).to_string()],
                failed: Vec::new(),
            },
            Wrote::Report(r) => r,
        }
    }
}

/// A value with its version: the CAS unique (plain) or the version token (replicated,
/// [`crate::replication::Versioned::version_token`]), what [`Mode::store`] with
/// [`StoreMode::Cas`] takes back. 0 when the read did not ask for versions.
pub type WithVersion = (Got, u64);

/// A call picked by the [`Mode`]: one machine, one output type in either mode, its decide
/// steps showing a [`Got`].
pub struct Picked<T> {
    m: Box<dyn Machine<Output = T, View = Got> + Send>,
    oneshot: bool,
}

impl<T> std::fmt::Debug for Picked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picked")
            .field("oneshot", &self.oneshot)
            .finish()
    }
}

impl<T> Machine for Picked<T> {
    type Output = T;
    type View = Got;
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<T, Got> {
        self.m.step(cx, input)
    }
    fn oneshot(&self) -> bool {
        self.oneshot
    }
}

/// A machine with its output (and view) mapped.
struct Map<M: Machine, T> {
    m: M,
    out: fn(&M, M::Output) -> Result<T, Error>,
    view: fn(M::View) -> Option<Got>,
}

impl<M: Machine, T> Machine for Map<M, T> {
    type Output = T;
    type View = Got;
    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<T, Got> {
        match self.m.step(cx, input) {
            Step::Send(r) => Step::Send(r),
            Step::Wait(d) => Step::Wait(d),
            Step::Decide(v) => Step::Decide(v.and_then(self.view)),
            Step::Load => Step::Load,
            Step::Done(r) => Step::Done(r.and_then(|o| (self.out)(&self.m, o))),
        }
    }
}

/// A call that fails before it starts (its arguments were refused).
struct Refused<T>(Option<Error>, std::marker::PhantomData<fn() -> T>);

impl<T> Machine for Refused<T> {
    type Output = T;
    type View = Got;
    fn step(&mut self, _: &Cx<'_>, _: Input) -> Step<T, Got> {
        Step::Done(Err(self.0.take().unwrap_or_else(|| {
            binding_bug("a refused call was stepped twice")
        })))
    }
}

fn binding_bug(what: &str) -> Error {
    Error::Client {
        server: String::new(),
        message: format!("{what} (a binding bug)"),
    }
}

/// A machine that has no decide step (its view is never shown).
fn no_view<V>(_: V) -> Option<Got> {
    None
}

fn pick<M, T>(m: M, oneshot: bool, out: fn(&M, M::Output) -> Result<T, Error>) -> Picked<T>
where
    M: Machine + Send + 'static,
    M::View: 'static,
    T: 'static,
    Got: From<M::View>,
{
    Picked {
        m: Box::new(Map {
            m,
            out,
            view: |v| Some(Got::from(v)),
        }),
        oneshot,
    }
}

fn pick_blind<M, T>(m: M, oneshot: bool, out: fn(&M, M::Output) -> Result<T, Error>) -> Picked<T>
where
    M: Machine + Send + 'static,
    T: 'static,
{
    Picked {
        m: Box::new(Map {
            m,
            out,
            view: no_view,
        }),
        oneshot,
    }
}

fn refused<T: 'static>(e: Error) -> Picked<T> {
    Picked {
        m: Box::new(Refused(Some(e), std::marker::PhantomData)),
        oneshot: false,
    }
}

fn first<T>(v: Vec<Result<T, Error>>, what: &str) -> Result<T, Error> {
    v.into_iter()
        .next()
        .unwrap_or_else(|| Err(binding_bug(&format!("{what} of one key ended without it"))))
}

fn plain_got(v: Option<crate::ops::Value>) -> Option<WithVersion> {
    v.map(|v| {
        let c = v.cas.unwrap_or(0);
        (Got::Plain(v), c)
    })
}

fn replicated_got(v: Option<crate::replication::Versioned>) -> Option<WithVersion> {
    v.map(|v| {
        let t = v.version_token();
        (Got::Replicated(v), t)
    })
}

fn typed_only(s: Stored) -> Result<(ValueType, Format, Bytes), Error> {
    match s {
        Stored::Typed {
            value_type,
            format,
            payload,
        } => Ok((value_type, format, payload)),
        Stored::Plain { .. } => Err(binding_bug("a plain value for a replicated store")),
    }
}

fn plain_only(s: Stored) -> Result<(Bytes, u32), Error> {
    match s {
        Stored::Plain { data, flags } => Ok((data, flags)),
        Stored::Typed { .. } => Err(binding_bug("a typed value for a plain store")),
    }
}

impl Mode {
    /// `value` in the form this mode stores.
    pub fn encode<V: Encode + ?Sized>(&self, value: &V) -> Result<Stored, V::Error> {
        Ok(match self {
            Mode::Plain => {
                let (data, flags) = value.plain()?;
                Stored::Plain { data, flags }
            }
            Mode::Replicated(_) => {
                let (value_type, format, payload) = value.typed()?;
                Stored::Typed {
                    value_type,
                    format,
                    payload,
                }
            }
        })
    }

    /// The replicated policy, clock and writer, when replicated.
    pub fn rep(&self) -> Option<&Rep> {
        match self {
            Mode::Plain => None,
            Mode::Replicated(r) => Some(r),
        }
    }

    /// The replication policy in force (`None` when plain).
    pub fn policy(&self) -> Option<&crate::replication::Policy> {
        self.rep().map(|r| &r.policy)
    }

    /// The same mode (clock, writer id) with other read and/or write policies (`None` keeps
    /// the current one), checked against `servers`. The replica count and placement do not
    /// change. A plain mode has no policy to change: [`Error::Unsupported`].
    pub fn with_policies(
        &self,
        read: Option<crate::replication::ReadPolicy>,
        write: Option<crate::replication::WritePolicy>,
        servers: usize,
    ) -> Result<Mode, Error> {
        let Mode::Replicated(rep) = self else {
            return Err(Error::Unsupported {
                server: String::new(),
                feature: "per-call read/write policies on a plain client (it has none: they \
                          need replicas > 1 or the replicated mode)",
            });
        };
        let policy = crate::replication::Policy {
            read: read.unwrap_or(rep.policy.read),
            write: write.unwrap_or(rep.policy.write),
            ..rep.policy
        };
        policy.validate(servers)?;
        Ok(Mode::Replicated(Rep {
            policy,
            ..rep.clone()
        }))
    }

    /// The number of copies of a key, and whether they fail over to the next servers.
    pub fn copies(&self) -> (usize, bool) {
        self.rep()
            .map_or((1, false), |r| (r.policy.replicas, r.policy.failover))
    }

    /// Read `key` (with its version when `versions`; a replicated read always has one).
    /// Replicated: the latest copy, the others repaired; a deleted key is a miss.
    pub fn get(&self, key: Bytes, versions: bool) -> Picked<Option<WithVersion>> {
        match self {
            Mode::Plain => pick_blind(
                Single::new(Call::Get { key, cas: versions }),
                true,
                |_, r| Answer::into_value(Ok(r.1)).map(plain_got),
            ),
            Mode::Replicated(rep) => pick_blind(Read::new(rep.clone(), &[key]), false, |_, v| {
                first(v, "a read").map(replicated_got)
            }),
        }
    }

    /// Read many keys: one request per server. Aligned with `keys`; a key's failure is its
    /// own.
    pub fn get_multi(
        &self,
        keys: Vec<Bytes>,
        versions: bool,
    ) -> Picked<Vec<Result<Option<WithVersion>, Error>>> {
        fn plain<M>(_: &M, v: Vec<Result<Option<crate::ops::Value>, Error>>) -> ReadEach {
            Ok(v.into_iter().map(|r| r.map(plain_got)).collect())
        }
        type ReadEach = Result<Vec<Result<Option<WithVersion>, Error>>, Error>;
        match self {
            Mode::Plain if versions => pick_blind(Each::<GetsWithCas>::new(keys), true, plain),
            Mode::Plain => pick_blind(Each::<Gets>::new(keys), true, plain),
            Mode::Replicated(rep) => pick_blind(Read::new(rep.clone(), &keys), false, |_, v| {
                Ok(v.into_iter().map(|r| r.map(replicated_got)).collect())
            }),
        }
    }

    fn write(&self, rep: &Rep, puts: Vec<Put>, ttl: u32) -> Write {
        let (op, ttl) = match puts.first().map(|p| p.kind) {
            Some(Kind::Tombstone) => ("delete", rep.policy.tombstone_ttl),
            _ => ("write", ttl),
        };
        Write::new(rep.clone(), op, puts, ttl)
    }

    fn update(&self, rep: &Rep, key: &[u8], rule: Rule, ttl: u32, seed: u64) -> Cas {
        let opts = CasOptions {
            ttl,
            ..CasOptions::default()
        };
        Cas::new(rep.clone(), key, rule, opts, seed)
    }

    /// Store `value` (from [`Mode::encode`]) under `key`: `Set`, or a conditional store —
    /// `Add` (only if missing), `Replace` (only if present), `Append`/`Prepend` (bytes or text
    /// to a present value) or `Cas(version)` (only if the key still has that version, from a
    /// read with versions). [`Error::NotStored`], [`Error::Exists`] or [`Error::NotFound`] when
    /// the condition fails. Replicated conditional stores are serialized by CAS on the key's
    /// primary replica (`seed`: their backoff's jitter).
    pub fn store(
        &self,
        mode: StoreMode,
        key: Bytes,
        value: Stored,
        ttl: u32,
        seed: u64,
    ) -> Picked<Wrote> {
        let Mode::Replicated(rep) = self else {
            let (data, flags) = match plain_only(value) {
                Ok(v) => v,
                Err(e) => return refused(e),
            };
            let item = Item {
                key,
                data,
                mode,
                flags,
                ttl,
            };
            return pick_blind(Single::new(Call::Store(item)), true, |_, (s, a)| {
                Answer::into_done(Ok(a)).map(|()| Wrote::On(s))
            });
        };
        let (value_type, format, payload) = match typed_only(value) {
            Ok(v) => v,
            Err(e) => return refused(e),
        };
        let rule = match mode {
            StoreMode::Set => {
                let put = Put {
                    key,
                    kind: Kind::Value,
                    value_type,
                    format,
                    payload,
                };
                return pick_blind(self.write(rep, vec![put], ttl), false, |_, v| {
                    first(v, "a write").map(Wrote::Report)
                });
            }
            StoreMode::Add => Rule::Add(value_type, format, payload),
            StoreMode::Replace => Rule::Replace(value_type, format, payload),
            StoreMode::Append | StoreMode::Prepend => match value_type {
                ValueType::Bytes | ValueType::Text => Rule::Append {
                    data: payload,
                    prepend: mode == StoreMode::Prepend,
                },
                _ => {
                    return refused(Error::Config(
                        "append/prepend takes bytes or a string".into(),
                    ))
                }
            },
            StoreMode::Cas(version) => Rule::IfVersion(version, value_type, format, payload),
        };
        pick_blind(self.update(rep, &key, rule, ttl, seed), false, |_, u| {
            Ok(Wrote::Report(u.report))
        })
    }

    /// Delete `key`: whether it existed (replicated: tombstones on every replica, kept for
    /// the policy's tombstone TTL; `true` once the write policy was met), and where.
    pub fn delete(&self, key: Bytes) -> Picked<(bool, Wrote)> {
        match self {
            Mode::Plain => pick_blind(Single::new(Call::Delete { key }), true, |_, (s, a)| {
                Answer::into_existed(Ok(a)).map(|e| (e, Wrote::On(s)))
            }),
            Mode::Replicated(rep) => {
                let m = self.write(rep, vec![tombstone(key)], 0);
                pick_blind(m, false, |_, v| {
                    first(v, "a delete").map(|r| (true, Wrote::Report(r)))
                })
            }
        }
    }

    /// Add (`incr`) or subtract `delta` to the counter `key`; a missing key is `None`, or,
    /// with `initial`, created at `initial` with `ttl`. Plain: memcached's `incr`/`decr`
    /// (`decr` stops at 0); replicated: the exact counter, a read-modify-write serialized by
    /// CAS on the primary (`seed`: its backoff's jitter).
    pub fn incr(
        &self,
        key: Bytes,
        incr: bool,
        delta: u64,
        initial: Option<u64>,
        ttl: u32,
        seed: u64,
    ) -> Picked<Option<u64>> {
        let Mode::Replicated(rep) = self else {
            if initial.is_some() {
                let m = IncrInitial::new(&key, incr, delta, initial, ttl);
                return pick_blind(m, false, |_, n| Ok(n));
            }
            let call = Call::Arith { key, incr, delta };
            return pick_blind(Single::new(call), true, |_, (_, a)| {
                Answer::into_number(Ok(a))
            });
        };
        let Ok(d) = i64::try_from(delta) else {
            return refused(Error::Config(
                "a replicated counter's delta must fit a signed 64-bit integer".into(),
            ));
        };
        let rule = Rule::Incr {
            delta: if incr { d } else { -d },
            initial,
        };
        pick_blind(self.update(rep, &key, rule, ttl, seed), false, |_, u| {
            Ok(u.number)
        })
    }

    /// Give `key` a new TTL: whether it had a value (replicated: the live value is rewritten
    /// on every replica under a new stamp).
    pub fn touch(&self, key: Bytes, ttl: u32, seed: u64) -> Picked<bool> {
        match self {
            Mode::Plain => pick_blind(Single::new(Call::Touch { key, ttl }), true, |_, (_, a)| {
                Answer::into_existed(Ok(a))
            }),
            Mode::Replicated(rep) => {
                let m = self.update(rep, &key, Rule::Touch, ttl, seed);
                pick_blind(m, false, |_, u| Ok(u.found))
            }
        }
    }

    /// Store many values (from [`Mode::encode`]): one pipelined request per server. Aligned
    /// with `items`.
    pub fn set_multi(
        &self,
        items: Vec<(Bytes, Stored)>,
        ttl: u32,
    ) -> Picked<Vec<Result<Wrote, Error>>> {
        let Mode::Replicated(rep) = self else {
            let mut plain = Vec::with_capacity(items.len());
            for (key, v) in items {
                match plain_only(v) {
                    Ok((data, flags)) => plain.push(Item {
                        key,
                        data,
                        mode: StoreMode::Set,
                        flags,
                        ttl,
                    }),
                    Err(e) => return refused(e),
                }
            }
            return pick_blind(Each::<Stores>::new(plain), true, |m, rs| {
                let servers = m.servers();
                let on = |i: usize| Wrote::On(servers.get(i).copied().flatten().unwrap_or(0));
                Ok(rs
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| r.map(|()| on(i)))
                    .collect())
            });
        };
        let mut puts = Vec::with_capacity(items.len());
        for (key, v) in items {
            match typed_only(v) {
                Ok((value_type, format, payload)) => puts.push(Put {
                    key,
                    kind: Kind::Value,
                    value_type,
                    format,
                    payload,
                }),
                Err(e) => return refused(e),
            }
        }
        pick_blind(self.write(rep, puts, ttl), false, |_, v| {
            Ok(v.into_iter().map(|r| r.map(Wrote::Report)).collect())
        })
    }

    /// Delete many keys. Aligned with `keys`: whether each existed (replicated: `true` once
    /// its tombstones met the write policy).
    pub fn delete_multi(&self, keys: Vec<Bytes>) -> Picked<Vec<Result<bool, Error>>> {
        match self {
            Mode::Plain => pick_blind(Each::<Deletes>::new(keys), true, |_, rs| Ok(rs)),
            Mode::Replicated(rep) => {
                let m = self.write(rep, keys.into_iter().map(tombstone).collect(), 0);
                pick_blind(m, false, |_, v| {
                    Ok(v.into_iter().map(|r| r.map(|_| true)).collect())
                })
            }
        }
    }

    /// Read-modify-write `key` without losing concurrent updates: each decide step shows the
    /// current value, and the caller answers with what to store (an [`Update`] from
    /// [`Mode::encode`]), to keep or to delete. Replicated: serialized by CAS on the primary.
    pub fn cas_update(
        &self,
        key: &[u8],
        opts: CasOptions,
        seed: u64,
    ) -> Picked<(CasOutcome, Wrote)> {
        match self {
            Mode::Plain => {
                let m = CasUpdate::new(key, opts, seed);
                pick(m, false, |m, o| Ok((o, Wrote::On(m.server()))))
            }
            Mode::Replicated(rep) => {
                let m = Cas::new(rep.clone(), key, Rule::Caller, opts, seed);
                pick(m, false, |_, u| Ok((u.outcome, Wrote::Report(u.report))))
            }
        }
    }

    /// The fill of `get_or_set` after a miss of `key` ([`super::fill`]): one process loads
    /// (the load step) and stores, the others wait for its value. `token` names the fill
    /// lock's holder.
    pub fn fill(
        &self,
        key: &[u8],
        ttl: u32,
        opts: FillOptions,
        token: &str,
        seed: u64,
    ) -> Picked<Got> {
        pick_blind(
            Fill::new(self.clone(), key, ttl, opts, token, seed),
            false,
            |_, g| Ok(g),
        )
    }
}

fn tombstone(key: Bytes) -> Put {
    Put {
        key,
        kind: Kind::Tombstone,
        value_type: ValueType::Bytes,
        format: Format::NONE,
        payload: Bytes::new(),
    }
}

/// Raw bytes: the same in both forms (flags 0; typed as bytes).
impl Encode for Bytes {
    type Error = std::convert::Infallible;
    fn plain(&self) -> Result<(Bytes, u32), Self::Error> {
        Ok((self.clone(), 0))
    }
    fn typed(&self) -> Result<(ValueType, Format, Bytes), Self::Error> {
        Ok((ValueType::Bytes, Format::NONE, self.clone()))
    }
}

impl From<crate::ops::Value> for Got {
    fn from(v: crate::ops::Value) -> Got {
        Got::Plain(v)
    }
}

impl From<crate::replication::Versioned> for Got {
    fn from(v: crate::replication::Versioned) -> Got {
        Got::Replicated(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;
    use crate::envelope::Hlc;
    use crate::ops::Value;
    use crate::replication::Policy;
    use std::sync::Arc;

    fn replicated(replicas: usize) -> Mode {
        Mode::Replicated(Rep {
            policy: Policy {
                replicas,
                ..Policy::default()
            },
            hlc: Arc::new(Hlc::new()),
            writer: 7,
        })
    }

    fn value(data: &str, cas: u64) -> Value {
        Value {
            data: Bytes::copy_from_slice(data.as_bytes()),
            flags: 0,
            cas: Some(cas),
            ttl: None,
        }
    }

    /// A value that can be made in both forms, counting which one was asked for.
    struct Both(std::cell::Cell<(u32, u32)>);

    impl Encode for Both {
        type Error = &'static str;
        fn plain(&self) -> Result<(Bytes, u32), &'static str> {
            let (p, t) = self.0.get();
            self.0.set((p + 1, t));
            Ok((Bytes::from_static(b"42"), 2))
        }
        fn typed(&self) -> Result<(ValueType, Format, Bytes), &'static str> {
            let (p, t) = self.0.get();
            self.0.set((p, t + 1));
            Ok((ValueType::Int, Format::NONE, Bytes::from_static(b"42")))
        }
    }

    #[test]
    fn each_mode_asks_for_the_form_it_stores_and_only_that() {
        let v = Both(Default::default());
        assert!(matches!(
            Mode::Plain.encode(&v),
            Ok(Stored::Plain { flags: 2, .. })
        ));
        assert_eq!(v.0.get(), (1, 0));
        assert!(matches!(
            replicated(2).encode(&v),
            Ok(Stored::Typed {
                value_type: ValueType::Int,
                ..
            })
        ));
        assert_eq!(v.0.get(), (1, 1));
        let u: Update = Mode::Plain.encode(&v).unwrap().into();
        assert!(matches!(u, Update::Plain(ref d, 2) if d == b"42"));
        let f: Fresh = replicated(2).encode(&v).unwrap().into();
        assert_eq!(f.typed, Some((ValueType::Int, Format::NONE)));
    }

    #[test]
    fn a_plain_get_is_one_shot_to_the_owner_with_its_cas() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let mut m = Mode::Plain.get(Bytes::from_static(b"k"), true);
        assert!(m.oneshot());
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].server, cl.route(b"k").unwrap());
        assert!(matches!(r[0].call, Call::Get { cas: true, .. }));
        let a = Input::Answers(vec![Ok(Answer::Value(Some(value("v", 9))))]);
        let Step::Done(Ok(Some((Got::Plain(v), 9)))) = m.step(&cx, a) else {
            panic!()
        };
        assert_eq!(&v.data[..], b"v");
    }

    #[test]
    fn a_replicated_get_reads_every_replica_and_is_not_one_shot() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let mut m = replicated(2).get(Bytes::from_static(b"k"), false);
        assert!(!m.oneshot());
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 2, "one read per replica");
        let misses = r.iter().map(|_| Ok(Answer::Values(vec![None]))).collect();
        let Step::Done(Ok(None)) = m.step(&cx, Input::Answers(misses)) else {
            panic!()
        };
    }

    #[test]
    fn stores_pick_the_plain_request_or_the_replicated_rule() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let plain = Stored::Plain {
            data: Bytes::from_static(b"x"),
            flags: 0,
        };
        let typed = Stored::Typed {
            value_type: ValueType::Text,
            format: Format::NONE,
            payload: Bytes::from_static(b"x"),
        };
        // Plain add: one `add` to the owner, its report naming it.
        let mut m = Mode::Plain.store(
            StoreMode::Add,
            Bytes::from_static(b"k"),
            plain.clone(),
            0,
            1,
        );
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(matches!(&r[0].call, Call::Store(it) if it.mode == StoreMode::Add));
        let Step::Done(Ok(w)) = m.step(&cx, Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
        assert_eq!(w.report(&cl).stored, vec![cl.name(r[0].server).to_string()]);
        // Replicated add: the read of every replica first (the CAS machine), not a blind add.
        let mut m = replicated(2).store(
            StoreMode::Add,
            Bytes::from_static(b"k"),
            typed.clone(),
            0,
            1,
        );
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(r
            .iter()
            .all(|q| matches!(q.call, Call::GetMulti { cas: true, .. })));
        // A form that does not match the mode is refused before anything is sent.
        let mut m = Mode::Plain.store(
            StoreMode::Set,
            Bytes::from_static(b"k"),
            typed.clone(),
            0,
            1,
        );
        let Step::Done(Err(Error::Client { .. })) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let mut m = replicated(2).store(StoreMode::Set, Bytes::from_static(b"k"), plain, 0, 1);
        let Step::Done(Err(Error::Client { .. })) = m.step(&cx, Input::Start) else {
            panic!()
        };
        // Replicated append takes bytes or text only.
        let int = Stored::Typed {
            value_type: ValueType::Int,
            format: Format::NONE,
            payload: Bytes::from_static(b"1"),
        };
        let mut m = replicated(2).store(StoreMode::Append, Bytes::from_static(b"k"), int, 0, 1);
        let Step::Done(Err(Error::Config(_))) = m.step(&cx, Input::Start) else {
            panic!()
        };
    }

    #[test]
    fn plain_set_multi_reports_each_key_on_its_own_server() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let keys: Vec<Bytes> = (0..12).map(|i| Bytes::from(format!("k{i}"))).collect();
        let items = keys
            .iter()
            .map(|k| {
                let v = Stored::Plain {
                    data: Bytes::from_static(b"v"),
                    flags: 0,
                };
                (k.clone(), v)
            })
            .chain([(
                Bytes::from_static(b"bad key"),
                Stored::Plain {
                    data: Bytes::new(),
                    flags: 0,
                },
            )])
            .collect();
        let mut m = Mode::Plain.set_multi(items, 0);
        assert!(m.oneshot());
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let answers = r
            .iter()
            .map(|q| match &q.call {
                Call::StoreItems(its) => Ok(Answer::Items(its.iter().map(|_| Ok(())).collect())),
                _ => panic!(),
            })
            .collect();
        let Step::Done(Ok(out)) = m.step(&cx, Input::Answers(answers)) else {
            panic!()
        };
        assert_eq!(out.len(), 13);
        for (k, w) in keys.iter().zip(&out) {
            let Ok(Wrote::On(s)) = w else { panic!() };
            assert_eq!(*s, cl.route(k).unwrap());
        }
        assert!(matches!(out[12], Err(Error::InvalidKey { .. })));
    }

    #[test]
    fn a_replicated_delete_writes_tombstones_for_the_tombstone_ttl() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let mode = replicated(3);
        let ttl = mode.policy().unwrap().tombstone_ttl;
        let mut m = mode.delete(Bytes::from_static(b"k"));
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 3);
        for q in &r {
            let Call::StoreItems(its) = &q.call else {
                panic!("{:?}", q.call)
            };
            assert_eq!(its[0].ttl, ttl);
        }
    }

    #[test]
    fn counters_and_policies() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let mut m = replicated(2).incr(Bytes::from_static(b"n"), true, u64::MAX, None, 0, 1);
        let Step::Done(Err(Error::Config(_))) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let mut m = Mode::Plain.incr(Bytes::from_static(b"n"), true, 5, Some(1), 0, 1);
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Arith { delta: 5, .. }));
        assert!(matches!(
            Mode::Plain.with_policies(None, None, 3),
            Err(Error::Unsupported { .. })
        ));
        let q = replicated(3)
            .with_policies(Some(crate::replication::ReadPolicy::FirstHit), None, 3)
            .unwrap();
        assert_eq!(
            q.policy().unwrap().read,
            crate::replication::ReadPolicy::FirstHit
        );
        assert!(replicated(3).with_policies(None, None, 2).is_err());
        assert_eq!(Mode::Plain.copies(), (1, false));
    }
}
