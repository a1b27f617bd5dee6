//! One multiplexed connection: a task that owns the socket, pipelines every request queued to
//! it, and hands each reply to the caller that asked.
//!
//! Why a task per connection: the caller never touches the socket, so a caller whose future is
//! dropped mid-request (a timeout, a `select!`) cannot leave half a reply on the connection for
//! the next caller to read as its own. Its request stays queued in order; its reply is decoded
//! and discarded when it arrives. Many callers share one connection, so requests from
//! concurrent tasks leave in one write and their replies arrive in one read: the pipelining that
//! lets a single memcached connection serve several hundred thousand meta gets a second.

use crate::driver::closed;
use crate::error::{Error, Phase};
use crate::protocol::{Decoder, Dialect, Expect, Limits, Reply};
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Bytes queued for writing before the task stops taking new requests until some are written.
const MAX_WRITE_BUF: usize = 4 * 1024 * 1024;
/// Requests a connection queues before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A request on its way to the connection task.
pub(crate) struct Job {
    pub buf: BytesMut,
    pub expect: Expect,
    pub reply: oneshot::Sender<Result<Reply, Error>>,
}

/// A handle to a live connection task. Cloning it is cheap; the task ends when every handle is
/// dropped and nothing is pending, or when the connection fails.
#[derive(Clone)]
pub(crate) struct ConnHandle {
    tx: mpsc::Sender<Job>,
    pub dialect: Dialect,
}

impl ConnHandle {
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Whether both handles lead to the same connection task.
    pub fn same(&self, other: &ConnHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Queue a request. `Err(job)` when the task is gone: nothing was sent, so the caller may
    /// retry on a new connection.
    pub async fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).await.map_err(|e| e.0)
    }
}

/// Open a connection, probe it, and start its task.
pub(crate) async fn connect(
    server: &str,
    probe: (BytesMut, Expect),
    probe_result: impl FnOnce(Reply) -> Result<(Dialect, String), Error>,
    connect_timeout: Duration,
    timeout: Duration,
    limits: Limits,
    nodelay: bool,
) -> Result<ConnHandle, Error> {
    let opening = async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|e| crate::driver::connect_error(server, e))?;
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let (buf, expect) = probe;
        stream
            .write_all(&buf)
            .await
            .map_err(|e| closed(server, e))?;
        let mut dec = Decoder::new(expect, limits);
        let mut rbuf = BytesMut::with_capacity(256);
        let reply = loop {
            if let Some(r) = dec
                .decode(&mut rbuf)
                .map_err(|e| Error::from(e).at_server(server))?
            {
                break r;
            }
            if stream
                .read_buf(&mut rbuf)
                .await
                .map_err(|e| closed(server, e))?
                == 0
            {
                return Err(closed(server, "closed during the connection probe"));
            }
        };
        if !rbuf.is_empty() {
            return Err(Error::Protocol {
                server: server.into(),
                detail: "unexpected bytes after the probe reply".into(),
            });
        }
        Ok((stream, reply))
    };
    let (stream, reply) = tokio::time::timeout(connect_timeout, opening)
        .await
        .map_err(|_| Error::Timeout {
            server: server.into(),
            phase: Phase::Connect,
            after: connect_timeout,
        })??;
    let (dialect, _version) = probe_result(reply)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let name: Arc<str> = server.into();
    tokio::spawn(run(stream, rx, timeout, limits, name));
    Ok(ConnHandle { tx, dialect })
}

struct Pending {
    dec: Decoder,
    reply: oneshot::Sender<Result<Reply, Error>>,
    deadline: Instant,
}

enum Failure {
    Timeout,
    Closed(String),
    Protocol(String),
}

impl Failure {
    fn to_error(&self, server: &str, timeout: Duration) -> Error {
        match self {
            Failure::Timeout => Error::Timeout {
                server: server.into(),
                phase: Phase::Read,
                after: timeout,
            },
            Failure::Closed(r) => closed(server, r),
            Failure::Protocol(d) => Error::Protocol {
                server: server.into(),
                detail: d.clone(),
            },
        }
    }
}

