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
use multiput::values::{self, Convention, TypedRef};
use multiput::{
    Error, ErrorKind, Policy, ProtocolChoice, ReadPolicy, RingMode, Value, Versioned, WritePolicy,
};
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Errors

static EXCEPTIONS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidKey => "InvalidKeyError",
        ErrorKind::ValueTooLarge => "ValueTooLargeError",
        ErrorKind::NotStored => "NotStoredError",
        ErrorKind::Exists => "CasConflictError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::Server => "ServerError",
        ErrorKind::Client => "ClientError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionClosed => "ConnectionError",
        ErrorKind::ServerDown => "ServerDownError",
        ErrorKind::Protocol => "ProtocolError",
        ErrorKind::Unsupported => "NotSupportedError",
        ErrorKind::Replication => "ReplicationError",
        ErrorKind::CasRetriesExhausted => "CasRetriesExhaustedError",
        ErrorKind::LockNotAcquired => "LockNotAcquiredError",
        ErrorKind::Loader => "LoaderError",
        ErrorKind::Config => "ConfigError",
        _ => "MultiputError",
    }
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidKey => "invalid_key",
        ErrorKind::ValueTooLarge => "value_too_large",
        ErrorKind::NotStored => "not_stored",
        ErrorKind::Exists => "exists",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Server => "server",
        ErrorKind::Client => "client",
        ErrorKind::Timeout => "timeout",
        ErrorKind::ConnectionRefused => "connection_refused",
        ErrorKind::ConnectionClosed => "connection_closed",
        ErrorKind::ServerDown => "server_down",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Replication => "replication",
        ErrorKind::CasRetriesExhausted => "cas_retries_exhausted",
        ErrorKind::LockNotAcquired => "lock_not_acquired",
        ErrorKind::Loader => "loader",
        ErrorKind::Config => "config",
        _ => "error",
    }
}

fn exceptions(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(EXCEPTIONS
        .get_or_try_init(py, || {
            PyModule::import(py, "multiput.exceptions").map(Bound::unbind)
        })?
        .bind(py))
}

/// An exception of `multiput.exceptions` by class name, with `message`.
fn named_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let inst = exceptions(py)?.getattr(class)?.call1((message.clone(),))?;
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|_| PyRuntimeError::new_err(message))
}

fn error_object<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyAny>> {
    let kind = e.kind();
    let inst = exceptions(py)?
        .getattr(class_name(kind))?
        .call1((e.to_string(),))?;
    inst.setattr("kind", kind_name(kind))?;
    if let Some(server) = e.server() {
        inst.setattr("server", server)?;
    }
    if let Error::Replication {
        op,
        acked,
        required,
        failures,
    } = e
    {
        let list = PyList::empty(py);
        for (server, err) in failures {
            list.append((server.as_str(), error_object(py, err)?))?;
        }
        inst.setattr("failures", list)?;
        inst.setattr("op", *op)?;
        inst.setattr("acked", *acked)?;
        inst.setattr("required", *required)?;
    }
    Ok(inst)
}

