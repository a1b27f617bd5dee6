//! Replication against real memcached processes: later wins, read repair, tombstones, dead
//! and frozen replicas, concurrent writers, plain values, failover mode.

use multiput::blocking::{Client, ReplicatedClient};
use multiput::envelope::{self, Format, Kind, Stamp, ValueType};
use multiput::replication::{Policy, ReadPolicy, WritePolicy};
use multiput::ErrorKind;
use multiput_tests::{cluster, raw_get, raw_set, Memcached};
use std::time::Duration;

fn addrs(servers: &[Memcached]) -> Vec<String> {
    servers.iter().map(Memcached::addr).collect()
}

fn plain(a: &[String]) -> Client {
    Client::builder()
        .servers(a)
        .configure(|b| {
            b.timeout(Duration::from_millis(400))
                .connect_timeout(Duration::from_millis(400))
                .retry_interval(Duration::from_millis(300))
        })
        .build()
        .unwrap()
}

fn replicated(a: &[String], policy: Policy) -> ReplicatedClient {
    ReplicatedClient::new(plain(a), policy).unwrap()
}

fn policy(replicas: usize) -> Policy {
    Policy {
        replicas,
        ..Policy::default()
    }
}

fn enveloped(ts: u64, writer: u64, payload: &[u8]) -> Vec<u8> {
    envelope::encode(
        Stamp { ts, writer },
        Kind::Value,
        ValueType::Bytes,
        Format::NONE,
        payload,
    )
    .unwrap()
}

#[test]
fn writes_go_to_the_first_n_ring_servers_and_reads_return_the_payload() {
    let servers = cluster(4);
    let a = addrs(&servers);
    let c = replicated(&a, policy(3));
    for i in 0..50 {
        let k = format!("k{i}");
        let report = c.set(&k, format!("v{i}"), 0).unwrap();
        let holders = c.replicas_of(&k).unwrap();
        assert_eq!(report.stored, holders, "{k}");
        assert!(report.failed.is_empty());
        let mut seen = 0;
        for s in &a {
            if let Some((flags, raw)) = raw_get(s, &k) {
                assert!(holders.contains(&s.as_str()), "{k} on a non-replica {s}");
                assert_eq!(flags, 0, "enveloped values carry flags 0");
                assert_eq!(&raw[envelope::HEADER_LEN..], format!("v{i}").as_bytes());
                seen += 1;
            }
        }
        assert_eq!(seen, 3, "{k}");
        let v = c.get(&k).unwrap().unwrap();
        assert_eq!(&v.data[..], format!("v{i}").as_bytes());
        assert!(v.enveloped && v.stamp.writer == c.writer_id());
    }
    // The primary is the key's plain ring owner: PHP and Python clients without replication
    // find the primary copy where they expect the key.
    let p = plain(&a);
    for i in 0..50 {
        let k = format!("k{i}");
        assert_eq!(c.replicas_of(&k).unwrap()[0], p.server_for(&k).unwrap());
    }
}

#[test]
fn the_later_copy_wins_whatever_order_replicas_answer_in() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(&a, policy(3));
    let mut wrong = 0;
    for i in 0..100u64 {
        let k = format!("d{i}");
        // Three different copies; the latest is on a different replica each time.
        let newest = (i % 3) as usize;
        for (j, s) in a.iter().enumerate() {
            let ts = if j == newest {
                1_000 + i
            } else {
                10 + j as u64
            };
            raw_set(
                s,
                &k,
                0,
                &enveloped(ts << 16, 7, format!("from {j}").as_bytes()),
            );
        }
        let v = c.get(&k).unwrap().unwrap();
        if v.data != format!("from {newest}").into_bytes() {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "wrong winners");
    let m = c.metrics();
    assert_eq!(m.total.disagreements, 100);
    assert!(m.total.repairs >= 200, "{m:?}");
    // After repair every replica holds the winner.
    for i in 0..100u64 {
        let k = format!("d{i}");
        let copies: Vec<_> = a.iter().map(|s| raw_get(s, &k).unwrap().1).collect();
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "{k} not converged");
    }
}

#[test]
fn ties_break_by_writer_the_same_way_for_every_reader() {
    let servers = cluster(2);
    let a = addrs(&servers);
    raw_set(&a[0], "t", 0, &enveloped(5 << 16, 1, b"writer 1"));
    raw_set(&a[1], "t", 0, &enveloped(5 << 16, 2, b"writer 2"));
    for _ in 0..3 {
        let c = replicated(
            &a,
            Policy {
                read_repair: false,
                ..policy(2)
            },
        );
        assert_eq!(&c.get("t").unwrap().unwrap().data[..], b"writer 2");
    }
}

