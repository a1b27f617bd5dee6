//! `multiput._native`: the pyo3 extension behind the `multiput` Python package.
//!
//! It wraps `multiput::blocking::Client` (plain mode) and `multiput::blocking::ReplicatedClient`
//! (replicated mode, values in the envelope) and only translates: Python values to typed
//! values (the rules are in `multiput::values` and `multiput::envelope`), core errors to the
//! exception classes of `multiput.exceptions`, and pymemcache's call conventions. Every
//! network wait runs with the GIL released (`Python::detach`); a panic in the core becomes a
//! `MultiputError`, never a crash.

use multiput::blocking;
use multiput::blocking::{Got, Payload};
use multiput::compress;
use multiput::envelope::{Format, Typed, ValueType};
use multiput::recipes::{CasOptions, CasOutcome, FillOptions, Fresh, LockOptions, Update};
use multiput::setup::Setup;
use multiput::values::{self, Convention, Family, TypedRef};
use multiput::{Error, ErrorKind, ReadPolicy, RingMode, Value, Versioned, WritePolicy};
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod args;
mod codec;
mod errors;
mod lock;

use args::*;
use codec::*;
use errors::*;
use lock::*;

// ---------------------------------------------------------------------------------------------
// Sentinels

/// A marker returned by a `cas_update` function: `KEEP` leaves the key as it is, `DELETE`
/// deletes it.
#[pyclass(module = "multiput._native", name = "Sentinel", frozen)]
struct Sentinel {
    name: &'static str,
}

#[pymethods]
impl Sentinel {
    fn __repr__(&self) -> String {
        format!("multiput.{}", self.name)
    }
}

static KEEP: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();
static DELETE: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();

fn sentinel<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<Sentinel>>,
    name: &'static str,
) -> PyResult<&'py Bound<'py, Sentinel>> {
    Ok(cell
        .get_or_try_init(py, || Py::new(py, Sentinel { name }))?
        .bind(py))
}

// ---------------------------------------------------------------------------------------------
// The client

/// A memcached client for a fleet of servers, with optional replication.
///
/// See the `multiput` package documentation (and `multiput/__init__.pyi`) for every argument.
#[pyclass(module = "multiput._native", name = "Client", subclass, frozen)]
pub struct Client {
    /// Plain or replicated behind one API: the core decides per call, this binding translates.
    cache: blocking::Cache,
    codec: Codec,
    servers: Vec<String>,
    /// pymemcache's `ignore_exc`: get/gets/get_many/gets_many answer a failed read as a miss.
    ignore_exc: bool,
}

impl Client {
    /// A value read, as Python: plain by its flags (or the caller's serde), replicated by the
    /// type in its envelope.
    fn got<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        g: Got,
    ) -> PyResult<Bound<'py, PyAny>> {
        match g {
            Got::Plain(v) => self.codec.value_for(py, key, &v),
            Got::Replicated(v) => self.codec.versioned(py, &v),
        }
    }

    /// A failed read: `Ok(())` to answer it as a miss (`ignore_exc`, and not a bad key, which
    /// is the caller's mistake), else the Python exception.
    fn read_failed(&self, py: Python<'_>, e: &Error) -> PyResult<()> {
        if self.ignore_exc && e.kind() != ErrorKind::InvalidKey {
            Ok(())
        } else {
            Err(py_err(py, e))
        }
    }

    fn check_keys<K: AsRef<[u8]>>(&self, py: Python<'_>, keys: &[K]) -> PyResult<()> {
        let cl = self.cache.plain().cluster();
        for k in keys {
            cl.check_key(k.as_ref()).map_err(|e| py_err(py, &e))?;
        }
        Ok(())
    }

    /// A conditional store: `True` stored, `False` refused (replicated keys follow the same
    /// conditions, serialized by the core through CAS on the key's primary replica).
    #[allow(clippy::too_many_arguments)]
    fn store_bool(
        &self,
        py: Python<'_>,
        what: &str,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        flags: Option<u32>,
        mode: multiput::StoreMode,
    ) -> PyResult<bool> {
        let k = key_bytes(key)?;
        let enc = self.codec.encode_for(py, key, value)?;
        let ttl = ttl_of(expire)?;
        let p = enc.payload(flags);
        match nogil(py, || self.cache.store(mode, &k, &p, ttl))? {
            Ok(_) => Ok(true),
            Err(Error::NotStored) => Ok(false),
            Err(Error::Unsupported { .. }) if flags.is_some() => {
                Err(not_supported(py, &format!("{what}(flags=...)")))
            }
            Err(e) => Err(py_err(py, &e)),
        }
    }

    /// The keys as given (for result dicts), and their bytes back to back in one buffer
    /// (`Keys::list`): no allocation per key.
    fn collect_keys<'py>(keys: &Bound<'py, PyAny>) -> PyResult<(Vec<Bound<'py, PyAny>>, Keys)> {
        let mut objs = Vec::new();
        let mut raw = Keys::default();
        for k in keys.try_iter()? {
            let k = k?;
            raw.push(&k)?;
            objs.push(k);
        }
        Ok((objs, raw))
    }
}

/// Many keys' bytes in one buffer.
#[derive(Default)]
struct Keys {
    all: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn push(&mut self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        args::append_key(&mut self.all, key)?;
        self.ends.push(self.all.len());
        Ok(())
    }

