//! A blocking connection: a `TcpStream`, its read buffer and the dialect its probe found.
//!
//! A connection is used by one thread at a time (the pool hands it out) and is dropped, never
//! returned, after any failure, so a timed-out reply can never be read by a later call.

use crate::driver::{closed, connect_error, instant_at, mono};
use crate::error::{Error, Phase};
use crate::pipeline::{Event, Link, Pipeline, Settings};
use crate::protocol::{Dialect, Expect, Reply};
use bytes::BytesMut;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A connection's byte stream: the TCP socket, or TLS over it.
enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// What the socket is, for [`Pipeline::lost`].
    fn link(&self) -> Link {
        match self {
            Stream::Plain(_) => Link::Plain,
            #[cfg(feature = "tls")]
            Stream::Tls(s) if s.conn.is_handshaking() => Link::TlsHandshake,
            #[cfg(feature = "tls")]
            Stream::Tls(_) => Link::Tls,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => &s.sock,
        }
    }

    /// True when nothing is readable on an idle connection (the healthy case).
    fn is_idle(&mut self) -> bool {
        match self {
            Stream::Plain(s) => peek_idle(s),
            // TLS records may arrive on an idle connection that carry nothing for the client
            // (TLS 1.3 session tickets): let rustls read and process whatever is there, without
            // blocking. Idle when no data, no close and no error came of it.
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                // Nothing waiting on the socket (the common case): idle, at one syscall.
                if peek_idle(&s.sock) {
                    return true;
                }
                if s.sock.set_nonblocking(true).is_err() {
                    return false;
                }
                let idle = loop {
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => break false,
                        Ok(_) => match s.conn.process_new_packets() {
                            Ok(state)
                                if state.plaintext_bytes_to_read() == 0
                                    && !state.peer_has_closed() => {}
                            _ => break false,
                        },
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break false,
                    }
                };
                s.sock.set_nonblocking(false).is_ok() && idle
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                let n = s.write(buf)?;
                // rustls buffers what it encrypts: send it now (the request must leave).
                s.flush()?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub(crate) struct Conn {
    stream: Stream,
    /// The connection's rules: the probe, the reader of the request in flight, its deadline,
    /// and "bytes nobody asked for".
    pipe: Pipeline<()>,
    pub dialect: Dialect,
    /// The socket's current read/write timeouts; changed only when a deadline needs one shorter
    /// by more than a sixteenth of the timeout (the most a call can overrun its deadline), so a
    /// request usually costs no `setsockopt` at all.
    read_timeout: Duration,
    write_timeout: Duration,
    /// Where reads land before the pipeline takes them: allocated once per connection (a
    /// 16 KB array on the stack was zeroed on every call, a measurable part of a small get).
    chunk: Box<[u8]>,
}

fn io_error(server: &str, phase: Phase, after: Duration, e: std::io::Error) -> Error {
    #[cfg(feature = "tls")]
    if let Some(t) = crate::driver::tls::from_io(server, &e) {
        return t;
    }
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout {
            server: server.into(),
            phase,
            after,
        },
        _ => closed(server, e),
    }
}

