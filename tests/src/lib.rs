//! Harness for integration tests and end-to-end benchmarks of multiput against
//! real `memcached` processes.
//!
//! Every server is a child process of the test binary, listening on
//! `127.0.0.1` only, on its own port. The harness only ever signals the PIDs of
//! the children it spawned itself, and every wait it performs is bounded in
//! time. It deliberately does not depend on the `multiput` crate, so that the
//! raw helpers can check what servers actually hold independently of the
//! client under test.
//!
//! # Requirements
//!
//! Debian's `memcached` package (1.6.x). Install it with
//! `apt-get install memcached`, or run `scripts/memcached.sh start PORT`, which
//! installs it when missing. The binary is taken from `$MEMCACHED_BIN` when set,
//! otherwise `memcached` is looked up in `PATH`. When the tests run as root,
//! `-u root` is passed (memcached refuses to run as root without it).
//!
//! # Usage
//!
//! ```no_run
//! use multiput_tests::{cluster, raw_get, raw_set, Memcached};
//!
//! // One server on a free port: memcached -l 127.0.0.1 -p PORT -U 0 -m 64 -t 2 -c 4096
//! let mc = Memcached::start();
//! raw_set(&mc.addr(), "k", 7, b"hello");
//! assert_eq!(raw_get(&mc.addr(), "k"), Some((7, b"hello".to_vec())));
//!
//! // Extra arguments are appended (later memcached options override earlier ones).
//! let big = Memcached::builder().arg("-I").arg("2m").start();
//!
//! // Several servers, started concurrently, each on its own port.
//! let servers = cluster(3);
//! let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
//!
//! // Failure injection.
//! servers[0].kill(); // SIGKILL + reap: connections to the port are refused
//! servers[1].stop(); // SIGSTOP: connects succeed, nothing is answered
//! servers[1].cont(); // SIGCONT: answers again
//! servers[0].restart(); // fresh, empty server on the same port
//! # drop((big, addrs));
//! // Dropping a `Memcached` kills and reaps its process.
//! ```
//!
//! All methods of [`Memcached`] take `&self` (state is behind a mutex), so a
//! server can be shared with other threads or tasks, e.g. in an `Arc`, and be
//! killed or stopped while a client is using it.
//!
//! Nothing here measures or asserts on time: timeouts only bound waits.

pub mod certs;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Default bound on the wait for a freshly spawned server to answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the time [`Memcached::restart`] keeps retrying to get the same port
/// back (the old socket may linger briefly).
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(10);

/// Default overall timeout of the `raw_*` helpers.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(2);

/// Arguments always passed (after `-l 127.0.0.1 -p PORT`).
const BASE_ARGS: &[&str] = &["-U", "0", "-m", "64", "-t", "2", "-c", "4096"];

/// How many fresh ports [`Builder::start`] tries when no port was fixed.
const PORT_ATTEMPTS: usize = 5;

/// Bound on waiting for a killed child to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

const INSTALL_HINT: &str = "install it: `apt-get install memcached` (Debian's memcached 1.6.x), \
     or run `scripts/memcached.sh start PORT`, which installs it; \
     or point MEMCACHED_BIN at a memcached binary";

static LOG_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The memcached binary: `$MEMCACHED_BIN` or `memcached` (looked up in `PATH`).
pub fn memcached_bin() -> PathBuf {
    std::env::var_os("MEMCACHED_BIN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("memcached"))
}

/// Configures and starts a [`Memcached`]. Obtained from [`Memcached::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    bin: Option<PathBuf>,
    extra_args: Vec<OsString>,
    port: Option<u16>,
    startup_timeout: Duration,
    listening_only: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            bin: None,
            extra_args: Vec::new(),
            port: None,
            startup_timeout: STARTUP_TIMEOUT,
            listening_only: false,
        }
    }
}

