//! The one error type of the crate.
//!
//! Every fallible call returns [`Error`]. Variants say what happened and, where the caller can
//! act, what to do. Bindings map them to their language's idiom (Python exception classes, PHP
//! result codes, JS `Error` subclasses) through [`Error::kind`], which is stable.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in a memcached call.
///
/// Errors are `Clone` so that a multi-key call can report one server's failure at every key it
/// owned.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key breaks memcached's key rules; nothing was sent.
    #[error("invalid key: {reason} (keys are 1-250 bytes with no whitespace or control characters; the binary_keys option takes up to 186 bytes of anything, sent base64-encoded over the meta protocol)")]
    InvalidKey {
        /// Why the key was refused.
        reason: KeyProblem,
    },
    /// The value is larger than the configured maximum item size (`max > 0`; nothing was
    /// sent), or the server refused it as larger than its own item size limit (`max == 0`:
    /// `SERVER_ERROR object too large for cache`; `size` is 0 when not known).
    #[error("{}", too_large_message(*.size, *.max))]
    ValueTooLarge {
        /// The value's size in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A conditional store (add, replace, append, prepend) was refused: `NOT_STORED`.
    #[error("not stored: the server refused the conditional store (add on an existing key, or replace/append/prepend on a missing one)")]
    NotStored,
    /// A compare-and-swap lost: the item changed since its CAS value was read (`EXISTS`).
    #[error("CAS conflict: the item was modified since it was read; read it again and retry")]
    Exists,
    /// The key does not exist (`NOT_FOUND`) for an operation that needs it.
    #[error("not found: the key does not exist on its server")]
    NotFound,
    /// The server reported an error of its own (`SERVER_ERROR ...`).
    #[error("server error{}: {message}", origin(" from ", .server))]
    Server {
        /// The server that answered.
        server: String,
        /// The server's text.
        message: String,
    },
    /// memcached's ASCII authentication (`-Y`) refused this client: wrong credentials, or
    /// none configured for a server that requires them. Never contains the credentials.
    #[error("authentication failed on {server}: the server refuses this client's credentials, or requires credentials and none are configured; check the username and password options (memcached -Y auth file)")]
    Auth {
        /// The server that refused.
        server: String,
    },
    /// TLS could not be set up with the server: see [`TlsProblem`] for what to do.
    #[error("TLS with {server} failed ({problem}): {detail}")]
    Tls {
        /// The server.
        server: String,
        /// What went wrong.
        problem: TlsProblem,
        /// Details (rustls's or the platform's words).
        detail: String,
    },
    /// The server says the client sent a bad request (`CLIENT_ERROR ...` or `ERROR`).
    #[error("client error{}: {message}", origin(" reported by ", .server))]
    Client {
        /// The server that answered.
        server: String,
        /// The server's text.
        message: String,
    },
    /// No reply within the configured timeout; the connection was discarded.
    #[error("timed out after {after:?} waiting for {server} ({phase}); the server may be overloaded, stopped or unreachable")]
    Timeout {
        /// The server.
        server: String,
        /// What was being waited for.
        phase: Phase,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection could not be opened.
    #[error("cannot connect to {server}: {source}")]
    ConnectionRefused {
        /// The server.
        server: String,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection broke or was closed by the server mid-request.
    #[error("connection to {server} closed: {reason}")]
    ConnectionClosed {
        /// The server.
        server: String,
        /// What happened.
        reason: String,
    },
    /// The server failed repeatedly and is skipped until its retry interval passes.
    #[error(
        "server {server} is marked down after repeated failures; it is retried in {retry_in:?}"
    )]
    ServerDown {
        /// The server.
        server: String,
        /// Time left until the next attempt is allowed.
        retry_in: Duration,
    },
    /// The server sent bytes that are not valid memcached protocol; the connection was discarded.
    #[error("protocol violation from {server}: {detail}")]
    Protocol {
        /// The server (empty when decoding outside a connection).
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// A feature the server does not have (for example the meta protocol on memcached < 1.6).
    #[error("{}", unsupported_message(server, feature))]
    Unsupported {
        /// The server.
        server: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// A replicated call did not reach as many replicas as its policy requires. Replicas that
    /// did store (for a write) keep the value; the failures say what happened to the others.
    #[error("replicated {op} reached {acked} of the {required} replicas it needs; {}", failure_list(.failures))]
    Replication {
        /// `"write"`, `"delete"` or `"read"`.
        op: &'static str,
        /// Replicas that stored (write) or answered (read).
        acked: usize,
        /// Replicas the policy requires.
        required: usize,
        /// `(host:port, error)` of each replica that failed.
        failures: Vec<(String, Error)>,
    },
    /// A CAS update kept losing to other writers and gave up.
    #[error("cas update of {key} gave up after {attempts} attempts: other writers kept changing it (raise max_attempts or the deadline, or reduce contention on this key)")]
    CasRetriesExhausted {
        /// The key.
        key: String,
        /// Reads made.
        attempts: u32,
    },
    /// A lock was held by someone else for the whole wait.
    #[error(
        "lock {name} is held by another owner; gave up after {attempts} attempts in {waited:?}"
    )]
    LockNotAcquired {
        /// The lock's name.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent waiting.
        waited: Duration,
    },
    /// The loader of a `get_or_set` failed; nothing was stored.
    #[error("the loader failed: {0}")]
    Loader(String),
    /// A stored value whose flags and bytes disagree: written by a client of another flags
    /// convention, or corrupt. The message names the likely writer and the setting that reads
    /// it ([`crate::values::decode_checked`]). Nothing is wrong with the connection.
    #[error("{detail}")]
    Undecodable {
        /// The value's memcached flags.
        flags: u32,
        /// What its flags mean here, why the bytes do not fit, and what to do.
        detail: String,
    },
    /// The client has no servers configured, or the configuration is invalid.
    #[error("configuration error: {0}")]
    Config(String),
}

