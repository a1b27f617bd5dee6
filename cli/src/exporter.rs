//! `multiput exporter`: a Prometheus endpoint for a memcached fleet.
//!
//! Each scrape of `GET /metrics` asks every server for `stats` at once (a thread per server,
//! each on a one-server blocking client of the core that keeps its connection between
//! scrapes, bounded by `--timeout-ms`). The answers are encoded by `prometheus-client`: the
//! Prometheus text format (0.0.4), or OpenMetrics 1.0 when the scraper accepts it. HTTP is
//! `tiny_http`'s. The metric names are listed in docs/exporter.md.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiput::blocking::Client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType::{self, Counter, Gauge};
use prometheus_client::registry::{Registry, Unit};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::args::{ExporterArgs, Global};
use crate::Failure;

/// Threads answering HTTP requests (a scrape holds one for its length; `/` never waits).
const WORKERS: usize = 4;

/// How often an idle worker looks whether a signal asked it to stop.
const POLL: Duration = Duration::from_millis(200);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

// ---------------------------------------------------------------------------------------------
// What is exported
// ---------------------------------------------------------------------------------------------

/// A number from `stats`, exported under `name` for every server that reported it.
struct StatMetric {
    /// The name in memcached's `stats` output.
    stat: &'static str,
    /// The metric's name, without the unit and `_total` suffixes the encoder adds.
    name: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    help: &'static str,
}

const fn stat(
    stat: &'static str,
    name: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    help: &'static str,
) -> StatMetric {
    StatMetric {
        stat,
        name,
        unit,
        kind,
        help,
    }
}

/// The `stats` numbers exported, in output order (docs/exporter.md has the same table).
static STATS: &[StatMetric] = &[
    stat(
        "curr_items",
        "multiput_memcached_current_items",
        None,
        Gauge,
        "Items stored on the server (memcached curr_items).",
    ),
    stat(
        "bytes",
        "multiput_memcached_current",
        Some(Unit::Bytes),
        Gauge,
        "Bytes used by the stored items (memcached bytes).",
    ),
    stat(
        "limit_maxbytes",
        "multiput_memcached_limit",
        Some(Unit::Bytes),
        Gauge,
        "Memory the server may use for items, memcached -m (memcached limit_maxbytes).",
    ),
    stat(
        "get_hits",
        "multiput_memcached_get_hits",
        None,
        Counter,
        "Keys read that were found (memcached get_hits).",
    ),
    stat(
        "get_misses",
        "multiput_memcached_get_misses",
        None,
        Counter,
        "Keys read that were not found (memcached get_misses).",
    ),
    stat(
        "cmd_get",
        "multiput_memcached_cmd_get",
        None,
        Counter,
        "Keys read by get, gets and meta get requests (memcached cmd_get).",
    ),
    stat(
        "cmd_set",
        "multiput_memcached_cmd_set",
        None,
        Counter,
        "Store requests: set, add, replace, append, prepend, cas (memcached cmd_set).",
    ),
    stat(
        "curr_connections",
        "multiput_memcached_current_connections",
        None,
        Gauge,
        "Open client connections (memcached curr_connections).",
    ),
    stat(
        "total_connections",
        "multiput_memcached_connections",
        None,
        Counter,
        "Connections accepted since the server started (memcached total_connections).",
    ),
    stat(
        "evictions",
        "multiput_memcached_evictions",
        None,
        Counter,
        "Items evicted to make room for new ones (memcached evictions).",
    ),
    stat(
        "uptime",
        "multiput_memcached_uptime",
        Some(Unit::Seconds),
        Gauge,
        "Seconds since the server started (memcached uptime).",
    ),
];

const UP_HELP: &str = "1 if the server answered stats in this scrape, 0 if it did not.";
const PROBE_HELP: &str =
    "Round trip of this scrape's stats request to the server, failed or not (the connection's \
     setup included when one had to be opened).";
