//! TLS (memcached -Z) and ASCII authentication (memcached -Y) against real memcached, with
//! certificates made by the test (tests/src/certs.rs): both clients, replication over TLS, and
//! every failure as its own typed error.

use multiput::error::TlsProblem;
use multiput::{blocking, Client, Config, Error, ErrorKind};

// The futures of the async test are awaited one after another: they were all queued first.
use multiput_tests::certs::{Pair, Pki};
use multiput_tests::Memcached;
use std::time::Duration;

fn tls_server(pki: &Pki, pair: &Pair, verify_clients: bool) -> Memcached {
    Memcached::builder()
        .args(pki.memcached_args(pair, verify_clients))
        .listening_only()
        .start()
}

/// A configuration for `servers` from option pairs, as every binding builds one.
fn config(servers: &[&Memcached], options: &[(&str, &str)]) -> (Config, Option<multiput::Policy>) {
    try_config(servers, options).unwrap()
}

fn try_config(
    servers: &[&Memcached],
    options: &[(&str, &str)],
) -> Result<(Config, Option<multiput::Policy>), Error> {
    let mut s = multiput::setup::Setup::new(multiput::values::Family::Python);
    let list: Vec<String> = servers.iter().map(|m| m.addr()).collect();
    s.set("servers", &list.join(",")).unwrap();
    s.set("timeout_ms", "2000").unwrap();
    s.set("connect_timeout_ms", "2000").unwrap();
    for (k, v) in options {
        s.set(k, v).unwrap();
    }
    let b = s.build()?;
    Ok((b.config, b.policy))
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn blocking_client(
    servers: &[&Memcached],
    options: &[(&str, &str)],
) -> Result<blocking::Client, Error> {
    blocking::Client::from_config(try_config(servers, options)?.0)
}

fn tls_problem(e: &Error) -> Option<TlsProblem> {
    match e {
        Error::Tls { problem, .. } => Some(*problem),
        _ => None,
    }
}

#[test]
fn both_clients_speak_tls_with_the_ca_given() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.server, false);
    let opts = [("tls_ca", path(&pki.ca))];
    let c = blocking_client(&[&m], &opts).unwrap();
    c.set("tls:k", b"over tls", 0).unwrap();
    assert_eq!(&c.get("tls:k").unwrap().unwrap().data[..], b"over tls");
    let keys: Vec<String> = (0..50).map(|i| format!("tls:m{i}")).collect();
    for k in &keys {
        c.set(k, k.as_bytes(), 0).unwrap();
    }
    let got = c.get_multi(&keys);
    assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
    // A large value crosses many TLS records.
    let big = vec![7u8; 900 * 1024];
    c.set("tls:big", &big, 0).unwrap();
    assert_eq!(c.get("tls:big").unwrap().unwrap().data.len(), big.len());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = Client::from_config(config(&[&m], &opts).0).unwrap();
    rt.block_on(async {
        assert_eq!(
            &a.get("tls:k").await.unwrap().unwrap().data[..],
            b"over tls"
        );
        a.set("tls:a", b"async", 0).await.unwrap();
        let many = a.get_multi(&keys).await;
        assert!(many.iter().all(|r| matches!(r, Ok(Some(_)))));
        let v = a.get("tls:big").await.unwrap().unwrap();
        assert_eq!(v.data.len(), big.len());
        // 64 pipelined requests on the one TLS connection.
        let futs: Vec<_> = (0..64).map(|i| a.get(keys[i % 50].clone())).collect();
        for r in futures_join(futs).await {
            assert!(r.unwrap().is_some());
        }
    });
    assert_eq!(&c.get("tls:a").unwrap().unwrap().data[..], b"async");
}

async fn futures_join<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(fs.len());
    let handles: Vec<_> = fs.into_iter().map(Box::pin).collect();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[test]
fn pooled_tls_connections_are_reused() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.server, false);
    let c = blocking_client(&[&m], &[("tls_ca", path(&pki.ca))]).unwrap();
    c.set("reuse", b"1", 0).unwrap();
    for _ in 0..50 {
        c.get("reuse").unwrap();
    }
    // memcached counts connections: 50 calls on one pooled connection open none.
    let stats = c.stats(None);
    let stats = stats[0].1.as_ref().unwrap();
    let total: u64 = stats
        .iter()
        .find(|(k, _)| k == "total_connections")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!(
        total <= 4,
        "each call opened a connection: total_connections {total}"
    );
}

