//! Tests of the wire codec: every reply shape decoded from byte strings, every encoder's exact
//! bytes, key refusal, and property tests (chunking, arbitrary input, round trips, keys).

use super::meta::{self, MetaArithmetic, MetaDelete, MetaGet, MetaKey, MetaSet, SetMode};
use super::text::{self, Retrieval, StoreMode};
use super::*;
use crate::error::{Error, KeyProblem};
use crate::key;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Decoded = Result<Option<Reply>, DecodeError>;

/// Feed all of `input` at once.
fn feed_whole(expect: &Expect, limits: Limits, input: &[u8]) -> (Decoded, BytesMut) {
    let mut dec = Decoder::new(expect.clone(), limits);
    let mut buf = BytesMut::from(input);
    let r = dec.decode(&mut buf);
    (r, buf)
}

/// Feed `input` as a connection would: append a read of `sizes[i]` bytes (cycled; 0 is a read
/// that brought nothing), decode, repeat. Stops at the first `Ok(Some)` or `Err`; the input not
/// yet fed is then appended, so the returned buffer is what the next decoder would see.
/// After every `Ok(None)` the decoder is called once more without new bytes, which must change
/// nothing.
fn feed_chunked(
    expect: &Expect,
    limits: Limits,
    input: &[u8],
    sizes: &[usize],
) -> (Decoded, BytesMut) {
    let sizes: &[usize] = if sizes.iter().all(|&s| s == 0) {
        &[1]
    } else {
        sizes
    };
    let mut dec = Decoder::new(expect.clone(), limits);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut i = 0;
    loop {
        let end = (pos + sizes[i % sizes.len()]).min(input.len());
        i += 1;
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
        match dec.decode(&mut buf) {
            Ok(None) => {
                let before = buf.clone();
                assert_eq!(
                    dec.decode(&mut buf),
                    Ok(None),
                    "a second call without bytes"
                );
                assert_eq!(
                    buf, before,
                    "a second call without bytes consumed something"
                );
                if pos == input.len() {
                    return (Ok(None), buf);
                }
            }
            r => {
                buf.extend_from_slice(&input[pos..]);
                return (r, buf);
            }
        }
    }
}

/// Decode a complete reply: whole, byte by byte, and split at every point must all agree, and
/// consume everything.
fn check_limits(expect: Expect, limits: Limits, input: &[u8]) -> Reply {
    let (whole, rest) = feed_whole(&expect, limits, input);
    let reply = match whole {
        Ok(Some(r)) => r,
        other => panic!("expected a reply from {:?}, got {other:?}", excerpt(input)),
    };
    assert!(rest.is_empty(), "left over: {:?}", excerpt(&rest));
    let (bytewise, rest) = feed_chunked(&expect, limits, input, &[1]);
    assert_eq!(bytewise, Ok(Some(reply.clone())), "byte by byte");
    assert!(rest.is_empty());
    if input.len() <= 4096 {
        for at in 0..=input.len() {
            let (split, rest) = feed_chunked(&expect, limits, input, &[at, input.len()]);
            assert_eq!(split, Ok(Some(reply.clone())), "split at {at}");
            assert!(rest.is_empty());
        }
    }
    reply
}

fn check(expect: Expect, input: &[u8]) -> Reply {
    check_limits(expect, Limits::default(), input)
}

/// The input is not protocol: fed whole or byte by byte, it is an error (never a reply).
fn check_err_limits(expect: Expect, limits: Limits, input: &[u8]) -> DecodeError {
    let (whole, _) = feed_whole(&expect, limits, input);
    let e = match whole {
        Err(e) => e,
        other => panic!("expected an error from {:?}, got {other:?}", excerpt(input)),
    };
    let (bytewise, _) = feed_chunked(&expect, limits, input, &[1]);
    assert!(bytewise.is_err(), "byte by byte: {bytewise:?}");
    e
}

fn check_err(expect: Expect, input: &[u8]) -> DecodeError {
    check_err_limits(expect, Limits::default(), input)
}

/// The input is an incomplete reply: `Ok(None)`, whole and byte by byte.
fn check_incomplete(expect: Expect, input: &[u8]) {
    let (whole, _) = feed_whole(&expect, Limits::default(), input);
    assert_eq!(whole, Ok(None), "{:?}", excerpt(input));
    let (bytewise, _) = feed_chunked(&expect, Limits::default(), input, &[1]);
    assert_eq!(bytewise, Ok(None));
}

fn status(s: Status) -> Reply {
    Reply::Status(s)
}

fn tv(key: &str, flags: u32, cas: Option<u64>, data: &[u8]) -> TextValue {
    TextValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        flags,
        cas,
        data: Bytes::copy_from_slice(data),
    }
}

fn mr(status: MetaStatus, flags: MetaFlags, value: Option<&[u8]>) -> MetaReply {
    MetaReply {
        status,
        flags,
        value: value.map(Bytes::copy_from_slice),
    }
}

fn plain_values() -> Expect {
    Expect::TextValues { cas: false }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------------------------
// Text lines
// ---------------------------------------------------------------------------------------------

#[test]
fn text_status_lines() {
    for (line, s) in [
        (&b"STORED\r\n"[..], Status::Stored),
        (b"NOT_STORED\r\n", Status::NotStored),
        (b"EXISTS\r\n", Status::Exists),
        (b"NOT_FOUND\r\n", Status::NotFound),
        (b"DELETED\r\n", Status::Deleted),
        (b"TOUCHED\r\n", Status::Touched),
        (b"OK\r\n", Status::Ok),
    ] {
        assert_eq!(check(Expect::TextLine, line), status(s));
    }
}

#[test]
fn text_numbers() {
    assert_eq!(check(Expect::TextLine, b"0\r\n"), status(Status::Number(0)));
    assert_eq!(
        check(Expect::TextLine, b"42\r\n"),
        status(Status::Number(42))
    );
    // memcached pads an incr/decr result that shrank with trailing spaces.
    assert_eq!(
        check(Expect::TextLine, b"9   \r\n"),
        status(Status::Number(9))
    );
    assert_eq!(
        check(Expect::TextLine, b"007\r\n"),
        status(Status::Number(7))
    );
    assert_eq!(
        check(Expect::TextLine, b"18446744073709551615\r\n"),
        status(Status::Number(u64::MAX))
    );
    assert_eq!(
        check(Expect::TextLine, b"18446744073709551615 \r\n"),
        status(Status::Number(u64::MAX))
    );
}

#[test]
fn text_numbers_that_are_not() {
    for bad in [
        &b"18446744073709551616\r\n"[..], // u64::MAX + 1
        b"99999999999999999999\r\n",
        b"123456789012345678901234567890\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b" 42\r\n",
        b"4 2\r\n",
        b"42x\r\n",
        b"0x10\r\n",
        b"   \r\n",
        b"\r\n",
    ] {
        check_err(Expect::TextLine, bad);
    }
}

#[test]
fn text_version() {
    assert_eq!(
        check(Expect::TextLine, b"VERSION 1.6.21\r\n"),
        status(Status::Version("1.6.21".into()))
    );
    assert_eq!(
        check(Expect::TextLine, b"VERSION \r\n"),
        status(Status::Version(String::new()))
    );
    // Not valid UTF-8: replaced, not an error.
    assert_eq!(
        check(Expect::TextLine, b"VERSION 1.\xff\r\n"),
        status(Status::Version("1.\u{fffd}".into()))
    );
    check_err(Expect::TextLine, b"VERSION\r\n");
    check_err(Expect::TextLine, b"version 1.6\r\n");
}

#[test]
fn text_error_replies() {
    assert_eq!(
        check(Expect::TextLine, b"ERROR\r\n"),
        Reply::Error(ErrorReply::Unknown, String::new())
    );
    assert_eq!(
        check(Expect::TextLine, b"ERROR unknown command\r\n"),
        Reply::Error(ErrorReply::Unknown, "unknown command".into())
    );
    assert_eq!(
        check(Expect::TextLine, b"CLIENT_ERROR bad data chunk\r\n"),
        Reply::Error(ErrorReply::Client, "bad data chunk".into())
    );
    assert_eq!(
        check(Expect::TextLine, b"CLIENT_ERROR\r\n"),
        Reply::Error(ErrorReply::Client, String::new())
    );
    assert_eq!(
        check(
            Expect::TextLine,
            b"SERVER_ERROR out of memory storing object\r\n"
        ),
        Reply::Error(ErrorReply::Server, "out of memory storing object".into())
    );
    assert_eq!(
        check(
            Expect::TextLine,
            b"SERVER_ERROR object too large for cache\r\n"
        ),
        Reply::Error(ErrorReply::Server, "object too large for cache".into())
    );
    // "ERRORS" is not "ERROR".
    check_err(Expect::TextLine, b"ERRORS\r\n");
}

#[test]
fn text_line_garbage() {
    for bad in [
        &b"HELLO\r\n"[..],
        b"stored\r\n",
        b"STORED \r\n",
        b" STORED\r\n",
        b"STORED\n",     // bare LF
        b"\n",           // bare LF alone
        b"STO\nRED\r\n", // bare LF first
        b"STORED\r\r\n", // CR inside the line
        b"\x00\x01\x02\r\n",
        b"\xff\xfe\r\n",
    ] {
        check_err(Expect::TextLine, bad);
    }
}

#[test]
fn text_line_incomplete() {
    check_incomplete(Expect::TextLine, b"");
    check_incomplete(Expect::TextLine, b"STOR");
    check_incomplete(Expect::TextLine, b"STORED");
    check_incomplete(Expect::TextLine, b"STORED\r");
    // Nothing is consumed from an incomplete line.
    let (r, rest) = feed_whole(&Expect::TextLine, Limits::default(), b"NOT_ST");
    assert_eq!(r, Ok(None));
    assert_eq!(&rest[..], b"NOT_ST");
}

#[test]
fn text_line_leaves_the_next_reply() {
    let (r, rest) = feed_whole(
        &Expect::TextLine,
        Limits::default(),
        b"STORED\r\nDELETED\r\nVA 1",
    );
    assert_eq!(r, Ok(Some(status(Status::Stored))));
    assert_eq!(&rest[..], b"DELETED\r\nVA 1");
}

#[test]
fn over_long_lines() {
    let limits = Limits {
        max_line: 16,
        ..Limits::default()
    };
    // Exactly max_line bytes, CRLF included: fine.
    assert_eq!(
        check_limits(Expect::TextLine, limits, b"12345678901234\r\n"),
        status(Status::Number(12345678901234))
    );
    // One more: an error, as soon as max_line bytes are buffered without a line end.
    check_err_limits(Expect::TextLine, limits, b"123456789012345\r\n");
    let (r, _) = feed_whole(&Expect::TextLine, limits, &[b'1'; 16]);
    assert!(r.is_err());
    let (r, _) = feed_whole(&Expect::TextLine, limits, &[b'1'; 15]);
    assert_eq!(r, Ok(None));
    // With the default limits, an 8 KiB line without an end is refused, whatever the shape.
    let long = vec![b'A'; 8 * 1024];
    for expect in all_shapes() {
        let (r, _) = feed_whole(&expect, Limits::default(), &long);
        assert!(r.is_err(), "{expect:?}");
    }
    // A long VALUE header line too.
    let mut line = b"VALUE ".to_vec();
    line.extend(std::iter::repeat_n(b'k', 100));
    line.extend_from_slice(b" 0 1\r\nx\r\nEND\r\n");
    check_err_limits(plain_values(), limits, &line);
}

// ---------------------------------------------------------------------------------------------
// VALUE blocks
// ---------------------------------------------------------------------------------------------

#[test]
fn values_one() {
    assert_eq!(
        check(plain_values(), b"VALUE foo 5 3\r\nbar\r\nEND\r\n"),
        Reply::Values(vec![tv("foo", 5, None, b"bar")])
    );
}

#[test]
fn values_with_cas() {
    assert_eq!(
        check(
            Expect::TextValues { cas: true },
            b"VALUE foo 4294967295 3 18446744073709551615\r\nbar\r\nEND\r\n"
        ),
        Reply::Values(vec![tv("foo", u32::MAX, Some(u64::MAX), b"bar")])
    );
    // A cas expected but missing, or present but not expected.
    check_err(
        Expect::TextValues { cas: true },
        b"VALUE foo 0 3\r\nbar\r\nEND\r\n",
    );
    check_err(plain_values(), b"VALUE foo 0 3 99\r\nbar\r\nEND\r\n");
    check_err(
        Expect::TextValues { cas: true },
        b"VALUE foo 0 3 x\r\nbar\r\nEND\r\n",
    );
}

#[test]
fn values_binary_data_with_crlf_inside() {
    // The data holds what looks like the end of the reply; only the length counts.
    let data = b"a\r\nEND\r\nVALUE x 0 1\r\n\r\n";
    let input = cat(&[
        b"VALUE k 0 ",
        data.len().to_string().as_bytes(),
        b"\r\n",
        data,
        b"\r\nEND\r\n",
    ]);
    assert_eq!(
        check(plain_values(), &input),
        Reply::Values(vec![tv("k", 0, None, data)])
    );
    let all: Vec<u8> = (0..=255).collect();
    let input = cat(&[b"VALUE bin 1 256 7\r\n", &all, b"\r\nEND\r\n"]);
    assert_eq!(
        check(Expect::TextValues { cas: true }, &input),
        Reply::Values(vec![tv("bin", 1, Some(7), &all)])
    );
}

#[test]
fn values_empty_value_and_end_alone() {
    assert_eq!(
        check(plain_values(), b"VALUE k 0 0\r\n\r\nEND\r\n"),
        Reply::Values(vec![tv("k", 0, None, b"")])
    );
    assert_eq!(check(plain_values(), b"END\r\n"), Reply::Values(vec![]));
    assert_eq!(
        check(Expect::TextValues { cas: true }, b"END\r\n"),
        Reply::Values(vec![])
    );
}

#[test]
fn values_many() {
    let mut input = Vec::new();
    let mut want = Vec::new();
    for i in 0..500u32 {
        let key = format!("key:{i}");
        let data = format!("value number {i}").repeat((i % 5) as usize);
        input.extend_from_slice(
            format!("VALUE {key} {i} {} {}\r\n", data.len(), 1000 + i).as_bytes(),
        );
        input.extend_from_slice(data.as_bytes());
        input.extend_from_slice(b"\r\n");
        want.push(tv(&key, i, Some(1000 + u64::from(i)), data.as_bytes()));
    }
    input.extend_from_slice(b"END\r\n");
    assert_eq!(
        check(Expect::TextValues { cas: true }, &input),
        Reply::Values(want.clone())
    );
    // And in 1000-byte reads, with a reply after it.
    input.extend_from_slice(b"STORED\r\n");
    let (r, rest) = feed_chunked(
        &Expect::TextValues { cas: true },
        Limits::default(),
        &input,
        &[1000],
    );
    assert_eq!(r, Ok(Some(Reply::Values(want))));
    assert_eq!(&rest[..], b"STORED\r\n");
}

#[test]
fn values_consumed_as_they_come() {
    // Complete VALUE blocks leave the buffer while the reply is still incomplete.
    let mut dec = Decoder::new(plain_values(), Limits::default());
    let mut buf = BytesMut::from(&b"VALUE a 0 1\r\nx\r\nVALUE b 0 3\r\nyy"[..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"VALUE b 0 3\r\nyy");
    buf.extend_from_slice(b"y\r\nEND\r\n");
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Reply::Values(vec![
            tv("a", 0, None, b"x"),
            tv("b", 0, None, b"yyy")
        ])))
    );
    assert!(buf.is_empty());
    // The decoder is ready for the next reply of the same shape.
    buf.extend_from_slice(b"END\r\n");
    assert_eq!(dec.decode(&mut buf), Ok(Some(Reply::Values(vec![]))));
}