impl Builder {
    /// Ready when the port accepts connections (and the process is alive), without asking
    /// it anything: for servers that only talk TLS (`-Z`) or only to authenticated clients
    /// (`-Y`).
    pub fn listening_only(mut self) -> Self {
        self.listening_only = true;
        self
    }

    /// Appends one extra command-line argument (after the defaults, so e.g.
    /// `-m 128` overrides the default `-m 64`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.extra_args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several extra command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.extra_args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Uses this memcached binary instead of [`memcached_bin()`].
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Uses this port instead of picking a free one (no retry on another port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Bound on the wait for the server to answer (default [`STARTUP_TIMEOUT`]).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server, panicking with a descriptive message on failure
    /// (including when memcached is not installed).
    pub fn start(self) -> Memcached {
        match self.try_start() {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the server. With no fixed port, a free port is picked by binding
    /// `127.0.0.1:0`, and up to a few fresh ports are tried if the start fails.
    pub fn try_start(self) -> io::Result<Memcached> {
        let config = Config {
            bin: self.bin.unwrap_or_else(memcached_bin),
            extra_args: self.extra_args,
            startup_timeout: self.startup_timeout,
            log_path: new_log_path(),
            listening_only: self.listening_only,
        };
        let mut errors = Vec::new();
        let attempts = if self.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        for _ in 0..attempts {
            let port = match self.port {
                Some(p) => p,
                None => match free_port() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = std::fs::remove_file(&config.log_path);
                        return Err(e);
                    }
                },
            };
            match spawn_ready(&config, port) {
                Ok(child) => {
                    let pid = child.id();
                    return Ok(Memcached {
                        port,
                        config,
                        inner: Mutex::new(Inner {
                            child: Some(child),
                            pid,
                            stopped: false,
                        }),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_file(&config.log_path);
                    return Err(e);
                }
                Err(e) => errors.push(format!("port {port}: {e}")),
            }
        }
        let _ = std::fs::remove_file(&config.log_path);
        Err(io::Error::other(format!(
            "could not start memcached after {attempts} attempt(s):\n  {}",
            errors.join("\n  ")
        )))
    }
}

#[derive(Debug)]
struct Config {
    bin: PathBuf,
    extra_args: Vec<OsString>,
    startup_timeout: Duration,
    /// stdout+stderr of the current process (recreated on every spawn).
    log_path: PathBuf,
    /// Ready when the port accepts a connection ([`Builder::listening_only`]).
    listening_only: bool,
}

#[derive(Debug)]
struct Inner {
    /// `None` once the process has been killed and reaped.
    child: Option<Child>,
    /// PID of the most recently spawned process.
    pid: u32,
    stopped: bool,
}

impl Inner {
    /// The child if it has not exited yet (reaping it if it has). A PID
    /// returned through this is still ours: it is running, stopped, or at worst
    /// an unreaped zombie, so signalling it cannot hit another process.
    fn live_child(&mut self) -> Option<&mut Child> {
        let exited = match self.child.as_mut()?.try_wait() {
            Ok(None) => false,
            Ok(Some(_)) | Err(_) => true,
        };
        if exited {
            self.child = None;
            self.stopped = false;
            None
        } else {
            self.child.as_mut()
        }
    }

    fn signal(&mut self, sig: libc::c_int) -> bool {
        match self.live_child() {
            Some(child) => {
                let pid = child.id() as libc::pid_t;
                // SAFETY: plain syscall; `pid` is our own un-reaped child.
                unsafe { libc::kill(pid, sig) == 0 }
            }
            None => false,
        }
    }

    /// SIGCONT (if stopped), SIGKILL and reap. Idempotent.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.stopped {
            self.signal(libc::SIGCONT);
            self.stopped = false;
        }
        let mut child = self.child.take()?;
        let _ = child.kill(); // SIGKILL to the child's own PID only
        wait_bounded(&mut child, REAP_TIMEOUT)
    }
}

/// A `memcached` child process listening on `127.0.0.1:port()`.
///
/// Dropping it kills (SIGCONT first if stopped, then SIGKILL) and reaps the
/// process.
#[derive(Debug)]
pub struct Memcached {
    port: u16,
    config: Config,
    inner: Mutex<Inner>,
}

impl Memcached {
    /// Starts a server on a free port with the default arguments.
    /// Panics if it cannot (e.g. memcached is not installed).
    pub fn start() -> Memcached {
        Builder::default().start()
    }

