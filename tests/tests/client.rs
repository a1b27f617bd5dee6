//! The client against real memcached: one scenario list, run on both drivers (async and
//! blocking) and both dialects (meta, which 1.6.18 speaks, and text, forced), so the four
//! combinations are held to the same behaviour.

use multiput::{Error, ErrorKind, ProtocolChoice, StoreOptions};
use multiput_tests::{cluster, raw_get, raw_set, raw_stats, Memcached};
use std::time::Duration;

fn addrs(servers: &[Memcached]) -> Vec<String> {
    servers.iter().map(Memcached::addr).collect()
}

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

/// Build a client of the driver under test.
macro_rules! suite {
    ($modname:ident, $proto:expr, [$($test_attr:tt)*], $client:ident, $($aw:tt)*) => {
        mod $modname {
            use super::*;

            fn builder(servers: &[String]) -> multiput::ConfigBuilder {
                multiput::Config::builder_for_tests(servers)
                    .protocol($proto)
                    .timeout(Duration::from_millis(500))
                    .connect_timeout(Duration::from_millis(500))
                    .retry_interval(Duration::from_millis(300))
            }

            fn client(servers: &[String]) -> $client {
                $client::from_config(builder(servers).build_config().unwrap()).unwrap()
            }

            fn client_with(servers: &[String], f: impl FnOnce(multiput::ConfigBuilder) -> multiput::ConfigBuilder) -> $client {
                $client::from_config(f(builder(servers)).build_config().unwrap()).unwrap()
            }

            $($test_attr)*
            fn crud() {
                let mc = Memcached::start();
                let c = client(&[mc.addr()]);
                assert_eq!(c.get("k")$($aw)*.unwrap(), None);
                c.set("k", "v1", StoreOptions::ttl(0).flags(42))$($aw)*.unwrap();
                let v = c.get("k")$($aw)*.unwrap().unwrap();
                assert_eq!((&v.data[..], v.flags), (&b"v1"[..], 42));
                assert_eq!(raw_get(&mc.addr(), "k"), Some((42, b"v1".to_vec())));
                assert_eq!(kind(c.add("k", "x", 0)$($aw)*), ErrorKind::NotStored);
                c.add("k2", "a", 0)$($aw)*.unwrap();
                assert_eq!(kind(c.replace("missing", "x", 0)$($aw)*), ErrorKind::NotStored);
                c.replace("k2", "b", 0)$($aw)*.unwrap();
                c.append("k2", "c")$($aw)*.unwrap();
                c.prepend("k2", "a")$($aw)*.unwrap();
                assert_eq!(&c.get("k2")$($aw)*.unwrap().unwrap().data[..], b"abc");
                assert_eq!(kind(c.append("missing", "x")$($aw)*), ErrorKind::NotStored);

                let g = c.gets("k")$($aw)*.unwrap().unwrap();
                let cas = g.cas.expect("gets returns a CAS unique");
                c.set("k", "changed", 0)$($aw)*.unwrap();
                assert_eq!(kind(c.cas("k", "lost", cas, 0)$($aw)*), ErrorKind::Exists);
                let g = c.gets("k")$($aw)*.unwrap().unwrap();
                c.cas("k", "won", g.cas.unwrap(), 0)$($aw)*.unwrap();
                assert_eq!(&c.get("k")$($aw)*.unwrap().unwrap().data[..], b"won");
                assert_eq!(kind(c.cas("nope", "x", 1, 0)$($aw)*), ErrorKind::NotFound);

                assert!(c.delete("k")$($aw)*.unwrap());
                assert!(!c.delete("k")$($aw)*.unwrap());
                assert_eq!(c.incr("n", 1)$($aw)*.unwrap(), None);
                c.set("n", "10", 0)$($aw)*.unwrap();
                assert_eq!(c.incr("n", 5)$($aw)*.unwrap(), Some(15));
                assert_eq!(c.decr("n", 100)$($aw)*.unwrap(), Some(0));
                c.set("n", u64::MAX.to_string(), 0)$($aw)*.unwrap();
                assert_eq!(c.incr("n", 2)$($aw)*.unwrap(), Some(1), "incr wraps at 2^64");
                c.set("text", "abc", 0)$($aw)*.unwrap();
                assert_eq!(kind(c.incr("text", 1)$($aw)*), ErrorKind::Client);
                assert!(c.touch("n", 100)$($aw)*.unwrap());
                assert!(!c.touch("missing", 100)$($aw)*.unwrap());
                let v = c.gat("n", 200, true)$($aw)*.unwrap().unwrap();
                // memcached rewrites a shorter counter in place, padded with spaces.
                assert_eq!(v.data.trim_ascii(), b"1");
                assert!(v.cas.is_some());
                assert_eq!(c.gat("missing", 1, false)$($aw)*.unwrap(), None);
                let m = c.metrics();
                let (_, only) = &m.servers[0];
                assert_eq!(only, &m.total);
                // 6 reads found their key, 2 did not; 10 stores were confirmed (the refused
                // add/replace/append/cas count as answered, not as sets).
                assert_eq!((m.total.hits, m.total.misses, m.total.sets), (6, 2, 10), "{m:?}");
                assert_eq!((m.total.errors, m.total.down_events), (0, 0), "{m:?}");
            }

            $($test_attr)*
            fn binary_values_and_sizes() {
                let mc = Memcached::start();
                let c = client(&[mc.addr()]);
                let tricky = b"\r\nEND\r\nVALUE x 0 1\r\n\0\xff".to_vec();
                c.set("t", &tricky, 0)$($aw)*.unwrap();
                assert_eq!(&c.get("t")$($aw)*.unwrap().unwrap().data[..], &tricky[..]);
                c.set("empty", b"", 0)$($aw)*.unwrap();
                assert_eq!(c.get("empty")$($aw)*.unwrap().unwrap().data.len(), 0);
                let big = vec![7u8; 1000 * 1000];
                c.set("big", &big, 0)$($aw)*.unwrap();
                assert_eq!(c.get("big")$($aw)*.unwrap().unwrap().data.len(), big.len());
                let too_big = vec![0u8; 1024 * 1024 + 1];
                assert_eq!(kind(c.set("huge", &too_big, 0)$($aw)*), ErrorKind::ValueTooLarge);
                // Under our limit but over what the server takes with item overhead: the
                // server's refusal is an error, never a silent success.
                let edge = vec![0u8; 1024 * 1024];
                // It is the same typed error as the client's own check (libmemcached's E2BIG).
                let e = c.set("edge", &edge, 0)$($aw)*.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
                assert!(e.to_string().contains("1048576 bytes refused by the server"), "{e}");
                // The same inside a pipelined multi-set: that item fails typed, the others store.
                let items = vec![("m1".to_string(), b"small".to_vec()), ("m2".to_string(), edge.clone()), ("m3".to_string(), b"also".to_vec())];
                let rs = c.set_multi(&items, 0)$($aw)*;
                assert!(rs[0].is_ok() && rs[2].is_ok(), "{rs:?}");
                assert_eq!(rs[1].as_ref().unwrap_err().kind(), ErrorKind::ValueTooLarge, "{rs:?}");
                assert_eq!(&c.get("t")$($aw)*.unwrap().unwrap().data[..], &tricky[..], "connection still in sync");
            }

            $($test_attr)*
            fn bad_keys_are_refused_before_any_io() {
                // Nothing listens on this port: any I/O would give a connection error.
                let c = client(&["127.0.0.1:1".to_string()]);
                let long = "x".repeat(251);
                for k in ["", "a b", "a\r\nflush_all", "tab\t", "nul\0", long.as_str()] {
                    assert_eq!(kind(c.get(k)$($aw)*), ErrorKind::InvalidKey, "{k:?}");
                    assert_eq!(kind(c.set(k, "v", 0)$($aw)*), ErrorKind::InvalidKey, "{k:?}");
                    assert_eq!(kind(c.delete(k)$($aw)*), ErrorKind::InvalidKey, "{k:?}");
                }
                let r = c.get_multi(&["ok", "bad key"])$($aw)*;
                assert_eq!(r[1].as_ref().unwrap_err().kind(), ErrorKind::InvalidKey);
                assert_eq!(r[0].as_ref().unwrap_err().kind(), ErrorKind::ConnectionRefused);
                assert_eq!(c.cluster().health(0).consecutive_failures(), 1, "only the valid key was sent");
            }

            $($test_attr)*
            fn multi_key_calls_follow_the_ring() {
                let servers = cluster(3);
                let a = addrs(&servers);
                let c = client(&a);
                let items: Vec<(String, String)> =
                    (0..300).map(|i| (format!("key:{i}"), format!("value-{i}"))).collect();
                for r in c.set_multi(&items, 0)$($aw)* {
                    r.unwrap();
                }
                let mut per_server = [0usize; 3];
                for (k, v) in &items {
                    let owner = c.server_for(k).unwrap().to_string();
                    let idx = a.iter().position(|x| *x == owner).unwrap();
                    per_server[idx] += 1;
                    assert_eq!(raw_get(&owner, k), Some((0, v.clone().into_bytes())), "{k} on {owner}");
                    for other in a.iter().filter(|x| **x != owner) {
                        assert_eq!(raw_get(other, k), None, "{k} also on {other}");
                    }
                }
                assert!(per_server.iter().all(|&n| n > 50), "{per_server:?}");
                let mut keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
                keys.push("missing".into());
                keys.push("key:7".into()); // asked twice
                let got = c.get_multi(&keys)$($aw)*;
                assert_eq!(got.len(), keys.len());
                for (i, (_, v)) in items.iter().enumerate() {
                    assert_eq!(&got[i].as_ref().unwrap().as_ref().unwrap().data[..], v.as_bytes());
                }
                assert_eq!(got[300].as_ref().unwrap(), &None);
                assert_eq!(&got[301].as_ref().unwrap().as_ref().unwrap().data[..], b"value-7");
                let with_cas = c.gets_multi(&keys[..10])$($aw)*;
                assert!(with_cas.iter().all(|r| r.as_ref().unwrap().as_ref().unwrap().cas.is_some()));
                let dels = c.delete_multi(&["key:1", "key:2", "never"])$($aw)*;
                let dels: Vec<bool> = dels.into_iter().map(Result::unwrap).collect();
                assert_eq!(dels, vec![true, true, false]);
                assert_eq!(c.get("key:1")$($aw)*.unwrap(), None);
                let adds = c.store_multi(multiput::StoreMode::Add, &[("key:3", "x"), ("fresh", "y")], StoreOptions::default())$($aw)*;
                assert_eq!(adds[0].as_ref().unwrap_err().kind(), ErrorKind::NotStored);
                adds[1].as_ref().unwrap();
            }

            $($test_attr)*
            fn server_wide_commands() {
                let servers = cluster(2);
                let a = addrs(&servers);
                let c = client(&a);
                c.set("x", "1", 0)$($aw)*.unwrap();
                for (name, v) in c.version()$($aw)* {
                    assert!(a.contains(&name));
                    assert!(v.unwrap().starts_with("1."));
                }
                for (_, s) in c.stats(None)$($aw)* {
                    let s = s.unwrap();
                    assert!(s.iter().any(|(k, _)| k == "curr_items"));
                }
                for (_, s) in c.stats(Some("settings"))$($aw)* {
                    assert!(s.unwrap().iter().any(|(k, _)| k == "item_size_max"));
                }
                for (_, r) in c.flush_all(None)$($aw)* {
                    r.unwrap();
                }
                assert_eq!(c.get("x")$($aw)*.unwrap(), None);
                // Multi-word groups are sent (`stats cachedump 1 10`); memcached refuses unknown
                // ones. Malformed groups never leave the client.
                assert_eq!(kind(c.stats(Some("bad group"))$($aw)*.remove(0).1), ErrorKind::Client);
                assert_eq!(kind(c.stats(Some("bad  group"))$($aw)*.remove(0).1), ErrorKind::Config);
                assert_eq!(kind(c.stats(Some("items\r\nflush_all"))$($aw)*.remove(0).1), ErrorKind::Config);
            }

            $($test_attr)*
            fn key_prefix_is_sent_but_not_hashed() {
                let servers = cluster(3);
                let a = addrs(&servers);
                let c = client_with(&a, |b| b.key_prefix("app1:"));
                let plain = client(&a);
                c.set("user:1", "p", 0)$($aw)*.unwrap();
                let owner = plain.server_for("user:1").unwrap().to_string();
                assert_eq!(c.server_for("user:1").unwrap(), owner);
                assert_eq!(raw_get(&owner, "app1:user:1"), Some((0, b"p".to_vec())));
                assert_eq!(plain.get("user:1")$($aw)*.unwrap(), None);
                let long = "k".repeat(250 - 5 + 1);
                assert_eq!(kind(c.get(&long)$($aw)*), ErrorKind::InvalidKey);
            }

            $($test_attr)*
            fn a_dead_server_fails_fast_and_costs_only_its_keys() {
                let servers = cluster(3);
                let a = addrs(&servers);
                let c = client(&a);
                let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
                let items: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
                c.set_multi(&items, 0)$($aw)*.into_iter().for_each(|r| r.unwrap());
                servers[1].kill();
                let got = c.get_multi(&keys)$($aw)*;
                for (k, r) in keys.iter().zip(&got) {
                    if c.server_for(k).unwrap() == a[1] {
                        assert!(r.as_ref().unwrap_err().kind() != ErrorKind::InvalidKey, "{k}");
                    } else {
                        assert_eq!(&r.as_ref().unwrap().as_ref().unwrap().data[..], b"v", "{k}");
                    }
                }
                let dead_key = keys.iter().find(|k| c.server_for(k).unwrap() == a[1]).unwrap();
                // Within the failure limit the server is marked down: calls then fail fast
                // instead of connecting again, and the key is not moved to another server.
                let mut kinds = Vec::new();
                for _ in 0..3 {
                    kinds.push(c.get(dead_key)$($aw)*.unwrap_err().kind());
                }
                assert_eq!(kinds.last(), Some(&ErrorKind::ServerDown), "{kinds:?}");
                let m = c.metrics();
                let dead = &m.servers[1].1;
                assert!(dead.errors >= 1 && dead.down_events == 1, "{m:?}");
                assert_eq!(m.servers[0].1.errors + m.servers[2].1.errors, 0, "{m:?}");
                assert_eq!(c.server_for(dead_key).unwrap(), a[1]);
                servers[1].restart();
                std::thread::sleep(Duration::from_millis(400));
                assert_eq!(c.get(dead_key)$($aw)*.unwrap(), None, "back, and empty");
                c.set(dead_key, "again", 0)$($aw)*.unwrap();
                assert_eq!(raw_get(&a[1], dead_key), Some((0, b"again".to_vec())));
            }

            $($test_attr)*
            fn a_restarted_server_costs_no_failed_call() {
                // Pooled connections to a server that restarted are dead; the client must find
                // that out before it uses one, not by failing the caller's request.
                let mc = Memcached::start();
                let c = client(&[mc.addr()]);
                for i in 0..4 {
                    c.set(&format!("k{i}"), "v", 0)$($aw)*.unwrap();
                }
                mc.restart();
                for i in 0..4 {
                    assert_eq!(c.get(&format!("k{i}"))$($aw)*.unwrap(), None, "empty after the restart");
                }
                c.set("k0", "again", 0)$($aw)*.unwrap();
                assert_eq!(raw_get(&mc.addr(), "k0"), Some((0, b"again".to_vec())));
                let m = c.metrics();
                assert_eq!((m.total.errors, m.total.down_events), (0, 0), "{m:?}");
            }

            $($test_attr)*
            fn binary_keys_go_base64_over_meta() {
                let mc = Memcached::start();
                let bin: &[u8] = b"a b\x00\x01\r\n\xff";
                let plain = client(&[mc.addr()]);
                // Off (the default): refused before anything is sent.
                assert_eq!(kind(plain.set(bin, "v", 0)$($aw)*), ErrorKind::InvalidKey);
                let c = client_with(&[mc.addr()], |b| b.binary_keys(true).key_prefix("p:"));
                let r = c.set(bin, "v", 0)$($aw)*;
                if $proto == ProtocolChoice::Text {
                    assert_eq!(kind(r), ErrorKind::Unsupported);
                    assert_eq!(kind(c.get(bin)$($aw)*), ErrorKind::Unsupported);
                    // Text-safe keys still work on the same client; nothing was sent before.
                    c.set("ok", "v", 0)$($aw)*.unwrap();
                    assert_eq!(c.metrics().total.errors, 0);
                    return;
                }
                r.unwrap();
                // Stored under the raw bytes (prefix included): a base64 `mg` from another
                // client finds it, as a binary-protocol client would.
                use multiput::ops::Meta;
                use multiput::protocol::meta::{MetaGet, MetaKey};
                let g = plain.meta(Meta::Get(MetaKey::Binary(b"p:a b\x00\x01\r\n\xff"), MetaGet { value: true, ..Default::default() }))$($aw)*.unwrap();
                assert_eq!(g.value.as_deref(), Some(&b"v"[..]));
                assert_eq!(&c.get(bin)$($aw)*.unwrap().unwrap().data[..], b"v");
                let g = c.gets(bin)$($aw)*.unwrap().unwrap();
                c.cas(bin, "w", g.cas.unwrap(), 0)$($aw)*.unwrap();
                c.append(bin, "x")$($aw)*.unwrap();
                assert_eq!(&c.get(bin)$($aw)*.unwrap().unwrap().data[..], b"wx");
                c.set("plain", "p", 0)$($aw)*.unwrap();
                c.set(b"\x01n", "0", 0)$($aw)*.unwrap();
                assert_eq!(c.incr(b"\x01n", 5)$($aw)*.unwrap(), Some(5));
                assert!(c.touch(bin, 100)$($aw)*.unwrap());
                // A multi-get mixing both kinds of key (the text `get` fast path cannot carry
                // the binary one; the batch goes as base64 `mg`s).
                let keys: Vec<&[u8]> = vec![b"plain", bin, b"missing key", b"\x01n"];
                let got: Vec<Option<Vec<u8>>> = c.get_multi(&keys)$($aw)*.into_iter().map(|r| r.unwrap().map(|v| v.data.to_vec())).collect();
                assert_eq!(got, vec![Some(b"p".to_vec()), Some(b"wx".to_vec()), None, Some(b"5".to_vec())]);
                let items: Vec<(&[u8], &[u8])> = vec![(b"m 1", b"1"), (b"m\t2", b"2")];
                assert!(c.set_multi(&items, 0)$($aw)*.into_iter().all(|r| r.is_ok()));
                assert_eq!(&c.get(b"m\t2")$($aw)*.unwrap().unwrap().data[..], b"2");
                assert_eq!(c.delete_multi(&[&b"m 1"[..], b"m\t2"])$($aw)*.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![true, true]);
                assert!(c.delete(bin)$($aw)*.unwrap());
                assert_eq!(c.get(bin)$($aw)*.unwrap(), None);
                // memcached limits the base64 token to 250 bytes: 186 raw bytes (with the
                // 2-byte prefix: 184 of the caller's).
                c.set(vec![b' '; 184], "v", 0)$($aw)*.unwrap();
                assert_eq!(kind(c.set(vec![b' '; 185], "v", 0)$($aw)*), ErrorKind::InvalidKey);
                assert_eq!(c.metrics().total.errors, 0);
            }

            $($test_attr)*
            fn cache_memlimit_changes_every_servers_limit() {
                let servers = cluster(2);
                let a = addrs(&servers);
                let c = client(&a);
                let rs = c.cache_memlimit(48)$($aw)*;
                assert_eq!(rs.len(), 2);
                for (server, r) in rs {
                    r.unwrap();
                    assert_eq!(raw_stats(&server)["limit_maxbytes"], (48u64 << 20).to_string());
                }
            }

            $($test_attr)*
            fn a_stopped_server_times_out_then_fails_fast() {
                let mc = Memcached::start();
                let c = client_with(&[mc.addr()], |b| b.failure_limit(1));
                c.set("k", "v", 0)$($aw)*.unwrap();
                mc.stop();
                let e = c.get("k")$($aw)*.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
                assert_eq!(kind(c.get("k")$($aw)*), ErrorKind::ServerDown);
                mc.cont();
                std::thread::sleep(Duration::from_millis(400));
                assert_eq!(&c.get("k")$($aw)*.unwrap().unwrap().data[..], b"v");
            }

            $($test_attr)*
            fn meta_commands() {
                let mc = Memcached::start();
                let c = client(&[mc.addr()]);
                use multiput::ops::Meta;
                use multiput::protocol::meta::{MetaGet, MetaKey, MetaSet, MetaDelete};
                use multiput::protocol::MetaStatus;
                let r = c.meta(Meta::Set(MetaKey::Binary(b"\x00bin key\r\n"), b"bv", MetaSet { ttl: 100, client_flags: 3, return_cas: true, ..Default::default() }))$($aw)*;
                if $proto == ProtocolChoice::Text {
                    assert_eq!(kind(r), ErrorKind::Unsupported);
                    return;
                }
                let r = r.unwrap();
                assert_eq!(r.status, MetaStatus::Stored);
                let cas = r.flags.cas.unwrap();
                let g = c.meta(Meta::Get(MetaKey::Binary(b"\x00bin key\r\n"), MetaGet { value: true, ttl: true, client_flags: true, cas: true, key: true, ..Default::default() }))$($aw)*.unwrap();
                assert_eq!(g.value.as_deref(), Some(&b"bv"[..]));
                assert_eq!(g.flags.client_flags, Some(3));
                assert!(matches!(g.flags.ttl, Some(t) if t > 0 && t <= 100));
                assert_eq!(g.flags.decoded_key().unwrap(), b"\x00bin key\r\n");
                // Compare-and-delete: the wrong CAS does not delete, the right one does.
                let d = c.meta(Meta::Delete(MetaKey::Binary(b"\x00bin key\r\n"), MetaDelete { compare_cas: Some(cas + 1), ..Default::default() }))$($aw)*.unwrap();
                assert_eq!(d.status, MetaStatus::Exists);
                let d = c.meta(Meta::Delete(MetaKey::Binary(b"\x00bin key\r\n"), MetaDelete { compare_cas: Some(cas), ..Default::default() }))$($aw)*.unwrap();
                assert_eq!(d.status, MetaStatus::Stored);
                assert_eq!(c.meta(Meta::Noop)$($aw)*.unwrap().status, MetaStatus::Noop);
                // Quiet is cleared for single commands: a miss still answers.
                let m = c.meta(Meta::Get(MetaKey::Text(b"nothing"), MetaGet { value: true, quiet: true, ..Default::default() }))$($aw)*.unwrap();
                assert_eq!(m.status, MetaStatus::Miss);
            }
        }
    };
}

