//! Every reply must be proven to belong to its request. The adversary here is a deliberately
//! hostile stand-in server on 127.0.0.1: it answers the connection probe like memcached 1.6
//! (text or meta), then answers a get with another key's value, two values, a meta reply
//! echoing another key, a value without the key echo we asked for, or bytes nobody asked for.
//! Each must be a `Protocol` error in both drivers, never a value.

use multiput::ErrorKind;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the hostile server answers to one request line (after the probe).
type Answer = fn(&str) -> Vec<u8>;

/// Start the stand-in: `meta` decides how it answers the probe. Returns its address and a
/// count of accepted connections. The thread serves until the test process ends.
fn hostile(meta: bool, answer: Answer) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                for _ in 0..1000 {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let reply = match line.trim_end() {
                        "version" => b"VERSION 1.6.18\r\n".to_vec(),
                        "mn" if meta => b"MN\r\n".to_vec(),
                        "mn" => b"ERROR\r\n".to_vec(),
                        req => answer(req),
                    };
                    if w.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn protocol(meta: bool) -> multiput::ProtocolChoice {
    if meta {
        multiput::ProtocolChoice::Meta
    } else {
        multiput::ProtocolChoice::Text
    }
}

fn blocking_get(addr: &str, meta: bool) -> Result<Option<Vec<u8>>, multiput::Error> {
    let c = multiput::blocking::Client::builder()
        .servers([addr])
        .configure(|b| b.protocol(protocol(meta)).timeout(Duration::from_secs(2)))
        .build()
        .unwrap();
    c.get("k").map(|v| v.map(|v| v.data.to_vec()))
}

fn async_get(addr: &str, meta: bool) -> Result<Option<Vec<u8>>, multiput::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = multiput::Client::builder()
        .servers([addr])
        .protocol(protocol(meta))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    rt.block_on(c.get("k")).map(|v| v.map(|v| v.data.to_vec()))
}

fn assert_protocol_error(meta: bool, answer: Answer) {
    for (driver, get) in [
        ("blocking", blocking_get as fn(&str, bool) -> _),
        ("async", async_get),
    ] {
        let (addr, _) = hostile(meta, answer);
        match get(&addr, meta) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "{driver}: {e}"),
            Ok(v) => panic!("{driver} (meta {meta}) returned {v:?} for a reply to another request"),
        }
    }
}

#[test]
fn a_text_value_for_another_key_is_an_error() {
    assert_protocol_error(false, |_| b"VALUE other 0 3\r\nabc\r\nEND\r\n".to_vec());
}

#[test]
fn two_text_values_for_one_key_are_an_error() {
    assert_protocol_error(false, |_| {
        b"VALUE k 0 3\r\nabc\r\nVALUE k 0 3\r\nxyz\r\nEND\r\n".to_vec()
    });
}

#[test]
fn a_meta_reply_echoing_another_key_is_an_error() {
    assert_protocol_error(true, |_| b"VA 3 f0 kother\r\nabc\r\n".to_vec());
}

#[test]
fn a_meta_value_without_the_key_echo_asked_for_is_an_error() {
    assert_protocol_error(true, |_| b"VA 3 f0\r\nabc\r\n".to_vec());
}

#[test]
fn a_meta_reply_with_an_opaque_token_never_sent_is_an_error() {
    assert_protocol_error(true, |_| b"VA 3 f0 kk O7\r\nabc\r\n".to_vec());
}

#[test]
fn a_reply_to_a_request_never_sent_is_an_error() {
    // An extra reply arrives with the answer: in the blocking driver the call fails; in the
    // async one the caller got its own (correct) reply first and the connection is dropped.
    // Either way the extra reply is never anyone's value.
    for meta in [false, true] {
        let (addr, accepted) = hostile(meta, |req| {
            if req.starts_with("get ") {
                b"VALUE k 0 3\r\nabc\r\nEND\r\nVALUE k 0 3\r\nxyz\r\nEND\r\n".to_vec()
            } else {
                b"VA 3 f0 kk\r\nabc\r\nVA 3 f0 kk\r\nxyz\r\n".to_vec()
            }
        });
        match blocking_get(&addr, meta) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "{e}"),
            Ok(v) => panic!("blocking (meta {meta}) returned {v:?}"),
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = multiput::Client::builder()
            .servers([addr.as_str()])
            .connections_per_server(1)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let before = accepted.load(Ordering::SeqCst);
        for _ in 0..3 {
            match rt.block_on(c.get("k")) {
                Ok(Some(v)) => assert_eq!(&v.data[..], b"abc", "async (meta {meta})"),
                Ok(None) => panic!("async (meta {meta}): a miss"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "{e}"),
            }
        }
        // The connection carrying the extra reply was not reused.
        assert!(
            accepted.load(Ordering::SeqCst) > before,
            "async (meta {meta})"
        );
    }
}