    /// A builder for extra arguments, a fixed port or a startup timeout.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The TCP port (stays the same across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The address as a [`SocketAddr`].
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// PID of the most recently spawned process (it may have been killed since).
    pub fn pid(&self) -> u32 {
        self.lock().pid
    }

    /// The full command line used to (re)start the server, for diagnostics.
    pub fn command_line(&self) -> String {
        let args: Vec<String> = server_args(&self.config, self.port)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!("{} {}", self.config.bin.display(), args.join(" "))
    }

    /// Whether the process is alive (a SIGSTOPped process counts as alive).
    pub fn is_running(&self) -> bool {
        self.lock().live_child().is_some()
    }

    /// Whether the process is currently SIGSTOPped by [`stop`](Self::stop).
    pub fn is_stopped(&self) -> bool {
        let mut inner = self.lock();
        inner.live_child().is_some() && inner.stopped
    }

    /// SIGKILL the process and reap it. Afterwards connections to the port are
    /// refused. No-op if it is not running.
    pub fn kill(&self) {
        self.lock().kill_and_reap();
    }

    /// SIGSTOP the process: connections are still accepted by the kernel
    /// (listen backlog) but nothing is answered. Panics if it is not running.
    pub fn stop(&self) {
        let mut inner = self.lock();
        assert!(
            inner.signal(libc::SIGSTOP),
            "memcached on port {} is not running; cannot SIGSTOP it",
            self.port
        );
        inner.stopped = true;
        let pid = inner.live_child().map(|c| c.id());
        drop(inner);
        // kill(2) returns before every thread has stopped; a thread that is running on the
        // other CPU can still answer a request. Wait (bounded) until all are in state T.
        if let Some(pid) = pid {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !all_threads_stopped(pid) && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// SIGCONT the process after [`stop`](Self::stop). Panics if it is not running.
    pub fn cont(&self) {
        let mut inner = self.lock();
        assert!(
            inner.signal(libc::SIGCONT),
            "memcached on port {} is not running; cannot SIGCONT it",
            self.port
        );
        inner.stopped = false;
    }

    /// Kills the process if alive, then starts a fresh, empty one on the same
    /// port and waits until it answers. Retries for up to [`RESTART_TIMEOUT`]
    /// in case the port lingers; panics if it cannot get the port back.
    pub fn restart(&self) {
        let mut inner = self.lock();
        inner.kill_and_reap();
        let deadline = Instant::now() + RESTART_TIMEOUT;
        let mut last_err;
        loop {
            match spawn_ready(&self.config, self.port) {
                Ok(child) => {
                    inner.pid = child.id();
                    inner.child = Some(child);
                    inner.stopped = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => panic!("{e}"),
                Err(e) => last_err = e,
            }
            if Instant::now() >= deadline {
                panic!(
                    "could not restart memcached on port {} within {:?}: {last_err}",
                    self.port, RESTART_TIMEOUT
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Output memcached wrote so far (stdout and stderr of the current process).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.config.log_path).unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the state usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.kill_and_reap();
        let _ = std::fs::remove_file(&self.config.log_path);
    }
}

/// Starts `n` servers concurrently, each on its own free port.
/// Panics if any of them cannot be started (the others are then dropped, i.e.
/// killed).
pub fn cluster(n: usize) -> Vec<Memcached> {
    cluster_with(n, Memcached::builder)
}

/// Like [`cluster`], with each server configured by `builder()`
/// (e.g. `cluster_with(3, || Memcached::builder().args(["-I", "2m"]))`).
pub fn cluster_with(n: usize, builder: impl Fn() -> Builder + Sync) -> Vec<Memcached> {
    let results: Vec<io::Result<Memcached>> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let b = builder();
                s.spawn(move || b.try_start())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("start thread panicked")))
            })
            .collect()
    });
    let mut servers = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(m) => servers.push(m),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        drop(servers);
        panic!(
            "cluster({n}): {} server(s) failed to start:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    servers
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn new_log_path() -> PathBuf {
    let n = LOG_COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "multiput-memcached-{}-{}.log",
        std::process::id(),
        n
    ))
}

