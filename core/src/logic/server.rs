//! Server addresses: one memcached server of the fleet, as configured.
//!
//! A [`ServerSpec`] is a host string, a port and a weight. It is pure configuration: nothing
//! here resolves names or opens connections. The host string is kept exactly as written (no
//! DNS lookup, no lower-casing, no trimming inside it), because libmemcached hashes the host
//! string as given when it places the server on the ketama ring (see [`crate::ring`]). Two
//! spellings of the same machine (`cache1` and `cache1.example.com`, or `::1` and `0::1`) are
//! therefore two different ring positions, exactly as in PHP and Python clients.
//!
//! # Text form
//!
//! [`ServerSpec`] parses (via [`FromStr`]) and prints in these forms:
//!
//! | input | host | port | weight |
//! | --- | --- | --- | --- |
//! | `cache1` | `cache1` | 11211 | 1 |
//! | `cache1:11212` | `cache1` | 11212 | 1 |
//! | `cache1:11212:3` | `cache1` | 11212 | 3 |
//! | `[2001:db8::1]` | `2001:db8::1` | 11211 | 1 |
//! | `[2001:db8::1]:11212` | `2001:db8::1` | 11212 | 1 |
//! | `[2001:db8::1]:11212:3` | `2001:db8::1` | 11212 | 3 |
//! | `2001:db8::1` | `2001:db8::1` | 11211 | 1 |
//!
//! An unbracketed IPv6 literal is accepted only when the whole text is one address (no port or
//! weight can follow it: write `[v6]:port` for that). Port 0 and weight 0 are accepted and kept
//! as configured; they mean 11211 and 1 (see [`ServerSpec::effective_port`] and
//! [`ServerSpec::effective_weight`]), as in libmemcached.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::error::Error;

/// The memcached default port. Port 0 in a configuration means this port, and a server on this
/// port is placed on the ketama ring under its bare host name (see [`ServerSpec::label`]).
pub const DEFAULT_PORT: u16 = 11211;

/// One memcached server as configured: host, port and weight.
///
/// The fields hold the values as configured, including port 0 and weight 0; use
/// [`effective_port`](Self::effective_port) and [`effective_weight`](Self::effective_weight)
/// for the values that take effect. The host never contains IPv6 brackets when it came from the
/// parser: `[2001:db8::1]:11212` is stored as host `2001:db8::1`, port 11212.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// The host name or IP literal, exactly as configured (IPv6 without brackets).
    pub host: String,
    /// The TCP port as configured; 0 means [`DEFAULT_PORT`].
    pub port: u16,
    /// The ketama weight as configured; 0 means 1.
    pub weight: u32,
}

impl ServerSpec {
    /// A server with weight 1. The host is kept exactly as given; pass IPv6 literals without
    /// brackets (`"2001:db8::1"`), which is also how php-memcached's `addServer()` takes them.
    pub fn new(host: impl Into<String>, port: u16) -> ServerSpec {
        ServerSpec {
            host: host.into(),
            port,
            weight: 1,
        }
    }

    /// The same server with another ketama weight (0 is kept and means 1).
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> ServerSpec {
        self.weight = weight;
        self
    }

    /// The port that takes effect: the configured port, or 11211 when it is 0.
    pub fn effective_port(&self) -> u16 {
        if self.port == 0 {
            DEFAULT_PORT
        } else {
            self.port
        }
    }

    /// The weight that takes effect: the configured weight, or 1 when it is 0.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// The string libmemcached hashes to place this server on the ketama ring: the host alone
    /// when the effective port is 11211, otherwise `host:port`.
    ///
    /// The host is used exactly as stored, with no brackets added, because libmemcached hashes
    /// the host name string it was given. So `2001:db8::1` on port 11212 gets the label
    /// `2001:db8::1:11212`, which is what php-memcached's `addServer('2001:db8::1', 11212)`
    /// produces. (A host stored *with* brackets, through [`ServerSpec::new`], is hashed with
    /// them, as libmemcached would do with such a string.)
    pub fn label(&self) -> String {
        let port = self.effective_port();
        if port == DEFAULT_PORT {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, port)
        }
    }

    /// `host:port` with the effective port always included, for display and for connecting.
    /// A host containing `:` (an IPv6 literal) is written in brackets: `[2001:db8::1]:11211`.
    pub fn address(&self) -> String {
        self.to_string()
    }

    /// True when the host needs brackets in `host:port` form (an IPv6 literal).
    fn needs_brackets(&self) -> bool {
        self.host.contains(':') && !self.host.starts_with('[')
    }
}

impl fmt::Display for ServerSpec {
    /// Same as [`ServerSpec::address`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.needs_brackets() {
            write!(f, "[{}]:{}", self.host, self.effective_port())
        } else {
            write!(f, "{}:{}", self.host, self.effective_port())
        }
    }
}

impl FromStr for ServerSpec {
    type Err = Error;

