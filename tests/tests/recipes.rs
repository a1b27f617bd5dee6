//! CAS retry, counters, locks and miss-storm protection against real memcached, with
//! threads and with separate processes (this test binary re-run as a child).

use multiput::blocking::{Client, ReplicatedClient};
use multiput::recipes::{CasOptions, CasOutcome, FillOptions, LockOptions, Update};
use multiput::{envelope, ErrorKind, Policy};
use multiput_tests::{cluster, raw_get, Memcached};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn client(addrs: &[String]) -> Client {
    Client::builder()
        .servers(addrs)
        .configure(|b| {
            b.timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_millis(500))
        })
        .build()
        .unwrap()
}

fn patient() -> CasOptions {
    CasOptions {
        max_attempts: 10_000,
        deadline: Duration::from_secs(60),
        ..CasOptions::default()
    }
}

fn add_one(cur: Option<&multiput::Value>) -> Update {
    let n: u64 = cur
        .map(|v| std::str::from_utf8(&v.data).unwrap().parse().unwrap())
        .unwrap_or(0);
    Update::Set((n + 1).to_string().into_bytes())
}

/// Re-run this test binary as `n` child processes executing test `name` with `env` set.
fn children(name: &str, n: usize, env: &[(&str, String)]) {
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..n)
        .map(|i| {
            let mut c = Command::new(&exe);
            c.args(["--exact", name, "--nocapture", "--test-threads", "1"]);
            c.env("MULTIPUT_CHILD", i.to_string());
            for (k, v) in env {
                c.env(k, v);
            }
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child process failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn child_env(name: &str) -> Option<String> {
    std::env::var("MULTIPUT_CHILD")
        .ok()
        .and(std::env::var(name).ok())
}

/// Child half of the lost-update test: increments through cas_update.
#[test]
fn child_cas_increments() {
    let Some(addr) = child_env("MP_ADDR") else {
        return;
    };
    let c = client(&[addr]);
    for _ in 0..100 {
        c.cas_update("counter", patient(), add_one).unwrap();
    }
}

#[test]
fn the_lost_update_scenario_ends_exact_with_threads_and_processes() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = c.clone();
            s.spawn(move || {
                for _ in 0..100 {
                    c.cas_update("counter", patient(), add_one).unwrap();
                }
            });
        }
        s.spawn(|| children("child_cas_increments", 3, &[("MP_ADDR", mc.addr())]));
    });
    assert_eq!(raw_get(&mc.addr(), "counter").unwrap().1, b"700");
    // The naive loop (get, add one, set) loses updates under the same contention.
    let naive = |c: &Client| {
        for _ in 0..100 {
            let n: u64 = c.get("naive").unwrap().map_or(0, |v| {
                std::str::from_utf8(&v.data).unwrap().parse().unwrap()
            });
            c.set("naive", (n + 1).to_string(), 0).unwrap();
        }
    };
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = c.clone();
            s.spawn(move || naive(&c));
        }
    });
    let lost: u64 = String::from_utf8(raw_get(&mc.addr(), "naive").unwrap().1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(lost <= 400, "{lost}");
}

#[test]
fn two_creators_of_a_missing_key_do_not_clobber_each_other() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    for round in 0..20 {
        let key = format!("new{round}");
        let winners = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..6 {
                let (c, key, winners) = (c.clone(), key.clone(), &winners);
                s.spawn(move || {
                    let mine = format!("creator {t}");
                    let out = c
                        .cas_update(&key, patient(), |cur| match cur {
                            None => Update::Set(mine.clone().into_bytes()),
                            Some(_) => Update::Keep,
                        })
                        .unwrap();
                    if matches!(out, CasOutcome::Stored { .. }) {
                        winners.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(
            winners.load(Ordering::SeqCst),
            1,
            "exactly one creator stores"
        );
    }
}

#[test]
fn cas_update_gives_up_with_the_attempts_and_can_delete() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    c.set("k", "1", 0).unwrap();
    let mut calls = 0;
    let e = c
        .cas_update(
            "k",
            CasOptions {
                max_attempts: 3,
                ..CasOptions::default()
            },
            |_| {
                calls += 1;
                // Another writer changes the key every time: the CAS can never win.
                c.set("k", calls.to_string(), 0).unwrap();
                Update::Set(b"mine".to_vec())
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, multiput::Error::CasRetriesExhausted { attempts: 3, .. }),
        "{e}"
    );
    let out = c
        .cas_update("k", CasOptions::default(), |_| Update::Delete)
        .unwrap();
    assert_eq!(out, CasOutcome::Deleted { attempts: 1 });
    assert_eq!(c.get("k").unwrap(), None);
}

/// Child half of the lock test: increments a plain (non-atomic) counter inside the lock.
#[test]
fn child_locked_increments() {
    let Some(addr) = child_env("MP_ADDR") else {
        return;
    };
    locked_increments(&client(&[addr]), 25);
}

fn locked_increments(c: &Client, n: usize) {
    for _ in 0..n {
        let mut lock = c
            .lock("the-lock", LockOptions::new(10, Duration::from_secs(30)))
            .unwrap();
        // Never two holders: `inside` goes 0 -> 1 -> 0 under the lock.
        assert_eq!(c.incr("inside", 1).unwrap(), Some(1), "two holders at once");
        let v: u64 = String::from_utf8(c.get("total").unwrap().unwrap().data.to_vec())
            .unwrap()
            .parse()
            .unwrap();
        c.set("total", (v + 1).to_string(), 0).unwrap();
        assert_eq!(c.decr("inside", 1).unwrap(), Some(0));
        assert!(lock.release().unwrap());
    }
}

#[test]
fn a_contended_lock_has_one_holder_at_a_time_across_threads_and_processes() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    c.set("inside", "0", 0).unwrap();
    c.set("total", "0", 0).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = c.clone();
            s.spawn(move || locked_increments(&c, 25));
        }
        s.spawn(|| children("child_locked_increments", 4, &[("MP_ADDR", mc.addr())]));
    });
    assert_eq!(raw_get(&mc.addr(), "total").unwrap().1, b"200");
}

