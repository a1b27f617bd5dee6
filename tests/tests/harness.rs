//! Tests of the memcached harness itself (`multiput_tests`), against real
//! memcached processes. They use only the harness and std, never the client.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use multiput_tests::{
    cluster, raw_command, raw_get, raw_set, raw_stats, raw_stats_settings, try_raw_command,
    Memcached,
};

/// Short bound used where a reply is expected NOT to arrive.
const SHORT: Duration = Duration::from_millis(300);

fn pid_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence; nothing is delivered.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn starts_three_servers_concurrently_on_distinct_ports() {
    let servers = cluster(3);
    assert_eq!(servers.len(), 3);
    let ports: HashSet<u16> = servers.iter().map(Memcached::port).collect();
    assert_eq!(ports.len(), 3, "ports must be distinct: {ports:?}");
    let pids: HashSet<u32> = servers.iter().map(Memcached::pid).collect();
    assert_eq!(pids.len(), 3, "pids must be distinct: {pids:?}");
    for s in &servers {
        assert!(s.is_running());
        assert_eq!(s.addr(), format!("127.0.0.1:{}", s.port()));
        let reply = raw_command(&s.addr(), b"version\r\n", b"\r\n");
        assert!(
            reply.starts_with(b"VERSION "),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        // Each port is served by our own child.
        assert_eq!(raw_stats(&s.addr())["pid"], s.pid().to_string());
    }
    // Keys written to one server are not visible on the others.
    raw_set(&servers[0].addr(), "only-on-0", 1, b"x");
    assert!(raw_get(&servers[0].addr(), "only-on-0").is_some());
    assert_eq!(raw_get(&servers[1].addr(), "only-on-0"), None);
    assert_eq!(raw_get(&servers[2].addr(), "only-on-0"), None);
}

#[test]
fn starts_from_several_threads_at_once() {
    let servers: Vec<Memcached> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(Memcached::start)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ports: HashSet<u16> = servers.iter().map(Memcached::port).collect();
    assert_eq!(ports.len(), 3);
    for s in &servers {
        raw_set(&s.addr(), "k", 0, s.addr().as_bytes());
    }
    for s in &servers {
        assert_eq!(raw_get(&s.addr(), "k"), Some((0, s.addr().into_bytes())));
    }
}

#[test]
fn raw_set_get_round_trip() {
    let mc = Memcached::start();
    let addr = mc.addr();
    assert_eq!(raw_get(&addr, "missing"), None);

    raw_set(&addr, "k1", 42, b"hello");
    assert_eq!(raw_get(&addr, "k1"), Some((42, b"hello".to_vec())));

    // Empty value, max u32 flags.
    raw_set(&addr, "empty", u32::MAX, b"");
    assert_eq!(raw_get(&addr, "empty"), Some((u32::MAX, Vec::new())));

    // Binary data containing CRLF and the END terminator.
    let tricky = b"\r\nEND\r\nVALUE x 0 1\r\n\0\xff".to_vec();
    raw_set(&addr, "tricky", 7, &tricky);
    assert_eq!(raw_get(&addr, "tricky"), Some((7, tricky)));

    // A value larger than one read (up to the default 1 MiB item limit).
    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    raw_set(&addr, "big", 1, &big);
    assert_eq!(raw_get(&addr, "big"), Some((1, big)));

    // Overwrite.
    raw_set(&addr, "k1", 0, b"v2");
    assert_eq!(raw_get(&addr, "k1"), Some((0, b"v2".to_vec())));
    assert_eq!(raw_stats(&addr)["curr_items"], "4");
}

#[test]
fn extra_args_are_passed() {
    // Default item size limit is 1 MiB; -I 2m raises it.
    let mc = Memcached::builder().arg("-I").arg("2m").start();
    assert!(
        mc.command_line().contains(" -I 2m"),
        "{}",
        mc.command_line()
    );
    assert_eq!(raw_stats_settings(&mc.addr())["item_size_max"], "2097152");
    let big = vec![b'x'; 1_500_000];
    raw_set(&mc.addr(), "big", 0, &big);
    assert_eq!(raw_get(&mc.addr(), "big"), Some((0, big)));

    let default = Memcached::start();
    assert_eq!(
        raw_stats_settings(&default.addr())["item_size_max"],
        "1048576"
    );
    let stats = raw_stats(&default.addr());
    assert_eq!(stats["limit_maxbytes"], (64u64 << 20).to_string());
    assert_eq!(stats["threads"], "2");
    assert_eq!(stats["max_connections"], "4096");
}

#[test]
fn kill_makes_the_port_refuse_connections() {
    let mc = Memcached::start();
    let pid = mc.pid();
    raw_set(&mc.addr(), "k", 0, b"v");
    mc.kill();
    assert!(!mc.is_running());
    assert!(!pid_exists(pid), "pid {pid} still exists after kill()");
    let err = TcpStream::connect(mc.addr()).expect_err("connect must fail after kill()");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let err = try_raw_command(&mc.addr(), b"version\r\n", b"\r\n", SHORT).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // Idempotent.
    mc.kill();
}

#[test]
fn restart_gives_an_empty_server_on_the_same_port() {
    let mc = Memcached::start();
    let port = mc.port();
    let old_pid = mc.pid();
    raw_set(&mc.addr(), "k", 5, b"before");
    assert_eq!(raw_get(&mc.addr(), "k"), Some((5, b"before".to_vec())));

    // Restart while running (kills first).
    mc.restart();
    assert_eq!(mc.port(), port);
    assert_ne!(mc.pid(), old_pid);
    assert!(mc.is_running());
    assert!(!pid_exists(old_pid));
    assert_eq!(raw_get(&mc.addr(), "k"), None);
    assert_eq!(raw_stats(&mc.addr())["pid"], mc.pid().to_string());
    assert_eq!(raw_stats(&mc.addr())["curr_items"], "0");

    // Restart after kill, with a client connection still open from before.
    let mut lingering = TcpStream::connect(mc.addr()).unwrap();
    lingering.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 64];
    lingering
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(lingering.read(&mut buf).unwrap() > 0);
    raw_set(&mc.addr(), "k2", 0, b"x");
    mc.kill();
    mc.restart();
    assert_eq!(mc.port(), port);
    assert_eq!(raw_get(&mc.addr(), "k2"), None);
    raw_set(&mc.addr(), "k3", 0, b"after");
    assert_eq!(raw_get(&mc.addr(), "k3"), Some((0, b"after".to_vec())));
}