    /// Each key's bytes, in order.
    fn list(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&e| {
                let k = &self.all[start..e];
                start = e;
                k
            })
            .collect()
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        servers,
        replicas = 1,
        *,
        write_policy = None,
        read_policy = None,
        failover = false,
        tombstone_ttl = 86_400,
        read_repair = true,
        envelope = None,
        connect_timeout = 1.0,
        timeout = 1.0,
        retry_interval = 1.0,
        failure_limit = 1,
        key_prefix = None,
        ring = "libketama_compatible",
        protocol = "auto",
        max_value_size = 1_048_576,
        pool_size = 16,
        tcp_nodelay = true,
        binary_keys = false,
        convention = "multiput",
        pickle_protocol = None,
        serde = None,
        serializer = None,
        deserializer = None,
        no_delay = None,
        default_noreply = None,
        allow_unicode_keys = None,
        ignore_exc = false,
        tls = false,
        tls_ca = None,
        tls_cert = None,
        tls_key = None,
        tls_server_name = None,
        tls_servers = None,
        username = None,
        password = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        servers: &Bound<'_, PyAny>,
        replicas: usize,
        write_policy: Option<&Bound<'_, PyAny>>,
        read_policy: Option<&Bound<'_, PyAny>>,
        failover: bool,
        tombstone_ttl: u32,
        read_repair: bool,
        envelope: Option<bool>,
        connect_timeout: Option<f64>,
        timeout: Option<f64>,
        retry_interval: f64,
        failure_limit: u32,
        key_prefix: Option<&Bound<'_, PyAny>>,
        ring: &str,
        protocol: &str,
        max_value_size: usize,
        pool_size: usize,
        tcp_nodelay: bool,
        binary_keys: bool,
        convention: &str,
        pickle_protocol: Option<i32>,
        serde: Option<&Bound<'_, PyAny>>,
        serializer: Option<&Bound<'_, PyAny>>,
        deserializer: Option<&Bound<'_, PyAny>>,
        no_delay: Option<bool>,
        default_noreply: Option<bool>,
        allow_unicode_keys: Option<bool>,
        ignore_exc: bool,
        tls: bool,
        tls_ca: Option<String>,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        tls_server_name: Option<String>,
        tls_servers: Option<&Bound<'_, PyAny>>,
        username: Option<String>,
        password: Option<String>,
    ) -> PyResult<Self> {
        // pymemcache arguments with nothing to configure here: replies are always read, and
        // str keys are always UTF-8.
        let _ = (default_noreply, allow_unicode_keys);
        let tcp_nodelay = no_delay.unwrap_or(tcp_nodelay);
        let config_err = |e: Error| py_err(py, &e);
        let servers = parse_servers(servers)?;
        // The options are the core's (`multiput::setup`): this only names them and writes
        // Python's values (seconds, objects) as its text.
        let mut setup = Setup::new(Family::Python);
        let secs = |name: &str, v: f64| -> PyResult<String> {
            if !(v.is_finite() && v >= 0.0) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be a positive number of seconds"
                )));
            }
            Ok(format!("{}", v * 1000.0))
        };
        let mut options: Vec<(&str, String)> = vec![
            ("servers", servers.join(",")),
            ("ring", ring.to_string()),
            ("protocol", protocol.to_string()),
            // pymemcache's None ("wait forever") keeps the default: a call never waits unbounded.
            (
                "connect_timeout_ms",
                secs("connect_timeout", connect_timeout.unwrap_or(1.0))?,
            ),
            ("timeout_ms", secs("timeout", timeout.unwrap_or(1.0))?),
            ("retry_ms", secs("retry_interval", retry_interval)?),
            ("failure_limit", failure_limit.to_string()),
            ("max_value_size", max_value_size.to_string()),
            ("pool_size", pool_size.to_string()),
            ("tcp_nodelay", tcp_nodelay.to_string()),
            ("binary_keys", binary_keys.to_string()),
            ("convention", convention.to_string()),
            ("replicas", replicas.to_string()),
            ("tombstone_ttl", tombstone_ttl.to_string()),
            ("failover", failover.to_string()),
            ("read_repair", read_repair.to_string()),
        ];
        if let Some(e) = envelope {
            options.push(("mode", if e { "replicated" } else { "plain" }.into()));
        }
        if tls {
            options.push(("tls", "true".into()));
        }
        if let Some(t) = tls_servers.filter(|t| !t.is_none()) {
            options.push(("tls_servers", parse_servers(t)?.join(",")));
        }
        for (name, v) in [
            ("tls_ca", tls_ca),
            ("tls_cert", tls_cert),
            ("tls_key", tls_key),
            ("tls_server_name", tls_server_name),
            ("username", username),
            ("password", password),
        ] {
            if let Some(v) = v {
                options.push((name, v));
            }
        }
        if let Some(w) = write_policy {
            options.push(("write", policy_text(w)?));
        }
        if let Some(r) = read_policy {
            options.push(("read", policy_text(r)?));
        }
        for (name, value) in &options {
            setup.set(name, value).map_err(config_err)?;
        }
        if let Some(p) = key_prefix.filter(|p| !p.is_none()) {
            setup.key_prefix(&key_bytes(p)?);
        }
        let built = setup.build().map_err(config_err)?;
        let serde = serde.filter(|s| !s.is_none());
        let serializer = serializer.filter(|s| !s.is_none());
        let deserializer = deserializer.filter(|s| !s.is_none());
        let serde = match (serde, serializer, deserializer) {
            (None, None, None) => None,
            (Some(s), None, None) => Some(Arc::new(Serde {
                serialize: Some(s.getattr("serialize")?.unbind()),
                deserialize: Some(s.getattr("deserialize")?.unbind()),
            })),
            (None, ser, de) => Some(Arc::new(Serde {
                serialize: ser.map(|f| f.clone().unbind()),
                deserialize: de.map(|f| f.clone().unbind()),
            })),
            (Some(_), _, _) => {
                return Err(named_error(
                    py,
                    "ConfigError",
                    "pass serde or serializer/deserializer, not both".into(),
                ))
            }
        };
        let convention = built.convention;
        let plain = blocking::Client::from_config(built.config).map_err(config_err)?;
        let repl = built
            .policy
            .map(|p| blocking::ReplicatedClient::new(plain.clone(), p))
            .transpose()
            .map_err(config_err)?;
        if serde.is_some() && repl.is_some() {
            return Err(named_error(
                py,
                "ConfigError",
                "serde needs plain mode: replicated values carry their own type in the envelope"
                    .into(),
            ));
        }
        let pickle_protocol = match pickle_protocol {
            Some(p) => p,
            None => PyModule::import(py, "pickle")?
                .getattr("HIGHEST_PROTOCOL")?
                .extract()?,
        };
        let cache = blocking::Cache::new(plain, None)
            .map_err(config_err)?
            .with_replicated(repl);
        Ok(Client {
            cache,
            codec: Codec {
                convention,
                pickle_protocol,
                serde,
            },
            servers,
            ignore_exc,
        })
    }

    /// The servers, as `host:port[:weight]` strings, in configuration order.
    #[getter]
    fn servers(&self) -> Vec<String> {
        self.servers.clone()
    }

    /// Copies per key (1 without replication).
    #[getter]
    fn replicas(&self) -> usize {
        self.cache.policy().map_or(1, |p| p.replicas)
    }

    /// True when values are written in the replication envelope.
    #[getter]
    fn enveloped(&self) -> bool {
        self.cache.policy().is_some()
    }

    /// The replication policy as a dict (`None` in plain mode).
    #[getter]
    fn policy<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(p) = self.cache.policy() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("replicas", p.replicas)?;
        d.set_item("write_policy", p.write.to_string())?;
        d.set_item("read_policy", p.read.to_string())?;
        d.set_item("tombstone_ttl", p.tombstone_ttl)?;
        d.set_item("failover", p.failover)?;
        d.set_item("read_repair", p.read_repair)?;
        Ok(Some(d))
    }

    /// The same client (connections, clock, writer id) with other read and/or write policies,
    /// for calls that need them: `mc.with_policy(read_policy="first_hit").get(k)`. Replica
    /// count and placement are unchanged. Replicated clients only.
    #[pyo3(signature = (read_policy = None, write_policy = None))]
    fn with_policy(
        &self,
        py: Python<'_>,
        read_policy: Option<&Bound<'_, PyAny>>,
        write_policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Client> {
        // (the replica count the policies are parsed against; a plain client is refused by
        // the core below)
        let n = self.cache.policy().map_or(1, |p| p.replicas);
        let read = read_policy
            .map(|o| parse_read_policy(Some(o), n))
            .transpose()?;
        let write = write_policy
            .map(|o| parse_write_policy(Some(o), n))
            .transpose()?;
        let cache = self
            .cache
            .with_policies(read, write)
            .map_err(|e| py_err(py, &e))?;
        Ok(Client {
            cache,
            codec: self.codec.clone(),
            servers: self.servers.clone(),
            ignore_exc: self.ignore_exc,
        })
    }

    /// `"multiput"`, `"python"` or `"php"`: whose flag numbers plain values are written with.
    #[getter]
    fn convention(&self) -> &'static str {
        self.codec.convention.as_str()
    }

    /// The ring mode: `"libketama_compatible"`, `"ketama_md5"`, `"modula"` or `"rendezvous"`.
    #[getter]
    fn ring(&self) -> &'static str {
        self.cache.plain().cluster().ring().mode().as_str()
    }

    fn __repr__(&self) -> String {
        format!(
            "multiput.Client({:?}, replicas={}, enveloped={})",
            self.servers,
            self.replicas(),
            if self.enveloped() { "True" } else { "False" }
        )
    }

    /// Get a value; `default` on a miss.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        let missing = |d: Option<Bound<'py, PyAny>>| d.unwrap_or_else(|| py.None().into_bound(py));
        match nogil(py, || self.cache.get(&k))? {
            Ok(Some(g)) => self.got(py, key, g),
            Ok(None) => Ok(missing(default)),
            Err(e) => self.read_failed(py, &e).map(|()| missing(default)),
        }
    }

    /// Get a value and its CAS unique (replicated: its version token): `(value, cas)`, or
    /// `(default, cas_default)` on a miss.
    #[pyo3(signature = (key, default = None, cas_default = None))]
    fn gets<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
        cas_default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let k = key_bytes(key)?;
        let none = || py.None().into_bound(py);
        match nogil(py, || self.cache.gets(&k))? {
            Ok(Some((g, cas))) => {
                let value = self.got(py, key, g)?;
                PyTuple::new(py, [value, cas.into_bound_py_any(py)?])
            }
            Ok(None) => PyTuple::new(
                py,
                [
                    default.unwrap_or_else(none),
                    cas_default.unwrap_or_else(none),
                ],
            ),
            Err(e) => {
                self.read_failed(py, &e)?;
                PyTuple::new(
                    py,
                    [
                        default.unwrap_or_else(none),
                        cas_default.unwrap_or_else(none),
                    ],
                )
            }
        }
    }

    /// Get a value and give it a new expiry (`gat`); `default` on a miss.
    #[pyo3(signature = (key, expire = None, default = None))]
    fn gat<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        let ttl = ttl_of(expire)?;
        match nogil(py, || self.cache.gat(&k, ttl))? {
            Ok(Some(g)) => self.got(py, key, g),
            Ok(None) => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
            Err(e) => Err(py_err(py, &e)),
        }
    }

    /// Store a value. Returns True; a value that was not stored raises.
    #[pyo3(signature = (key, value, expire = None, noreply = None, flags = None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let k = key_bytes(key)?;
        let enc = self.codec.encode_for(py, key, value)?;
        let ttl = ttl_of(expire)?;
        let p = enc.payload(flags);
        match nogil(py, || self.cache.set(&k, &p, ttl))? {
            Ok(_) => Ok(true),
            Err(Error::Unsupported { .. }) if flags.is_some() => {
                Err(not_supported(py, "set(flags=...)"))
            }
            Err(e) => Err(py_err(py, &e)),
        }
    }

    /// Store only if the key is missing: True if stored, False if it exists.
    #[pyo3(signature = (key, value, expire = None, noreply = None, flags = None))]
    fn add(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<bool> {
        let _ = noreply;
        self.store_bool(
            py,
            "add",
            key,
            value,
            expire,
            flags,
            multiput::StoreMode::Add,
        )
    }

    /// Store only if the key exists: True if stored, False if it is missing.
    #[pyo3(signature = (key, value, expire = None, noreply = None, flags = None))]
    fn replace(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<bool> {
        let _ = noreply;
        self.store_bool(
            py,
            "replace",
            key,
            value,
            expire,
            flags,
            multiput::StoreMode::Replace,
        )
    }

    /// Append bytes to an existing value: True if stored, False if the key is missing.
    #[pyo3(signature = (key, value, expire = None, noreply = None, flags = None))]
    fn append(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<bool> {
        let _ = (noreply, expire);
        self.store_bool(
            py,
            "append",
            key,
            value,
            None,
            flags,
            multiput::StoreMode::Append,
        )
    }

    /// Prepend bytes to an existing value: True if stored, False if the key is missing.
    #[pyo3(signature = (key, value, expire = None, noreply = None, flags = None))]
    fn prepend(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<bool> {
        let _ = (noreply, expire);
        self.store_bool(
            py,
            "prepend",
            key,
            value,
            None,
            flags,
            multiput::StoreMode::Prepend,
        )
    }

    /// Compare-and-swap: True stored, False if the value changed since `gets` (CAS
    /// conflict), None if the key is gone.
    #[pyo3(signature = (key, value, cas, expire = None, noreply = None, flags = None))]
    #[allow(clippy::too_many_arguments)]
    fn cas(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        cas: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<Option<bool>> {
        let _ = noreply;
        let cas = cas_unique(cas)?;
        let k = key_bytes(key)?;
        let enc = self.codec.encode_for(py, key, value)?;
        let (ttl, p) = (ttl_of(expire)?, enc.payload(flags));
        match nogil(py, || self.cache.cas(&k, &p, cas, ttl))? {
            Ok(_) => Ok(Some(true)),
            Err(Error::Exists) => Ok(Some(false)),
            Err(Error::NotFound) => Ok(None),
            Err(Error::Unsupported { .. }) if flags.is_some() => {
                Err(not_supported(py, "cas(flags=...)"))
            }
            Err(e) => Err(py_err(py, &e)),
        }
    }

    /// Delete a key: True if it existed. Replicated: writes a tombstone on every replica and
    /// returns True once the write policy is met (it cannot tell whether the key existed).
    #[pyo3(signature = (key, noreply = None))]
    fn delete(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let k = key_bytes(key)?;
        nogil(py, || self.cache.delete(&k))?
            .map(|(existed, _)| existed)
            .map_err(|e| py_err(py, &e))
    }

    /// Increment a counter: the new value, or None if the key is missing (with `initial`, a
    /// missing counter is created at `initial`, stored with `expire`, and `initial` returned).
    /// Replicated: an exact counter serialized by CAS on the key's primary replica.
    #[pyo3(signature = (key, value = Delta::Omitted, noreply = None, *, initial = None, expire = None))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Delta<'_>,
        noreply: Option<bool>,
        initial: Option<u64>,
        expire: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        let delta = value.amount(py)?;
        self.arith(py, key, delta, true, initial, ttl_of(expire)?)
    }

    /// Decrement a counter (stops at 0): the new value, or None if the key is missing.
    #[pyo3(signature = (key, value = Delta::Omitted, noreply = None, *, initial = None, expire = None))]
    fn decr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Delta<'_>,
        noreply: Option<bool>,
        initial: Option<u64>,
        expire: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        let delta = value.amount(py)?;
        self.arith(py, key, delta, false, initial, ttl_of(expire)?)
    }

    /// Give a key a new expiry: True if it existed.
    #[pyo3(signature = (key, expire = None, noreply = None))]
    fn touch(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let k = key_bytes(key)?;
        let ttl = ttl_of(expire)?;
        nogil(py, || self.cache.touch(&k, ttl))?.map_err(|e| py_err(py, &e))
    }

    /// Get many keys at once (one request per server, all servers in parallel): a dict of the
    /// hits, keyed as given. Any key's error is raised (invalid keys before any I/O).
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (objs, keys) = Self::collect_keys(keys)?;
        let raw = keys.list();
        self.check_keys(py, &raw)?;
        let out = PyDict::new(py);
        if raw.is_empty() {
            return Ok(out);
        }
        let rs = nogil(py, || self.cache.get_multi(&raw))?;
        for (k, r) in objs.iter().zip(rs) {
            match r {
                Ok(Some(g)) => out.set_item(k, self.got(py, k, g)?)?,
                Ok(None) => {}
                Err(e) => self.read_failed(py, &e)?,
            }
        }
        Ok(out)
    }

    /// `get_many` with CAS uniques: a dict of key -> (value, cas).
    fn gets_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (objs, keys) = Self::collect_keys(keys)?;
        let raw = keys.list();
        self.check_keys(py, &raw)?;
        let out = PyDict::new(py);
        if raw.is_empty() {
            return Ok(out);
        }
        let rs = nogil(py, || self.cache.gets_multi(&raw))?;
        for (k, r) in objs.iter().zip(rs) {
            match r {
                Ok(Some((g, cas))) => out.set_item(k, (self.got(py, k, g)?, cas))?,
                Ok(None) => {}
                Err(e) => self.read_failed(py, &e)?,
            }
        }
        Ok(out)
    }

    /// Store many values (pipelined per server, all servers in parallel). Returns the list of
    /// keys that were not stored (empty when all were). Invalid keys raise before any I/O.
    #[pyo3(signature = (values, expire = None, noreply = None, flags = None))]
    fn set_many<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<Bound<'py, PyList>> {
        let _ = noreply;
        let items = match values.cast::<PyDict>() {
            Ok(d) => d.items().into_any(),
            Err(_) => values.clone(),
        };
        let mut objs = Vec::new();
        let mut raw = Vec::new();
        let mut encoded = Vec::new();
        for item in items.try_iter()? {
            let item = item?;
            let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item.extract()?;
            raw.push(key_bytes(&k)?);
            encoded.push(self.codec.encode_for(py, &k, &v)?);
            objs.push(k);
        }
        self.check_keys(py, &raw)?;
        let ttl = ttl_of(expire)?;
        let failed = PyList::empty(py);
        if raw.is_empty() {
            return Ok(failed);
        }
        let items: Vec<(&[u8], Payload<'_>)> = raw
            .iter()
            .zip(&encoded)
            .map(|(k, e)| (&k[..], e.payload(flags)))
            .collect();
        let results = nogil(py, || self.cache.set_multi(&items, ttl))?;
        for (k, r) in objs.iter().zip(results) {
            if r.is_err() {
                failed.append(k)?;
            }
        }
        Ok(failed)
    }

    /// Delete many keys (pipelined per server). Returns True. Server errors raise.
    #[pyo3(signature = (keys, noreply = None))]
    fn delete_many(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let (_, keys) = Self::collect_keys(keys)?;
        let raw = keys.list();
        self.check_keys(py, &raw)?;
        if raw.is_empty() {
            return Ok(true);
        }
        for r in nogil(py, || self.cache.delete_multi(&raw))? {
            r.map_err(|e| py_err(py, &e))?;
        }
        Ok(true)
    }

    /// `client[key]`: the value, or KeyError on a miss (pymemcache's dict protocol).
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let missing = PyList::empty(py).into_any();
        let v = self.get(py, key, Some(missing.clone()))?;
        if v.is(&missing) {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        }
        Ok(v)
    }

    /// `client[key] = value`: `set`.
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set(py, key, value, None, None, None).map(drop)
    }

    /// `del client[key]`: `delete` (no KeyError for a missing key, as pymemcache).
    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.delete(py, key, None).map(drop)
    }

    /// Alias of `get_many` (pymemcache, pylibmc, python-memcached).
    fn get_multi<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.get_many(py, keys)
    }

    /// Alias of `gets_many` (pymemcache's `HashClient`).
    fn gets_multi<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.gets_many(py, keys)
    }

    /// Alias of `set_many` (pymemcache, pylibmc, python-memcached).
    #[pyo3(signature = (values, expire = None, noreply = None, flags = None))]
    fn set_multi<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        noreply: Option<bool>,
        flags: Option<u32>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.set_many(py, values, expire, noreply, flags)
    }

    /// Alias of `delete_many` (pymemcache, pylibmc, python-memcached).
    #[pyo3(signature = (keys, noreply = None))]
    fn delete_multi(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        self.delete_many(py, keys, noreply)
    }

    /// `flush_all [delay]` on every server. Returns True; a server's error raises.
    #[pyo3(signature = (delay = 0, noreply = None))]
    fn flush_all(&self, py: Python<'_>, delay: u32, noreply: Option<bool>) -> PyResult<bool> {
        let _ = noreply;
        let delay = (delay > 0).then_some(delay);
        every_server_ok(py, nogil(py, || self.cache.plain().flush_all(delay))?)
    }

    /// `cache_memlimit <memlimit>` (megabytes) on every server: memcached's memory limit,
    /// changed at run time. Returns True; a server's error raises.
    #[pyo3(signature = (memlimit))]
    fn cache_memlimit(&self, py: Python<'_>, memlimit: u32) -> PyResult<bool> {
        every_server_ok(
            py,
            nogil(py, || self.cache.plain().cache_memlimit(memlimit))?,
        )
    }

    /// pymemcache's `check_key`: the key as it goes on the wire (prefix included, bytes), or
    /// `InvalidKeyError` for a key memcached would refuse.
    fn check_key<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = key_bytes(key)?;
        let cl = self.cache.plain().cluster();
        cl.check_key(&k).map_err(|e| py_err(py, &e))?;
        let mut wire = cl.config().key_prefix.clone();
        wire.extend_from_slice(&k);
        Ok(PyBytes::new(py, &wire))
    }

    /// `stats [group]` of every server: `{"host:port": {name: value}}`, numbers converted to
    /// int or float. A server's error raises.
    #[pyo3(signature = (*args))]
    fn stats<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let args: Vec<String> = args.extract()?;
        let group = if args.is_empty() {
            None
        } else {
            Some(args.join(" "))
        };
        let rs = nogil(py, || self.cache.plain().stats(group.as_deref()))?;
        let out = PyDict::new(py);
        for (server, r) in rs {
            let d = PyDict::new(py);
            for (name, value) in r.map_err(|e| py_err(py, &e))? {
                let v = if let Ok(i) = value.parse::<i64>() {
                    i.into_bound_py_any(py)?
                } else if let Ok(u) = value.parse::<u64>() {
                    u.into_bound_py_any(py)?
                } else if let (true, Ok(f)) = (
                    value.contains('.')
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-'),
                    value.parse::<f64>(),
                ) {
                    f.into_bound_py_any(py)?
                } else {
                    PyString::new(py, &value).into_any()
                };
                d.set_item(name, v)?;
            }
            out.set_item(server, d)?;
        }
        Ok(out)
    }

    /// pylibmc's `get_stats([group])`: `[(b"host:port (index)", {name: b"value"})]`, values
    /// the bytes memcached sent (as pylibmc returns them). A server's error raises.
    #[pyo3(signature = (group = None))]
    fn get_stats<'py>(&self, py: Python<'py>, group: Option<&str>) -> PyResult<Bound<'py, PyList>> {
        let rs = nogil(py, || self.cache.plain().stats(group))?;
        let out = PyList::empty(py);
        for (i, (server, r)) in rs.into_iter().enumerate() {
            let d = PyDict::new(py);
            for (name, value) in r.map_err(|e| py_err(py, &e))? {
                d.set_item(name, PyBytes::new(py, value.as_bytes()))?;
            }
            let name = format!("{server} ({i})");
            out.append((PyBytes::new(py, name.as_bytes()), d))?;
        }
        Ok(out)
    }

    /// pylibmc's `add_multi(mapping, time=0, key_prefix=None)`: `add` each item; the keys that
    /// were not stored (they existed), as a list.
    #[pyo3(signature = (mapping, time = None, key_prefix = None, min_compress_len = 0))]
    fn add_multi<'py>(
        &self,
        py: Python<'py>,
        mapping: &Bound<'py, PyDict>,
        time: Option<&Bound<'py, PyAny>>,
        key_prefix: Option<&Bound<'py, PyAny>>,
        min_compress_len: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let _ = min_compress_len; // compression is the convention's (docs/interop.md)
        let failed = PyList::empty(py);
        for (k, v) in mapping.iter() {
            let full = prefixed(py, key_prefix, &k)?;
            if !self.add(py, &full, &v, time, None, None)? {
                failed.append(k)?;
            }
        }
        Ok(failed)
    }

    /// pylibmc's `incr_multi(keys, key_prefix=None, delta=1)`: `incr` each key; missing keys
    /// are left missing, and then raise `NotFoundError("N keys not found")` as pylibmc does.
    #[pyo3(signature = (keys, key_prefix = None, delta = 1))]
    fn incr_multi(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        key_prefix: Option<&Bound<'_, PyAny>>,
        delta: u64,
    ) -> PyResult<()> {
        let mut missing = 0;
        for k in keys.try_iter()? {
            let full = prefixed(py, key_prefix, &k?)?;
            if self.arith(py, &full, delta, true, None, 0)?.is_none() {
                missing += 1;
            }
        }
        if missing > 0 {
            return Err(named_error(
                py,
                "NotFoundError",
                format!("{missing} keys not found"),
            ));
        }
        Ok(())
    }

    /// The `version` of every server: `{"host:port": "1.6.18"}`. A server's error raises.
    fn version<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let rs = nogil(py, || self.cache.plain().version())?;
        let out = PyDict::new(py);
        for (server, r) in rs {
            out.set_item(server, r.map_err(|e| py_err(py, &e))?)?;
        }
        Ok(out)
    }

    /// `host:port` of the server that owns `key` (its primary replica when replicated).
    fn server_for(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<String> {
        let k = key_bytes(key)?;
        self.cache
            .plain()
            .server_for(&k)
            .map(str::to_string)
            .map_err(|e| py_err(py, &e))
    }

    /// The servers holding `key`'s copies now, primary first (one server in plain mode).
    fn replicas_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let k = key_bytes(key)?;
        self.cache
            .replicas_of(&k)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .map_err(|e| py_err(py, &e))
    }

    /// Counters: `{"total": {...}, "servers": {"host:port": {...}}}` with hits, misses, sets,
    /// errors, timeouts, down_events, repairs, stale and disagreements.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.cache.plain().metrics();
        let counters = |c: multiput::metrics::Counters| -> PyResult<Bound<'py, PyDict>> {
            let d = PyDict::new(py);
            d.set_item("hits", c.hits)?;
            d.set_item("misses", c.misses)?;
            d.set_item("sets", c.sets)?;
            d.set_item("errors", c.errors)?;
            d.set_item("timeouts", c.timeouts)?;
            d.set_item("down_events", c.down_events)?;
            d.set_item("repairs", c.repairs)?;
            d.set_item("stale", c.stale)?;
            d.set_item("disagreements", c.disagreements)?;
            Ok(d)
        };
        let out = PyDict::new(py);
        out.set_item("total", counters(m.total)?)?;
        let servers = PyDict::new(py);
        for (name, c) in m.servers {
            servers.set_item(name, counters(c)?)?;
        }
        out.set_item("servers", servers)?;
        Ok(out)
    }

    /// Drop idle connections (they reopen on demand). pymemcache's `close()`.
    fn close(&self) {
        self.cache.plain().close_idle();
    }

    /// Alias of `close()` (pymemcache, pylibmc).
    fn quit(&self) {
        self.cache.plain().close_idle();
    }

    /// Alias of `close()` (python-memcached, Django's memcached backends).
    fn disconnect_all(&self) {
        self.cache.plain().close_idle();
    }

    /// Read-modify-write without losing concurrent updates: `fn(current)` returns the new
    /// value, `multiput.KEEP` or `multiput.DELETE`; conflicts retry with jittered backoff.
    /// Returns the value now stored (None if deleted). `fn` may run several times.
    #[pyo3(signature = (key, func, expire = None, *, default = None, max_attempts = 32, deadline = 2.0))]
    #[allow(clippy::too_many_arguments)]
    fn cas_update<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        func: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        default: Option<Bound<'py, PyAny>>,
        max_attempts: u32,
        deadline: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        let opts = CasOptions {
            max_attempts,
            deadline: duration("deadline", deadline)?,
            ttl: ttl_of(expire)?,
            ..CasOptions::default()
        };
        let func = func.clone().unbind();
        let missing = default.map_or_else(|| py.None(), Bound::unbind);
        self.cas_update_inner(py, key, &k, opts, Updater::Func(func, missing))
    }

    /// Get `key`; on a miss load `default` (called if callable) and store it, once: the
    /// core's fill (concurrent callers in this process share one load; across processes one
    /// takes a short fill lock and the others wait for its value), the same `get_or_set` as
    /// every multiput binding, plain or replicated. Returns what was read or loaded.
    #[pyo3(signature = (key, default, expire = None))]
    fn get_or_set<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let missing = PyTuple::empty(py).into_any();
        let v = self.get(py, key, Some(missing.clone()))?;
        if !v.is(&missing) {
            return Ok(v);
        }
        let k = key_bytes(key)?;
        let ttl = ttl_of(expire)?;
        let codec = &self.codec;
        let (key_obj, default) = (key.clone().unbind(), default.clone().unbind());
        // The loaded object (returned as is) and the exception a loader raised (re-raised as is).
        let mut made: Option<Py<PyAny>> = None;
        let mut error: Option<PyErr> = None;
        let load = || -> Result<Fresh, String> {
            Python::attach(|py| {
                let d = default.bind(py);
                let loaded = if d.is_callable() {
                    d.call0()
                } else {
                    Ok(d.clone())
                };
                let fresh = loaded.and_then(|v| {
                    let enc = codec.encode_for(py, key_obj.bind(py), &v)?;
                    made = Some(v.unbind());
                    self.cache
                        .fresh(&enc.payload(None))
                        .map_err(|e| py_err(py, &e))
                });
                fresh.map_err(|e| {
                    let msg = e.to_string();
                    error = Some(e);
                    msg
                })
            })
        };
        let opts = FillOptions::default();
        let got = nogil(py, || self.cache.get_or_set(&k, ttl, opts, load))?;
        if let Some(cause) = error {
            // The loader's own exception, as the cause of the core's LoaderError (the same
            // error kind in every binding; the Django backend re-raises the cause).
            let e = named_error(
                py,
                "LoaderError",
                format!("get_or_set: the loader failed: {cause}"),
            );
            e.set_cause(py, Some(cause));
            return Err(e);
        }
        match (got.map_err(|e| py_err(py, &e))?, made) {
            (_, Some(v)) => Ok(v.into_bound(py)),
            (g, None) => self.got(py, key, g),
        }
    }

    /// Acquire the lock `name` (an `add` of a unique token on the name's server, never another
    /// server). Raises LockNotAcquiredError if it stays held by someone else for `wait`
    /// seconds. Use as a context manager; it expires after `timeout` seconds if never released.
    /// With `quorum=N` it is taken on a majority of the name's first N replicas instead, so
    /// losing one server does not drop it.
    #[pyo3(signature = (name, timeout = 60.0, wait = 10.0, fencing = false, quorum = None))]
    fn lock(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        timeout: f64,
        wait: f64,
        fencing: bool,
        quorum: Option<usize>,
    ) -> PyResult<Lock> {
        let k = key_bytes(name)?;
        let ttl = timeout.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        let mut opts = LockOptions::new(
            ttl,
            Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or_default(),
        );
        if fencing {
            opts = opts.fencing();
        }
        let lock = nogil(py, || self.cache.lock(&k, opts, quorum))?.map_err(|e| py_err(py, &e))?;
        Ok(Lock {
            inner: Mutex::new(Some(lock)),
            name: name.clone().unbind(),
            generation: multiput::fork::generation(),
        })
    }
}

