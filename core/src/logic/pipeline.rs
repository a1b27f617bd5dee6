//! The rules of one memcached connection, without the socket: the one pipeline every transport
//! runs (the tokio task, the blocking pool's connections, the WASM codec under Node's sockets).
//!
//! A [`Pipeline`] is what a connection knows between the bytes it writes and the bytes it reads:
//!
//! - **The probe goes first.** [`Pipeline::open`] writes `version` (and `mn` unless the
//!   protocol is forced to text) and queues its reader ahead of everything; its reply decides
//!   the dialect ([`probe_result`]). Until then [`Pipeline::dialect`] is `None` and nothing else
//!   can be encoded, since what to send depends on the dialect.
//! - **Replies are read in request order**, each by the reader ([`Decoder`]) of the request it
//!   answers, queued with a token the transport chose (a oneshot sender, a JavaScript
//!   promise, nothing): [`Pipeline::poll`] hands out `(token, reply)` pairs in order.
//! - **Bytes nobody asked for end the connection**: bytes with no request waiting for them
//!   (left over after the last awaited reply) are a protocol error, never the next request's
//!   answer; [`Pipeline::is_idle`] is false while any are buffered.
//! - **The oldest deadline fails the connection.** Each request is due `timeout` after it was
//!   queued (the probe: `connect_timeout` after the connection started, which covers the
//!   connect itself). Deadlines grow along the queue, so only the front's matters
//!   ([`Pipeline::deadline`], [`Pipeline::check`]); when it passes, the replies behind it can
//!   no longer be trusted to be in step and every request fails.
//! - **A reply that does not answer its request** (another key's value, found when the token's
//!   owner interprets it) is reported with [`Pipeline::out_of_step`]: the connection is then
//!   failed like any other protocol error.
//! - **Failure is final**: once failed, [`Pipeline::poll`] and [`Pipeline::check`] keep
//!   returning the same error, [`Pipeline::drain`] hands back every token still waiting, and
//!   the transport closes the socket. A new connection gets a new pipeline.
//!
//! Time comes in as a [`Duration`] since an origin the transport chose (the same origin as
//! [`crate::machine::Now::mono`]).

use crate::config::{Credentials, ProtocolChoice};
use crate::error::{Error, Phase, TlsProblem};
use crate::protocol::{self, Decoder, Dialect, Expect, Limits, Reply, Status};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// What a connection needs to know about its server and its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's name (`host:port`), for errors.
    pub server: Arc<str>,
    /// Which protocol to speak (the probe's question).
    pub protocol: ProtocolChoice,
    /// The reply decoder's limits.
    pub limits: Limits,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
    /// How long connecting, authentication and the probe may take together.
    pub connect_timeout: Duration,
    /// memcached's ASCII authentication, sent before the probe.
    pub auth: Option<Credentials>,
}

/// What a connection's socket was when it broke ([`Pipeline::lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Plain TCP.
    Plain,
    /// TLS, the handshake not finished.
    TlsHandshake,
    /// TLS, after the handshake.
    Tls,
}

/// Something [`Pipeline::poll`] hands out.
#[derive(Debug)]
pub enum Event<T> {
    /// The probe answered: the connection speaks the dialect now in [`Pipeline::dialect`];
    /// requests can be encoded and queued.
    Ready,
    /// The reply to the request queued with this token.
    Reply(T, Reply),
}

/// Whose reply a reader reads.
enum Slot<T> {
    /// The authentication `set` (its reply must be `STORED`).
    Auth,
    /// The probe.
    Probe,
    /// A request, with the transport's token.
    Request(T),
}

struct Waiting<T> {
    dec: Decoder,
    slot: Slot<T>,
    deadline: Duration,
}

/// One connection's queue of readers and its state (see the module docs).
pub struct Pipeline<T> {
    settings: Settings,
    rbuf: BytesMut,
    queue: VecDeque<Waiting<T>>,
    dialect: Option<Dialect>,
    version: Option<String>,
    failed: Option<Error>,
    /// Whether any byte ever arrived.
    received: bool,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("server", &self.settings.server)
            .field("dialect", &self.dialect)
            .field("pending", &self.queue.len())
            .field("buffered", &self.rbuf.len())
            .field("failed", &self.failed)
            .finish()
    }
}

