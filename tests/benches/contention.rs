//! cas_update under contention: 4 clients (threads, each its own connection pool) increment
//! one key, beside a naive gets/cas loop (retry at once, no backoff) in the same run.
//! Reports successful updates per second and retries per success. Bounded by count and time.
//!
//! `cargo bench -p multiput-tests --bench contention` (env CONTENTION_SECONDS, default 2).

use multiput::blocking::Client;
use multiput::recipes::{CasOptions, Update};
use multiput_tests::Memcached;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const MAX_UPDATES_PER_CLIENT: u64 = 200_000;

fn client(addr: &str) -> Client {
    Client::builder().servers([addr]).build().unwrap()
}

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v).unwrap().trim().parse().unwrap()
}

/// Run `body(client, deadline, reads)` on CLIENTS threads; returns (updates, reads, seconds).
fn run(
    addr: &str,
    key: &str,
    body: fn(&Client, &str, Instant, &AtomicU64) -> u64,
) -> (u64, u64, f64) {
    client(addr).set(key, "0", 0).unwrap();
    let secs: f64 = std::env::var("CONTENTION_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let reads = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let updates: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let reads = &reads;
                s.spawn(move || body(&client(addr), key, deadline, reads))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stored = parse(&client(addr).get(key).unwrap().unwrap().data);
    assert_eq!(stored, updates, "lost updates");
    (updates, reads.load(Relaxed), elapsed)
}

fn with_cas_update(c: &Client, key: &str, deadline: Instant, reads: &AtomicU64) -> u64 {
    let opts = CasOptions {
        max_attempts: 100_000,
        deadline: Duration::from_secs(30),
        ..CasOptions::default()
    };
    let mut n = 0;
    while Instant::now() < deadline && n < MAX_UPDATES_PER_CLIENT {
        let out = c
            .cas_update(key, opts, |cur| {
                Update::Set((parse(&cur.unwrap().data) + 1).to_string().into_bytes())
            })
            .unwrap();
        reads.fetch_add(u64::from(out.attempts()), Relaxed);
        n += 1;
    }
    n
}

fn naive_loop(c: &Client, key: &str, deadline: Instant, reads: &AtomicU64) -> u64 {
    let mut n = 0;
    while Instant::now() < deadline && n < MAX_UPDATES_PER_CLIENT {
        loop {
            reads.fetch_add(1, Relaxed);
            let v = c.gets(key).unwrap().unwrap();
            match c.cas(key, (parse(&v.data) + 1).to_string(), v.cas.unwrap(), 0) {
                Ok(()) => break,
                Err(multiput::Error::Exists) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        n += 1;
    }
    n
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / test harness probing
    }
    let mc = Memcached::start();
    let addr = mc.addr();
    println!("## cas_update vs a naive gets/cas loop: {CLIENTS} clients, one key\n");
    println!("| loop | updates/s | retries per success | lost updates |");
    println!("|---|---:|---:|---:|");
    for (name, body) in [
        (
            "multiput cas_update (jittered backoff)",
            with_cas_update as fn(&Client, &str, Instant, &AtomicU64) -> u64,
        ),
        ("naive gets/cas, immediate retry", naive_loop),
    ] {
        let (updates, reads, secs) = run(&addr, "contended", body);
        let retries = (reads as f64 - updates as f64) / updates.max(1) as f64;
        println!(
            "| {name} | {:.0} | {retries:.2} | 0 |",
            updates as f64 / secs
        );
    }
}
