//! Fuzz the reply decoder: the first byte picks a reply shape (and limits, and how the rest is
//! cut into reads); the rest is fed to a `Decoder` read by read, decoding consecutive replies
//! until an error or until it needs more bytes than there are.
//!
//! Whatever the bytes, the decoder must not panic, must only ever consume from the buffer, and
//! must not return more entries or larger values than its `Limits` allow.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use multiput::protocol::{Decoder, Expect, Limits, Reply};

fn shape(b: u8) -> Expect {
    let base = |i: u8| match i % 6 {
        0 => Expect::TextLine,
        1 => Expect::TextValues { cas: false },
        2 => Expect::TextValues { cas: true },
        3 => Expect::TextStats,
        4 => Expect::Meta,
        _ => Expect::MetaUntilNoop,
    };
    match b % 16 {
        i @ 0..=5 => base(i),
        i @ 6..=11 => Expect::Repeat(3, Box::new(base(i))),
        12 => Expect::Repeat(
            2,
            Box::new(Expect::Repeat(2, Box::new(Expect::MetaUntilNoop))),
        ),
        13 => Expect::Repeat(
            2,
            Box::new(Expect::Repeat(
                3,
                Box::new(Expect::TextValues { cas: true }),
            )),
        ),
        14 => Expect::Repeat(1, Box::new(Expect::Meta)),
        _ => Expect::Repeat(4, Box::new(Expect::TextStats)),
    }
}

fn check_bounds(r: &Reply, l: &Limits) {
    match r {
        Reply::Values(v) => {
            assert!(v.len() <= l.max_entries);
            assert!(v.iter().all(|t| t.data.len() <= l.max_value_size));
        }
        Reply::Stats(v) => assert!(v.len() <= l.max_entries),
        Reply::Meta(m) => assert!(m.value.as_ref().is_none_or(|v| v.len() <= l.max_value_size)),
        Reply::MetaBatch(v) => {
            assert!(v.len() <= l.max_entries);
            assert!(v
                .iter()
                .all(|m| m.value.as_ref().is_none_or(|v| v.len() <= l.max_value_size)));
        }
        Reply::Many(v) => v.iter().for_each(|r| check_bounds(r, l)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let expect = shape(sel);
    // Bit 4: small limits, so the limit paths are reached with small inputs.
    let limits = if sel & 0x10 != 0 {
        Limits {
            max_value_size: 64,
            max_line: 48,
            max_entries: 4,
        }
    } else {
        Limits::default()
    };
    // Bits 5-7: the read size (1, 2, 3, 5, 8, 13, 64 bytes, or everything at once).
    let chunk = [1, 2, 3, 5, 8, 13, 64, usize::MAX][usize::from(sel >> 5)];

    let mut dec = Decoder::new(expect, limits);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk.min(rest.len().max(1))) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Err(_) => return,
                Ok(None) => break,
                Ok(Some(reply)) => {
                    assert!(buf.len() <= before, "decode added bytes");
                    check_bounds(&reply, &limits);
                    if buf.len() == before {
                        break; // nothing consumed: wait for the next read
                    }
                }
            }
            assert!(buf.len() <= before, "decode added bytes");
        }
        // The buffer never holds more than the input plus one announced (bounded) value.
        assert!(
            buf.capacity() <= 2 * (rest.len() + limits.max_line + limits.max_value_size + 8) + 64
        );
    }
});
