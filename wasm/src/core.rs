//! `Core`: the client-wide state of the logic layer — ring, key rules, per-server health,
//! replication policy, clock and writer id — and the decisions the JavaScript client asks it
//! for: where a key lives, whether a server may be tried, and every call as a job (the
//! recipes here, the reads and writes in `calls.rs`). Time is always passed in (milliseconds
//! from JavaScript); nothing here does I/O.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Object, Uint32Array};
use multiput::cluster::Cluster;
use multiput::envelope::Hlc;
use multiput::machine::mode::Mode;
use multiput::machine::replicated::Rep;
use multiput::replication::{Policy, ReadPolicy, WritePolicy};
use multiput::setup::Setup;
use multiput::values::{Convention, Family};
use multiput::{Error, ServerSpec};
use wasm_bindgen::prelude::*;

use crate::job::{self, Job};
use crate::{js, ring};

/// The client-wide logic state. One per JavaScript `Client`.
#[wasm_bindgen]
pub struct Core {
    /// Servers, ring, key rules and per-server health: the core's, with time passed in.
    /// Shared with the views [`Core::with_policies`] makes, like the clock and token counter:
    /// a view is the same client with other policies.
    pub(crate) cluster: Rc<Cluster>,
    /// Plain or replicated (policy, clock, writer id): the core's call picker, which
    /// `calls.rs` asks for each call's machine.
    pub(crate) mode: Rc<Mode>,
    pub(crate) convention: Convention,
    writer: u64,
    token_seed: u64,
    tokens: Rc<Cell<u64>>,
    /// Per server, the report of a plain write it stored, `[[address], []]`, made once (the
    /// JavaScript client copies it into a fresh `{stored, failed}`).
    pub(crate) stored_on: Rc<Vec<JsValue>>,
}

pub(crate) fn config(msg: impl Into<String>) -> JsValue {
    js::error(&Error::Config(msg.into()))
}

/// A policy option as text for core's parsers: a number N or `{quorum: N}` is `N` (a quorum
/// of N); a string is passed as is.
fn policy_text(v: &JsValue, option: &str) -> Result<String, JsValue> {
    if let Some(n) = js::get(v, "quorum").as_f64().or_else(|| v.as_f64()) {
        return Ok(format!("{}", n.max(0.0) as u64));
    }
    v.as_string().ok_or_else(|| {
        config(format!(
            "{option} must be a string, a number or {{quorum: N}}"
        ))
    })
}

fn opt_f64(o: &JsValue, k: &str) -> Option<f64> {
    let v = js::get(o, k);
    if js::is_nullish(&v) {
        None
    } else {
        v.as_f64()
    }
}

fn write_policy(v: &JsValue, replicas: usize) -> Result<WritePolicy, JsValue> {
    WritePolicy::parse(&policy_text(v, "writePolicy")?, replicas).map_err(|e| js::error(&e))
}

fn read_policy(v: &JsValue, replicas: usize) -> Result<ReadPolicy, JsValue> {
    ReadPolicy::parse(&policy_text(v, "readPolicy")?, replicas).map_err(|e| js::error(&e))
}

/// An option's value as the core's text: strings as they are, numbers, booleans.
fn option_text(v: &JsValue, option: &str) -> Result<String, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(s);
    }
    if let Some(n) = v.as_f64() {
        return Ok(format!("{n}"));
    }
    if let Some(b) = v.as_bool() {
        return Ok(b.to_string());
    }
    if let Some(a) = v.dyn_ref::<Array>() {
        let items: Option<Vec<String>> = a.iter().map(|x| x.as_string()).collect();
        if let Some(items) = items {
            return Ok(items.join(","));
        }
    }
    Err(config(format!(
        "{option} must be a string, a number, a boolean or an array of strings"
    )))
}