/// The Python exception for a core error.
fn py_err(py: Python<'_>, e: &Error) -> PyErr {
    match error_object(py, e) {
        Ok(inst) => PyErr::from_value(inst),
        Err(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

fn not_supported(py: Python<'_>, what: &str) -> PyErr {
    named_error(
        py,
        "NotSupportedError",
        format!(
            "{what} is not supported with replication (replicas > 1 or envelope=True): the core \
             does not replicate it; use a plain client (replicas=1) for it"
        ),
    )
}

/// Run `f` (I/O) with the GIL released; a panic becomes a `MultiputError`.
fn nogil<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    match py.detach(|| std::panic::catch_unwind(AssertUnwindSafe(f))) {
        Ok(v) => Ok(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(named_error(
                py,
                "MultiputError",
                format!("internal error in the multiput core (please report it): {msg}"),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, TTLs, options

/// A key as bytes: `str` is UTF-8 encoded, `bytes` is taken as is.
/// True when every server answered OK; the first server's error raises.
fn every_server_ok(py: Python<'_>, rs: Vec<(String, Result<(), Error>)>) -> PyResult<bool> {
    for (_, r) in rs {
        r.map_err(|e| py_err(py, &e))?;
    }
    Ok(true)
}

fn key_bytes(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = key.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "keys must be str or bytes, not {}",
        key.get_type().name()?
    )))
}

/// memcached's exptime from a Python number: `None` or 0 never expires, a positive number
/// is seconds (a fraction rounds up; over 30 days is an absolute Unix time, as memcached reads
/// it), a negative one expires at once.
fn ttl_of(expire: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
    let Some(expire) = expire else { return Ok(0) };
    if expire.is_none() {
        return Ok(0);
    }
    let secs: f64 = if let Ok(i) = expire.extract::<i64>() {
        i as f64
    } else {
        expire.extract::<f64>().map_err(|_| {
            PyTypeError::new_err("expire must be a number of seconds (int or float) or None")
        })?
    };
    if secs.is_nan() {
        return Err(PyValueError::new_err("expire must not be NaN"));
    }
    if secs < 0.0 {
        return Ok(multiput::recipes::EXPIRED);
    }
    Ok(secs.ceil().min(f64::from(u32::MAX)) as u32)
}

/// A CAS unique as pymemcache takes it: an int, or a str/bytes of decimal digits.
fn cas_unique(cas: &Bound<'_, PyAny>) -> PyResult<u64> {
    if cas.is_instance_of::<PyInt>() && !cas.is_instance_of::<PyBool>() {
        return cas
            .extract::<u64>()
            .map_err(|_| PyValueError::new_err("cas must be a non-negative 64-bit integer"));
    }
    let digits = if let Ok(b) = cas.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(s) = cas.cast::<PyString>() {
        s.to_cow()?.as_bytes().to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "cas must be an int, or a str or bytes of digits, not {}",
            cas.get_type().name()?
        )));
    };
    std::str::from_utf8(&digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| PyValueError::new_err(format!("cas must be decimal digits, not {cas}")))
}

fn duration(name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a positive number of seconds")))
}

fn parse_servers(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let mut out = Vec::new();
    let push_str = |s: &str, out: &mut Vec<String>| {
        out.extend(
            s.split([',', ';', ' ', '\n', '\t'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.strip_prefix("inet:").unwrap_or(p).to_string()),
        )
    };
    if let Ok(s) = obj.cast::<PyString>() {
        push_str(&s.to_cow()?, &mut out);
        return Ok(out);
    }
    // pymemcache's single server: ("host", port).
    if let Ok(t) = obj.cast::<PyTuple>() {
        if (2..=3).contains(&t.len()) && t.get_item(1)?.is_instance_of::<PyInt>() {
            return parse_servers(&PyList::new(obj.py(), [t])?.into_any());
        }
    }
    for item in obj.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<PyString>() {
            push_str(&s.to_cow()?, &mut out);
        } else if let Ok(t) = item.cast::<PyTuple>() {
            let host: String = t.get_item(0)?.extract()?;
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            let port: u16 = t.get_item(1)?.extract()?;
            let mut s = format!("{host}:{port}");
            if t.len() > 2 {
                let w: u32 = t.get_item(2)?.extract()?;
                s.push_str(&format!(":{w}"));
            }
            out.push(s);
        } else {
            return Err(PyTypeError::new_err(
                "servers must be a string (\"host:port,host:port\"), or a list of \"host:port\" \
                 strings or (host, port[, weight]) tuples",
            ));
        }
    }
    Ok(out)
}

/// A policy argument as text for core's parsers: an int N is `N` (a quorum of N).
fn policy_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.extract::<usize>() {
        Ok(n) => Ok(n.to_string()),
        Err(_) => obj.extract(),
    }
}

fn parse_write_policy(obj: Option<&Bound<'_, PyAny>>, replicas: usize) -> PyResult<WritePolicy> {
    let Some(obj) = obj else {
        return Ok(WritePolicy::All);
    };
    WritePolicy::parse(&policy_text(obj)?, replicas).map_err(|e| py_err(obj.py(), &e))
}

