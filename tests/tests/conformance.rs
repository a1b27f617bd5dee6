//! The cross-language conformance scenarios (`tests/conformance/*.json`, specified in
//! `tests/conformance/README.md`), run with the Rust clients: every scenario once with the
//! blocking client (`multiput::blocking::Client` / `ReplicatedClient`) and once with the async
//! one (`multiput::Client` / `ReplicatedClient` on a tokio runtime). One test per driver; each
//! runs every scenario and reports every failure at once.
//!
//! Each scenario gets fresh memcached processes (the harness's [`Memcached`], stopped by PID)
//! and a fresh client. Parallel groups are threads on one client (the async driver's threads
//! each drive their call with `Runtime::block_on` on the one runtime). A lock on a
//! replicated client is taken with the plain client underneath (`ReplicatedClient::inner`), as
//! locks are never replicated (see `multiput::recipes`).
//!
//! Scenarios listed under `"rust"` in `tests/conformance/known-gaps.json` must fail with both
//! drivers; any other must pass; a listed scenario that passes is a failure ("remove it from
//! known-gaps.json"). `MULTIPUT_CONFORMANCE_FILTER=<text>` runs only the scenarios whose name
//! contains the text (for debugging; the gap rule still applies to those).

use multiput::envelope::{Format, ValueType};
use multiput::machine::replicated::Rule;
use multiput::recipes::{CasOptions, CasOutcome, FillOptions, Lock, LockOptions, Update};
use multiput::{blocking, Error, Policy, ProtocolChoice, ReadPolicy, WritePolicy};
use multiput_tests::{cluster, raw_get, raw_set, try_raw_command, Memcached};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

const LANG: &str = "rust";
const GAPS_FILE: &str = "known-gaps.json";
const UNAVAILABLE: &[&str] = &[
    "Timeout",
    "ConnectionRefused",
    "ConnectionClosed",
    "ServerDown",
];
const RAW_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Scenarios and known gaps (files inside the repository only)

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// `(file name, scenario)` of every scenario file, files in name order.
fn load_scenarios() -> Vec<(String, Json)> {
    let dir = conformance_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".json") && f != GAPS_FILE)
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let path = dir.join(&f);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let list = doc["scenarios"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no \"scenarios\" array", path.display()));
        out.extend(list.iter().map(|s| (f.clone(), s.clone())));
    }
    out
}