#[test]
fn values_error_reply() {
    assert_eq!(
        check(
            plain_values(),
            b"SERVER_ERROR out of memory writing get response\r\n"
        ),
        Reply::Error(
            ErrorReply::Server,
            "out of memory writing get response".into()
        )
    );
    assert_eq!(
        check(
            Expect::TextValues { cas: true },
            b"CLIENT_ERROR bad command line format\r\n"
        ),
        Reply::Error(ErrorReply::Client, "bad command line format".into())
    );
    assert_eq!(
        check(plain_values(), b"ERROR\r\n"),
        Reply::Error(ErrorReply::Unknown, String::new())
    );
    // After a VALUE block, an error line is not a VALUE or END: the stream is out of sync.
    check_err(
        plain_values(),
        b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n",
    );
}

#[test]
fn values_wrong_trailing_bytes() {
    for bad in [
        &b"VALUE k 0 3\r\nbarXYEND\r\n"[..],
        b"VALUE k 0 3\r\nbar\n\rEND\r\n",
        b"VALUE k 0 3\r\nbar\nEND\r\n",
        b"VALUE k 0 3\r\nbarbEND\r\n",
        b"VALUE k 0 2\r\nbar\r\nEND\r\n", // announced too short
        b"VALUE k 0 4\r\nbar\r\nEND\r\n", // announced too long
    ] {
        check_err(plain_values(), bad);
    }
}

#[test]
fn values_malformed_lines() {
    for bad in [
        &b"VALUE k 0\r\n"[..],
        b"VALUE k\r\n",
        b"VALUE\r\n",
        b"VALUE \r\n",
        b"VALUE  0 3\r\nbar\r\nEND\r\n",   // empty key
        b"VALUE k 0 3 \r\nbar\r\nEND\r\n", // trailing space
        b"VALUE k  0 3\r\nbar\r\nEND\r\n", // double space
        b"VALUE k -1 3\r\nbar\r\nEND\r\n",
        b"VALUE k 0 -3\r\nbar\r\nEND\r\n",
        b"VALUE k 0 3x\r\nbar\r\nEND\r\n",
        b"VALUEk 0 3\r\nbar\r\nEND\r\n",
        b"value k 0 3\r\nbar\r\nEND\r\n",
        b"STORED\r\n",
        b"VA 3\r\nbar\r\n",
        b"END \r\n",
        b"VALUE k 0 1\r\nx\r\nEND\n",
        b"VALUE k 0 1\nx\r\nEND\r\n",
    ] {
        check_err(plain_values(), bad);
    }
}

#[test]
fn values_numbers_that_overflow() {
    for bad in [
        &b"VALUE k 4294967296 3\r\nbar\r\nEND\r\n"[..], // flags over u32
        b"VALUE k 99999999999 3\r\nbar\r\nEND\r\n",
        b"VALUE k 0 18446744073709551616\r\n", // length over u64
        b"VALUE k 0 18446744073709551615\r\n", // length over the limit
    ] {
        check_err(plain_values(), bad);
    }
    // cas over u64
    check_err(
        Expect::TextValues { cas: true },
        b"VALUE k 0 3 18446744073709551616\r\nbar\r\nEND\r\n",
    );
}

#[test]
fn announced_size_over_the_limit_errors_before_buffering() {
    let limits = Limits::default();
    // The header alone is enough to refuse: no data needs to arrive, nothing is reserved.
    let over = format!("VALUE k 0 {}\r\n", limits.max_value_size + 1);
    let mut dec = Decoder::new(plain_values(), limits);
    let mut buf = BytesMut::from(over.as_bytes());
    assert!(dec.decode(&mut buf).is_err());
    assert!(buf.capacity() < 4096, "reserved {}", buf.capacity());
    // At the limit: waits for the data (and may reserve room for it).
    let at = format!("VALUE k 0 {}\r\n", limits.max_value_size);
    check_incomplete(plain_values(), at.as_bytes());
    // Same for meta.
    let over = format!("VA {} f0\r\n", limits.max_value_size + 1);
    let mut buf = BytesMut::from(over.as_bytes());
    assert!(Decoder::new(Expect::Meta, limits).decode(&mut buf).is_err());
    assert!(buf.capacity() < 4096);
    let mut buf = BytesMut::from(over.as_bytes());
    assert!(Decoder::new(Expect::MetaUntilNoop, limits)
        .decode(&mut buf)
        .is_err());
    check_incomplete(
        Expect::Meta,
        format!("VA {}\r\n", limits.max_value_size).as_bytes(),
    );
    // A small limit.
    let small = Limits {
        max_value_size: 3,
        ..limits
    };
    assert_eq!(
        check_limits(plain_values(), small, b"VALUE k 0 3\r\nabc\r\nEND\r\n"),
        Reply::Values(vec![tv("k", 0, None, b"abc")])
    );
    check_err_limits(plain_values(), small, b"VALUE k 0 4\r\n");
    check_err_limits(Expect::Meta, small, b"VA 4\r\n");
}

#[test]
fn huge_limits_do_not_overflow() {
    // A caller who lifts the limit entirely must still not make the decoder panic on a length
    // whose block size overflows usize.
    let limits = Limits {
        max_value_size: usize::MAX,
        ..Limits::default()
    };
    let max = u64::MAX.to_string();
    for (expect, line) in [
        (plain_values(), format!("VALUE k 0 {max}\r\n")),
        (Expect::Meta, format!("VA {max}\r\n")),
        (Expect::MetaUntilNoop, format!("VA {max} f1\r\n")),
    ] {
        let (r, _) = feed_whole(&expect, limits, line.as_bytes());
        assert!(r.is_err(), "{expect:?}: {r:?}");
    }
}

#[test]
fn too_many_values() {
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let two = b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n";
    assert!(matches!(check_limits(plain_values(), limits, two), Reply::Values(v) if v.len() == 2));
    check_err_limits(
        plain_values(),
        limits,
        b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nVALUE c 0 1\r\n3\r\nEND\r\n",
    );
}

// ---------------------------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------------------------

