//! The server commands, on the blocking client.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use multiput::blocking::{Client, ReplicatedClient};
use multiput::{ConfigBuilder, Error, Policy, ReadPolicy, StoreOptions, Value, WritePolicy};

use crate::args::{ArithArgs, Cli, Command, GetArgs, Global, SetArgs};
use crate::output::{self, escape_bytes, json_ms, json_str, key_for_message, Row, Table};
use crate::Failure;

/// Exit status of `stats` and `health` when some server did not answer.
const PARTIAL: u8 = 2;

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let g = &cli.global;
    match cli.command {
        Command::Ring(a) => crate::ring_cmd::run(g, a),
        Command::Get(a) => match policy(g)? {
            None => get(&client(g)?, a),
            Some(p) => {
                if a.cas {
                    return Err(not_replicated(
                        g,
                        "get --cas",
                        "each replica has its own CAS unique",
                    ));
                }
                crate::replicated_cmd::get(&replicated(g, p)?, a)
            }
        },
        Command::Set(a) => match policy(g)? {
            None => set(&client(g)?, a),
            Some(p) => {
                if a.flags != 0 {
                    return Err(not_replicated(
                        g,
                        "set --flags",
                        "replicated copies are stored with flags 0",
                    ));
                }
                crate::replicated_cmd::set(&replicated(g, p)?, a)
            }
        },
        Command::Delete { keys } => match policy(g)? {
            None => delete(&client(g)?, &keys),
            Some(p) => crate::replicated_cmd::delete(&replicated(g, p)?, &keys),
        },
        Command::Incr(a) => match policy(g)? {
            None => arith(&client(g)?, a, true),
            Some(p) => crate::replicated_cmd::arith(&replicated(g, p)?, a, true),
        },
        Command::Decr(a) => match policy(g)? {
            None => arith(&client(g)?, a, false),
            Some(p) => crate::replicated_cmd::arith(&replicated(g, p)?, a, false),
        },
        Command::Touch { key, ttl } => match policy(g)? {
            None => touch(&client(g)?, &key, ttl),
            Some(p) => crate::replicated_cmd::touch(&replicated(g, p)?, &key, ttl),
        },
        Command::Flush { delay, yes } => {
            if !yes {
                return Err(Failure::usage(
                    "flush invalidates every item on every server; add --yes to confirm",
                ));
            }
            config(g)?.build_config()?;
            flush(g, delay)
        }
        Command::Stats { group, json } => match group {
            None => {
                config(g)?.build_config()?;
                stats_table(g, json)
            }
            Some(group) => {
                if group.is_empty() || group.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(Failure::usage(format!(
                        "invalid stats group {group:?}: one word such as settings, slabs or items"
                    )));
                }
                config(g)?.build_config()?;
                stats_group(g, &group, json)
            }
        },
        Command::Health { json } => health(g, json),
    }
}

/// The raw bytes of an argument (on Unix exactly the bytes given).
pub fn os_bytes(s: &OsString) -> &[u8] {
    s.as_encoded_bytes()
}

/// The client configuration the global options describe.
pub fn config(g: &Global) -> Result<ConfigBuilder, Failure> {
    if g.servers.is_empty() {
        return Err(Failure::usage(
            "no servers: pass --servers HOST:PORT[:WEIGHT],... or set MULTIPUT_SERVERS",
        ));
    }
    // A missing password file or a user name without a password is a usage error here.
    auth(g)?;
    Ok(base_config(g).servers(g.servers.iter().cloned()))
}

/// Everything but the servers.
/// The TLS settings the options describe (`None`: plain TCP).
fn tls(g: &Global) -> Option<multiput::config::Tls> {
    let any = g.tls_ca.is_some()
        || !g.tls_servers.is_empty()
        || g.tls_cert.is_some()
        || g.tls_key.is_some()
        || g.tls_server_name.is_some();
    (g.tls || any).then(|| multiput::config::Tls {
        ca_file: g.tls_ca.clone(),
        cert_file: g.tls_cert.clone(),
        key_file: g.tls_key.clone(),
        server_name: g.tls_server_name.clone(),
        servers: (!g.tls_servers.is_empty())
            .then(|| g.tls_servers.iter().map(|s| s.address()).collect()),
    })
}