#[test]
fn a_killed_replica_loses_nothing_and_comes_back_repaired() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(
        &a,
        Policy {
            write: WritePolicy::Quorum(1),
            ..policy(2)
        },
    );
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    // A bounded write/read loop; one replica dies a third of the way through.
    for round in 0..3 {
        if round == 1 {
            servers[1].kill();
        }
        for k in &keys {
            c.set(k, format!("{k}@{round}"), 0).unwrap();
        }
        for k in &keys {
            let v = c.get(k).unwrap().unwrap();
            assert_eq!(
                v.data,
                format!("{k}@{round}").into_bytes(),
                "{k} in round {round}"
            );
        }
    }
    // Keys whose replicas included the dead server were not moved elsewhere.
    let on_dead: Vec<&String> = keys
        .iter()
        .filter(|k| c.replicas_of(k).unwrap().contains(&a[1].as_str()))
        .collect();
    assert!(!on_dead.is_empty());
    for k in &on_dead {
        let holders: Vec<&String> = a
            .iter()
            .filter(|s| **s != a[1] && raw_get(s, k).is_some())
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{k} must have exactly its one live replica"
        );
    }
    // Restart it empty; after the retry interval, reads repair it.
    servers[1].restart();
    std::thread::sleep(Duration::from_millis(350));
    for k in &keys {
        let v = c.get(k).unwrap().unwrap();
        assert_eq!(v.data, format!("{k}@2").into_bytes());
    }
    for k in &on_dead {
        let (_, raw) = raw_get(&a[1], k).unwrap_or_else(|| panic!("{k} not repaired"));
        assert_eq!(&raw[envelope::HEADER_LEN..], format!("{k}@2").as_bytes());
    }
    assert!(c.metrics().servers[1].1.repairs >= on_dead.len() as u64);
}

#[test]
fn a_frozen_replica_costs_a_timeout_then_fails_fast() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let quorum = replicated(
        &a,
        Policy {
            write: WritePolicy::Quorum(2),
            ..policy(3)
        },
    );
    let all = ReplicatedClient::new(quorum.inner().clone(), policy(3)).unwrap();
    quorum.set("k", "before", 0).unwrap();
    servers[2].stop();
    // Default policy (all live replicas): the frozen one times out, the write reports it.
    let e = all.set("k", "during", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Replication, "{e}");
    // Now it is marked down: "all live replicas" are the other two, and the write succeeds,
    // naming the down one.
    let r = all.set("k", "during", 0).unwrap();
    assert_eq!(r.stored.len(), 2);
    assert_eq!(r.failed[0].1.kind(), ErrorKind::ServerDown);
    assert_eq!(&quorum.get("k").unwrap().unwrap().data[..], b"during");
    servers[2].cont();
}

#[test]
fn deletes_leave_tombstones_that_a_stale_replica_cannot_undo() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(&a, policy(3));
    c.set("gone", "old value", 0).unwrap();
    let old = raw_get(&a[0], "gone").unwrap().1;
    c.delete("gone").unwrap();
    assert_eq!(c.get("gone").unwrap(), None);
    // A replica that missed the delete still holds the old value.
    raw_set(&a[1], "gone", 0, &old);
    assert_eq!(c.get("gone").unwrap(), None, "the tombstone is later");
    let (_, now) = raw_get(&a[1], "gone").unwrap();
    match envelope::decode(&now) {
        envelope::Decoded::Enveloped(e) => assert_eq!(e.kind, Kind::Tombstone, "repaired"),
        envelope::Decoded::Plain(_) => panic!("stale copy not repaired"),
    }
}

#[test]
fn plain_values_are_read_and_lose_to_enveloped_ones() {
    let servers = cluster(2);
    let a = addrs(&servers);
    let c = replicated(
        &a,
        Policy {
            read_repair: false,
            ..policy(2)
        },
    );
    // Written by a plain client (as `printf 'set k 5 0 5\r\nhello\r\n' | nc` would).
    raw_set(&a[0], "p", 5, b"hello");
    let v = c.get("p").unwrap().unwrap();
    assert_eq!(
        (&v.data[..], v.enveloped, v.flags),
        (&b"hello"[..], false, 5)
    );
    raw_set(&a[1], "p", 0, &enveloped(1, 1, b"enveloped"));
    assert_eq!(&c.get("p").unwrap().unwrap().data[..], b"enveloped");
}

