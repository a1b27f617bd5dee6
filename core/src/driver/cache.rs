//! One client, plain or replicated: the mode-aware facade bindings sit on.
//!
//! A binding builds one [`Cache`] and only translates its language's values and errors; whether
//! a key has one plain copy or replicated, enveloped copies is decided here, once, for every
//! call, instead of in a `match mode` in each binding. A value goes in as a [`Payload`] (both
//! of its forms: typed, for an envelope, and plain with its convention's flags) and comes out
//! as a [`Got`].

use crate::blocking::{Client, ReplicatedClient};
use crate::envelope::{Format, ValueType};
use crate::error::Error;
use crate::machine::replicated::Rule;
use crate::protocol::text::StoreMode;
use crate::recipes::{CasOptions, CasOutcome, FillOptions, Fresh, Lock, LockOptions, Update};
use crate::replication::{Policy, ReadPolicy, WritePolicy, WriteReport};
use crate::StoreOptions;
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

/// Plain or replicated, behind one API (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    plain: Client,
    repl: Option<ReplicatedClient>,
}

fn flags_refused() -> Error {
    Error::Unsupported {
        server: String::new(),
        feature: "client flags on a replicated store (the envelope records the type)",
    }
}

fn plain_only(what: &'static str) -> Error {
    Error::Unsupported {
        server: String::new(),
        feature: what,
    }
}

impl Cache {
    /// Plain over `plain`, or replicated with `policy`.
    pub fn new(plain: Client, policy: Option<Policy>) -> Result<Self, Error> {
        let repl = policy
            .map(|p| ReplicatedClient::new(plain.clone(), p))
            .transpose()?;
        Ok(Cache { plain, repl })
    }

    /// The same cache with another replicated client (other policies, same connections).
    pub fn with_replicated(&self, repl: Option<ReplicatedClient>) -> Self {
        Cache {
            plain: self.plain.clone(),
            repl,
        }
    }

    /// The plain client underneath.
    pub fn plain(&self) -> &Client {
        &self.plain
    }

    /// The replicated client, when the cache is replicated.
    pub fn replicated(&self) -> Option<&ReplicatedClient> {
        self.repl.as_ref()
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
        let (n, failover) = self
            .repl
            .as_ref()
            .map_or((1, false), |r| (r.policy().replicas, r.policy().failover));
        self.plain
            .cluster()
            .replicas_for(key, n, failover, crate::driver::mono_ms())
    }

    /// The value of `key` (replicated: the latest copy; stale copies are repaired).
    pub fn get(&self, key: &[u8]) -> Result<Option<Got>, Error> {
        match &self.repl {
            Some(r) => r.get(key).map(|v| v.map(Got::Replicated)),
            None => self.plain.get(key).map(|v| v.map(Got::Plain)),
        }
    }

    /// Many values, one request per server; aligned with `keys`.
    pub fn get_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Got>, Error>> {
        match &self.repl {
            Some(r) => r
                .get_multi(keys)
                .into_iter()
                .map(|v| v.map(|v| v.map(Got::Replicated)))
                .collect(),
            None => self
                .plain
                .get_multi(keys)
                .into_iter()
                .map(|v| v.map(|v| v.map(Got::Plain)))
                .collect(),
        }
    }

    fn plain_report(&self, key: &[u8]) -> WriteReport {
        WriteReport {
            stored: self
                .plain
                .server_for(key)
                .map(str::to_string)
                .into_iter()
                .collect(),
            failed: Vec::new(),
        }
    }

