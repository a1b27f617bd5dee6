//! A client's options by name, parsed once for every binding.
//!
//! Each binding takes options in its own idiom (Python keyword arguments, PHP arrays and PECL
//! constants, a JavaScript object, the C ABI's `name=value` strings) and hands them here by
//! their canonical names, as text. The rules live here and nowhere else: what each name means
//! and accepts, the defaults, how the server list is written, when a client is replicated,
//! how many copies it keeps, and how the read and write policies resolve against that count.
//! An option a binding does not recognise is passed through, so the core's error names it.
//!
//! | name | value | default |
//! | --- | --- | --- |
//! | `servers` | `host[:port[:weight]]` separated by `,`, `;` or whitespace (an `inet:` prefix is dropped; IPv6 in brackets); replaces the list | none |
//! | `ring` (`distribution`) | `libketama_compatible` (`ketama_weighted`, `weighted`), `ketama_md5`, `modula`, `rendezvous` | `libketama_compatible` |
//! | `protocol` | `auto`, `text` (`ascii`), `meta` | `auto` |
//! | `timeout_ms`, `connect_timeout_ms` | milliseconds (decimals allowed), above 0 | 1000 |
//! | `retry_ms` | how long a down server is skipped, milliseconds | 1000 |
//! | `failure_limit` | failures in a row that mark a server down (at least 1) | 1 |
//! | `max_value_size` | bytes | 1048576 |
//! | `pool_size` | idle connections the blocking client keeps per server | 16 |
//! | `connections_per_server` | pipelined connections of the async client per server | 1 |
//! | `tcp_nodelay` | boolean | true |
//! | `binary_keys` | boolean: keys outside the text rules go base64 over meta | false |
//! | `prefix` (`key_prefix`) | key prefix sent on the wire, never hashed | empty |
//! | `mode` | `plain` or `replicated` | `replicated` when `replicas` > 1 |
//! | `replicas` | copies per key (replicated mode) | 1 plain; replicated: 2, at most the servers |
//! | `write` (`write_policy`) | `all`, `one`, `quorum`, `quorum:N` or `N` | `all` |
//! | `read` (`read_policy`) | `all`, `first_hit` (`first`), `quorum`, `quorum:N` or `N` | `all` |
//! | `tombstone_ttl` | seconds a replicated delete is remembered | 86400 |
//! | `failover` | boolean: move copies off down servers | false |
//! | `read_repair` | boolean | true |
//! | `convention` | plain values' flags: `multiput`, `pecl`, `pylibmc` | `multiput` |
//! | `compress_threshold` | compress plain values of at least this many bytes; 0 never | 0 |
//! | `cas_attempts`, `cas_deadline_ms` | bounds of a CAS update | 32, 2000 |
//! | `tls` | boolean: TLS to every server (memcached `-Z`) | false |
//! | `tls_ca` | PEM file of the CAs that sign the servers' certificates (implies `tls`) | the system's trust store |
//! | `tls_cert`, `tls_key` | PEM files of a client certificate and its key, for servers that verify clients (imply `tls`) | none |
//! | `tls_server_name` | the name the servers' certificates must carry (implies `tls`) | each server's host |
//! | `tls_servers` | only these servers speak TLS (a server list as `servers`; implies `tls`) | every server |
//! | `username`, `password` | memcached's ASCII authentication (`-Y`), sent first on every connection | none |
//!
//! SASL exists only in memcached's binary protocol, which multiput does not speak: the `sasl`
//! option is refused with an error that says to use ASCII authentication.
//!
//! Booleans are `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` (any case).

use crate::config::{Config, ProtocolChoice};
use crate::error::Error;
use crate::logic::recipe::CasOptions;
use crate::replication::{Policy, ReadPolicy, WritePolicy};
use crate::ring::RingMode;
use crate::server::ServerSpec;
use crate::values::{Convention, Family};
use std::time::Duration;

/// Every option name [`Setup::set`] takes (aliases not listed).
pub const NAMES: &[&str] = &[
    "servers",
    "ring",
    "protocol",
    "timeout_ms",
    "connect_timeout_ms",
    "retry_ms",
    "failure_limit",
    "max_value_size",
    "pool_size",
    "connections_per_server",
    "tcp_nodelay",
    "binary_keys",
    "prefix",
    "mode",
    "replicas",
    "write",
    "read",
    "tombstone_ttl",
    "failover",
    "read_repair",
    "convention",
    "compress_threshold",
    "cas_attempts",
    "cas_deadline_ms",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_server_name",
    "tls_servers",
    "username",
    "password",
];