#[test]
fn concurrent_writers_converge_on_one_value_every_reader_picks() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let keys: Vec<String> = (0..20).map(|i| format!("hot{i}")).collect();
    std::thread::scope(|s| {
        for w in 0..4 {
            let (a, keys) = (&a, &keys);
            s.spawn(move || {
                let c = replicated(
                    a,
                    Policy {
                        read_repair: false,
                        ..policy(3)
                    },
                );
                for round in 0..50 {
                    for k in keys {
                        c.set(k, format!("w{w}r{round}"), 0).unwrap();
                    }
                }
            });
        }
    });
    let readers: Vec<ReplicatedClient> = (0..3).map(|_| replicated(&a, policy(3))).collect();
    for k in &keys {
        let answers: Vec<_> = readers
            .iter()
            .map(|r| r.get(k).unwrap().unwrap().data)
            .collect();
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{k}: readers disagree"
        );
        let copies: Vec<_> = a.iter().map(|s| raw_get(s, k).unwrap().1).collect();
        assert!(
            copies.windows(2).all(|w| w[0] == w[1]),
            "{k}: replicas did not converge"
        );
        assert!(
            answers[0].ends_with(b"r49"),
            "{k}: the last round of some writer wins"
        );
    }
}

#[test]
fn multi_key_calls_resolve_each_key() {
    let servers = cluster(4);
    let a = addrs(&servers);
    let c = replicated(&a, policy(2));
    let items: Vec<(String, String)> = (0..100)
        .map(|i| (format!("m{i}"), format!("v{i}")))
        .collect();
    for r in c.set_multi(&items, 0) {
        assert_eq!(r.unwrap().stored.len(), 2);
    }
    let mut keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    keys.push("absent".into());
    keys.push("bad key".into());
    let got = c.get_multi(&keys);
    for (i, (_, v)) in items.iter().enumerate() {
        assert_eq!(
            &got[i].as_ref().unwrap().as_ref().unwrap().data[..],
            v.as_bytes()
        );
    }
    assert_eq!(got[100].as_ref().unwrap(), &None);
    assert_eq!(got[101].as_ref().unwrap_err().kind(), ErrorKind::InvalidKey);
    for r in c.delete_multi(&keys[..10]) {
        r.unwrap();
    }
    assert!(c
        .get_multi(&keys[..10])
        .iter()
        .all(|r| r.as_ref().unwrap().is_none()));
}

#[test]
fn first_hit_reads_stop_at_the_first_replica_that_has_the_key() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(
        &a,
        Policy {
            read: ReadPolicy::FirstHit,
            ..policy(3)
        },
    );
    c.set("f", "v", 0).unwrap();
    let primary = c.replicas_of("f").unwrap()[0].to_string();
    let i = a.iter().position(|s| *s == primary).unwrap();
    servers[i].kill();
    assert_eq!(
        &c.get("f").unwrap().unwrap().data[..],
        b"v",
        "served by the next replica"
    );
    assert_eq!(c.get("nothing").unwrap(), None);
}

#[test]
fn policies_can_be_overridden_per_call() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(&a, policy(3));
    c.set("p", "new", 0).unwrap();
    // The primary holds an older copy: the default read (All) finds the latest copy, a
    // FirstHit view of the same client stops at the primary's.
    let holders = c.replicas_of("p").unwrap();
    let primary = holders[0].to_string();
    raw_set(&primary, "p", 0, &enveloped(1, 1, b"old"));
    let first = c
        .with_policies(ReadPolicy::FirstHit, WritePolicy::All)
        .unwrap();
    assert_eq!(&first.get("p").unwrap().unwrap().data[..], b"old");
    assert_eq!(&c.get("p").unwrap().unwrap().data[..], b"new");
    // Writes: with one replica dead, All fails, a Quorum(2) view of the same client succeeds.
    let dead = holders[2].to_string();
    let i = a.iter().position(|s| *s == dead).unwrap();
    servers[i].kill();
    assert_eq!(
        c.set("p", "x", 0).unwrap_err().kind(),
        ErrorKind::Replication
    );
    let quorum = c
        .with_policies(ReadPolicy::All, WritePolicy::Quorum(2))
        .unwrap();
    let report = quorum.set("p", "y", 0).unwrap();
    assert_eq!(report.stored.len(), 2);
    // The views share the clock and writer: the later write wins everywhere.
    assert_eq!(quorum.writer_id(), c.writer_id());
    assert_eq!(&c.get("p").unwrap().unwrap().data[..], b"y");
    // The original keeps its policy; impossible quorums are refused.
    assert_eq!(c.policy().write, WritePolicy::All);
    assert_eq!(
        c.with_policies(ReadPolicy::Quorum(4), WritePolicy::All)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::Config)
    );
}

#[test]
fn failover_mode_moves_copies_off_a_down_server_and_default_mode_does_not() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let stay = replicated(&a, policy(2));
    let moving = ReplicatedClient::new(
        stay.inner().clone(),
        Policy {
            failover: true,
            write: WritePolicy::One,
            ..policy(2)
        },
    )
    .unwrap();
    let k = (0..)
        .map(|i| format!("f{i}"))
        .find(|k| stay.replicas_of(k).unwrap()[0] == a[0])
        .unwrap();
    servers[0].kill();
    let _ = stay.set(&k, "x", 0); // marks server 0 down
    assert_eq!(
        stay.replicas_of(&k).unwrap()[0],
        a[0],
        "default: the key keeps its servers"
    );
    let moved = moving.replicas_of(&k).unwrap();
    assert!(!moved.contains(&a[0].as_str()), "failover: {moved:?}");
    let r = moving.set(&k, "moved", 0).unwrap();
    assert_eq!(r.stored.len(), 2, "{r:?}");
}

