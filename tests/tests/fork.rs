//! Fork safety against real memcached processes: a client that has connected, then `fork()`
//! into children that all read (as uwsgi, `gunicorn --preload`, Celery prefork, PHP's
//! `pcntl_fork` do). Every child must get only its own keys' values, with no error, and the
//! parent's connections must stay in step.
//!
//! This file holds the only tests of its binary that fork, and each test forks from a process
//! whose other test threads do not touch the clients it forks with; children leave with
//! `_exit`, so they never run the harness's destructors (which would stop the servers).

use multiput::blocking::{Client, ReplicatedClient};
use multiput::replication::Policy;
use multiput_tests::{cluster, raw_stats, Memcached};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

const CHILDREN: usize = 4;
const READS: usize = 3_000;
const KEYS: usize = 500;

fn addrs(servers: &[Memcached]) -> Vec<String> {
    servers.iter().map(Memcached::addr).collect()
}

fn client(a: &[String]) -> Client {
    Client::builder()
        .servers(a)
        .configure(|b| {
            b.timeout(Duration::from_secs(2))
                .connect_timeout(Duration::from_secs(2))
        })
        .build()
        .unwrap()
}

fn key(i: usize) -> String {
    format!("fork:{i}")
}

fn value(i: usize) -> String {
    format!("value of fork:{i} {}", "x".repeat(i % 97))
}

/// What one process saw: reads of another key's value (or garbage), and errors.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    wrong: u64,
    errors: u64,
}

impl Tally {
    fn check(&mut self, i: usize, got: Result<Option<Vec<u8>>, multiput::Error>) {
        match got {
            Ok(Some(v)) if v == value(i).as_bytes() => {}
            Ok(_) => self.wrong += 1,
            Err(_) => self.errors += 1,
        }
    }
}