/// The JavaScript client's option names and the core's (`multiput::setup`).
const OPTIONS: &[(&str, &str)] = &[
    ("ringMode", "ring"),
    ("protocol", "protocol"),
    ("timeout", "timeout_ms"),
    ("connectTimeout", "connect_timeout_ms"),
    ("retryInterval", "retry_ms"),
    ("failureLimit", "failure_limit"),
    ("maxValueSize", "max_value_size"),
    ("binaryKeys", "binary_keys"),
    ("mode", "mode"),
    ("replicas", "replicas"),
    ("writePolicy", "write"),
    ("readPolicy", "read"),
    ("tombstoneTtl", "tombstone_ttl"),
    ("failover", "failover"),
    ("readRepair", "read_repair"),
    ("convention", "convention"),
    ("username", "username"),
    ("password", "password"),
    ("tls", "tls"),
    ("tlsCa", "tls_ca"),
    ("tlsCert", "tls_cert"),
    ("tlsKey", "tls_key"),
    ("tlsServerName", "tls_server_name"),
    ("tlsServers", "tls_servers"),
];

#[wasm_bindgen]
impl Core {
    /// Build from the client's options (see `index.d.ts`, `ClientOptions`), after the JS side
    /// has filled in `writerId` and `tokenSeed` from `crypto.getRandomValues` (wasm32 has no
    /// random source of its own). `mode` is `plain` or `replicated`; without it, more than one
    /// replica means replicated.
    #[wasm_bindgen(constructor)]
    pub fn new(options: &JsValue) -> Result<Core, JsValue> {
        // The options are the core's: this names them and writes their values as its text.
        let mut setup = Setup::new(Family::Python);
        let servers = js::get(options, "servers");
        if let Some(text) = servers.as_string() {
            setup.set("servers", &text).map_err(|e| js::error(&e))?;
        } else {
            let list: Array = servers.dyn_into().map_err(|_| {
                config("servers must be an array of \"host:port[:weight]\" strings or {host, port, weight} objects, or one string")
            })?;
            setup.servers(ring::specs(&list)?);
        }
        for (js_name, name) in OPTIONS {
            let v = js::get(options, js_name);
            if js::is_nullish(&v) {
                continue;
            }
            let text = if name.starts_with("write")
                || name.starts_with("read") && *name != "read_repair"
            {
                policy_text(&v, js_name)?
            } else {
                option_text(&v, js_name)?
            };
            setup.set(name, &text).map_err(|e| js::error(&e))?;
        }
        let prefix = js::get(options, "keyPrefix");
        if !js::is_nullish(&prefix) {
            let p = js::bytes_of(&prefix)
                .ok_or_else(|| config("keyPrefix must be a string or Uint8Array"))?;
            setup.key_prefix(&p);
        }
        let built = setup.build().map_err(|e| js::error(&e))?;
        let cluster = Cluster::new(built.config).map_err(|e| js::error(&e))?;
        let n_servers = cluster.len();
        let stored_on = (0..n_servers)
            .map(|i| {
                let stored = js::array(&[&JsValue::from_str(cluster.name(i))]);
                js::array(&[&stored.into(), &Array::new().into()]).into()
            })
            .collect();
        let writer = js::u64_of(&js::get(options, "writerId")).unwrap_or(0);
        if writer == 0 {
            return Err(config(
                "writerId must be a non-zero BigInt from crypto.getRandomValues",
            ));
        }
        let token_seed = js::u64_of(&js::get(options, "tokenSeed")).unwrap_or(writer);
        let mode = match built.policy {
            None => Mode::Plain,
            Some(policy) => Mode::Replicated(Rep {
                policy,
                hlc: std::sync::Arc::new(Hlc::new()),
                writer,
            }),
        };
        Ok(Core {
            cluster: Rc::new(cluster),
            mode: Rc::new(mode),
            convention: built.convention,
            writer,
            token_seed,
            tokens: Rc::new(Cell::new(0)),
            stored_on: Rc::new(stored_on),
        })
    }

