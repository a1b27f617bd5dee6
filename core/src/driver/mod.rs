//! I/O drivers. They move bytes and time and nothing else: where a call goes, what it sends and
//! what the reply means are decided by [`crate::cluster`] and [`crate::ops`].

#[cfg(feature = "tokio")]
pub(crate) mod tokio_conn;

pub(crate) mod blocking_conn;

use crate::error::Error;
use std::io;
use std::sync::Arc;

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
