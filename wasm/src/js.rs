//! Small conversions between JavaScript values and Rust ones, and the error objects handed to
//! JavaScript. Nothing here decides anything about memcached; it only translates.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use js_sys::{Array, Object, Reflect, Uint8Array};
use multiput::error::Phase;
use multiput::{Error, ErrorKind};
use wasm_bindgen::prelude::*;

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub(crate) const MAX_SAFE: u64 = (1 << 53) - 1;

#[wasm_bindgen]
extern "C" {
    /// Any object, for a plain property assignment.
    #[wasm_bindgen(js_name = Object)]
    type Props;
    /// `this[key] = value`: no `Reflect` call, no try/catch around it.
    #[wasm_bindgen(method, structural, indexing_setter)]
    fn put(this: &Props, key: &JsValue, value: &JsValue);
}

/// `o[k] = v` on an object this crate made (plain objects and errors: it cannot fail).
pub(crate) fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    o.unchecked_ref::<Props>()
        .put(&JsValue::from_str(k), &v.into());
}

/// A new array of `items` (`Array.of` is a slow builtin; `push` is not).
pub(crate) fn array(items: &[&JsValue]) -> Array {
    let a = Array::new();
    for x in items {
        a.push(x);
    }
    a
}

pub(crate) fn get(o: &JsValue, k: &str) -> JsValue {
    if !o.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

pub(crate) fn is_nullish(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// A key or payload given as a `Uint8Array` (a Node `Buffer` is one) or a string (UTF-8).
pub(crate) fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return Some(s.into_bytes());
    }
    v.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec)
}

pub(crate) fn u8a(b: &[u8]) -> Uint8Array {
    Uint8Array::from(b)
}

/// A u64 as a `BigInt` (CAS uniques, timestamps, writer ids: full 64-bit range).
pub(crate) fn big(n: u64) -> JsValue {
    JsValue::from(n)
}

/// An unsigned count as a number when it is exact, else a `BigInt` (counters).
pub(crate) fn uint(n: u64) -> JsValue {
    if n <= MAX_SAFE {
        JsValue::from_f64(n as f64)
    } else {
        JsValue::from(n)
    }
}

/// A signed integer as a number when it is exact, else a `BigInt` (typed int values).
pub(crate) fn int(n: i64) -> JsValue {
    if n.unsigned_abs() <= MAX_SAFE {
        JsValue::from_f64(n as f64)
    } else {
        JsValue::from(n)
    }
}

/// A u64 from a `BigInt` or a non-negative integral number.
pub(crate) fn u64_of(v: &JsValue) -> Option<u64> {
    if v.is_bigint() {
        return u64::try_from(v.clone()).ok();
    }
    let f = v.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE as f64).then_some(f as u64)
}

/// Milliseconds given by JavaScript (a number, maybe fractional) as whole milliseconds.
pub(crate) fn ms(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

/// The stable name of an error kind: what `MultiputError.kind` holds in JavaScript.
pub(crate) fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::InvalidKey => "InvalidKey",
        ErrorKind::ValueTooLarge => "ValueTooLarge",
        ErrorKind::NotStored => "NotStored",
        ErrorKind::Exists => "Exists",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Server => "Server",
        ErrorKind::Client => "Client",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::ConnectionRefused => "ConnectionRefused",
        ErrorKind::ConnectionClosed => "ConnectionClosed",
        ErrorKind::ServerDown => "ServerDown",
        ErrorKind::Protocol => "Protocol",
        ErrorKind::Unsupported => "Unsupported",
        ErrorKind::Replication => "Replication",
        ErrorKind::CasRetriesExhausted => "CasRetriesExhausted",
        ErrorKind::LockNotAcquired => "LockNotAcquired",
        ErrorKind::Loader => "Loader",
        ErrorKind::Config => "Config",
        ErrorKind::Undecodable => "Undecodable",
        ErrorKind::Auth => "Auth",
        ErrorKind::Tls => "Tls",
        _ => "Error",
    }
}

/// Fill in the server of an error a core op returned without one.
pub(crate) fn at_server(e: Error, name: &str) -> Error {
    e.at_server(name)
}

