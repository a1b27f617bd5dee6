//! A blocking connection: a `TcpStream`, its read buffer and the dialect its probe found.
//!
//! A connection is used by one thread at a time (the pool hands it out) and is dropped, never
//! returned, after any failure, so a timed-out reply can never be read by a later call.

use crate::driver::{closed, connect_error};
use crate::error::{Error, Phase};
use crate::protocol::{Decoder, Dialect, Expect, Limits, Reply};
use bytes::BytesMut;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub(crate) struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    pub dialect: Dialect,
    /// The socket's current read/write timeouts; changed only when a deadline needs one shorter
    /// by more than a sixteenth of the timeout (the most a call can overrun its deadline), so a
    /// request usually costs no `setsockopt` at all.
    read_timeout: Duration,
    write_timeout: Duration,
}

fn io_error(server: &str, phase: Phase, after: Duration, e: std::io::Error) -> Error {
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
    /// Connect (each resolved address in turn), then run the probe.
    pub fn open(
        server: &str,
        connect_timeout: Duration,
        nodelay: bool,
        probe: (BytesMut, Expect),
        limits: Limits,
    ) -> Result<(Conn, Reply), Error> {
        let addrs = server
            .to_socket_addrs()
            .map_err(|e| connect_error(server, e))?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) if e.kind() == ErrorKind::TimedOut => {
                return Err(Error::Timeout {
                    server: server.into(),
                    phase: Phase::Connect,
                    after: connect_timeout,
                })
            }
            (None, Some(e)) => return Err(connect_error(server, e)),
            (None, None) => {
                return Err(connect_error(
                    server,
                    std::io::Error::new(ErrorKind::NotFound, "the host name resolved to nothing"),
                ))
            }
        };
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            dialect: Dialect::Text,
            read_timeout: Duration::MAX,
            write_timeout: Duration::MAX,
        };
        let (buf, expect) = probe;
        let deadline = Instant::now() + connect_timeout;
        c.send(server, &buf, deadline, connect_timeout)?;
        let reply = c.receive(server, expect, limits, deadline, connect_timeout)?;
        Ok((c, reply))
    }

    /// Write a whole request before `deadline`.
    pub fn send(
        &mut self,
        server: &str,
        buf: &[u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut buf = buf;
        while !buf.is_empty() {
            let left = remaining(deadline).ok_or(Error::Timeout {
                server: server.into(),
                phase: Phase::Write,
                after: timeout,
            })?;
            if self.write_timeout > left + timeout / 16 {
                self.stream
                    .set_write_timeout(Some(left))
                    .map_err(|e| io_error(server, Phase::Write, timeout, e))?;
                self.write_timeout = left;
            }
            match self.stream.write(buf) {
                Ok(0) => return Err(closed(server, "the connection accepts no more bytes")),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A socket timeout shorter than the deadline set for an earlier request: loop.
                Err(e) if is_timeout(&e) && remaining(deadline).is_some() => {
                    self.write_timeout = Duration::MAX;
                }
                Err(e) => return Err(io_error(server, Phase::Write, timeout, e)),
            }
        }
        Ok(())
    }

    /// Read one whole reply before `deadline`.
    pub fn receive(
        &mut self,
        server: &str,
        expect: Expect,
        limits: Limits,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let mut dec = Decoder::new(expect, limits);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(r) = dec
                .decode(&mut self.rbuf)
                .map_err(|e| Error::from(e).at_server(server))?
            {
                if !self.rbuf.is_empty() {
                    return Err(Error::Protocol {
                        server: server.into(),
                        detail: "server sent bytes nobody asked for".into(),
                    });
                }
                return Ok(r);
            }
            let Some(left) = remaining(deadline) else {
                // Past the deadline: what the server already sent still counts (a multi-server
                // call may reach this reply late because another server was slow to connect).
                if self.drain_ready(server, timeout)? {
                    continue;
                }
                return Err(Error::Timeout {
                    server: server.into(),
                    phase: Phase::Read,
                    after: timeout,
                });
            };
            if self.read_timeout > left + timeout / 16 {
                self.stream
                    .set_read_timeout(Some(left))
                    .map_err(|e| io_error(server, Phase::Read, timeout, e))?;
                self.read_timeout = left;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(closed(server, "the server closed the connection")),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The socket timeout was set shorter for an earlier deadline; this one has time
                // left, so widen it and read again.
                Err(e) if is_timeout(&e) && remaining(deadline).is_some() => {
                    self.read_timeout = Duration::MAX;
                }
                Err(e) => return Err(io_error(server, Phase::Read, timeout, e)),
            }
        }
    }
}

impl Conn {
    /// Whether an idle pooled connection can carry the next request: the peer has not closed
    /// it (a killed or restarted memcached, an `idle_timeout`) and no stray bytes wait on it.
    /// One non-blocking peek; a connection that fails it is dropped and a fresh one opened, so
    /// a server restart does not cost one failed call per pooled connection.
    pub fn is_reusable(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        peek_idle(&self.stream)
    }

    /// Read whatever is already waiting on the socket without blocking; true if anything was.
    fn drain_ready(&mut self, server: &str, timeout: Duration) -> Result<bool, Error> {
        let io = |e| io_error(server, Phase::Read, timeout, e);
        self.stream.set_nonblocking(true).map_err(io)?;
        let mut chunk = [0u8; 16 * 1024];
        let mut got = false;
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Err(closed(server, "the server closed the connection")),
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    got = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(got),
                Err(e) => break Err(io(e)),
            }
        };
        self.stream.set_nonblocking(false).map_err(io)?;
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