fn parse_read_policy(obj: Option<&Bound<'_, PyAny>>, replicas: usize) -> PyResult<ReadPolicy> {
    let Some(obj) = obj else {
        return Ok(ReadPolicy::All);
    };
    ReadPolicy::parse(&policy_text(obj)?, replicas).map_err(|e| py_err(obj.py(), &e))
}

// ---------------------------------------------------------------------------------------------
// Values

/// A Python value ready to store: its type, serializer and payload, plus the plain-mode
/// `(bytes, flags)`.
struct Encoded<'py> {
    vtype: ValueType,
    format: Format,
    /// Keeps a borrowed payload alive.
    holder: Option<Bound<'py, PyBytes>>,
    /// The typed payload (envelope mode), when it is not `holder`'s bytes.
    payload: Vec<u8>,
    /// The plain-mode payload when it differs from the typed payload (ints, floats, bools).
    plain: Option<Vec<u8>>,
    flags: u32,
}

impl Encoded<'_> {
    fn typed(&self) -> &[u8] {
        match &self.holder {
            Some(b) => b.as_bytes(),
            None => &self.payload,
        }
    }

    fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or_else(|| self.typed())
    }

    /// Both forms for the core's facade; `flags` overrides the convention's (plain only).
    fn payload(&self, flags: Option<u32>) -> Payload<'_> {
        Payload {
            value_type: self.vtype,
            format: self.format,
            typed: self.typed(),
            plain: self.plain(),
            flags: flags.unwrap_or(self.flags),
            flags_given: flags.is_some(),
        }
    }
}

