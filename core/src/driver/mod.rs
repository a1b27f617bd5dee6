//! The driver layer: the clients and everything that touches the world — sockets, the clock,
//! sleeping, randomness, `fork()`. They move bytes and time and nothing else: where a call goes,
//! what it sends, what the reply means and every multi-step behaviour are decided by the
//! logic layer ([`crate::logic`]); a driver runs its machines with one loop (`drive`).
//!
//! - [`crate::Client`] (tokio) and [`crate::blocking::Client`]: the same call list
//!   (`api::client_api`, `recipes::recipes_api`), over pipelined connections
//!   (`tokio_conn`) or pooled blocking ones (`blocking_conn`).
//! - `replicated`: the replicated client over either.
//! - [`crate::fork`]: per-process state across `fork()`.
//! - `entropy`: writer ids and lock owner tokens.

pub(crate) mod api;
pub mod blocking;
pub(crate) mod blocking_conn;
pub mod cache;
#[cfg(feature = "tokio")]
pub mod client;
pub mod entropy;
pub mod fork;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod recipes;
pub(crate) mod replicated;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(not(feature = "tls"))]
pub(crate) mod tls {
    //! Built without the `tls` feature: a TLS configuration is refused when the client is
    //! built.
    use crate::error::Error;

    #[derive(Clone, Debug)]
    pub(crate) enum TlsContext {}

    impl TlsContext {
        pub fn new(_: &crate::config::Tls) -> Result<TlsContext, Error> {
            Err(Error::Config(
                "this build of multiput has no TLS support (the core's tls feature)".into(),
            ))
        }
    }
}
#[cfg(feature = "tokio")]
pub(crate) mod tokio_conn;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::machine::{Cx, Now};
use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Monotonic time since a process-wide origin (the first call): the one time the logic layer
/// is given, as [`Now::mono`] or in milliseconds ([`mono_ms`]) for server health. WASM hosts
/// pass `performance.now()` instead.
pub fn mono() -> Duration {
    Instant::now().saturating_duration_since(origin())
}

/// The origin of [`mono`]: fixed by the first call.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The instant that is `d` after [`mono`]'s origin (a deadline the logic layer computed).
pub(crate) fn instant_at(d: Duration) -> Instant {
    origin() + d
}

/// [`mono`] in milliseconds.
pub fn mono_ms() -> u64 {
    mono().as_millis() as u64
}

/// The time for a machine's next step: monotonic and wall clock.
pub(crate) fn now() -> Now {
    Now {
        mono: mono(),
        wall_ms: crate::envelope::wall_ms(SystemTime::now()),
    }
}

/// What a machine sees at its next step.
pub(crate) fn cx(cl: &Cluster) -> Cx<'_> {
    Cx {
        cluster: cl,
        now: now(),
    }
}

/// The answer to a [`crate::machine::Step::Decide`] from a machine that never asks (a bug).
pub(crate) fn no_decision<V>(_: Option<&V>) -> Result<crate::recipes::Update, Error> {
    Err(Error::Client {
        server: String::new(),
        message: "this call takes no decision function (a driver bug)".into(),
    })
}

/// The answer to a [`crate::machine::Step::Load`] from a machine that never loads (a bug).
pub(crate) fn no_loader() -> Error {
    Error::Client {
        server: String::new(),
        message: "this call has no loader (a driver bug)".into(),
    }
}

/// Map a connect error to the crate's error.
pub(crate) fn connect_error(server: &str, e: io::Error) -> Error {
    Error::ConnectionRefused {
        server: server.to_string(),
        source: Arc::new(e),
    }
}

/// Map a broken-connection error to the crate's error.
pub(crate) fn closed(server: &str, reason: impl std::fmt::Display) -> Error {
    Error::ConnectionClosed {
        server: server.to_string(),
        reason: reason.to_string(),
    }
}