fn load_gaps() -> Vec<String> {
    let path = conformance_dir().join(GAPS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let doc: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc.get(LANG)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(sc: &Json) -> &str {
    sc["name"].as_str().unwrap_or("<unnamed>")
}

// ---------------------------------------------------------------------------------------------
// Outcomes, values, expectations

/// A failed call: the core error kind (`ErrorKind`'s name) and the message.
#[derive(Debug)]
struct Fail {
    kind: String,
    msg: String,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail {
            kind: format!("{:?}", e.kind()),
            msg: e.to_string(),
        }
    }
}

/// A call's normalised result, or its error.
type Outcome = Result<Json, Fail>;

fn show(o: &Outcome) -> String {
    match o {
        Ok(v) => format!("result {v}"),
        Err(f) => format!("error {}: {}", f.kind, f.msg),
    }
}

fn text(b: impl AsRef<[u8]>) -> Json {
    Json::String(String::from_utf8_lossy(b.as_ref()).into_owned())
}

fn opt_text(b: Option<impl AsRef<[u8]>>) -> Json {
    b.map_or(Json::Null, text)
}

fn opt_num(n: Option<u64>) -> Json {
    n.map_or(Json::Null, Json::from)
}

/// A multi-key read: the hits as an object; any key's error fails the call.
fn hits<K: AsRef<[u8]>>(keys: &[K], rs: Vec<Result<Option<Vec<u8>>, Error>>) -> Outcome {
    let mut m = Map::new();
    for (k, r) in keys.iter().zip(rs) {
        if let Some(v) = r? {
            m.insert(String::from_utf8_lossy(k.as_ref()).into_owned(), text(v));
        }
    }
    Ok(Json::Object(m))
}

/// A multi-key write: `true`, or the first item's error.
fn all_ok<T>(rs: Vec<Result<T, Error>>) -> Outcome {
    for r in rs {
        r?;
    }
    Ok(Json::Bool(true))
}

/// Variables of a scenario: raw bytes (or a miss), CAS tokens, locks.
enum Var<L> {
    Bytes(Option<Vec<u8>>),
    Cas(u64),
    Lock(L),
}

struct Vars<L> {
    map: Mutex<HashMap<String, Var<L>>>,
}

impl<L> Vars<L> {
    fn new() -> Self {
        Vars {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, HashMap<String, Var<L>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, name: &str, v: Var<L>) {
        self.guard().insert(name.to_string(), v);
    }

    /// `"$name"` → `name`.
    fn name(r: &Json) -> Result<&str, String> {
        r.as_str()
            .and_then(|s| s.strip_prefix('$'))
            .ok_or_else(|| format!("expected a \"$variable\", got {r}"))
    }

    fn bytes(&self, r: &Json) -> Result<Option<Vec<u8>>, String> {
        let n = Self::name(r)?;
        match self.guard().get(n) {
            Some(Var::Bytes(b)) => Ok(b.clone()),
            Some(Var::Cas(c)) => Ok(Some(c.to_string().into_bytes())),
            Some(Var::Lock(_)) => Err(format!("variable ${n} is a lock, not a value")),
            None => Err(format!(
                "variable ${n} is not set (an earlier step did not save it)"
            )),
        }
    }

    fn cas(&self, r: &Json) -> Result<u64, String> {
        let n = Self::name(r)?;
        match self.guard().get(n) {
            Some(Var::Cas(c)) => Ok(*c),
            Some(_) => Err(format!("variable ${n} is not a CAS token")),
            None => Err(format!(
                "variable ${n} is not set (an earlier step did not save it)"
            )),
        }
    }

    /// Take lock `$name` out (to call it without holding the map); give it back with `put`.
    fn take_lock(&self, r: &Json) -> Result<(String, L), String> {
        let n = Self::name(r)?;
        let mut g = self.guard();
        match g.remove(n) {
            Some(Var::Lock(l)) => Ok((n.to_string(), l)),
            Some(other) => {
                g.insert(n.to_string(), other);
                Err(format!("variable ${n} is not a lock"))
            }
            None => Err(format!(
                "variable ${n} is not set (the lock was not acquired)"
            )),
        }
    }

    fn clear(&self) {
        self.guard().clear();
    }
}

/// A value argument: `"$var"`, `{"repeat": s, "times": n}`, a string or an integer.
fn value<L>(v: &Json, vars: &Vars<L>) -> Result<Vec<u8>, String> {
    match v {
        Json::String(s) if s.starts_with('$') => vars
            .bytes(v)?
            .ok_or_else(|| format!("variable {s} holds a miss, not a value")),
        Json::String(s) => Ok(s.as_bytes().to_vec()),
        Json::Number(n) => Ok(n.to_string().into_bytes()),
        Json::Object(o) if o.contains_key("repeat") => {
            let s = o["repeat"].as_str().ok_or("repeat must be a string")?;
            let n = o
                .get("times")
                .and_then(Json::as_u64)
                .ok_or("times must be a number")?;
            Ok(s.repeat(n as usize).into_bytes())
        }
        other => Err(format!("not a value: {other}")),
    }
}

fn field<'a>(c: &'a Json, f: &str) -> Result<&'a Json, String> {
    c.get(f).ok_or_else(|| format!("the step has no {f:?}"))
}

fn str_field<'a>(c: &'a Json, f: &str) -> Result<&'a str, String> {
    field(c, f)?
        .as_str()
        .ok_or_else(|| format!("{f:?} must be a string"))
}

fn u64_field(c: &Json, f: &str) -> Result<u64, String> {
    field(c, f)?
        .as_u64()
        .ok_or_else(|| format!("{f:?} must be a non-negative integer"))
}

fn ttl_of(c: &Json) -> Result<u32, String> {
    match c.get("ttl") {
        None | Some(Json::Null) => Ok(0),
        Some(t) => t
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| format!("ttl must be a number of seconds, not {t}")),
    }
}

fn keys_of(c: &Json) -> Result<Vec<Vec<u8>>, String> {
    field(c, "keys")?
        .as_array()
        .ok_or("keys must be an array")?
        .iter()
        .map(|k| {
            k.as_str()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| format!("not a key: {k}"))
        })
        .collect()
}

/// `set_multi` items: (key, value) pairs.
type Items = Vec<(Vec<u8>, Vec<u8>)>;

fn items_of<L>(c: &Json, vars: &Vars<L>) -> Result<Items, String> {
    field(c, "items")?
        .as_object()
        .ok_or("items must be an object")?
        .iter()
        .map(|(k, v)| Ok((k.as_bytes().to_vec(), value(v, vars)?)))
        .collect()
}

