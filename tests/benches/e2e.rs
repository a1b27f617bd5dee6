//! End-to-end benchmark of multiput against real memcached servers, next to hand-written raw
//! socket floors and the peer clients `async-memcached` 0.9 and `memcache` 0.21.
//!
//! A plain program (`harness = false`), not criterion: it starts its own servers with the test
//! harness, runs every row for a bounded number of operations AND a bounded time, and prints one
//! markdown table per scenario.
//!
//! ```text
//! cargo bench -p multiput-tests --bench e2e
//! E2E_PIN_CLIENT_CPU=0 E2E_PIN_SERVER_CPU=0 E2E_SECONDS=0.5 cargo bench -p multiput-tests --bench e2e
//! ```
//!
//! Environment:
//! - `E2E_SECONDS` (default 2): measured time per row; warm-up is a tenth of it (at most 0.2 s).
//! - `E2E_PIN_CLIENT_CPU=N`: pin this process (every thread, runtimes included) to CPU N.
//! - `E2E_PIN_SERVER_CPU=N`: pin every thread of every memcached started here to CPU N.
//! - `E2E_OUT=path`: also write the report (header and tables) to this file.
//! - `E2E_VALUE_LEN=N` (default 100): the value size of every row.
//! - `E2E_ONLY=word,word`: run only the scenarios whose id contains one of the words
//!   (`get`, `set`, `multi1`, `multi3`, `conc`, `repl`, `tls`).
//!
//! `repl` measures `multiput::ReplicatedClient` (3 replicas) against the single-server call
//! and a hand-written acknowledged fan-out (async-memcached, three `tokio::join!`ed calls), and
//! checks that reads pick the newest copy when the 3 replicas hold different copies.
//!
//! Read ratios within one run: absolute numbers on these VMs move ±25% between runs (see
//! DESIGN.md, "Performance facts measured on these machines"). Unpinned, every round trip
//! pays cross-vCPU wake-ups (~50 µs each); pinned (client and server on one vCPU), a row shows
//! the client's own CPU cost per operation.

use multiput_tests::{cluster, raw_command, Memcached};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The value size of every row: `E2E_VALUE_LEN` bytes (default 100; e.g. 512000 for the
/// large-value comparison of blocking and async clients).
fn value_len() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| {
        std::env::var("E2E_VALUE_LEN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
    })
}
/// Distinct keys the single-key rows cycle through (all hits).
const SINGLE_KEYS: usize = 1000;

/// The distinct keys of the single-key rows: [`SINGLE_KEYS`], fewer for large values so they
/// all fit in the bench servers' 64 MB (every get a hit).
fn single_keys() -> usize {
    (16 * 1024 * 1024 / value_len().max(1)).clamp(4, SINGLE_KEYS)
}
/// Keys per multi-get call.
const MULTI_KEYS: usize = 100;
/// Tasks of the concurrency scenario, and the pipeline depth of its raw floors.
const TASKS: usize = 64;
/// Bound on any raw socket wait; a server that stops answering fails the row, not the run.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Operation caps per measured second (safety bounds; rows normally stop on time).
const SEQ_OPS_PER_SEC: f64 = 400_000.0;
const MULTI_CALLS_PER_SEC: f64 = 50_000.0;
const CONC_OPS_PER_SEC: f64 = 3_000_000.0;

// ---------------------------------------------------------------------------------------------
// Settings, pinning, cleanup on signals
// ---------------------------------------------------------------------------------------------

struct Settings {
    seconds: f64,
    pin_client: Option<usize>,
    pin_server: Option<usize>,
    out: Option<String>,
    only: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let cpu = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<usize>()
                        .unwrap_or_else(|_| panic!("{name}={s:?}: expected a CPU number"))
                })
        };
        let seconds = std::env::var("E2E_SECONDS")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0 && *x <= 600.0)
                    .unwrap_or_else(|| panic!("E2E_SECONDS={s:?}: expected seconds in (0, 600]"))
            })
            .unwrap_or(2.0);
        Settings {
            seconds,
            pin_client: cpu("E2E_PIN_CLIENT_CPU"),
            pin_server: cpu("E2E_PIN_SERVER_CPU"),
            out: std::env::var("E2E_OUT").ok().filter(|s| !s.is_empty()),
            only: std::env::var("E2E_ONLY")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| id.contains(w.as_str()))
    }

    /// A budget of `E2E_SECONDS` with an op cap of `ops_per_sec` per measured second.
    fn budget(&self, ops_per_sec: f64) -> Budget {
        let time = Duration::from_secs_f64(self.seconds);
        let warm_time = Duration::from_secs_f64((self.seconds / 10.0).clamp(0.02, 0.2));
        let ops = ((ops_per_sec * self.seconds) as u64).max(100);
        Budget {
            time,
            ops,
            warm_time,
            warm_ops: (ops / 10).max(10),
        }
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t; CPU_SET bounds-checks against its size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pin thread `tid` (0: the calling thread) to `cpu`.
fn pin_thread(tid: libc::pid_t, cpu: usize) -> io::Result<()> {
    let set = cpu_set(cpu);
    // SAFETY: plain syscall with a valid, correctly sized mask.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pin every thread of process `pid` to `cpu`; returns how many threads were pinned.
fn pin_process(pid: u32, cpu: usize) -> io::Result<usize> {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let name = t?.file_name();
        if let Some(tid) = name.to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) {
            pin_thread(tid, cpu)?;
            n += 1;
        }
    }
    Ok(n)
}

/// PIDs of the servers started here, so a SIGINT/SIGTERM still kills them.
static SERVER_PIDS: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];

extern "C" fn on_signal(sig: libc::c_int) {
    for p in &SERVER_PIDS {
        let pid = p.load(Relaxed);
        if pid > 0 {
            // SAFETY: kill and _exit are async-signal-safe; the PIDs are our own children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // SAFETY: async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// Milliseconds (since `EPOCH`) when the last row finished; the watchdog's reference.
static HEARTBEAT_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn heartbeat() {
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64;
    HEARTBEAT_MS.store(ms, Relaxed);
}

/// Peer clients have no request timeouts: if a row makes no progress for `limit`, kill the
/// servers and exit rather than hang.
fn start_watchdog(limit: Duration) {
    heartbeat();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64;
        if now.saturating_sub(HEARTBEAT_MS.load(Relaxed)) > limit.as_millis() as u64 {
            eprintln!(
                "e2e: a row has run for more than {limit:?}; killing the servers and exiting"
            );
            for p in &SERVER_PIDS {
                let pid = p.load(Relaxed);
                if pid > 0 {
                    // SAFETY: plain syscall on our own child's PID.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            std::process::exit(3);
        }
    });
}

fn install_signal_cleanup(servers: &[Memcached]) {
    for (slot, s) in SERVER_PIDS.iter().zip(servers) {
        slot.store(s.pid() as i32, Relaxed);
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

/// CPU time used so far by this process (all its threads) and by the servers started here.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    client: Duration,
    /// In clock ticks (`_SC_CLK_TCK`, normally 10 ms): coarse, so only meaningful over a long
    /// enough row.
    server_ticks: u64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid clock id and a valid out pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        let client = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        let mut server_ticks = 0;
        for p in &SERVER_PIDS {
            let pid = p.load(Relaxed);
            if pid <= 0 {
                continue;
            }
            // Fields 14 and 15 of /proc/PID/stat (after the parenthesised command name).
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some((_, rest)) = stat.rsplit_once(')') {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    // rest starts at field 3 (state): utime is field 14 → index 11.
                    for i in [11, 12] {
                        server_ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    }
                }
            }
        }
        Cpu {
            client,
            server_ticks,
        }
    }

    /// (client CPU, server CPU) used since `earlier`.
    fn since(self, earlier: Cpu) -> (Duration, Duration) {
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks = self.server_ticks.saturating_sub(earlier.server_ticks);
        (
            self.client.saturating_sub(earlier.client),
            Duration::from_nanos(ticks * 1_000_000_000 / tck),
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Budget {
    time: Duration,
    ops: u64,
    warm_time: Duration,
    warm_ops: u64,
}

#[derive(Clone, Debug, Default)]
struct Measure {
    /// Units done (ops, or keys for multi-gets) in the measured window.
    units: u64,
    /// Calls done in the measured window.
    calls: u64,
    secs: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    errors: u64,
    /// CPU time of this process (client) and of the servers during the measured window.
    client_cpu: Duration,
    server_cpu: Duration,
}

impl Measure {
    /// CPU µs per call (client, server).
    fn cpu_per_call(&self) -> (Option<f64>, Option<f64>) {
        if self.calls == 0 {
            return (None, None);
        }
        let per = |d: Duration| Some(d.as_secs_f64() * 1e6 / self.calls as f64);
        (per(self.client_cpu), per(self.server_cpu))
    }

    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.units as f64 / self.secs
        } else {
            0.0
        }
    }
}

fn percentiles(lat: &mut [u32]) -> (Option<Duration>, Option<Duration>) {
    if lat.is_empty() {
        return (None, None);
    }
    lat.sort_unstable();
    let at = |q: f64| {
        let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
        Some(Duration::from_nanos(lat[i] as u64))
    };
    (at(0.50), at(0.99))
}

/// A sequential loop's clock: a warm-up phase (not recorded), then a measured phase bounded by
/// both a count and a time.
///
/// ```ignore
/// let mut rec = Recorder::new(budget);
/// while rec.more() { let t = Instant::now(); op(); rec.done(t, units, ok); }
/// ```
struct Recorder {
    b: Budget,
    warming: bool,
    start: Instant,
    last: Instant,
    cpu: Cpu,
    calls: u64,
    units: u64,
    errors: u64,
    lat: Vec<u32>,
}

impl Recorder {
    fn new(b: Budget) -> Recorder {
        let now = Instant::now();
        Recorder {
            b,
            warming: true,
            start: now,
            last: now,
            cpu: Cpu::now(),
            calls: 0,
            units: 0,
            errors: 0,
            lat: Vec::with_capacity(1 << 16),
        }
    }

    #[inline]
    fn more(&mut self) -> bool {
        let elapsed = self.last - self.start;
        if self.warming {
            if self.calls >= self.b.warm_ops || elapsed >= self.b.warm_time {
                self.warming = false;
                self.calls = 0;
                self.units = 0;
                self.errors = 0;
                self.lat.clear();
                self.cpu = Cpu::now();
                self.start = Instant::now();
                self.last = self.start;
            }
            return true;
        }
        self.calls < self.b.ops && elapsed < self.b.time
    }

    #[inline]
    fn done(&mut self, t0: Instant, units: u64, ok: bool) {
        let now = Instant::now();
        self.lat
            .push((now - t0).as_nanos().min(u32::MAX as u128) as u32);
        self.calls += 1;
        if ok {
            self.units += units;
        } else {
            self.errors += 1;
        }
        self.last = now;
    }

    fn finish(mut self) -> Measure {
        let (client_cpu, server_cpu) = Cpu::now().since(self.cpu);
        let (p50, p99) = percentiles(&mut self.lat);
        Measure {
            client_cpu,
            server_cpu,
            units: self.units,
            calls: self.calls,
            secs: (self.last - self.start).as_secs_f64(),
            p50,
            p99,
            errors: self.errors,
        }
    }
}

/// State shared by the tasks of a concurrent row and the clock that runs it.
#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    calls: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    /// Account for one finished op; false when the task must stop.
    #[inline]
    fn record(&self, t0: Instant, ok: bool, lat: &mut Vec<u32>, local: &mut u64, cap: u64) -> bool {
        *local += 1;
        if self.stop.load(Relaxed) || *local > cap {
            return false;
        }
        if self.measuring.load(Relaxed) {
            lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            self.calls.fetch_add(1, Relaxed);
            if !ok {
                self.errors.fetch_add(1, Relaxed);
            }
        }
        true
    }
}

/// Run `workers` (one task each) on the current runtime: warm up, measure until the op cap or
/// the time is reached, stop them, and collect their latencies.
async fn drive_concurrent<S, W, Fut>(b: Budget, states: Vec<S>, worker: W) -> Measure
where
    W: Fn(S, Arc<Shared>, u64) -> Fut,
    Fut: Future<Output = Vec<u32>> + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    // Per-task cap: every task stops on its own after this many ops, whatever happens.
    let cap = b.ops + b.warm_ops;
    let handles: Vec<_> = states
        .into_iter()
        .map(|s| tokio::spawn(worker(s, shared.clone(), cap)))
        .collect();
    tokio::time::sleep(b.warm_time).await;
    let cpu0 = Cpu::now();
    shared.measuring.store(true, Relaxed);
    let t0 = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if shared.calls.load(Relaxed) >= b.ops || t0.elapsed() >= b.time {
            break;
        }
    }
    shared.stop.store(true, Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = Cpu::now().since(cpu0);
    let calls = shared.calls.load(Relaxed);
    let errors = shared.errors.load(Relaxed);
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("benchmark task panicked"));
    }
    let (p50, p99) = percentiles(&mut lat);
    Measure {
        units: calls - errors,
        calls,
        secs,
        p50,
        p99,
        errors,
        client_cpu,
        server_cpu,
    }
}