    /// Store `p` under `key`.
    pub fn set(&self, key: &[u8], p: &Payload<'_>, ttl: u32) -> Result<WriteReport, Error> {
        match &self.repl {
            Some(_) if p.flags_given => Err(flags_refused()),
            Some(r) => r.set_typed(key, p.value_type, p.format, p.typed, ttl),
            None => self
                .plain
                .set(
                    key,
                    p.plain,
                    StoreOptions {
                        ttl,
                        flags: p.flags,
                    },
                )
                .map(|()| self.plain_report(key)),
        }
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
        let Some(r) = &self.repl else {
            let o = StoreOptions {
                ttl,
                flags: p.flags,
            };
            return match mode {
                StoreMode::Set => self.plain.set(key, p.plain, o),
                StoreMode::Add => self.plain.add(key, p.plain, o),
                StoreMode::Replace => self.plain.replace(key, p.plain, o),
                StoreMode::Append => self.plain.append(key, p.plain),
                StoreMode::Prepend => self.plain.prepend(key, p.plain),
                StoreMode::Cas(c) => self.plain.cas(key, p.plain, c, o),
            }
            .map(|()| self.plain_report(key));
        };
        if p.flags_given {
            return Err(flags_refused());
        }
        match mode {
            StoreMode::Set => r.set_typed(key, p.value_type, p.format, p.typed, ttl),
            StoreMode::Add => r.add_typed(key, p.value_type, p.format, p.typed, ttl),
            StoreMode::Replace => r.replace_typed(key, p.value_type, p.format, p.typed, ttl),
            StoreMode::Append | StoreMode::Prepend => {
                r.append(key, p.plain, mode == StoreMode::Prepend, ttl)
            }
            StoreMode::Cas(_) => Err(plain_only("cas on a replicated key (use cas_update)")),
        }
    }

    /// The value of `key` with its version: the CAS unique (plain) or the version token
    /// (replicated, [`crate::replication::Versioned::version_token`]), for [`Cache::cas`].
    pub fn gets(&self, key: &[u8]) -> Result<Option<(Got, u64)>, Error> {
        match &self.repl {
            Some(r) => r.get(key).map(|v| {
                v.map(|v| {
                    let t = v.version_token();
                    (Got::Replicated(v), t)
                })
            }),
            None => self.plain.gets(key).map(|v| {
                v.map(|v| {
                    let c = v.cas.unwrap_or(0);
                    (Got::Plain(v), c)
                })
            }),
        }
    }

    /// [`Cache::gets`] of many keys, one request per server; aligned with `keys`.
    pub fn gets_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<(Got, u64)>, Error>> {
        match &self.repl {
            Some(r) => r
                .get_multi(keys)
                .into_iter()
                .map(|v| {
                    v.map(|v| {
                        v.map(|v| {
                            let t = v.version_token();
                            (Got::Replicated(v), t)
                        })
                    })
                })
                .collect(),
            None => self
                .plain
                .gets_multi(keys)
                .into_iter()
                .map(|v| {
                    v.map(|v| {
                        v.map(|v| {
                            let c = v.cas.unwrap_or(0);
                            (Got::Plain(v), c)
                        })
                    })
                })
                .collect(),
        }
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
        match &self.repl {
            Some(_) if p.flags_given => Err(flags_refused()),
            Some(r) => {
                let rule = Rule::IfVersion(
                    version,
                    p.value_type,
                    p.format,
                    Bytes::copy_from_slice(p.typed),
                );
                let opts = CasOptions {
                    ttl,
                    ..CasOptions::default()
                };
                r.update(key, rule, opts, crate::driver::no_decision)
                    .map(|u| u.report)
            }
            None => self.store(StoreMode::Cas(version), key, p, ttl),
        }
    }

    /// Delete `key`: true when it existed (replicated: tombstones on every replica; true once
    /// the write policy was met), and where the delete was written.
    pub fn delete(&self, key: &[u8]) -> Result<(bool, WriteReport), Error> {
        match &self.repl {
            Some(r) => r.delete(key).map(|rep| (true, rep)),
            None => self.plain.delete(key).map(|e| (e, self.plain_report(key))),
        }
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
        match &self.repl {
            Some(r) => {
                let d = i64::try_from(delta).map_err(|_| {
                    Error::Config(
                        "a replicated counter's delta must fit a signed 64-bit integer".into(),
                    )
                })?;
                let opts = CasOptions {
                    ttl,
                    ..CasOptions::default()
                };
                r.incr_with_initial(key, if incr { d } else { -d }, initial, opts)
            }
            None => self.plain.incr_with_initial(key, incr, delta, initial, ttl),
        }
    }