fn failure_list(failures: &[(String, Error)]) -> String {
    if failures.is_empty() {
        return "no replica failed, but too few were asked".into();
    }
    let parts: Vec<String> = failures.iter().map(|(s, e)| format!("{s}: {e}")).collect();
    format!("failed: {}", parts.join("; "))
}

/// Why a key was refused. See [`crate::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// Zero bytes.
    Empty,
    /// More than 250 bytes (after the prefix is added).
    TooLong(usize),
    /// Contains a space, tab, CR, LF or other ASCII control byte at this offset.
    ForbiddenByte(usize),
    /// A key that must go base64-encoded (binary keys) is longer than
    /// [`crate::key::MAX_BINARY_KEY_LEN`] bytes: its encoded form would pass memcached's 250.
    BinaryTooLong(usize),
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("the key is empty"),
            KeyProblem::TooLong(n) => write!(f, "the key is {n} bytes long, over the limit of 250"),
            KeyProblem::ForbiddenByte(at) => {
                write!(f, "the key has a space or control byte at offset {at}")
            }
            KeyProblem::BinaryTooLong(n) => write!(
                f,
                "the key is {n} bytes long and, with spaces or control bytes, must be sent \
                 base64-encoded: over the limit of {} for such keys",
                crate::key::MAX_BINARY_KEY_LEN
            ),
        }
    }
}

/// Which part of a round trip timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the TCP connection.
    Connect,
    /// Sending the request.
    Write,
    /// Waiting for the reply.
    Read,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Write => "write",
            Phase::Read => "read",
        })
    }
}

/// A stable, binding-friendly classification of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InvalidKey`]
    InvalidKey,
    /// [`Error::ValueTooLarge`]
    ValueTooLarge,
    /// [`Error::NotStored`]
    NotStored,
    /// [`Error::Exists`]
    Exists,
    /// [`Error::NotFound`]
    NotFound,
    /// [`Error::Server`]
    Server,
    /// [`Error::Client`]
    Client,
    /// [`Error::Timeout`]
    Timeout,
    /// [`Error::ConnectionRefused`]
    ConnectionRefused,
    /// [`Error::ConnectionClosed`]
    ConnectionClosed,
    /// [`Error::ServerDown`]
    ServerDown,
    /// [`Error::Protocol`]
    Protocol,
    /// [`Error::Unsupported`]
    Unsupported,
    /// [`Error::Replication`]
    Replication,
    /// [`Error::CasRetriesExhausted`]
    CasRetriesExhausted,
    /// [`Error::LockNotAcquired`]
    LockNotAcquired,
    /// [`Error::Loader`]
    Loader,
    /// [`Error::Undecodable`]
    Undecodable,
    /// [`Error::Config`]
    Config,
    /// [`Error::Auth`]
    Auth,
    /// [`Error::Tls`]
    Tls,
}