/// Write the connection probe into `out`: `version`, then `mn` unless the protocol is forced
/// to text. Returns the shape of its reply.
pub fn probe(protocol: ProtocolChoice, out: &mut BytesMut) -> Expect {
    protocol::text::version(out);
    if protocol == ProtocolChoice::Text {
        return Expect::Repeat(1, Box::new(Expect::TextLine));
    }
    protocol::meta::noop(out);
    Expect::Repeat(2, Box::new(Expect::TextLine))
}

/// Read the probe's reply: `VERSION ...` then `MN` (meta spoken) or `ERROR` (text only).
/// Returns the dialect to use and the server's version.
pub fn probe_result(
    protocol: ProtocolChoice,
    server: &str,
    reply: Reply,
) -> Result<(Dialect, String), Error> {
    let bad = |what: String| Error::Protocol {
        server: server.into(),
        detail: what,
    };
    let Reply::Many(rs) = reply else {
        return Err(bad(format!("probe reply {reply:?}")));
    };
    let mut it = rs.into_iter();
    let version = match it.next() {
        Some(Reply::Status(Status::Version(v))) => v,
        other => return Err(bad(format!("expected VERSION, got {other:?}"))),
    };
    let meta = matches!(it.next(), Some(Reply::Status(Status::MetaNoop)));
    let dialect = match (protocol, meta) {
        (ProtocolChoice::Text, _) => Dialect::Text,
        (_, true) => Dialect::Meta,
        (ProtocolChoice::Auto, false) => Dialect::Text,
        (ProtocolChoice::Meta, false) => {
            return Err(Error::Unsupported {
                server: server.into(),
                feature: "the meta protocol (memcached 1.6+), which the configuration requires",
            })
        }
    };
    Ok((dialect, version))
}

impl<T> Pipeline<T> {
    /// A new connection, started at `now`: the probe is written into `out` (send it first) and
    /// its reader queued, due `connect_timeout` after `now`.
    pub fn open(settings: Settings, now: Duration, out: &mut BytesMut) -> Pipeline<T> {
        let deadline = now.saturating_add(settings.connect_timeout);
        let mut queue = VecDeque::with_capacity(8);
        if let Some(a) = &settings.auth {
            // memcached -Y: a `set` whose data is "username password", before anything else
            // (any other command first is refused and the connection closed).
            let len = a.username.len() + 1 + a.password.len();
            out.extend_from_slice(format!("set auth 0 0 {len}\r\n").as_bytes());
            out.extend_from_slice(a.username.as_bytes());
            out.extend_from_slice(b" ");
            out.extend_from_slice(a.password.as_bytes());
            out.extend_from_slice(b"\r\n");
            queue.push_back(Waiting {
                dec: Decoder::new(Expect::TextLine, settings.limits),
                slot: Slot::Auth,
                deadline,
            });
        }
        let expect = probe(settings.protocol, out);
        queue.push_back(Waiting {
            dec: Decoder::new(expect, settings.limits),
            slot: Slot::Probe,
            deadline,
        });
        Pipeline {
            settings,
            rbuf: BytesMut::with_capacity(16 * 1024),
            queue,
            dialect: None,
            version: None,
            failed: None,
            received: false,
        }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.settings.server
    }

    /// The settings this connection was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The dialect the probe found; `None` until it answered.
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    /// The server's version, from the probe.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    /// Requests (and the probe) written and not yet answered.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Bytes read and not yet part of a complete reply.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Nothing waits for a reply and nothing unread is buffered: the connection can be
    /// handed to the next caller as it is.
    pub fn is_idle(&self) -> bool {
        self.failed.is_none() && self.queue.is_empty() && self.rbuf.is_empty()
    }