#[test]
fn stats() {
    let input = b"STAT pid 1234\r\nSTAT version 1.6.21\r\nSTAT libevent 2.1.12-stable\r\n\
STAT empty\r\nSTAT spaced a b  c\r\nSTAT trailing \r\nEND\r\n";
    let want = [
        ("pid", "1234"),
        ("version", "1.6.21"),
        ("libevent", "2.1.12-stable"),
        ("empty", ""),
        ("spaced", "a b  c"),
        ("trailing", ""),
    ];
    assert_eq!(
        check(Expect::TextStats, input),
        Reply::Stats(
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        )
    );
    assert_eq!(check(Expect::TextStats, b"END\r\n"), Reply::Stats(vec![]));
    assert_eq!(
        check(Expect::TextStats, b"ITEM k1 [5 b; 0 s]\r\nEND\r\n"),
        Reply::Stats(vec![("k1".into(), "[5 b; 0 s]".into())])
    );
    assert_eq!(
        check(Expect::TextStats, b"ERROR\r\n"),
        Reply::Error(ErrorReply::Unknown, String::new())
    );
    assert_eq!(
        check(Expect::TextStats, b"CLIENT_ERROR usage\r\n"),
        Reply::Error(ErrorReply::Client, "usage".into())
    );
    check_err(Expect::TextStats, b"STAT a 1\r\nFOO\r\nEND\r\n");
    check_err(Expect::TextStats, b"STAT a 1\nEND\r\n");
    check_err(Expect::TextStats, b"STATS a 1\r\nEND\r\n");
    check_incomplete(Expect::TextStats, b"STAT a 1\r\nSTAT b 2\r\nEN");
    let limits = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    check_err_limits(
        Expect::TextStats,
        limits,
        b"STAT a 1\r\nSTAT b 2\r\nEND\r\n",
    );
}

// ---------------------------------------------------------------------------------------------
// Meta replies
// ---------------------------------------------------------------------------------------------

#[test]
fn meta_statuses() {
    for (line, s) in [
        (&b"HD\r\n"[..], MetaStatus::Stored),
        (b"EN\r\n", MetaStatus::Miss),
        (b"NF\r\n", MetaStatus::NotFound),
        (b"NS\r\n", MetaStatus::NotStored),
        (b"EX\r\n", MetaStatus::Exists),
        (b"MN\r\n", MetaStatus::Noop),
        (b"HD \r\n", MetaStatus::Stored),
    ] {
        assert_eq!(
            check(Expect::Meta, line),
            Reply::Meta(mr(s, MetaFlags::default(), None))
        );
    }
}

#[test]
fn meta_all_flags() {
    let got = check(
        Expect::Meta,
        b"HD c123 f5 t-1 kfoo b O42 s10 h1 l7 W X Z\r\n",
    );
    let want = MetaFlags {
        cas: Some(123),
        client_flags: Some(5),
        ttl: Some(-1),
        key: Some(Bytes::from_static(b"foo")),
        base64: true,
        opaque: Some(42),
        size: Some(10),
        hit_before: Some(true),
        last_access: Some(7),
        win: true,
        stale: true,
        already_won: true,
    };
    assert_eq!(got, Reply::Meta(mr(MetaStatus::Stored, want, None)));
    let got = check(
        Expect::Meta,
        b"HD t3600 h0 f4294967295 c18446744073709551615 O4294967295\r\n",
    );
    let want = MetaFlags {
        ttl: Some(3600),
        hit_before: Some(false),
        client_flags: Some(u32::MAX),
        cas: Some(u64::MAX),
        opaque: Some(u32::MAX),
        ..MetaFlags::default()
    };
    assert_eq!(got, Reply::Meta(mr(MetaStatus::Stored, want, None)));
    // Unknown flags are ignored; extra spaces between flags too.
    assert_eq!(
        check(Expect::Meta, b"EN q zz  E5\r\n"),
        Reply::Meta(mr(MetaStatus::Miss, MetaFlags::default(), None))
    );
}

#[test]
fn meta_binary_key_echo() {
    let raw = [0u8, b'\r', b'\n', b' ', 0xff];
    let line = format!("HD k{} b\r\n", key::encode_binary_key(&raw));
    let Reply::Meta(m) = check(Expect::Meta, line.as_bytes()) else {
        panic!()
    };
    assert!(m.flags.base64);
    assert_eq!(m.flags.decoded_key().unwrap(), raw);
    let Reply::Meta(m) = check(Expect::Meta, b"HD kplain\r\n") else {
        panic!()
    };
    assert_eq!(m.flags.decoded_key().unwrap(), b"plain");
    let Reply::Meta(m) = check(Expect::Meta, b"HD k!!! b\r\n") else {
        panic!()
    };
    assert_eq!(m.flags.decoded_key(), None);
}

#[test]
fn meta_value_replies() {
    assert_eq!(
        check(Expect::Meta, b"VA 3 f1 c2 s3\r\nbar\r\n"),
        Reply::Meta(mr(
            MetaStatus::Value,
            MetaFlags {
                client_flags: Some(1),
                cas: Some(2),
                size: Some(3),
                ..Default::default()
            },
            Some(b"bar")
        ))
    );
    assert_eq!(
        check(Expect::Meta, b"VA 0\r\n\r\n"),
        Reply::Meta(mr(MetaStatus::Value, MetaFlags::default(), Some(b"")))
    );
    assert_eq!(
        check(Expect::Meta, b"VA 9 t-1\r\nMN\r\nEN\r\n\r\r\n"),
        Reply::Meta(mr(
            MetaStatus::Value,
            MetaFlags {
                ttl: Some(-1),
                ..Default::default()
            },
            Some(b"MN\r\nEN\r\n\r")
        ))
    );
}

#[test]
fn meta_error_lines() {
    assert_eq!(
        check(Expect::Meta, b"CLIENT_ERROR bad data chunk\r\n"),
        Reply::Error(ErrorReply::Client, "bad data chunk".into())
    );
    assert_eq!(
        check(Expect::Meta, b"SERVER_ERROR out of memory\r\n"),
        Reply::Error(ErrorReply::Server, "out of memory".into())
    );
    assert_eq!(
        check(Expect::Meta, b"ERROR\r\n"),
        Reply::Error(ErrorReply::Unknown, String::new())
    );
}

#[test]
fn meta_garbage() {
    for bad in [
        &b"HDX\r\n"[..],
        b"H\r\n",
        b"\r\n",
        b"ZZ\r\n",
        b"hd\r\n",
        b"ME k\r\n",
        b"VA\r\n",
        b"VA \r\n",
        b"VA x\r\n",
        b"VA -1\r\n",
        b"VA  3\r\nbar\r\n",
        b"VA 3\r\nbarXX",
        b"VA 3\r\nbar\nHD\r\n",
        b"VA 3 cX\r\nbar\r\n",
        b"HD\n",
        b"STORED\r\n",
        b"VALUE k 0 1\r\nx\r\nEND\r\n",
        b"HD cX\r\n",
        b"HD c\r\n",
        b"HD f-1\r\n",
        b"HD f4294967296\r\n",
        b"HD c18446744073709551616\r\n",
        b"HD O4294967296\r\n",
        b"HD Ox\r\n",
        b"HD s-1\r\n",
        b"HD l1.5\r\n",
        b"HD t-2\r\n",
        b"HD t\r\n",
        b"HD t1x\r\n",
        b"VA 18446744073709551616\r\n",
    ] {
        check_err(Expect::Meta, bad);
    }
}

#[test]
fn meta_ttl_that_overflows_i64_is_refused() {
    // t is an i64 (-1 = no expiry); a value past i64::MAX must not wrap into a negative TTL.
    check_err(Expect::Meta, b"HD t9223372036854775808\r\n");
    check_err(Expect::Meta, b"HD t18446744073709551615\r\n");
    assert_eq!(
        check(Expect::Meta, b"HD t9223372036854775807\r\n"),
        Reply::Meta(mr(
            MetaStatus::Stored,
            MetaFlags {
                ttl: Some(i64::MAX),
                ..Default::default()
            },
            None
        ))
    );
}

#[test]
fn meta_quiet_batch() {
    let input = b"VA 1 kfoo\r\na\r\nHD O3\r\nVA 2 f9 c8\r\nbc\r\nMN\r\nSTORED\r\n";
    let (r, rest) = feed_whole(&Expect::MetaUntilNoop, Limits::default(), input);
    let want = Reply::MetaBatch(vec![
        mr(
            MetaStatus::Value,
            MetaFlags {
                key: Some(Bytes::from_static(b"foo")),
                ..Default::default()
            },
            Some(b"a"),
        ),
        mr(
            MetaStatus::Stored,
            MetaFlags {
                opaque: Some(3),
                ..Default::default()
            },
            None,
        ),
        mr(
            MetaStatus::Value,
            MetaFlags {
                client_flags: Some(9),
                cas: Some(8),
                ..Default::default()
            },
            Some(b"bc"),
        ),
    ]);
    assert_eq!(r, Ok(Some(want.clone())));
    assert_eq!(&rest[..], b"STORED\r\n");
    assert_eq!(
        check(Expect::MetaUntilNoop, &input[..input.len() - 8]),
        want
    );
    assert_eq!(
        check(Expect::MetaUntilNoop, b"MN\r\n"),
        Reply::MetaBatch(vec![])
    );
    check_incomplete(Expect::MetaUntilNoop, b"HD\r\nEN\r\nM");
    check_err(Expect::MetaUntilNoop, b"HD\r\nBOGUS\r\nMN\r\n");
}

#[test]
fn meta_quiet_batch_with_an_error_inside() {
    let input = b"VA 1\r\na\r\nSERVER_ERROR out of memory\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nNS\r\nMN\r\n";
    assert_eq!(
        check(Expect::MetaUntilNoop, input),
        Reply::MetaBatch(vec![
            mr(MetaStatus::Value, MetaFlags::default(), Some(b"a")),
            MetaReply::error(ErrorReply::Server, "out of memory".into()),
            MetaReply::error(ErrorReply::Client, "bad data chunk".into()),
            MetaReply::error(ErrorReply::Unknown, String::new()),
            mr(MetaStatus::NotStored, MetaFlags::default(), None),
        ])
    );
}

#[test]
fn meta_quiet_batch_entry_limit() {
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    assert!(matches!(
        check_limits(Expect::MetaUntilNoop, limits, b"HD\r\nHD\r\nMN\r\n"),
        Reply::MetaBatch(v) if v.len() == 2
    ));
    check_err_limits(Expect::MetaUntilNoop, limits, b"HD\r\nHD\r\nHD\r\nMN\r\n");
    // Error lines are entries too: a server repeating `ERROR` must not grow the batch unbounded.
    check_err_limits(
        Expect::MetaUntilNoop,
        limits,
        b"ERROR\r\nERROR\r\nERROR\r\nMN\r\n",
    );
    check_err_limits(
        Expect::MetaUntilNoop,
        limits,
        b"HD\r\nHD\r\nSERVER_ERROR x\r\nMN\r\n",
    );
}

// ---------------------------------------------------------------------------------------------
// Expect::Repeat
// ---------------------------------------------------------------------------------------------