impl Conn {
    /// Connect (each resolved address in turn), then the TLS handshake when `tls` is given
    /// (with the server's configured host, for its certificate's name), then the probe;
    /// together they share the connect timeout.
    pub fn open(
        settings: Settings,
        nodelay: bool,
        tls: Option<(&crate::driver::tls::TlsContext, &str)>,
    ) -> Result<Conn, Error> {
        let mut probe = BytesMut::with_capacity(32);
        let pipe = Pipeline::open(settings, mono(), &mut probe);
        let server = pipe.settings().server.clone();
        let connect_timeout = pipe.settings().connect_timeout;
        let due = instant_at(pipe.deadline().expect("the probe is queued"));
        let timed_out = || Error::Timeout {
            server: server.to_string(),
            phase: Phase::Connect,
            after: connect_timeout,
        };
        let addrs = (*server)
            .to_socket_addrs()
            .map_err(|e| connect_error(&server, e))?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            let left = remaining(due).ok_or_else(timed_out)?;
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) if e.kind() == ErrorKind::TimedOut => return Err(timed_out()),
            (None, Some(e)) => return Err(connect_error(&server, e)),
            (None, None) => {
                return Err(connect_error(
                    &server,
                    std::io::Error::new(ErrorKind::NotFound, "the host name resolved to nothing"),
                ))
            }
        };
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let stream = match tls {
            None => Stream::Plain(stream),
            #[cfg(feature = "tls")]
            Some((ctx, host)) => {
                let name = ctx.name_for(&server, host)?;
                let conn = rustls::ClientConnection::new(ctx.config.clone(), name)
                    .map_err(|e| crate::driver::tls::error(&server, &e))?;
                // The handshake runs with the first write (the probe), under its deadline.
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
            }
            #[cfg(not(feature = "tls"))]
            Some((ctx, _)) => match *ctx {},
        };
        let mut c = Conn {
            stream,
            pipe,
            dialect: Dialect::Text,
            read_timeout: Duration::MAX,
            write_timeout: Duration::MAX,
            chunk: vec![0u8; 16 * 1024].into_boxed_slice(),
        };
        if let Err(e) = c.write(&probe, due, Phase::Connect, connect_timeout) {
            let link = c.stream.link();
            return Err(c.pipe.lost(e, link));
        }
        // Read errors go through `lost` in `next`.
        while c.next()?.is_some() {}
        // Nothing may follow the probe's reply.
        c.pipe.poll()?;
        c.dialect = c.pipe.dialect().expect("the probe answered");
        Ok(c)
    }

    fn server(&self) -> &str {
        self.pipe.server()
    }

    /// Write a whole request (encoded for [`Conn::dialect`]) and queue its reader: its reply
    /// is due a timeout from now.
    pub fn send(&mut self, buf: &[u8], expect: Expect) -> Result<(), Error> {
        let now = mono();
        let timeout = self.pipe.settings().timeout;
        if self.pipe.push(expect, (), now).is_err() {
            return Err(self
                .pipe
                .failure()
                .cloned()
                .expect("a failed pipeline says why"));
        }
        self.write(buf, instant_at(now + timeout), Phase::Write, timeout)
    }

    fn write(
        &mut self,
        buf: &[u8],
        deadline: Instant,
        phase: Phase,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut buf = buf;
        while !buf.is_empty() {
            let left = remaining(deadline).ok_or_else(|| Error::Timeout {
                server: self.server().into(),
                phase,
                after: timeout,
            })?;
            if self.write_timeout > left + timeout / 16 {
                let tcp = self.stream.tcp();
                // A TLS write may read too (the handshake): bound both.
                tcp.set_read_timeout(Some(left))
                    .map_err(|e| io_error(self.pipe.server(), phase, timeout, e))?;
                self.read_timeout = left;
                tcp.set_write_timeout(Some(left))
                    .map_err(|e| io_error(self.pipe.server(), phase, timeout, e))?;
                self.write_timeout = left;
            }
            match self.stream.write(buf) {
                Ok(0) => {
                    return Err(closed(
                        self.server(),
                        "the connection accepts no more bytes",
                    ))
                }
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A socket timeout shorter than the deadline set for an earlier request: loop.
                Err(e) if is_timeout(&e) && remaining(deadline).is_some() => {
                    self.write_timeout = Duration::MAX;
                }
                Err(e) => return Err(io_error(self.pipe.server(), phase, timeout, e)),
            }
        }
        Ok(())
    }

    /// Read the reply of the oldest request sent.
    pub fn receive(&mut self) -> Result<Reply, Error> {
        loop {
            match self.next()? {
                Some(r) => {
                    // One request at a time: bytes already here after its reply were not asked
                    // for, and the call fails rather than trust a stream that is out of step.
                    if self.pipe.pending() == 0 {
                        self.pipe.poll()?;
                    }
                    return Ok(r);
                }
                None if self.pipe.pending() == 0 => {
                    return Err(Error::Client {
                        server: self.server().into(),
                        message: "no request is waiting for a reply".into(),
                    })
                }
                None => {}
            }
        }
    }

    /// Read until the front of the pipeline is answered: `Some(reply)` for a request, `None`
    /// when it was the probe.
    fn next(&mut self) -> Result<Option<Reply>, Error> {
        loop {
            match self.pipe.poll()? {
                Some(Event::Reply((), r)) => return Ok(Some(r)),
                Some(Event::Ready) => return Ok(None),
                None => {}
            }
            let Some(due) = self.pipe.deadline() else {
                return Ok(None);
            };
            let deadline = instant_at(due);
            let (phase, timeout) = if self.pipe.dialect().is_none() {
                (Phase::Connect, self.pipe.settings().connect_timeout)
            } else {
                (Phase::Read, self.pipe.settings().timeout)
            };
            let Some(left) = remaining(deadline) else {
                // Past the deadline: what the server already sent still counts (a multi-server
                // call may reach this reply late because another server was slow to connect).
                if self.drain_ready(phase, timeout)? {
                    continue;
                }
                return Err(self
                    .pipe
                    .check(mono().max(due))
                    .expect_err("the front is past its deadline"));
            };
            if self.read_timeout > left + timeout / 16 {
                self.stream
                    .tcp()
                    .set_read_timeout(Some(left))
                    .map_err(|e| io_error(self.pipe.server(), phase, timeout, e))?;
                self.read_timeout = left;
            }
            match self.read_some() {
                Ok(0) => {
                    let e = closed(self.server(), "the server closed the connection");
                    return Err(self.pipe.lost(e, self.stream.link()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The socket timeout was set shorter for an earlier deadline; this one has time
                // left, so widen it and read again.
                Err(e) if is_timeout(&e) && remaining(deadline).is_some() => {
                    self.read_timeout = Duration::MAX;
                }
                Err(e) => {
                    let e = io_error(self.pipe.server(), phase, timeout, e);
                    return Err(self.pipe.lost(e, self.stream.link()));
                }
            }
        }
    }
}

impl Conn {
    /// Read what the socket has (blocking, under the socket's timeout) into the pipeline.
    /// A plain socket reads straight into the pipeline's buffer, so a large value is copied
    /// once by the kernel and not again (a 500 KB value was copied chunk by chunk: a quarter
    /// of a PHP get's user time); the decoder reserves a value's whole length once its header
    /// is in. TLS reads go through rustls into the connection's chunk.
    fn read_some(&mut self) -> std::io::Result<usize> {
        #[cfg(unix)]
        if let Stream::Plain(s) = &self.stream {
            use std::os::fd::AsRawFd;
            let buf = self.pipe.read_buf();
            if buf.capacity() - buf.len() < 4 * 1024 {
                buf.reserve(16 * 1024);
            }
            let spare = buf.spare_capacity_mut();
            loop {
                // SAFETY: `fd` is a live socket owned by `s` for the whole call; the pointer
                // and length are the buffer's spare capacity, which recv only writes into.
                let n =
                    unsafe { libc::recv(s.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), 0) };
                if n >= 0 {
                    let n = n as usize;
                    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(n);
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        let n = self.stream.read(&mut self.chunk)?;
        self.pipe.feed(&self.chunk[..n]);
        Ok(n)
    }

    /// Whether an idle pooled connection can carry the next request: the peer has not closed
    /// it (a killed or restarted memcached, an `idle_timeout`) and no stray bytes wait on it.
    /// One non-blocking peek; a connection that fails it is dropped and a fresh one opened, so
    /// a server restart does not cost one failed call per pooled connection.
    pub fn is_reusable(&mut self) -> bool {
        if !self.pipe.is_idle() {
            return false;
        }
        self.stream.is_idle()
    }

    /// Read whatever is already waiting on the socket without blocking; true if anything was.
    fn drain_ready(&mut self, phase: Phase, timeout: Duration) -> Result<bool, Error> {
        let server = self.pipe.settings().server.clone();
        let io = |e| io_error(&server, phase, timeout, e);
        self.stream.tcp().set_nonblocking(true).map_err(io)?;
        let mut got = false;
        let result = loop {
            match self.stream.read(&mut self.chunk) {
                Ok(0) => break Err(closed(&server, "the server closed the connection")),
                Ok(n) => {
                    self.pipe.feed(&self.chunk[..n]);
                    got = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(got),
                Err(e) => break Err(io(e)),
            }
        };
        self.stream.tcp().set_nonblocking(false).map_err(io)?;
        result
    }
}

/// True when nothing is readable on an idle socket (the healthy case): EOF, a reset or
/// unexpected bytes all mean the connection must not be reused.
#[cfg(unix)]
fn peek_idle(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    loop {
        // SAFETY: `fd` is a live socket owned by `stream` for the whole call, and the buffer
        // is one valid, writable byte.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return false;
        }
        match std::io::Error::last_os_error().kind() {
            ErrorKind::Interrupted => continue,
            ErrorKind::WouldBlock => return true,
            _ => return false,
        }
    }
}

#[cfg(not(unix))]
fn peek_idle(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let idle = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && idle
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}