use multiput::blocking::Client as BlockingClient;
use multiput::Client as AsyncClient;

suite!(async_meta, ProtocolChoice::Meta, [#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async], AsyncClient, .await);
suite!(async_text, ProtocolChoice::Text, [#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async], AsyncClient, .await);
suite!(blocking_meta, ProtocolChoice::Meta, [#[test]], BlockingClient,);
suite!(blocking_text, ProtocolChoice::Text, [#[test]], BlockingClient,);

#[test]
fn auto_detects_meta_on_1_6() {
    let mc = Memcached::start();
    let c = BlockingClient::builder()
        .servers([mc.addr()])
        .build()
        .unwrap();
    use multiput::ops::Meta;
    assert_eq!(
        c.meta(Meta::Noop).unwrap().status,
        multiput::protocol::MetaStatus::Noop
    );
}

#[test]
fn blocking_threads_share_connections() {
    let mc = Memcached::start();
    let c = BlockingClient::builder()
        .servers([mc.addr()])
        .build()
        .unwrap();
    let before: u64 = raw_stats(&mc.addr())["total_connections"].parse().unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..300 {
                    let k = format!("t{t}:{i}");
                    c.set(&k, k.as_bytes(), 0).unwrap();
                    assert_eq!(&c.get(&k).unwrap().unwrap().data[..], k.as_bytes());
                }
            });
        }
    });
    let after: u64 = raw_stats(&mc.addr())["total_connections"].parse().unwrap();
    // 4,800 calls; at most one connection per thread (plus the stats probes).
    assert!(
        after - before <= 8 + 2,
        "opened {} connections",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_pipeline_over_few_connections() {
    let mc = Memcached::start();
    let c = AsyncClient::builder().servers([mc.addr()]).build().unwrap();
    let before: u64 = raw_stats(&mc.addr())["total_connections"].parse().unwrap();
    let mut tasks = Vec::new();
    for t in 0..200 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let k = format!("t{t}:{i}");
                c.set(&k, k.as_bytes(), 0).await.unwrap();
                assert_eq!(&c.get(&k).await.unwrap().unwrap().data[..], k.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after: u64 = raw_stats(&mc.addr())["total_connections"].parse().unwrap();
    assert!(
        after - before <= 2 + 1,
        "opened {} connections",
        after - before
    );
}

/// A caller that gives up mid-request must not leave its reply for the next caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_never_hands_its_reply_to_the_next() {
    let mc = Memcached::start();
    let c = AsyncClient::builder()
        .servers([mc.addr()])
        .connections_per_server(1)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..50 {
        raw_set(&mc.addr(), &format!("k{i}"), 0, format!("v{i}").as_bytes());
    }
    // A stopped server holds the reply back; the caller's future is dropped meanwhile.
    c.get("k0").await.unwrap();
    mc.stop();
    let dropped = tokio::time::timeout(Duration::from_millis(100), c.get("k1")).await;
    assert!(dropped.is_err(), "the call was cancelled");
    mc.cont();
    assert_eq!(&c.get("k2").await.unwrap().unwrap().data[..], b"v2");

    // Many concurrent callers, a third of them cancelled at random points.
    let mut tasks = Vec::new();
    for t in 0..300u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let i = t % 50;
            let call = c.get(format!("k{i}"));
            let r = if t % 3 == 0 {
                match tokio::time::timeout(Duration::from_micros(fastrand::u64(1..400)), call).await
                {
                    Ok(r) => r,
                    Err(_) => return,
                }
            } else {
                call.await
            };
            assert_eq!(
                r.unwrap().unwrap().data,
                format!("v{i}").into_bytes(),
                "key k{i}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A multi-server call whose later server is frozen must still deliver the healthy server's
/// reply, even when the frozen one used up the time before that reply was read.
#[test]
fn blocking_multi_get_keeps_replies_that_arrived_while_another_server_hung() {
    let servers = cluster(2);
    let a = addrs(&servers);
    let c = BlockingClient::builder()
        .servers(&a)
        .configure(|b| {
            b.timeout(Duration::from_millis(300))
                .connect_timeout(Duration::from_millis(300))
        })
        .build()
        .unwrap();
    let key_on = |s: usize| {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| c.server_for(k).unwrap() == a[s])
            .unwrap()
    };
    let (k0, k1) = (key_on(0), key_on(1));
    c.set(&k0, "healthy", 0).unwrap(); // opens and pools the connection to server 0 only
    raw_set(&a[1], &k1, 0, b"frozen");
    servers[1].stop();
    let got = c.get_multi(&[&k0, &k1]);
    assert_eq!(
        &got[0].as_ref().unwrap().as_ref().unwrap().data[..],
        b"healthy"
    );
    assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    servers[1].cont();
}
