//! The state both drivers share: configuration, ring, per-server health, and the rules that
//! decide where a call goes and what a connection speaks. No I/O; time is passed in.

use crate::config::Config;
use crate::error::Error;
use crate::health::{Admission, Health, Outcome};
use crate::logic::process::PerProcess;
use crate::metrics::{Metrics, ServerMetrics};
use crate::ops::Ctx;
use crate::protocol::Dialect;
use crate::ring::Ring;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Item positions grouped by server: `(server index, positions of its items)`.
pub type Groups = Vec<(usize, Vec<usize>)>;

/// Servers, ring and health of one client.
pub struct Cluster {
    config: Config,
    ring: Ring,
    names: Vec<String>,
    /// What this process has learnt about the servers; a fork child starts afresh
    /// ([`crate::fork`]): a parent's "down" or a probe in flight in a parent thread must not
    /// shut a server out of the child.
    state: PerProcess<State>,
}

/// The per-process part of a [`Cluster`].
struct State {
    health: Vec<Health>,
    metrics: Vec<ServerMetrics>,
    disagreements: AtomicU64,
    /// The ring without the servers that are down, for failover mode, with the live set it
    /// was built for.
    failover_ring: Mutex<Option<(Vec<usize>, Ring)>>,
}

impl State {
    fn new(servers: usize) -> State {
        State {
            health: (0..servers).map(|_| Health::default()).collect(),
            metrics: (0..servers).map(|_| ServerMetrics::default()).collect(),
            disagreements: AtomicU64::new(0),
            failover_ring: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("ring", &self.ring)
            .field("names", &self.names)
            .field("health", &self.state().health)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Check `config` and build the ring.
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let ring = Ring::new(&config.servers, config.ring_mode);
        let names: Vec<String> = config.servers.iter().map(|s| s.address()).collect();
        let state = PerProcess::new(State::new(names.len()));
        Ok(Cluster {
            config,
            ring,
            names,
            state,
        })
    }

    /// This process's health and counters (fresh in a fork child).
    #[inline]
    fn state(&self) -> &State {
        self.state.get(|| State::new(self.names.len()), |_| {})
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a cluster has at least one server.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `host:port` of server `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The health of server `i`.
    pub fn health(&self, i: usize) -> &Health {
        &self.state().health[i]
    }

    /// The live counters of server `i`.
    pub fn server_metrics(&self, i: usize) -> &ServerMetrics {
        &self.state().metrics[i]
    }

    /// Count a read whose replicas disagreed.
    pub fn disagreement(&self) {
        self.state().disagreements.fetch_add(1, Relaxed);
    }

    /// A snapshot of every server's counters and their total.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::default();
        let st = self.state();
        for (i, name) in self.names.iter().enumerate() {
            let c = st.metrics[i].snapshot(st.health[i].down_events());
            m.total += c;
            m.servers.push((name.clone(), c));
        }
        m.total.disagreements = st.disagreements.load(Relaxed);
        m
    }

    /// Count the result of a read of one key on server `i`.
    pub fn tally_read<T>(&self, i: usize, r: &Result<Option<T>, Error>) {
        if let Ok(v) = r {
            self.state().metrics[i].read(v.is_some());
        }
    }

    /// Count the result of a store on server `i`.
    pub fn tally_store(&self, i: usize, r: &Result<(), Error>) {
        if r.is_ok() {
            self.state().metrics[i].set();
        }
    }

    /// Check `key` against the key rules (with the prefix), without routing it.
    pub fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        self.key_ctx().wire_key(key).map(|_| ())
    }

    /// The context keys are checked in before a connection is chosen: binary keys are only
    /// refused up front when the text protocol is forced (a probed server decides later).
    fn key_ctx(&self) -> Ctx<'_> {
        self.ctx(match self.config.protocol {
            crate::config::ProtocolChoice::Text => Dialect::Text,
            _ => Dialect::Meta,
        })
    }

    /// The server that owns `key` (the key without the prefix, as libmemcached hashes it).
    /// The key rules are checked first, so a bad key fails before any routing or I/O.
    pub fn route(&self, key: &[u8]) -> Result<usize, Error> {
        self.key_ctx().wire_key(key)?;
        Ok(self.ring.server_for(key).unwrap_or(0))
    }

    /// Plan a multi-key call: check every key (and whatever `check` adds), then group the
    /// valid positions by server. Invalid items get their error in the returned vector and are
    /// not sent; the others start as `Ok(init)` and are filled by [`merge`].
    pub fn plan<'k, T: Clone>(
        &self,
        n: usize,
        key_of: impl Fn(usize) -> &'k [u8],
        check: impl Fn(usize) -> Result<(), Error>,
        init: T,
    ) -> (Vec<Result<T, Error>>, Groups) {
        let out: Vec<Result<T, Error>> = (0..n)
            .map(|i| {
                self.key_ctx().wire_key(key_of(i))?;
                check(i)?;
                Ok(init.clone())
            })
            .collect();
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut slot = vec![usize::MAX; self.len()];
        for i in (0..n).filter(|&i| out[i].is_ok()) {
            let s = self.ring.server_for(key_of(i)).unwrap_or(0);
            if slot[s] == usize::MAX {
                slot[s] = groups.len();
                groups.push((s, Vec::new()));
            }
            groups[slot[s]].1.push(i);
        }
        (out, groups)
    }

    /// The servers that hold `key`'s copies: the first `n` distinct servers of its preference
    /// list. With `failover`, servers marked down at `now_ms` (monotonic milliseconds, the
    /// driver's clock) are left out of the ring first (twemproxy-style ejection), so the copies
    /// move to live servers while they are down.
    pub fn replicas_for(&self, key: &[u8], n: usize, failover: bool, ms: u64) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if !failover {
            self.ring.preference_list_into(key, n, &mut out);
            return out;
        }
        let live: Vec<usize> = (0..self.len())
            .filter(|&i| !self.state().health[i].is_down(ms))
            .collect();
        if live.len() == self.len() || live.is_empty() {
            self.ring.preference_list_into(key, n, &mut out);
            return out;
        }
        let mut cache = self
            .state()
            .failover_ring
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().is_none_or(|(l, _)| *l != live) {
            let specs: Vec<_> = live
                .iter()
                .map(|&i| self.config.servers[i].clone())
                .collect();
            *cache = Some((live.clone(), Ring::new(&specs, self.config.ring_mode)));
        }
        let (live, ring) = cache.as_ref().expect("set above");
        ring.preference_list_into(key, n, &mut out);
        out.iter_mut().for_each(|i| *i = live[*i]);
        out
    }

    /// Group key positions by owning server, servers in order of first appearance.
    pub fn split<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<(usize, Vec<usize>)> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut slot = vec![usize::MAX; self.len()];
        for (i, k) in keys.iter().enumerate() {
            let s = self.ring.server_for(k.as_ref()).unwrap_or(0);
            if slot[s] == usize::MAX {
                slot[s] = groups.len();
                groups.push((s, Vec::new()));
            }
            groups[slot[s]].1.push(i);
        }
        groups
    }

    /// Refuse a value over the size limit before anything is sent.
    pub fn check_value(&self, len: usize) -> Result<(), Error> {
        if len > self.config.max_value_size {
            return Err(Error::ValueTooLarge {
                size: len,
                max: self.config.max_value_size,
            });
        }
        Ok(())
    }

    /// The op context for a connection speaking `dialect`.
    pub fn ctx(&self, dialect: Dialect) -> Ctx<'_> {
        Ctx {
            dialect,
            prefix: &self.config.key_prefix,
            max_value_size: self.config.max_value_size,
            binary_keys: self.config.binary_keys,
        }
    }

    /// May a call go to server `i` at `now_ms` (monotonic milliseconds)? A down server fails
    /// fast.
    pub fn admit(&self, i: usize, now_ms: u64) -> Result<(), Error> {
        match self.state().health[i].admit(now_ms) {
            Admission::Allowed | Admission::Probe => Ok(()),
            Admission::Down(retry_in) => Err(Error::ServerDown {
                server: self.names[i].clone(),
                retry_in,
            }),
        }
    }

    /// Record the outcome of a call to server `i` at `now_ms`. Returns true when it marked the
    /// server down.
    pub fn record<T>(&self, i: usize, now_ms: u64, result: &Result<T, Error>) -> bool {
        self.record_with(i, || now_ms, result)
    }

    /// [`Cluster::record`] asking for the time only when the outcome changes the server's
    /// health (an answer from a healthy server, the common case, needs none).
    pub fn record_with<T>(
        &self,
        i: usize,
        now_ms: impl FnOnce() -> u64,
        result: &Result<T, Error>,
    ) -> bool {
        if let Err(e) = result {
            if outcome_of(e).is_some_and(|o| o != Outcome::Answered)
                || matches!(e, Error::Server { .. })
            {
                self.state().metrics[i].error(matches!(e, Error::Timeout { .. }));
            }
        }
        let outcome = match result {
            Ok(_) => Outcome::Answered,
            Err(e) => match outcome_of(e) {
                Some(o) => o,
                None => return false,
            },
        };
        if outcome == Outcome::Answered && self.state().health[i].consecutive_failures() == 0 {
            return false; // hot path: nothing to change
        }
        self.state().health[i].record(
            outcome,
            now_ms(),
            self.config.failure_limit,
            self.config.retry_interval,
        )
    }

    /// What a new connection to server `i` runs by ([`crate::pipeline`]): its name, the
    /// protocol to probe for, the reply limits and the timeouts.
    pub fn pipeline_settings(&self, i: usize) -> crate::pipeline::Settings {
        crate::pipeline::Settings {
            server: self.names[i].as_str().into(),
            protocol: self.config.protocol,
            limits: self.config.limits(),
            timeout: self.config.timeout,
            connect_timeout: self.config.connect_timeout,
            auth: self.config.auth.clone(),
        }
    }
}

/// Spread the per-server results of a planned multi-key call back over its items: each item
/// gets its own result, or its server's error when the whole batch failed.
pub fn merge<T>(
    out: &mut [Result<T, Error>],
    groups: &[(usize, Vec<usize>)],
    results: Vec<Result<Vec<Result<T, Error>>, Error>>,
) {
    for ((_, idx), r) in groups.iter().zip(results) {
        match r {
            Ok(rs) => idx.iter().zip(rs).for_each(|(&i, r)| out[i] = r),
            Err(e) => idx.iter().for_each(|&i| out[i] = Err(e.clone())),
        }
    }
}

/// Group `(server, item)` pairs by server, servers in order of first appearance.
pub fn group_by_server<T>(pairs: impl IntoIterator<Item = (usize, T)>) -> Vec<(usize, Vec<T>)> {
    let mut groups: Vec<(usize, Vec<T>)> = Vec::new();
    for (s, item) in pairs {
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, list)) => list.push(item),
            None => groups.push((s, vec![item])),
        }
    }
    groups
}

/// The per-server item lists of a plan, built from item positions.
pub fn gather<T>(groups: &[(usize, Vec<usize>)], item: impl Fn(usize) -> T) -> Vec<Vec<T>> {
    groups
        .iter()
        .map(|(_, idx)| idx.iter().map(|&i| item(i)).collect())
        .collect()
}

/// One op per server of a plan, each over its item list.
pub fn zip_ops<'a, T, O>(
    groups: &[(usize, Vec<usize>)],
    lists: &'a [Vec<T>],
    op: impl Fn(&'a [T]) -> O,
) -> Vec<(usize, O)> {
    groups
        .iter()
        .zip(lists)
        .map(|((s, _), l)| (*s, op(l)))
        .collect()
}

/// Lift per-server multi-get results into per-item results for [`merge`].
pub fn lift<T>(rs: Vec<Result<Vec<T>, Error>>) -> Vec<Result<Vec<Result<T, Error>>, Error>> {
    rs.into_iter()
        .map(|r| r.map(|v| v.into_iter().map(Ok).collect()))
        .collect()
}

/// How a call's error counts for the server's health; `None` when the call never reached the
/// server (refused before sending: a bad key, a value too large, the server already down).
pub fn outcome_of(e: &Error) -> Option<Outcome> {
    match e {
        // A server this client cannot talk to until someone changes a configuration (its
        // certificate, the credentials): down at once, like a refused connection.
        Error::ConnectionRefused { .. } | Error::Auth { .. } | Error::Tls { .. } => {
            Some(Outcome::Unreachable)
        }
        e if e.is_server_failure() => Some(Outcome::Failed),
        Error::ServerDown { .. }
        | Error::InvalidKey { .. }
        | Error::ValueTooLarge { .. }
        | Error::Config(_) => None,
        _ => Some(Outcome::Answered),
    }
}