fn matches<L>(want: &Json, got: &Json, vars: &Vars<L>) -> Result<bool, String> {
    Ok(match want {
        Json::String(s) if s.starts_with('$') => match (vars.bytes(want)?, got) {
            (None, Json::Null) => true,
            (Some(b), Json::String(g)) => String::from_utf8_lossy(&b) == *g,
            _ => false,
        },
        Json::Null => got.is_null(),
        Json::Bool(b) => got.as_bool() == Some(*b),
        Json::Number(n) => match got {
            Json::Number(g) => g == n,
            Json::String(g) => *g == n.to_string(),
            _ => false,
        },
        Json::String(s) => got.as_str() == Some(s.as_str()),
        Json::Object(w) => match got.as_object() {
            Some(g) if g.len() == w.len() => {
                let mut all = true;
                for (k, wv) in w {
                    all &= match g.get(k) {
                        Some(gv) => matches(wv, gv, vars)?,
                        None => false,
                    };
                }
                all
            }
            _ => false,
        },
        Json::Array(w) => match got.as_array() {
            Some(g) if g.len() == w.len() => {
                let mut all = true;
                for (wv, gv) in w.iter().zip(g) {
                    all &= matches(wv, gv, vars)?;
                }
                all
            }
            _ => false,
        },
    })
}

/// `Ok(())` when the outcome meets the expectation (none: the call must not fail).
fn check<L>(expect: Option<&Json>, got: &Outcome, vars: &Vars<L>) -> Result<(), String> {
    let Some(expect) = expect.filter(|e| e.get("ok").and_then(Json::as_bool) != Some(true)) else {
        return match got {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("expected no error, got {}", show(got))),
        };
    };
    if let Some(want) = expect.get("error") {
        let want = want.as_str().ok_or("expect.error must be a string")?;
        return match got {
            Err(f)
                if f.kind == want
                    || (want == "unavailable" && UNAVAILABLE.contains(&f.kind.as_str())) =>
            {
                Ok(())
            }
            _ => Err(format!("expected error {want}, got {}", show(got))),
        };
    }
    if let Some(want) = expect.get("result") {
        return match got {
            Ok(g) if matches(want, g, vars)? => Ok(()),
            _ => Err(format!("expected result {want}, got {}", show(got))),
        };
    }
    Err(format!("unknown expectation {expect}"))
}

// ---------------------------------------------------------------------------------------------
// The functions of cas_update and the loaders of get_or_set

/// A scenario's `fn`: what it does with the current value.
struct Updater {
    op: String,
    arg: Vec<u8>,
    problem: Option<String>,
}

impl Updater {
    fn new(f: &Json) -> Result<Self, String> {
        let op = str_field(f, "op")?.to_string();
        if !["append", "set", "keep", "delete", "incr"].contains(&op.as_str()) {
            return Err(format!("unknown cas_update fn {f}"));
        }
        let arg = f
            .get("arg")
            .and_then(Json::as_str)
            .unwrap_or("")
            .as_bytes()
            .to_vec();
        Ok(Updater {
            op,
            arg,
            problem: None,
        })
    }

    fn apply(&mut self, cur: Option<&[u8]>) -> Update {
        match self.op.as_str() {
            "keep" => Update::Keep,
            "delete" => Update::Delete,
            "set" => Update::Set(self.arg.clone()),
            "append" => Update::Set([cur.unwrap_or_default(), &self.arg].concat()),
            _ => match cur {
                None => Update::Set(b"1".to_vec()),
                Some(c) => match std::str::from_utf8(c)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    Some(n) => Update::Set((n + 1).to_string().into_bytes()),
                    None => {
                        self.problem = Some(format!(
                            "incr fn: {:?} is not a number",
                            String::from_utf8_lossy(c)
                        ));
                        Update::Keep
                    }
                },
            },
        }
    }

    fn outcome(&self, r: Result<CasOutcome, Error>) -> Result<Outcome, String> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        Ok(r.map(|o| {
            Json::from(match o {
                CasOutcome::Stored { .. } => "stored",
                CasOutcome::Unchanged { .. } => "unchanged",
                CasOutcome::Deleted { .. } => "deleted",
            })
        })
        .map_err(Fail::from))
    }
}

/// A scenario's `loader`.
enum Loader {
    Value(Vec<u8>, Duration),
    Fail(String),
}

