//! Errors: the core's error kinds as the `multiput` exception classes, and running the core
//! without the GIL.

use super::*;
use multiput::error::TlsProblem;

pub(crate) static EXCEPTIONS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
pub(crate) static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

pub(crate) fn class_name(kind: ErrorKind) -> &'static str {
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
        ErrorKind::Undecodable => "UndecodableValueError",
        ErrorKind::Auth => "AuthenticationError",
        ErrorKind::Tls => "TlsError",
        _ => "MultiputError",
    }
}

pub(crate) fn kind_name(kind: ErrorKind) -> &'static str {
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
        ErrorKind::Undecodable => "undecodable",
        ErrorKind::Auth => "auth",
        ErrorKind::Tls => "tls",
        _ => "error",
    }
}

pub(crate) fn exceptions(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(EXCEPTIONS
        .get_or_try_init(py, || {
            PyModule::import(py, "multiput.exceptions").map(Bound::unbind)
        })?
        .bind(py))
}

/// An exception of `multiput.exceptions` by class name, with `message`.
pub(crate) fn named_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let inst = exceptions(py)?.getattr(class)?.call1((message.clone(),))?;
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|_| PyRuntimeError::new_err(message))
}

/// The class of a TLS failure, by what went wrong.
fn tls_class(problem: TlsProblem) -> &'static str {
    match problem {
        TlsProblem::UntrustedCertificate => "CertificateUntrustedError",
        TlsProblem::HostnameMismatch => "CertificateHostnameError",
        TlsProblem::Expired => "CertificateExpiredError",
        TlsProblem::ClientCertificateRejected => "ClientCertificateRejectedError",
        TlsProblem::ServerNotTls => "ServerNotTlsError",
        TlsProblem::ServerSpeaksTls => "ServerRequiresTlsError",
        _ => "TlsError",
    }
}

pub(crate) fn error_object<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyAny>> {
    let kind = e.kind();
    let class = match e {
        Error::Tls { problem, .. } => tls_class(*problem),
        _ => class_name(kind),
    };
    let inst = exceptions(py)?.getattr(class)?.call1((e.to_string(),))?;
    if let Error::Tls { problem, .. } = e {
        inst.setattr("problem", problem.as_str())?;
    }
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
pub(crate) fn py_err(py: Python<'_>, e: &Error) -> PyErr {
    match error_object(py, e) {
        Ok(inst) => PyErr::from_value(inst),
        Err(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

pub(crate) fn not_supported(py: Python<'_>, what: &str) -> PyErr {
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
pub(crate) fn nogil<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
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