/// The credentials the options describe: a user name needs a password (from
/// `--password-file` or `MULTIPUT_PASSWORD`).
fn auth(g: &Global) -> Result<Option<multiput::config::Credentials>, Failure> {
    let password = match (&g.password_file, &g.password_env) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::usage(format!("--password-file {}: {e}", file.display())))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        (None, Some(p)) => Some(p.clone()),
        (None, None) => None,
    };
    match (&g.username, password) {
        (None, None) => Ok(None),
        (Some(username), Some(password)) => Ok(Some(multiput::config::Credentials {
            username: username.clone(),
            password,
        })),
        (Some(_), None) => Err(Failure::usage(
            "--username needs a password: --password-file FILE or MULTIPUT_PASSWORD",
        )),
        (None, Some(_)) => Err(Failure::usage(
            "a password without --username (or MULTIPUT_USERNAME)",
        )),
    }
}

fn base_config(g: &Global) -> ConfigBuilder {
    let timeout = Duration::from_millis(g.timeout_ms);
    let mut c = ConfigBuilder::default()
        .ring_mode(g.mode.into())
        .protocol(g.protocol.into())
        .timeout(timeout)
        .connect_timeout(timeout)
        .binary_keys(g.binary_keys);
    if let Some(p) = &g.prefix {
        c = c.key_prefix(os_bytes(p).to_vec());
    }
    c.tls(tls(g)).auth(auth(g).unwrap_or(None))
}

fn client(g: &Global) -> Result<Client, Failure> {
    Ok(Client::from_config(config(g)?.build_config()?)?)
}

/// The replication policy the global options describe: `None` for plain memcached
/// (`--replicas 1`, the default), where the policy options are refused rather than ignored.
fn policy(g: &Global) -> Result<Option<Policy>, Failure> {
    if g.replicas <= 1 {
        let given = [
            ("--write-policy", g.write_policy.is_some()),
            ("--read-policy", g.read_policy.is_some()),
            ("--failover", g.failover),
        ];
        if let Some((name, _)) = given.iter().find(|(_, on)| *on) {
            return Err(Failure::usage(format!(
                "{name} only applies to replicated keys: add --replicas N with N > 1"
            )));
        }
        return Ok(None);
    }
    let replicas = g.replicas as usize;
    Ok(Some(Policy {
        replicas,
        write: match &g.write_policy {
            Some(w) => {
                WritePolicy::parse(w, replicas).map_err(|e| Failure::usage(e.to_string()))?
            }
            None => WritePolicy::All,
        },
        read: match &g.read_policy {
            Some(r) => ReadPolicy::parse(r, replicas).map_err(|e| Failure::usage(e.to_string()))?,
            None => ReadPolicy::All,
        },
        failover: g.failover,
        ..Policy::default()
    }))
}

/// The replicated client for `policy`. A policy that does not fit the servers (more replicas
/// than servers, a quorum above the replicas) is a usage error.
fn replicated(g: &Global, policy: Policy) -> Result<ReplicatedClient, Failure> {
    ReplicatedClient::new(client(g)?, policy).map_err(|e| match e {
        Error::Config(msg) => Failure::usage(msg),
        other => Failure::from(other),
    })
}

/// The refusal of an operation that replication does not cover, and why.
fn not_replicated(g: &Global, what: &str, why: &str) -> Failure {
    Failure::usage(format!(
        "{what} is not supported for replicated keys yet (--replicas {}): {why}; nothing was sent",
        g.replicas
    ))
}

/// An error about one key, naming it.
pub(crate) fn keyed(key: &[u8], e: Error) -> Failure {
    Failure::error(format!("{}: {e}", key_for_message(key)))
}

/// Refuse invalid keys before anything is sent.
pub(crate) fn check_keys(c: &Client, keys: &[&[u8]]) -> Result<(), Failure> {
    let mut errors: Vec<Failure> = keys
        .iter()
        .filter_map(|k| c.cluster().route(k).err().map(|e| keyed(k, e)))
        .collect();
    match errors.pop() {
        None => Ok(()),
        Some(last) => {
            for f in errors {
                if let Some(msg) = f.msg {
                    eprintln!("multiput: {msg}");
                }
            }
            Err(last)
        }
    }
}