// ---------------------------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    /// `new_current_thread`.
    Ct,
    /// `new_multi_thread` with 2 workers.
    Mt,
}

impl Flavour {
    fn label(self) -> &'static str {
        match self {
            Flavour::Ct => "current-thread",
            Flavour::Mt => "multi-thread(2)",
        }
    }

    fn runtime(self) -> tokio::runtime::Runtime {
        match self {
            Flavour::Ct => tokio::runtime::Builder::new_current_thread(),
            Flavour::Mt => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
        }
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
    }

    /// Run `f` as a spawned task (so on the multi-thread runtime it runs on a worker, as an
    /// application's tasks do), and wait for it. The runtime is dropped afterwards, which ends
    /// every connection task it holds.
    fn run<F>(self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.runtime();
        let out =
            rt.block_on(async move { tokio::spawn(f).await.expect("benchmark task panicked") });
        rt.shutdown_timeout(Duration::from_secs(2));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Get,
    Set,
    Multi,
}

/// What a row does. For `Get`/`Set`, `servers` is one server and `keys` are cycled through. For
/// `Multi`, one call asks for all of `keys`; `groups[i]` are the keys that live on `servers[i]`.
#[derive(Clone)]
struct Work {
    kind: Kind,
    servers: Arc<Vec<String>>,
    keys: Arc<Vec<String>>,
    groups: Arc<Vec<Vec<String>>>,
    value: Arc<Vec<u8>>,
}

impl Work {
    fn addr(&self) -> &str {
        &self.servers[0]
    }
    fn units(&self) -> u64 {
        match self.kind {
            Kind::Multi => self.keys.len() as u64,
            _ => 1,
        }
    }
}