#[test]
fn a_replicated_fleet_over_tls() {
    let pki = Pki::new();
    let ms: Vec<Memcached> = (0..3)
        .map(|_| tls_server(&pki, &pki.server, false))
        .collect();
    let refs: Vec<&Memcached> = ms.iter().collect();
    let (cfg, policy) = config(&refs, &[("tls_ca", path(&pki.ca)), ("replicas", "2")]);
    let plain = blocking::Client::from_config(cfg).unwrap();
    let r = blocking::ReplicatedClient::new(plain, policy.unwrap()).unwrap();
    let report = r.set("rep:k", b"v", 0).unwrap();
    assert_eq!(report.stored.len(), 2);
    assert_eq!(&r.get("rep:k").unwrap().unwrap().data[..], b"v");
}

#[test]
fn untrusted_certificates_are_refused() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.server, false);
    for opts in [vec![("tls_ca", path(&pki.other_ca))], vec![("tls", "1")]] {
        let c = match blocking_client(&[&m], &opts) {
            Ok(c) => c,
            // A machine without a system trust store refuses `tls` alone at build time.
            Err(Error::Config(_)) => continue,
            Err(e) => panic!("{e}"),
        };
        let e = c.get("x").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        assert_eq!(
            tls_problem(&e),
            Some(TlsProblem::UntrustedCertificate),
            "{e}"
        );
        assert!(
            e.to_string().contains("tls_ca"),
            "the error says what to do: {e}"
        );
    }
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_that_name_is_asked_for() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.wrong_name, false);
    let c = blocking_client(&[&m], &[("tls_ca", path(&pki.ca))]).unwrap();
    let e = c.get("x").err().unwrap();
    assert_eq!(tls_problem(&e), Some(TlsProblem::HostnameMismatch), "{e}");
    let ok = blocking_client(
        &[&m],
        &[
            ("tls_ca", path(&pki.ca)),
            ("tls_server_name", "memcached.example"),
        ],
    )
    .unwrap();
    ok.set("named", b"1", 0).unwrap();
}

#[test]
fn an_expired_certificate_is_refused() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.expired, false);
    let c = blocking_client(&[&m], &[("tls_ca", path(&pki.ca))]).unwrap();
    let e = c.get("x").err().unwrap();
    assert_eq!(tls_problem(&e), Some(TlsProblem::Expired), "{e}");
}

#[test]
fn tls_to_a_plain_server_and_plain_to_a_tls_server_say_so() {
    let pki = Pki::new();
    let plain = Memcached::start();
    let c = blocking_client(&[&plain], &[("tls_ca", path(&pki.ca))]).unwrap();
    let e = c.get("x").err().unwrap();
    assert_eq!(tls_problem(&e), Some(TlsProblem::ServerNotTls), "{e}");

    let tls = tls_server(&pki, &pki.server, false);
    let (mut cfg, _) = config(&[&tls], &[]);
    cfg.connect_timeout = Duration::from_millis(500);
    let c = blocking::Client::from_config(cfg).unwrap();
    let e = c.get("x").err().unwrap();
    assert_eq!(tls_problem(&e), Some(TlsProblem::ServerSpeaksTls), "{e}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = Client::from_config(config(&[&tls], &[]).0).unwrap();
    let e = rt.block_on(a.get("x")).unwrap_err();
    assert_eq!(tls_problem(&e), Some(TlsProblem::ServerSpeaksTls), "{e}");
    let a = Client::from_config(config(&[&plain], &[("tls_ca", path(&pki.ca))]).0).unwrap();
    let e = rt.block_on(a.get("x")).unwrap_err();
    assert_eq!(tls_problem(&e), Some(TlsProblem::ServerNotTls), "{e}");
}

#[test]
fn servers_that_verify_clients_need_the_client_certificate() {
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.server, true);
    let without = blocking_client(&[&m], &[("tls_ca", path(&pki.ca))]).unwrap();
    let e = without.get("x").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let with = blocking_client(
        &[&m],
        &[
            ("tls_ca", path(&pki.ca)),
            ("tls_cert", path(&pki.client.cert)),
            ("tls_key", path(&pki.client.key)),
        ],
    )
    .unwrap();
    with.set("mtls", b"1", 0).unwrap();
    assert_eq!(&with.get("mtls").unwrap().unwrap().data[..], b"1");
}