const VERSION_HELP: &str = "The server's memcached version (memcached version), as a label.";
const SCRAPE_HELP: &str = "Time this scrape took to probe every server.";

/// One server's part of a scrape.
#[derive(Debug, Clone)]
struct ServerProbe {
    /// `host:port`, the `server` label.
    server: String,
    /// The round trip of the `stats` request.
    seconds: f64,
    /// Its answer, or why there was none.
    stats: Result<Vec<(String, String)>, String>,
}

impl ServerProbe {
    fn stat(&self, name: &str) -> Option<&str> {
        let stats = self.stats.as_ref().ok()?;
        stats
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What one scrape found: every server's answer, and how long it took.
#[derive(Debug, Clone)]
struct Scrape {
    servers: Vec<ServerProbe>,
    seconds: f64,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let up: Vec<(&str, u64)> = (self.servers.iter())
            .map(|s| (s.server.as_str(), u64::from(s.stats.is_ok())))
            .collect();
        let name = "multiput_memcached_up";
        family(&mut encoder, name, UP_HELP, None, Gauge, &up)?;
        let probe: Vec<(&str, f64)> = (self.servers.iter())
            .map(|s| (s.server.as_str(), s.seconds))
            .collect();
        let name = "multiput_memcached_probe_duration";
        family(
            &mut encoder,
            name,
            PROBE_HELP,
            Some(&Unit::Seconds),
            Gauge,
            &probe,
        )?;

        // Only servers that answered, and only numbers they reported: a server that did not
        // answer has no series here (Prometheus marks its old ones stale).
        for def in STATS {
            let values: Vec<(&str, u64)> = (self.servers.iter())
                .filter_map(|s| Some((s.server.as_str(), s.stat(def.stat)?.parse().ok()?)))
                .collect();
            family(
                &mut encoder,
                def.name,
                def.help,
                def.unit.as_ref(),
                def.kind,
                &values,
            )?;
        }

        let versions: Vec<(&str, &str)> = (self.servers.iter())
            .filter_map(|s| Some((s.server.as_str(), s.stat("version")?)))
            .collect();
        if !versions.is_empty() {
            let name = "multiput_memcached_version";
            let mut m = encoder.encode_descriptor(name, VERSION_HELP, None, MetricType::Info)?;
            for (server, version) in versions {
                m.encode_info(&[("server", server), ("version", version)])?;
            }
        }

        let name = "multiput_exporter_scrape_duration";
        let m = encoder.encode_descriptor(name, SCRAPE_HELP, Some(&Unit::Seconds), Gauge)?;
        ConstGauge::new(self.seconds).encode(m)
    }
}

/// One metric with a sample per server (`server="host:port"`), as a counter or a gauge; left
/// out when no server has a sample.
fn family<V: EncodeCounterValue + EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: &[(&str, V)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = encoder.encode_descriptor(name, help, unit, kind)?;
    for &(server, value) in samples {
        let labels = [("server", server)];
        let sample = m.encode_family(&labels)?;
        if kind == Counter {
            ConstCounter::new(value).encode(sample)?;
        } else {
            ConstGauge::new(value).encode(sample)?;
        }
    }
    Ok(())
}

/// The exposition format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The Prometheus text format, version 0.0.4: what curl and older scrapers get.
    Prometheus,
    /// OpenMetrics 1.0 text, for a request that accepts `application/openmetrics-text`
    /// (Prometheus does).
    OpenMetrics,
}

impl Format {
    fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS,
        }
    }
}