#[test]
fn repeat() {
    let e = Expect::Repeat(4, Box::new(Expect::TextLine));
    assert_eq!(
        check(e, b"STORED\r\nNOT_STORED\r\nERROR\r\n17 \r\n"),
        Reply::Many(vec![
            status(Status::Stored),
            status(Status::NotStored),
            Reply::Error(ErrorReply::Unknown, String::new()),
            status(Status::Number(17)),
        ])
    );
    let e = Expect::Repeat(2, Box::new(plain_values()));
    assert_eq!(
        check(e, b"VALUE a 1 1\r\nx\r\nEND\r\nEND\r\n"),
        Reply::Many(vec![
            Reply::Values(vec![tv("a", 1, None, b"x")]),
            Reply::Values(vec![])
        ])
    );
    let e = Expect::Repeat(3, Box::new(Expect::Meta));
    assert_eq!(
        check(e, b"HD\r\nVA 1\r\nx\r\nCLIENT_ERROR bad\r\n"),
        Reply::Many(vec![
            Reply::Meta(mr(MetaStatus::Stored, MetaFlags::default(), None)),
            Reply::Meta(mr(MetaStatus::Value, MetaFlags::default(), Some(b"x"))),
            Reply::Error(ErrorReply::Client, "bad".into()),
        ])
    );
    let e = Expect::Repeat(2, Box::new(Expect::MetaUntilNoop));
    assert_eq!(
        check(e, b"HD\r\nMN\r\nMN\r\n"),
        Reply::Many(vec![
            Reply::MetaBatch(vec![mr(MetaStatus::Stored, MetaFlags::default(), None)]),
            Reply::MetaBatch(vec![]),
        ])
    );
    let e = Expect::Repeat(2, Box::new(Expect::Repeat(2, Box::new(Expect::TextLine))));
    assert_eq!(
        check(e, b"OK\r\nOK\r\nDELETED\r\nTOUCHED\r\n"),
        Reply::Many(vec![
            Reply::Many(vec![status(Status::Ok), status(Status::Ok)]),
            Reply::Many(vec![status(Status::Deleted), status(Status::Touched)]),
        ])
    );
    let e = Expect::Repeat(2, Box::new(Expect::TextStats));
    assert_eq!(
        check(e, b"STAT a b\r\nEND\r\nEND\r\n"),
        Reply::Many(vec![
            Reply::Stats(vec![("a".into(), "b".into())]),
            Reply::Stats(vec![])
        ])
    );
    // Zero replies: done at once, nothing consumed.
    let (r, rest) = feed_whole(
        &Expect::Repeat(0, Box::new(Expect::TextLine)),
        Limits::default(),
        b"OK\r\n",
    );
    assert_eq!(r, Ok(Some(Reply::Many(vec![]))));
    assert_eq!(&rest[..], b"OK\r\n");
    // Too few, and garbage in the middle.
    check_incomplete(
        Expect::Repeat(3, Box::new(Expect::TextLine)),
        b"OK\r\nOK\r\n",
    );
    check_err(
        Expect::Repeat(3, Box::new(Expect::TextLine)),
        b"OK\r\nBAD\r\nOK\r\n",
    );
    // Leaves the following reply.
    let (r, rest) = feed_whole(
        &Expect::Repeat(2, Box::new(Expect::TextLine)),
        Limits::default(),
        b"OK\r\nOK\r\nOK\r\n",
    );
    assert_eq!(
        r,
        Ok(Some(Reply::Many(vec![
            status(Status::Ok),
            status(Status::Ok)
        ])))
    );
    assert_eq!(&rest[..], b"OK\r\n");
}

#[test]
fn decoder_is_reusable_after_a_reply() {
    for (expect, one) in [
        (Expect::TextLine, &b"STORED\r\n"[..]),
        (plain_values(), b"VALUE a 0 1\r\nx\r\nEND\r\n"),
        (Expect::TextStats, b"STAT a 1\r\nEND\r\n"),
        (Expect::Meta, b"VA 1\r\nx\r\n"),
        (Expect::MetaUntilNoop, b"HD\r\nMN\r\n"),
        (Expect::Repeat(2, Box::new(Expect::Meta)), b"HD\r\nEN\r\n"),
    ] {
        let mut dec = Decoder::new(expect.clone(), Limits::default());
        assert_eq!(dec.expect(), &expect);
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            buf.extend_from_slice(one);
        }
        let first = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), first);
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), first);
        assert!(buf.is_empty());
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
}

#[test]
fn decode_error_converts_to_protocol_error() {
    let e: crate::Error = DecodeError("boom".into()).into();
    assert!(matches!(&e, crate::Error::Protocol { detail, .. } if detail == "boom"));
    assert_eq!(DecodeError("x".into()).to_string(), "x");
}

#[test]
fn line_helpers() {
    assert_eq!(find_line(b"ab\r\ncd", 100), Ok(Some(2)));
    assert_eq!(find_line(b"ab\r", 100), Ok(None));
    assert!(find_line(b"ab\ncd", 100).is_err());
    assert!(find_line(b"abcd", 4).is_err());
    assert_eq!(find_line(b"ab\r\n", 4), Ok(Some(2)));
    assert!(find_line(b"x", 0).is_err());
    assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_u64(b"18446744073709551616"), None);
    assert_eq!(parse_u64(b""), None);
    assert_eq!(parse_u32(b"4294967296"), None);
    assert_eq!(excerpt(b"a\r\n"), "a\\x0d\\x0a");
    assert!(excerpt(&[b'x'; 100]).ends_with('…'));
}

// ---------------------------------------------------------------------------------------------
// Text encoders
// ---------------------------------------------------------------------------------------------

fn encoded<T>(f: impl FnOnce(&mut BytesMut) -> T) -> (T, Vec<u8>) {
    let mut buf = BytesMut::new();
    let t = f(&mut buf);
    (t, buf.to_vec())
}

#[test]
fn encode_retrievals() {
    let (e, b) = encoded(|b| text::retrieval(b, Retrieval::Get, &["a", "b:1", "c"]).unwrap());
    assert_eq!(
        (e, &b[..]),
        (Expect::TextValues { cas: false }, &b"get a b:1 c\r\n"[..])
    );
    let (e, b) =
        encoded(|b| text::retrieval(b, Retrieval::Gets, &[b"k1".as_slice(), b"k2"]).unwrap());
    assert_eq!(
        (e, &b[..]),
        (Expect::TextValues { cas: true }, &b"gets k1 k2\r\n"[..])
    );
    let (e, b) = encoded(|b| text::retrieval(b, Retrieval::Gat(300), &["a", "b"]).unwrap());
    assert_eq!(
        (e, &b[..]),
        (Expect::TextValues { cas: false }, &b"gat 300 a b\r\n"[..])
    );
    let (e, b) = encoded(|b| text::retrieval(b, Retrieval::Gats(0), &["x"]).unwrap());
    assert_eq!(
        (e, &b[..]),
        (Expect::TextValues { cas: true }, &b"gats 0 x\r\n"[..])
    );
    let (_, b) = encoded(|b| text::retrieval(b, Retrieval::Gat(u32::MAX), &["x"]).unwrap());
    assert_eq!(b, b"gat 4294967295 x\r\n");
    let utf8 = "clé:日本";
    let (_, b) = encoded(|b| text::retrieval(b, Retrieval::Get, &[utf8]).unwrap());
    assert_eq!(b, format!("get {utf8}\r\n").as_bytes());
    // No key at all: a configuration error, nothing written.
    let mut buf = BytesMut::from(&b"prev"[..]);
    assert!(matches!(
        text::retrieval::<&str>(&mut buf, Retrieval::Get, &[]),
        Err(Error::Config(_))
    ));
    assert_eq!(&buf[..], b"prev");
    assert!(Retrieval::Gets.returns_cas() && Retrieval::Gats(1).returns_cas());
    assert!(!Retrieval::Get.returns_cas() && !Retrieval::Gat(1).returns_cas());
}

#[test]
fn encode_stores() {
    let cases: [(StoreMode, &[u8], &[u8]); 6] = [
        (
            StoreMode::Set,
            b"set k 5 60 3\r\nbar\r\n",
            b"set k 5 60 3 noreply\r\nbar\r\n",
        ),
        (
            StoreMode::Add,
            b"add k 5 60 3\r\nbar\r\n",
            b"add k 5 60 3 noreply\r\nbar\r\n",
        ),
        (
            StoreMode::Replace,
            b"replace k 5 60 3\r\nbar\r\n",
            b"replace k 5 60 3 noreply\r\nbar\r\n",
        ),
        (
            StoreMode::Append,
            b"append k 5 60 3\r\nbar\r\n",
            b"append k 5 60 3 noreply\r\nbar\r\n",
        ),
        (
            StoreMode::Prepend,
            b"prepend k 5 60 3\r\nbar\r\n",
            b"prepend k 5 60 3 noreply\r\nbar\r\n",
        ),
        (
            StoreMode::Cas(12345),
            b"cas k 5 60 3 12345\r\nbar\r\n",
            b"cas k 5 60 3 12345 noreply\r\nbar\r\n",
        ),
    ];
    for (mode, plain, quiet) in cases {
        let (e, b) = encoded(|b| text::store(b, mode, b"k", 5, 60, b"bar", false).unwrap());
        assert_eq!((e, &b[..]), (Some(Expect::TextLine), plain), "{mode:?}");
        let (e, b) = encoded(|b| text::store(b, mode, b"k", 5, 60, b"bar", true).unwrap());
        assert_eq!((e, &b[..]), (None, quiet), "{mode:?} noreply");
    }
    // Binary data, an empty value, extreme numbers.
    let (_, b) =
        encoded(|b| text::store(b, StoreMode::Set, b"k", 0, 0, b"\r\n\0\r\n", false).unwrap());
    assert_eq!(b, b"set k 0 0 5\r\n\r\n\0\r\n\r\n");
    let (_, b) = encoded(|b| text::store(b, StoreMode::Set, b"k", 0, 0, b"", false).unwrap());
    assert_eq!(b, b"set k 0 0 0\r\n\r\n");
    let (_, b) = encoded(|b| {
        text::store(
            b,
            StoreMode::Cas(u64::MAX),
            b"k",
            u32::MAX,
            u32::MAX,
            b"x",
            false,
        )
        .unwrap()
    });
    assert_eq!(
        b,
        b"cas k 4294967295 4294967295 1 18446744073709551615\r\nx\r\n"
    );
    // Appends to what is in the buffer already.
    let mut buf = BytesMut::from(&b"get a\r\n"[..]);
    text::store(&mut buf, StoreMode::Set, b"k", 0, 0, b"v", false).unwrap();
    assert_eq!(&buf[..], b"get a\r\nset k 0 0 1\r\nv\r\n");
}