fn pickle(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PICKLE.get_or_try_init(py, || {
        let m = PyModule::import(py, "pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })
}

/// pymemcache's serde protocol: `serialize(key, value) -> (data, flags)` and
/// `deserialize(key, data, flags) -> value`, either side possibly missing (then values pass
/// through as bytes, as pymemcache's `LegacyWrappingSerde` does).
struct Serde {
    serialize: Option<Py<PyAny>>,
    deserialize: Option<Py<PyAny>>,
}

#[derive(Clone)]
struct Codec {
    convention: Convention,
    pickle_protocol: i32,
    /// A caller's serde (plain mode only): it replaces the typed-value rules entirely.
    serde: Option<Arc<Serde>>,
}

impl Codec {
    /// The value to store for `key`: through the caller's serde when there is one.
    fn encode_for<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
    ) -> PyResult<Encoded<'py>> {
        let Some(serde) = &self.serde else {
            return self.encode(py, v);
        };
        let (data, flags) = match &serde.serialize {
            Some(f) => {
                let out = f.bind(py).call1((key, v))?;
                out.extract::<(Bound<'py, PyAny>, u32)>().map_err(|_| {
                    PyTypeError::new_err("serde.serialize must return (data, flags)")
                })?
            }
            None => (v.clone(), 0),
        };
        // As pymemcache: anything but bytes is stored as its str().
        let data = match data.cast_into::<PyBytes>() {
            Ok(b) => b,
            Err(e) => e.into_inner().str()?.encode_utf8()?,
        };
        Ok(Encoded {
            vtype: ValueType::Bytes,
            format: Format::NONE,
            holder: Some(data),
            payload: Vec::new(),
            plain: None,
            flags,
        })
    }

    /// The value read for `key`: through the caller's serde when there is one.
    fn value_for<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        v: &Value,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(serde) = &self.serde else {
            return self.value(py, v);
        };
        let data = PyBytes::new(py, &v.data).into_any();
        match &serde.deserialize {
            Some(f) => f.bind(py).call1((key, data, v.flags)),
            None => Ok(data),
        }
    }

    fn encode<'py>(&self, py: Python<'py>, v: &Bound<'py, PyAny>) -> PyResult<Encoded<'py>> {
        let conv = self.convention;
        let simple = |vtype, format, holder: Bound<'py, PyBytes>| -> PyResult<Encoded<'py>> {
            let flags = values::flags_for(conv, vtype, format).ok_or_else(|| {
                named_error(
                    py,
                    "NotSupportedError",
                    format!("this value cannot be stored with {conv} flags (convention={conv:?})"),
                )
            })?;
            Ok(Encoded {
                vtype,
                format,
                holder: Some(holder),
                payload: Vec::new(),
                plain: None,
                flags,
            })
        };
        let scalar = |typed: Typed| -> PyResult<Encoded<'py>> {
            let (plain, flags) = values::encode(conv, &typed)
                .map_err(|e| named_error(py, "NotSupportedError", e.to_string()))?;
            Ok(Encoded {
                vtype: typed.vtype(),
                format: Format::NONE,
                holder: None,
                payload: typed.encode_payload(),
                plain: Some(plain),
                flags,
            })
        };
        // Exact types, as pymemcache: subclasses are pickled and come back as themselves.
        if v.is_exact_instance_of::<PyBytes>() {
            return simple(ValueType::Bytes, Format::NONE, v.cast::<PyBytes>()?.clone());
        }
        if v.is_exact_instance_of::<PyString>() {
            let b = v.cast::<PyString>()?.encode_utf8()?;
            return simple(ValueType::Text, Format::NONE, b);
        }
        if v.is_exact_instance_of::<PyBool>() {
            return scalar(Typed::Bool(v.extract::<bool>()?));
        }
        if v.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = v.extract::<i64>() {
                return scalar(Typed::Int(i));
            }
            // Beyond i64: the envelope has no such int, so it is pickled there; plain Python
            // mode writes the decimal with the integer flag, as pymemcache does.
            if conv == Convention::Python {
                let (dumps, _) = pickle(py)?;
                let data = dumps.bind(py).call1((v, self.pickle_protocol))?;
                let data = data.cast_into::<PyBytes>().map_err(PyErr::from)?;
                return Ok(Encoded {
                    vtype: ValueType::Serialized,
                    format: Format::PICKLE,
                    holder: Some(data),
                    payload: Vec::new(),
                    plain: Some(v.str()?.to_cow()?.as_bytes().to_vec()),
                    flags: values::python::INTEGER,
                });
            }
        }
        if v.is_exact_instance_of::<PyFloat>() {
            return scalar(Typed::Float(v.extract::<f64>()?));
        }
        let (dumps, _) = pickle(py)?;
        let data = dumps.bind(py).call1((v, self.pickle_protocol))?;
        let data = data.cast_into::<PyBytes>().map_err(PyErr::from)?;
        simple(ValueType::Serialized, Format::PICKLE, data)
    }

    fn decode<'py>(&self, py: Python<'py>, t: TypedRef<'_>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match t {
            TypedRef::Bytes(b) => PyBytes::new(py, b).into_any(),
            TypedRef::Text(s) => PyString::new(py, s).into_any(),
            TypedRef::Int(i) => i.into_bound_py_any(py)?,
            TypedRef::Float(f) => f.into_bound_py_any(py)?,
            TypedRef::Bool(b) => b.into_bound_py_any(py)?,
            TypedRef::Serialized(format, data) if format == Format::PICKLE => {
                let (_, loads) = pickle(py)?;
                loads.bind(py).call1((PyBytes::new(py, data),))?
            }
            TypedRef::Serialized(format, data) if format == Format::JSON => {
                PyModule::import(py, "json")?
                    .getattr("loads")?
                    .call1((PyBytes::new(py, data),))?
            }
            TypedRef::Serialized(format, _) => {
                return Err(named_error(
                    py,
                    "NotSupportedError",
                    format!(
                        "the value was serialized with format {} (2 = PHP serialize()), which \
                         Python cannot read",
                        format.0
                    ),
                ))
            }
            TypedRef::Raw(data, flags) => self.decode_raw(py, data, flags)?,
        })
    }

    /// Flags the core leaves to the binding: compressed values (pylibmc, pymemcache
    /// `CompressedSerde`) and integers beyond 64 bits; anything else is returned as bytes.
    fn decode_raw<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        flags: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(inflated) =
            compress::inflate(self.convention, data, flags, compress::MAX_DECOMPRESSED)
        {
            let (inflated, rest) = inflated.map_err(|e| {
                py_err(
                    py,
                    &Error::Protocol {
                        server: String::new(),
                        detail: format!("compressed value cannot be inflated: {e}"),
                    },
                )
            })?;
            return match values::decode_ref(self.convention, &inflated, rest) {
                TypedRef::Raw(d, f) => self.decode_raw(py, d, f),
                t => self.decode(py, t),
            };
        }
        if self.convention == Convention::Python
            && flags & (values::python::INTEGER | values::python::LONG) != 0
            && flags & values::python::TEXT == 0
        {
            let int = py.get_type::<PyInt>().call1((PyBytes::new(py, data),));
            if let Ok(i) = int {
                return Ok(i);
            }
        }
        Ok(PyBytes::new(py, data).into_any())
    }

    fn value<'py>(&self, py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
        self.decode(py, values::decode_ref(self.convention, &v.data, v.flags))
    }

    fn versioned<'py>(&self, py: Python<'py>, v: &Versioned) -> PyResult<Bound<'py, PyAny>> {
        self.decode(py, values::from_versioned(self.convention, v))
    }
}

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
    fn plain_only(&self, py: Python<'_>, what: &str) -> PyResult<&blocking::Client> {
        match self.cache.replicated() {
            Some(_) => Err(not_supported(py, what)),
            None => Ok(self.cache.plain()),
        }
    }

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

    fn check_keys(&self, py: Python<'_>, keys: &[Vec<u8>]) -> PyResult<()> {
        let cl = self.cache.plain().cluster();
        for k in keys {
            cl.check_key(k).map_err(|e| py_err(py, &e))?;
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

    /// The keys as given (for result dicts) and as bytes.
    #[allow(clippy::type_complexity)]
    fn collect_keys<'py>(
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<(Vec<Bound<'py, PyAny>>, Vec<Vec<u8>>)> {
        let mut objs = Vec::new();
        let mut raw = Vec::new();
        for k in keys.try_iter()? {
            let k = k?;
            raw.push(key_bytes(&k)?);
            objs.push(k);
        }
        Ok((objs, raw))
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
        convention = "python",
        pickle_protocol = None,
        serde = None,
        serializer = None,
        deserializer = None,
        no_delay = None,
        default_noreply = None,
        allow_unicode_keys = None,
        ignore_exc = false,
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
    ) -> PyResult<Self> {
        // pymemcache arguments with nothing to configure here: replies are always read, and
        // str keys are always UTF-8.
        let _ = (default_noreply, allow_unicode_keys);
        let tcp_nodelay = no_delay.unwrap_or(tcp_nodelay);
        let config_err = |e: Error| py_err(py, &e);
        let servers = parse_servers(servers)?;
        let ring_mode: RingMode = match ring.trim().to_ascii_lowercase().replace('-', "_").as_str()
        {
            "ketama_weighted" | "weighted" => RingMode::LibketamaCompatible,
            other => other.parse().map_err(config_err)?,
        };
        let protocol = match protocol.trim().to_ascii_lowercase().as_str() {
            "auto" => ProtocolChoice::Auto,
            "text" | "ascii" => ProtocolChoice::Text,
            "meta" => ProtocolChoice::Meta,
            other => {
                return Err(named_error(
                    py,
                    "ConfigError",
                    format!("protocol must be \"auto\", \"text\" or \"meta\", not {other:?}"),
                ))
            }
        };
        let convention: Convention = convention.parse().map_err(config_err)?;
        let prefix = match key_prefix {
            None => Vec::new(),
            Some(p) if p.is_none() => Vec::new(),
            Some(p) => key_bytes(p)?,
        };
        // pymemcache's None ("wait forever") keeps the default: a call never waits unbounded.
        let connect_timeout = duration("connect_timeout", connect_timeout.unwrap_or(1.0))?;
        let timeout = duration("timeout", timeout.unwrap_or(1.0))?;
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
        let retry_interval = duration("retry_interval", retry_interval)?;
        let plain = blocking::Client::builder()
            .servers(servers.iter().map(String::as_str))
            .configure(|b| {
                b.ring_mode(ring_mode)
                    .protocol(protocol)
                    .connect_timeout(connect_timeout)
                    .timeout(timeout)
                    .retry_interval(retry_interval)
                    .failure_limit(failure_limit)
                    .key_prefix(prefix)
                    .max_value_size(max_value_size)
                    .blocking_pool_size(pool_size)
                    .tcp_nodelay(tcp_nodelay)
                    .binary_keys(binary_keys)
            })
            .build()
            .map_err(config_err)?;
        let enveloped = envelope.unwrap_or(replicas > 1);
        let repl = if enveloped {
            let policy = Policy {
                replicas,
                write: parse_write_policy(write_policy, replicas)?,
                read: parse_read_policy(read_policy, replicas)?,
                tombstone_ttl,
                failover,
                read_repair,
            };
            Some(blocking::ReplicatedClient::new(plain.clone(), policy).map_err(config_err)?)
        } else if replicas != 1 {
            return Err(named_error(
                py,
                "ConfigError",
                "replicas > 1 needs the envelope (envelope=False only works with replicas=1)"
                    .into(),
            ));
        } else {
            None
        };
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
        self.cache.replicated().map_or(1, |r| r.policy().replicas)
    }

    /// True when values are written in the replication envelope.
    #[getter]
    fn enveloped(&self) -> bool {
        self.cache.replicated().is_some()
    }

    /// The replication policy as a dict (`None` in plain mode).
    #[getter]
    fn policy<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(r) = self.cache.replicated() else {
            return Ok(None);
        };
        let p = r.policy();
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
        let Some(r) = self.cache.replicated() else {
            return Err(not_supported(
                py,
                "with_policy (replicas=1: there is no policy)",
            ));
        };
        let p = r.policy();
        let read = match read_policy {
            Some(o) => parse_read_policy(Some(o), p.replicas)?,
            None => p.read,
        };
        let write = match write_policy {
            Some(o) => parse_write_policy(Some(o), p.replicas)?,
            None => p.write,
        };
        let repl = r.with_policies(read, write).map_err(|e| py_err(py, &e))?;
        Ok(Client {
            cache: self.cache.with_replicated(Some(repl)),
            codec: self.codec.clone(),
            servers: self.servers.clone(),
            ignore_exc: self.ignore_exc,
        })
    }

    /// `"python"` or `"php"`: whose flag numbers plain values use.
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
            if self.cache.replicated().is_some() {
                "True"
            } else {
                "False"
            }
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
        let c = self.plain_only(py, "gat")?;
        let k = key_bytes(key)?;
        let ttl = ttl_of(expire)?;
        match nogil(py, || c.gat(&k, ttl, false))? {
            Ok(Some(v)) => self.codec.value_for(py, key, &v),
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
        nogil(py, || self.cache.delete(&k))?.map_err(|e| py_err(py, &e))
    }

    /// Increment a counter: the new value, or None if the key is missing (with `initial`, a
    /// missing counter is created at `initial`, stored with `expire`, and `initial` returned).
    /// Replicated: an exact counter serialized by CAS on the key's primary replica.
    #[pyo3(signature = (key, value = 1, noreply = None, *, initial = None, expire = None))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: u64,
        noreply: Option<bool>,
        initial: Option<u64>,
        expire: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        self.arith(py, key, value, true, initial, ttl_of(expire)?)
    }

    /// Decrement a counter (stops at 0): the new value, or None if the key is missing.
    #[pyo3(signature = (key, value = 1, noreply = None, *, initial = None, expire = None))]
    fn decr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: u64,
        noreply: Option<bool>,
        initial: Option<u64>,
        expire: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        self.arith(py, key, value, false, initial, ttl_of(expire)?)
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
        let (objs, raw) = Self::collect_keys(keys)?;
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
        let (objs, raw) = Self::collect_keys(keys)?;
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
        if flags.is_some() && self.cache.replicated().is_some() {
            return Err(not_supported(py, "set_many(flags=...)"));
        }
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
        let (_, raw) = Self::collect_keys(keys)?;
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
        let replicated = self.cache.replicated().is_some();
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
                    let data = if replicated { enc.typed() } else { enc.plain() };
                    Ok(Fresh {
                        data: data.to_vec(),
                        flags: enc.flags,
                        typed: Some((enc.vtype, enc.format)),
                    })
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
                    decided.unwrap_or_else(|e| {
                        error = Some(e);
                        Update::Keep
                    })
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
    Ok(cache.update_to(&enc.payload(None)))
}