/// A core error as a JavaScript `Error` with `kind`, `server` and the variant's fields. The
/// JS package turns it into the matching `MultiputError` subclass.
pub(crate) fn error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let o: &Object = err.as_ref();
    set(o, "kind", kind_name(e.kind()));
    if let Some(s) = e.server() {
        set(o, "server", s);
    }
    match e {
        Error::Timeout { phase, after, .. } => {
            set(o, "phase", phase.to_string());
            set(o, "after", after.as_millis() as f64);
        }
        Error::ConnectionRefused { source, .. } => set(o, "detail", source.to_string()),
        Error::ConnectionClosed { reason, .. } => set(o, "detail", reason.as_str()),
        Error::Protocol { detail, .. } => set(o, "detail", detail.as_str()),
        Error::Server { message, .. } | Error::Client { message, .. } => {
            set(o, "detail", message.as_str())
        }
        Error::Unsupported { feature, .. } => set(o, "detail", *feature),
        Error::ServerDown { retry_in, .. } => set(o, "retryIn", retry_in.as_millis() as f64),
        Error::ValueTooLarge { size, max } => {
            set(o, "size", *size as f64);
            set(o, "max", *max as f64);
        }
        Error::Replication {
            op,
            acked,
            required,
            failures,
        } => {
            set(o, "op", *op);
            set(o, "acked", *acked as f64);
            set(o, "required", *required as f64);
            set(o, "failures", failure_list(failures));
        }
        Error::CasRetriesExhausted { key, attempts } => {
            set(o, "key", key.as_str());
            set(o, "attempts", *attempts);
        }
        Error::LockNotAcquired {
            name,
            attempts,
            waited,
        } => {
            set(o, "name", name.as_str());
            set(o, "attempts", *attempts);
            set(o, "waited", waited.as_millis() as f64);
        }
        Error::Loader(m) | Error::Config(m) => set(o, "detail", m.as_str()),
        Error::Undecodable { flags, detail } => {
            set(o, "flags", *flags);
            set(o, "detail", detail.as_str());
        }
        Error::Tls {
            problem, detail, ..
        } => {
            set(o, "problem", problem.as_str());
            set(o, "detail", detail.as_str());
        }
        _ => {}
    }
    err.into()
}

/// `[{server, error}]`, as in a write report or a replication error.
pub(crate) fn failure_list(failures: &[(String, Error)]) -> Array {
    failures
        .iter()
        .map(|(s, e)| {
            let f = Object::new();
            set(&f, "server", s.as_str());
            set(&f, "error", error(e));
            JsValue::from(f)
        })
        .collect()
}

fn text(v: &JsValue, k: &str) -> String {
    get(v, k).as_string().unwrap_or_default()
}

fn millis(v: &JsValue, k: &str) -> Duration {
    Duration::from_millis(get(v, k).as_f64().map(ms).unwrap_or(0))
}

/// The core error behind a JavaScript error object: one made by [`error`] (round trip), or any
/// `Error` (a failure of the JS side: it counts as the server's failure only if its `kind` says
/// so). Used where the core decides from errors: health, write outcomes, read resolution.
pub(crate) fn error_from_js(v: &JsValue) -> Error {
    let server = text(v, "server");
    let detail = match get(v, "detail").as_string() {
        Some(d) => d,
        None => text(v, "message"),
    };
    match text(v, "kind").as_str() {
        "Timeout" => Error::Timeout {
            server,
            phase: match text(v, "phase").as_str() {
                "connect" => Phase::Connect,
                "write" => Phase::Write,
                _ => Phase::Read,
            },
            after: millis(v, "after"),
        },
        "ConnectionRefused" => Error::ConnectionRefused {
            server,
            source: Arc::new(io::Error::new(io::ErrorKind::ConnectionRefused, detail)),
        },
        "ConnectionClosed" => Error::ConnectionClosed {
            server,
            reason: detail,
        },
        "ServerDown" => Error::ServerDown {
            server,
            retry_in: millis(v, "retryIn"),
        },
        "Protocol" => Error::Protocol { server, detail },
        "Server" => Error::Server {
            server,
            message: detail,
        },
        "NotStored" => Error::NotStored,
        "Exists" => Error::Exists,
        "NotFound" => Error::NotFound,
        "Config" => Error::Config(detail),
        "Loader" => Error::Loader(detail),
        "Undecodable" => Error::Undecodable {
            flags: get(v, "flags").as_f64().unwrap_or(0.0) as u32,
            detail,
        },
        // Refused before anything was sent: these teach health nothing.
        "InvalidKey" => Error::InvalidKey {
            reason: multiput::error::KeyProblem::Empty,
        },
        "ValueTooLarge" => Error::ValueTooLarge {
            size: get(v, "size").as_f64().unwrap_or(0.0) as usize,
            max: get(v, "max").as_f64().unwrap_or(0.0) as usize,
        },
        "Unsupported" => Error::Unsupported {
            server,
            feature: "a feature the server lacks",
        },
        "Auth" => Error::Auth { server },
        "Tls" => Error::Tls {
            server,
            problem: multiput::error::TlsProblem::from_name(&text(v, "problem")),
            detail,
        },
        _ => Error::Client {
            server,
            message: detail,
        },
    }
}

