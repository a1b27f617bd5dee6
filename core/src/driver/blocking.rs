//! The blocking client, for callers without an async runtime (the Python and PHP bindings,
//! scripts, threads).
//!
//! It has the same calls, with the same meaning, as the async [`crate::Client`]: both expand
//! one method list and run the same ops. Only the I/O differs: each call borrows a pooled
//! connection for the server it needs, writes, reads the reply, and gives the connection back.
//! A multi-server call writes to every server before it reads any reply, so servers work in
//! parallel without threads.
//!
//! `Client` is `Send + Sync`: share one (in an `Arc`, or by cloning) across threads. Idle
//! connections are kept per server ([`Config::blocking_pool_size`] of them) and reused, so
//! calls do not connect; a connection that saw any failure is closed, never reused.

use crate::cluster::{self, Cluster};
use crate::config::{Config, ConfigBuilder};
use crate::driver::blocking_conn::Conn;
use crate::error::Error;
use crate::fork::PerProcess;
use crate::ops::{self, Op, Value};
use crate::options::StoreOptions;
use crate::protocol::meta::MetaKey;
use crate::protocol::text::StoreMode;
use crate::protocol::MetaReply;
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The blocking replicated client: see [`crate::replication`].
pub type ReplicatedClient = crate::replicated::ReplicatedClient<Client>;
/// One client, plain or replicated (the facade bindings use): see [`crate::driver::cache`].
pub use crate::driver::cache::{Cache, Got, Payload};

/// A blocking memcached client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    /// The TLS configuration every connection uses (`Config::tls`), built once.
    tls: Option<crate::driver::tls::TlsContext>,
    /// The connections and flights of this process: a fork child gets its own
    /// ([`crate::fork`]) and never reads or writes a socket of its parent's.
    local: PerProcess<Local>,
}

struct Local {
    idle: Vec<Mutex<Vec<Conn>>>,
    /// In-process single flight of `get_or_set`: one load per key at a time.
    flights: crate::recipes::Flights<OnceLock<Result<crate::machine::fill::Got, Error>>>,
}