    /// Queue the reader of a request just written (its bytes encoded for [`Self::dialect`]),
    /// due `timeout` after `now`. On a failed connection the token is handed back: nothing
    /// will answer it.
    pub fn push(&mut self, expect: Expect, token: T, now: Duration) -> Result<(), T> {
        if self.failed.is_some() {
            return Err(token);
        }
        self.queue.push_back(Waiting {
            dec: Decoder::new(expect, self.settings.limits),
            slot: Slot::Request(token),
            deadline: now.saturating_add(self.settings.timeout),
        });
        Ok(())
    }

    /// Where the transport puts the bytes it reads (then call [`Self::poll`]).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Append bytes read from the socket (for transports that read into their own buffer).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.received |= !bytes.is_empty();
        self.rbuf.extend_from_slice(bytes);
    }

    /// The next complete reply, in request order; `Ok(None)` until more bytes arrive. An error
    /// fails the connection (a reply that is not memcached protocol, bytes nobody asked for,
    /// a probe that says the server cannot be used).
    pub fn poll(&mut self) -> Result<Option<Event<T>>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.received |= !self.rbuf.is_empty();
        let Some(front) = self.queue.front() else {
            if self.rbuf.is_empty() {
                return Ok(None);
            }
            let detail = format!(
                "server sent bytes nobody asked for: {}",
                protocol::excerpt(&self.rbuf)
            );
            return Err(self.fail_with(detail));
        };
        if matches!(front.slot, Slot::Probe) {
            if let Some(e) = refused_probe(&self.settings.server, &self.rbuf) {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        let front = self.queue.front_mut().expect("checked above");
        let reply = match front.dec.decode(&mut self.rbuf) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail_with(e.0)),
        };
        let w = self.queue.pop_front().expect("the front exists");
        let event = match w.slot {
            Slot::Request(token) => Event::Reply(token, reply),
            Slot::Auth => {
                if let Err(e) = self.authenticated(reply) {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
                return self.poll();
            }
            Slot::Probe => {
                match probe_result(self.settings.protocol, &self.settings.server, reply) {
                    Ok((dialect, version)) => {
                        self.dialect = Some(dialect);
                        self.version = Some(version);
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
                Event::Ready
            }
        };
        // Bytes left after the last awaited reply were not asked for: the next poll fails the
        // connection (this reply was complete and is its request's; what follows is not).
        Ok(Some(event))
    }

    /// When the oldest request (or the probe) is due; `None` when nothing waits.
    pub fn deadline(&self) -> Option<Duration> {
        self.queue.front().map(|w| w.deadline)
    }

    /// Fail the connection if the oldest request is past its deadline at `now`. `Ok` holds the
    /// next deadline to wake up for (`None`: nothing waits).
    pub fn check(&mut self, now: Duration) -> Result<Option<Duration>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(front) = self.queue.front() else {
            return Ok(None);
        };
        if front.deadline > now {
            return Ok(Some(front.deadline));
        }
        let (phase, after) = match front.slot {
            Slot::Request(_) => (Phase::Read, self.settings.timeout),
            Slot::Auth | Slot::Probe => (Phase::Connect, self.settings.connect_timeout),
        };
        let e = Error::Timeout {
            server: self.settings.server.to_string(),
            phase,
            after,
        };
        self.failed = Some(e.clone());
        Err(e)
    }

    /// A reply did not answer its request (found by the token's owner): the stream is out of
    /// step, so the connection fails.
    pub fn out_of_step(&mut self, detail: impl Into<String>) -> Error {
        self.fail_with(detail.into())
    }

    /// The connection broke with `e` (closed, reset, an I/O error the transport saw) while
    /// its socket was `link`; returns the connection's failure. Two closes say more than
    /// "closed", the same for every transport:
    /// - a plain connection closed before a single byte of the probe's reply is what a TLS
    ///   listener (memcached `-Z`) does to a client that does not start TLS
    ///   ([`TlsProblem::ServerSpeaksTls`]);
    /// - a connection closed during the TLS handshake is what a plain memcached does to a TLS
    ///   hello ([`TlsProblem::ServerNotTls`]).
    pub fn lost(&mut self, e: Error, link: Link) -> Error {
        let e = match (e, link) {
            (Error::ConnectionClosed { server, reason }, Link::Plain)
                if !self.received && self.dialect.is_none() =>
            {
                Error::tls(
                    server,
                    TlsProblem::ServerSpeaksTls,
                    format_args!("the server closed the connection ({reason}) before answering the connection probe"),
                )
            }
            (Error::ConnectionClosed { server, reason }, Link::TlsHandshake) => Error::tls(
                server,
                TlsProblem::ServerNotTls,
                format_args!("the connection closed during the TLS handshake ({reason})"),
            ),
            (e, _) => e,
        };
        self.fail(e)
    }

    /// Fail the connection with `e` (an I/O error the transport saw) unless it already failed;
    /// returns the connection's failure.
    pub fn fail(&mut self, e: Error) -> Error {
        self.failed.get_or_insert(e).clone()
    }

    /// After a failure: every token still waiting, oldest first (each gets the failure).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..).filter_map(|w| match w.slot {
            Slot::Request(token) => Some(token),
            Slot::Auth | Slot::Probe => None,
        })
    }

    /// The authentication's reply: `STORED`, or memcached's refusal (`CLIENT_ERROR
    /// unauthenticated`: wrong credentials, or a server without `-Y`... which would have
    /// stored them, so that reads `STORED`).
    fn authenticated(&self, reply: Reply) -> Result<(), Error> {
        let server = self.settings.server.to_string();
        match reply {
            Reply::Status(Status::Stored) => Ok(()),
            Reply::Error(..) => Err(Error::Auth { server }),
            other => Err(Error::Protocol {
                server,
                detail: format!("expected STORED after authentication, got {other:?}"),
            }),
        }
    }

    fn fail_with(&mut self, detail: String) -> Error {
        self.fail(Error::Protocol {
            server: self.settings.server.to_string(),
            detail,
        })
    }
}