/// Fork `CHILDREN` children that each run `work` and report its tally through a pipe; the
/// parent runs `parent_work` meanwhile. Returns the children's tallies.
fn fork_children(work: impl Fn(usize) -> Tally, parent_work: impl Fn() -> Tally) -> Vec<Tally> {
    let mut kids = Vec::new();
    for c in 0..CHILDREN {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only runs the client and writes to its pipe, then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: the child owns the pipe's write end.
            let mut w = unsafe { std::fs::File::from_raw_fd(fds[1]) };
            let t = work(c);
            let _ = w.write_all(format!("{} {}\n", t.wrong, t.errors).as_bytes());
            // SAFETY: leave without running destructors (they belong to the parent).
            unsafe { libc::_exit(0) };
        }
        // SAFETY: the parent owns the read end; it closes its copy of the write end.
        unsafe { libc::close(fds[1]) };
        kids.push((pid, unsafe { std::fs::File::from_raw_fd(fds[0]) }));
    }
    let mine = parent_work();
    assert_eq!(
        mine,
        Tally::default(),
        "the parent, while its children read"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    kids.into_iter()
        .map(|(pid, mut r)| {
            let mut out = String::new();
            r.read_to_string(&mut out).unwrap();
            let mut status = 0;
            loop {
                // SAFETY: waiting for our own child.
                let w = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if w == pid {
                    break;
                }
                assert!(Instant::now() < deadline, "child {pid} did not finish");
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
            match (it.next(), it.next()) {
                (Some(wrong), Some(errors)) => Tally { wrong, errors },
                _ => panic!("child {pid} reported nothing (status {status})"),
            }
        })
        .collect()
}

fn reads(get: impl Fn(&str) -> Result<Option<Vec<u8>>, multiput::Error>, salt: usize) -> Tally {
    let mut t = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..READS {
        let i = (n * 7 + salt * 131) % KEYS;
        t.check(i, get(&key(i)));
        if Instant::now() > deadline {
            t.errors += (READS - n - 1) as u64;
            break;
        }
    }
    t
}

/// memcached's `total_connections`, summed; each call opens one connection per server itself.
fn connections(servers: &[Memcached]) -> u64 {
    servers
        .iter()
        .map(|s| {
            raw_stats(&s.addr())["total_connections"]
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[test]
fn forked_children_read_only_their_own_replies_and_the_parent_stays_in_step() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = client(&a);
    for i in 0..KEYS {
        c.set(key(i), value(i), 0).unwrap();
    }
    // The parent now holds pooled connections to every server.
    let get = |k: &str| c.get(k).map(|v| v.map(|v| v.data.to_vec()));
    assert_eq!(reads(get, 99), Tally::default());
    let before = connections(&servers);
    let tallies = fork_children(|salt| reads(get, salt), || reads(get, 7));
    assert_eq!(tallies, vec![Tally::default(); CHILDREN]);
    // Each child opened its own connections, one per server; the parent opened none.
    let after = connections(&servers);
    let stats_conns = servers.len() as u64;
    assert_eq!(
        after - before - stats_conns,
        (CHILDREN * servers.len()) as u64
    );
    assert_eq!(
        reads(get, 3),
        Tally::default(),
        "the parent after the children"
    );
    let last = connections(&servers);
    assert_eq!(last - after, stats_conns, "the parent reconnected");
}

#[test]
fn forked_children_of_a_replicated_client_read_their_own_values() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let r = ReplicatedClient::new(
        client(&a),
        Policy {
            replicas: 2,
            ..Policy::default()
        },
    )
    .unwrap();
    for i in 0..KEYS {
        r.set(key(i), value(i), 0).unwrap();
    }
    let get = |k: &str| r.get(k).map(|v| v.map(|v| v.data.to_vec()));
    assert_eq!(reads(get, 1), Tally::default());
    let tallies = fork_children(|salt| reads(get, salt), || reads(get, 5));
    assert_eq!(tallies, vec![Tally::default(); CHILDREN]);
    assert_eq!(
        reads(get, 11),
        Tally::default(),
        "the parent after the children"
    );
    // Nothing was repaired: no read ever saw a wrong copy.
    assert_eq!(r.metrics().total.repairs, 0);
}

#[test]
fn forked_children_of_an_async_client_open_their_own_connections() {
    let servers = cluster(2);
    let a = addrs(&servers);
    let c = multiput::Client::builder()
        .servers(&a)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // The parent's connection tasks run on a runtime that keeps running while children fork.
    let parent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    parent_rt.block_on(async {
        for i in 0..KEYS {
            c.set(key(i), value(i), 0).await.unwrap();
        }
    });
    let tallies = fork_children(
        |salt| {
            // A child has no runtime threads of its parent: it makes its own runtime.
            let rt = rt();
            reads(
                |k| rt.block_on(c.get(k)).map(|v| v.map(|v| v.data.to_vec())),
                salt,
            )
        },
        || {
            reads(
                |k| {
                    parent_rt
                        .block_on(c.get(k))
                        .map(|v| v.map(|v| v.data.to_vec()))
                },
                2,
            )
        },
    );
    assert_eq!(tallies, vec![Tally::default(); CHILDREN]);
}

#[test]
fn a_fork_child_never_releases_its_parents_lock() {
    use multiput::recipes::LockOptions;
    let servers = cluster(1);
    let c = client(&addrs(&servers));
    let mut lock = c
        .lock("fork:lock", LockOptions::new(60, Duration::ZERO))
        .unwrap();
    let tallies = fork_children(
        |_| {
            // The child inherits the guard, not the lock: release, extend and drop are no-ops.
            // SAFETY: a bitwise copy, used and dropped in the child only; the child's copy of
            // the original is never dropped (the child leaves with `_exit`).
            let mut inherited = unsafe { std::ptr::read(&lock) };
            let mut t = Tally::default();
            if inherited.is_held() || inherited.release().unwrap_or(true) {
                t.wrong += 1;
            }
            if inherited.extend(60).unwrap_or(true) {
                t.wrong += 1;
            }
            drop(inherited);
            t
        },
        Tally::default,
    );
    assert_eq!(tallies, vec![Tally::default(); CHILDREN]);
    // Still the parent's: nobody else can take it, and the parent's release works.
    assert!(c
        .lock("fork:lock", LockOptions::new(60, Duration::ZERO))
        .is_err());
    assert!(lock.is_held());
    assert!(lock.release().unwrap());
}