fn result_of(py: Python<'_>, outcome: CasOutcome, last: Option<Py<PyAny>>) -> Bound<'_, PyAny> {
    match outcome {
        CasOutcome::Deleted { .. } => py.None().into_bound(py),
        _ => last.map_or_else(|| py.None().into_bound(py), |v| v.into_bound(py)),
    }
}

// ---------------------------------------------------------------------------------------------
// Locks

/// A held lock (from `Client.lock`). Released by `release()`, at the end of a `with` block,
/// or when garbage-collected; it expires after its timeout if its holder dies.
///
/// A lock belongs to the process that acquired it. A fork child inherits the object, not the
/// ownership: there it is not `held`, `release()` and `extend()` return False without a word
/// to the server, and garbage collection leaves it alone, so a child that leaves a `with`
/// block or exits never releases its parent's lock (the core's guard does nothing there when
/// dropped; `inherited` only keeps this wrapper from locking `inner`, which a parent thread
/// may have held at the moment of the fork).
#[pyclass(module = "multiput._native", name = "Lock", frozen)]
pub struct Lock {
    inner: Mutex<Option<multiput::recipes::Lock<blocking::Client>>>,
    name: Py<PyAny>,
    /// The fork generation (`multiput::fork`) of the process that acquired it.
    generation: u64,
}

impl Lock {
    /// Made by another process (this one is a fork child of the acquirer). Checked before
    /// `inner` is locked: a parent thread may have held that mutex at the moment of the fork.
    fn inherited(&self) -> bool {
        self.generation != multiput::fork::generation()
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut multiput::recipes::Lock<blocking::Client>) -> Result<T, Error> + Send,
        absent: T,
    ) -> PyResult<T> {
        if self.inherited() {
            return Ok(absent);
        }
        let inner = &self.inner;
        let r = nogil(py, || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(l) => f(l),
                None => Ok(absent),
            }
        })?;
        r.map_err(|e| py_err(py, &e))
    }
}