impl Loader {
    fn new(l: &Json) -> Result<Self, String> {
        if let Some(m) = l.get("fail") {
            return Ok(Loader::Fail(
                m.as_str().unwrap_or("loader failed").to_string(),
            ));
        }
        let v = str_field(l, "value")?.as_bytes().to_vec();
        let d = l.get("delay_ms").and_then(Json::as_u64).unwrap_or(0);
        Ok(Loader::Value(v, Duration::from_millis(d)))
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers

/// Builds a driver for the servers' addresses and the scenario's client options.
type Build<D> = fn(&[String], &Opts) -> Result<D, String>;

/// Client options of a scenario.
struct Opts {
    replicated: bool,
    policy: Policy,
    protocol: ProtocolChoice,
    timeout: Duration,
    retry: Duration,
    failure_limit: u32,
}

fn opts(sc: &Json) -> Result<Opts, String> {
    let c = sc
        .get("client")
        .cloned()
        .unwrap_or(Json::Object(Map::new()));
    let replicas = c.get("replicas").and_then(Json::as_u64).unwrap_or(1) as usize;
    let replicated = replicas > 1 || c.get("mode").and_then(Json::as_str) == Some("replicated");
    let word = |f: &str, d: &str| c.get(f).and_then(Json::as_str).unwrap_or(d).to_string();
    let policy = Policy {
        replicas,
        read: ReadPolicy::parse(&word("read_policy", "all"), replicas)
            .map_err(|e| e.to_string())?,
        write: WritePolicy::parse(&word("write_policy", "all"), replicas)
            .map_err(|e| e.to_string())?,
        ..Policy::default()
    };
    let protocol = match word("protocol", "auto").as_str() {
        "auto" => ProtocolChoice::Auto,
        "text" => ProtocolChoice::Text,
        "meta" => ProtocolChoice::Meta,
        other => return Err(format!("unknown protocol {other:?}")),
    };
    let ms = |f: &str, d: u64| Duration::from_millis(c.get(f).and_then(Json::as_u64).unwrap_or(d));
    Ok(Opts {
        replicated,
        policy,
        protocol,
        timeout: ms("timeout_ms", 1000),
        retry: ms("retry_ms", 1000),
        failure_limit: c.get("failure_limit").and_then(Json::as_u64).unwrap_or(1) as u32,
    })
}

/// One client under test: makes a call and says what came of it (`Err`: the step itself is
/// broken, e.g. a variable that was never saved).
trait Driver: Sync {
    type Lock: Send;
    fn call(
        &self,
        c: &Json,
        vars: &Vars<Self::Lock>,
        loads: &AtomicUsize,
    ) -> Result<Outcome, String>;
}

struct BlockingDriver {
    plain: blocking::Client,
    repl: Option<blocking::ReplicatedClient>,
}

impl BlockingDriver {
    fn new(addrs: &[String], o: &Opts) -> Result<Self, String> {
        let plain = blocking::Client::builder()
            .servers(addrs)
            .configure(|b| {
                b.protocol(o.protocol)
                    .timeout(o.timeout)
                    .retry_interval(o.retry)
                    .failure_limit(o.failure_limit)
            })
            .build()
            .map_err(|e| e.to_string())?;
        let repl = match o.replicated {
            true => Some(
                blocking::ReplicatedClient::new(plain.clone(), o.policy)
                    .map_err(|e| e.to_string())?,
            ),
            false => None,
        };
        Ok(BlockingDriver { plain, repl })
    }

    /// A blocking call is done when it returns.
    fn wait<T>(&self, t: T) -> T {
        t
    }

    fn get_or_set(&self, key: &[u8], ttl: u32, loader: Loader, loads: &AtomicUsize) -> Outcome {
        let load = || {
            loads.fetch_add(1, SeqCst);
            match loader {
                Loader::Value(v, d) => {
                    std::thread::sleep(d);
                    Ok(v)
                }
                Loader::Fail(m) => Err(m),
            }
        };
        let data = match &self.repl {
            Some(r) => r.get_or_set(key, ttl, FillOptions::default(), load)?.data,
            None => {
                self.plain
                    .get_or_set(key, ttl, FillOptions::default(), load)?
                    .data
            }
        };
        Ok(text(&data))
    }
}

struct AsyncDriver {
    rt: tokio::runtime::Runtime,
    plain: multiput::Client,
    repl: Option<multiput::ReplicatedClient>,
}

impl AsyncDriver {
    fn new(addrs: &[String], o: &Opts) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let guard = rt.enter(); // the async client is built inside its runtime
        let plain = multiput::Client::builder()
            .servers(addrs)
            .protocol(o.protocol)
            .timeout(o.timeout)
            .retry_interval(o.retry)
            .failure_limit(o.failure_limit)
            .build()
            .map_err(|e| e.to_string())?;
        let repl = match o.replicated {
            true => Some(
                multiput::ReplicatedClient::new(plain.clone(), o.policy)
                    .map_err(|e| e.to_string())?,
            ),
            false => None,
        };
        drop(guard);
        Ok(AsyncDriver { rt, plain, repl })
    }

    /// Drive an async call to its end on the runtime (from any number of threads at once).
    fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn get_or_set(&self, key: &[u8], ttl: u32, loader: Loader, loads: &AtomicUsize) -> Outcome {
        let load = || async move {
            loads.fetch_add(1, SeqCst);
            match loader {
                Loader::Value(v, d) => {
                    tokio::time::sleep(d).await;
                    Ok(v)
                }
                Loader::Fail(m) => Err(m),
            }
        };
        let data = match &self.repl {
            Some(r) => {
                self.wait(r.get_or_set(key, ttl, FillOptions::default(), load))?
                    .data
            }
            None => {
                self.wait(
                    self.plain
                        .get_or_set(key, ttl, FillOptions::default(), load),
                )?
                .data
            }
        };
        Ok(text(&data))
    }
}

/// Every call, written once for both drivers (`self.wait` is the identity for the blocking
/// client and `block_on` for the async one).
macro_rules! calls {
    ($driver:ty, $client:ty) => {
        impl Driver for $driver {
            type Lock = Lock<$client>;

            fn call(
                &self,
                c: &Json,
                vars: &Vars<Self::Lock>,
                loads: &AtomicUsize,
            ) -> Result<Outcome, String> {
                let name = str_field(c, "call")?;
                let key = || str_field(c, "key").map(str::as_bytes);
                let val = || value(field(c, "value")?, vars);
                let ttl = ttl_of(c)?;
                Ok(match (name, &self.repl) {
                    ("get", None) => self
                        .wait(self.plain.get(key()?))
                        .map(|v| opt_text(v.map(|v| v.data)))
                        .map_err(Fail::from),
                    ("get", Some(r)) => self
                        .wait(r.get(key()?))
                        .map(|v| opt_text(v.map(|v| v.data)))
                        .map_err(Fail::from),
                    ("set", None) => self
                        .wait(self.plain.set(key()?, val()?, ttl))
                        .map(|()| Json::Bool(true))
                        .map_err(Fail::from),
                    ("set", Some(r)) => self
                        .wait(r.set(key()?, val()?, ttl))
                        .map(|_| Json::Bool(true))
                        .map_err(Fail::from),
                    ("add", None) => self
                        .wait(self.plain.add(key()?, val()?, ttl))
                        .map(|()| Json::Bool(true))
                        .map_err(Fail::from),
                    ("add", Some(r)) => self
                        .wait(r.add_typed(key()?, ValueType::Bytes, Format::NONE, val()?, ttl))
                        .map(|_| Json::Bool(true))
                        .map_err(Fail::from),
                    ("replace", None) => self
                        .wait(self.plain.replace(key()?, val()?, ttl))
                        .map(|()| Json::Bool(true))
                        .map_err(Fail::from),
                    ("replace", Some(r)) => self
                        .wait(r.replace_typed(key()?, ValueType::Bytes, Format::NONE, val()?, ttl))
                        .map(|_| Json::Bool(true))
                        .map_err(Fail::from),
                    ("append", None) => self
                        .wait(self.plain.append(key()?, val()?))
                        .map(|()| Json::Bool(true))
                        .map_err(Fail::from),
                    ("prepend", None) => self
                        .wait(self.plain.prepend(key()?, val()?))
                        .map(|()| Json::Bool(true))
                        .map_err(Fail::from),
                    // The replicated append takes a TTL for the rewritten value; the call has none.
                    ("append" | "prepend", Some(r)) => self
                        .wait(r.append(key()?, val()?, name == "prepend", 0))
                        .map(|_| Json::Bool(true))
                        .map_err(Fail::from),
                    ("delete", None) => self
                        .wait(self.plain.delete(key()?))
                        .map(Json::Bool)
                        .map_err(Fail::from),
                    ("delete", Some(r)) => self
                        .wait(r.delete(key()?))
                        .map(|_| Json::Bool(true))
                        .map_err(Fail::from),
                    ("incr" | "decr", repl) => {
                        let initial = c.get("initial").and_then(Json::as_u64);
                        let delta = c.get("delta").and_then(Json::as_u64).unwrap_or(1);
                        let r = match repl {
                            None => self.wait(self.plain.incr_with_initial(
                                key()?,
                                name == "incr",
                                delta,
                                initial,
                                ttl,
                            )),
                            Some(r) => {
                                let d = i64::try_from(delta).map_err(|e| e.to_string())?;
                                let d = if name == "incr" { d } else { -d };
                                let opts = CasOptions {
                                    ttl,
                                    ..CasOptions::default()
                                };
                                self.wait(r.incr_with_initial(key()?, d, initial, opts))
                            }
                        };
                        r.map(opt_num).map_err(Fail::from)
                    }
                    ("touch", None) => self
                        .wait(self.plain.touch(key()?, ttl))
                        .map(Json::Bool)
                        .map_err(Fail::from),
                    ("touch", Some(r)) => self
                        .wait(r.touch(key()?, ttl))
                        .map(Json::Bool)
                        .map_err(Fail::from),
                    ("gets", None) => match self.wait(self.plain.gets(key()?)) {
                        Ok(Some(v)) => {
                            let cas = v.cas.ok_or("gets returned no CAS unique")?;
                            vars.put(str_field(c, "save")?, Var::Cas(cas));
                            Ok(text(&v.data))
                        }
                        Ok(None) => Ok(Json::Null),
                        Err(e) => Err(e.into()),
                    },
                    ("cas", None) => {
                        let cas = vars.cas(field(c, "cas")?)?;
                        self.wait(self.plain.cas(key()?, val()?, cas, ttl))
                            .map(|()| Json::Bool(true))
                            .map_err(Fail::from)
                    }
                    // Replicated gets/cas: the value's version token, and the read-modify-write
                    // machine's IfVersion rule (what blocking::Cache and every binding use).
                    ("gets", Some(r)) => match self.wait(r.get(key()?)) {
                        Ok(Some(v)) => {
                            vars.put(str_field(c, "save")?, Var::Cas(v.version_token()));
                            Ok(text(&v.data))
                        }
                        Ok(None) => Ok(Json::Null),
                        Err(e) => Err(e.into()),
                    },
                    ("cas", Some(r)) => {
                        let token = vars.cas(field(c, "cas")?)?;
                        let rule = Rule::IfVersion(
                            token,
                            ValueType::Bytes,
                            Format::NONE,
                            val()?.to_vec().into(),
                        );
                        let opts = CasOptions {
                            ttl,
                            ..CasOptions::default()
                        };
                        self.wait(r.update(key()?, rule, opts, |_| Ok(Update::Keep)))
                            .map(|_| Json::Bool(true))
                            .map_err(Fail::from)
                    }
                    ("get_multi", None) => {
                        let keys = keys_of(c)?;
                        let rs = self.wait(self.plain.get_multi(&keys));
                        hits(
                            &keys,
                            rs.into_iter()
                                .map(|r| r.map(|v| v.map(|v| v.data.to_vec())))
                                .collect(),
                        )
                    }
                    ("get_multi", Some(r)) => {
                        let keys = keys_of(c)?;
                        let rs = self.wait(r.get_multi(&keys));
                        hits(
                            &keys,
                            rs.into_iter()
                                .map(|r| r.map(|v| v.map(|v| v.data.to_vec())))
                                .collect(),
                        )
                    }
                    ("set_multi", None) => {
                        all_ok(self.wait(self.plain.set_multi(&items_of(c, vars)?, ttl)))
                    }
                    ("set_multi", Some(r)) => {
                        all_ok(self.wait(r.set_multi(&items_of(c, vars)?, ttl)))
                    }
                    ("delete_multi", None) => {
                        all_ok(self.wait(self.plain.delete_multi(&keys_of(c)?)))
                    }
                    ("delete_multi", Some(r)) => all_ok(self.wait(r.delete_multi(&keys_of(c)?))),
                    ("cas_update", repl) => {
                        let mut u = Updater::new(field(c, "fn")?)?;
                        let opts = CasOptions {
                            ttl,
                            ..CasOptions::default()
                        };
                        let r =
                            match repl {
                                None => self.wait(self.plain.cas_update(key()?, opts, |cur| {
                                    u.apply(cur.map(|v| &v.data[..]))
                                })),
                                Some(r) => self
                                    .wait(r.cas_update(key()?, opts, |cur| {
                                        u.apply(cur.map(|v| &v.data[..]))
                                    }))
                                    .map(|(o, _report)| o),
                            };
                        return u.outcome(r);
                    }
                    ("get_or_set", _) => {
                        self.get_or_set(key()?, ttl, Loader::new(field(c, "loader")?)?, loads)
                    }
                    ("lock", repl) => {
                        // Locks are never replicated: a replicated client locks with its plain client.
                        let base: &$client = match repl {
                            Some(r) => r.inner(),
                            None => &self.plain,
                        };
                        let name = str_field(c, "name")?.as_bytes();
                        let ttl = u32::try_from(u64_field(c, "ttl")?).map_err(|e| e.to_string())?;
                        let mut o =
                            LockOptions::new(ttl, Duration::from_millis(u64_field(c, "wait_ms")?));
                        if c.get("fencing").and_then(Json::as_bool) == Some(true) {
                            o = o.fencing();
                        }
                        let r = match c.get("quorum") {
                            Some(q) => {
                                let q = q.as_u64().ok_or("quorum must be a number")? as usize;
                                self.wait(base.lock_quorum(name, q, o))
                            }
                            None => self.wait(base.lock(name, o)),
                        };
                        match r {
                            Ok(l) => {
                                vars.put(str_field(c, "save")?, Var::Lock(l));
                                Ok(Json::Bool(true))
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    ("release" | "extend" | "held" | "fence", _) => {
                        let (var, mut l) = vars.take_lock(field(c, "lock")?)?;
                        let r = match name {
                            "release" => self.wait(l.release()).map(Json::Bool).map_err(Fail::from),
                            "extend" => {
                                let ttl =
                                    u32::try_from(u64_field(c, "ttl")?).map_err(|e| e.to_string());
                                match ttl {
                                    Ok(t) => {
                                        self.wait(l.extend(t)).map(Json::Bool).map_err(Fail::from)
                                    }
                                    Err(e) => {
                                        vars.put(&var, Var::Lock(l));
                                        return Err(e);
                                    }
                                }
                            }
                            "held" => Ok(Json::Bool(l.is_held())),
                            _ => Ok(opt_num(l.fence())),
                        };
                        vars.put(&var, Var::Lock(l));
                        r
                    }
                    (other, _) => return Err(format!("unknown call {other:?}")),
                })
            }
        }
    };
}

calls!(BlockingDriver, blocking::Client);
calls!(AsyncDriver, multiput::Client);

// ---------------------------------------------------------------------------------------------
// Running scenarios

fn describe(st: &Json) -> String {
    if let Some(n) = st.get("parallel") {
        return format!("parallel {n} x {}", describe(&st["call"]));
    }
    if let Some(r) = st.get("raw") {
        return format!(
            "raw {} {} on server {}",
            r.as_str().unwrap_or("?"),
            st["key"],
            st["server"]
        );
    }
    if let Some(f) = st.get("fault") {
        return format!(
            "fault {} on server {}",
            f.as_str().unwrap_or("?"),
            st["server"]
        );
    }
    if let Some(ms) = st.get("sleep_ms") {
        return format!("sleep {ms} ms");
    }
    let mut args = st.as_object().cloned().unwrap_or_default();
    args.remove("call");
    args.remove("expect");
    for v in args.values_mut() {
        if let Some(s) = v.as_str().filter(|s| s.len() > 40) {
            *v = Json::from(format!("{}...({} bytes)", &s[..20], s.len()));
        }
    }
    format!(
        "{} {}",
        st["call"].as_str().unwrap_or("?"),
        Json::Object(args)
    )
}

fn raw_step<L>(servers: &[Memcached], vars: &Vars<L>, st: &Json) -> Result<(), String> {
    let i = u64_field(st, "server")? as usize;
    let srv = servers
        .get(i)
        .ok_or_else(|| format!("there is no server {i}"))?;
    let key = str_field(st, "key")?;
    match str_field(st, "raw")? {
        "get" => {
            let got = raw_get(&srv.addr(), key).map(|(_flags, data)| data);
            if let Some(save) = st.get("save").and_then(Json::as_str) {
                vars.put(save, Var::Bytes(got.clone()));
            }
            if let Some(expect) = st.get("expect") {
                let want = match field(expect, "result")? {
                    Json::Null => None,
                    w @ Json::String(s) if s.starts_with('$') => vars.bytes(w)?,
                    Json::String(s) => Some(s.as_bytes().to_vec()),
                    other => return Err(format!("raw get cannot expect {other}")),
                };
                if got != want {
                    let show = |b: &Option<Vec<u8>>| match b {
                        None => "null (a miss)".to_string(),
                        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
                    };
                    return Err(format!("expected {}, got {}", show(&want), show(&got)));
                }
            }
            Ok(())
        }
        "set" => {
            let data = value(field(st, "value")?, vars)?;
            let flags = st.get("flags").and_then(Json::as_u64).unwrap_or(0) as u32;
            raw_set(&srv.addr(), key, flags, &data);
            Ok(())
        }
        "delete" => {
            let reply = try_raw_command(
                &srv.addr(),
                format!("delete {key}\r\n").as_bytes(),
                b"\r\n",
                RAW_TIMEOUT,
            )
            .map_err(|e| format!("raw delete: {e}"))?;
            match &reply[..] {
                b"DELETED\r\n" | b"NOT_FOUND\r\n" => Ok(()),
                other => Err(format!("raw delete: {:?}", String::from_utf8_lossy(other))),
            }
        }
        other => Err(format!("unknown raw access {other:?}")),
    }
}

fn parallel_step<D: Driver>(d: &D, vars: &Vars<D::Lock>, st: &Json) -> Result<(), String> {
    let n = u64_field(st, "parallel")? as usize;
    let call = field(st, "call")?;
    let loads = AtomicUsize::new(0);
    let barrier = Barrier::new(n);
    let results: Vec<Result<Outcome, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    d.call(call, vars, &loads)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|p| Err(format!("the caller panicked: {}", panic_text(&p))))
            })
            .collect()
    });
    // Callers that failed the same way are reported once: "callers [0, 3] of 20: why".
    let mut failed: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        if let Err(why) = r.and_then(|o| check(st.get("expect_each"), &o, vars)) {
            match failed.iter_mut().find(|(w, _)| *w == why) {
                Some((_, who)) => who.push(i),
                None => failed.push((why, vec![i])),
            }
        }
    }
    let mut problems: Vec<String> = failed
        .into_iter()
        .map(|(why, who)| format!("callers {who:?} of {n}: {why}"))
        .collect();
    if let Some(want) = st.get("loads").and_then(Json::as_u64) {
        let got = loads.load(SeqCst) as u64;
        if got != want {
            problems.push(format!("expected {want} loader call(s) in all, got {got}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn step<D: Driver>(
    d: &D,
    servers: &[Memcached],
    vars: &Vars<D::Lock>,
    st: &Json,
) -> Result<(), String> {
    if let Some(f) = st.get("fault") {
        let i = u64_field(st, "server")? as usize;
        let srv = servers
            .get(i)
            .ok_or_else(|| format!("there is no server {i}"))?;
        match f.as_str().unwrap_or("") {
            "kill" => srv.kill(),
            "stop" => srv.stop(),
            "cont" => srv.cont(),
            "restart" => srv.restart(),
            other => return Err(format!("unknown fault {other:?}")),
        }
        return Ok(());
    }
    if let Some(ms) = st.get("sleep_ms") {
        std::thread::sleep(Duration::from_millis(
            ms.as_u64().ok_or("sleep_ms must be a number")?,
        ));
        return Ok(());
    }
    if st.get("raw").is_some() {
        return raw_step(servers, vars, st);
    }
    if st.get("parallel").is_some() {
        return parallel_step(d, vars, st);
    }
    let loads = AtomicUsize::new(0);
    let got = d.call(st, vars, &loads)?;
    check(st.get("expect"), &got, vars)
}

/// `Ok(())` when every step met its expectation, else the first failure, described.
fn run_scenario<D: Driver>(sc: &Json, build: Build<D>) -> Result<(), String> {
    let n = u64_field(sc, "servers")? as usize;
    let o = opts(sc)?;
    let servers = cluster(n);
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let driver = build(&addrs, &o).map_err(|e| format!("cannot build the client: {e}"))?;
    let vars = Vars::new();
    let steps = field(sc, "steps")?
        .as_array()
        .ok_or("steps must be an array")?;
    let mut result = Ok(());
    for (i, st) in steps.iter().enumerate() {
        if let Err(why) = step(&driver, &servers, &vars, st) {
            result = Err(format!("step {i} ({}): {why}", describe(st)));
            break;
        }
    }
    for s in &servers {
        if s.is_stopped() {
            s.cont();
        }
    }
    // Locks go first (a blocking lock releases itself when dropped), then the client, then
    // the servers.
    vars.clear();
    drop(driver);
    drop(servers);
    result
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Run every scenario with one driver and apply the known-gaps rule; panic listing every
/// problem.
fn run_all<D: Driver>(label: &str, build: Build<D>) {
    let scenarios = load_scenarios();
    let gaps = load_gaps();
    let filter = std::env::var("MULTIPUT_CONFORMANCE_FILTER").unwrap_or_default();
    let mut problems = Vec::new();
    let mut known = Vec::new();
    let mut passed = 0;
    for (file, sc) in &scenarios {
        let name = name_of(sc);
        if !name.contains(filter.as_str()) {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| run_scenario(sc, build)))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        let listed = gaps.iter().any(|g| g == name);
        match (listed, result) {
            (false, Ok(())) => passed += 1,
            (false, Err(why)) => problems.push(format!("{file}: {name:?} failed at {why}")),
            (true, Ok(())) => problems.push(format!(
                "{file}: {name:?} passes now: remove it from known-gaps.json[\"{LANG}\"]"
            )),
            (true, Err(why)) => known.push(format!("{file}: {name:?}: {why}")),
        }
    }
    eprintln!(
        "[{label}] {passed} scenario(s) passed, {} known gap(s) failed as listed:",
        known.len()
    );
    for k in &known {
        eprintln!("[{label}]   known gap: {k}");
    }
    assert!(
        problems.is_empty(),
        "[{label}] {} conformance problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn scenario_names_are_unique_and_gaps_name_real_scenarios() {
    let scenarios = load_scenarios();
    let names: Vec<&str> = scenarios.iter().map(|(_, s)| name_of(s)).collect();
    let mut dupes: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| names.iter().filter(|m| *m == n).count() > 1)
        .collect();
    dupes.sort();
    dupes.dedup();
    assert!(
        dupes.is_empty(),
        "scenario names used more than once: {dupes:?}"
    );
    let unknown: Vec<String> = load_gaps()
        .into_iter()
        .filter(|g| !names.contains(&g.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "known-gaps.json lists {unknown:?} under {LANG:?}, which no scenario is called"
    );
}

#[test]
fn blocking_client() {
    run_all::<BlockingDriver>("blocking", BlockingDriver::new);
}

#[test]
fn async_client() {
    run_all::<AsyncDriver>("async", AsyncDriver::new);
}