fn get(c: &Client, a: GetArgs) -> Result<ExitCode, Failure> {
    let keys: Vec<&[u8]> = a.keys.iter().map(os_bytes).collect();
    check_keys(c, &keys)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();

    if let [key] = keys[..] {
        let found = if a.cas { c.gets(key) } else { c.get(key) }.map_err(|e| keyed(key, e))?;
        if a.verbose {
            eprintln!("server={}", c.server_for(key)?);
        }
        let Some(v) = found else {
            return Err(Failure::error(format!("miss: {}", key_for_message(key))));
        };
        if a.flags || a.cas {
            eprintln!("{}", meta_columns(&v, &a).join(" "));
        }
        out.write_all(&v.data)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }

    let results = if a.cas {
        c.gets_multi(&keys)
    } else {
        c.get_multi(&keys)
    };
    if a.verbose {
        for key in &keys {
            eprintln!("{}\tserver={}", escape_bytes(key), c.server_for(key)?);
        }
    }
    let mut failed = false;
    let mut text = Vec::new();
    for (key, r) in keys.iter().zip(results) {
        text.extend_from_slice(key);
        text.push(b'\t');
        match r {
            Ok(Some(v)) => {
                text.extend_from_slice(escape_bytes(&v.data).as_bytes());
                for col in meta_columns(&v, &a) {
                    text.push(b'\t');
                    text.extend_from_slice(col.as_bytes());
                }
            }
            Ok(None) => text.extend_from_slice(b"(miss)"),
            Err(e) => {
                failed = true;
                text.extend_from_slice(b"(error)");
                eprintln!("multiput: {}: {e}", key_for_message(key));
            }
        }
        text.push(b'\n');
    }
    out.write_all(&text)?;
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `flags=N` and `cas=N`, as asked for.
fn meta_columns(v: &Value, a: &GetArgs) -> Vec<String> {
    let mut cols = Vec::new();
    if a.flags {
        cols.push(format!("flags={}", v.flags));
    }
    if a.cas {
        match v.cas {
            Some(cas) => cols.push(format!("cas={cas}")),
            None => cols.push("cas=-".to_string()),
        }
    }
    cols
}

/// The value of `set`: its argument, or all of stdin.
pub(crate) fn read_value(a: &SetArgs) -> Result<Vec<u8>, Failure> {
    Ok(match &a.value {
        Some(v) => os_bytes(v).to_vec(),
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                eprintln!("multiput: reading the value from standard input (end with Ctrl-D)");
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::error(format!("cannot read the value from stdin: {e}")))?;
            buf
        }
    })
}

fn set(c: &Client, a: SetArgs) -> Result<ExitCode, Failure> {
    let key = os_bytes(&a.key);
    check_keys(c, &[key])?;
    let value = read_value(&a)?;
    let opts = StoreOptions::ttl(a.ttl).flags(a.flags);
    let r = if a.add {
        c.add(key, &value, opts)
    } else if a.replace {
        c.replace(key, &value, opts)
    } else {
        c.set(key, &value, opts)
    };
    r.map_err(|e| keyed(key, e))?;
    Ok(ExitCode::SUCCESS)
}

fn delete(c: &Client, keys: &[OsString]) -> Result<ExitCode, Failure> {
    let keys: Vec<&[u8]> = keys.iter().map(os_bytes).collect();
    check_keys(c, &keys)?;
    let results = if let [key] = keys[..] {
        vec![c.delete(key)]
    } else {
        c.delete_multi(&keys)
    };
    print_deleted(&keys, results)
}