/// What a CAS update does with the current value.
enum Updater {
    /// Call a Python function (with the second object when the key is missing).
    Func(Py<PyAny>, Py<PyAny>),
}

impl Client {
    fn arith(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        delta: u64,
        incr: bool,
        initial: Option<u64>,
        ttl: u32,
    ) -> PyResult<Option<u64>> {
        let k = key_bytes(key)?;
        nogil(py, || self.cache.incr(&k, incr, delta, initial, ttl))?.map_err(|e| py_err(py, &e))
    }

    /// The CAS update of `cas_update`: the core's machine (plain or replicated), asking the
    /// Python function at each decide step.
    fn cas_update_inner<'py>(
        &self,
        py: Python<'py>,
        key_obj: &Bound<'py, PyAny>,
        key: &[u8],
        opts: CasOptions,
        updater: Updater,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key_obj = key_obj.clone().unbind();
        // The value the last call of the function produced or found, and an error it raised.
        let mut last: Option<Py<PyAny>> = None;
        let mut error: Option<PyErr> = None;
        let keep = sentinel(py, &KEEP, "KEEP")?.clone().unbind();
        let delete = sentinel(py, &DELETE, "DELETE")?.clone().unbind();
        let outcome = nogil(py, || {
            self.cache.cas_update(key, opts, |cur| {
                Python::attach(|py| {
                    let k = key_obj.bind(py);
                    let decided = cur.map(|g| self.got(py, k, g)).transpose().and_then(|cur| {
                        decide(
                            py,
                            k,
                            cur,
                            &self.cache,
                            &updater,
                            &mut last,
                            &self.codec,
                            &keep,
                            &delete,
                        )
                    });
                    Ok(decided.unwrap_or_else(|e| {
                        error = Some(e);
                        Update::Keep
                    }))
                })
            })
        })?;
        if let Some(e) = error {
            return Err(e);
        }
        let (outcome, _report) = outcome.map_err(|e| py_err(py, &e))?;
        Ok(result_of(py, outcome, last))
    }
}