#[test]
fn only_the_owner_releases_and_a_non_acquirer_never_does() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    let mut a = c.lock("l", LockOptions::new(1, Duration::ZERO)).unwrap();
    // B cannot acquire: it gets an error, not a guard, so it has nothing to release.
    let e = c
        .lock("l", LockOptions::new(1, Duration::from_millis(50)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockNotAcquired);
    assert_eq!(
        raw_get(&mc.addr(), "l").unwrap().1,
        a.token().as_bytes(),
        "A still holds it"
    );
    // A's lock expires; B takes it; A's late release must not free B's lock.
    std::thread::sleep(Duration::from_millis(2100));
    let mut b = c.lock("l", LockOptions::new(5, Duration::ZERO)).unwrap();
    assert!(!a.release().unwrap(), "A no longer owns it");
    assert_eq!(raw_get(&mc.addr(), "l").unwrap().1, b.token().as_bytes());
    assert!(!a.release().unwrap(), "second release is a no-op");
    assert!(b.extend(30).unwrap());
    assert!(b.release().unwrap());
    assert_eq!(raw_get(&mc.addr(), "l"), None);
    // A dropped guard releases.
    {
        let _g = c.lock("l2", LockOptions::new(30, Duration::ZERO)).unwrap();
    }
    assert_eq!(raw_get(&mc.addr(), "l2"), None);
}

#[test]
fn fencing_tokens_only_grow() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    let mut last = 0;
    for _ in 0..5 {
        let mut l = c
            .lock("fenced", LockOptions::new(5, Duration::ZERO).fencing())
            .unwrap();
        let f = l.fence().unwrap();
        assert!(f > last);
        last = f;
        l.release().unwrap();
    }
}

#[test]
fn locking_on_a_dead_primary_fails_cleanly_and_never_elsewhere() {
    let servers = cluster(3);
    let a: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let c = client(&a);
    let owner = c.server_for("job-lock").unwrap().to_string();
    let i = a.iter().position(|s| *s == owner).unwrap();
    servers[i].kill();
    let e = c
        .lock("job-lock", LockOptions::new(5, Duration::from_secs(5)))
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ServerDown
        ),
        "{e}"
    );
    for (j, s) in a.iter().enumerate() {
        if j != i {
            assert_eq!(raw_get(s, "job-lock"), None, "lock taken on another server");
        }
    }
}

#[test]
fn get_or_set_loads_once_for_50_concurrent_callers() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    let loads = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..50 {
            let (c, loads) = (c.clone(), loads.clone());
            s.spawn(move || {
                let v = c
                    .get_or_set("expensive", 60, FillOptions::default(), || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok::<_, String>(b"computed".to_vec())
                    })
                    .unwrap();
                assert_eq!(&v.data[..], b"computed");
            });
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let e = c
        .get_or_set("fails", 60, FillOptions::default(), || {
            Err::<Vec<u8>, _>("db down")
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader);
    assert_eq!(raw_get(&mc.addr(), "fails"), None);
}

/// Child half: get_or_set from another process while the parent's fill holds the lock.
#[test]
fn child_get_or_set() {
    let Some(addr) = child_env("MP_ADDR") else {
        return;
    };
    let c = client(&[addr]);
    let v = c
        .get_or_set("shared", 60, FillOptions::default(), || {
            Err::<Vec<u8>, _>("the child must not load")
        })
        .unwrap();
    assert_eq!(&v.data[..], b"from the parent");
}