#[test]
fn encode_other_text_commands() {
    let (e, b) = encoded(|b| text::delete(b, b"k", false).unwrap());
    assert_eq!((e, &b[..]), (Some(Expect::TextLine), &b"delete k\r\n"[..]));
    let (e, b) = encoded(|b| text::delete(b, b"k", true).unwrap());
    assert_eq!((e, &b[..]), (None, &b"delete k noreply\r\n"[..]));
    let (e, b) = encoded(|b| text::incr_decr(b, true, b"n", 5, false).unwrap());
    assert_eq!((e, &b[..]), (Some(Expect::TextLine), &b"incr n 5\r\n"[..]));
    let (e, b) = encoded(|b| text::incr_decr(b, false, b"n", u64::MAX, true).unwrap());
    assert_eq!(
        (e, &b[..]),
        (None, &b"decr n 18446744073709551615 noreply\r\n"[..])
    );
    let (_, b) = encoded(|b| text::incr_decr(b, false, b"n", 0, false).unwrap());
    assert_eq!(b, b"decr n 0\r\n");
    let (e, b) = encoded(|b| text::touch(b, b"k", 10, false).unwrap());
    assert_eq!(
        (e, &b[..]),
        (Some(Expect::TextLine), &b"touch k 10\r\n"[..])
    );
    let (e, b) = encoded(|b| text::touch(b, b"k", 0, true).unwrap());
    assert_eq!((e, &b[..]), (None, &b"touch k 0 noreply\r\n"[..]));
    let (e, b) = encoded(|b| text::flush_all(b, None, false));
    assert_eq!((e, &b[..]), (Some(Expect::TextLine), &b"flush_all\r\n"[..]));
    let (e, b) = encoded(|b| text::flush_all(b, Some(10), false));
    assert_eq!(
        (e, &b[..]),
        (Some(Expect::TextLine), &b"flush_all 10\r\n"[..])
    );
    let (e, b) = encoded(|b| text::flush_all(b, None, true));
    assert_eq!((e, &b[..]), (None, &b"flush_all noreply\r\n"[..]));
    let (e, b) = encoded(|b| text::flush_all(b, Some(0), true));
    assert_eq!((e, &b[..]), (None, &b"flush_all 0 noreply\r\n"[..]));
    let (e, b) = encoded(text::version);
    assert_eq!((e, &b[..]), (Expect::TextLine, &b"version\r\n"[..]));
    let (e, b) = encoded(|b| text::stats(b, None).unwrap());
    assert_eq!((e, &b[..]), (Expect::TextStats, &b"stats\r\n"[..]));
    let (e, b) = encoded(|b| text::stats(b, Some("settings")).unwrap());
    assert_eq!((e, &b[..]), (Expect::TextStats, &b"stats settings\r\n"[..]));
    let (_, b) = encoded(|b| text::stats(b, Some("slabs")).unwrap());
    assert_eq!(b, b"stats slabs\r\n");
    let (_, b) = encoded(|b| text::stats(b, Some("cachedump 1 10")).unwrap());
    assert_eq!(b, b"stats cachedump 1 10\r\n");
    for bad in [
        "",
        "a  b",
        " a",
        "a ",
        "items\r\nflush_all",
        "x\n",
        "\t",
        "del\x7f",
    ] {
        let mut buf = BytesMut::from(&b"prev"[..]);
        assert!(
            matches!(text::stats(&mut buf, Some(bad)), Err(Error::Config(_))),
            "{bad:?}"
        );
        assert_eq!(&buf[..], b"prev");
    }
}

// ---------------------------------------------------------------------------------------------
// Meta encoders
// ---------------------------------------------------------------------------------------------

const T: MetaKey<'static> = MetaKey::Text(b"foo");

#[test]
fn encode_meta_get() {
    let (e, b) = encoded(|b| meta::get(b, T, &MetaGet::default()).unwrap());
    assert_eq!((e, &b[..]), (Expect::Meta, &b"mg foo\r\n"[..]));
    let o = MetaGet {
        value: true,
        client_flags: true,
        cas: true,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::get(b, T, &o).unwrap()).1,
        b"mg foo v f c\r\n"
    );
    let all = MetaGet {
        value: true,
        client_flags: true,
        cas: true,
        ttl: true,
        key: true,
        size: true,
        hit_before: true,
        last_access: true,
        no_bump: true,
        quiet: true,
        opaque: Some(1),
        touch: Some(2),
        vivify: Some(3),
        recache: Some(4),
    };
    assert_eq!(
        encoded(|b| meta::get(b, T, &all).unwrap()).1,
        b"mg foo v f c t k s h l u q O1 T2 N3 R4\r\n"
    );
    let o = MetaGet {
        value: true,
        quiet: true,
        opaque: Some(u32::MAX),
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::get(b, T, &o).unwrap()).1,
        b"mg foo v q O4294967295\r\n"
    );
    // Binary keys: base64 and the `b` flag.
    let o = MetaGet {
        value: true,
        key: true,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::get(b, MetaKey::Binary(&[0, 1, 2]), &o).unwrap()).1,
        b"mg AAEC b v k\r\n"
    );
    let raw = [0x0du8, 0x0a, 0x20, 0x00, 0xff];
    assert_eq!(
        encoded(|b| meta::get(b, MetaKey::Binary(&raw), &MetaGet::default()).unwrap()).1,
        b"mg DQogAP8= b\r\n"
    );
}

#[test]
fn encode_meta_set() {
    let (e, b) = encoded(|b| meta::set(b, T, b"bar", &MetaSet::default()).unwrap());
    assert_eq!((e, &b[..]), (Expect::Meta, &b"ms foo 3\r\nbar\r\n"[..]));
    let o = MetaSet {
        mode: SetMode::Add,
        client_flags: 5,
        ttl: 60,
        compare_cas: Some(9),
        invalidate: true,
        return_cas: true,
        key: true,
        quiet: true,
        opaque: Some(7),
        vivify: Some(30),
    };
    assert_eq!(
        encoded(|b| meta::set(b, T, b"bar", &o).unwrap()).1,
        b"ms foo 3 F5 T60 C9 ME I c k q O7 N30\r\nbar\r\n"
    );
    for (mode, m) in [
        (SetMode::Set, &b""[..]),
        (SetMode::Add, b" ME"),
        (SetMode::Replace, b" MR"),
        (SetMode::Append, b" MA"),
        (SetMode::Prepend, b" MP"),
    ] {
        let o = MetaSet {
            mode,
            ..Default::default()
        };
        assert_eq!(
            encoded(|b| meta::set(b, T, b"v", &o).unwrap()).1,
            cat(&[b"ms foo 1", m, b"\r\nv\r\n"])
        );
    }
    let o = MetaSet {
        client_flags: u32::MAX,
        compare_cas: Some(u64::MAX),
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::set(b, T, b"", &o).unwrap()).1,
        b"ms foo 0 F4294967295 C18446744073709551615\r\n\r\n"
    );
    // Binary data and a binary key.
    let o = MetaSet {
        client_flags: 1,
        quiet: true,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::set(b, MetaKey::Binary(&[0, 1, 2]), b"a\r\nb", &o).unwrap()).1,
        b"ms AAEC 4 b F1 q\r\na\r\nb\r\n"
    );
}

#[test]
fn encode_meta_delete_arithmetic_noop() {
    let (e, b) = encoded(|b| meta::delete(b, T, &MetaDelete::default()).unwrap());
    assert_eq!((e, &b[..]), (Expect::Meta, &b"md foo\r\n"[..]));
    let o = MetaDelete {
        compare_cas: Some(5),
        invalidate: true,
        ttl: Some(30),
        key: true,
        quiet: true,
        opaque: Some(2),
    };
    assert_eq!(
        encoded(|b| meta::delete(b, T, &o).unwrap()).1,
        b"md foo C5 I k q T30 O2\r\n"
    );
    let o = MetaDelete {
        quiet: true,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::delete(b, MetaKey::Binary(b"\xff"), &o).unwrap()).1,
        b"md /w== b q\r\n"
    );

    let (e, b) = encoded(|b| meta::arithmetic(b, T, &MetaArithmetic::default()).unwrap());
    assert_eq!((e, &b[..]), (Expect::Meta, &b"ma foo v\r\n"[..]));
    let o = MetaArithmetic {
        value: false,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::arithmetic(b, T, &o).unwrap()).1,
        b"ma foo\r\n"
    );
    let o = MetaArithmetic {
        incr: false,
        delta: 5,
        vivify: Some(60),
        initial: Some(10),
        ttl: Some(30),
        compare_cas: Some(3),
        value: true,
        return_cas: true,
        quiet: true,
        opaque: Some(1),
    };
    assert_eq!(
        encoded(|b| meta::arithmetic(b, T, &o).unwrap()).1,
        b"ma foo MD D5 J10 C3 N60 T30 O1 v c q\r\n"
    );
    let o = MetaArithmetic {
        delta: 0,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::arithmetic(b, T, &o).unwrap()).1,
        b"ma foo D0 v\r\n"
    );
    let o = MetaArithmetic {
        delta: u64::MAX,
        value: false,
        ..Default::default()
    };
    assert_eq!(
        encoded(|b| meta::arithmetic(b, MetaKey::Binary(b"n"), &o).unwrap()).1,
        b"ma bg== b D18446744073709551615\r\n"
    );

    let (e, b) = encoded(meta::noop);
    assert_eq!((e, &b[..]), (Expect::Meta, &b"mn\r\n"[..]));
}

// ---------------------------------------------------------------------------------------------
// Invalid keys
// ---------------------------------------------------------------------------------------------

/// Every key-taking encoder, by name, with a text key. Returns Ok(()) or the error.
fn encode_with_key(which: usize, buf: &mut BytesMut, k: &[u8]) -> Result<(), Error> {
    let mk = MetaKey::Text(k);
    match which {
        0 => text::retrieval(buf, Retrieval::Get, &[k]).map(drop),
        1 => text::retrieval(buf, Retrieval::Gats(5), &[&b"good"[..], k]).map(drop),
        2 => text::store(buf, StoreMode::Set, k, 0, 0, b"v", false).map(drop),
        3 => text::store(buf, StoreMode::Cas(1), k, 0, 0, b"v", true).map(drop),
        4 => text::delete(buf, k, false).map(drop),
        5 => text::incr_decr(buf, true, k, 1, false).map(drop),
        6 => text::touch(buf, k, 1, true).map(drop),
        7 => meta::get(
            buf,
            mk,
            &MetaGet {
                value: true,
                ..Default::default()
            },
        )
        .map(drop),
        8 => meta::set(buf, mk, b"v", &MetaSet::default()).map(drop),
        9 => meta::delete(buf, mk, &MetaDelete::default()).map(drop),
        10 => meta::arithmetic(buf, mk, &MetaArithmetic::default()).map(drop),
        _ => unreachable!(),
    }
}
const KEYED_ENCODERS: usize = 11;