    /// The same core (servers, health, clock, writer id, lock tokens) with other read and/or
    /// write policies; `undefined`/`null` keeps the current one. The replica count and
    /// placement do not change. Replicated cores only.
    #[wasm_bindgen(js_name = withPolicies)]
    pub fn with_policies(&self, read: JsValue, write: JsValue) -> Result<Core, JsValue> {
        let replicas = self.policy().replicas;
        let read = (!js::is_nullish(&read))
            .then(|| read_policy(&read, replicas))
            .transpose()?;
        let write = (!js::is_nullish(&write))
            .then(|| write_policy(&write, replicas))
            .transpose()?;
        let mode = self
            .mode
            .with_policies(read, write, self.cluster.len())
            .map_err(|e| js::error(&e))?;
        Ok(Core {
            cluster: self.cluster.clone(),
            mode: Rc::new(mode),
            convention: self.convention,
            writer: self.writer,
            token_seed: self.token_seed,
            tokens: self.tokens.clone(),
            stored_on: self.stored_on.clone(),
        })
    }

    /// `all`, `one` or `quorum:N`.
    #[wasm_bindgen(getter, js_name = writePolicy)]
    pub fn write_policy_name(&self) -> String {
        self.policy().write.to_string()
    }

    /// The replication policy (a plain core's: one copy, the defaults).
    fn policy(&self) -> Policy {
        self.mode.policy().copied().unwrap_or(Policy {
            replicas: 1,
            ..Policy::default()
        })
    }

    /// A new connection's codec for server `s`, opened at `now` (`performance.now()`): the
    /// core's connection pipeline with this client's protocol choice, key rules, value limit
    /// and timeouts.
    pub fn connection(&self, s: u32, now: f64) -> Result<crate::Codec, JsValue> {
        let s = s as usize;
        if s >= self.cluster.len() {
            return Err(config(format!("no server {s}")));
        }
        Ok(crate::Codec::open(self.cluster.clone(), s, now))
    }

    /// The TLS settings (`{ca, cert, key, serverName}`, file paths and a name, each possibly
    /// `undefined`), or `null` without TLS. The JavaScript side reads the files and opens its
    /// sockets with `node:tls`.
    #[wasm_bindgen(getter)]
    pub fn tls(&self) -> JsValue {
        let Some(t) = &self.cluster.config().tls else {
            return JsValue::NULL;
        };
        let o = Object::new();
        let opt = |v: &Option<String>| v.as_deref().map_or(JsValue::UNDEFINED, JsValue::from_str);
        js::set(&o, "ca", opt(&t.ca_file));
        js::set(&o, "cert", opt(&t.cert_file));
        js::set(&o, "key", opt(&t.key_file));
        js::set(&o, "serverName", opt(&t.server_name));
        o.into()
    }

    /// Whether connections to server `i` use TLS (`tls`, or `tlsServers` naming it).
    #[wasm_bindgen(js_name = usesTls)]
    pub fn uses_tls(&self, i: u32) -> bool {
        self.cluster.config().uses_tls(i as usize)
    }