fn value_bytes() -> Vec<u8> {
    (0..value_len()).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Raw socket floor: a minimal blocking client on a std TcpStream
// ---------------------------------------------------------------------------------------------

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_num(b: &[u8]) -> io::Result<usize> {
    if b.is_empty() || b.len() > 19 {
        return Err(bad(format!("bad number {:?}", String::from_utf8_lossy(b))));
    }
    let mut n = 0usize;
    for &c in b {
        if !c.is_ascii_digit() {
            return Err(bad(format!("bad number {:?}", String::from_utf8_lossy(b))));
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Ok(n)
}

/// A buffered connection that reads replies the way a real client must: line by line, and a
/// value by the length its header announced.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// Request being built.
    w: Vec<u8>,
    /// Where a value read is copied (as a client hands it to its caller).
    val: Vec<u8>,
}

impl Raw {
    fn connect(addr: &str) -> io::Result<Raw> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Raw {
            s,
            buf: vec![0; 64 * 1024],
            head: 0,
            tail: 0,
            w: Vec::with_capacity(16 * 1024),
            val: Vec::with_capacity(value_len()),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.s.write_all(&self.w)?;
        self.w.clear();
        Ok(())
    }

    /// Read more bytes (one `read`), compacting or growing the buffer when full.
    fn fill(&mut self) -> io::Result<()> {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        } else if self.tail == self.buf.len() {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        loop {
            match self.s.read(&mut self.buf[self.tail..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.tail += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line, without its `\r\n`.
    fn line(&mut self) -> io::Result<&[u8]> {
        let mut scanned = 0; // relative to head, survives compaction
        loop {
            let avail = &self.buf[self.head + scanned..self.tail];
            if let Some(p) = avail.windows(2).position(|w| w == b"\r\n") {
                let start = self.head;
                let end = self.head + scanned + p;
                self.head = end + 2;
                return Ok(&self.buf[start..end]);
            }
            scanned = (self.tail - self.head).saturating_sub(1);
            if scanned > 8 * 1024 {
                return Err(bad("reply line too long"));
            }
            self.fill()?;
        }
    }

    /// Exactly `n` bytes.
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.tail - self.head < n {
            if self.buf.len() < n {
                self.buf.resize(n.next_power_of_two(), 0);
            }
            self.fill()?;
        }
        let s = self.head;
        self.head += n;
        Ok(&self.buf[s..s + n])
    }

    /// `len` bytes of data and its `\r\n`, copied to `self.val`.
    fn data(&mut self, len: usize) -> io::Result<()> {
        self.take(len + 2)?;
        let d = &self.buf[self.head - len - 2..self.head];
        if &d[len..] != b"\r\n" {
            return Err(bad("value not followed by \\r\\n"));
        }
        self.val.clear();
        self.val.extend_from_slice(&d[..len]);
        Ok(())
    }

    fn expect_empty(&self) -> io::Result<()> {
        if self.head != self.tail {
            return Err(bad("unexpected bytes after the reply"));
        }
        Ok(())
    }

    // --- requests -------------------------------------------------------------------------

    fn push_mg(&mut self, key: &str, opaque: Option<usize>) {
        self.w.extend_from_slice(b"mg ");
        self.w.extend_from_slice(key.as_bytes());
        self.w.extend_from_slice(b" v f");
        if let Some(o) = opaque {
            let _ = write!(Fmt(&mut self.w), " q O{o}");
        }
        self.w.extend_from_slice(b"\r\n");
    }

    fn push_get<S: AsRef<str>>(&mut self, keys: &[S]) {
        self.w.extend_from_slice(b"get");
        for k in keys {
            self.w.push(b' ');
            self.w.extend_from_slice(k.as_ref().as_bytes());
        }
        self.w.extend_from_slice(b"\r\n");
    }

    // --- replies --------------------------------------------------------------------------

    /// One meta get reply: `Some((len, opaque))` on a hit, `None` on `EN`; `Err` on anything
    /// else. `MN` (end of a quiet batch) is reported as `Ok(None)` with `*mn = true`.
    fn meta_get_reply(&mut self, mn: &mut bool) -> io::Result<Option<(usize, usize)>> {
        let line = self.line()?;
        *mn = false;
        if line == b"EN" {
            return Ok(None);
        }
        if line == b"MN" {
            *mn = true;
            return Ok(None);
        }
        let mut parts = line.split(|&c| c == b' ');
        if parts.next() != Some(b"VA") {
            return Err(bad(format!(
                "meta get: {:?}",
                String::from_utf8_lossy(line)
            )));
        }
        let len = parse_num(parts.next().unwrap_or_default())?;
        let mut opaque = 0;
        for f in parts {
            if let Some(o) = f.strip_prefix(b"O") {
                opaque = parse_num(o)?;
            }
        }
        self.data(len)?;
        Ok(Some((len, opaque)))
    }

    /// A text get reply (`VALUE ...` blocks then `END`): the number of values and whether
    /// every value had `value_len()` bytes.
    fn text_get_reply(&mut self) -> io::Result<(usize, bool)> {
        let mut n = 0;
        let mut all_ok = true;
        loop {
            let line = self.line()?;
            if line == b"END" {
                return Ok((n, all_ok));
            }
            let mut parts = line.split(|&c| c == b' ');
            if parts.next() != Some(b"VALUE") {
                return Err(bad(format!("get: {:?}", String::from_utf8_lossy(line))));
            }
            let (_key, _flags) = (parts.next(), parts.next());
            let len = parse_num(parts.next().unwrap_or_default())?;
            self.data(len)?;
            all_ok &= len == value_len();
            n += 1;
        }
    }

    fn status_line(&mut self, want: &[u8]) -> io::Result<()> {
        let line = self.line()?;
        if line != want {
            return Err(bad(format!(
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(line)
            )));
        }
        Ok(())
    }

    // --- whole ops ------------------------------------------------------------------------

    fn meta_get(&mut self, key: &str) -> io::Result<bool> {
        self.push_mg(key, None);
        self.flush()?;
        let mut mn = false;
        let r = self.meta_get_reply(&mut mn)?;
        Ok(matches!(r, Some((n, _)) if n == value_len()) && self.val.len() == value_len())
    }

    fn text_get(&mut self, key: &str) -> io::Result<bool> {
        self.push_get(&[key]);
        self.flush()?;
        let (n, ok) = self.text_get_reply()?;
        Ok(n == 1 && ok)
    }

    fn meta_set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        let _ = write!(Fmt(&mut self.w), "ms {key} {}\r\n", value.len());
        self.w.extend_from_slice(value);
        self.w.extend_from_slice(b"\r\n");
        self.flush()?;
        self.status_line(b"HD")
    }

    fn text_set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        let _ = write!(Fmt(&mut self.w), "set {key} 0 0 {}\r\n", value.len());
        self.w.extend_from_slice(value);
        self.w.extend_from_slice(b"\r\n");
        self.flush()?;
        self.status_line(b"STORED")
    }
}

/// `fmt::Write` into a byte vector (numbers without an allocation).
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Store `keys` = `value` on `addr`, pipelined in batches over one connection.
fn load(addr: &str, keys: &[String], value: &[u8]) {
    let mut c = Raw::connect(addr).unwrap_or_else(|e| panic!("load: connect {addr}: {e}"));
    for chunk in keys.chunks(100) {
        for k in chunk {
            let _ = write!(Fmt(&mut c.w), "set {k} 0 0 {}\r\n", value.len());
            c.w.extend_from_slice(value);
            c.w.extend_from_slice(b"\r\n");
        }
        c.flush()
            .unwrap_or_else(|e| panic!("load: write to {addr}: {e}"));
        for _ in chunk {
            c.status_line(b"STORED")
                .unwrap_or_else(|e| panic!("load: {addr}: {e}"));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RawProto {
    Meta,
    Text,
}

/// The sequential floor: one blocking connection per server.
///
/// With `route`, a multi-get groups its keys by server on every call with multiput's ring (as
/// a client must); without, it uses the groups computed once before the run.
fn raw_seq(w: &Work, proto: RawProto, route: Option<&multiput::Ring>, b: Budget) -> Measure {
    let mut conns: Vec<Raw> = w
        .servers
        .iter()
        .map(|a| Raw::connect(a).unwrap_or_else(|e| panic!("connect {a}: {e}")))
        .collect();
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    while rec.more() {
        let t = Instant::now();
        let r: io::Result<bool> = match (w.kind, proto) {
            (Kind::Get, RawProto::Meta) => conns[0].meta_get(&w.keys[i % w.keys.len()]),
            (Kind::Get, RawProto::Text) => conns[0].text_get(&w.keys[i % w.keys.len()]),
            (Kind::Set, RawProto::Meta) => conns[0]
                .meta_set(&w.keys[i % w.keys.len()], &w.value)
                .map(|_| true),
            (Kind::Set, RawProto::Text) => conns[0]
                .text_set(&w.keys[i % w.keys.len()], &w.value)
                .map(|_| true),
            (Kind::Multi, proto) => match route {
                None => raw_multi(&mut conns, &w.groups, proto),
                Some(ring) => {
                    let mut groups: Vec<Vec<&str>> = vec![Vec::new(); conns.len()];
                    for k in w.keys.iter() {
                        groups[ring.server_for(k.as_bytes()).unwrap_or(0)].push(k);
                    }
                    raw_multi(&mut conns, &groups, proto)
                }
            },
        };
        let ok = match r {
            Ok(ok) => ok,
            Err(e) => panic!("raw floor: {e}"),
        };
        rec.done(t, w.units(), ok);
        i += 1;
    }
    rec.finish()
}

/// One multi-get over several servers: write every server's request, then read every reply.
fn raw_multi<S: AsRef<str>>(
    conns: &mut [Raw],
    groups: &[Vec<S>],
    proto: RawProto,
) -> io::Result<bool> {
    for (c, keys) in conns.iter_mut().zip(groups) {
        match proto {
            RawProto::Text => c.push_get(keys),
            RawProto::Meta => {
                for (i, k) in keys.iter().enumerate() {
                    c.push_mg(k.as_ref(), Some(i));
                }
                c.w.extend_from_slice(b"mn\r\n");
            }
        }
        c.flush()?;
    }
    let mut all_ok = true;
    for (c, keys) in conns.iter_mut().zip(groups) {
        match proto {
            RawProto::Text => {
                let (n, ok) = c.text_get_reply()?;
                all_ok &= ok && n == keys.len();
            }
            RawProto::Meta => {
                let mut seen = vec![false; keys.len()];
                let mut n = 0;
                loop {
                    let mut mn = false;
                    match c.meta_get_reply(&mut mn)? {
                        Some((len, o)) => {
                            let slot = seen.get_mut(o).ok_or_else(|| bad("bad opaque"))?;
                            all_ok &= !*slot && len == value_len();
                            *slot = true;
                            n += 1;
                        }
                        None if mn => break,
                        None => return Err(bad("EN in a quiet batch")),
                    }
                }
                all_ok &= n == keys.len();
            }
        }
        c.expect_empty()?;
    }
    Ok(all_ok)
}

/// The pipelined floor: `depth` requests in one write, then all `depth` replies, repeated.
/// Latency is the batch round trip (what each request in the batch waits).
fn raw_pipelined(w: &Work, proto: RawProto, depth: usize, b: Budget) -> Measure {
    let mut c = Raw::connect(w.addr()).unwrap_or_else(|e| panic!("connect: {e}"));
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    while rec.more() {
        let t = Instant::now();
        for _ in 0..depth {
            let k = &w.keys[i % w.keys.len()];
            match proto {
                RawProto::Meta => c.push_mg(k, None),
                RawProto::Text => c.push_get(std::slice::from_ref(k)),
            }
            i += 1;
        }
        let r = (|| -> io::Result<bool> {
            c.flush()?;
            let mut ok = true;
            for _ in 0..depth {
                match proto {
                    RawProto::Meta => {
                        let mut mn = false;
                        ok &=
                            matches!(c.meta_get_reply(&mut mn)?, Some((n, _)) if n == value_len());
                    }
                    RawProto::Text => {
                        let (n, good) = c.text_get_reply()?;
                        ok &= n == 1 && good;
                    }
                }
            }
            c.expect_empty()?;
            Ok(ok)
        })();
        let ok = r.unwrap_or_else(|e| panic!("raw pipelined floor: {e}"));
        rec.done(t, depth as u64, ok);
    }
    // Count gets, not batches, so the CPU columns are per get like the other rows.
    let mut m = rec.finish();
    m.calls *= depth as u64;
    m.errors *= depth as u64;
    m
}

// ---------------------------------------------------------------------------------------------
// multiput
// ---------------------------------------------------------------------------------------------

/// Mean CPU-side cost (µs) of placing all of `keys` with `ring`, measured for about `time`.
fn ring_cost(ring: &multiput::Ring, keys: &[String], time: Duration) -> f64 {
    let t0 = Instant::now();
    let mut rounds = 0u64;
    let mut sink = 0usize;
    while rounds < 1_000_000 && (rounds < 10 || t0.elapsed() < time) {
        for k in keys {
            sink = sink.wrapping_add(
                ring.server_for(std::hint::black_box(k.as_bytes()))
                    .unwrap_or(0),
            );
        }
        rounds += 1;
    }
    std::hint::black_box(sink);
    t0.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

fn proto(text: bool) -> multiput::ProtocolChoice {
    if text {
        multiput::ProtocolChoice::Text
    } else {
        multiput::ProtocolChoice::Auto
    }
}

fn mp_async_client(w: &Work, conns: usize, text: bool) -> multiput::Client {
    multiput::Client::builder()
        .servers(w.servers.iter())
        .connections_per_server(conns)
        .protocol(proto(text))
        .build()
        .expect("multiput client")
}

fn mp_blocking_client(w: &Work, conns: usize, text: bool) -> multiput::blocking::Client {
    multiput::blocking::Client::builder()
        .servers(w.servers.iter())
        .configure(|c| c.connections_per_server(conns).protocol(proto(text)))
        .build()
        .expect("multiput blocking client")
}

fn hit(r: &Result<Option<multiput::Value>, multiput::Error>) -> bool {
    matches!(r, Ok(Some(v)) if v.data.len() == value_len())
}

fn mp_blocking_seq(w: &Work, conns: usize, text: bool, b: Budget) -> Measure {
    mp_blocking_run(&mp_blocking_client(w, conns, text), w, b)
}

/// Sequential calls of `w` through the blocking client `c`.
fn mp_blocking_run(c: &multiput::blocking::Client, w: &Work, b: Budget) -> Measure {
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    let opts = multiput::StoreOptions::default();
    while rec.more() {
        let t = Instant::now();
        let ok = match w.kind {
            Kind::Get => hit(&c.get(&w.keys[i % w.keys.len()])),
            Kind::Set => c.set(&w.keys[i % w.keys.len()], &w.value[..], opts).is_ok(),
            Kind::Multi => {
                let rs = c.get_multi(&w.keys[..]);
                rs.len() == w.keys.len() && rs.iter().all(hit)
            }
        };
        rec.done(t, w.units(), ok);
        i += 1;
    }
    rec.finish()
}

fn mp_async_seq(w: &Work, flavour: Flavour, conns: usize, text: bool, b: Budget) -> Measure {
    let c = mp_async_client(w, conns, text);
    mp_async_run(c, w, flavour, b)
}

/// Sequential calls of `w` through the async client `c`, in a runtime of `flavour`.
fn mp_async_run(c: multiput::Client, w: &Work, flavour: Flavour, b: Budget) -> Measure {
    let w = w.clone();
    flavour.run(async move {
        let opts = multiput::StoreOptions::default();
        let mut rec = Recorder::new(b);
        let mut i = 0usize;
        while rec.more() {
            let t = Instant::now();
            let ok = match w.kind {
                Kind::Get => hit(&c.get(&w.keys[i % w.keys.len()]).await),
                Kind::Set => c
                    .set(&w.keys[i % w.keys.len()], &w.value[..], opts)
                    .await
                    .is_ok(),
                Kind::Multi => {
                    let rs = c.get_multi(&w.keys[..]).await;
                    rs.len() == w.keys.len() && rs.iter().all(hit)
                }
            };
            rec.done(t, w.units(), ok);
            i += 1;
        }
        rec.finish()
    })
}

/// `tasks` tasks doing sequential gets through one shared client.
fn mp_async_conc(w: &Work, flavour: Flavour, conns: usize, tasks: usize, b: Budget) -> Measure {
    let w = w.clone();
    flavour.run(async move {
        let c = mp_async_client(&w, conns, false);
        // Open the connections before the clock starts.
        for _ in 0..conns {
            let _ = c.get(&w.keys[0]).await;
        }
        let states: Vec<_> = (0..tasks).map(|i| (i, c.clone(), w.keys.clone())).collect();
        drive_concurrent(b, states, |(i, c, keys), sh, cap| async move {
            let mut lat = Vec::with_capacity(1 << 12);
            let mut local = 0;
            let mut k = i * 13;
            loop {
                let t = Instant::now();
                let ok = hit(&c.get(&keys[k % keys.len()]).await);
                k += 1;
                if !sh.record(t, ok, &mut lat, &mut local, cap) {
                    break;
                }
            }
            lat
        })
        .await
    })
}

// ---------------------------------------------------------------------------------------------
// async-memcached 0.9
// ---------------------------------------------------------------------------------------------

async fn am_connect(addr: &str) -> async_memcached::Client {
    async_memcached::Client::new(format!("tcp://{addr}"))
        .await
        .unwrap_or_else(|e| panic!("async-memcached: connect {addr}: {e:?}"))
}

fn am_hit(r: &Result<Option<async_memcached::Value>, async_memcached::Error>) -> bool {
    matches!(r, Ok(Some(v)) if v.data.as_ref().map(Vec::len) == Some(value_len()))
}

/// Sequential calls; for `Multi`, one `get_multi` per server, one server after the other.
fn am_seq(w: &Work, flavour: Flavour, b: Budget) -> Measure {
    use async_memcached::AsciiProtocol;
    let w = w.clone();
    flavour.run(async move {
        let mut clients = Vec::new();
        for a in w.servers.iter() {
            clients.push(am_connect(a).await);
        }
        let mut rec = Recorder::new(b);
        let mut i = 0usize;
        while rec.more() {
            let t = Instant::now();
            let ok = match w.kind {
                Kind::Get => am_hit(&clients[0].get(&w.keys[i % w.keys.len()]).await),
                Kind::Set => clients[0]
                    .set(&w.keys[i % w.keys.len()], &w.value[..], None, None)
                    .await
                    .is_ok(),
                Kind::Multi => {
                    let mut ok = true;
                    for (c, keys) in clients.iter_mut().zip(w.groups.iter()) {
                        ok &= match c.get_multi(keys).await {
                            Ok(vs) => {
                                vs.len() == keys.len()
                                    && vs
                                        .iter()
                                        .all(|v| v.data.as_ref().map(Vec::len) == Some(value_len()))
                            }
                            Err(_) => false,
                        };
                    }
                    ok
                }
            };
            rec.done(t, w.units(), ok);
            i += 1;
        }
        rec.finish()
    })
}

/// `tasks` tasks, each with its own client (connection), doing sequential gets.
fn am_conc(w: &Work, flavour: Flavour, tasks: usize, b: Budget) -> Measure {
    use async_memcached::AsciiProtocol;
    let w = w.clone();
    flavour.run(async move {
        let mut states = Vec::with_capacity(tasks);
        for i in 0..tasks {
            states.push((i, am_connect(w.addr()).await, w.keys.clone()));
        }
        drive_concurrent(b, states, |(i, mut c, keys), sh, cap| async move {
            let mut lat = Vec::with_capacity(1 << 12);
            let mut local = 0;
            let mut k = i * 13;
            loop {
                let t = Instant::now();
                let ok = am_hit(&c.get(&keys[k % keys.len()]).await);
                k += 1;
                if !sh.record(t, ok, &mut lat, &mut local, cap) {
                    break;
                }
            }
            lat
        })
        .await
    })
}

// ---------------------------------------------------------------------------------------------
// memcache 0.21 (its default: binary protocol, TCP_NODELAY, one pooled connection)
// ---------------------------------------------------------------------------------------------

fn mc_seq(w: &Work, b: Budget) -> Measure {
    let c = memcache::Client::connect(format!("memcache://{}", w.addr()))
        .unwrap_or_else(|e| panic!("memcache: connect {}: {e}", w.addr()));
    let refs: Vec<&str> = w.keys.iter().map(String::as_str).collect();
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    while rec.more() {
        let t = Instant::now();
        let ok = match w.kind {
            Kind::Get => matches!(
                c.get::<Vec<u8>>(&w.keys[i % w.keys.len()]),
                Ok(Some(v)) if v.len() == value_len()
            ),
            Kind::Set => c.set(&w.keys[i % w.keys.len()], &w.value[..], 0).is_ok(),
            Kind::Multi => match c.gets::<Vec<u8>>(&refs) {
                Ok(m) => m.len() == w.keys.len() && m.values().all(|v| v.len() == value_len()),
                Err(_) => false,
            },
        };
        rec.done(t, w.units(), ok);
        i += 1;
    }
    rec.finish()
}

// ---------------------------------------------------------------------------------------------
// Replication (multiput::ReplicatedClient, 3 replicas) and the hand-written fan-outs it is
// measured against
// ---------------------------------------------------------------------------------------------

/// Copies per key in the replication scenario (every key on all 3 servers).
const REPLICAS: usize = 3;
/// Tasks of the concurrent replicated-set rows.
const REPL_TASKS: usize = 16;
/// Keys of the "wrong winners" check, per reader.
const DISAGREE_KEYS: usize = 1000;

fn repl_policy() -> multiput::Policy {
    multiput::Policy {
        replicas: REPLICAS,
        ..Default::default()
    }
}

fn repl_hit(r: &Result<Option<multiput::Versioned>, multiput::Error>) -> bool {
    matches!(r, Ok(Some(v)) if v.data.len() == value_len())
}

fn repl_stored(r: &Result<multiput::WriteReport, multiput::Error>) -> bool {
    matches!(r, Ok(rep) if rep.stored.len() == REPLICAS && rep.failed.is_empty())
}

/// Sequential replicated sets or gets (`w.kind`) through the async `ReplicatedClient` over a
/// plain client with one connection per server.
fn repl_async_seq(w: &Work, flavour: Flavour, b: Budget) -> Measure {
    let w = w.clone();
    flavour.run(async move {
        let rc = multiput::ReplicatedClient::new(mp_async_client(&w, 1, false), repl_policy())
            .expect("replicated client");
        let mut rec = Recorder::new(b);
        let mut i = 0usize;
        while rec.more() {
            let k = &w.keys[i % w.keys.len()];
            let t = Instant::now();
            let ok = match w.kind {
                Kind::Get => repl_hit(&rc.get(k).await),
                Kind::Set => repl_stored(&rc.set(k, &w.value[..], 0).await),
                Kind::Multi => unreachable!("replicated rows are single-key"),
            };
            rec.done(t, 1, ok);
            i += 1;
        }
        rec.finish()
    })
}

/// The same through `multiput::blocking::ReplicatedClient`.
fn repl_blocking_seq(w: &Work, b: Budget) -> Measure {
    let rc =
        multiput::blocking::ReplicatedClient::new(mp_blocking_client(w, 1, false), repl_policy())
            .expect("blocking replicated client");
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    while rec.more() {
        let k = &w.keys[i % w.keys.len()];
        let t = Instant::now();
        let ok = match w.kind {
            Kind::Get => repl_hit(&rc.get(k)),
            Kind::Set => repl_stored(&rc.set(k, &w.value[..], 0)),
            Kind::Multi => unreachable!("replicated rows are single-key"),
        };
        rec.done(t, 1, ok);
        i += 1;
    }
    rec.finish()
}

/// The acknowledged concurrent fan-out written by hand: async-memcached, one client per server,
/// the three sets (or gets) of one key `tokio::join!`ed.
fn am_fanout_seq(w: &Work, flavour: Flavour, b: Budget) -> Measure {
    use async_memcached::AsciiProtocol;
    assert_eq!(w.servers.len(), 3, "the fan-out is written for 3 servers");
    let w = w.clone();
    flavour.run(async move {
        let mut c0 = am_connect(&w.servers[0]).await;
        let mut c1 = am_connect(&w.servers[1]).await;
        let mut c2 = am_connect(&w.servers[2]).await;
        let v = &w.value[..];
        let mut rec = Recorder::new(b);
        let mut i = 0usize;
        while rec.more() {
            let k = &w.keys[i % w.keys.len()];
            let t = Instant::now();
            let ok = match w.kind {
                Kind::Get => {
                    let (r0, r1, r2) = tokio::join!(c0.get(k), c1.get(k), c2.get(k));
                    am_hit(&r0) && am_hit(&r1) && am_hit(&r2)
                }
                Kind::Set => {
                    let (r0, r1, r2) = tokio::join!(
                        c0.set(k, v, None, None),
                        c1.set(k, v, None, None),
                        c2.set(k, v, None, None)
                    );
                    r0.is_ok() && r1.is_ok() && r2.is_ok()
                }
                Kind::Multi => unreachable!("fan-out rows are single-key"),
            };
            rec.done(t, 1, ok);
            i += 1;
        }
        rec.finish()
    })
}

/// `tasks` tasks doing replicated sets through one shared async `ReplicatedClient` (one
/// connection per server: the tasks' writes share it, pipelined).
fn repl_async_conc(w: &Work, flavour: Flavour, tasks: usize, b: Budget) -> Measure {
    let w = w.clone();
    flavour.run(async move {
        let rc = multiput::ReplicatedClient::new(mp_async_client(&w, 1, false), repl_policy())
            .expect("replicated client");
        // Open the connections before the clock starts.
        let _ = rc.get(&w.keys[0]).await;
        let states: Vec<_> = (0..tasks)
            .map(|i| (i, rc.clone(), w.keys.clone(), w.value.clone()))
            .collect();
        drive_concurrent(b, states, |(i, rc, keys, value), sh, cap| async move {
            let mut lat = Vec::with_capacity(1 << 12);
            let mut local = 0;
            let mut k = i * 13;
            loop {
                let t = Instant::now();
                let ok = repl_stored(&rc.set(&keys[k % keys.len()], &value[..], 0).await);
                k += 1;
                if !sh.record(t, ok, &mut lat, &mut local, cap) {
                    break;
                }
            }
            lat
        })
        .await
    })
}

/// The hand-written fan-out under the same load: `tasks` tasks, each with its own
/// async-memcached client per server (async-memcached calls take `&mut self`), the three sets
/// of one key `tokio::join!`ed.
fn am_fanout_conc(w: &Work, flavour: Flavour, tasks: usize, b: Budget) -> Measure {
    use async_memcached::AsciiProtocol;
    assert_eq!(w.servers.len(), 3, "the fan-out is written for 3 servers");
    let w = w.clone();
    flavour.run(async move {
        let mut states = Vec::with_capacity(tasks);
        for i in 0..tasks {
            let c0 = am_connect(&w.servers[0]).await;
            let c1 = am_connect(&w.servers[1]).await;
            let c2 = am_connect(&w.servers[2]).await;
            states.push((i, [c0, c1, c2], w.keys.clone(), w.value.clone()));
        }
        drive_concurrent(b, states, |(i, cs, keys, value), sh, cap| async move {
            let [mut c0, mut c1, mut c2] = cs;
            let mut lat = Vec::with_capacity(1 << 12);
            let mut local = 0;
            let mut k = i * 13;
            loop {
                let key = &keys[k % keys.len()];
                let v = &value[..];
                let t = Instant::now();
                let (r0, r1, r2) = tokio::join!(
                    c0.set(key, v, None, None),
                    c1.set(key, v, None, None),
                    c2.set(key, v, None, None)
                );
                let ok = r0.is_ok() && r1.is_ok() && r2.is_ok();
                k += 1;
                if !sh.record(t, ok, &mut lat, &mut local, cap) {
                    break;
                }
            }
            lat
        })
        .await
    })
}

/// The I/O floor of a replicated call: a blocking connection per server, the request multiput
/// sends written to all three, then the three replies read. Sets write `stored` (an enveloped
/// value) with `ms k <len> O0` + `mn` (not quiet, so an error line could be placed); gets send `mg k v f c t q O0` + `mn` and expect
/// `stored.len()` bytes back. No envelope is encoded or decoded.
fn raw_fanout_seq(w: &Work, stored: &[u8], b: Budget) -> Measure {
    let mut conns: Vec<Raw> = w
        .servers
        .iter()
        .map(|a| Raw::connect(a).unwrap_or_else(|e| panic!("connect {a}: {e}")))
        .collect();
    let mut rec = Recorder::new(b);
    let mut i = 0usize;
    while rec.more() {
        let k = &w.keys[i % w.keys.len()];
        let t = Instant::now();
        let r = (|| -> io::Result<bool> {
            for c in conns.iter_mut() {
                match w.kind {
                    Kind::Get => {
                        let _ = write!(Fmt(&mut c.w), "mg {k} v f c t q O0\r\nmn\r\n");
                    }
                    Kind::Set => {
                        let _ = write!(Fmt(&mut c.w), "ms {k} {} O0\r\n", stored.len());
                        c.w.extend_from_slice(stored);
                        c.w.extend_from_slice(b"\r\nmn\r\n");
                    }
                    Kind::Multi => unreachable!("fan-out rows are single-key"),
                }
                c.flush()?;
            }
            let mut ok = true;
            for c in conns.iter_mut() {
                match w.kind {
                    Kind::Get => {
                        let mut mn = false;
                        let r = c.meta_get_reply(&mut mn)?;
                        ok &= matches!(r, Some((len, 0)) if len == stored.len());
                        if r.is_some() {
                            c.meta_get_reply(&mut mn)?;
                        }
                        ok &= mn;
                    }
                    _ => {
                        c.status_line(b"HD O0")?;
                        c.status_line(b"MN")?
                    }
                }
                c.expect_empty()?;
            }
            Ok(ok)
        })();
        let ok = r.unwrap_or_else(|e| panic!("raw fan-out floor: {e}"));
        rec.done(t, 1, ok);
        i += 1;
    }
    rec.finish()
}

/// Store `(key, bytes)` pairs on `addr` with pipelined text sets (no envelope added).
fn load_items(addr: &str, items: &[(&str, &[u8])]) {
    let mut c = Raw::connect(addr).unwrap_or_else(|e| panic!("load: connect {addr}: {e}"));
    for chunk in items.chunks(100) {
        for (k, v) in chunk {
            let _ = write!(Fmt(&mut c.w), "set {k} 0 0 {}\r\n", v.len());
            c.w.extend_from_slice(v);
            c.w.extend_from_slice(b"\r\n");
        }
        c.flush()
            .unwrap_or_else(|e| panic!("load: write to {addr}: {e}"));
        for _ in chunk {
            c.status_line(b"STORED")
                .unwrap_or_else(|e| panic!("load: {addr}: {e}"));
        }
    }
}

/// A `value_len()`-byte payload that names its key and version.
fn tagged_payload(tag: &str, i: usize) -> Vec<u8> {
    let mut p = format!("{tag}:{i:05}:").into_bytes();
    p.resize(value_len(), b'.');
    p
}

/// Write `DISAGREE_KEYS` keys whose 3 replicas hold 3 different enveloped copies (different
/// stamps, writers and payloads), directly on each server, bypassing replication. The newest
/// copy sits on the key's primary, second or third replica in turn (`i % 3`, in the ring's
/// preference order); the stamps differ by 1 ms for even keys and by one logical-counter step
/// (same millisecond) for odd keys. Returns each key and its newest payload.
fn prepare_disagreeing(
    addrs: &[String],
    replicas_of: impl Fn(&str) -> Vec<String>,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    use multiput::envelope::{self, Format, Kind as EnvKind, Stamp, ValueType};
    let base = envelope::wall_ms(SystemTime::now()) << envelope::COUNTER_BITS;
    let writers = [
        multiput::driver::entropy::new_writer_id(),
        multiput::driver::entropy::new_writer_id(),
        multiput::driver::entropy::new_writer_id(),
    ];
    let mut per_server: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); addrs.len()];
    let mut expected = Vec::with_capacity(DISAGREE_KEYS);
    for i in 0..DISAGREE_KEYS {
        let key = format!("{prefix}{i:05}");
        let reps = replicas_of(&key);
        assert_eq!(reps.len(), REPLICAS, "{key}: replicas {reps:?}");
        let newest_rank = i % REPLICAS;
        let step = if i % 2 == 0 {
            1u64 << envelope::COUNTER_BITS
        } else {
            1
        };
        // Age 0 (newest) on `newest_rank`, ages 1 and 2 on the other two replicas.
        let mut age = 1u64;
        for (rank, server) in reps.iter().enumerate() {
            let (a, tag) = if rank == newest_rank {
                (0, "new".to_string())
            } else {
                age += 1;
                (age - 1, format!("old{}", age - 1))
            };
            let payload = tagged_payload(&tag, i);
            if a == 0 {
                expected.push((key.clone(), payload.clone()));
            }
            let stamp = Stamp {
                ts: base + (2 - a) * step,
                writer: writers[(rank + a as usize) % 3],
            };
            let copy = envelope::encode(
                stamp,
                EnvKind::Value,
                ValueType::Bytes,
                Format::NONE,
                &payload,
            )
            .expect("a valid envelope");
            let s = addrs
                .iter()
                .position(|x| x == server)
                .unwrap_or_else(|| panic!("replica {server} is not one of {addrs:?}"));
            per_server[s].push((key.clone(), copy));
        }
    }
    for (a, items) in addrs.iter().zip(&per_server) {
        let refs: Vec<(&str, &[u8])> = items.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
        load_items(a, &refs);
    }
    expected
}

/// One pass of reads over the disagreeing keys.
#[derive(Default)]
struct WinnerCheck {
    keys: usize,
    /// Answers that were not the newest copy (misses and errors included).
    wrong: usize,
    misses: usize,
    errors: usize,
    /// Metric deltas over the pass: keys whose replicas disagreed, copies written back,
    /// copies found stale.
    disagreements: u64,
    repairs: u64,
    stale: u64,
}

impl WinnerCheck {
    fn tally(&mut self, r: &Result<Option<multiput::Versioned>, multiput::Error>, want: &[u8]) {
        self.keys += 1;
        match r {
            Ok(Some(v)) if v.data[..] == *want => {}
            Ok(Some(_)) => self.wrong += 1,
            Ok(None) => {
                self.wrong += 1;
                self.misses += 1;
            }
            Err(_) => {
                self.wrong += 1;
                self.errors += 1;
            }
        }
    }

    fn metrics(&mut self, before: &multiput::metrics::Metrics, after: &multiput::metrics::Metrics) {
        self.disagreements = after.total.disagreements - before.total.disagreements;
        self.repairs = after.total.repairs - before.total.repairs;
        self.stale = after.total.stale - before.total.stale;
    }
}

/// Read every disagreeing key once through the async replicated client (current-thread
/// runtime) with `policy`, twice (the second pass shows what read repair left behind).
fn check_winners_async(
    addrs: &[String],
    expected: Vec<(String, Vec<u8>)>,
    policy: multiput::Policy,
) -> [WinnerCheck; 2] {
    let servers = addrs.to_vec();
    Flavour::Ct.run(async move {
        let plain = multiput::Client::builder()
            .servers(servers.iter())
            .build()
            .expect("multiput client");
        let rc = multiput::ReplicatedClient::new(plain, policy).expect("replicated client");
        let mut out = [WinnerCheck::default(), WinnerCheck::default()];
        for pass in out.iter_mut() {
            let before = rc.metrics();
            for (k, want) in &expected {
                pass.tally(&rc.get(k).await, want);
            }
            pass.metrics(&before, &rc.metrics());
        }
        out
    })
}

/// The same through the blocking replicated client.
fn check_winners_blocking(
    addrs: &[String],
    expected: &[(String, Vec<u8>)],
    policy: multiput::Policy,
) -> [WinnerCheck; 2] {
    let plain = multiput::blocking::Client::builder()
        .servers(addrs.iter())
        .build()
        .expect("multiput blocking client");
    let rc = multiput::blocking::ReplicatedClient::new(plain, policy).expect("replicated client");
    let mut out = [WinnerCheck::default(), WinnerCheck::default()];
    for pass in out.iter_mut() {
        let before = rc.metrics();
        for (k, want) in expected {
            pass.tally(&rc.get(k), want);
        }
        pass.metrics(&before, &rc.metrics());
    }
    out
}

/// The "wrong winners when replicas disagree" table.
fn render_winner_checks(rows: &[(String, &str, WinnerCheck)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Wrong winners when replicas disagree (3 replicas)\n");
    let _ = writeln!(
        s,
        "{DISAGREE_KEYS} keys per reader, each with 3 different enveloped copies written \
         directly to its 3 servers (stamps 1 ms apart on even keys, one logical-counter step \
         apart on odd keys; the newest on the primary, second or third replica in turn). Every \
         key read once through the replicated client, then a second time. \"Wrong\" counts \
         answers that are not the newest copy (misses and errors included): it must be 0. \
         Disagreements, repairs and stale are deltas of `metrics().total` over the pass \
         (disagreements: keys whose replicas differed; repairs: copies written back; stale: \
         copies found missing or older).\n"
    );
    let _ = writeln!(
        s,
        "| reader | pass | keys | wrong | of which misses | of which errors | disagreements \
         | repairs | stale |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, pass, c) in rows {
        let _ = writeln!(
            s,
            "| {name} | {pass} | {} | {} | {} | {} | {} | {} | {} |",
            c.keys, c.wrong, c.misses, c.errors, c.disagreements, c.repairs, c.stale
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The raw socket row the table's "× floor" column divides by (the first one).
    Floor,
    /// A raw socket row shown for reference.
    RawRef,
    /// async-memcached: the "× async-memcached" column divides by the row of the same runtime
    /// flavour (or the first one).
    Peer,
    Ours,
    Other,
}

struct Row {
    name: String,
    role: Role,
    flavour: Option<Flavour>,
    m: Measure,
}

struct Table {
    title: String,
    unit: &'static str,
    note: String,
    rows: Vec<Row>,
    /// What the `Role::Floor` row is called in the "× …" column and after its name.
    base: &'static str,
    /// Add a column with each row's p50 latency divided by the `Role::Floor` row's.
    lat_ratio: bool,
    /// Markdown printed after the rows.
    footer: String,
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_lat(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1}", d.as_secs_f64() * 1e6),
        None => "–".into(),
    }
}

fn fmt_cpu(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "–".into(),
    }
}

impl Table {
    fn new(title: &str, unit: &'static str, note: &str) -> Table {
        Table {
            title: title.into(),
            unit,
            note: note.into(),
            rows: Vec::new(),
            base: "floor",
            lat_ratio: false,
            footer: String::new(),
        }
    }

    /// The async-memcached row a row of flavour `f` is compared with: the one of the same
    /// flavour, else the first.
    fn peer_for(&self, f: Option<Flavour>) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.role == Role::Peer && f.is_some() && r.flavour == f)
            .or_else(|| self.rows.iter().find(|r| r.role == Role::Peer))
    }

    fn add(&mut self, name: impl Into<String>, role: Role, flavour: Option<Flavour>, m: Measure) {
        heartbeat();
        let name = name.into();
        let (ccpu, scpu) = m.cpu_per_call();
        eprintln!(
            "  {:<58} {:>8} {}  p50 {:>6} µs  p99 {:>7} µs  cpu/call client {:>5} server {:>5} µs{}",
            name,
            fmt_rate(m.rate()),
            self.unit,
            fmt_lat(m.p50),
            fmt_lat(m.p99),
            fmt_cpu(ccpu),
            fmt_cpu(scpu),
            if m.errors > 0 {
                format!("  ERRORS {}", m.errors)
            } else {
                String::new()
            }
        );
        self.rows.push(Row {
            name,
            role,
            flavour,
            m,
        });
    }

    fn render(&self) -> String {
        let floor = self.rows.iter().find(|r| r.role == Role::Floor);
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(s, "{}\n", self.note);
        }
        let (lat_head, lat_rule) = if self.lat_ratio {
            (format!(" p50 × {} |", self.base), "---:|")
        } else {
            (String::new(), "")
        };
        let _ = writeln!(
            s,
            "| client | {} | × {} | × async-memcached | p50 µs | p99 µs |{lat_head} client CPU \
             µs/call | server CPU µs/call | calls | errors |",
            self.unit, self.base
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|{lat_rule}---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let ratio = |base: Option<&Row>| match base {
                Some(b) if b.m.rate() > 0.0 => format!("{:.2}", r.m.rate() / b.m.rate()),
                _ => "–".into(),
            };
            let name = match r.role {
                Role::Ours => format!("**{}**", r.name),
                Role::Floor => format!("{} ({})", r.name, self.base),
                _ => r.name.clone(),
            };
            let (ccpu, scpu) = r.m.cpu_per_call();
            let lat = if self.lat_ratio {
                format!(" {} |", fmt_ratio(p50_ratio(&r.m, floor.map(|f| &f.m))))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |{lat} {} | {} | {} | {} |",
                name,
                fmt_rate(r.m.rate()),
                ratio(floor),
                ratio(self.peer_for(r.flavour)),
                fmt_lat(r.m.p50),
                fmt_lat(r.m.p99),
                fmt_cpu(ccpu),
                fmt_cpu(scpu),
                r.m.calls,
                r.m.errors
            );
        }
        if !self.footer.is_empty() {
            let _ = writeln!(s, "\n{}", self.footer);
        }
        s
    }
}

/// The goal lines under a replication table: each replicated row's p50 over the single-server
/// row's (goal ≤ 1.3×) and its throughput over the async-memcached fan-out of the same flavour
/// (goal ≥ 1.2× for sets; shown without a goal for gets).
fn repl_goals(t: &Table, throughput_goal: bool) -> String {
    const LAT_GOAL: f64 = 1.3;
    const THR_GOAL: f64 = 1.2;
    let base = t.rows.iter().find(|r| r.role == Role::Floor).map(|r| &r.m);
    let mut s = format!(
        "Goals: replicated p50 ≤ {LAT_GOAL}× the single-server p50{}.\n",
        if throughput_goal {
            format!("; replicated throughput ≥ {THR_GOAL}× the async-memcached fan-out")
        } else {
            String::new()
        }
    );
    let mark = |ok: bool| if ok { "met" } else { "**missed**" };
    for r in t.rows.iter().filter(|r| r.role == Role::Ours) {
        let lat = p50_ratio(&r.m, base);
        let peer = t.peer_for(r.flavour);
        let thr = peer
            .filter(|p| p.m.rate() > 0.0)
            .map(|p| r.m.rate() / p.m.rate());
        let _ = write!(
            s,
            "\n- {}: p50 {}× single-server ({})",
            r.name,
            fmt_ratio(lat),
            lat.map_or("–", |x| mark(x <= LAT_GOAL))
        );
        if let (Some(x), Some(p)) = (thr, peer) {
            let _ = write!(s, "; {x:.2}× {}", p.name);
            if throughput_goal {
                let _ = write!(s, " ({})", mark(x >= THR_GOAL));
            }
        }
    }
    s
}

/// Under a concurrent table: each of our rows' throughput over the peer row of its runtime.
fn conc_throughput_goal(t: &Table, goal: f64) -> String {
    let mut s = format!("Goal: replicated throughput ≥ {goal}× the hand-written fan-out.\n");
    for r in t.rows.iter().filter(|r| r.role == Role::Ours) {
        if let Some(p) = t.peer_for(r.flavour).filter(|p| p.m.rate() > 0.0) {
            let x = r.m.rate() / p.m.rate();
            let _ = write!(
                s,
                "\n- {}: {x:.2}× {} ({})",
                r.name,
                p.name,
                if x >= goal { "met" } else { "**missed**" }
            );
        }
    }
    s
}

/// `m`'s p50 latency divided by `base`'s.
fn p50_ratio(m: &Measure, base: Option<&Measure>) -> Option<f64> {
    match (m.p50, base.and_then(|b| b.p50)) {
        (Some(a), Some(b)) if !b.is_zero() => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

fn fmt_ratio(x: Option<f64>) -> String {
    match x {
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from the system clock (no date crate needed).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

fn main() {
    let st = Settings::from_env();

    // Servers first: a child inherits the affinity of the thread that forks it, so they must
    // exist before this process pins itself.
    eprintln!("e2e: starting 3 memcached servers");
    let servers = cluster(3);
    install_signal_cleanup(&servers);
    start_watchdog(Duration::from_secs_f64(st.seconds * 4.0 + 60.0));
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let mut pin_note = Vec::new();
    let pin_servers = |quiet: bool| {
        if let Some(cpu) = st.pin_server {
            for s in &servers {
                let n = pin_process(s.pid(), cpu)
                    .unwrap_or_else(|e| panic!("cannot pin memcached pid {}: {e}", s.pid()));
                if !quiet {
                    eprintln!(
                        "e2e: pinned {n} thread(s) of memcached pid {} to CPU {cpu}",
                        s.pid()
                    );
                }
            }
        }
    };
    pin_servers(false);
    if let Some(cpu) = st.pin_client {
        pin_thread(0, cpu).unwrap_or_else(|e| panic!("cannot pin the client to CPU {cpu}: {e}"));
        pin_note.push(format!("client on CPU {cpu}"));
    }
    if let Some(cpu) = st.pin_server {
        pin_note.push(format!("servers on CPU {cpu}"));
    }
    let pinning = if pin_note.is_empty() {
        "**unpinned** (client and servers float over all CPUs)".to_string()
    } else if st.pin_client.is_some() && st.pin_server.is_some() {
        format!("**pinned** ({})", pin_note.join(", "))
    } else {
        format!("**partly pinned** ({})", pin_note.join(", "))
    };

    let version = String::from_utf8_lossy(&raw_command(&addrs[0], b"version\r\n", b"\r\n"))
        .trim()
        .trim_start_matches("VERSION ")
        .to_string();
    // SAFETY: sysconf has no preconditions.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };

    let value = Arc::new(value_bytes());
    let single_keys: Vec<String> = (0..single_keys())
        .map(|i| format!("e2e:s:{i:05}"))
        .collect();
    load(&addrs[0], &single_keys, &value);
    let multi1_keys: Vec<String> = (0..MULTI_KEYS).map(|i| format!("e2e:m1:{i:04}")).collect();
    // 100 large values would evict the single keys (64 MB servers): the multi-get rows are for
    // small values.
    let small = value_len() <= 64 * 1024;
    if small {
        load(&addrs[0], &multi1_keys, &value);
    }

    // 100 keys over 3 servers, each stored on the server multiput's ring gives it.
    let ring = mp_blocking_client(
        &Work {
            kind: Kind::Get,
            servers: Arc::new(addrs.clone()),
            keys: Arc::new(Vec::new()),
            groups: Arc::new(Vec::new()),
            value: value.clone(),
        },
        1,
        false,
    );
    let multi3_keys: Vec<String> = (0..MULTI_KEYS).map(|i| format!("e2e:m3:{i:04}")).collect();
    let mut groups3: Vec<Vec<String>> = vec![Vec::new(); addrs.len()];
    for k in &multi3_keys {
        let owner = ring.server_for(k).expect("key routes");
        let i = addrs
            .iter()
            .position(|a| a == owner)
            .unwrap_or_else(|| panic!("owner {owner} is not one of {addrs:?}"));
        groups3[i].push(k.clone());
    }
    for (a, ks) in addrs.iter().zip(&groups3).filter(|_| small) {
        load(a, ks, &value);
    }
    let ring3: multiput::Ring = ring.cluster().ring().clone();
    drop(ring);

    let one = Arc::new(vec![addrs[0].clone()]);
    let work = |kind: Kind, keys: &[String]| Work {
        kind,
        servers: one.clone(),
        keys: Arc::new(keys.to_vec()),
        groups: Arc::new(vec![keys.to_vec()]),
        value: value.clone(),
    };
    let get1 = work(Kind::Get, &single_keys);
    let set1 = work(Kind::Set, &single_keys);
    let multi1 = work(Kind::Multi, &multi1_keys);
    let multi3 = Work {
        kind: Kind::Multi,
        servers: Arc::new(addrs.clone()),
        keys: Arc::new(multi3_keys.clone()),
        groups: Arc::new(groups3.clone()),
        value: value.clone(),
    };

    let mut header = String::new();
    let _ = writeln!(header, "# multiput end-to-end benchmark\n");
    let _ = writeln!(header, "- date: {}", utc_now());
    let _ = writeln!(header, "- pinning: {pinning}");
    let _ = writeln!(
        header,
        "- memcached {version}, 3 servers on 127.0.0.1 (`-t 2 -m 64 -c 4096`), {ncpu} online CPUs"
    );
    let _ = writeln!(
        header,
        "- {}-byte values, all hits; {:.2} s measured per row after a {:.2} s warm-up \
         (`E2E_SECONDS`), each row also capped by an op count",
        value_len(),
        st.seconds,
        st.budget(1.0).warm_time.as_secs_f64()
    );
    let _ = writeln!(
        header,
        "- ops/s counts successful ops (keys for multi-gets); latencies are per call; \
         \"× floor\" divides by the table's floor row, \"× async-memcached\" by the async-memcached \
         row of the same runtime flavour (else the first one)"
    );
    let _ = writeln!(
        header,
        "- CPU µs/call: CPU time of the whole bench process (the client: every thread) and of \
         the 3 memcached processes (10 ms ticks: coarse on short rows) over the measured \
         window, divided by calls; less sensitive to other load on the machine than ops/s"
    );
    let _ = writeln!(
        header,
        "- groups of 3 servers: {} keys → {:?}",
        MULTI_KEYS,
        groups3.iter().map(Vec::len).collect::<Vec<_>>()
    );
    eprint!("{header}");

    let seq = st.budget(SEQ_OPS_PER_SEC);
    let mcalls = st.budget(MULTI_CALLS_PER_SEC);
    let conc = st.budget(CONC_OPS_PER_SEC);
    let mut tables: Vec<Table> = Vec::new();
    // Sections that are not throughput tables (the replication correctness check).
    let mut sections: Vec<String> = Vec::new();
    use Flavour::{Ct, Mt};

    if st.wants("get") {
        pin_servers(true);
        eprintln!("\n== single get, sequential");
        let mut t = Table::new(
            "Single get (hit, 100-byte value), sequential, one server",
            "gets/s",
            "One call at a time. Floors: a blocking std TcpStream sending `mg key v f` (multiput's \
             request) or `get key`, reading the reply by its announced length.",
        );
        t.add(
            "raw socket `mg k v f`",
            Role::Floor,
            None,
            raw_seq(&get1, RawProto::Meta, None, seq),
        );
        t.add(
            "raw socket `get k`",
            Role::RawRef,
            None,
            raw_seq(&get1, RawProto::Text, None, seq),
        );
        t.add(
            "multiput blocking",
            Role::Ours,
            None,
            mp_blocking_seq(&get1, 2, false, seq),
        );
        for (f, c) in [(Ct, 1), (Ct, 2), (Mt, 1), (Mt, 2)] {
            t.add(
                format!("multiput async, {}, conns={c}", f.label()),
                Role::Ours,
                Some(f),
                mp_async_seq(&get1, f, c, false, seq),
            );
        }
        for f in [Ct, Mt] {
            t.add(
                format!("async-memcached, {}", f.label()),
                Role::Peer,
                Some(f),
                am_seq(&get1, f, seq),
            );
        }
        t.add(
            "memcache 0.21 (binary protocol)",
            Role::Other,
            None,
            mc_seq(&get1, seq),
        );
        tables.push(t);
    }

    if st.wants("set") {
        pin_servers(true);
        eprintln!("\n== single set, sequential");
        let mut t = Table::new(
            "Single set (100-byte value), sequential, one server",
            "sets/s",
            "Floors: `ms key 100` (multiput's request) and `set key 0 0 100`, waiting for `HD` / \
             `STORED`.",
        );
        t.add(
            "raw socket `ms k 100`",
            Role::Floor,
            None,
            raw_seq(&set1, RawProto::Meta, None, seq),
        );
        t.add(
            "raw socket `set k 0 0 100`",
            Role::RawRef,
            None,
            raw_seq(&set1, RawProto::Text, None, seq),
        );
        t.add(
            "multiput blocking",
            Role::Ours,
            None,
            mp_blocking_seq(&set1, 2, false, seq),
        );
        for f in [Ct, Mt] {
            t.add(
                format!("multiput async, {}, conns=2", f.label()),
                Role::Ours,
                Some(f),
                mp_async_seq(&set1, f, 2, false, seq),
            );
        }
        for f in [Ct, Mt] {
            t.add(
                format!("async-memcached, {}", f.label()),
                Role::Peer,
                Some(f),
                am_seq(&set1, f, seq),
            );
        }
        t.add(
            "memcache 0.21 (binary protocol)",
            Role::Other,
            None,
            mc_seq(&set1, seq),
        );
        tables.push(t);
    }

    if st.wants("tls") {
        // A TLS memcached (-Z, certificates made here) next to the plain one: the same keys on
        // both, the same clients, TLS on or off.
        let pki = multiput_tests::certs::Pki::new();
        let tls_srv = Memcached::builder()
            .args(pki.memcached_args(&pki.server, false))
            .listening_only()
            .start();
        SERVER_PIDS[3].store(tls_srv.pid() as i32, Relaxed);
        if let Some(cpu) = st.pin_server {
            pin_process(tls_srv.pid(), cpu).expect("pin the TLS memcached");
        }
        let tls = multiput::config::Tls {
            ca_file: Some(pki.ca.to_string_lossy().into_owned()),
            ..Default::default()
        };
        let config = |addr: &str, tls: Option<multiput::config::Tls>| {
            multiput::ConfigBuilder::default()
                .server(addr)
                .tls(tls)
                .build_config()
                .expect("config")
        };
        let plain_cfg = config(&addrs[0], None);
        let tls_cfg = config(&tls_srv.addr(), Some(tls));
        let loader = multiput::blocking::Client::from_config(tls_cfg.clone()).expect("TLS client");
        let opts = multiput::StoreOptions::default();
        for k in single_keys.iter().chain(&multi1_keys) {
            loader
                .set(k, &value[..], opts)
                .expect("load the TLS server");
        }
        for (title, w, budget) in [
            (
                "Single get over TLS and plain TCP (100-byte value), sequential",
                &get1,
                seq,
            ),
            (
                "get_multi of 100 keys over TLS and plain TCP, sequential calls",
                &multi1,
                mcalls,
            ),
        ] {
            eprintln!("\n== {title}");
            let mut t = Table::new(
                title,
                if w.kind == Kind::Multi {
                    "keys/s"
                } else {
                    "gets/s"
                },
                "The floor here is multiput's blocking client over plain TCP: \"× floor\" is each \
                 row's ratio to it. TLS rows talk to a memcached started with -Z (rustls in the \
                 client, OpenSSL in the server; the server's TLS CPU is in the server column).",
            );
            let bc = |cfg: &multiput::Config| {
                multiput::blocking::Client::from_config(cfg.clone()).expect("blocking client")
            };
            let ac = |cfg: &multiput::Config| {
                multiput::Client::from_config(cfg.clone()).expect("async client")
            };
            t.add(
                "multiput blocking, plain TCP",
                Role::Floor,
                None,
                mp_blocking_run(&bc(&plain_cfg), w, budget),
            );
            t.add(
                "multiput blocking, TLS",
                Role::Ours,
                None,
                mp_blocking_run(&bc(&tls_cfg), w, budget),
            );
            t.add(
                "multiput async, current-thread, plain TCP",
                Role::Ours,
                Some(Ct),
                mp_async_run(ac(&plain_cfg), w, Ct, budget),
            );
            t.add(
                "multiput async, current-thread, TLS",
                Role::Ours,
                Some(Ct),
                mp_async_run(ac(&tls_cfg), w, Ct, budget),
            );
            tables.push(t);
        }
        SERVER_PIDS[3].store(0, Relaxed);
    }

    if st.wants("multi1") {
        pin_servers(true);
        eprintln!("\n== get_multi of 100 keys, one server");
        let mut t = Table::new(
            "get_multi of 100 keys on one server, sequential calls",
            "keys/s",
            "Floors: one text `get k1 … k100` line read until `END`; 100 quiet meta gets \
             `mg k v f q O<i>` + `mn` (multiput's request). Latency is per 100-key call.",
        );
        t.add(
            "raw socket `mg … q` ×100 + `mn`",
            Role::Floor,
            None,
            raw_seq(&multi1, RawProto::Meta, None, mcalls),
        );
        t.add(
            "raw socket `get k1 … k100`",
            Role::RawRef,
            None,
            raw_seq(&multi1, RawProto::Text, None, mcalls),
        );
        t.add(
            "multiput blocking",
            Role::Ours,
            None,
            mp_blocking_seq(&multi1, 2, false, mcalls),
        );
        for f in [Ct, Mt] {
            t.add(
                format!("multiput async, {}, conns=2", f.label()),
                Role::Ours,
                Some(f),
                mp_async_seq(&multi1, f, 2, false, mcalls),
            );
        }
        t.add(
            "multiput blocking, protocol=Text",
            Role::Ours,
            None,
            mp_blocking_seq(&multi1, 2, true, mcalls),
        );
        t.add(
            format!("multiput async, {}, conns=2, protocol=Text", Ct.label()),
            Role::Ours,
            Some(Ct),
            mp_async_seq(&multi1, Ct, 2, true, mcalls),
        );
        t.add(
            format!("async-memcached get_multi, {}", Ct.label()),
            Role::Peer,
            Some(Ct),
            am_seq(&multi1, Ct, mcalls),
        );
        t.add(
            "memcache 0.21 gets (binary protocol)",
            Role::Other,
            None,
            mc_seq(&multi1, mcalls),
        );
        tables.push(t);
    }

    if st.wants("multi3") {
        pin_servers(true);
        eprintln!("\n== get_multi of 100 keys over 3 servers");
        let route_us = ring_cost(&ring3, &multi3_keys, st.budget(1.0).warm_time);
        let mut t = Table::new(
            "get_multi of 100 keys over 3 servers, sequential calls",
            "keys/s",
            &format!(
                "multiput: one call (its request to every server is written before any reply is \
                 read). Peer: async-memcached, one client per server, three `get_multi` calls one \
                 after the other. Floors write all three requests, then read the three replies. \
                 The floors and the peer use key groups computed once before the run (multiput's \
                 ring), except the \"routed\" floor, which groups the keys with \
                 `multiput::Ring::server_for` on every call. Routing 100 keys with that ring \
                 (MD5 per key) alone costs {route_us:.1} µs of CPU."
            ),
        );
        t.add(
            "raw socket `mg … q` + `mn`, 3 servers",
            Role::Floor,
            None,
            raw_seq(&multi3, RawProto::Meta, None, mcalls),
        );
        t.add(
            "raw socket `mg … q` + `mn`, 3 servers, routed",
            Role::RawRef,
            None,
            raw_seq(&multi3, RawProto::Meta, Some(&ring3), mcalls),
        );
        t.add(
            "raw socket `get k…`, 3 servers",
            Role::RawRef,
            None,
            raw_seq(&multi3, RawProto::Text, None, mcalls),
        );
        t.add(
            "multiput blocking",
            Role::Ours,
            None,
            mp_blocking_seq(&multi3, 2, false, mcalls),
        );
        for f in [Ct, Mt] {
            t.add(
                format!("multiput async, {}, conns=2", f.label()),
                Role::Ours,
                Some(f),
                mp_async_seq(&multi3, f, 2, false, mcalls),
            );
        }
        t.add(
            "multiput blocking, protocol=Text",
            Role::Ours,
            None,
            mp_blocking_seq(&multi3, 2, true, mcalls),
        );
        t.add(
            format!("multiput async, {}, conns=2, protocol=Text", Ct.label()),
            Role::Ours,
            Some(Ct),
            mp_async_seq(&multi3, Ct, 2, true, mcalls),
        );
        t.add(
            format!("async-memcached ×3 sequential get_multi, {}", Ct.label()),
            Role::Peer,
            Some(Ct),
            am_seq(&multi3, Ct, mcalls),
        );
        tables.push(t);
    }

    if st.wants("conc") {
        pin_servers(true);
        eprintln!("\n== {TASKS} concurrent tasks, single gets, one server");
        let mut t = Table::new(
            &format!("{TASKS} concurrent tasks doing sequential gets, one server"),
            "gets/s",
            &format!(
                "multiput: {TASKS} tokio tasks share ONE client (conns = connections per server). \
                 Floors: one blocking connection writing {TASKS} requests in one write and reading \
                 the {TASKS} replies (latency = that batch's round trip; calls and CPU count \
                 gets). Peer: async-memcached \
                 with one client (connection) per task."
            ),
        );
        t.add(
            format!("raw socket pipelined `mg k v f` ×{TASKS}"),
            Role::Floor,
            None,
            raw_pipelined(
                &get1,
                RawProto::Meta,
                TASKS,
                st.budget(CONC_OPS_PER_SEC / TASKS as f64),
            ),
        );
        t.add(
            format!("raw socket pipelined `get k` ×{TASKS}"),
            Role::RawRef,
            None,
            raw_pipelined(
                &get1,
                RawProto::Text,
                TASKS,
                st.budget(CONC_OPS_PER_SEC / TASKS as f64),
            ),
        );
        for f in [Mt, Ct] {
            for c in [1, 2, 4] {
                t.add(
                    format!("multiput async, {}, conns={c}", f.label()),
                    Role::Ours,
                    Some(f),
                    mp_async_conc(&get1, f, c, TASKS, conc),
                );
            }
        }
        for f in [Mt, Ct] {
            t.add(
                format!("async-memcached, {TASKS} clients, {}", f.label()),
                Role::Peer,
                Some(f),
                am_conc(&get1, f, TASKS, conc),
            );
        }
        tables.push(t);
    }

    if st.wants("repl") {
        pin_servers(true);
        run_repl(
            &st,
            &addrs,
            &value,
            &single_keys,
            &mut tables,
            &mut sections,
        );
    }

    let mut report = header;
    for t in &tables {
        report.push('\n');
        report.push_str(&t.render());
    }
    for s in &sections {
        report.push('\n');
        report.push_str(s);
    }
    println!("\n{report}");
    if let Some(path) = &st.out {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, &report).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        eprintln!("e2e: wrote {path}");
    }
    drop(servers); // kills and reaps the servers
}

/// The `repl` scenario: replicated set and get (3 replicas) against the single-server call and
/// the hand-written acknowledged fan-out, then the wrong-winner check.
fn run_repl(
    st: &Settings,
    addrs: &[String],
    value: &Arc<Vec<u8>>,
    single_keys: &[String],
    tables: &mut Vec<Table>,
    sections: &mut Vec<String>,
) {
    use multiput::envelope::{self, Format, Kind as EnvKind, Stamp, ValueType};
    use Flavour::{Ct, Mt};
    assert_eq!(
        addrs.len(),
        REPLICAS,
        "the replication scenario uses the bench's 3 servers"
    );
    let seq = st.budget(SEQ_OPS_PER_SEC);
    let all = Arc::new(addrs.to_vec());
    let work = |kind: Kind, servers: &Arc<Vec<String>>, keys: &[String]| Work {
        kind,
        servers: servers.clone(),
        keys: Arc::new(keys.to_vec()),
        groups: Arc::new(Vec::new()),
        value: value.clone(),
    };
    let one = Arc::new(vec![addrs[0].clone()]);
    // Single-server baseline: the plain client on server 0 (keys loaded there by main).
    let set1 = work(Kind::Set, &one, single_keys);
    let get1 = work(Kind::Get, &one, single_keys);
    // Replicated rows: their own keys, enveloped copies on all 3 servers.
    let rkeys: Vec<String> = (0..SINGLE_KEYS).map(|i| format!("e2e:r:{i:05}")).collect();
    let rset = work(Kind::Set, &all, &rkeys);
    let rget = work(Kind::Get, &all, &rkeys);
    // Fan-out rows: their own keys, the plain 100-byte value on all 3 servers.
    let fkeys: Vec<String> = (0..SINGLE_KEYS).map(|i| format!("e2e:f:{i:05}")).collect();
    let fset = work(Kind::Set, &all, &fkeys);
    let fget = work(Kind::Get, &all, &fkeys);

    let probe = multiput::blocking::ReplicatedClient::new(
        mp_blocking_client(&rget, 1, false),
        repl_policy(),
    )
    .expect("blocking replicated client");
    for chunk in rkeys.chunks(100) {
        let items: Vec<(&str, &[u8])> = chunk.iter().map(|k| (k.as_str(), &value[..])).collect();
        for r in probe.set_multi(&items, 0) {
            assert!(repl_stored(&r), "replicated preload: {r:?}");
        }
    }
    for a in addrs {
        load(a, &fkeys, value);
    }
    // What the raw floor writes and expects back: the value in an envelope.
    let stored = envelope::encode(
        Stamp {
            ts: envelope::wall_ms(SystemTime::now()) << envelope::COUNTER_BITS,
            writer: multiput::driver::entropy::new_writer_id(),
        },
        EnvKind::Value,
        ValueType::Bytes,
        Format::NONE,
        value,
    )
    .expect("a valid envelope");

    let note = |op: &str, peer: &str, raw: &str| {
        format!(
            "One call at a time. Baseline (\"1 server\"): multiput's plain async client, one \
             connection, current-thread runtime, `{op}` on one server. multiput replicated: \
             `ReplicatedClient` with `Policy {{ replicas: 3, ..Default::default() }}` (write: \
             all replicas acknowledge; read: all replicas asked, latest wins, repair) over a \
             plain client with one connection per server. Peer: async-memcached, one client \
             per server, {peer} of the same key `tokio::join!`ed (acknowledged, concurrent; it \
             stores or reads the bare 100-byte value, no envelope). Raw reference: one \
             blocking socket per server, {raw} written to all three, then the three replies \
             read (the I/O of a replicated call, no envelope work). \"p50 × 1 server\" \
             divides the row's p50 by the baseline's."
        )
    };

    eprintln!("\n== replicated set, 3 replicas, sequential");
    let mut t = Table::new(
        "Replicated set (100-byte value), 3 replicas, sequential",
        "sets/s",
        &note(
            "set",
            "three sets",
            &format!("`ms k {} O0` + `mn` (multiput's request)", stored.len()),
        ),
    );
    t.base = "1 server";
    t.lat_ratio = true;
    t.add(
        format!("multiput async, {}, plain `set`", Ct.label()),
        Role::Floor,
        Some(Ct),
        mp_async_seq(&set1, Ct, 1, false, seq),
    );
    t.add(
        "raw socket ×3 `ms …` + `mn`",
        Role::RawRef,
        None,
        raw_fanout_seq(&rset, &stored, seq),
    );
    for f in [Ct, Mt] {
        t.add(
            format!("multiput replicated ×3, async {}", f.label()),
            Role::Ours,
            Some(f),
            repl_async_seq(&rset, f, seq),
        );
    }
    t.add(
        "multiput replicated ×3, blocking",
        Role::Ours,
        None,
        repl_blocking_seq(&rset, seq),
    );
    for f in [Ct, Mt] {
        t.add(
            format!("async-memcached ×3 sets `tokio::join!`, {}", f.label()),
            Role::Peer,
            Some(f),
            am_fanout_seq(&fset, f, seq),
        );
    }
    t.footer = repl_goals(&t, true);
    tables.push(t);

    // Throughput is what callers get under load: many tasks writing at once.
    eprintln!("\n== replicated set, 3 replicas, {REPL_TASKS} concurrent tasks");
    let conc = st.budget(CONC_OPS_PER_SEC / REPLICAS as f64);
    let mut t = Table::new(
        &format!("Replicated set (100-byte value), 3 replicas, {REPL_TASKS} concurrent tasks"),
        "sets/s",
        &format!(
            "{REPL_TASKS} tasks on one runtime, each doing sequential sets of its own keys. \
             multiput: one `ReplicatedClient` (all replicas acknowledge) shared by every task, \
             one connection per server, the tasks' writes pipelined. Peer: the hand-written \
             acknowledged fan-out, each task with its own async-memcached client per server \
             ({} connections), the three sets `tokio::join!`ed.",
            REPL_TASKS * REPLICAS
        ),
    );
    for f in [Ct, Mt] {
        t.add(
            format!(
                "multiput replicated ×3, async {}, {REPL_TASKS} tasks",
                f.label()
            ),
            Role::Ours,
            Some(f),
            repl_async_conc(&rset, f, REPL_TASKS, conc),
        );
    }
    for f in [Ct, Mt] {
        t.add(
            format!(
                "async-memcached ×3 sets `tokio::join!`, {}, {REPL_TASKS} tasks",
                f.label()
            ),
            Role::Peer,
            Some(f),
            am_fanout_conc(&fset, f, REPL_TASKS, conc),
        );
    }
    t.footer = conc_throughput_goal(&t, 1.2);
    tables.push(t);

    eprintln!("\n== replicated get, 3 replicas, sequential");
    let mut t = Table::new(
        "Replicated get (hit, 100-byte value), 3 replicas agreeing, sequential",
        "gets/s",
        &note(
            "get",
            "three gets",
            "`mg k v f c t q O0` + `mn` (multiput's request)",
        ),
    );
    t.base = "1 server";
    t.lat_ratio = true;
    t.add(
        format!("multiput async, {}, plain `get`", Ct.label()),
        Role::Floor,
        Some(Ct),
        mp_async_seq(&get1, Ct, 1, false, seq),
    );
    t.add(
        "raw socket ×3 `mg … c t q` + `mn`",
        Role::RawRef,
        None,
        raw_fanout_seq(&rget, &stored, seq),
    );
    for f in [Ct, Mt] {
        t.add(
            format!("multiput replicated ×3, async {}", f.label()),
            Role::Ours,
            Some(f),
            repl_async_seq(&rget, f, seq),
        );
    }
    t.add(
        "multiput replicated ×3, blocking",
        Role::Ours,
        None,
        repl_blocking_seq(&rget, seq),
    );
    for f in [Ct, Mt] {
        t.add(
            format!("async-memcached ×3 gets `tokio::join!`, {}", f.label()),
            Role::Peer,
            Some(f),
            am_fanout_seq(&fget, f, seq),
        );
    }
    t.footer = repl_goals(&t, false);
    tables.push(t);

    eprintln!("\n== replication: wrong winners when replicas disagree");
    let replicas_of = |k: &str| -> Vec<String> {
        probe
            .replicas_of(k)
            .expect("a valid key")
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    let mut rows: Vec<(String, &str, WinnerCheck)> = Vec::new();
    let mut push = |name: String, checks: [WinnerCheck; 2]| {
        for (pass, c) in ["1st read", "2nd read"].into_iter().zip(checks) {
            heartbeat();
            eprintln!(
                "  {name:<58} {pass}: {} keys, wrong {}, disagreements {}, repairs {}, stale {}",
                c.keys, c.wrong, c.disagreements, c.repairs, c.stale
            );
            rows.push((name.clone(), pass, c));
        }
    };
    let exp = prepare_disagreeing(addrs, replicas_of, "e2e:d:a:");
    push(
        format!("**replicated async, {}, read=All**", Ct.label()),
        check_winners_async(addrs, exp, repl_policy()),
    );
    let exp = prepare_disagreeing(addrs, replicas_of, "e2e:d:b:");
    push(
        "**replicated blocking, read=All**".to_string(),
        check_winners_blocking(addrs, &exp, repl_policy()),
    );
    // Reference: the policy that answers from the first replica that has a copy (what
    // libmemcached's replica reads do); it shows the check can see a wrong winner.
    let exp = prepare_disagreeing(addrs, replicas_of, "e2e:d:c:");
    push(
        format!(
            "replicated async, {}, read=FirstHit (reference)",
            Ct.label()
        ),
        check_winners_async(
            addrs,
            exp,
            multiput::Policy {
                read: multiput::ReadPolicy::FirstHit,
                ..repl_policy()
            },
        ),
    );
    sections.push(render_winner_checks(&rows));
}