/// One call of a CAS update's decision for the current value: the update, in the cache's
/// form ([`blocking::Cache::update_to`]).
#[allow(clippy::too_many_arguments)]
fn decide<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    current: Option<Bound<'py, PyAny>>,
    cache: &blocking::Cache,
    updater: &Updater,
    last: &mut Option<Py<PyAny>>,
    codec: &Codec,
    keep: &Py<Sentinel>,
    delete: &Py<Sentinel>,
) -> PyResult<Update> {
    let Updater::Func(f, missing) = updater;
    let cur = current.unwrap_or_else(|| missing.bind(py).clone());
    let new = f.bind(py).call1((cur.clone(),))?;
    if new.is(keep.bind(py)) {
        *last = Some(cur.unbind());
        return Ok(Update::Keep);
    }
    if new.is(delete.bind(py)) {
        *last = None;
        return Ok(Update::Delete);
    }
    let enc = codec.encode_for(py, key, &new)?;
    *last = Some(new.clone().unbind());
    cache
        .update_to(&enc.payload(None))
        .map_err(|e| py_err(py, &e))
}

fn result_of(py: Python<'_>, outcome: CasOutcome, last: Option<Py<PyAny>>) -> Bound<'_, PyAny> {
    match outcome {
        CasOutcome::Deleted { .. } => py.None().into_bound(py),
        _ => last.map_or_else(|| py.None().into_bound(py), |v| v.into_bound(py)),
    }
}

// ---------------------------------------------------------------------------------------------
// Module

/// Tell the core that this process is a fork child (`os.register_at_fork(after_in_child=...)`,
/// registered by the `multiput` package). The core's own `pthread_atfork` handler already
/// covers the C library's `fork()`; this covers a fork that bypassed it. Every client then
/// opens its own connections on its next call and never touches a socket of the parent's.
#[pyfunction]
fn note_fork() {
    multiput::fork::note_fork();
}

/// pylibmc's `key_prefix` argument: the key with the prefix in front (str or bytes).
fn prefixed<'py>(
    py: Python<'py>,
    prefix: Option<&Bound<'py, PyAny>>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    match prefix {
        None => Ok(key.clone()),
        Some(p) if p.is_none() => Ok(key.clone()),
        Some(p) => {
            let mut k = key_bytes(p)?;
            k.extend_from_slice(&key_bytes(key)?);
            Ok(PyBytes::new(py, &k).into_any())
        }
    }
}