#[test]
fn invalid_keys_are_refused_and_nothing_is_written() {
    let long = vec![b'x'; 251];
    let bad: Vec<(&[u8], KeyProblem)> = vec![
        (&b""[..], KeyProblem::Empty),
        (&b"a b"[..], KeyProblem::ForbiddenByte(1)),
        (&b" "[..], KeyProblem::ForbiddenByte(0)),
        (&b"a\r\nset x 0 0 1"[..], KeyProblem::ForbiddenByte(1)),
        (&b"a\rb"[..], KeyProblem::ForbiddenByte(1)),
        (&b"a\nb"[..], KeyProblem::ForbiddenByte(1)),
        (&b"a\tb"[..], KeyProblem::ForbiddenByte(1)),
        (&b"\0"[..], KeyProblem::ForbiddenByte(0)),
        (&b"ab\x01"[..], KeyProblem::ForbiddenByte(2)),
        (&b"\x1f"[..], KeyProblem::ForbiddenByte(0)),
        (&b"del\x7f"[..], KeyProblem::ForbiddenByte(3)),
        (&long, KeyProblem::TooLong(251)),
    ];
    for which in 0..KEYED_ENCODERS {
        for (k, problem) in &bad {
            let mut buf = BytesMut::from(&b"get before\r\n"[..]);
            match encode_with_key(which, &mut buf, k) {
                Err(Error::InvalidKey { reason }) => {
                    assert_eq!(reason, *problem, "encoder {which} {k:?}")
                }
                other => panic!("encoder {which} accepted {k:?}: {other:?}"),
            }
            assert_eq!(
                &buf[..],
                b"get before\r\n",
                "encoder {which} wrote for {k:?}"
            );
        }
        // The longest key, and UTF-8, are fine.
        let mut buf = BytesMut::new();
        encode_with_key(which, &mut buf, &[b'k'; 250]).unwrap();
        encode_with_key(which, &mut buf, "ключ".as_bytes()).unwrap();
    }
    // Binary keys: any bytes, 1 to 186 of them (248 base64 characters).
    for (k, problem) in [
        (vec![], KeyProblem::Empty),
        (vec![0u8; 187], KeyProblem::BinaryTooLong(187)),
    ] {
        let mut buf = BytesMut::from(&b"mn\r\n"[..]);
        let r = meta::get(&mut buf, MetaKey::Binary(&k), &MetaGet::default());
        assert!(matches!(r, Err(Error::InvalidKey { reason }) if reason == problem));
        let r = meta::set(&mut buf, MetaKey::Binary(&k), b"x", &MetaSet::default());
        assert!(matches!(r, Err(Error::InvalidKey { .. })));
        let r = meta::delete(&mut buf, MetaKey::Binary(&k), &MetaDelete::default());
        assert!(matches!(r, Err(Error::InvalidKey { .. })));
        let r = meta::arithmetic(&mut buf, MetaKey::Binary(&k), &MetaArithmetic::default());
        assert!(matches!(r, Err(Error::InvalidKey { .. })));
        assert_eq!(&buf[..], b"mn\r\n");
    }
    let mut buf = BytesMut::new();
    meta::get(&mut buf, MetaKey::Binary(&[b' '; 186]), &MetaGet::default()).unwrap();
    assert_eq!(buf.len(), "mg ".len() + 248 + " b\r\n".len());
}

// ---------------------------------------------------------------------------------------------
// Property tests: strategies
// ---------------------------------------------------------------------------------------------

/// Every non-repeating reply shape, and a few repeating ones.
fn all_shapes() -> Vec<Expect> {
    let base = vec![
        Expect::TextLine,
        Expect::TextValues { cas: false },
        Expect::TextValues { cas: true },
        Expect::TextStats,
        Expect::Meta,
        Expect::MetaUntilNoop,
    ];
    let mut all = base.clone();
    for e in &base {
        all.push(Expect::Repeat(3, Box::new(e.clone())));
    }
    all.push(Expect::Repeat(
        2,
        Box::new(Expect::Repeat(2, Box::new(Expect::MetaUntilNoop))),
    ));
    all
}

/// A key as a server echoes it: no space, CR, LF or control byte.
fn server_key() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![8 => 0x21u8..=0x7e, 1 => 0x80u8..=0xff], 1..40)
}

/// A value: arbitrary bytes, often with things that look like protocol inside.
fn data(max_parts: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            4 => vec(any::<u8>(), 0..16),
            1 => Just(b"\r\nEND\r\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => Just(b"\r\nMN\r\n".to_vec()),
            1 => Just(b"\n".to_vec()),
        ],
        0..max_parts,
    )
    .prop_map(|p| p.concat())
}

/// A printable message (may be empty, may start with spaces).
fn message() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

/// An error line (without CRLF) and what it decodes to.
fn error_line_strategy() -> impl Strategy<Value = (Vec<u8>, ErrorReply, String)> {
    (0..3u8, message()).prop_map(|(k, msg)| {
        let (name, kind) = match k {
            0 => ("ERROR", ErrorReply::Unknown),
            1 => ("CLIENT_ERROR", ErrorReply::Client),
            _ => ("SERVER_ERROR", ErrorReply::Server),
        };
        let line = if msg.is_empty() {
            name.to_string()
        } else {
            format!("{name} {msg}")
        };
        (line.into_bytes(), kind, msg)
    })
}

type Case = (Expect, Vec<u8>, Reply);

fn crlf(mut b: Vec<u8>) -> Vec<u8> {
    b.extend_from_slice(b"\r\n");
    b
}

fn text_line_case() -> BoxedStrategy<Case> {
    let fixed = [
        ("STORED", Status::Stored),
        ("NOT_STORED", Status::NotStored),
        ("EXISTS", Status::Exists),
        ("NOT_FOUND", Status::NotFound),
        ("DELETED", Status::Deleted),
        ("TOUCHED", Status::Touched),
        ("OK", Status::Ok),
    ];
    prop_oneof![
        proptest::sample::select(fixed.to_vec())
            .prop_map(|(l, s)| (l.as_bytes().to_vec(), Reply::Status(s))),
        (any::<u64>(), 0usize..4).prop_map(|(n, sp)| (
            format!("{n}{}", " ".repeat(sp)).into_bytes(),
            Reply::Status(Status::Number(n))
        )),
        message().prop_map(|v| (
            format!("VERSION {v}").into_bytes(),
            Reply::Status(Status::Version(v))
        )),
        error_line_strategy().prop_map(|(b, k, m)| (b, Reply::Error(k, m))),
    ]
    .prop_map(|(b, r)| (Expect::TextLine, crlf(b), r))
    .boxed()
}

fn text_values_case(cas: bool) -> BoxedStrategy<Case> {
    let item = (server_key(), any::<u32>(), any::<u64>(), data(12));
    prop_oneof![
        9 => vec(item, 0..6).prop_map(move |items| {
            let mut b = Vec::new();
            let mut v = Vec::new();
            for (key, flags, c, data) in items {
                b.extend_from_slice(b"VALUE ");
                b.extend_from_slice(&key);
                b.extend_from_slice(format!(" {flags} {}", data.len()).as_bytes());
                if cas {
                    b.extend_from_slice(format!(" {c}").as_bytes());
                }
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(&data);
                b.extend_from_slice(b"\r\n");
                v.push(TextValue {
                    key: key.into(),
                    flags,
                    cas: cas.then_some(c),
                    data: data.into(),
                });
            }
            b.extend_from_slice(b"END\r\n");
            (Expect::TextValues { cas }, b, Reply::Values(v))
        }),
        1 => error_line_strategy()
            .prop_map(move |(b, k, m)| (Expect::TextValues { cas }, crlf(b), Reply::Error(k, m))),
    ]
    .boxed()
}

fn text_stats_case() -> BoxedStrategy<Case> {
    prop_oneof![
        9 => vec(("[!-~]{1,16}", "[ -~]{0,24}"), 0..10).prop_map(|stats| {
            let mut b = Vec::new();
            for (n, v) in &stats {
                b.extend_from_slice(format!("STAT {n} {v}\r\n").as_bytes());
            }
            b.extend_from_slice(b"END\r\n");
            (Expect::TextStats, b, Reply::Stats(stats))
        }),
        1 => error_line_strategy().prop_map(|(b, k, m)| (Expect::TextStats, crlf(b), Reply::Error(k, m))),
    ]
    .boxed()
}

/// Meta flags and their tokens, in random order.
fn meta_flags() -> impl Strategy<Value = (MetaFlags, Vec<Vec<u8>>)> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(prop_oneof![Just(-1i64), 0..=i64::MAX]),
        proptest::option::of((server_key(), vec(any::<u8>(), 1..30), any::<bool>())),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(
            |(cas, cf, ttl, key, opaque, size, hit, la, win, stale, won, lone_b)| {
                let mut f = MetaFlags {
                    cas,
                    client_flags: cf,
                    ttl,
                    opaque,
                    size,
                    hit_before: hit,
                    last_access: la,
                    win,
                    stale,
                    already_won: won,
                    ..Default::default()
                };
                let mut t: Vec<Vec<u8>> = Vec::new();
                let mut num = |c: char, n: Option<String>| {
                    if let Some(n) = n {
                        t.push(format!("{c}{n}").into_bytes());
                    }
                };
                num('c', cas.map(|n| n.to_string()));
                num('f', cf.map(|n| n.to_string()));
                num('t', ttl.map(|n| n.to_string()));
                num('O', opaque.map(|n| n.to_string()));
                num('s', size.map(|n| n.to_string()));
                num('h', hit.map(|h| if h { "1" } else { "0" }.to_string()));
                num('l', la.map(|n| n.to_string()));
                for (on, c) in [(win, "W"), (stale, "X"), (won, "Z")] {
                    if on {
                        t.push(c.as_bytes().to_vec());
                    }
                }
                match key {
                    Some((text_key, raw, true)) => {
                        let _ = text_key;
                        let enc = key::encode_binary_key(&raw);
                        t.push(format!("k{enc}").into_bytes());
                        t.push(b"b".to_vec());
                        f.key = Some(Bytes::from(enc.into_bytes()));
                        f.base64 = true;
                    }
                    Some((text_key, _, false)) => {
                        t.push(cat(&[b"k", &text_key]));
                        f.key = Some(Bytes::from(text_key));
                    }
                    None => {}
                }
                if lone_b && !f.base64 {
                    t.push(b"b".to_vec());
                    f.base64 = true;
                }
                (Just(f), Just(t).prop_shuffle())
            },
        )
}

fn join_line(head: &[u8], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut b = head.to_vec();
    for t in tokens {
        b.push(b' ');
        b.extend_from_slice(t);
    }
    b.extend_from_slice(b"\r\n");
    b
}

/// One meta reply other than MN (or an error line), and what it decodes to.
fn meta_entry() -> impl Strategy<Value = (Vec<u8>, MetaReply)> {
    let statuses = vec![
        ("HD", MetaStatus::Stored),
        ("EN", MetaStatus::Miss),
        ("NF", MetaStatus::NotFound),
        ("NS", MetaStatus::NotStored),
        ("EX", MetaStatus::Exists),
    ];
    prop_oneof![
        4 => (proptest::sample::select(statuses), meta_flags()).prop_map(|((name, s), (f, t))| {
            (join_line(name.as_bytes(), &t), MetaReply { status: s, flags: f, value: None })
        }),
        4 => (data(12), meta_flags()).prop_map(|(d, (f, t))| {
            let mut b = join_line(format!("VA {}", d.len()).as_bytes(), &t);
            b.extend_from_slice(&d);
            b.extend_from_slice(b"\r\n");
            (b, MetaReply { status: MetaStatus::Value, flags: f, value: Some(d.into()) })
        }),
        1 => error_line_strategy().prop_map(|(b, k, m)| (crlf(b), MetaReply::error(k, m))),
    ]
}

