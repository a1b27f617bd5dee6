//! Values: how Python objects are stored (typed for an envelope, plain with the convention's
//! flags, or through a caller's serde) and read back.

use super::*;

/// A Python value ready to store: its type, serializer and payload, plus the plain-mode
/// `(bytes, flags)`.
pub(crate) struct Encoded<'py> {
    pub(crate) vtype: ValueType,
    pub(crate) format: Format,
    /// Keeps a borrowed payload alive.
    pub(crate) holder: Option<Bound<'py, PyBytes>>,
    /// The typed payload (envelope mode), when it is not `holder`'s bytes.
    pub(crate) payload: Vec<u8>,
    /// The plain-mode payload when it differs from the typed payload (ints, floats, bools).
    pub(crate) plain: Option<Vec<u8>>,
    pub(crate) flags: u32,
}

impl Encoded<'_> {
    pub(crate) fn typed(&self) -> &[u8] {
        match &self.holder {
            Some(b) => b.as_bytes(),
            None => &self.payload,
        }
    }

    pub(crate) fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or_else(|| self.typed())
    }

    /// Both forms for the core's facade; `flags` overrides the convention's (plain only).
    pub(crate) fn payload(&self, flags: Option<u32>) -> Payload<'_> {
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

pub(crate) fn pickle(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PICKLE.get_or_try_init(py, || {
        let m = PyModule::import(py, "pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })
}

/// pymemcache's serde protocol: `serialize(key, value) -> (data, flags)` and
/// `deserialize(key, data, flags) -> value`, either side possibly missing (then values pass
/// through as bytes, as pymemcache's `LegacyWrappingSerde` does).
pub(crate) struct Serde {
    pub(crate) serialize: Option<Py<PyAny>>,
    pub(crate) deserialize: Option<Py<PyAny>>,
}

#[derive(Clone)]
pub(crate) struct Codec {
    pub(crate) convention: Convention,
    pub(crate) pickle_protocol: i32,
    /// A caller's serde (plain mode only): it replaces the typed-value rules entirely.
    pub(crate) serde: Option<Arc<Serde>>,
}

impl Codec {
    /// The value to store for `key`: through the caller's serde when there is one.
    pub(crate) fn encode_for<'py>(
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
    pub(crate) fn value_for<'py>(
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

    pub(crate) fn encode<'py>(
        &self,
        py: Python<'py>,
        v: &Bound<'py, PyAny>,
    ) -> PyResult<Encoded<'py>> {
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
            if conv == Convention::PYTHON {
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

    /// A typed value as Python. A pickle that does not load is [`Error::Undecodable`] (named
    /// `UndecodableValueError`), never a raw `UnpicklingError`.
    pub(crate) fn decode<'py>(
        &self,
        py: Python<'py>,
        t: TypedRef<'_>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match t {
            TypedRef::Bytes(b) => PyBytes::new(py, b).into_any(),
            TypedRef::Text(s) => PyString::new(py, s).into_any(),
            TypedRef::Int(i) => i.into_bound_py_any(py)?,
            TypedRef::Float(f) => f.into_bound_py_any(py)?,
            TypedRef::Bool(b) => b.into_bound_py_any(py)?,
            TypedRef::Serialized(format, data) if format == Format::PICKLE => {
                let (_, loads) = pickle(py)?;
                match loads.bind(py).call1((PyBytes::new(py, data),)) {
                    Ok(v) => v,
                    // A class that cannot be imported here is the caller's to see; a payload
                    // that is not a pickle at all is a value another client wrote.
                    Err(e)
                        if e.is_instance_of::<pyo3::exceptions::PyImportError>(py)
                            || e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) =>
                    {
                        return Err(e)
                    }
                    Err(e) => {
                        let why = format!("the payload does not unpickle ({e})");
                        return Err(py_err(
                            py,
                            &values::undecodable(
                                self.convention,
                                data,
                                values::python::PICKLE,
                                &why,
                            ),
                        ));
                    }
                }
            }
            TypedRef::Serialized(format, data) if format == Format::JSON => {
                match PyModule::import(py, "json")?
                    .getattr("loads")?
                    .call1((PyBytes::new(py, data),))
                {
                    Ok(v) => v,
                    Err(e) => {
                        return Err(py_err(
                            py,
                            &Error::Undecodable {
                                flags: 0,
                                detail: format!("a JSON value that does not parse: {e}"),
                            },
                        ))
                    }
                }
            }
            TypedRef::Serialized(format, _) => {
                return Err(py_err(py, &values::unreadable_serialized(format, "Python")))
            }
            TypedRef::Raw(data, flags) => self.decode_raw(py, data, flags)?,
        })
    }

    /// A plain value: inflated if compressed, then typed by the core's strict rules
    /// ([`values::decode_checked`]); what they leave raw is bytes (as pymemcache returns
    /// unknown flags), or a Python int beyond 64 bits.
    pub(crate) fn decode_plain<'py>(
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
                    &values::undecodable(
                        self.convention,
                        data,
                        flags,
                        &format!("the flags say compressed, but it does not inflate ({e})"),
                    ),
                )
            })?;
            return self.decode_plain(py, &inflated, rest);
        }
        let t = values::decode_checked(self.convention, data, flags).map_err(|e| py_err(py, &e))?;
        self.decode(py, t)
    }

    /// Flags the core leaves raw: integers beyond 64 bits (Python flags), else bytes.
    fn decode_raw<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        flags: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let python_int = self.convention.family() == Family::Python
            && flags & (values::python::INTEGER | values::python::LONG) != 0
            && flags & values::python::TEXT == 0;
        if python_int || flags & 0xffff == values::portable::INT {
            let int = py.get_type::<PyInt>().call1((PyBytes::new(py, data),));
            if let Ok(i) = int {
                return Ok(i);
            }
        }
        Ok(PyBytes::new(py, data).into_any())
    }

    pub(crate) fn value<'py>(&self, py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
        self.decode_plain(py, &v.data, v.flags)
    }

    pub(crate) fn versioned<'py>(
        &self,
        py: Python<'py>,
        v: &Versioned,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !v.enveloped {
            return self.decode_plain(py, &v.data, v.flags);
        }
        self.decode(py, values::from_versioned(self.convention, v))
    }
}