fn server_args(config: &Config, port: u16) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-l".into(), "127.0.0.1".into(), "-p".into()];
    args.push(port.to_string().into());
    args.extend(BASE_ARGS.iter().map(OsString::from));
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // memcached refuses to run as root without -u.
        args.push("-u".into());
        args.push("root".into());
    }
    args.extend(config.extra_args.iter().cloned());
    args
}

/// Spawns memcached on `port` and waits until it answers `version` and its
/// `stats` report our child's PID (so that a different process already on the
/// port is not mistaken for ours). On failure the child is killed and reaped.
fn spawn_ready(config: &Config, port: u16) -> io::Result<Child> {
    let log = File::create(&config.log_path)?;
    let log_err = log.try_clone()?;
    let mut child = Command::new(&config.bin)
        .args(server_args(config, port))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "memcached binary `{}` not found ({e}); {INSTALL_HINT}",
                        config.bin.display()
                    ),
                )
            } else {
                io::Error::new(
                    e.kind(),
                    format!("cannot spawn `{}`: {e}", config.bin.display()),
                )
            }
        })?;
    let pid = child.id();
    let log_tail = || {
        let log = std::fs::read_to_string(&config.log_path).unwrap_or_default();
        let log = log.trim();
        if log.is_empty() {
            String::from("(no output)")
        } else {
            log.to_string()
        }
    };
    let deadline = Instant::now() + config.startup_timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(io::Error::other(format!(
                    "memcached (pid {pid}) exited during startup with {status}: {}",
                    log_tail()
                )));
            }
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                wait_bounded(&mut child, REAP_TIMEOUT);
                return Err(e);
            }
        }
        let ready = if config.listening_only {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        } else {
            matches!(answers_as(port, pid), Ok(true))
        };
        if ready {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            wait_bounded(&mut child, REAP_TIMEOUT);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "memcached (pid {pid}) did not answer on 127.0.0.1:{port} within {:?}: {}",
                    config.startup_timeout,
                    log_tail()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server on `port` answers `version` and reports `pid` in `stats`.
fn answers_as(port: u16, pid: u32) -> io::Result<bool> {
    let addr = format!("127.0.0.1:{port}");
    let resp = try_raw_command(
        &addr,
        b"version\r\nstats\r\n",
        b"END\r\n",
        Duration::from_millis(500),
    )?;
    let text = String::from_utf8_lossy(&resp);
    let pid_line = format!("\r\nSTAT pid {pid}\r\n");
    Ok(text.starts_with("VERSION ") && text.contains(&pid_line))
}

/// Waits at most `timeout` for `child` to exit (reaping it).
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// Raw text-protocol helpers, independent of the client under test.
// ---------------------------------------------------------------------------

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: no address"));
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads from `stream` until `complete(buf)` is true, EOF, or `deadline`.
/// Returns `Ok((buf, true))` when complete, `Ok((buf, false))` on EOF, and an
/// error of kind `TimedOut` at the deadline.
fn read_until(
    stream: &mut TcpStream,
    deadline: Instant,
    mut complete: impl FnMut(&[u8]) -> bool,
) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if complete(&buf) {
            return Ok((buf, true));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(&buf));
        }
        stream.set_read_timeout(Some(deadline - now))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok((buf, false)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out(&buf));
            }
            Err(e) => return Err(e),
        }
    }
}

fn timed_out(buf: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "timed out waiting for the reply; got {} byte(s): {:?}",
            buf.len(),
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        ),
    )
}