    /// The number of servers.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.cluster.len() as u32
    }

    /// `host:port` of server `i`.
    pub fn address(&self, i: u32) -> String {
        let i = i as usize;
        if i < self.cluster.len() {
            self.cluster.name(i).to_string()
        } else {
            String::new()
        }
    }

    fn spec(&self, i: u32) -> Option<&ServerSpec> {
        self.cluster.config().servers.get(i as usize)
    }

    /// The host of server `i` as configured (what the socket connects to).
    pub fn host(&self, i: u32) -> String {
        self.spec(i).map(|s| s.host.clone()).unwrap_or_default()
    }

    /// The port of server `i` (0 means 11211).
    pub fn port(&self, i: u32) -> u16 {
        self.spec(i).map(ServerSpec::effective_port).unwrap_or(0)
    }

    /// True when values are written inside the envelope to `replicas` servers.
    #[wasm_bindgen(getter)]
    pub fn replicated(&self) -> bool {
        self.mode.rep().is_some()
    }

    /// `plain` or `replicated`.
    #[wasm_bindgen(getter, js_name = mode)]
    pub fn mode_name(&self) -> String {
        match *self.mode {
            Mode::Plain => "plain",
            Mode::Replicated(_) => "replicated",
        }
        .into()
    }

    /// The replication policies in force, `{readPolicy, writePolicy}`; `null` for a plain
    /// core.
    #[wasm_bindgen(getter, js_name = policy)]
    pub fn policy_js(&self) -> JsValue {
        if self.mode.rep().is_none() {
            return JsValue::NULL;
        }
        let o = Object::new();
        js::set(&o, "readPolicy", self.read_policy());
        js::set(&o, "writePolicy", self.write_policy_name());
        o.into()
    }

    /// Copies per key.
    #[wasm_bindgen(getter)]
    pub fn replicas(&self) -> u32 {
        self.policy().replicas as u32
    }

    /// `all`, `first` or `quorum`.
    #[wasm_bindgen(getter, js_name = readPolicy)]
    pub fn read_policy(&self) -> String {
        match self.policy().read {
            ReadPolicy::All => "all".into(),
            ReadPolicy::FirstHit => "first".into(),
            ReadPolicy::Quorum(_) => "quorum".into(),
        }
    }

    /// This client's writer id (a `BigInt`), written into every envelope.
    #[wasm_bindgen(getter, js_name = writerId)]
    pub fn writer_id(&self) -> u64 {
        self.writer
    }

    fn check_key(&self, key: &[u8]) -> Result<(), JsValue> {
        self.cluster.check_key(key).map_err(|e| js::error(&e))
    }

    /// The server that owns `key` (checked against the key rules first, with the prefix; the
    /// ring hashes the key without it, as libmemcached).
    pub fn route(&self, key: &[u8]) -> Result<u32, JsValue> {
        self.cluster
            .route(key)
            .map(|s| s as u32)
            .map_err(|e| js::error(&e))
    }

    /// The servers holding `key`'s copies, primary first: the first `replicas` distinct
    /// servers of its preference list (with `failover`, on a ring without the servers down at
    /// `now_ms`). A plain client's key has one: the server [`Core::route`] gives.
    #[wasm_bindgen(js_name = replicasOf)]
    pub fn replicas_of(&self, key: &[u8], now_ms: f64) -> Result<Uint32Array, JsValue> {
        self.check_key(key)?;
        let (n, failover) = self.mode.copies();
        let l: Vec<u32> = self
            .cluster
            .replicas_for(key, n, failover, js::ms(now_ms))
            .into_iter()
            .map(|i| i as u32)
            .collect();
        Ok(Uint32Array::from(&l[..]))
    }

    /// May a call go to server `i` at `now_ms`? `null` when it may (including the one probe
    /// let through after the retry interval), else the `ServerDown` error to fail fast with.
    pub fn admit(&self, i: u32, now_ms: f64) -> JsValue {
        match self.cluster.admit(i as usize, js::ms(now_ms)) {
            Ok(()) => JsValue::NULL,
            Err(e) => js::error(&e),
        }
    }

    /// Record how a call to server `i` ended: `null` when the server answered (whatever it
    /// answered), else the error. Refused connections mark a server down at once; timeouts and
    /// broken connections after `failureLimit` in a row. Returns true when this marked it down.
    pub fn record(&self, i: u32, now_ms: f64, error: &JsValue) -> bool {
        let result = if js::is_nullish(error) {
            Ok(())
        } else {
            Err(js::error_from_js(error))
        };
        self.cluster.record(i as usize, js::ms(now_ms), &result)
    }

    /// Consecutive failures of server `i`.
    pub fn failures(&self, i: u32) -> u32 {
        self.cluster.health(i as usize).consecutive_failures()
    }

    /// A lock owner token, unique per client and call: the random seed the JS side supplied
    /// (std's randomness is fixed on wasm32) and a counter, formatted as the core's
    /// `recipes::owner_token`.
    pub(crate) fn owner_token(&self) -> String {
        let n = self.tokens.get();
        self.tokens.set(n + 1);
        multiput::recipes::owner_token_from(self.token_seed, n)
    }
}