#[test]
fn bad_tls_files_are_configuration_errors() {
    let pki = Pki::new();
    let m = Memcached::start();
    let missing = pki.dir.join("nope.pem");
    let e = blocking_client(&[&m], &[("tls_ca", path(&missing))])
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = blocking_client(
        &[&m],
        &[
            ("tls_ca", path(&pki.ca)),
            ("tls_cert", path(&pki.client.cert)),
        ],
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    // A key that is not the certificate's.
    let e = blocking_client(
        &[&m],
        &[
            ("tls_ca", path(&pki.ca)),
            ("tls_cert", path(&pki.client.cert)),
            ("tls_key", path(&pki.server.key)),
        ],
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

fn auth_server(dir: &std::path::Path) -> Memcached {
    let file = dir.join("auth");
    std::fs::write(&file, "app:s3cret\nother:pw2\n").unwrap();
    Memcached::builder()
        .arg("-Y")
        .arg(&file)
        .listening_only()
        .start()
}

#[test]
fn ascii_authentication_with_right_and_wrong_credentials() {
    let pki = Pki::new();
    let m = auth_server(&pki.dir);
    let c = blocking_client(&[&m], &[("username", "app"), ("password", "s3cret")]).unwrap();
    c.set("auth:k", b"v", 0).unwrap();
    assert_eq!(&c.get("auth:k").unwrap().unwrap().data[..], b"v");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = Client::from_config(config(&[&m], &[("username", "app"), ("password", "s3cret")]).0)
        .unwrap();
    rt.block_on(async { assert!(a.get("auth:k").await.unwrap().is_some()) });

    let wrong = blocking_client(&[&m], &[("username", "app"), ("password", "nope")]).unwrap();
    let e = wrong.get("auth:k").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(
        !e.to_string().contains("nope"),
        "the error shows no password: {e}"
    );
    let none = blocking_client(&[&m], &[]).unwrap();
    let e = none.get("auth:k").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let e = rt
        .block_on(
            Client::from_config(config(&[&m], &[]).0)
                .unwrap()
                .get("auth:k"),
        )
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[test]
fn authentication_over_tls() {
    let pki = Pki::new();
    let file = pki.dir.join("auth");
    std::fs::write(&file, "app:s3cret\n").unwrap();
    let m = Memcached::builder()
        .args(pki.memcached_args(&pki.server, false))
        .arg("-Y")
        .arg(&file)
        .listening_only()
        .start();
    let c = blocking_client(
        &[&m],
        &[
            ("tls_ca", path(&pki.ca)),
            ("username", "app"),
            ("password", "s3cret"),
        ],
    )
    .unwrap();
    c.set("both", b"1", 0).unwrap();
    assert!(c.get("both").unwrap().is_some());
}

#[test]
fn credentials_never_show_in_debug_output() {
    let creds = multiput::config::Credentials {
        username: "app".into(),
        password: "hunter2".into(),
    };
    assert!(!format!("{creds:?}").contains("hunter2"));
    let mut s = multiput::setup::Setup::new(multiput::values::Family::Python);
    s.set("servers", "127.0.0.1:1").unwrap();
    s.set("username", "app").unwrap();
    assert!(s.build().is_err(), "a username needs a password");
    let e = s.set("sasl", "1").err().unwrap();
    assert!(e.to_string().contains("ASCII authentication"), "{e}");
}

#[test]
fn a_fleet_where_one_server_is_tls_only() {
    let pki = Pki::new();
    let plain = [Memcached::start(), Memcached::start()];
    let tls = tls_server(&pki, &pki.server, false);
    let refs = [&plain[0], &tls, &plain[1]];
    let tls_addr = tls.addr();
    let opts = [
        ("tls_ca", path(&pki.ca)),
        ("tls_servers", tls_addr.as_str()),
        ("replicas", "3"),
    ];
    let (cfg, policy) = config(&refs, &opts);
    assert!(!cfg.uses_tls(0) && cfg.uses_tls(1) && !cfg.uses_tls(2));
    // Placement is the same as without TLS.
    let (bare, _) = config(&refs, &[("replicas", "3")]);
    let a = multiput::Ring::new(&cfg.servers, cfg.ring_mode);
    let b = multiput::Ring::new(&bare.servers, bare.ring_mode);
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(a.server_for(k.as_bytes()), b.server_for(k.as_bytes()));
    }
    let r = blocking::ReplicatedClient::new(
        blocking::Client::from_config(cfg).unwrap(),
        policy.unwrap(),
    )
    .unwrap();
    let report = r.set("mixed:k", b"v", 0).unwrap();
    assert_eq!(report.stored.len(), 3, "every copy, the TLS one included");
    assert_eq!(&r.get("mixed:k").unwrap().unwrap().data[..], b"v");
    // A server not in the fleet is refused.
    let e = try_config(&refs, &[("tls_servers", "127.0.0.1:1")])
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[test]
fn large_pipelined_async_writes_over_tls_all_arrive() {
    // Many large sets at once fill the socket: TLS records the socket cannot take yet must
    // still leave (a write half that forgot them would leave requests unsent until a timeout).
    let pki = Pki::new();
    let m = tls_server(&pki, &pki.server, false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = Client::from_config(config(&[&m], &[("tls_ca", path(&pki.ca))]).0).unwrap();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16u8 {
            let a = a.clone();
            tasks.spawn(async move { a.set(format!("big:{i}"), &vec![i; 900 * 1024], 0).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        for i in 0..16u8 {
            let v = a.get(format!("big:{i}")).await.unwrap().unwrap();
            assert_eq!(v.data.len(), 900 * 1024);
            assert!(v.data.iter().all(|&b| b == i));
        }
    });
}