/// Connects to `addr`, writes `request`, and reads until the reply ends with
/// `terminator`, the server closes the connection, or `timeout` (overall,
/// connect included) expires.
///
/// Returns the bytes read when the terminator was seen or at EOF; an error of
/// kind `TimedOut` when the time ran out first (e.g. a SIGSTOPped server), or
/// the connect/IO error (e.g. `ConnectionRefused` for a killed server).
/// An empty `terminator` reads until EOF or timeout.
pub fn try_raw_command(
    addr: &str,
    request: &[u8],
    terminator: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let (buf, _) = read_until(&mut stream, deadline, |b| {
        !terminator.is_empty() && b.ends_with(terminator)
    })?;
    Ok(buf)
}

/// Like [`try_raw_command`] with a [`RAW_TIMEOUT`] bound, but never fails on a
/// timeout: returns whatever was read by then. Panics on connect or IO errors.
///
/// `raw_command(&addr, b"stats\r\n", b"END\r\n")`.
///
/// The terminator is only checked at the end of the data read so far, so a
/// value that itself contains the terminator can end the read early; use
/// [`raw_get`] for values.
pub fn raw_command(addr: &str, request: &[u8], terminator: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + RAW_TIMEOUT;
    let mut stream =
        connect(addr, RAW_TIMEOUT).unwrap_or_else(|e| panic!("raw_command: connect {addr}: {e}"));
    stream
        .set_write_timeout(Some(RAW_TIMEOUT))
        .and_then(|_| stream.write_all(request))
        .unwrap_or_else(|e| panic!("raw_command: write to {addr}: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if !terminator.is_empty() && buf.ends_with(terminator) {
            return buf;
        }
        let now = Instant::now();
        if now >= deadline {
            return buf;
        }
        stream
            .set_read_timeout(Some(deadline - now))
            .unwrap_or_else(|e| panic!("raw_command: {addr}: {e}"));
        match stream.read(&mut chunk) {
            Ok(0) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return buf;
            }
            Err(e) => panic!("raw_command: read from {addr}: {e}"),
        }
    }
}

/// Outcome of parsing a `get` reply.
enum GetReply {
    Incomplete,
    Miss,
    Hit(u32, Vec<u8>),
    Error(String),
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn parse_get_reply(buf: &[u8]) -> GetReply {
    let Some(eol) = find_crlf(buf) else {
        return GetReply::Incomplete;
    };
    let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
    if line == "END" {
        return GetReply::Miss;
    }
    let mut parts = line.split(' ');
    if parts.next() != Some("VALUE") {
        return GetReply::Error(line);
    }
    let _key = parts.next();
    let (Some(Ok(flags)), Some(Ok(len))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<usize>),
    ) else {
        return GetReply::Error(format!("malformed VALUE line: {line:?}"));
    };
    let start = eol + 2;
    let end = start + len;
    const TAIL: &[u8] = b"\r\nEND\r\n";
    if buf.len() < end + TAIL.len() {
        return GetReply::Incomplete;
    }
    if &buf[end..end + TAIL.len()] != TAIL {
        return GetReply::Error(format!(
            "unexpected bytes after a {len}-byte value: {:?}",
            String::from_utf8_lossy(&buf[end..buf.len().min(end + 64)])
        ));
    }
    GetReply::Hit(flags, buf[start..end].to_vec())
}