/// The exposition of one scrape.
fn render(scrape: Scrape, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Probing the servers
// ---------------------------------------------------------------------------------------------

/// The servers, each with its own client.
struct Fleet {
    /// `(host:port, one-server client)` in configuration order, each address once.
    servers: Vec<(String, Client)>,
    /// Whether each server answered the last scrape (`None` before the first). Held for the
    /// length of a scrape, so concurrent scrapes take turns.
    last_up: Mutex<Vec<Option<bool>>>,
}

impl Fleet {
    fn new(g: &Global) -> Result<Fleet, Failure> {
        // The global options' configuration (checked as `stats` checks it), one server at a
        // time.
        let base = crate::commands::config(g)?.build_config()?;
        let mut servers: Vec<(String, Client)> = Vec::new();
        for spec in &g.servers {
            let addr = spec.address();
            // The same server twice would give duplicate series, which Prometheus rejects.
            if servers.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            let mut config = base.clone();
            config.servers = vec![spec.clone()];
            // Every scrape asks: a server that failed the last one is not left out by the
            // client's fail-fast interval.
            config.retry_interval = Duration::ZERO;
            servers.push((addr, Client::from_config(config)?));
        }
        let last_up = Mutex::new(vec![None; servers.len()]);
        Ok(Fleet { servers, last_up })
    }

    /// Ask every server for `stats` at once.
    fn scrape(&self) -> Scrape {
        let mut last_up = self.last_up.lock().unwrap_or_else(|e| e.into_inner());
        let start = Instant::now();
        let servers: Vec<ServerProbe> = thread::scope(|scope| {
            let handles: Vec<_> = self
                .servers
                .iter()
                .map(|(addr, c)| {
                    let h = thread::Builder::new()
                        .name("probe".into())
                        .spawn_scoped(scope, move || probe(c));
                    (addr, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(addr, h)| {
                    let (seconds, stats) = match h {
                        Ok(h) => h
                            .join()
                            .unwrap_or_else(|_| (0.0, Err("internal error in the probe".into()))),
                        Err(e) => (0.0, Err(format!("cannot start a thread: {e}"))),
                    };
                    ServerProbe {
                        server: addr.clone(),
                        seconds,
                        stats,
                    }
                })
                .collect()
        });
        let seconds = start.elapsed().as_secs_f64();

        // Say when a server goes down or comes back (not on every scrape).
        for (was, s) in last_up.iter_mut().zip(&servers) {
            let up = s.stats.is_ok();
            match (&s.stats, *was) {
                (Err(e), Some(true) | None) => log(format_args!("{} is down: {e}", s.server)),
                (Ok(_), Some(false)) => log(format_args!("{} is up again", s.server)),
                _ => {}
            }
            *was = Some(up);
        }
        Scrape { servers, seconds }
    }
}

/// One `stats` request, timed.
fn probe(c: &Client) -> (f64, Result<Vec<(String, String)>, String>) {
    let start = Instant::now();
    let r = match c.stats(None).into_iter().next() {
        Some((_, r)) => r.map_err(|e| e.to_string()),
        None => Err("no server configured".into()),
    };
    (start.elapsed().as_secs_f64(), r)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Index,
    NotFound,
    MethodNotAllowed,
}

fn route(method: &Method, url: &str) -> Route {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let page = match path {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => return Route::NotFound,
    };
    if matches!(method, Method::Get | Method::Head) {
        page
    } else {
        Route::MethodNotAllowed
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn answer(status: u16, body: String, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(body).with_status_code(status);
    if let Some(h) = header("Content-Type", content_type) {
        r.add_header(h);
    }
    r
}

fn respond(fleet: &Fleet, rq: Request) {
    let response = match route(rq.method(), rq.url()) {
        Route::Metrics => {
            let accept = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept"))
                .map(|h| h.value.as_str());
            let format = Format::for_accept(accept);
            match render(fleet.scrape(), format) {
                Ok(body) => answer(200, body, format.content_type()),
                Err(_) => answer(500, "cannot encode the metrics\n".into(), PLAIN),
            }
        }
        Route::Index => answer(200, index_page(fleet), "text/html; charset=utf-8"),
        Route::NotFound => answer(
            404,
            "not found: the metrics are at /metrics\n".into(),
            PLAIN,
        ),
        Route::MethodNotAllowed => {
            let mut r = answer(405, "method not allowed: use GET\n".into(), PLAIN);
            if let Some(h) = header("Allow", "GET, HEAD") {
                r.add_header(h);
            }
            r
        }
    };
    // An error here means the client went away: nothing to do.
    let _ = rq.respond(response);
}

fn index_page(fleet: &Fleet) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let items: String = fleet
        .servers
        .iter()
        .map(|(addr, _)| format!("<li>{}</li>\n", escape(addr)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>multiput exporter</title>\
         </head><body>\n<h1>multiput exporter</h1>\n<p><a href=\"metrics\">Metrics</a> of {} \
         memcached server(s), asked for <code>stats</code> on each scrape:</p>\n<ul>\n{items}\
         </ul>\n</body></html>\n",
        fleet.servers.len()
    )
}

/// A line on stderr, `multiput exporter: ...`. A stderr that cannot be written to (a closed
/// pipe) loses the line but stops nothing, unlike `eprintln!`, which would panic.
fn log(msg: fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "multiput exporter: {msg}");
}

/// Answer requests until `stop` is set.
fn serve(server: &Server, fleet: &Fleet, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(rq)) => respond(fleet, rq),
            Ok(None) => {}
            Err(e) => {
                log(format_args!("{e}"));
                thread::sleep(POLL);
            }
        }
    }
}

/// `multiput exporter`: serve until SIGINT or SIGTERM.
pub fn run(g: &Global, a: ExporterArgs) -> Result<ExitCode, Failure> {
    let fleet = Fleet::new(g)?;
    // Before any thread starts, so that every thread (tiny_http's too) inherits the mask and
    // SIGINT/SIGTERM wait for `sigwait` below instead of killing the process.
    let signals = signals::block();
    let server = Server::http(a.listen.as_str())
        .map_err(|e| Failure::error(format!("cannot listen on {}: {e}", a.listen)))?;
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| a.listen.clone(), |s| s.to_string());
    log(format_args!(
        "serving http://{addr}/metrics for {} server(s)",
        fleet.servers.len()
    ));

    let stop = Arc::new(AtomicBool::new(false));
    if let Some(set) = signals {
        let stop = Arc::clone(&stop);
        let waiter = thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let name = match signals::wait(&set) {
                    Some(libc::SIGINT) => "SIGINT",
                    Some(_) => "SIGTERM",
                    None => return,
                };
                log(format_args!("{name}, stopping"));
                stop.store(true, Ordering::Relaxed);
            });
        if waiter.is_err() {
            signals::unblock(&set);
        }
    }

    let started = thread::scope(|scope| {
        let mut started = 0;
        for i in 0..WORKERS {
            let (server, fleet, stop) = (&server, &fleet, &*stop);
            let h = thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn_scoped(scope, move || serve(server, fleet, stop));
            started += usize::from(h.is_ok());
        }
        started
    });
    if started == 0 {
        return Err(Failure::error("cannot start the HTTP threads"));
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, received by one thread with sigwait(2).
#[cfg(unix)]
mod signals {
    pub type Set = libc::sigset_t;

    fn set() -> Set {
        // SAFETY: sigemptyset initializes the set; sigaddset with valid signal numbers.
        unsafe {
            let mut set: Set = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            set
        }
    }

    /// Block the signals in this thread (and so in the threads it starts from now on).
    pub fn block() -> Option<Set> {
        let set = set();
        // SAFETY: a valid set; the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        (rc == 0).then_some(set)
    }

    /// Give the signals their default action back (when no thread can wait for them).
    pub fn unblock(set: &Set) {
        // SAFETY: as in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, set, std::ptr::null_mut()) };
    }

    /// Wait for one of the signals.
    pub fn wait(set: &Set) -> Option<libc::c_int> {
        let mut sig: libc::c_int = 0;
        // SAFETY: a valid set and a valid place for the answer.
        let rc = unsafe { libc::sigwait(set, &mut sig) };
        (rc == 0).then_some(sig)
    }
}

/// Elsewhere the signals keep their default action.
#[cfg(not(unix))]
mod signals {
    pub type Set = ();
    pub fn block() -> Option<Set> {
        None
    }
    pub fn unblock(_: &Set) {}
    pub fn wait(_: &Set) -> Option<i32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Two servers: one that answered with these stats, one that did not.
    fn scrape() -> Scrape {
        Scrape {
            servers: vec![
                ServerProbe {
                    server: "10.0.0.1:11211".into(),
                    seconds: 0.25,
                    stats: Ok(stats(&[
                        ("pid", "42"),
                        ("uptime", "3600"),
                        ("version", "1.6.18"),
                        ("curr_connections", "7"),
                        ("total_connections", "120"),
                        ("cmd_get", "1000"),
                        ("cmd_set", "300"),
                        ("get_hits", "900"),
                        ("get_misses", "100"),
                        ("bytes", "123456"),
                        ("curr_items", "17"),
                        ("limit_maxbytes", "67108864"),
                        ("evictions", "3"),
                        ("rusage_user", "0.5"),
                    ])),
                },
                ServerProbe {
                    server: "10.0.0.2:11211".into(),
                    seconds: 1.0,
                    stats: Err("connection refused".into()),
                },
            ],
            seconds: 1.5,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn prometheus_text_has_help_type_and_values() {
        let text = render(scrape(), Format::Prometheus).unwrap();
        let l = lines(&text);
        for want in [
            "# HELP multiput_memcached_up 1 if the server answered stats in this scrape, 0 if it did not.",
            "# TYPE multiput_memcached_up gauge",
            "multiput_memcached_up{server=\"10.0.0.1:11211\"} 1",
            "multiput_memcached_up{server=\"10.0.0.2:11211\"} 0",
            "# TYPE multiput_memcached_probe_duration_seconds gauge",
            "multiput_memcached_probe_duration_seconds{server=\"10.0.0.1:11211\"} 0.25",
            "multiput_memcached_probe_duration_seconds{server=\"10.0.0.2:11211\"} 1.0",
            "# HELP multiput_memcached_current_items Items stored on the server (memcached curr_items).",
            "# TYPE multiput_memcached_current_items gauge",
            "multiput_memcached_current_items{server=\"10.0.0.1:11211\"} 17",
            "# TYPE multiput_memcached_current_bytes gauge",
            "multiput_memcached_current_bytes{server=\"10.0.0.1:11211\"} 123456",
            "multiput_memcached_limit_bytes{server=\"10.0.0.1:11211\"} 67108864",
            "# HELP multiput_memcached_get_hits_total Keys read that were found (memcached get_hits).",
            "# TYPE multiput_memcached_get_hits_total counter",
            "multiput_memcached_get_hits_total{server=\"10.0.0.1:11211\"} 900",
            "# TYPE multiput_memcached_get_misses_total counter",
            "multiput_memcached_get_misses_total{server=\"10.0.0.1:11211\"} 100",
            "multiput_memcached_cmd_get_total{server=\"10.0.0.1:11211\"} 1000",
            "multiput_memcached_cmd_set_total{server=\"10.0.0.1:11211\"} 300",
            "# TYPE multiput_memcached_current_connections gauge",
            "multiput_memcached_current_connections{server=\"10.0.0.1:11211\"} 7",
            "# TYPE multiput_memcached_connections_total counter",
            "multiput_memcached_connections_total{server=\"10.0.0.1:11211\"} 120",
            "# TYPE multiput_memcached_evictions_total counter",
            "multiput_memcached_evictions_total{server=\"10.0.0.1:11211\"} 3",
            "# TYPE multiput_memcached_uptime_seconds gauge",
            "multiput_memcached_uptime_seconds{server=\"10.0.0.1:11211\"} 3600",
            "# TYPE multiput_memcached_version_info gauge",
            "multiput_memcached_version_info{server=\"10.0.0.1:11211\",version=\"1.6.18\"} 1",
            "# HELP multiput_exporter_scrape_duration_seconds Time this scrape took to probe every server.",
            "# TYPE multiput_exporter_scrape_duration_seconds gauge",
            "multiput_exporter_scrape_duration_seconds 1.5",
        ] {
            assert!(l.contains(&want), "missing {want:?} in:\n{text}");
        }
        // The server that did not answer has `up` and the probe's time, nothing else.
        let down: Vec<&str> = l
            .iter()
            .copied()
            .filter(|x| x.contains("10.0.0.2"))
            .collect();
        assert_eq!(
            down,
            [
                "multiput_memcached_up{server=\"10.0.0.2:11211\"} 0",
                "multiput_memcached_probe_duration_seconds{server=\"10.0.0.2:11211\"} 1.0",
            ]
        );
        // Stats that are not exported stay out; every sample has HELP and TYPE.
        assert!(!text.contains("pid") && !text.contains("rusage"), "{text}");
        let types = l.iter().filter(|x| x.starts_with("# TYPE ")).count();
        let helps = l.iter().filter(|x| x.starts_with("# HELP ")).count();
        assert_eq!((types, helps), (15, 15), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_text_types_counters_and_info() {
        let text = render(scrape(), Format::OpenMetrics).unwrap();
        let l = lines(&text);
        for want in [
            "# TYPE multiput_memcached_up gauge",
            "multiput_memcached_up{server=\"10.0.0.2:11211\"} 0",
            "# TYPE multiput_memcached_get_hits counter",
            "multiput_memcached_get_hits_total{server=\"10.0.0.1:11211\"} 900",
            "# TYPE multiput_memcached_current_bytes gauge",
            "# UNIT multiput_memcached_current_bytes bytes",
            "# TYPE multiput_memcached_version info",
            "multiput_memcached_version_info{server=\"10.0.0.1:11211\",version=\"1.6.18\"} 1",
            "multiput_exporter_scrape_duration_seconds 1.5",
        ] {
            assert!(l.contains(&want), "missing {want:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn everything_down_leaves_up_and_times_only() {
        let mut s = scrape();
        s.servers.remove(0);
        let text = render(s, Format::Prometheus).unwrap();
        let samples: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|x| !x.starts_with('#'))
            .collect();
        assert_eq!(
            samples,
            [
                "multiput_memcached_up{server=\"10.0.0.2:11211\"} 0",
                "multiput_memcached_probe_duration_seconds{server=\"10.0.0.2:11211\"} 1.0",
                "multiput_exporter_scrape_duration_seconds 1.5",
            ],
            "{text}"
        );
    }

    #[test]
    fn odd_values_are_left_out_and_labels_escaped() {
        let mut s = scrape();
        s.servers[0].stats = Ok(stats(&[
            ("curr_items", "not a number"),
            ("get_hits", "-1"),
            ("get_misses", "18446744073709551615"),
            ("version", "1.6 \"custom\"\\build\nx"),
        ]));
        let text = render(s, Format::Prometheus).unwrap();
        assert!(!text.contains("current_items"), "{text}");
        assert!(!text.contains("get_hits"), "{text}");
        assert!(text.contains(
            "multiput_memcached_get_misses_total{server=\"10.0.0.1:11211\"} 18446744073709551615\n"
        ));
        assert!(
            text.contains(
                "multiput_memcached_version_info{server=\"10.0.0.1:11211\",\
                 version=\"1.6 \\\"custom\\\"\\\\build\\nx\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn format_follows_accept() {
        assert_eq!(Format::for_accept(None), Format::Prometheus);
        assert_eq!(Format::for_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::for_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Prometheus
        );
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::for_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(Format::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0"));
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::Get, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::Head, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::Get, "/metrics?x=1"), Route::Metrics);
        assert_eq!(route(&Method::Get, "/"), Route::Index);
        assert_eq!(route(&Method::Post, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::Delete, "/"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::Get, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::Post, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::Get, ""), Route::NotFound);
        assert_eq!(route(&Method::Get, "*"), Route::NotFound);
    }
}
