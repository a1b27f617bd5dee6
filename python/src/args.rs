//! Arguments as Python passes them: keys, TTLs, CAS uniques, server lists, policies.

use super::*;

/// A key as bytes: `str` is UTF-8 encoded, `bytes` is taken as is.
/// True when every server answered OK; the first server's error raises.
pub(crate) fn every_server_ok(
    py: Python<'_>,
    rs: Vec<(String, Result<(), Error>)>,
) -> PyResult<bool> {
    for (_, r) in rs {
        r.map_err(|e| py_err(py, &e))?;
    }
    Ok(true)
}

pub(crate) fn key_bytes(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut v = Vec::new();
    append_key(&mut v, key)?;
    Ok(v)
}

/// Append a key's bytes (`str` as UTF-8, or `bytes`) to `buf`.
pub(crate) fn append_key(buf: &mut Vec<u8>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(b) = key.cast::<PyBytes>() {
        buf.extend_from_slice(b.as_bytes());
        return Ok(());
    }
    if let Ok(s) = key.cast::<PyString>() {
        buf.extend_from_slice(s.to_cow()?.as_bytes());
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "keys must be str or bytes, not {}",
        key.get_type().name()?
    )))
}

/// memcached's exptime from a Python number: `None` or 0 never expires, a positive number
/// is seconds (a fraction rounds up; over 30 days is an absolute Unix time, as memcached reads
/// it), a negative one expires at once.
pub(crate) fn ttl_of(expire: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
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
pub(crate) fn cas_unique(cas: &Bound<'_, PyAny>) -> PyResult<u64> {
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

pub(crate) fn duration(name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a positive number of seconds")))
}

pub(crate) fn parse_servers(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
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
pub(crate) fn policy_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.extract::<usize>() {
        Ok(n) => Ok(n.to_string()),
        Err(_) => obj.extract(),
    }
}

pub(crate) fn parse_write_policy(
    obj: Option<&Bound<'_, PyAny>>,
    replicas: usize,
) -> PyResult<WritePolicy> {
    let Some(obj) = obj else {
        return Ok(WritePolicy::All);
    };
    WritePolicy::parse(&policy_text(obj)?, replicas).map_err(|e| py_err(obj.py(), &e))
}

pub(crate) fn parse_read_policy(
    obj: Option<&Bound<'_, PyAny>>,
    replicas: usize,
) -> PyResult<ReadPolicy> {
    let Some(obj) = obj else {
        return Ok(ReadPolicy::All);
    };
    ReadPolicy::parse(&policy_text(obj)?, replicas).map_err(|e| py_err(obj.py(), &e))
}

/// An `incr`/`decr` amount as pymemcache takes it: an `int` (a `bool` is one), refused before
/// anything is sent otherwise (`InvalidArgumentError`, a `MemcacheIllegalInputError`); a
/// negative or over-64-bit amount is memcached's `CLIENT_ERROR invalid numeric delta
/// argument`, raised as `DeltaOutOfRangeError` (a `ClientError`, a `MemcacheClientError` and
/// an `OverflowError`) without asking the server.
/// incr/decr's amount as the caller gave it: left out (1), or a Python object, which may be an
/// explicit `None` (refused, as pymemcache refuses it). A plain `Option` could not tell the two
/// apart.
pub(crate) enum Delta<'py> {
    /// Not given: 1.
    Omitted,
    /// Given, whatever it is.
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Delta<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Delta::Given(obj.to_owned()))
    }
}

impl Delta<'_> {
    pub(crate) fn amount(&self, py: Python<'_>) -> PyResult<u64> {
        match self {
            Delta::Omitted => Ok(1),
            Delta::Given(v) => delta_of(py, v),
        }
    }
}

pub(crate) fn delta_of(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if !value.is_instance_of::<PyInt>() {
        return Err(named_error(
            py,
            "InvalidArgumentError",
            format!("value must be integer, got bad value: {}", value.repr()?),
        ));
    }
    value.extract::<u64>().map_err(|_| {
        named_error(
            py,
            "DeltaOutOfRangeError",
            "CLIENT_ERROR invalid numeric delta argument (incr/decr take 0 to 2^64-1)".into(),
        )
    })
}
