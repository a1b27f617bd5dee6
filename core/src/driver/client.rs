//! The async client (tokio).

use crate::cluster::{self, Cluster};
use crate::config::{Config, ConfigBuilder};
use crate::driver::tokio_conn::{self, ConnHandle, Job};
use crate::error::Error;
use crate::fork::PerProcess;
use crate::ops::{self, Op, Value};
use crate::options::StoreOptions;
use crate::protocol::meta::MetaKey;
use crate::protocol::text::StoreMode;
use crate::protocol::{MetaReply, Reply};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// An async memcached client. Cheap to clone; clones share connections.
///
/// Each server gets [`Config::connections_per_server`] connections, opened on first use and
/// reopened after a failure. Every call from every task is pipelined over them (see
/// [`crate::driver`]), and a call dropped mid-flight never disturbs the others.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    /// The TLS configuration every connection uses (`Config::tls`), built once.
    tls: Option<crate::driver::tls::TlsContext>,
    /// The connections and flights of this process. A fork child gets its own
    /// ([`crate::fork`]): the parent's connection tasks belong to a runtime whose threads do
    /// not exist in the child, so they are left untouched (not even dropped).
    local: PerProcess<Local>,
}

struct Local {
    servers: Vec<ServerConns>,
    /// In-process single flight of `get_or_set`: one load per key at a time.
    flights:
        crate::recipes::Flights<tokio::sync::OnceCell<Result<crate::machine::fill::Got, Error>>>,
}

impl Local {
    fn new(servers: usize, per: usize) -> Local {
        Local {
            servers: (0..servers)
                .map(|_| ServerConns {
                    slots: (0..per)
                        .map(|_| Slot {
                            current: Mutex::new(None),
                            connecting: tokio::sync::Mutex::new(()),
                        })
                        .collect(),
                    next: AtomicUsize::new(0),
                })
                .collect(),
            flights: Mutex::new(HashMap::new()),
        }
    }
}

struct ServerConns {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

struct Slot {
    current: Mutex<Option<ConnHandle>>,
    connecting: tokio::sync::Mutex<()>,
}

/// A builder for [`Client`]; every setting is documented on [`Config`].
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ConfigBuilder,
}