#[test]
fn bad_policies_and_inputs_are_refused() {
    let servers = cluster(2);
    let a = addrs(&servers);
    assert!(ReplicatedClient::new(plain(&a), policy(3)).is_err());
    assert!(ReplicatedClient::new(
        plain(&a),
        Policy {
            write: WritePolicy::Quorum(3),
            ..policy(2)
        }
    )
    .is_err());
    let c = replicated(&a, policy(2));
    assert_eq!(
        c.set("a b", "v", 0).unwrap_err().kind(),
        ErrorKind::InvalidKey
    );
    let big = vec![0u8; 1024 * 1024];
    assert_eq!(
        c.set("big", &big, 0).unwrap_err().kind(),
        ErrorKind::ValueTooLarge
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_replicated_client_behaves_the_same() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let client = multiput::Client::builder().servers(&a).build().unwrap();
    let c = multiput::ReplicatedClient::new(client, policy(2)).unwrap();
    let mut tasks = Vec::new();
    for t in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let k = format!("a{t}:{i}");
                c.set(&k, &k, 0).await.unwrap();
                assert_eq!(
                    c.get(&k).await.unwrap().unwrap().data,
                    k.clone().into_bytes()
                );
            }
            c.delete(format!("a{t}:0")).await.unwrap();
            assert_eq!(c.get(format!("a{t}:0")).await.unwrap(), None);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn conditional_writes_are_serialized_through_the_primary() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let c = replicated(&a, policy(3));
    let t = |v: &str| (ValueType::Text, Format::NONE, v.to_string());
    let (vt, f, v) = t("first");
    c.add_typed("k", vt, f, &v, 0).unwrap();
    assert_eq!(
        c.add_typed("k", vt, f, "second", 0).unwrap_err().kind(),
        ErrorKind::NotStored
    );
    assert_eq!(
        c.replace_typed("nope", vt, f, "x", 0).unwrap_err().kind(),
        ErrorKind::NotStored
    );
    c.replace_typed("k", vt, f, "one", 0).unwrap();
    c.append("k", ",two", false, 0).unwrap();
    c.append("k", "zero,", true, 0).unwrap();
    let got = c.get("k").unwrap().unwrap();
    assert_eq!(
        (&got.data[..], got.value_type),
        (&b"zero,one,two"[..], ValueType::Text)
    );
    for s in &a {
        assert_eq!(
            &raw_get(s, "k").unwrap().1[envelope::HEADER_LEN..],
            b"zero,one,two",
            "{s}"
        );
    }
    assert!(c.touch("k", 100).unwrap());
    assert!(!c.touch("missing", 100).unwrap());
    c.delete("k").unwrap();
    c.add_typed("k", vt, f, "after delete", 0).unwrap();
    // Six concurrent adders of one key: exactly one wins.
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..6 {
            let (a, wins) = (&a, &wins);
            s.spawn(move || {
                let c = replicated(a, policy(3));
                if c.add_typed("race", ValueType::Text, Format::NONE, format!("w{i}"), 0)
                    .is_ok()
                {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn binary_keys_replicate_and_repair_like_any_other() {
    let servers = cluster(3);
    let a = addrs(&servers);
    let base = Client::builder()
        .servers(&a)
        .configure(|b| b.binary_keys(true))
        .build()
        .unwrap();
    let c = ReplicatedClient::new(base, policy(3)).unwrap();
    let key: &[u8] = b"bin key\x00\r\n";
    let report = c.set(key, "v1", 0).unwrap();
    assert_eq!(report.stored.len(), 3);
    // One replica loses its copy: the read still answers, and repairs it.
    let lost = c.replicas_of(key).unwrap()[1];
    use multiput::ops::Meta;
    use multiput::protocol::meta::{MetaDelete, MetaGet, MetaKey};
    let one = plain(&[lost.to_string()]);
    one.meta(Meta::Delete(MetaKey::Binary(key), MetaDelete::default()))
        .unwrap();
    assert_eq!(&c.get(key).unwrap().unwrap().data[..], b"v1");
    assert_eq!(c.metrics().total.repairs, 1);
    let g = one
        .meta(Meta::Get(
            MetaKey::Binary(key),
            MetaGet {
                value: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert!(g.value.is_some(), "the lost copy was written back");
    c.delete(key).unwrap();
    assert!(c.get(key).unwrap().is_none());
}