/// One `KEY<TAB>deleted|not found|(error)` line per key (errors also on stderr); exit 1 if any
/// key was missing or failed. `Ok(true)`: deleted, `Ok(false)`: not found.
pub(crate) fn print_deleted(
    keys: &[&[u8]],
    results: impl IntoIterator<Item = Result<bool, Error>>,
) -> Result<ExitCode, Failure> {
    let mut ok = true;
    let mut text = Vec::new();
    for (key, r) in keys.iter().zip(results) {
        let word: &[u8] = match r {
            Ok(true) => b"deleted",
            Ok(false) => {
                ok = false;
                b"not found"
            }
            Err(e) => {
                ok = false;
                eprintln!("multiput: {}: {e}", key_for_message(key));
                b"(error)"
            }
        };
        text.extend_from_slice(key);
        text.push(b'\t');
        text.extend_from_slice(word);
        text.push(b'\n');
    }
    let mut out = io::stdout().lock();
    out.write_all(&text)?;
    out.flush()?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn arith(c: &Client, a: ArithArgs, incr: bool) -> Result<ExitCode, Failure> {
    let key = os_bytes(&a.key);
    let r = if incr {
        c.incr(key, a.delta)
    } else {
        c.decr(key, a.delta)
    };
    print_counter(key, r.map_err(|e| keyed(key, e))?, "multiput set KEY 0")
}

/// Print a counter's new value, or say that the key is missing and how to create it.
pub(crate) fn print_counter(
    key: &[u8],
    value: Option<u64>,
    create: &str,
) -> Result<ExitCode, Failure> {
    match value {
        Some(v) => {
            let mut out = io::stdout().lock();
            writeln!(out, "{v}")?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        None => Err(Failure::error(format!(
            "{}: not found (incr and decr only change an existing decimal value; create it \
             first, e.g. `{create}`)",
            key_for_message(key)
        ))),
    }
}

fn touch(c: &Client, key: &OsString, ttl: u32) -> Result<ExitCode, Failure> {
    let key = os_bytes(key);
    if c.touch(key, ttl).map_err(|e| keyed(key, e))? {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::error(format!(
            "{}: not found",
            key_for_message(key)
        )))
    }
}

fn flush(g: &Global, delay: Option<u32>) -> Result<ExitCode, Failure> {
    let mut failed = 0;
    let mut text = String::new();
    for (server, r) in each_server(g, |c| only(c.flush_all(delay))) {
        match r {
            Ok(()) => text.push_str(&format!("{server}\tok\n")),
            Err(e) => {
                failed += 1;
                text.push_str(&format!("{server}\t(error)\n"));
                eprintln!("multiput: {server}: {e}");
            }
        }
    }
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if failed > 0 {
        Err(Failure::error(format!(
            "flush failed on {failed} server(s)"
        )))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn lookup<'a>(stats: &'a [(String, String)], name: &str) -> Option<&'a str> {
    stats
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn number(stats: &[(String, String)], name: &str) -> Option<u64> {
    lookup(stats, name).and_then(|v| v.parse().ok())
}

type StatsResults = Vec<(String, Result<Vec<(String, String)>, Error>)>;

fn stats_json(results: &StatsResults) -> String {
    let mut out = String::from("[\n");
    for (i, (server, r)) in results.iter().enumerate() {
        out.push_str("  {\"server\": ");
        out.push_str(&json_str(server));
        match r {
            Ok(stats) => {
                out.push_str(", \"ok\": true, \"stats\": {");
                for (j, (k, v)) in stats.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&json_str(k));
                    out.push_str(": ");
                    out.push_str(&json_str(v));
                }
                out.push('}');
            }
            Err(e) => {
                out.push_str(", \"ok\": false, \"error\": ");
                out.push_str(&json_str(&e.to_string()));
            }
        }
        out.push('}');
        if i + 1 < results.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("]\n");
    out
}

fn finish_report(text: &str, failed: bool) -> Result<ExitCode, Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(if failed {
        ExitCode::from(PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

fn stats_table(g: &Global, json: bool) -> Result<ExitCode, Failure> {
    let results = each_server(g, |c| only(c.stats(None)));
    let failed = results.iter().any(|(_, r)| r.is_err());
    if json {
        return finish_report(&stats_json(&results), failed);
    }
    let mut table = Table::new(vec![
        "SERVER", "ITEMS", "BYTES", "HITS", "MISSES", "HIT_RATE", "CONNS", "UPTIME", "VERSION",
    ]);
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    for (server, r) in &results {
        match r {
            Ok(s) => {
                let hits = number(s, "get_hits");
                let misses = number(s, "get_misses");
                let rate = match (hits, misses) {
                    (Some(h), Some(m)) if h + m > 0 => {
                        format!("{:.1}%", h as f64 * 100.0 / (h + m) as f64)
                    }
                    _ => "-".to_string(),
                };
                table.push(Row::Cells(vec![
                    server.clone(),
                    show(number(s, "curr_items")),
                    number(s, "bytes").map_or_else(|| "-".into(), output::human_bytes),
                    show(hits),
                    show(misses),
                    rate,
                    show(number(s, "curr_connections")),
                    number(s, "uptime").map_or_else(|| "-".into(), output::human_duration),
                    lookup(s, "version").unwrap_or("-").to_string(),
                ]));
            }
            Err(e) => table.push(Row::Message(server.clone(), format!("error: {e}"))),
        }
    }
    finish_report(&table.render(), failed)
}

fn stats_group(g: &Global, group: &str, json: bool) -> Result<ExitCode, Failure> {
    let results = each_server(g, |c| only(c.stats(Some(group))));
    let failed = results.iter().any(|(_, r)| r.is_err());
    if json {
        return finish_report(&stats_json(&results), failed);
    }
    let mut text = String::new();
    for (server, r) in &results {
        match r {
            Ok(stats) => {
                for (k, v) in stats {
                    text.push_str(&format!("{server}\t{k}\t{v}\n"));
                }
            }
            Err(e) => eprintln!("multiput: {server}: {e}"),
        }
    }
    finish_report(&text, failed)
}

/// Run `f` on every server at once, each on its own connection and thread, so that a slow or
/// stopped server costs the others nothing (their replies are read as soon as they arrive).
/// Results are in configuration order, named by `host:port`.
fn each_server<T: Send>(
    g: &Global,
    f: impl Fn(&Client) -> Result<T, Error> + Sync,
) -> Vec<(String, Result<T, Error>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = g
            .servers
            .iter()
            .map(|spec| {
                let f = &f;
                let h = scope.spawn(move || {
                    let c =
                        Client::from_config(base_config(g).server(spec.clone()).build_config()?)?;
                    f(&c)
                });
                (spec.address(), h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(server, h)| {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::Config("internal error in this command".into()))
                });
                (server, r)
            })
            .collect()
    })
}

/// The one result of a call made through a one-server client.
fn only<T>(rs: Vec<(String, Result<T, Error>)>) -> Result<T, Error> {
    rs.into_iter()
        .next()
        .map(|(_, r)| r)
        .unwrap_or_else(|| Err(Error::Config("no server configured".into())))
}

/// What `health` found out about one server.
struct Probe {
    connect_ms: f64,
    rtt_ms: f64,
    version: String,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connect (timed with a first `version`, which includes the protocol probe), then time a
/// second `version` on the open connection.
fn probe(c: &Client) -> Result<Probe, Error> {
    let t = Instant::now();
    only(c.version())?;
    let connect_ms = millis(t.elapsed());
    let t = Instant::now();
    let version = only(c.version())?;
    let rtt_ms = millis(t.elapsed());
    Ok(Probe {
        connect_ms,
        rtt_ms,
        version,
    })
}

fn health(g: &Global, json: bool) -> Result<ExitCode, Failure> {
    // Fail on a bad configuration (no servers, bad prefix) before probing anything.
    config(g)?.build_config()?;
    let probes = each_server(g, probe);
    let down = probes.iter().any(|(_, r)| r.is_err());

    let text = if json {
        let rows: Vec<String> = probes
            .iter()
            .map(|(server, r)| {
                let (connect, rtt, version, error) = match r {
                    Ok(p) => (
                        Some(p.connect_ms),
                        Some(p.rtt_ms),
                        json_str(&p.version),
                        "null".into(),
                    ),
                    Err(e) => (None, None, "null".into(), json_str(&e.to_string())),
                };
                format!(
                    "  {{\"server\": {}, \"up\": {}, \"connect_ms\": {}, \"rtt_ms\": {}, \
                     \"version\": {version}, \"error\": {error}}}",
                    json_str(server),
                    r.is_ok(),
                    json_ms(connect),
                    json_ms(rtt),
                )
            })
            .collect();
        format!("[\n{}\n]\n", rows.join(",\n"))
    } else {
        let mut table = Table::new(vec![
            "SERVER",
            "STATUS",
            "CONNECT_MS",
            "RTT_MS",
            "VERSION",
            "ERROR",
        ]);
        for (server, r) in &probes {
            table.push(Row::Cells(match r {
                Ok(p) => vec![
                    server.clone(),
                    "up".into(),
                    output::ms(p.connect_ms),
                    output::ms(p.rtt_ms),
                    p.version.clone(),
                    String::new(),
                ],
                Err(e) => vec![
                    server.clone(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    e.to_string(),
                ],
            }));
        }
        table.render()
    };
    finish_report(&text, down)
}