macro_rules! forward_builder {
    ($($(#[$m:meta])* $name:ident($t:ty);)*) => {$(
        $(#[$m])*
        pub fn $name(mut self, v: $t) -> Self {
            self.config = self.config.$name(v);
            self
        }
    )*};
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

    forward_builder! {
        /// See [`Config::ring_mode`].
        ring_mode(crate::RingMode);
        /// See [`Config::protocol`].
        protocol(crate::ProtocolChoice);
        /// See [`Config::connect_timeout`].
        connect_timeout(std::time::Duration);
        /// See [`Config::timeout`].
        timeout(std::time::Duration);
        /// See [`Config::failure_limit`].
        failure_limit(u32);
        /// See [`Config::retry_interval`].
        retry_interval(std::time::Duration);
        /// See [`Config::max_value_size`].
        max_value_size(usize);
        /// See [`Config::connections_per_server`].
        connections_per_server(usize);
        /// See [`Config::tcp_nodelay`].
        tcp_nodelay(bool);
    }

    /// See [`Config::key_prefix`].
    pub fn key_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.config = self.config.key_prefix(prefix);
        self
    }

    /// The configuration this builder holds.
    pub fn build_config(self) -> Result<Config, Error> {
        self.config.build_config()
    }

    /// Build the client. No connection is opened until the first call.
    pub fn build(self) -> Result<Client, Error> {
        Client::from_config(self.config.build_config()?)
    }
}

/// A call queued on a connection, waiting for its reply.
struct InFlight {
    server: usize,
    rx: oneshot::Receiver<Result<Reply, Error>>,
    conn: ConnHandle,
}

impl Client {
    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for a checked configuration.
    pub fn from_config(config: Config) -> Result<Client, Error> {
        let per = config.connections_per_server;
        let tls = config
            .tls
            .as_ref()
            .map(crate::driver::tls::TlsContext::new)
            .transpose()?;
        let cluster = Cluster::new(config)?;
        crate::fork::install();
        let local = PerProcess::new(Local::new(cluster.len(), per));
        Ok(Client {
            inner: Arc::new(Inner {
                cluster,
                local,
                tls,
            }),
        })
    }

    /// This process's connections (fresh in a fork child; the parent's are left alone).
    #[inline]
    fn local(&self) -> &Local {
        let n = self.inner.cluster.len();
        let per = self.inner.cluster.config().connections_per_server;
        self.inner.local.get(|| Local::new(n, per), |_| {})
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

    async fn conn(&self, s: usize) -> Result<ConnHandle, Error> {
        let pool = &self.local().servers[s];
        let slot = &pool.slots[pool.next.fetch_add(1, Relaxed) % pool.slots.len()];
        if let Some(c) = lock(&slot.current).as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let _one_connect = slot.connecting.lock().await;
        if let Some(c) = lock(&slot.current).as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let cl = &self.inner.cluster;
        let tls = self
            .inner
            .tls
            .as_ref()
            .filter(|_| cl.config().uses_tls(s))
            .map(|t| (t.clone(), cl.config().servers[s].host.clone()));
        let c = tokio_conn::connect(cl.pipeline_settings(s), cl.config().tcp_nodelay, tls).await?;
        *lock(&slot.current) = Some(c.clone());
        Ok(c)
    }

    /// Encode `op` for server `s` and queue it; the reply arrives on the returned receiver.
    async fn submit<O: Op>(&self, s: usize, op: &O) -> Result<InFlight, Error> {
        self.inner.cluster.admit(s, crate::driver::mono_ms())?;
        // A connection whose task ended between the check and the send never saw the request,
        // so one retry on a fresh connection is safe.
        for _ in 0..2 {
            let conn = self.conn(s).await?;
            let ctx = self.inner.cluster.ctx(conn.dialect);
            let mut buf = BytesMut::with_capacity(128);
            let expect = op.encode(&ctx, &mut buf)?;
            let (tx, rx) = oneshot::channel();
            if conn
                .submit(Job {
                    buf,
                    expect,
                    reply: tx,
                })
                .await
                .is_ok()
            {
                return Ok(InFlight {
                    server: s,
                    rx,
                    conn,
                });
            }
        }
        Err(crate::driver::closed(
            self.inner.cluster.name(s),
            "connection lost before sending",
        ))
    }

    async fn wait<O: Op>(&self, f: InFlight, op: O) -> Result<O::Output, Error> {
        let cl = &self.inner.cluster;
        let reply = match f.rx.await {
            Ok(r) => r,
            Err(_) => Err(crate::driver::closed(
                cl.name(f.server),
                "connection task ended",
            )),
        };
        cl.record_with(f.server, crate::driver::mono_ms, &reply);
        let ctx = cl.ctx(f.conn.dialect);
        let out = reply.and_then(|r| op.finish(&ctx, r));
        if let Err(Error::Protocol { .. }) = &out {
            // A reply that does not answer its request: the stream is out of step, so no new
            // request may go on this connection (those already queued are checked the same way).
            self.retire(f.server, &f.conn);
        }
        out.map_err(|e| e.at_server(cl.name(f.server)))
    }

    /// Stop handing out connection `conn` of server `s`; the next call opens a new one.
    fn retire(&self, s: usize, conn: &ConnHandle) {
        for slot in &self.local().servers[s].slots {
            let mut cur = lock(&slot.current);
            if cur.as_ref().is_some_and(|c| c.same(conn)) {
                *cur = None;
            }
        }
    }

    /// Run one op on server `s`.
    async fn run<O: Op>(&self, s: usize, op: O) -> Result<O::Output, Error> {
        let name = || self.inner.cluster.name(s);
        match self.submit(s, &op).await {
            Ok(f) => self.wait(f, op).await,
            Err(e) => {
                self.inner
                    .cluster
                    .record_with(s, crate::driver::mono_ms, &Err::<(), _>(e.clone()));
                Err(e.at_server(name()))
            }
        }
    }

    /// Run one op per server concurrently: every request is queued before any reply is awaited.
    pub(crate) async fn run_each<O: Op>(
        &self,
        ops: Vec<(usize, O)>,
    ) -> Vec<Result<O::Output, Error>> {
        let mut queued = Vec::with_capacity(ops.len());
        for (s, op) in ops {
            let f = self.submit(s, &op).await;
            if let Err(e) = &f {
                self.inner
                    .cluster
                    .record_with(s, crate::driver::mono_ms, &Err::<(), _>(e.clone()));
            }
            queued.push((s, f, op));
        }
        let mut out = Vec::with_capacity(queued.len());
        for (s, f, op) in queued {
            out.push(match f {
                Ok(f) => self.wait(f, op).await,
                Err(e) => Err(e.at_server(self.inner.cluster.name(s))),
            });
        }
        out
    }

    async fn keyed<O: Op>(&self, key: &[u8], op: O) -> Result<O::Output, Error> {
        let s = self.inner.cluster.route(key)?;
        self.run(s, op).await
    }

    crate::api::client_api!(async; .await);

    pub(crate) async fn pause(d: std::time::Duration) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Run a machine to its end ([`crate::machine`]): send what it asks (all at once), sleep
    /// when it says, ask `decide` and `load` when it says.
    pub(crate) async fn drive<M, L, Fut>(
        &self,
        mut m: M,
        mut decide: impl FnMut(Option<&M::View>) -> Result<crate::recipes::Update, Error>,
        mut load: Option<L>,
    ) -> Result<M::Output, Error>
    where
        M: crate::machine::Machine,
        L: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<crate::recipes::Fresh, Error>>,
    {
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
                    Input::Answers(vec![self.run(r.server, r.call).await])
                }
                Step::Send(r) => Input::Answers(
                    self.run_each(r.into_iter().map(|r| (r.server, r.call)).collect())
                        .await,
                ),
                Step::Wait(d) => {
                    Self::pause(d).await;
                    Input::Woke
                }
                Step::Decide(v) => Input::Decided(decide(v.as_ref())),
                Step::Load => Input::Loaded(match load.take() {
                    Some(f) => f().await,
                    None => Err(crate::driver::no_loader()),
                }),
                Step::Done(r) => return r,
            };
        }
    }

    /// The loader of a machine that loads nothing.
    #[allow(clippy::type_complexity)]
    pub(crate) fn no_load(
    ) -> Option<fn() -> std::future::Ready<Result<crate::recipes::Fresh, Error>>> {
        None
    }

    /// [`Client::drive`] for a machine that takes no decisions and loads nothing.
    pub(crate) async fn drive_plain<M: crate::machine::Machine>(
        &self,
        m: M,
    ) -> Result<M::Output, Error> {
        self.drive(m, crate::driver::no_decision, Self::no_load())
            .await
    }

    /// `get_or_set` in either mode: the read (plain, or a replicated read), then on a miss
    /// the fill ([`crate::machine::fill`]), shared by the concurrent callers of this process
    /// (single flight): one runs it, the others get its result.
    pub(crate) async fn get_or_fill<F, Fut, T, E>(
        &self,
        mode: crate::machine::fill::Mode,
        key: &[u8],
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: F,
    ) -> Result<crate::machine::fill::Got, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        T: Into<crate::recipes::Fresh>,
        E: std::fmt::Display,
    {
        use crate::machine::fill::Fill;
        let read = mode.get(bytes::Bytes::copy_from_slice(key), false);
        if let Some((g, _)) = self.drive_plain(read).await? {
            return Ok(g);
        }
        let load = || async {
            loader()
                .await
                .map(Into::into)
                .map_err(|e| Error::Loader(e.to_string()))
        };
        let flight = crate::recipes::flight_key(&mode, key);
        let flights = &self.local().flights;
        let cell = crate::recipes::join_flight(flights, &flight);
        let r = cell
            .get_or_init(|| async {
                let token = crate::recipes::owner_token();
                let m = Fill::new(mode, key, ttl, opts, &token, fastrand::u64(..));
                self.drive(m, crate::driver::no_decision, Some(load)).await
            })
            .await
            .clone();
        crate::recipes::land_flight(flights, &flight, &cell);
        r
    }

    /// Get `key`, or on a miss load it once and store it: concurrent callers in this process
    /// share one load (single flight); across processes one fills (a short `add` lock on
    /// `<key>:fill`) while the others wait up to `opts.wait` for its value, then load it
    /// themselves rather than fail. The stored TTL gets `opts.ttl_jitter`.
    pub async fn get_or_set<F, Fut, T, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: u32,
        opts: crate::recipes::FillOptions,
        loader: F,
    ) -> Result<Value, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        T: Into<crate::recipes::Fresh>,
        E: std::fmt::Display,
    {
        let mode = crate::machine::fill::Mode::Plain;
        self.get_or_fill(mode, key.as_ref(), ttl, opts, loader)
            .await
            .map(crate::machine::fill::Got::into_value)
    }

    async fn each_server<O: Op>(
        &self,
        op: impl Fn() -> O,
    ) -> Vec<(String, Result<O::Output, Error>)> {
        let cl = &self.inner.cluster;
        let ops = (0..cl.len()).map(|s| (s, op())).collect();
        let rs = self.run_each(ops).await;
        (0..cl.len())
            .map(|s| cl.name(s).to_string())
            .zip(rs)
            .collect()
    }
}

crate::recipes::recipes_api!(Client; async; .await);

impl crate::recipes::ReleaseOnDrop for Client {
    fn release_on_drop(&self, server: usize, name: Vec<u8>, cas: u64) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.clone();
            rt.spawn(async move {
                let _ = client.run(server, ops::CasDelete { key: &name, cas }).await;
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