    /// Parses `host`, `host:port`, `host:port:weight`, `[v6]`, `[v6]:port`, `[v6]:port:weight`
    /// or a bare IPv6 literal. Surrounding whitespace is ignored; whitespace or control
    /// characters inside are an error. Errors are [`Error::Config`].
    fn from_str(s: &str) -> Result<ServerSpec, Error> {
        let text = s.trim();
        let err = |why: &str| {
            Error::Config(format!(
                "invalid server {s:?}: {why} (expected host, host:port, host:port:weight, \
                 or [ipv6]:port:weight)"
            ))
        };
        if text.is_empty() {
            return Err(err("empty server address"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                "the address contains whitespace or a control character",
            ));
        }

        let (host, rest) = if let Some(after) = text.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| err("missing ']' after the IPv6 address"))?;
            let host = &after[..close];
            if !is_ipv6_literal(host) {
                return Err(err("the text in brackets is not an IPv6 address"));
            }
            let rest = &after[close + 1..];
            let rest = if rest.is_empty() {
                None
            } else {
                Some(
                    rest.strip_prefix(':')
                        .ok_or_else(|| err("expected ':' after ']'"))?,
                )
            };
            (host, rest)
        } else if text.matches(':').count() >= 2 && is_ipv6_literal(text) {
            // A bare IPv6 literal. This cannot be mistaken for host:port:weight, since an
            // IPv6 address with only two colons contains "::", which leaves a part empty.
            (text, None)
        } else {
            if text.contains('[') || text.contains(']') {
                return Err(err("brackets are only allowed around an IPv6 address"));
            }
            match text.split_once(':') {
                Some((host, rest)) => (host, Some(rest)),
                None => (text, None),
            }
        };

        if host.is_empty() {
            return Err(err("the host is empty"));
        }

        let (port, weight) = match rest {
            None => (DEFAULT_PORT, 1),
            Some(rest) => {
                let (port_text, weight_text) = match rest.split_once(':') {
                    Some((p, w)) => (p, Some(w)),
                    None => (rest, None),
                };
                let port = parse_number::<u16>(port_text).ok_or_else(|| {
                    if port_text.contains(':') || weight_text.is_some_and(|w| w.contains(':')) {
                        err("too many ':' (write IPv6 addresses in brackets: [2001:db8::1]:11211)")
                    } else {
                        err(&format!(
                            "the port {port_text:?} is not a number from 0 to 65535"
                        ))
                    }
                })?;
                let weight = match weight_text {
                    None => 1,
                    Some(w) => parse_number::<u32>(w).ok_or_else(|| {
                        if w.contains(':') {
                            err("too many ':' (write IPv6 addresses in brackets: [2001:db8::1]:11211)")
                        } else {
                            err(&format!(
                                "the weight {w:?} is not a number from 0 to 4294967295"
                            ))
                        }
                    })?,
                };
                (port, weight)
            }
        };

        Ok(ServerSpec {
            host: host.to_string(),
            port,
            weight,
        })
    }
}

/// A decimal number made of ASCII digits only (no sign, no spaces).
fn parse_number<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An IPv6 literal, optionally with a `%zone` suffix.
fn is_ipv6_literal(s: &str) -> bool {
    let addr = match s.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => addr,
        Some(_) => return false,
        None => s,
    };
    addr.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ServerSpec {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse("cache1"), ServerSpec::new("cache1", 11211));
        assert_eq!(parse("cache1:11212"), ServerSpec::new("cache1", 11212));
        assert_eq!(
            parse("cache1:11212:3"),
            ServerSpec::new("cache1", 11212).with_weight(3)
        );
        assert_eq!(
            parse("[2001:db8::1]"),
            ServerSpec::new("2001:db8::1", 11211)
        );
        assert_eq!(parse("[::1]:11212"), ServerSpec::new("::1", 11212));
        assert_eq!(
            parse("[::1]:11212:7"),
            ServerSpec::new("::1", 11212).with_weight(7)
        );
        assert_eq!(parse("2001:db8::1"), ServerSpec::new("2001:db8::1", 11211));
        assert_eq!(parse("::1"), ServerSpec::new("::1", 11211));
        assert_eq!(
            parse("[fe80::1%eth0]:1"),
            ServerSpec::new("fe80::1%eth0", 1)
        );
        assert_eq!(
            parse("  Cache1.Example.COM:1 "),
            ServerSpec::new("Cache1.Example.COM", 1)
        );
    }

    #[test]
    fn zero_port_and_weight_are_kept_but_normalised() {
        let s = parse("h:0:0");
        assert_eq!((s.port, s.weight), (0, 0));
        assert_eq!((s.effective_port(), s.effective_weight()), (11211, 1));
        assert_eq!(s.label(), "h");
        assert_eq!(s.address(), "h:11211");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "   ",
            ":11211",
            "h:",
            "h:abc",
            "h:65536",
            "h:+1",
            "h:1:",
            "h:1:x",
            "h:1:4294967296",
            "h:1:2:3",
            "[::1",
            "[::1]x",
            "[]:1",
            "[notv6]:1",
            "[::1]:",
            "a b:1",
            "h]:1",
            "fe80::zz",
        ] {
            match bad.parse::<ServerSpec>() {
                Err(Error::Config(msg)) => assert!(msg.contains("invalid server"), "{msg}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn label_and_address() {
        let s = ServerSpec::new("192.0.2.11", 11211);
        assert_eq!(s.label(), "192.0.2.11");
        assert_eq!(s.address(), "192.0.2.11:11211");
        let s = ServerSpec::new("198.51.100.21", 11212);
        assert_eq!(s.label(), "198.51.100.21:11212");
        assert_eq!(s.to_string(), "198.51.100.21:11212");
        let s = ServerSpec::new("2001:db8::1", 11212);
        assert_eq!(s.label(), "2001:db8::1:11212");
        assert_eq!(s.address(), "[2001:db8::1]:11212");
        let s = ServerSpec::new("2001:db8::1", 0);
        assert_eq!(s.label(), "2001:db8::1");
        assert_eq!(s.address(), "[2001:db8::1]:11211");
    }

    #[test]
    fn address_round_trips() {
        for text in ["h:1", "[::1]:11212", "192.0.2.1:11211"] {
            assert_eq!(parse(text).address(), text);
            assert_eq!(parse(&parse(text).address()), parse(text));
        }
    }
}
