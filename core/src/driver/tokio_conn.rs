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
use crate::pipeline::{Event, Link, Pipeline, Settings};
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

/// Open a connection, run the TLS handshake when `tls` is given (with the server's configured
/// host, for its certificate's name), probe it ([`Pipeline::open`]: connecting, the handshake
/// and the probe share the connect timeout), and start its task.
pub(crate) async fn connect(
    settings: Settings,
    nodelay: bool,
    tls: Option<(crate::driver::tls::TlsContext, String)>,
) -> Result<ConnHandle, Error> {
    let mut probe = BytesMut::with_capacity(32);
    let mut pipe: Pipeline<ReplyTx> = Pipeline::open(settings, mono(), &mut probe);
    let due = pipe.deadline().expect("the probe is queued");
    let server: std::sync::Arc<str> = pipe.settings().server.clone();
    let opening = async {
        let stream = TcpStream::connect(&*server)
            .await
            .map_err(|e| crate::driver::connect_error(&server, e))?;
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let stream = match tls {
            None => Either::Plain(stream),
            #[cfg(feature = "tls")]
            Some((ctx, host)) => {
                let name = ctx.name_for(&server, &host)?;
                let tls = tokio_rustls::TlsConnector::from(ctx.config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| match crate::driver::tls::from_io(&server, &e) {
                        Some(t) => t,
                        None => pipe.lost(closed(&server, e), Link::TlsHandshake),
                    })?;
                Either::Tls(Box::new(tls))
            }
            #[cfg(not(feature = "tls"))]
            Some((ctx, _)) => match ctx {},
        };
        let link = match stream {
            Either::Plain(_) => Link::Plain,
            #[cfg(feature = "tls")]
            Either::Tls(_) => Link::Tls,
        };
        let mut stream = stream;
        stream
            .write_all(&probe)
            .await
            .map_err(|e| pipe.lost(io_failure(&server, e), link))?;
        stream
            .flush()
            .await
            .map_err(|e| pipe.lost(io_failure(&server, e), link))?;
        loop {
            if let Some(Event::Ready) = pipe.poll()? {
                break;
            }
            match stream.read_buf(pipe.read_buf()).await {
                Ok(0) => {
                    let e = closed(&server, "closed during the connection probe");
                    return Err(pipe.lost(e, link));
                }
                Ok(_) => {}
                Err(e) => return Err(pipe.lost(io_failure(&server, e), link)),
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
    match stream {
        Either::Plain(s) => {
            let (rd, wr) = s.into_split();
            tokio::spawn(run(rd, wr, rx, pipe));
        }
        #[cfg(feature = "tls")]
        Either::Tls(s) => {
            let (rd, wr) = tokio::io::split(*s);
            let wr = Buffered {
                inner: wr,
                dirty: false,
            };
            tokio::spawn(run(rd, wr, rx, pipe));
        }
    }
    Ok(ConnHandle { tx, dialect })
}

/// An I/O error of the connection: a TLS failure is [`Error::Tls`], anything else closes it.
fn io_failure(server: &str, e: std::io::Error) -> Error {
    #[cfg(feature = "tls")]
    if let Some(t) = crate::driver::tls::from_io(server, &e) {
        return t;
    }
    closed(server, e)
}

/// A connection's stream before it is split: plain TCP or TLS over it.
enum Either {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Either {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Either::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Either::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Either {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Either::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Either::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Either::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Either::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Either::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Either::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The write half of a connection: written by the task, which tries a write at once when a
/// request arrives (plain TCP), and flushes after writing (TLS buffers what it encrypts).
trait WriteHalf: tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Write without waiting; `WouldBlock` when that is not possible now.
    fn try_write_now(&mut self, buf: &[u8]) -> std::io::Result<usize>;

    /// Bytes accepted by a write but not yet on the socket (TLS records the socket could not
    /// take yet): the task keeps flushing until there are none.
    fn unflushed(&self) -> bool {
        false
    }
}

impl WriteHalf for tokio::net::tcp::OwnedWriteHalf {
    fn try_write_now(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.try_write(buf)
    }
}

/// TLS's write half: every write is followed by a flush, so encrypted bytes leave at once.
/// A write accepts plaintext even when the socket cannot take all the records yet; `dirty`
/// remembers that some wait, so the task flushes them (never leaving a request unsent).
#[cfg(feature = "tls")]
struct Buffered<W> {
    inner: W,
    dirty: bool,
}

#[cfg(feature = "tls")]
impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Buffered<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_write(cx, buf))?;
        // Push the encrypted bytes out; if that must wait, `dirty` has the task finish it.
        this.dirty = match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
            std::task::Poll::Ready(Ok(())) => false,
            std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => true,
        };
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_flush(cx));
        this.dirty = false;
        std::task::Poll::Ready(r)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(feature = "tls")]
impl<W: tokio::io::AsyncWrite + Unpin + Send + 'static> WriteHalf for Buffered<W> {
    fn try_write_now(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }

    fn unflushed(&self) -> bool {
        self.dirty
    }
}

async fn run<R: tokio::io::AsyncRead + Unpin, W: WriteHalf>(
    mut rd: R,
    mut wr: W,
    mut rx: mpsc::Receiver<Job>,
    mut pipe: Pipeline<ReplyTx>,
) {
    let server = pipe.settings().server.clone();
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
                Err(e) => break io_failure(&server, e),
            },
            // Write what is queued; with nothing queued, finish sending what a TLS write
            // accepted but the socket could not take yet.
            r = async {
                if wbuf.is_empty() {
                    wr.flush().await
                } else {
                    wr.write_buf(&mut wbuf).await.map(drop)
                }
            }, if !wbuf.is_empty() || wr.unflushed() => {
                if let Err(e) = r {
                    break io_failure(&server, e);
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
                    match wr.try_write_now(&wbuf) {
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