/// Plain or replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One copy per key, plain values any memcached client reads.
    Plain,
    /// Copies on `replicas` servers, each value in the envelope.
    Replicated,
}

/// A client's options being set by name; [`Setup::build`] checks them together.
#[derive(Debug, Clone)]
pub struct Setup {
    config: Config,
    family: Family,
    convention: Option<Convention>,
    mode: Option<Mode>,
    replicas: Option<usize>,
    write: Option<String>,
    read: Option<String>,
    policy: Policy,
    compress_threshold: usize,
    cas: CasOptions,
}

/// What [`Setup::build`] makes: everything a client is built from.
#[derive(Debug, Clone)]
pub struct Built {
    /// The connection and ring settings (checked).
    pub config: Config,
    /// The replication policy (checked against the servers); `None` in plain mode.
    pub policy: Option<Policy>,
    /// How plain values are typed by their flags.
    pub convention: Convention,
    /// Plain values of at least this many bytes are compressed (0: never).
    pub compress_threshold: usize,
    /// How CAS updates retry.
    pub cas: CasOptions,
}

/// Split a server list: `,`, `;` and whitespace separate; an `inet:` prefix is dropped.
pub fn server_list(text: &str) -> Result<Vec<ServerSpec>, Error> {
    text.split([',', ';', ' ', '\n', '\t', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.strip_prefix("inet:").unwrap_or(s).parse())
        .collect()
}

/// A boolean option's value.
pub fn boolean(name: &str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::Config(format!(
            "option {name}: {v:?} is not a boolean (1/0, true/false)"
        ))),
    }
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, Error> {
    v.trim()
        .parse()
        .map_err(|_| Error::Config(format!("option {name}: {v:?} is not a valid number")))
}

fn millis(name: &str, v: &str) -> Result<Duration, Error> {
    let ms: f64 = number(name, v)?;
    if !ms.is_finite() || ms < 0.0 {
        return Err(Error::Config(format!(
            "option {name}: {v:?} is not a number of milliseconds"
        )));
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| Error::Config(format!("option {name}: {v:?} is out of range")))
}

/// `auto`, `text` (`ascii`) or `meta`.
pub fn protocol(v: &str) -> Result<ProtocolChoice, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" | "" => Ok(ProtocolChoice::Auto),
        "text" | "ascii" => Ok(ProtocolChoice::Text),
        "meta" => Ok(ProtocolChoice::Meta),
        other => Err(Error::Config(format!(
            "option protocol: {other:?} is not auto, text or meta"
        ))),
    }
}

impl Setup {
    /// The defaults, for a binding whose ecosystem is `family` (which plain values without
    /// multiput's own flags it reads: pylibmc's or PECL's).
    pub fn new(family: Family) -> Setup {
        Setup {
            config: Config::default(),
            family,
            convention: None,
            mode: None,
            replicas: None,
            write: None,
            read: None,
            policy: Policy::default(),
            compress_threshold: 0,
            cas: CasOptions::default(),
        }
    }