impl Local {
    fn new(servers: usize) -> Local {
        Local {
            idle: (0..servers).map(|_| Mutex::new(Vec::new())).collect(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// In a fork child, close the parent's idle sockets that no parent thread was touching at
    /// the moment of the fork. `close(2)` of a descriptor the parent still holds sends nothing
    /// (no FIN, no reset): the parent's connections are not disturbed. A pool whose lock was
    /// held is left alone (leaked with the parent's state).
    fn retire(&self) {
        for pool in &self.idle {
            if let Ok(mut conns) = pool.try_lock() {
                conns.clear();
            }
        }
    }
}

/// A builder for the blocking [`Client`]; every setting is documented on [`Config`].
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ConfigBuilder,
}

impl ClientBuilder {
    /// Add servers: `host`, `host:port`, `host:port:weight`, `[v6]:port`, or [`crate::ServerSpec`].
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: TryInto<crate::ServerSpec>,
        S::Error: std::fmt::Display,
    {
        self.config = self.config.servers(servers);
        self
    }

    /// Change any other setting of the configuration.
    pub fn configure(mut self, f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        self.config = f(self.config);
        self
    }

    /// Build the client. No connection is opened until the first call.
    pub fn build(self) -> Result<Client, Error> {
        Client::from_config(self.config.build_config()?)
    }
}

/// A request written to a connection, whose reply is still to be read.
struct Sent {
    server: usize,
    conn: Conn,
}

impl Client {
    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for a checked configuration.
    pub fn from_config(config: Config) -> Result<Client, Error> {
        let tls = config
            .tls
            .as_ref()
            .map(crate::driver::tls::TlsContext::new)
            .transpose()?;
        let cluster = Cluster::new(config)?;
        crate::fork::install();
        let local = PerProcess::new(Local::new(cluster.len()));
        Ok(Client {
            inner: Arc::new(Inner {
                cluster,
                local,
                tls,
            }),
        })
    }

    /// This process's connections (fresh in a fork child).
    #[inline]
    fn local(&self) -> &Local {
        let n = self.inner.cluster.len();
        self.inner.local.get(|| Local::new(n), Local::retire)
    }

    /// The servers, ring and health this client works with.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// `host:port` of the server that owns `key`.
    pub fn server_for(&self, key: impl AsRef<[u8]>) -> Result<&str, Error> {
        let s = self.inner.cluster.route(key.as_ref())?;
        Ok(self.inner.cluster.name(s))
    }

    /// Drop every idle connection (they are reopened on demand).
    pub fn close_idle(&self) {
        for pool in &self.local().idle {
            lock(pool).clear();
        }
    }

    fn checkout(&self, s: usize) -> Result<Conn, Error> {
        loop {
            let Some(c) = lock(&self.local().idle[s]).pop() else {
                break;
            };
            let mut c = c;
            if c.is_reusable() {
                return Ok(c);
            }
        }
        let cl = &self.inner.cluster;
        let tls = self
            .inner
            .tls
            .as_ref()
            .filter(|_| cl.config().uses_tls(s))
            .map(|t| (t, cl.config().servers[s].host.as_str()));
        Conn::open(cl.pipeline_settings(s), cl.config().tcp_nodelay, tls)
    }

    fn checkin(&self, s: usize, conn: Conn) {
        let mut idle = lock(&self.local().idle[s]);
        if idle.len() < self.inner.cluster.config().blocking_pool_size {
            idle.push(conn);
        }
    }

    /// Write `op` to server `s` on a pooled connection.
    fn send<O: Op>(&self, s: usize, op: &O) -> Result<Sent, Error> {
        let cl = &self.inner.cluster;
        cl.admit(s, crate::driver::mono_ms())?;
        let mut conn = self.checkout(s)?;
        let ctx = cl.ctx(conn.dialect);
        let mut buf = BytesMut::with_capacity(128);
        let expect = op.encode(&ctx, &mut buf)?;
        conn.send(&buf, expect)?;
        Ok(Sent { server: s, conn })
    }

    /// Read the reply of a sent op and give the connection back.
    fn finish<O: Op>(&self, sent: Sent, op: O) -> Result<O::Output, Error> {
        let cl = &self.inner.cluster;
        let Sent { server, mut conn } = sent;
        let reply = conn.receive();
        cl.record_with(server, crate::driver::mono_ms, &reply);
        let read_whole = reply.is_ok();
        let out = reply.and_then(|r| op.finish(&cl.ctx(conn.dialect), r));
        // A connection is reused only after a reply that answered its request; one that did
        // not (`Protocol`: another key's value, a stray token) is out of step and is closed.
        if read_whole && !matches!(out, Err(Error::Protocol { .. })) {
            self.checkin(server, conn);
        }
        out.map_err(|e| e.at_server(cl.name(server)))
    }

    fn failed(&self, s: usize, e: Error) -> Error {
        self.inner
            .cluster
            .record_with(s, crate::driver::mono_ms, &Err::<(), _>(e.clone()));
        e.at_server(self.inner.cluster.name(s))
    }

    fn run<O: Op>(&self, s: usize, op: O) -> Result<O::Output, Error> {
        match self.send(s, &op) {
            Ok(sent) => self.finish(sent, op),
            Err(e) => Err(self.failed(s, e)),
        }
    }

    /// One op per server: write them all, then read the replies.
    pub(crate) fn run_each<O: Op>(&self, ops: Vec<(usize, O)>) -> Vec<Result<O::Output, Error>> {
        let sent: Vec<_> = ops
            .into_iter()
            .map(|(s, op)| (s, self.send(s, &op), op))
            .collect();
        sent.into_iter()
            .map(|(s, r, op)| match r {
                Ok(sent) => self.finish(sent, op),
                Err(e) => Err(self.failed(s, e)),
            })
            .collect()
    }

    fn keyed<O: Op>(&self, key: &[u8], op: O) -> Result<O::Output, Error> {
        let s = self.inner.cluster.route(key)?;
        self.run(s, op)
    }

    fn each_server<O: Op>(&self, op: impl Fn() -> O) -> Vec<(String, Result<O::Output, Error>)> {
        let cl = &self.inner.cluster;
        let rs = self.run_each((0..cl.len()).map(|s| (s, op())).collect());
        (0..cl.len())
            .map(|s| cl.name(s).to_string())
            .zip(rs)
            .collect()
    }

    crate::api::client_api!(;);

    pub(crate) fn pause(d: std::time::Duration) {
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    /// Run a machine to its end ([`crate::machine`]): send what it asks (all at once), sleep
    /// when it says, ask `decide` and `load` when it says.
    pub(crate) fn drive<M: crate::machine::Machine>(
        &self,
        mut m: M,
        mut decide: impl FnMut(Option<&M::View>) -> Result<crate::recipes::Update, Error>,
        mut load: Option<impl FnOnce() -> Result<crate::recipes::Fresh, Error>>,
    ) -> Result<M::Output, Error> {
        use crate::machine::{Input, Step};
        let cl = &self.inner.cluster;
        let mut input = Input::Start;
        // A one-shot machine (a plain call) reads no clock: no time to read for it.
        let timed = !m.oneshot();
        loop {
            let cx = match timed {
                true => crate::driver::cx(cl),
                false => crate::machine::Cx {
                    cluster: cl,
                    now: Default::default(),
                },
            };
            let step = m.step(&cx, input);
            input = match step {
                Step::Send(mut r) if r.len() == 1 => {
                    let r = r.pop().expect("one request");
                    Input::Answers(vec![self.run(r.server, r.call)])
                }
                Step::Send(r) => Input::Answers(
                    self.run_each(r.into_iter().map(|r| (r.server, r.call)).collect()),
                ),
                Step::Wait(d) => {
                    Self::pause(d);
                    Input::Woke
                }
                Step::Decide(v) => Input::Decided(decide(v.as_ref())),
                Step::Load => Input::Loaded(match load.take() {
                    Some(f) => f(),
                    None => Err(crate::driver::no_loader()),
                }),
                Step::Done(r) => return r,
            };
        }
    }

    /// The loader of a machine that loads nothing.
    pub(crate) fn no_load() -> Option<fn() -> Result<crate::recipes::Fresh, Error>> {
        None
    }

    /// [`Client::drive`] for a machine that takes no decisions and loads nothing.
    pub(crate) fn drive_plain<M: crate::machine::Machine>(&self, m: M) -> Result<M::Output, Error> {
        self.drive(m, crate::driver::no_decision, Self::no_load())
    }

    /// `get_or_set` in either mode: the read (plain, or a replicated read), then on a miss
    /// the fill ([`crate::machine::fill`]), shared by the concurrent callers of this process
    /// (single flight): one runs it, the others get its result.
    pub(crate) fn get_or_fill<T: Into<crate::recipes::Fresh>, E: std::fmt::Display>(
        &self,
        mode: crate::machine::fill::Mode,
        key: &[u8],
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<crate::machine::fill::Got, Error> {
        use crate::machine::fill::Fill;
        let read = mode.get(bytes::Bytes::copy_from_slice(key), false);
        if let Some((g, _)) = self.drive_plain(read)? {
            return Ok(g);
        }
        let load = || {
            loader()
                .map(Into::into)
                .map_err(|e| Error::Loader(e.to_string()))
        };
        let flight = crate::recipes::flight_key(&mode, key);
        let flights = &self.local().flights;
        let cell = crate::recipes::join_flight(flights, &flight);
        let r = cell
            .get_or_init(|| {
                let token = crate::recipes::owner_token();
                let m = Fill::new(mode, key, ttl, opts, &token, fastrand::u64(..));
                self.drive(m, crate::driver::no_decision, Some(load))
            })
            .clone();
        crate::recipes::land_flight(flights, &flight, &cell);
        r
    }

    /// Get `key`, or on a miss load it once and store it: concurrent callers in this process
    /// share one load (single flight); across processes one fills (a short `add` lock on
    /// `<key>:fill`) while the others wait up to `opts.wait` for its value, then load it
    /// themselves rather than fail. The stored TTL gets `opts.ttl_jitter`.
    pub fn get_or_set<T: Into<crate::recipes::Fresh>, E: std::fmt::Display>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Value, Error> {
        let mode = crate::machine::fill::Mode::Plain;
        self.get_or_fill(mode, key.as_ref(), ttl, opts, loader)
            .map(crate::machine::fill::Got::into_value)
    }
}

crate::recipes::recipes_api!(Client; ; );

impl crate::recipes::ReleaseOnDrop for Client {
    fn release_on_drop(&self, server: usize, name: Vec<u8>, cas: u64) {
        let _ = self.run(server, ops::CasDelete { key: &name, cas });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