/// Reads `key` from the server at `addr` with the text protocol (`get`),
/// independently of the client under test. Returns `(flags, data)` or `None`
/// on a miss. Panics on connect/IO errors, timeouts ([`RAW_TIMEOUT`]) or an
/// error reply.
pub fn raw_get(addr: &str, key: &str) -> Option<(u32, Vec<u8>)> {
    let deadline = Instant::now() + RAW_TIMEOUT;
    let mut stream = connect(addr, RAW_TIMEOUT)
        .unwrap_or_else(|e| panic!("raw_get {key:?}: connect {addr}: {e}"));
    stream
        .set_write_timeout(Some(RAW_TIMEOUT))
        .and_then(|_| stream.write_all(format!("get {key}\r\n").as_bytes()))
        .unwrap_or_else(|e| panic!("raw_get {key:?}: write to {addr}: {e}"));
    let (buf, _) = read_until(&mut stream, deadline, |b| {
        !matches!(parse_get_reply(b), GetReply::Incomplete)
    })
    .unwrap_or_else(|e| panic!("raw_get {key:?} from {addr}: {e}"));
    match parse_get_reply(&buf) {
        GetReply::Miss => None,
        GetReply::Hit(flags, data) => Some((flags, data)),
        GetReply::Error(msg) => panic!("raw_get {key:?} from {addr}: {msg}"),
        GetReply::Incomplete => panic!(
            "raw_get {key:?} from {addr}: connection closed after {} byte(s): {:?}",
            buf.len(),
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        ),
    }
}

/// Stores `key` = `data` with `flags` (no expiry) on the server at `addr` with
/// the text protocol (`set`), independently of the client under test.
/// Panics unless the server answers `STORED`.
pub fn raw_set(addr: &str, key: &str, flags: u32, data: &[u8]) {
    let mut req = format!("set {key} {flags} 0 {}\r\n", data.len()).into_bytes();
    req.extend_from_slice(data);
    req.extend_from_slice(b"\r\n");
    let resp = try_raw_command(addr, &req, b"\r\n", RAW_TIMEOUT)
        .unwrap_or_else(|e| panic!("raw_set {key:?} on {addr}: {e}"));
    assert!(
        resp == b"STORED\r\n",
        "raw_set {key:?} ({} bytes) on {addr}: expected STORED, got {:?}",
        data.len(),
        String::from_utf8_lossy(&resp)
    );
}

/// The server's `stats` as a map (e.g. `"curr_items"`, `"curr_connections"`,
/// `"pid"`, `"limit_maxbytes"`). Panics on errors or timeouts.
pub fn raw_stats(addr: &str) -> BTreeMap<String, String> {
    stats_command(addr, "stats")
}

/// The server's `stats settings` as a map (e.g. `"item_size_max"`,
/// `"maxconns"`, `"num_threads"`). Panics on errors or timeouts.
pub fn raw_stats_settings(addr: &str) -> BTreeMap<String, String> {
    stats_command(addr, "stats settings")
}

fn stats_command(addr: &str, command: &str) -> BTreeMap<String, String> {
    let req = format!("{command}\r\n");
    let resp = try_raw_command(addr, req.as_bytes(), b"END\r\n", RAW_TIMEOUT)
        .unwrap_or_else(|e| panic!("{command:?} on {addr}: {e}"));
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.ends_with("END\r\n"),
        "{command:?} on {addr}: unexpected reply {text:?}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// True when every thread of `pid` is stopped (state `T` or `t` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
            })
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_replies() {
        assert!(matches!(parse_get_reply(b""), GetReply::Incomplete));
        assert!(matches!(parse_get_reply(b"EN"), GetReply::Incomplete));
        assert!(matches!(parse_get_reply(b"END\r\n"), GetReply::Miss));
        assert!(matches!(
            parse_get_reply(b"VALUE k 3 5\r\nab"),
            GetReply::Incomplete
        ));
        assert!(matches!(
            parse_get_reply(b"VALUE k 3 5\r\nabcde\r\nEN"),
            GetReply::Incomplete
        ));
        // A value containing the terminator is taken by length.
        match parse_get_reply(b"VALUE k 3 7\r\nEND\r\nab\r\nEND\r\n") {
            GetReply::Hit(3, d) => assert_eq!(d, b"END\r\nab"),
            _ => panic!("expected a hit"),
        }
        assert!(matches!(
            parse_get_reply(b"CLIENT_ERROR bad command line format\r\n"),
            GetReply::Error(_)
        ));
    }
}
