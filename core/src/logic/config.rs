//! Client configuration, shared by both drivers.

use crate::error::Error;
use crate::ring::RingMode;
use crate::server::ServerSpec;
use std::time::Duration;

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Probe each server when connecting (`version` then `mn`) and use the meta protocol where
    /// it answers, the text protocol elsewhere. The default.
    #[default]
    Auto,
    /// Always the text protocol. Meta-only calls fail with [`Error::Unsupported`].
    Text,
    /// Always the meta protocol; connecting to a server without it fails.
    Meta,
}

/// Everything a client needs to know. Build it with [`crate::ClientBuilder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers, in configuration order (the order matters for ring ties).
    pub servers: Vec<ServerSpec>,
    /// How keys are placed. Default: [`RingMode::LibketamaCompatible`].
    pub ring_mode: RingMode,
    /// Text, meta, or detect. Default: detect.
    pub protocol: ProtocolChoice,
    /// Bound on opening a TCP connection (and its protocol probe). Default 1 s.
    pub connect_timeout: Duration,
    /// Bound on one request: from the moment it is queued until its whole reply arrived.
    /// Default 1 s.
    pub timeout: Duration,
    /// Consecutive failures (timeouts, broken connections) after which a server is marked down.
    /// A refused connection marks it down at once. Default 1: a stopped or overloaded server
    /// costs callers one timeout, then fails fast until `retry_interval` has passed.
    pub failure_limit: u32,
    /// How long a down server is skipped (calls to it fail fast with
    /// [`Error::ServerDown`]) before one call may try it again. Default 1 s.
    pub retry_interval: Duration,
    /// The largest value accepted, and the largest a reply may announce. Default 1 MiB, which is
    /// memcached's default item size limit (`-I`).
    pub max_value_size: usize,
    /// Connections per server for the async client, which multiplexes (pipelines) every
    /// caller over them. Default 1: on memcached 1.6.18 one pipelined connection beat two and
    /// four in every pinned measurement (docs/benchmarks.md).
    pub connections_per_server: usize,
    /// Idle connections per server the blocking client keeps for reuse. A thread takes one
    /// per call (opening one only when none is idle) and gives it back, so up to this many
    /// threads calling at once never connect after warm-up. Default 16.
    pub blocking_pool_size: usize,
    /// A namespace prepended to every key on the wire, like libmemcached's prefix key
    /// (php-memcached `OPT_PREFIX_KEY`). As in libmemcached, the prefix is not hashed: keys are
    /// placed on the ring by the key without it. The prefixed key must obey the key rules.
    pub key_prefix: Vec<u8>,
    /// Set `TCP_NODELAY` on connections. Default true.
    pub tcp_nodelay: bool,
    /// Also accept keys with spaces and control bytes (1 to 186 bytes, any content) and send
    /// them base64-encoded through the meta protocol's `b` flag; memcached stores the decoded
    /// bytes, the same item a binary-protocol client (libmemcached, PECL memcached with
    /// `OPT_BINARY_PROTOCOL`) writes under that key. Keys that obey the text rules are still
    /// sent as they are. On a text-protocol connection such a key fails with
    /// [`Error::Unsupported`]. Default false: such keys are refused with
    /// [`Error::InvalidKey`], as pylibmc and pymemcache refuse them.
    pub binary_keys: bool,
    /// TLS to every server (memcached `-Z`); `None`: plain TCP. The ring does not change:
    /// keys are placed by `host:port` as without TLS.
    pub tls: Option<Tls>,
    /// memcached's ASCII authentication (`-Y`): sent right after connecting, before anything
    /// else. `None`: no authentication.
    pub auth: Option<Credentials>,
}

/// How connections use TLS. Paths are read by the driver when the client is built (the
/// logic layer reads no files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of the certificate authorities that may sign the servers' certificates;
    /// `None`: the system's trust store.
    pub ca_file: Option<String>,
    /// PEM file of this client's certificate chain, for servers that verify clients
    /// (memcached `ssl_ca_cert` with `ssl_verify_mode`); with `key_file`.
    pub cert_file: Option<String>,
    /// PEM file of this client's private key.
    pub key_file: Option<String>,
    /// The name the servers' certificates must carry; `None`: each server's host as
    /// configured (an IP address is checked as an IP address).
    pub server_name: Option<String>,
    /// Only these servers (their `host:port` addresses) speak TLS, the others plain TCP;
    /// `None`: every server. Placement does not change either way.
    pub servers: Option<Vec<String>>,
}

/// A user name and password for memcached's ASCII authentication. Its `Debug` never shows
/// the password, and no error text contains either.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (no spaces or control characters).
    pub username: String,
    /// The password (no spaces or control characters).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: Vec::new(),
            ring_mode: RingMode::default(),
            protocol: ProtocolChoice::default(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_limit: 1,
            retry_interval: Duration::from_secs(1),
            max_value_size: 1024 * 1024,
            connections_per_server: 1,
            blocking_pool_size: 16,
            key_prefix: Vec::new(),
            tcp_nodelay: true,
            binary_keys: false,
            tls: None,
            auth: None,
        }
    }
}