/// Decode whatever complete replies are in `rbuf` and hand them out in order.
fn dispatch(pending: &mut VecDeque<Pending>, rbuf: &mut BytesMut) -> Result<(), Failure> {
    while let Some(front) = pending.front_mut() {
        match front.dec.decode(rbuf) {
            Ok(Some(reply)) => {
                let p = pending.pop_front().expect("front exists");
                // The caller may be gone (its future was dropped): the reply is discarded here,
                // never left for the next request.
                let _ = p.reply.send(Ok(reply));
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(Failure::Protocol(e.0)),
        }
    }
    if !rbuf.is_empty() {
        return Err(Failure::Protocol(format!(
            "server sent bytes nobody asked for: {}",
            crate::protocol::excerpt(rbuf)
        )));
    }
    Ok(())
}

async fn run(
    stream: TcpStream,
    mut rx: mpsc::Receiver<Job>,
    timeout: Duration,
    limits: Limits,
    server: Arc<str>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut rx_open = true;
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    let mut armed_for: Option<Instant> = None;

    let enqueue = |job: Job, wbuf: &mut BytesMut, pending: &mut VecDeque<Pending>| {
        if wbuf.is_empty() {
            // Take the caller's buffer as is: no copy for the common single request.
            *wbuf = job.buf;
        } else {
            wbuf.extend_from_slice(&job.buf);
        }
        pending.push_back(Pending {
            dec: Decoder::new(job.expect, limits),
            reply: job.reply,
            deadline: Instant::now() + timeout,
        });
    };

    let failure = loop {
        if !rx_open && pending.is_empty() {
            return;
        }
        // Deadlines grow along the FIFO (each is its enqueue time plus the same timeout), so
        // a timer armed for an earlier request fires no later than the front's deadline. Arm
        // it only when it is not armed; when it fires early, re-arm it for the current front.
        // That keeps timer-wheel work off the per-request path (about one reset per timeout
        // period instead of one per request).
        match (pending.front(), armed_for) {
            // Idle: leave an armed timer as it is; it disarms itself when it fires.
            (None, _) => {}
            (Some(front), None) => {
                sleep.as_mut().reset(front.deadline);
                armed_for = Some(front.deadline);
            }
            (Some(_), Some(_)) => {}
        }
        tokio::select! {
            biased;
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => break Failure::Closed("the server closed the connection".into()),
                Ok(_) => {
                    if let Err(f) = dispatch(&mut pending, &mut rbuf) {
                        break f;
                    }
                    if rbuf.capacity() < 4096 {
                        rbuf.reserve(16 * 1024);
                    }
                }
                Err(e) => break Failure::Closed(e.to_string()),
            },
            r = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if let Err(e) = r {
                    break Failure::Closed(e.to_string());
                }
            }
            job = rx.recv(), if rx_open && wbuf.len() < MAX_WRITE_BUF => match job {
                Some(job) => {
                    enqueue(job, &mut wbuf, &mut pending);
                    while wbuf.len() < MAX_WRITE_BUF {
                        match rx.try_recv() {
                            Ok(job) => enqueue(job, &mut wbuf, &mut pending),
                            Err(_) => break,
                        }
                    }
                    // Write now rather than after another turn of the loop.
                    match wr.try_write(&wbuf) {
                        Ok(n) => wbuf.advance(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => break Failure::Closed(e.to_string()),
                    }
                }
                None => rx_open = false,
            },
            () = &mut sleep, if armed_for.is_some() => {
                match pending.front() {
                    Some(front) if front.deadline <= Instant::now() => break Failure::Timeout,
                    Some(front) => {
                        sleep.as_mut().reset(front.deadline);
                        armed_for = Some(front.deadline);
                    }
                    None => armed_for = None,
                }
            }
        }
    };
    // The connection is finished: every request on it gets the failure, including requests
    // still queued in the channel, and the next caller opens a new connection.
    rx.close();
    for p in pending.drain(..) {
        let _ = p.reply.send(Err(failure.to_error(&server, timeout)));
    }
    while let Ok(job) = rx.try_recv() {
        let _ = job.reply.send(Err(failure.to_error(&server, timeout)));
    }
}