/// The core's defaults, for the JS side to document and use: `{casMaxAttempts,
/// casDeadline, casBaseBackoff, casMaxBackoff, lockBaseBackoff, lockMaxBackoff, fillWait,
/// fillPoll, fillLockTtl, ttlJitter, tombstoneTtl, timeout, connectTimeout, retryInterval,
/// failureLimit, maxValueSize, expired}` (durations in ms).
#[wasm_bindgen]
pub fn defaults() -> JsValue {
    let cas = multiput::recipes::CasOptions::default();
    let lock = multiput::recipes::LockOptions::new(1, Duration::ZERO);
    let fill = multiput::recipes::FillOptions::default();
    let cfg = multiput::Config::default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let o = Object::new();
    js::set(&o, "casMaxAttempts", cas.max_attempts);
    js::set(&o, "casDeadline", ms(cas.deadline));
    js::set(&o, "casBaseBackoff", ms(cas.base_backoff));
    js::set(&o, "casMaxBackoff", ms(cas.max_backoff));
    js::set(&o, "lockBaseBackoff", ms(lock.base_backoff));
    js::set(&o, "lockMaxBackoff", ms(lock.max_backoff));
    js::set(&o, "fillWait", ms(fill.wait));
    js::set(&o, "fillPoll", ms(fill.poll));
    js::set(&o, "fillLockTtl", fill.fill_lock_ttl);
    js::set(&o, "ttlJitter", fill.ttl_jitter);
    js::set(&o, "tombstoneTtl", Policy::default().tombstone_ttl);
    js::set(&o, "timeout", ms(cfg.timeout));
    js::set(&o, "connectTimeout", ms(cfg.connect_timeout));
    js::set(&o, "retryInterval", ms(cfg.retry_interval));
    js::set(&o, "failureLimit", cfg.failure_limit);
    js::set(&o, "maxValueSize", cfg.max_value_size as f64);
    js::set(&o, "expired", multiput::recipes::EXPIRED);
    o.into()
}

fn ms_opt(o: &JsValue, k: &str, default: Duration) -> Duration {
    opt_f64(o, k).map_or(default, |v| Duration::from_secs_f64(v.max(0.0) / 1000.0))
}

fn cas_options(o: &JsValue) -> multiput::recipes::CasOptions {
    let d = multiput::recipes::CasOptions::default();
    multiput::recipes::CasOptions {
        max_attempts: opt_f64(o, "maxAttempts").map_or(d.max_attempts, |n| n as u32),
        deadline: ms_opt(o, "deadline", d.deadline),
        base_backoff: ms_opt(o, "baseBackoff", d.base_backoff),
        max_backoff: ms_opt(o, "maxBackoff", d.max_backoff),
        ttl: opt_f64(o, "ttl").map_or(0, |n| n as u32),
        flags: 0,
    }
}