    /// A new TTL for `key`: true when it had a value.
    pub fn touch(&self, key: &[u8], ttl: u32) -> Result<bool, Error> {
        match &self.repl {
            Some(r) => r.touch(key, ttl),
            None => self.plain.touch(key, ttl),
        }
    }

    /// Store many values, one request per server; aligned with `items`.
    pub fn set_multi<K: AsRef<[u8]>>(
        &self,
        items: &[(K, Payload<'_>)],
        ttl: u32,
    ) -> Vec<Result<WriteReport, Error>> {
        match &self.repl {
            Some(r) => {
                if items.iter().any(|(_, p)| p.flags_given) {
                    return items.iter().map(|_| Err(flags_refused())).collect();
                }
                let typed: Vec<(&[u8], ValueType, Format, bytes::Bytes)> = items
                    .iter()
                    .map(|(k, p)| {
                        (
                            k.as_ref(),
                            p.value_type,
                            p.format,
                            bytes::Bytes::copy_from_slice(p.typed),
                        )
                    })
                    .collect();
                r.set_multi_typed(&typed, ttl)
            }
            None => {
                let plain: Vec<(&[u8], &[u8], u32)> = items
                    .iter()
                    .map(|(k, p)| (k.as_ref(), p.plain, p.flags))
                    .collect();
                self.plain
                    .set_multi_flagged(&plain, ttl)
                    .into_iter()
                    .zip(items)
                    .map(|(r, (k, _))| r.map(|()| self.plain_report(k.as_ref())))
                    .collect()
            }
        }
    }

    /// Delete many keys; aligned with `keys` (true: existed; replicated: tombstoned).
    pub fn delete_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        match &self.repl {
            Some(r) => r
                .delete_multi(keys)
                .into_iter()
                .map(|r| r.map(|_| true))
                .collect(),
            None => self.plain.delete_multi(keys),
        }
    }

    /// The update a binding's function asks for, storing `p` in this cache's form.
    pub fn update_to(&self, p: &Payload<'_>) -> Update {
        match self.repl {
            Some(_) => Update::Typed(p.value_type, p.format, p.typed.to_vec()),
            None => Update::Plain(p.plain.to_vec(), p.flags),
        }
    }

    /// Read-modify-write without losing concurrent updates (the core's CAS machines): `f` sees
    /// the current value and says what to store ([`Cache::update_to`]), to keep or to delete.
    pub fn cas_update(
        &self,
        key: &[u8],
        opts: CasOptions,
        mut f: impl FnMut(Option<Got>) -> Update,
    ) -> Result<(CasOutcome, WriteReport), Error> {
        match &self.repl {
            Some(r) => r.cas_update(key, opts, |v| f(v.cloned().map(Got::Replicated))),
            None => self
                .plain
                .cas_update(key, opts, |v| f(v.cloned().map(Got::Plain)))
                .map(|o| (o, self.plain_report(key))),
        }
    }

    /// What a `get_or_set` loader produced, in this cache's form (as [`Cache::update_to`]).
    pub fn fresh(&self, p: &Payload<'_>) -> Fresh {
        let (data, flags) = match self.repl {
            Some(_) => (p.typed, 0),
            None => (p.plain, p.flags),
        };
        Fresh {
            data: data.to_vec(),
            flags,
            typed: Some((p.value_type, p.format)),
        }
    }

    /// The value of `key`, or on a miss `loader`'s, loaded once (the core's fill) and stored.
    pub fn get_or_set(
        &self,
        key: &[u8],
        ttl: u32,
        opts: FillOptions,
        loader: impl FnOnce() -> Result<Fresh, String>,
    ) -> Result<Got, Error> {
        match &self.repl {
            Some(r) => r.get_or_set(key, ttl, opts, loader).map(Got::Replicated),
            None => self
                .plain
                .get_or_set(key, ttl, opts, loader)
                .map(Got::Plain),
        }
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