/// A probe answered by something that says why this connection cannot work: memcached
/// `-Y` refusing a client that did not authenticate, or a TLS record (the server speaks
/// TLS and this connection does not).
fn refused_probe(server: &str, b: &[u8]) -> Option<Error> {
    let server = server.to_string();
    if b.starts_with(b"CLIENT_ERROR unauthenticated") {
        return Some(Error::Auth { server });
    }
    // A TLS record header: content type 21 (alert) or 22 (handshake), version 3.x.
    if b.len() >= 2 && (b[0] == 0x15 || b[0] == 0x16) && b[1] == 0x03 {
        return Some(Error::tls(
            server,
            TlsProblem::ServerSpeaksTls,
            "the server answered the connection probe with a TLS record",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    const MS: Duration = Duration::from_millis(1);

    fn settings(protocol: ProtocolChoice) -> Settings {
        Settings {
            server: "127.0.0.1:1".into(),
            protocol,
            limits: Limits::default(),
            timeout: 100 * MS,
            connect_timeout: 500 * MS,
            auth: None,
        }
    }

    fn opened(protocol: ProtocolChoice) -> (Pipeline<u32>, BytesMut) {
        let mut out = BytesMut::new();
        let p = Pipeline::open(settings(protocol), 1000 * MS, &mut out);
        (p, out)
    }

    fn ready() -> Pipeline<u32> {
        let (mut p, _) = opened(ProtocolChoice::Auto);
        p.feed(b"VERSION 1.6.18\r\nMN\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Ready))));
        p
    }

    fn line(_: u32) -> Expect {
        Expect::TextLine
    }

    #[test]
    fn the_probe_goes_first_and_decides_the_dialect() {
        let (mut p, out) = opened(ProtocolChoice::Auto);
        assert_eq!(&out[..], b"version\r\nmn\r\n");
        assert_eq!(p.dialect(), None);
        assert_eq!(p.deadline(), Some(1500 * MS));
        // Byte by byte: nothing until the whole probe reply is there.
        for b in b"VERSION 1.4.5\r\nERROR\r" {
            p.feed(&[*b]);
            assert!(matches!(p.poll(), Ok(None)));
        }
        p.feed(b"\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Ready))));
        assert_eq!(p.dialect(), Some(Dialect::Text));
        assert_eq!(p.version(), Some("1.4.5"));
        assert!(p.is_idle());

        let (_, out) = opened(ProtocolChoice::Text);
        assert_eq!(&out[..], b"version\r\n");
        let (mut p, _) = opened(ProtocolChoice::Meta);
        p.feed(b"VERSION 1.4.5\r\nERROR\r\n");
        assert!(matches!(p.poll(), Err(Error::Unsupported { .. })));
        assert!(p.failure().is_some());
    }

    #[test]
    fn authentication_goes_first_and_a_refusal_is_an_auth_error() {
        let mut s = settings(ProtocolChoice::Auto);
        s.auth = Some(Credentials {
            username: "app".into(),
            password: "pw".into(),
        });
        let mut out = BytesMut::new();
        let mut p: Pipeline<u32> = Pipeline::open(s.clone(), Duration::ZERO, &mut out);
        assert_eq!(&out[..], b"set auth 0 0 6\r\napp pw\r\nversion\r\nmn\r\n");
        p.feed(b"STORED\r\nVERSION 1.6.18\r\nMN\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Ready))));
        let mut p: Pipeline<u32> = Pipeline::open(s, Duration::ZERO, &mut BytesMut::new());
        p.feed(b"CLIENT_ERROR unauthenticated\r\n");
        let e = p.poll().unwrap_err();
        assert!(matches!(e, Error::Auth { .. }), "{e}");
        assert!(!e.to_string().contains("pw"));
        // A server that wants credentials, asked without them.
        let (mut p, _) = opened(ProtocolChoice::Auto);
        p.feed(b"CLIENT_ERROR unauthenticated\r\n");
        assert!(matches!(p.poll(), Err(Error::Auth { .. })));
        // A TLS listener answering a plain probe with an alert.
        let (mut p, _) = opened(ProtocolChoice::Auto);
        p.feed(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
        assert!(matches!(
            p.poll(),
            Err(Error::Tls {
                problem: TlsProblem::ServerSpeaksTls,
                ..
            })
        ));
    }

    #[test]
    fn a_lost_connection_says_what_the_close_means() {
        let closed = || Error::ConnectionClosed {
            server: "127.0.0.1:1".into(),
            reason: "reset".into(),
        };
        let problem = |e: Error| match e {
            Error::Tls { problem, .. } => Some(problem),
            _ => None,
        };
        let (mut p, _) = opened(ProtocolChoice::Auto);
        assert_eq!(
            problem(p.lost(closed(), Link::Plain)),
            Some(TlsProblem::ServerSpeaksTls)
        );
        let (mut p, _) = opened(ProtocolChoice::Auto);
        assert_eq!(
            problem(p.lost(closed(), Link::TlsHandshake)),
            Some(TlsProblem::ServerNotTls)
        );
        let (mut p, _) = opened(ProtocolChoice::Auto);
        assert!(matches!(
            p.lost(closed(), Link::Tls),
            Error::ConnectionClosed { .. }
        ));
        // Once a byte came back, a plain close is just a close.
        let (mut p, _) = opened(ProtocolChoice::Auto);
        p.feed(b"VERS");
        assert!(matches!(p.poll(), Ok(None)));
        assert!(matches!(
            p.lost(closed(), Link::Plain),
            Error::ConnectionClosed { .. }
        ));
    }

    #[test]
    fn replies_go_to_their_tokens_in_order() {
        let mut p = ready();
        for t in 1..=3 {
            p.push(line(t), t, 2000 * MS).unwrap();
        }
        p.feed(b"STORED\r\nNOT_STORED\r\nSTO");
        let mut got = vec![];
        while let Some(Event::Reply(t, r)) = p.poll().unwrap() {
            got.push((t, r));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert!(matches!(got[0].1, Reply::Status(Status::Stored)));
        assert_eq!(got[1].0, 2);
        assert_eq!(p.pending(), 1);
        p.feed(b"RED\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Reply(3, _)))));
        assert!(p.is_idle());
    }

    #[test]
    fn bytes_nobody_asked_for_fail_the_connection() {
        let mut p = ready();
        p.feed(b"HD\r\n");
        let e = p.poll().unwrap_err();
        assert!(matches!(&e, Error::Protocol { detail, .. } if detail.contains("nobody asked")));
        // Failure is final: the same error again, and new requests are refused.
        assert!(matches!(p.poll(), Err(Error::Protocol { .. })));
        assert_eq!(p.push(line(1), 1, Duration::ZERO), Err(1));

        // A complete reply is its request's; what follows it fails the connection.
        let mut p = ready();
        p.push(line(1), 1, 2000 * MS).unwrap();
        p.feed(b"STORED\r\nEXTRA\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Reply(1, _)))));
        assert!(!p.is_idle());
        assert!(p.poll().is_err());

        // Stray bytes after the probe's reply.
        let (mut p, _) = opened(ProtocolChoice::Auto);
        p.feed(b"VERSION 1.6.18\r\nMN\r\nHD\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Ready))));
        assert!(p.poll().is_err());
    }

    #[test]
    fn garbage_is_a_protocol_error_and_every_waiter_is_handed_back() {
        let mut p = ready();
        p.push(line(1), 1, 2000 * MS).unwrap();
        p.push(line(2), 2, 2000 * MS).unwrap();
        p.feed(b"WHAT IS THIS\r\n");
        assert!(matches!(p.poll(), Err(Error::Protocol { .. })));
        assert_eq!(p.drain().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn the_oldest_deadline_fails_the_connection() {
        let (mut p, _) = opened(ProtocolChoice::Auto);
        // The probe is due connect_timeout after the start, and times out as a connect.
        assert_eq!(p.check(1499 * MS).unwrap(), Some(1500 * MS));
        assert!(matches!(
            p.check(1500 * MS),
            Err(Error::Timeout { phase: Phase::Connect, after, .. }) if after == 500 * MS
        ));

        let mut p = ready();
        assert_eq!(p.check(5000 * MS).unwrap(), None);
        p.push(line(1), 1, 2000 * MS).unwrap();
        p.push(line(2), 2, 2050 * MS).unwrap();
        assert_eq!(p.deadline(), Some(2100 * MS));
        p.feed(b"STORED\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Reply(1, _)))));
        // The next front's deadline is the one that counts now.
        assert_eq!(p.check(2120 * MS).unwrap(), Some(2150 * MS));
        assert!(matches!(
            p.check(2150 * MS),
            Err(Error::Timeout { phase: Phase::Read, after, .. }) if after == 100 * MS
        ));
        // A reply arriving after the failure is not handed out.
        p.feed(b"STORED\r\n");
        assert!(p.poll().is_err());
        assert_eq!(p.drain().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_reply_out_of_step_fails_the_connection() {
        let mut p = ready();
        p.push(line(1), 1, 2000 * MS).unwrap();
        p.push(line(2), 2, 2000 * MS).unwrap();
        p.feed(b"STORED\r\n");
        assert!(matches!(p.poll(), Ok(Some(Event::Reply(1, _)))));
        let e = p.out_of_step("the reply is for key b, not a");
        assert!(matches!(&e, Error::Protocol { detail, .. } if detail.contains("key b")));
        p.feed(b"STORED\r\n");
        assert!(p.poll().is_err());
        assert_eq!(p.drain().collect::<Vec<_>>(), vec![2]);
        // The first failure is the one every later caller sees.
        let again = p.fail(Error::Client {
            server: "x".into(),
            message: "later".into(),
        });
        assert!(matches!(again, Error::Protocol { .. }));
    }
}
