//! `multiput exporter` end to end: its HTTP answers against real memcached processes, and
//! Debian's real Prometheus server scraping it while one memcached is killed.
//!
//! Every process here is a child of the test, stopped by its PID; every wait is bounded.
//! The Prometheus test needs `prometheus` (Debian's package: `apt-get install -y prometheus`,
//! or PROMETHEUS_BIN=/path/to/prometheus). Without it the test prints a notice and passes,
//! unless MULTIPUT_NO_SKIPS is set (as in CI), where it fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiput_tests::{cluster, raw_set, Memcached};

/// Bound on one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a process getting ready, and on each state the tests wait for.
const WAIT: Duration = Duration::from_secs(30);
/// Bound on a process exiting after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// HTTP with std::net
// ---------------------------------------------------------------------------------------------

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n\n{}", self.head, self.body)
    }
}

/// Send `raw` (a whole HTTP/1.0 request) to `addr` and read the answer to its end.
fn exchange(addr: &str, raw: &[u8]) -> Result<Reply, String> {
    let sock: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    s.write_all(raw).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    exchange(addr, raw.as_bytes()).unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

fn get(addr: &str, path: &str) -> Reply {
    request(addr, "GET", path, &[])
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

/// Wait (bounded) for `child` to exit; `None` if it is still running.
fn wait_exit(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// SIGTERM, then SIGKILL if it is still there after [`EXIT_WAIT`].
fn stop(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    sigterm(child);
    let status = wait_exit(child, EXIT_WAIT);
    if status.is_none() {
        let _ = child.kill();
        let _ = wait_exit(child, EXIT_WAIT);
    }
    status
}

/// A running `multiput exporter`, stopped when dropped.
struct Exporter {
    child: Child,
    /// `HOST:PORT` it serves on.
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Exporter {
    /// `multiput exporter --listen 127.0.0.1:0 ARGS` with `env`; waits until it serves.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_multiput"));
        cmd.args(["exporter", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("MULTIPUT_SERVERS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot run the multiput binary");
        let pipe = child.stderr.take().expect("stderr pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("multiput exporter: serving http://") {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_string());
                }
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx.recv_timeout(WAIT);
        let mut e = Exporter {
            child,
            addr: String::new(),
            stderr,
        };
        match addr {
            Ok(addr) => e.addr = addr,
            Err(_) => {
                let status = stop(&mut e.child);
                panic!(
                    "the exporter did not say where it serves within {WAIT:?} (exit: {status:?}); \
                     stderr:\n{}",
                    e.stderr()
                );
            }
        }
        e
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stderr so far once it contains `needle` (bounded by `WAIT`).
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> Reply {
        let r = get(&self.addr, "/metrics");
        assert_eq!(r.status, 200, "{r:?}\nexporter stderr:\n{}", self.stderr());
        r
    }

    /// SIGTERM (or SIGINT) and the exit status, bounded.
    fn signal(&mut self, sig: libc::c_int) -> ExitStatus {
        // SAFETY: kill(2) on the PID of our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        wait_exit(&mut self.child, EXIT_WAIT).unwrap_or_else(|| {
            panic!(
                "the exporter did not exit within {EXIT_WAIT:?} of signal {sig}; stderr:\n{}",
                self.stderr()
            )
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The value of `name{server="SERVER"}` in an exposition, if there is exactly one.
fn sample<'a>(text: &'a str, name: &str, server: &str) -> Option<&'a str> {
    let prefix = format!("{name}{{server=\"{server}\"}} ");
    let mut found = text.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
    let first = found.next();
    assert!(found.next().is_none(), "{prefix} twice in:\n{text}");
    first
}

/// A port on 127.0.0.1 where nothing listens (for now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot get a free port")
        .port()
}

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("multiput-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The exporter alone
// ---------------------------------------------------------------------------------------------

#[test]
fn serves_metrics_pages_and_errors_over_http() {
    let mc = Memcached::start();
    let live = mc.addr();
    let dead = format!("127.0.0.1:{}", free_port());
    for i in 0..4 {
        raw_set(&live, &format!("k{i}"), 0, b"v");
    }
    // From MULTIPUT_SERVERS, with the live server twice (exported once).
    let servers = format!("{live},{dead},{live}");
    let mut e = Exporter::start(&["--timeout-ms", "300"], &[("MULTIPUT_SERVERS", &servers)]);

    // Prometheus text format by default.
    let r = e.metrics();
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &r.body;
    assert_eq!(
        sample(text, "multiput_memcached_up", &live),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        sample(text, "multiput_memcached_up", &dead),
        Some("0"),
        "{text}"
    );
    assert_eq!(
        sample(text, "multiput_memcached_current_items", &live),
        Some("4")
    );
    assert_eq!(
        sample(text, "multiput_memcached_current_items", &dead),
        None
    );
    assert!(text.contains("# TYPE multiput_memcached_get_hits_total counter\n"));
    assert!(text.contains("# TYPE multiput_memcached_current_items gauge\n"));
    assert!(text.contains(&format!(
        "multiput_memcached_version_info{{server=\"{live}\",version=\""
    )));
    assert!(text.contains("\nmultiput_exporter_scrape_duration_seconds "));
    // The dead server has `up` and the probe's time only.
    let dead_lines = text.lines().filter(|l| l.contains(&dead)).count();
    assert_eq!(dead_lines, 2, "{text}");

    // OpenMetrics when asked for, as Prometheus asks.
    let r = request(
        &e.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,*/*;q=0.1",
        )],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r
        .body
        .contains("# TYPE multiput_memcached_get_hits counter\n"));
    assert!(r.body.ends_with("# EOF\n"), "{r:?}");

    // The index page, HEAD, and what is refused.
    let r = get(&e.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("href=\"metrics\""), "{r:?}");
    assert!(r.body.contains(&live), "{r:?}");
    let r = request(&e.addr, "HEAD", "/metrics", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    let r = get(&e.addr, "/metrics/x");
    assert_eq!(r.status, 404, "{r:?}");
    let r = request(&e.addr, "POST", "/metrics", &[("Content-Length", "0")]);
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    let r = request(&e.addr, "DELETE", "/", &[]);
    assert_eq!(r.status, 405, "{r:?}");
    // Garbage is answered with an error (or the connection is closed), and it keeps serving.
    if let Ok(r) = exchange(&e.addr, b"NOT HTTP AT ALL\r\n\r\n") {
        assert!(r.status >= 400, "{r:?}");
    }
    // (Connection: close, or HTTP/1.1 keeps the connection open and the read waits.)
    let _ = exchange(
        &e.addr,
        b"GET /metrics HTTP/1.1\r\nContent-Length: x\r\nConnection: close\r\n\r\n",
    );
    let _ = exchange(
        &e.addr,
        b"GET /metrics HTTP/9.9\r\nConnection: close\r\n\r\n",
    );

    // A stopped server costs a scrape one timeout (here 300 ms to connect, 300 ms to read),
    // not more, and shows as down; it is up again once it answers.
    mc.stop();
    let t = Instant::now();
    let text = e.metrics().body;
    let took = t.elapsed();
    mc.cont();
    assert_eq!(
        sample(&text, "multiput_memcached_up", &live),
        Some("0"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "multiput_memcached_current_items", &live),
        None
    );
    assert!(took < Duration::from_secs(5), "a scrape took {took:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = e.metrics().body;
        if sample(&text, "multiput_memcached_up", &live) == Some("1") {
            break;
        }
        assert!(Instant::now() < deadline, "never up again:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The exporter logs before it answers, but its stderr reaches us through a reader
    // thread: wait (bounded) for the lines rather than race that thread.
    e.wait_log(&format!("{live} is down"));
    let log = e.wait_log(&format!("{live} is up again"));
    assert!(!log.contains("panicked"), "{log}");

    // SIGINT stops it cleanly.
    let status = e.signal(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", e.stderr());
}

#[test]
fn refuses_bad_configuration() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_multiput"))
            .args(args)
            .env_remove("MULTIPUT_SERVERS")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the multiput binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["exporter", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no servers"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["exporter", "--servers", "127.0.0.1:1", "--listen", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");

    let (code, err) = run(&[
        "exporter",
        "--servers",
        "127.0.0.1:1",
        "--listen",
        "nonsense",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen on nonsense"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Prometheus scraping the exporter
// ---------------------------------------------------------------------------------------------

/// Debian's Prometheus server: $PROMETHEUS_BIN, or `prometheus` in PATH or /usr/bin.
fn prometheus_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A Prometheus server scraping one target every second, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: TempDir,
}

impl Prometheus {
    fn start(bin: &Path, target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: multiput\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("cannot write the Prometheus configuration");
        // The port is free when picked; if Prometheus loses it to someone else in between, it
        // exits, and the next attempt takes another.
        let mut last_log = String::new();
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let log_path = dir.0.join("prometheus.log");
            let log = std::fs::File::create(&log_path).expect("log file");
            let mut child = Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.0.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let deadline = Instant::now() + WAIT;
            loop {
                let ready = exchange(&addr, b"GET /-/ready HTTP/1.0\r\n\r\n");
                if matches!(ready, Ok(r) if r.status == 200) {
                    return Prometheus { child, addr, dir };
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stop(&mut child);
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("Prometheus did not get ready within {WAIT:?}; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/...` as JSON.
    fn api(&self, path: &str) -> serde_json::Value {
        let r = get(&self.addr, path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {r:?}"))
    }

    /// The instant value of the series of `metric` (a bare metric name), by their `label`.
    fn query(&self, metric: &str, label: &str) -> BTreeMap<String, String> {
        assert!(metric
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let v = self.api(&format!("/api/v1/query?query={metric}"));
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let key = s["metric"][label].as_str()?.to_string();
                let value = s["value"][1].as_str()?.to_string();
                Some((key, value))
            })
            .collect()
    }

    /// Poll `f` until it returns `Some`, for at most [`WAIT`].
    fn wait_for<T>(&self, what: &str, e: &Exporter, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = f() {
                return t;
            }
            if Instant::now() >= deadline {
                panic!(
                    "not seen within {WAIT:?}: {what}\n--- exporter stderr ---\n{}\n\
                     --- prometheus log ---\n{}",
                    e.stderr(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

#[test]
fn prometheus_scrapes_the_exporter() {
    let Some(bin) = prometheus_bin() else {
        let hint = "Prometheus is not installed: `apt-get install -y prometheus` (Debian's \
                    package), or set PROMETHEUS_BIN";
        if std::env::var_os("MULTIPUT_NO_SKIPS").is_some_and(|v| !v.is_empty()) {
            panic!("{hint} (MULTIPUT_NO_SKIPS is set, so this test may not be skipped)");
        }
        eprintln!("SKIPPED prometheus_scrapes_the_exporter: {hint}");
        return;
    };
    let servers = cluster(2);
    let (doomed, kept) = (servers[0].addr(), servers[1].addr());
    for i in 0..3 {
        raw_set(&doomed, &format!("d{i}"), 0, b"x");
    }
    for i in 0..7 {
        raw_set(&kept, &format!("k{i}"), 0, b"y");
    }
    let list = format!("{doomed},{kept}");
    let mut e = Exporter::start(&["--servers", &list, "--timeout-ms", "300"], &[]);
    let prom = Prometheus::start(&bin, &e.addr);

    // Both up, Prometheus' own scrape of the exporter succeeded (the exposition parsed), and
    // the item counts are what the test stored.
    prom.wait_for("both servers up=1", &e, || {
        let up = prom.query("multiput_memcached_up", "server");
        (up.get(&doomed).map(String::as_str) == Some("1")
            && up.get(&kept).map(String::as_str) == Some("1"))
        .then_some(())
    });
    let scrape_ok = prom.query("up", "job");
    assert_eq!(scrape_ok.get("multiput").map(String::as_str), Some("1"));
    let items = prom.query("multiput_memcached_current_items", "server");
    assert_eq!(
        items.get(&doomed).map(String::as_str),
        Some("3"),
        "{items:?}"
    );
    assert_eq!(items.get(&kept).map(String::as_str), Some("7"), "{items:?}");
    let versions = prom.query("multiput_memcached_version_info", "server");
    assert_eq!(
        versions.get(&doomed).map(String::as_str),
        Some("1"),
        "{versions:?}"
    );
    assert_eq!(
        versions.get(&kept).map(String::as_str),
        Some("1"),
        "{versions:?}"
    );

    // Counters and gauges are typed as such (Prometheus keeps the metadata it scraped).
    let types = prom.wait_for("metric metadata", &e, || {
        let meta = prom.api("/api/v1/metadata");
        let of = |name: &str| meta["data"][name][0]["type"].as_str().map(str::to_string);
        Some((
            of("multiput_memcached_get_hits")?,
            of("multiput_memcached_current_items")?,
            of("multiput_memcached_up")?,
        ))
    });
    assert_eq!(
        types,
        ("counter".into(), "gauge".into(), "gauge".into()),
        "{types:?}"
    );

    // Kill one server: its up goes to 0 while the other stays 1, and its numbers disappear
    // (the exporter stops sending them, so Prometheus marks them stale).
    servers[0].kill();
    prom.wait_for("the killed server up=0, the other up=1", &e, || {
        let up = prom.query("multiput_memcached_up", "server");
        (up.get(&doomed).map(String::as_str) == Some("0")
            && up.get(&kept).map(String::as_str) == Some("1"))
        .then_some(())
    });
    prom.wait_for(
        "the killed server's curr_items gone, the other's = 7",
        &e,
        || {
            let items = prom.query("multiput_memcached_current_items", "server");
            (items.len() == 1 && items.get(&kept).map(String::as_str) == Some("7")).then_some(())
        },
    );
    assert_eq!(
        prom.query("up", "job").get("multiput").map(String::as_str),
        Some("1"),
        "the exporter itself must stay up"
    );

    // SIGTERM stops the exporter cleanly (Prometheus is stopped when dropped).
    let status = e.signal(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", e.stderr());
}