impl Config {
    /// Whether connections to server `i` use TLS.
    pub fn uses_tls(&self, i: usize) -> bool {
        match &self.tls {
            None => false,
            Some(Tls { servers: None, .. }) => true,
            Some(Tls {
                servers: Some(list),
                ..
            }) => self
                .servers
                .get(i)
                .is_some_and(|s| list.contains(&s.address())),
        }
    }

    /// A builder with these servers (strings as [`ConfigBuilder::servers`] takes them).
    pub fn builder_for_tests<S: AsRef<str>>(servers: &[S]) -> ConfigBuilder {
        ConfigBuilder::default().servers(servers.iter().map(|s| s.as_ref()))
    }

    /// Check the configuration for mistakes a client cannot work with.
    pub fn validate(&self) -> Result<(), Error> {
        if self.servers.is_empty() {
            return Err(Error::Config("no servers configured".into()));
        }
        if self.connections_per_server == 0 {
            return Err(Error::Config(
                "connections_per_server must be at least 1".into(),
            ));
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be greater than zero".into()));
        }
        if self.key_prefix.len() >= crate::key::MAX_KEY_LEN {
            return Err(Error::Config("key prefix leaves no room for keys".into()));
        }
        if !self.key_prefix.is_empty() {
            crate::key::validate(&self.key_prefix)?;
        }
        if let Some(t) = &self.tls {
            for a in t.servers.iter().flatten() {
                if !self.servers.iter().any(|s| &s.address() == a) {
                    return Err(Error::Config(format!(
                        "tls_servers: {a} is not one of the servers"
                    )));
                }
            }
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(Error::Config(
                    "a TLS client certificate needs both tls_cert and tls_key".into(),
                ));
            }
        }
        if let Some(a) = &self.auth {
            let bad = |s: &str| s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f);
            if bad(&a.username) || bad(&a.password) {
                return Err(Error::Config(
                    "username and password must be non-empty, without spaces or control characters (memcached's ASCII authentication sends them on one line)".into(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_value_size: self.max_value_size,
            ..crate::protocol::Limits::default()
        }
    }
}

/// A builder for [`Config`], used by both clients' `builder()`.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    config: Config,
    errors: Vec<String>,
}

impl ConfigBuilder {
    /// Add servers, parsed from `host`, `host:port` or `host:port:weight` strings (or given as
    /// [`ServerSpec`]s).
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: TryInto<ServerSpec>,
        S::Error: std::fmt::Display,
    {
        for s in servers {
            match s.try_into() {
                Ok(spec) => self.config.servers.push(spec),
                Err(e) => self.errors.push(e.to_string()),
            }
        }
        self
    }

    /// Add one server.
    pub fn server(self, server: impl TryInto<ServerSpec, Error: std::fmt::Display>) -> Self {
        self.servers([server])
    }

    /// See [`Config::ring_mode`].
    pub fn ring_mode(mut self, mode: RingMode) -> Self {
        self.config.ring_mode = mode;
        self
    }

    /// See [`Config::protocol`].
    pub fn protocol(mut self, p: ProtocolChoice) -> Self {
        self.config.protocol = p;
        self
    }

    /// See [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.config.connect_timeout = t;
        self
    }

    /// See [`Config::timeout`].
    pub fn timeout(mut self, t: Duration) -> Self {
        self.config.timeout = t;
        self
    }

    /// See [`Config::failure_limit`].
    pub fn failure_limit(mut self, n: u32) -> Self {
        self.config.failure_limit = n.max(1);
        self
    }

    /// See [`Config::retry_interval`].
    pub fn retry_interval(mut self, t: Duration) -> Self {
        self.config.retry_interval = t;
        self
    }

    /// See [`Config::max_value_size`].
    pub fn max_value_size(mut self, n: usize) -> Self {
        self.config.max_value_size = n;
        self
    }

    /// See [`Config::connections_per_server`].
    pub fn connections_per_server(mut self, n: usize) -> Self {
        self.config.connections_per_server = n;
        self
    }

    /// See [`Config::blocking_pool_size`].
    pub fn blocking_pool_size(mut self, n: usize) -> Self {
        self.config.blocking_pool_size = n;
        self
    }

    /// See [`Config::key_prefix`].
    pub fn key_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// See [`Config::tcp_nodelay`].
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.config.tcp_nodelay = on;
        self
    }

    /// See [`Config::binary_keys`].
    pub fn binary_keys(mut self, on: bool) -> Self {
        self.config.binary_keys = on;
        self
    }

    /// TLS to every server (`None`: plain TCP). See [`Config::tls`].
    pub fn tls(mut self, tls: Option<Tls>) -> Self {
        self.config.tls = tls;
        self
    }

    /// memcached's ASCII authentication. See [`Config::auth`].
    pub fn auth(mut self, auth: Option<Credentials>) -> Self {
        self.config.auth = auth;
        self
    }

    /// The checked configuration.
    pub fn build_config(self) -> Result<Config, Error> {
        if !self.errors.is_empty() {
            return Err(Error::Config(self.errors.join("; ")));
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

impl TryFrom<&str> for ServerSpec {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        s.parse()
    }
}

impl TryFrom<&String> for ServerSpec {
    type Error = Error;
    fn try_from(s: &String) -> Result<Self, Error> {
        s.parse()
    }
}

impl TryFrom<String> for ServerSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}