/// Jobs: the core's step machines for JavaScript to drive (see `job.rs`).
#[wasm_bindgen]
impl Core {
    pub(crate) fn jobs(&self) -> job::Jobs<'_> {
        (&self.cluster, self.convention, &self.mode)
    }

    /// A CAS update of `key` (`opts`: maxAttempts, deadline, baseBackoff, maxBackoff in ms,
    /// ttl); it asks the caller's function at each decide step. Done with `{outcome,
    /// attempts, report}`.
    #[wasm_bindgen(js_name = casUpdate)]
    pub fn cas_update(&self, job: &mut Job, key: &[u8], opts: &JsValue, seed: f64) -> u32 {
        let m = self.mode.cas_update(key, cas_options(opts), seed as u64);
        let cluster = self.cluster.clone();
        self.run(job, m, move |(outcome, wrote)| {
            let o = job::outcome_js(&outcome);
            js::set(&o, "report", job::report_js(&wrote.report(&cluster)));
            Ok(o.into())
        })
    }

    /// Acquire the lock `name` (`opts`: ttl s, wait ms, fencing, baseBackoff, maxBackoff,
    /// quorum: a replica count for a majority lock). Done with `{token, holds: [[server,
    /// cas]], quorum, fence}`.
    pub fn lock(
        &self,
        job: &mut Job,
        name: &[u8],
        opts: &JsValue,
        seed: f64,
    ) -> Result<u32, JsValue> {
        let d = multiput::recipes::LockOptions::new(1, Duration::ZERO);
        let o = multiput::recipes::LockOptions {
            ttl: opt_f64(opts, "ttl").map_or(30, |n| n as u32),
            wait: ms_opt(opts, "wait", Duration::from_secs(5)),
            fencing: js::get(opts, "fencing").as_bool().unwrap_or(false),
            base_backoff: ms_opt(opts, "baseBackoff", d.base_backoff),
            max_backoff: ms_opt(opts, "maxBackoff", d.max_backoff),
        };
        let token = self.owner_token();
        let cx = multiput::machine::Cx {
            cluster: &self.cluster,
            now: Default::default(),
        };
        use multiput::machine::lock::Acquire;
        let m = match opt_f64(opts, "quorum") {
            Some(q) => Acquire::quorum(&cx, name, &token, q as usize, o, seed as u64),
            None => Acquire::single(&cx, name, &token, o, seed as u64),
        }
        .map_err(|e| js::error(&e))?;
        Ok(job.install(
            self.jobs(),
            m,
            move |a| {
                let x = Object::new();
                js::set(&x, "token", token.as_str());
                js::set(&x, "holds", job::holds_js(&a.holds));
                js::set(&x, "quorum", a.quorum as u32);
                js::set(&x, "fence", a.fence.map_or(JsValue::UNDEFINED, js::uint));
                Ok(x.into())
            },
            |_| JsValue::NULL,
        ))
    }

    /// Release the lock `name` held as `holds` (`[[server, cas]]`). Done with true (released)
    /// or false (it had expired and was left alone).
    #[wasm_bindgen(js_name = lockRelease)]
    pub fn lock_release(&self, job: &mut Job, name: &[u8], holds: &Array, quorum: u32) -> u32 {
        let m = multiput::machine::lock::Release::new(name, &job::holds_of(holds), quorum as usize);
        job.install(self.jobs(), m, |b| Ok(b.into()), |_| JsValue::NULL)
    }

    /// Extend the lock `name` to `ttl` seconds. Done with `{holds, held}`.
    #[wasm_bindgen(js_name = lockExtend)]
    pub fn lock_extend(
        &self,
        job: &mut Job,
        name: &[u8],
        token: &str,
        holds: &Array,
        quorum: u32,
        ttl: u32,
    ) -> u32 {
        let m = multiput::machine::lock::Extend::new(
            name,
            token,
            &job::holds_of(holds),
            quorum as usize,
            ttl,
        );
        job.install(
            self.jobs(),
            m,
            |x| {
                let o = Object::new();
                js::set(&o, "holds", job::holds_js(&x.holds));
                js::set(&o, "held", x.held);
                Ok(o.into())
            },
            |_| JsValue::NULL,
        )
    }

    /// The fill of `getOrSet` after a miss of `key` (`opts`: wait, poll in ms, fillLockTtl
    /// s, ttlJitter). It asks for the loader at its load step. Done with the value.
    pub fn fill(&self, job: &mut Job, key: &[u8], ttl: u32, opts: &JsValue, seed: f64) -> u32 {
        let d = multiput::recipes::FillOptions::default();
        let o = multiput::recipes::FillOptions {
            wait: ms_opt(opts, "wait", d.wait),
            poll: ms_opt(opts, "poll", d.poll),
            fill_lock_ttl: opt_f64(opts, "fillLockTtl").map_or(d.fill_lock_ttl, |n| n as u32),
            ttl_jitter: opt_f64(opts, "ttlJitter").unwrap_or(d.ttl_jitter),
        };
        let m = self
            .mode
            .fill(key, ttl, o, &self.owner_token(), seed as u64);
        let conv = self.convention;
        self.run(job, m, move |g| job::got_value(conv, &g))
    }
}