/// Why a TLS connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server's certificate is not signed by a trusted authority: set `tls_ca` to the
    /// CA that signed it.
    UntrustedCertificate,
    /// The certificate does not name the server: connect by the name it carries, or set
    /// `tls_server_name`.
    HostnameMismatch,
    /// The certificate has expired (or is not valid yet): renew it, or check the clock.
    Expired,
    /// The server refused this client's certificate (or needs one): set `tls_cert` and
    /// `tls_key` to a certificate its `ssl_ca_cert` trusts.
    ClientCertificateRejected,
    /// The server does not speak TLS (a plain memcached): turn the `tls` option off for it.
    ServerNotTls,
    /// The server speaks TLS and this connection does not: turn the `tls` option on.
    ServerSpeaksTls,
    /// Another handshake failure.
    Handshake,
}

impl TlsProblem {
    /// A stable name: `untrusted_certificate`, `hostname_mismatch`, `expired`,
    /// `client_certificate_rejected`, `server_not_tls`, `server_speaks_tls`, `handshake`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsProblem::UntrustedCertificate => "untrusted_certificate",
            TlsProblem::HostnameMismatch => "hostname_mismatch",
            TlsProblem::Expired => "expired",
            TlsProblem::ClientCertificateRejected => "client_certificate_rejected",
            TlsProblem::ServerNotTls => "server_not_tls",
            TlsProblem::ServerSpeaksTls => "server_speaks_tls",
            TlsProblem::Handshake => "handshake",
        }
    }
}

impl TlsProblem {
    /// The problem named by [`TlsProblem::as_str`]; an unknown name is [`TlsProblem::Handshake`].
    pub fn from_name(name: &str) -> TlsProblem {
        match name {
            "untrusted_certificate" => TlsProblem::UntrustedCertificate,
            "hostname_mismatch" => TlsProblem::HostnameMismatch,
            "expired" => TlsProblem::Expired,
            "client_certificate_rejected" => TlsProblem::ClientCertificateRejected,
            "server_not_tls" => TlsProblem::ServerNotTls,
            "server_speaks_tls" => TlsProblem::ServerSpeaksTls,
            _ => TlsProblem::Handshake,
        }
    }

    /// What to do about it, in every binding's words (option names are the core's; Node
    /// spells them in camelCase).
    pub fn advice(self) -> &'static str {
        match self {
            TlsProblem::UntrustedCertificate => {
                "set tls_ca (Node: tlsCa) to the certificate of the CA that signed the server's certificate"
            }
            TlsProblem::HostnameMismatch => {
                "connect by a name the certificate carries, or set tls_server_name (Node: tlsServerName)"
            }
            TlsProblem::Expired => "renew the server's certificate, or check this machine's clock",
            TlsProblem::ClientCertificateRejected => {
                "the server verifies clients: set tls_cert and tls_key (Node: tlsCert, tlsKey) to a certificate its ssl_ca_cert trusts"
            }
            TlsProblem::ServerNotTls => {
                "the server is not a TLS listener (memcached without -Z): turn tls off for it (or leave it out of tls_servers)"
            }
            TlsProblem::ServerSpeaksTls => {
                "a TLS listener (memcached -Z) does this to clients that do not start TLS: if it is one, turn the tls option on for it"
            }
            TlsProblem::Handshake => "see the detail",
        }
    }
}

impl Error {
    /// [`Error::Tls`] for `server`: `what` happened, followed by the problem's advice.
    pub fn tls(server: impl Into<String>, problem: TlsProblem, what: impl fmt::Display) -> Error {
        Error::Tls {
            server: server.into(),
            problem,
            detail: format!("{what}; {}", problem.advice()),
        }
    }
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsProblem::UntrustedCertificate => "untrusted certificate",
            TlsProblem::HostnameMismatch => "certificate does not name the server",
            TlsProblem::Expired => "certificate expired or not yet valid",
            TlsProblem::ClientCertificateRejected => "client certificate rejected",
            TlsProblem::ServerNotTls => "the server does not speak TLS",
            TlsProblem::ServerSpeaksTls => "the server requires TLS",
            TlsProblem::Handshake => "handshake failed",
        })
    }
}