#[test]
fn across_processes_only_one_fills() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    std::thread::scope(|s| {
        s.spawn(|| {
            c.get_or_set("shared", 60, FillOptions::default(), || {
                std::thread::sleep(Duration::from_millis(600));
                Ok::<_, String>(b"from the parent".to_vec())
            })
            .unwrap();
        });
        std::thread::sleep(Duration::from_millis(100)); // the parent holds the fill lock
        children("child_get_or_set", 3, &[("MP_ADDR", mc.addr())]);
    });
}

#[test]
fn replicated_exact_counters_end_at_n_times_m_on_every_replica() {
    let servers = cluster(3);
    let a: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let first = ReplicatedClient::new(
        client(&a),
        Policy {
            replicas: 3,
            ..Policy::default()
        },
    )
    .unwrap();
    first
        .set_typed(
            "hits",
            envelope::ValueType::Int,
            envelope::Format::NONE,
            "0",
            0,
        )
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let a = a.clone();
            s.spawn(move || {
                // Separate clients: separate writer ids and clocks.
                let c = ReplicatedClient::new(
                    client(&a),
                    Policy {
                        replicas: 3,
                        ..Policy::default()
                    },
                )
                .unwrap();
                for _ in 0..50 {
                    c.incr_exact("hits", 1, patient()).unwrap().unwrap();
                }
            });
        }
    });
    for s in &a {
        let (_, raw) = raw_get(s, "hits").unwrap();
        assert_eq!(&raw[envelope::HEADER_LEN..], b"200", "replica {s}");
    }
    assert_eq!(first.incr_exact("missing", 1, patient()).unwrap(), None);
    // The primary down: the update fails, it is not serialized on another replica.
    let primary = first.replicas_of("hits").unwrap()[0].to_string();
    let i = a.iter().position(|s| *s == primary).unwrap();
    servers[i].kill();
    let e = first.incr_exact("hits", 1, patient()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ServerDown | ErrorKind::ConnectionClosed
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_recipes_behave_the_same() {
    let mc = Memcached::start();
    let c = multiput::Client::builder()
        .servers([mc.addr()])
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (c, loads) = (c.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            c.cas_update(
                "n",
                CasOptions {
                    max_attempts: 10_000,
                    deadline: Duration::from_secs(60),
                    ..CasOptions::default()
                },
                add_one,
            )
            .await
            .unwrap();
            let v = c
                .get_or_set("lazy", 60, FillOptions::default(), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(b"v".to_vec())
                })
                .await
                .unwrap();
            assert_eq!(&v.data[..], b"v");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(raw_get(&mc.addr(), "n").unwrap().1, b"50");
    let mut l = c
        .lock("al", LockOptions::new(5, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        c.lock("al", LockOptions::new(5, Duration::ZERO))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::LockNotAcquired
    );
    assert!(l.release().await.unwrap());
}

#[test]
fn a_quorum_lock_survives_one_server_and_still_excludes_others() {
    let servers = cluster(3);
    let a: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let c = client(&a);
    let mut lock = c
        .lock_quorum("q", 3, LockOptions::new(10, Duration::ZERO))
        .unwrap();
    assert_eq!(lock.servers().len(), 3);
    let holders = a
        .iter()
        .filter(|s| raw_get(s, "q").is_some_and(|(_, t)| t == lock.token().as_bytes()))
        .count();
    assert_eq!(holders, 3);
    // One server dies: the lock still has a majority, and nobody else can get one.
    let lost = lock.servers()[0];
    servers[lost].kill();
    let other = client(&a);
    let e = other
        .lock_quorum("q", 3, LockOptions::new(10, Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockNotAcquired, "{e}");
    assert!(lock.extend(20).unwrap(), "two of three still held");
    assert!(lock.release().unwrap());
    // With one server down, a new holder gets the other two: a majority.
    let mut again = other
        .lock_quorum("q", 3, LockOptions::new(10, Duration::from_secs(2)))
        .unwrap();
    assert_eq!(again.servers().len(), 2);
    assert!(again.release().unwrap());
    // Two servers down: no majority, and the error says why instead of waiting it out.
    let second = (0..3).find(|&i| i != lost).unwrap();
    servers[second].kill();
    let e = other
        .lock_quorum("q2", 3, LockOptions::new(10, Duration::from_secs(5)))
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ServerDown
        ),
        "{e}"
    );
}

#[test]
fn quorum_lock_validity_leaves_room_for_drift() {
    use multiput::recipes::quorum_validity;
    assert_eq!(
        quorum_validity(10, Duration::from_millis(50)),
        Some(Duration::from_millis(10_000 - 50 - 102))
    );
    assert_eq!(quorum_validity(1, Duration::from_millis(990)), None);
}