#[test]
fn stop_makes_reads_time_out_and_cont_resumes() {
    let mc = Memcached::start();
    raw_set(&mc.addr(), "k", 0, b"v");
    mc.stop();
    assert!(mc.is_running(), "a stopped server is still alive");
    assert!(mc.is_stopped());

    // The kernel still accepts connections (listen backlog), but nothing answers.
    let err = try_raw_command(&mc.addr(), b"get k\r\n", b"END\r\n", SHORT)
        .expect_err("a SIGSTOPped server must not answer");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");

    // A connection opened while stopped gets its answer once continued.
    let mut pending = TcpStream::connect(mc.addr()).unwrap();
    pending.write_all(b"version\r\n").unwrap();

    mc.cont();
    assert!(!mc.is_stopped());
    assert_eq!(raw_get(&mc.addr(), "k"), Some((0, b"v".to_vec())));
    pending
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = pending.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"VERSION "));
}

#[test]
fn drop_leaves_no_process_behind() {
    let mc = Memcached::start();
    let pid = mc.pid();
    let addr = mc.addr();
    assert!(pid_exists(pid));
    drop(mc);
    assert!(!pid_exists(pid), "pid {pid} still exists after drop");
    assert!(TcpStream::connect(&addr).is_err());

    // Also when dropped while SIGSTOPped.
    let mc = Memcached::start();
    let pid = mc.pid();
    mc.stop();
    drop(mc);
    assert!(
        !pid_exists(pid),
        "stopped pid {pid} still exists after drop"
    );

    // And for a whole cluster with one server killed and one restarted.
    let servers = cluster(3);
    servers[0].kill();
    servers[1].restart();
    let pids: Vec<u32> = servers.iter().map(Memcached::pid).collect();
    drop(servers);
    for pid in pids {
        assert!(!pid_exists(pid), "pid {pid} still exists after drop");
    }
}

#[test]
fn fixed_port_in_use_fails_clearly() {
    let mc = Memcached::start();
    let err = Memcached::builder()
        .port(mc.port())
        .startup_timeout(Duration::from_secs(5))
        .try_start()
        .expect_err("a second server on the same port must not start");
    let msg = err.to_string();
    assert!(msg.contains("could not start memcached"), "{msg}");
    // The original server is untouched.
    assert_eq!(raw_stats(&mc.addr())["pid"], mc.pid().to_string());
}

#[test]
fn missing_binary_is_reported() {
    let err = Memcached::builder()
        .bin("/nonexistent/memcached")
        .try_start()
        .expect_err("a missing binary must fail");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(
        err.to_string().contains("apt-get install memcached"),
        "{err}"
    );
    let panic = std::panic::catch_unwind(|| {
        Memcached::builder().bin("/nonexistent/memcached").start();
    })
    .expect_err("start() must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("scripts/memcached.sh"), "{msg}");
}