fn meta_case() -> BoxedStrategy<Case> {
    prop_oneof![
        9 => meta_entry().prop_map(|(b, m)| {
            let r = match m.status {
                MetaStatus::Error(k, msg) => Reply::Error(k, msg),
                _ => Reply::Meta(m),
            };
            (Expect::Meta, b, r)
        }),
        1 => Just((
            Expect::Meta,
            b"MN\r\n".to_vec(),
            Reply::Meta(mr(MetaStatus::Noop, MetaFlags::default(), None))
        )),
    ]
    .boxed()
}

fn meta_batch_case() -> BoxedStrategy<Case> {
    vec(meta_entry(), 0..8)
        .prop_map(|entries| {
            let mut b = Vec::new();
            let mut v = Vec::new();
            for (bytes, m) in entries {
                b.extend_from_slice(&bytes);
                v.push(m);
            }
            b.extend_from_slice(b"MN\r\n");
            (Expect::MetaUntilNoop, b, Reply::MetaBatch(v))
        })
        .boxed()
}

fn shape_case(shape: usize) -> BoxedStrategy<Case> {
    match shape {
        0 => text_line_case(),
        1 => text_values_case(false),
        2 => text_values_case(true),
        3 => text_stats_case(),
        4 => meta_case(),
        _ => meta_batch_case(),
    }
}

fn shape_expect(shape: usize) -> Expect {
    all_shapes()[shape].clone()
}

fn repeat_case() -> BoxedStrategy<Case> {
    (0usize..6, 0usize..4)
        .prop_flat_map(|(shape, n)| {
            vec(shape_case(shape), n..=n).prop_map(move |cases| {
                let mut b = Vec::new();
                let mut rs = Vec::new();
                for (_, bytes, r) in cases {
                    b.extend_from_slice(&bytes);
                    rs.push(r);
                }
                (
                    Expect::Repeat(n, Box::new(shape_expect(shape))),
                    b,
                    Reply::Many(rs),
                )
            })
        })
        .boxed()
}

fn any_case() -> BoxedStrategy<Case> {
    prop_oneof![
        text_line_case(),
        text_values_case(false),
        text_values_case(true),
        text_stats_case(),
        meta_case(),
        meta_batch_case(),
        repeat_case(),
    ]
    .boxed()
}

/// What follows a reply on the wire: nothing, another reply, or anything at all.
fn trailing() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"STORED\r\n".to_vec()),
        Just(b"VALUE k 0 1\r\nx\r\nEND\r\n".to_vec()),
        Just(b"VA 3 f1\r\nabc\r\nMN\r\n".to_vec()),
        Just(b"END".to_vec()),
        vec(any::<u8>(), 1..40),
    ]
}

/// Bytes that look a lot like protocol, and some that don't.
fn protocolish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"VALUE ".to_vec()),
        Just(b"END\r\n".to_vec()),
        Just(b"STAT ".to_vec()),
        Just(b"VA ".to_vec()),
        Just(b"HD".to_vec()),
        Just(b"EN\r\n".to_vec()),
        Just(b"MN\r\n".to_vec()),
        Just(b"ERROR\r\n".to_vec()),
        Just(b"SERVER_ERROR x\r\n".to_vec()),
        Just(b"STORED\r\n".to_vec()),
        Just(b" c1 f2 t-1 kk b O1 s3 h1 l2 W X Z".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"k".to_vec()),
        (0u64..40).prop_map(|n| n.to_string().into_bytes()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"1048577".to_vec()),
        vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        vec(token, 0..60).prop_map(|t| t.concat()),
        vec(any::<u8>(), 0..512)
    ]
}

fn small_limits() -> Limits {
    Limits {
        max_value_size: 16,
        max_line: 40,
        max_entries: 3,
    }
}

/// Check that a decoder in the middle of a reply holds no more than its limits allow.
fn assert_state_bounded(d: &Decoder) {
    match (&d.state, &d.expect) {
        (State::Start, _) => {}
        (State::Values(v), Expect::TextValues { .. }) => {
            assert!(v.len() <= d.limits.max_entries);
            assert!(v.iter().all(|t| t.data.len() <= d.limits.max_value_size));
        }
        (State::Stats(v), Expect::TextStats) => assert!(v.len() <= d.limits.max_entries),
        (State::Batch(v), Expect::MetaUntilNoop) => {
            assert!(v.len() <= d.limits.max_entries, "{} entries held", v.len());
            assert!(v.iter().all(|m| m
                .value
                .as_ref()
                .is_none_or(|x| x.len() <= d.limits.max_value_size)));
        }
        (State::Many(v, inner), Expect::Repeat(count, _)) => {
            assert!(v.len() < *count);
            assert_state_bounded(inner);
        }
        (s, e) => panic!("state {s:?} for {e:?}"),
    }
}

fn assert_reply_bounded(r: &Reply, limits: &Limits) {
    let value_ok = |v: &Option<Bytes>| v.as_ref().is_none_or(|x| x.len() <= limits.max_value_size);
    match r {
        Reply::Values(v) => {
            assert!(v.len() <= limits.max_entries);
            assert!(v.iter().all(|t| t.data.len() <= limits.max_value_size));
        }
        Reply::Stats(v) => assert!(v.len() <= limits.max_entries),
        Reply::Meta(m) => assert!(value_ok(&m.value)),
        Reply::MetaBatch(v) => {
            assert!(v.len() <= limits.max_entries, "a batch of {}", v.len());
            assert!(v.iter().all(|m| value_ok(&m.value)));
        }
        Reply::Many(v) => v.iter().for_each(|r| assert_reply_bounded(r, limits)),
        Reply::Status(_) | Reply::Error(..) => {}
    }
}

/// Feed arbitrary bytes in chunks, decoding consecutive replies until an error, checking bounds.
/// Returns how many replies were decoded.
fn run_arbitrary(expect: &Expect, limits: Limits, input: &[u8], chunk: usize) -> usize {
    let mut dec = Decoder::new(expect.clone(), limits);
    let mut buf = BytesMut::new();
    let mut replies = 0;
    let cap_bound = 2 * (input.len() + limits.max_line + limits.max_value_size + 8) + 64;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let r = dec.decode(&mut buf);
            assert!(buf.len() <= before, "decode added bytes");
            assert!(
                buf.capacity() <= cap_bound,
                "capacity {} > {cap_bound}",
                buf.capacity()
            );
            match r {
                Err(_) => return replies,
                Ok(None) => {
                    assert_state_bounded(&dec);
                    break;
                }
                Ok(Some(reply)) => {
                    replies += 1;
                    assert_reply_bounded(&reply, &limits);
                    assert!(matches!(dec.state, State::Start));
                    if buf.len() == before {
                        break; // a reply of zero bytes (Repeat(0, _)) would loop forever
                    }
                }
            }
        }
    }
    replies
}

// ---------------------------------------------------------------------------------------------
// A simulated server, for round trips
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct MiniServer {
    items: BTreeMap<Vec<u8>, (u32, u64, Vec<u8>)>,
    next_cas: u64,
}

impl MiniServer {
    /// Execute every request in `req` (which must be complete) and return the reply bytes.
    fn handle(&mut self, mut req: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !req.is_empty() {
            let n = req
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("request line end");
            let line = &req[..n];
            req = &req[n + 2..];
            assert!(
                !line.contains(&b'\r') && !line.contains(&b'\n'),
                "CR/LF in {line:?}"
            );
            let tok: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
            assert!(tok.iter().all(|t| !t.is_empty()), "empty token in {line:?}");
            let num = |t: &[u8]| std::str::from_utf8(t).unwrap().parse::<u64>().unwrap();
            let mut take_data = |len: usize| {
                let d = req[..len].to_vec();
                assert_eq!(&req[len..len + 2], b"\r\n");
                req = &req[len + 2..];
                d
            };
            match tok[0] {
                b"set" => {
                    let d = take_data(num(tok[4]) as usize);
                    self.next_cas += 1;
                    self.items
                        .insert(tok[1].to_vec(), (num(tok[2]) as u32, self.next_cas, d));
                    if tok.get(5) != Some(&&b"noreply"[..]) {
                        out.extend_from_slice(b"STORED\r\n");
                    }
                }
                b"get" | b"gets" => {
                    for k in &tok[1..] {
                        if let Some((f, c, d)) = self.items.get(*k) {
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(k);
                            out.extend_from_slice(format!(" {f} {}", d.len()).as_bytes());
                            if tok[0] == b"gets" {
                                out.extend_from_slice(format!(" {c}").as_bytes());
                            }
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(d);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"END\r\n");
                }
                b"ms" => {
                    let d = take_data(num(tok[2]) as usize);
                    let flags = &tok[3..];
                    let key = if flags.contains(&&b"b"[..]) {
                        key::decode_binary_key(tok[1]).unwrap()
                    } else {
                        tok[1].to_vec()
                    };
                    let cf = flags
                        .iter()
                        .find(|t| t[0] == b'F')
                        .map_or(0, |t| num(&t[1..]) as u32);
                    self.next_cas += 1;
                    self.items.insert(key, (cf, self.next_cas, d));
                    if !flags.contains(&&b"q"[..]) {
                        out.extend_from_slice(b"HD\r\n");
                    }
                }
                b"mg" => {
                    let flags = &tok[2..];
                    let has = |c: &[u8]| flags.contains(&c);
                    let key = if has(b"b") {
                        key::decode_binary_key(tok[1]).unwrap()
                    } else {
                        tok[1].to_vec()
                    };
                    let mut ret = Vec::new();
                    match self.items.get(&key) {
                        Some((f, c, d)) => {
                            if has(b"f") {
                                ret.push(format!("f{f}").into_bytes());
                            }
                            if has(b"c") {
                                ret.push(format!("c{c}").into_bytes());
                            }
                            if has(b"k") {
                                ret.push(cat(&[b"k", tok[1]]));
                                if has(b"b") {
                                    ret.push(b"b".to_vec());
                                }
                            }
                            if has(b"v") {
                                out.extend(join_line(format!("VA {}", d.len()).as_bytes(), &ret));
                                out.extend_from_slice(d);
                                out.extend_from_slice(b"\r\n");
                            } else {
                                out.extend(join_line(b"HD", &ret));
                            }
                        }
                        None if has(b"q") => {}
                        None => out.extend_from_slice(b"EN\r\n"),
                    }
                }
                b"mn" => out.extend_from_slice(b"MN\r\n"),
                other => panic!("mini server: unknown command {other:?}"),
            }
        }
        out
    }
}

fn text_key() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![8 => 0x21u8..=0x7e, 1 => 0x80u8..=0xff], 1..=250)
}

