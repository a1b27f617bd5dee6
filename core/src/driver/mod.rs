//! I/O drivers. They move bytes and time and nothing else: where a call goes, what it sends and
//! what the reply means are decided by [`crate::cluster`] and [`crate::ops`].

#[cfg(feature = "tokio")]
pub(crate) mod tokio_conn;

pub(crate) mod blocking_conn;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::machine::{Cx, Now};
use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The time for a machine's next step: the cluster's monotonic health clock and the wall clock.
pub(crate) fn now(cl: &Cluster) -> Now {
    Now {
        mono: cl.clock().since(Instant::now()),
        wall_ms: crate::envelope::wall_ms(SystemTime::now()),
    }
}

/// What a machine sees at its next step.
pub(crate) fn cx(cl: &Cluster) -> Cx<'_> {
    Cx {
        cluster: cl,
        now: now(cl),
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
