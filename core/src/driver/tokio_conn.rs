//! One multiplexed connection: a task that owns the socket, pipelines every request queued to
//! it, and hands each reply to the caller that asked.
//!
//! Why a task per connection: the caller never touches the socket, so a caller whose future is
//! dropped mid-request (a timeout, a `select!`) cannot leave half a reply on the connection for
//! the next caller to read as its own. Its request stays queued in order; its reply is decoded
//! and discarded when it arrives. Many callers share one connection, so requests from
//! concurrent tasks leave in one write and their replies arrive in one read: the pipelining that
//! lets a single memcached connection serve several hundred thousand meta gets a second.

use crate::driver::{closed, instant_at, mono};
use crate::error::Error;
use crate::pipeline::{Event, Pipeline, Settings};
use crate::protocol::{Dialect, Expect, Reply};
use bytes::{Buf, BytesMut};
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

/// Where a reply goes: the caller that queued the request (who may have gone).
type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

fn at(d: std::time::Duration) -> Instant {
    Instant::from_std(instant_at(d))
}

/// Open a connection, probe it ([`Pipeline::open`]: connecting and the probe share the
/// connect timeout), and start its task.
pub(crate) async fn connect(settings: Settings, nodelay: bool) -> Result<ConnHandle, Error> {
    let mut probe = BytesMut::with_capacity(32);
    let mut pipe: Pipeline<ReplyTx> = Pipeline::open(settings, mono(), &mut probe);
    let due = pipe.deadline().expect("the probe is queued");
    let server: std::sync::Arc<str> = pipe.settings().server.clone();
    let opening = async {
        let mut stream = TcpStream::connect(&*server)
            .await
            .map_err(|e| crate::driver::connect_error(&server, e))?;
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        stream
            .write_all(&probe)
            .await
            .map_err(|e| pipe.fail(closed(&server, e)))?;
        loop {
            if let Some(Event::Ready) = pipe.poll()? {
                break;
            }
            if stream
                .read_buf(pipe.read_buf())
                .await
                .map_err(|e| pipe.fail(closed(&server, e)))?
                == 0
            {
                return Err(pipe.fail(closed(&server, "closed during the connection probe")));
            }
        }
        // Nothing may follow the probe's reply.
        pipe.poll()?;
        Ok(stream)
    };
    let opened = tokio::time::timeout_at(at(due), opening).await;
    let stream = match opened {
        Ok(r) => r?,
        Err(_) => return Err(pipe.check(due).expect_err("the probe is past its deadline")),
    };
    let dialect = pipe.dialect().expect("the probe answered");
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(stream, rx, pipe));
    Ok(ConnHandle { tx, dialect })
}

async fn run(stream: TcpStream, mut rx: mpsc::Receiver<Job>, mut pipe: Pipeline<ReplyTx>) {
    let server = pipe.settings().server.clone();
    let (mut rd, mut wr) = stream.into_split();
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut rx_open = true;
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed = false;

    let enqueue = |job: Job, wbuf: &mut BytesMut, pipe: &mut Pipeline<ReplyTx>| {
        if wbuf.is_empty() {
            // Take the caller's buffer as is: no copy for the common single request.
            *wbuf = job.buf;
        } else {
            wbuf.extend_from_slice(&job.buf);
        }
        if let Err(reply) = pipe.push(job.expect, job.reply, mono()) {
            let _ = reply.send(Err(closed(&server, "the connection failed")));
        }
    };

    let failure = loop {
        if !rx_open && pipe.pending() == 0 {
            return;
        }
        // Deadlines grow along the queue (each is its enqueue time plus the same timeout), so
        // a timer armed for an earlier request fires no later than the front's deadline. Arm
        // it only when it is not armed; when it fires early, re-arm it for the current front.
        // That keeps timer-wheel work off the per-request path (about one reset per timeout
        // period instead of one per request).
        if !armed {
            if let Some(due) = pipe.deadline() {
                sleep.as_mut().reset(at(due));
                armed = true;
            }
        }
        tokio::select! {
            biased;
            r = rd.read_buf(pipe.read_buf()) => match r {
                Ok(0) => break closed(&server, "the server closed the connection"),
                Ok(_) => {
                    let mut failed = None;
                    loop {
                        match pipe.poll() {
                            // The caller may be gone (its future was dropped): the reply is
                            // discarded here, never left for the next request.
                            Ok(Some(Event::Reply(reply, r))) => {
                                let _ = reply.send(Ok(r));
                            }
                            Ok(Some(Event::Ready)) => {}
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        break e;
                    }
                    let rbuf = pipe.read_buf();
                    if rbuf.capacity() - rbuf.len() < 4096 {
                        rbuf.reserve(16 * 1024);
                    }
                }
                Err(e) => break closed(&server, e),
            },
            r = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if let Err(e) = r {
                    break closed(&server, e);
                }
            }
            job = rx.recv(), if rx_open && wbuf.len() < MAX_WRITE_BUF => match job {
                Some(job) => {
                    enqueue(job, &mut wbuf, &mut pipe);
                    while wbuf.len() < MAX_WRITE_BUF {
                        match rx.try_recv() {
                            Ok(job) => enqueue(job, &mut wbuf, &mut pipe),
                            Err(_) => break,
                        }
                    }
                    // Write now rather than after another turn of the loop.
                    match wr.try_write(&wbuf) {
                        Ok(n) => wbuf.advance(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => break closed(&server, e),
                    }
                }
                None => rx_open = false,
            },
            () = &mut sleep, if armed => {
                armed = false;
                match pipe.check(mono()) {
                    Err(e) => break e,
                    Ok(Some(due)) => {
                        sleep.as_mut().reset(at(due));
                        armed = true;
                    }
                    Ok(None) => {}
                }
            }
        }
    };
    // The connection is finished: every request on it gets the failure, including requests
    // still queued in the channel, and the next caller opens a new connection.
    let failure = pipe.fail(failure);
    rx.close();
    for reply in pipe.drain() {
        let _ = reply.send(Err(failure.clone()));
    }
    while let Ok(job) = rx.try_recv() {
        let _ = job.reply.send(Err(failure.clone()));
    }
}