/// Store and read a value in plain mode as the Rust core would, for tests and tools:
/// `(payload, flags)` for a typed value under a convention.
#[pyfunction]
#[pyo3(signature = (value, convention = "multiput", pickle_protocol = 5))]
fn plain_encoding<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    convention: &str,
    pickle_protocol: i32,
) -> PyResult<(Bound<'py, PyBytes>, u32)> {
    let convention: Convention = convention.parse().map_err(|e: Error| py_err(py, &e))?;
    let codec = Codec {
        convention,
        pickle_protocol,
        serde: None,
    };
    let enc = codec.encode(py, value)?;
    Ok((PyBytes::new(py, enc.plain()), enc.flags))
}

/// Decode a plain `(payload, flags)` pair under a convention, as `Client.get` does.
#[pyfunction]
#[pyo3(signature = (data, flags, convention = "multiput"))]
fn plain_decoding<'py>(
    py: Python<'py>,
    data: &[u8],
    flags: u32,
    convention: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let convention: Convention = convention.parse().map_err(|e: Error| py_err(py, &e))?;
    let codec = Codec {
        convention,
        pickle_protocol: 5,
        serde: None,
    };
    codec.decode_plain(py, data, flags)
}

/// The `ring` that places keys where libmemcached (pylibmc, PECL memcached) does under this
/// distribution (`modula`, `consistent`, `consistent_weighted`) and key hash (`default`, `md5`,
/// ...); `NotSupportedError` for a pair multiput does not reproduce.
#[pyfunction]
fn ring_for_libmemcached(py: Python<'_>, distribution: &str, hash: &str) -> PyResult<&'static str> {
    let d: multiput::Distribution = distribution.parse().map_err(|e: Error| py_err(py, &e))?;
    RingMode::from_libmemcached(d, hash)
        .map(RingMode::as_str)
        .map_err(|e| py_err(py, &e))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_class::<Lock>()?;
    m.add_class::<Sentinel>()?;
    m.add("KEEP", sentinel(py, &KEEP, "KEEP")?)?;
    m.add("DELETE", sentinel(py, &DELETE, "DELETE")?)?;
    m.add("EXPIRE_NOW", multiput::recipes::EXPIRED)?;
    m.add_function(wrap_pyfunction!(plain_encoding, m)?)?;
    m.add_function(wrap_pyfunction!(plain_decoding, m)?)?;
    m.add_function(wrap_pyfunction!(ring_for_libmemcached, m)?)?;
    m.add_function(wrap_pyfunction!(note_fork, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