/// Decode `input` in reads of `sizes`, expecting exactly one reply that uses all of it.
fn decode_in_reads(expect: Expect, input: &[u8], sizes: &[usize]) -> Reply {
    let (r, rest) = feed_chunked(&expect, Limits::default(), input, sizes);
    assert!(rest.is_empty(), "left over: {:?}", excerpt(&rest));
    r.unwrap().unwrap()
}

fn valid_text_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= 250 && k.iter().all(|&c| c > b' ' && c != 0x7f)
}

fn any_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(
            prop_oneof![
                20 => 0x21u8..=0x7e,
                1 => Just(b' '),
                1 => Just(b'\r'),
                1 => Just(b'\n'),
                1 => 0u8..0x20,
                1 => Just(0x7fu8),
                2 => 0x80u8..=0xff,
            ],
            0..260
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

/// `n` cases, or `PROPTEST_CASES` when set (for a longer run: `PROPTEST_CASES=100000`).
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig::with_cases(n)
}

proptest! {
    #![proptest_config(cases(512))]

    /// (a) A valid reply gives the same result fed whole or in arbitrary reads, and the bytes
    /// of what follows it stay in the buffer.
    #[test]
    fn prop_chunking_does_not_change_the_reply(
        (expect, bytes, reply) in any_case(),
        after in trailing(),
        sizes in vec(0usize..48, 1..16),
    ) {
        let input = cat(&[&bytes, &after]);
        let (whole, rest) = feed_whole(&expect, Limits::default(), &input);
        prop_assert_eq!(whole, Ok(Some(reply.clone())));
        prop_assert_eq!(&rest[..], &after[..]);
        let (chunked, rest) = feed_chunked(&expect, Limits::default(), &input, &sizes);
        prop_assert_eq!(chunked, Ok(Some(reply.clone())));
        prop_assert_eq!(&rest[..], &after[..]);
        let (bytewise, rest) = feed_chunked(&expect, Limits::default(), &input, &[1]);
        prop_assert_eq!(bytewise, Ok(Some(reply)));
        prop_assert_eq!(&rest[..], &after[..]);
    }

    /// (b) Arbitrary bytes never panic, never buffer past the limits, and never hold more
    /// entries than allowed, for every reply shape, whatever the reads.
    #[test]
    fn prop_arbitrary_bytes_are_safe(
        input in protocolish(),
        shape in 0usize..13,
        small in any::<bool>(),
        chunk in 1usize..64,
    ) {
        let expect = all_shapes()[shape].clone();
        let limits = if small { small_limits() } else { Limits::default() };
        run_arbitrary(&expect, limits, &input, chunk);
        run_arbitrary(&expect, limits, &input, input.len());
    }

    /// (b') Arbitrary bytes after a valid prefix: errors or more replies, never a panic.
    #[test]
    fn prop_valid_then_garbage_is_safe(
        (expect, bytes, _) in any_case(),
        junk in protocolish(),
        chunk in 1usize..64,
    ) {
        let input = cat(&[&bytes, &junk]);
        let n = run_arbitrary(&expect, Limits::default(), &input, chunk);
        prop_assert!(n >= 1 || input.is_empty());
        run_arbitrary(&expect, small_limits(), &input, chunk);
    }

    /// (d) A text key of arbitrary bytes is refused (and nothing written) exactly when the key
    /// rules say so; otherwise it appears as one token, with no CR, LF or space inside.
    #[test]
    fn prop_keys_are_refused_or_safe(k in any_key(), which in 0usize..KEYED_ENCODERS) {
        let prefix = b"mn\r\n";
        let mut buf = BytesMut::from(&prefix[..]);
        match encode_with_key(which, &mut buf, &k) {
            Err(Error::InvalidKey { .. }) => {
                prop_assert!(!valid_text_key(&k));
                prop_assert_eq!(&buf[..], &prefix[..]);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(()) => {
                prop_assert!(valid_text_key(&k));
                let req = &buf[prefix.len()..];
                let end = req.windows(2).position(|w| w == b"\r\n").unwrap();
                let line = &req[..end];
                prop_assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
                let toks: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
                let at = match which { 1 => 3, _ => 1 }; // gats <t> good <key>
                prop_assert_eq!(toks[at], &k[..]);
                // The key ends where a token ends: nothing of it leaks into another token.
                let expected_tokens = match which {
                    0 => 2, 1 => 4, 2 => 5, 3 => 7, 4 => 2, 5 => 3, 6 => 4, 7 => 3, 8 => 3, 9 => 2,
                    _ => 3,
                };
                prop_assert_eq!(toks.len(), expected_tokens, "{:?}", excerpt(line));
            }
        }
    }

    /// (d) A binary key of arbitrary bytes is refused only when empty or too long, and is
    /// otherwise sent as base64 (no CR, LF or space) with the `b` flag, decoding back to itself.
    #[test]
    fn prop_binary_keys_are_base64(k in vec(any::<u8>(), 0..200), which in 0usize..4) {
        let mut buf = BytesMut::new();
        let mk = MetaKey::Binary(&k);
        let r = match which {
            0 => meta::get(&mut buf, mk, &MetaGet::default()),
            1 => meta::set(&mut buf, mk, b"v", &MetaSet::default()),
            2 => meta::delete(&mut buf, mk, &MetaDelete::default()),
            _ => meta::arithmetic(&mut buf, mk, &MetaArithmetic::default()),
        };
        if k.is_empty() || k.len() > 186 {
            prop_assert!(matches!(r, Err(Error::InvalidKey { .. })), "not refused");
            prop_assert!(buf.is_empty());
        } else {
            r.unwrap();
            let end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
            let toks: Vec<&[u8]> = buf[..end].split(|&c| c == b' ').collect();
            let enc = toks[1];
            prop_assert!(enc.len() <= 250);
            prop_assert!(enc.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c)));
            prop_assert_eq!(key::decode_binary_key(enc).unwrap(), k);
            prop_assert!(toks.contains(&&b"b"[..]));
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// (a) Split at every single point.
    #[test]
    fn prop_every_split_point((expect, bytes, reply) in any_case(), after in trailing()) {
        let input = cat(&[&bytes, &after]);
        for at in 0..=input.len() {
            let (r, rest) = feed_chunked(&expect, Limits::default(), &input, &[at, input.len()]);
            prop_assert_eq!(r, Ok(Some(reply.clone())), "split at {}", at);
            prop_assert_eq!(&rest[..], &after[..]);
        }
    }

    /// (c) Text round trip: set (some noreply) → simulated server → gets, in arbitrary reads.
    #[test]
    fn prop_text_round_trip(
        items in vec((text_key(), any::<u32>(), vec(any::<u8>(), 0..2048), any::<bool>()), 1..12),
        missing in text_key(),
        sizes in vec(1usize..700, 1..8),
    ) {
        let mut server = MiniServer::default();
        let mut req = BytesMut::new();
        let mut want: BTreeMap<Vec<u8>, (u32, Vec<u8>)> = BTreeMap::new();
        let mut acks = 0;
        for (k, flags, data, noreply) in &items {
            let e = text::store(&mut req, StoreMode::Set, k, *flags, 0, data, *noreply).unwrap();
            prop_assert_eq!(e.is_some(), !noreply);
            acks += usize::from(!noreply);
            want.insert(k.clone(), (*flags, data.clone()));
        }
        let reply = server.handle(&req);
        let r = decode_in_reads(Expect::Repeat(acks, Box::new(Expect::TextLine)), &reply, &sizes);
        prop_assert_eq!(r, Reply::Many(vec![status(Status::Stored); acks]));

        let mut keys: Vec<Vec<u8>> = want.keys().cloned().collect();
        if !want.contains_key(&missing) {
            keys.push(missing);
        }
        let mut req = BytesMut::new();
        let expect = text::retrieval(&mut req, Retrieval::Gets, &keys).unwrap();
        let reply = server.handle(&req);
        let Reply::Values(got) = decode_in_reads(expect, &reply, &sizes) else {
            return Err(TestCaseError::fail("not values"));
        };
        prop_assert_eq!(got.len(), want.len());
        for (v, (k, (flags, data))) in got.iter().zip(&want) {
            prop_assert_eq!(&v.key[..], &k[..]);
            prop_assert_eq!(v.flags, *flags);
            prop_assert_eq!(&v.data[..], &data[..]);
            prop_assert!(v.cas.is_some());
        }
    }

    /// (c) Meta round trip with binary keys: ms (some quiet) → server → quiet mg batch closed
    /// by mn, in arbitrary reads.
    #[test]
    fn prop_meta_round_trip(
        items in vec((vec(any::<u8>(), 1..=186), any::<u32>(), vec(any::<u8>(), 0..2048), any::<bool>()), 1..12),
        missing in vec(any::<u8>(), 1..=186),
        sizes in vec(1usize..700, 1..8),
    ) {
        let mut server = MiniServer::default();
        let mut req = BytesMut::new();
        let mut want: BTreeMap<Vec<u8>, (u32, Vec<u8>)> = BTreeMap::new();
        let mut acks = 0;
        for (k, flags, data, quiet) in &items {
            let o = MetaSet { client_flags: *flags, quiet: *quiet, ..Default::default() };
            meta::set(&mut req, MetaKey::Binary(k), data, &o).unwrap();
            acks += usize::from(!quiet);
            want.insert(k.clone(), (*flags, data.clone()));
        }
        meta::noop(&mut req);
        let reply = server.handle(&req);
        let r = decode_in_reads(Expect::MetaUntilNoop, &reply, &sizes);
        let hd = mr(MetaStatus::Stored, MetaFlags::default(), None);
        prop_assert_eq!(r, Reply::MetaBatch(vec![hd; acks]));

        let mut req = BytesMut::new();
        let o = MetaGet { value: true, client_flags: true, cas: true, key: true, quiet: true, ..Default::default() };
        for k in want.keys() {
            meta::get(&mut req, MetaKey::Binary(k), &o).unwrap();
        }
        if !want.contains_key(&missing) {
            meta::get(&mut req, MetaKey::Binary(&missing), &o).unwrap();
        }
        let expect = meta::noop(&mut req);
        prop_assert_eq!(expect, Expect::Meta);
        let reply = server.handle(&req);
        let Reply::MetaBatch(got) = decode_in_reads(Expect::MetaUntilNoop, &reply, &sizes) else {
            return Err(TestCaseError::fail("not a batch"));
        };
        prop_assert_eq!(got.len(), want.len());
        for (m, (k, (flags, data))) in got.iter().zip(&want) {
            prop_assert_eq!(&m.status, &MetaStatus::Value);
            let decoded = m.flags.decoded_key();
            prop_assert_eq!(decoded.as_deref(), Some(&k[..]));
            prop_assert!(m.flags.base64);
            prop_assert_eq!(m.flags.client_flags, Some(*flags));
            prop_assert!(m.flags.cas.is_some());
            prop_assert_eq!(m.value.as_deref(), Some(&data[..]));
        }
    }
}