impl Error {
    /// The error's stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKey { .. } => ErrorKind::InvalidKey,
            Error::ValueTooLarge { .. } => ErrorKind::ValueTooLarge,
            Error::NotStored => ErrorKind::NotStored,
            Error::Exists => ErrorKind::Exists,
            Error::NotFound => ErrorKind::NotFound,
            Error::Server { .. } => ErrorKind::Server,
            Error::Client { .. } => ErrorKind::Client,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::ConnectionRefused { .. } => ErrorKind::ConnectionRefused,
            Error::ConnectionClosed { .. } => ErrorKind::ConnectionClosed,
            Error::ServerDown { .. } => ErrorKind::ServerDown,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Replication { .. } => ErrorKind::Replication,
            Error::CasRetriesExhausted { .. } => ErrorKind::CasRetriesExhausted,
            Error::LockNotAcquired { .. } => ErrorKind::LockNotAcquired,
            Error::Loader(_) => ErrorKind::Loader,
            Error::Undecodable { .. } => ErrorKind::Undecodable,
            Error::Config(_) => ErrorKind::Config,
        }
    }

    /// True when the failure says something about the server's health (timeouts, refused or
    /// broken connections, garbage on the wire) rather than about the request. These count
    /// towards marking a server down.
    pub fn is_server_failure(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::ConnectionRefused { .. }
                | Error::ConnectionClosed { .. }
                | Error::Protocol { .. }
                | Error::Auth { .. }
                | Error::Tls { .. }
        )
    }

    /// The server the error is about, when it names one (empty names are `None`).
    pub fn server(&self) -> Option<&str> {
        match self {
            Error::Timeout { server, .. }
            | Error::ConnectionRefused { server, .. }
            | Error::ConnectionClosed { server, .. }
            | Error::ServerDown { server, .. }
            | Error::Protocol { server, .. }
            | Error::Server { server, .. }
            | Error::Client { server, .. }
            | Error::Auth { server }
            | Error::Tls { server, .. }
            | Error::Unsupported { server, .. } => Some(server.as_str()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// Fill in the server name of errors produced by the codec, which does not know it (a
    /// binding that carries bytes itself, like the WASM one, calls this after decoding).
    pub fn at_server(mut self, name: &str) -> Self {
        match &mut self {
            Error::Server { server, .. }
            | Error::Client { server, .. }
            | Error::Protocol { server, .. }
            | Error::Unsupported { server, .. }
                if server.is_empty() =>
            {
                server.push_str(name)
            }
            _ => {}
        }
        self
    }
}

fn unsupported_message(server: &str, feature: &str) -> String {
    if server.is_empty() {
        format!("not supported: {feature}")
    } else {
        format!("{server} does not support {feature}")
    }
}

fn too_large_message(size: usize, max: usize) -> String {
    let value = if size > 0 {
        format!("value of {size} bytes")
    } else {
        "value".to_string()
    };
    if max > 0 {
        format!("{value} is larger than the maximum item size of {max} bytes (raise `max_value_size` only if the servers run with a larger -I)")
    } else {
        format!("{value} refused by the server: larger than its item size limit (-I) once the key and item header are added")
    }
}

/// `" from host:port"` for an error a server reported, nothing for one the client raised
/// itself (a replicated counter on a non-numeric value has no single server to name).
fn origin(word: &str, server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!("{word}{server}")
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_filling_them_in() {
        let e = Error::Protocol {
            server: String::new(),
            detail: "bad".into(),
        };
        assert_eq!(e.server(), None);
        let e = e.at_server("127.0.0.1:11211");
        assert_eq!(e.server(), Some("127.0.0.1:11211"));
        // A name already there is kept.
        assert_eq!(e.at_server("other:1").server(), Some("127.0.0.1:11211"));
        assert_eq!(Error::NotStored.server(), None);
        assert_eq!(Error::NotStored.at_server("x:1").server(), None);
        let c = Error::Client {
            server: String::new(),
            message: "cannot increment or decrement a non-numeric value".into(),
        };
        assert_eq!(
            c.to_string(),
            "client error: cannot increment or decrement a non-numeric value"
        );
        assert_eq!(
            c.at_server("h:1").to_string(),
            "client error reported by h:1: cannot increment or decrement a non-numeric value"
        );
    }
}