#[pymethods]
impl Lock {
    /// The lock's name, as given.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyAny> {
        self.name.clone_ref(py)
    }

    /// This holder's unique owner token (None in a fork child: it holds nothing).
    #[getter]
    fn token(&self) -> Option<String> {
        if self.inherited() {
            return None;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|l| l.token().to_string())
    }

    /// The fencing token (a number larger than every earlier holder's), if asked for.
    #[getter]
    fn fence(&self) -> Option<u64> {
        if self.inherited() {
            return None;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().and_then(|l| l.fence())
    }

    /// True until released (it does not ask the server; a lock past its timeout may be gone).
    /// False in a fork child: the lock is its parent's.
    #[getter]
    fn held(&self) -> bool {
        if self.inherited() {
            return false;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().is_some_and(|l| l.is_held())
    }

    /// Release the lock if this holder still owns it: True released, False it had expired
    /// (and was left alone, it may be someone else's now) or this is a fork child of the
    /// holder (the lock stays its parent's).
    fn release(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |l| l.release(), false)
    }

    /// Give the lock a new timeout (seconds) if this holder still owns it.
    fn extend(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let ttl = timeout.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        self.with(py, move |l| l.extend(ttl), false)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let name = self
            .name
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let held = if self.held() { "True" } else { "False" };
        format!("<multiput.Lock {name} held={held}>")
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

/// Store and read a value in plain mode as the Rust core would, for tests and tools:
/// `(payload, flags)` for a typed value under a convention.
#[pyfunction]
#[pyo3(signature = (value, convention = "python", pickle_protocol = 5))]
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
#[pyo3(signature = (data, flags, convention = "python"))]
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
    codec.decode(py, values::decode_ref(convention, data, flags))
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