/// A TLS failure `node:tls` reported, as the core's `Tls` error: `problem` is one of
/// `untrusted_certificate`, `hostname_mismatch`, `expired`, `client_certificate_rejected`,
/// `server_not_tls`, `handshake`; `detail` is Node's words (the core adds what to do).
#[wasm_bindgen(js_name = tlsError)]
pub fn tls_error(server: &str, problem: &str, detail: &str) -> JsValue {
    error(&Error::tls(
        server,
        multiput::error::TlsProblem::from_name(problem),
        detail,
    ))
}

/// Build one of the I/O errors only the JavaScript side can observe, with the core's wording:
/// `kind` is `timeout`, `refused`, `closed`, `protocol` or `down`.
#[wasm_bindgen(js_name = ioError)]
pub fn io_error(kind: &str, server: &str, detail: &str, millis: f64, phase: &str) -> JsValue {
    let server = server.to_string();
    let e = match kind {
        "timeout" => Error::Timeout {
            server,
            phase: match phase {
                "connect" => Phase::Connect,
                "write" => Phase::Write,
                _ => Phase::Read,
            },
            after: Duration::from_millis(ms(millis)),
        },
        "refused" => Error::ConnectionRefused {
            server,
            source: Arc::new(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                detail.to_string(),
            )),
        },
        "protocol" => Error::Protocol {
            server,
            detail: detail.to_string(),
        },
        "down" => Error::ServerDown {
            server,
            retry_in: Duration::from_millis(ms(millis)),
        },
        _ => Error::ConnectionClosed {
            server,
            reason: detail.to_string(),
        },
    };
    error(&e)
}

/// Build the errors the JavaScript recipes end with, in the core's wording: `kind` is
/// `CasRetriesExhausted` (`name` = key), `LockNotAcquired`, `Loader` (`detail`), `Config`
/// (`detail`), `Client` (`detail`) or `NotStored`/`Exists`/`NotFound`.
#[wasm_bindgen(js_name = recipeError)]
pub fn recipe_error(
    kind: &str,
    name: &str,
    attempts: u32,
    waited_ms: f64,
    detail: &str,
) -> JsValue {
    let e = match kind {
        "CasRetriesExhausted" => Error::CasRetriesExhausted {
            key: name.to_string(),
            attempts,
        },
        "LockNotAcquired" => Error::LockNotAcquired {
            name: name.to_string(),
            attempts,
            waited: Duration::from_millis(ms(waited_ms)),
        },
        "Loader" => Error::Loader(detail.to_string()),
        "Client" => Error::Client {
            server: String::new(),
            message: detail.to_string(),
        },
        "NotStored" => Error::NotStored,
        "Exists" => Error::Exists,
        "NotFound" => Error::NotFound,
        "Unsupported" => Error::Unsupported {
            server: String::new(),
            feature: "this call",
        },
        _ => Error::Config(detail.to_string()),
    };
    let err = error(&e);
    if kind == "Unsupported" && !detail.is_empty() {
        set(err.unchecked_ref(), "message", detail);
        set(err.unchecked_ref(), "detail", detail);
    }
    err
}