    /// Set option `name` (see the module docs) from its text. Unknown names and invalid
    /// values are [`Error::Config`], naming the option.
    pub fn set(&mut self, name: &str, v: &str) -> Result<&mut Setup, Error> {
        let c = &mut self.config;
        match name.trim() {
            "servers" => c.servers = server_list(v)?,
            "ring" | "distribution" => {
                c.ring_mode = match v.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                    "ketama_weighted" | "weighted" => RingMode::LibketamaCompatible,
                    other => other.parse()?,
                }
            }
            "protocol" => c.protocol = protocol(v)?,
            "timeout_ms" => c.timeout = millis(name, v)?,
            "connect_timeout_ms" => c.connect_timeout = millis(name, v)?,
            "retry_ms" => c.retry_interval = millis(name, v)?,
            "failure_limit" => c.failure_limit = number::<u32>(name, v)?.max(1),
            "max_value_size" => c.max_value_size = number(name, v)?,
            "pool_size" => c.blocking_pool_size = number(name, v)?,
            "connections_per_server" => c.connections_per_server = number(name, v)?,
            "tcp_nodelay" => c.tcp_nodelay = boolean(name, v)?,
            "binary_keys" => c.binary_keys = boolean(name, v)?,
            "prefix" | "key_prefix" => c.key_prefix = v.as_bytes().to_vec(),
            "mode" => {
                self.mode = Some(match v.trim().to_ascii_lowercase().as_str() {
                    "plain" => Mode::Plain,
                    "replicated" => Mode::Replicated,
                    other => {
                        return Err(Error::Config(format!(
                            "option mode: {other:?} is not plain or replicated"
                        )))
                    }
                })
            }
            "replicas" => {
                let n: usize = number(name, v)?;
                if n == 0 {
                    return Err(Error::Config(
                        "option replicas: at least 1 (mode=plain for plain values)".into(),
                    ));
                }
                self.replicas = Some(n);
            }
            // Checked now (against any count), resolved against `replicas` in `build`.
            "write" | "write_policy" => {
                WritePolicy::parse(v, usize::MAX)?;
                self.write = Some(v.trim().to_string());
            }
            "read" | "read_policy" => {
                ReadPolicy::parse(v, usize::MAX)?;
                self.read = Some(v.trim().to_string());
            }
            "tombstone_ttl" => self.policy.tombstone_ttl = number(name, v)?,
            "failover" => self.policy.failover = boolean(name, v)?,
            "read_repair" => self.policy.read_repair = boolean(name, v)?,
            "convention" => self.convention = Some(Convention::parse(v, self.family)?),
            "compress_threshold" => self.compress_threshold = number(name, v)?,
            "cas_attempts" => self.cas.max_attempts = number::<u32>(name, v)?.max(1),
            "cas_deadline_ms" => self.cas.deadline = millis(name, v)?,
            "tls" => {
                c.tls = match boolean(name, v)? {
                    true => Some(c.tls.take().unwrap_or_default()),
                    false => None,
                }
            }
            "tls_servers" => {
                let list = server_list(v)?.iter().map(ServerSpec::address).collect();
                c.tls.get_or_insert_with(Default::default).servers = Some(list);
            }
            "tls_ca" | "tls_cert" | "tls_key" | "tls_server_name" => {
                let t = c.tls.get_or_insert_with(Default::default);
                let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
                match name.trim() {
                    "tls_ca" => t.ca_file = v,
                    "tls_cert" => t.cert_file = v,
                    "tls_key" => t.key_file = v,
                    _ => t.server_name = v,
                }
            }
            "username" | "password" => {
                let a = c.auth.get_or_insert_with(|| crate::config::Credentials {
                    username: String::new(),
                    password: String::new(),
                });
                if name.trim() == "username" {
                    a.username = v.to_string();
                } else {
                    a.password = v.to_string();
                }
            }
            "sasl" | "sasl_mechanism" => {
                return Err(Error::Config(
                    "SASL needs memcached's binary protocol, which multiput does not speak: \
                     use memcached's ASCII authentication instead (memcached -Y with an auth \
                     file; the username and password options)"
                        .into(),
                ))
            }
            other => {
                return Err(Error::Config(format!(
                    "unknown option {other:?} ({})",
                    NAMES.join(", ")
                )))
            }
        }
        Ok(self)
    }

    /// The servers, already parsed (for bindings that take them as structured values).
    pub fn servers(&mut self, servers: Vec<ServerSpec>) -> &mut Setup {
        self.config.servers = servers;
        self
    }

    /// The key prefix as bytes (for bindings whose prefix may not be text).
    pub fn key_prefix(&mut self, prefix: &[u8]) -> &mut Setup {
        self.config.key_prefix = prefix.to_vec();
        self
    }

    /// Check the options together and resolve what depends on several: the mode (replicated
    /// when `mode` says so, else when `replicas` > 1), the copy count (replicated without
    /// `replicas`: 2, at most the number of servers) and the policies' quorums.
    pub fn build(&self) -> Result<Built, Error> {
        let config = self.config.clone();
        config.validate()?;
        let n = config.servers.len();
        let replicated = match self.mode {
            Some(m) => m == Mode::Replicated,
            None => self.replicas.is_some_and(|r| r > 1),
        };
        let policy = if replicated {
            let replicas = self
                .replicas
                .unwrap_or_else(|| Policy::default().replicas.min(n));
            let policy = Policy {
                replicas,
                write: match &self.write {
                    Some(w) => WritePolicy::parse(w, replicas)?,
                    None => WritePolicy::All,
                },
                read: match &self.read {
                    Some(r) => ReadPolicy::parse(r, replicas)?,
                    None => ReadPolicy::All,
                },
                ..self.policy
            };
            policy.validate(n)?;
            Some(policy)
        } else {
            if self.replicas.is_some_and(|r| r > 1) {
                return Err(Error::Config(
                    "replicas > 1 needs the replicated mode (mode=plain keeps one plain copy)"
                        .into(),
                ));
            }
            None
        };
        Ok(Built {
            config,
            policy,
            convention: self
                .convention
                .unwrap_or_else(|| Convention::multiput(self.family)),
            compress_threshold: self.compress_threshold,
            cas: self.cas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(pairs: &[(&str, &str)]) -> Result<Built, Error> {
        let mut s = Setup::new(Family::Python);
        for (k, v) in pairs {
            s.set(k, v)?;
        }
        s.build()
    }

    #[test]
    fn server_lists_are_written_one_way_for_everyone() {
        let b = setup(&[(
            "servers",
            "inet:10.0.0.1:11211, 10.0.0.2;10.0.0.3:11212:3\n[::1]:11213",
        )])
        .unwrap();
        let names: Vec<String> = b.config.servers.iter().map(|s| s.to_string()).collect();
        assert_eq!(names.len(), 4);
        assert_eq!(b.config.servers[2].weight, 3);
        assert!(setup(&[("servers", "")]).is_err(), "no servers");
        assert!(setup(&[("servers", "a:b:c:d")]).is_err());
    }

    #[test]
    fn the_mode_follows_replicas_unless_given() {
        let plain = setup(&[("servers", "a,b,c")]).unwrap();
        assert!(plain.policy.is_none());
        let two = setup(&[("servers", "a,b,c"), ("replicas", "2")]).unwrap();
        assert_eq!(two.policy.unwrap().replicas, 2);
        // Replicated without a count: 2 copies, at most the servers.
        let forced = setup(&[("servers", "a"), ("mode", "replicated")]).unwrap();
        assert_eq!(forced.policy.unwrap().replicas, 1);
        let forced = setup(&[("servers", "a,b,c"), ("mode", "replicated")]).unwrap();
        assert_eq!(forced.policy.unwrap().replicas, 2);
        let one = setup(&[
            ("servers", "a,b"),
            ("mode", "replicated"),
            ("replicas", "1"),
        ]);
        assert_eq!(one.unwrap().policy.unwrap().replicas, 1);
        assert!(setup(&[("servers", "a,b"), ("mode", "plain"), ("replicas", "2")]).is_err());
        assert!(setup(&[("servers", "a,b"), ("replicas", "3")]).is_err());
        assert!(setup(&[("servers", "a,b"), ("replicas", "0")]).is_err());
    }

    #[test]
    fn policies_resolve_against_the_copy_count() {
        let b = setup(&[
            ("servers", "a,b,c,d"),
            ("replicas", "3"),
            ("write", "quorum"),
            ("read_policy", "first"),
        ])
        .unwrap();
        let p = b.policy.unwrap();
        assert_eq!(p.write, WritePolicy::parse("quorum:2", 3).unwrap());
        assert_eq!(p.read, ReadPolicy::FirstHit);
        assert!(setup(&[("servers", "a"), ("write", "sometimes")]).is_err());
    }

    #[test]
    fn values_and_names_are_checked() {
        let b = setup(&[
            ("servers", "a"),
            ("timeout_ms", "250.5"),
            ("connect_timeout_ms", "100"),
            ("protocol", "ASCII"),
            ("ring", "ketama-md5"),
            ("tcp_nodelay", "off"),
            ("prefix", "app:"),
            ("convention", "pecl"),
        ])
        .unwrap();
        assert_eq!(b.config.timeout, Duration::from_micros(250_500));
        assert_eq!(b.config.protocol, ProtocolChoice::Text);
        assert_eq!(b.config.ring_mode, RingMode::KetamaMd5);
        assert!(!b.config.tcp_nodelay);
        assert_eq!(b.config.key_prefix, b"app:");
        assert_eq!(
            b.convention,
            Convention::parse("pecl", Family::Python).unwrap()
        );
        let e = setup(&[("servers", "a"), ("colour", "blue")]).unwrap_err();
        assert!(e.to_string().contains("unknown option \"colour\""), "{e}");
        assert!(setup(&[("servers", "a"), ("timeout_ms", "0")]).is_err());
        assert!(setup(&[("servers", "a"), ("timeout_ms", "-1")]).is_err());
        assert!(setup(&[("servers", "a"), ("tcp_nodelay", "maybe")]).is_err());
        assert!(setup(&[("servers", "a"), ("protocol", "binary")]).is_err());
        assert!(setup(&[("servers", "a"), ("prefix", "has space")]).is_err());
    }
}
