//! Fuzz what a reader does with a stored value, which any client sharing the fleet (or a broken
//! one) may have written: envelope parsing and later-wins comparison, typed decoding of plain
//! values under both flag conventions, and decompression (PECL zlib/fastlz, pylibmc/pymemcache
//! zlib). The first four bytes are the memcached flags; the rest is the stored value.
//!
//! Whatever the bytes: no panic, decompression never exceeds its size limit, a parsed envelope
//! re-encodes to the same bytes, and the comparison is a consistent order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use multiput::compress;
use multiput::envelope::{self, Decoded, Typed};
use multiput::values::{self, Convention};
use std::cmp::Ordering;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((flags, raw)) = data.split_first_chunk::<4>() else {
        return;
    };
    let flags = u32::from_le_bytes(*flags);

    // The envelope: parse, re-encode, type the payload, compare with itself and a plain value.
    if let Decoded::Enveloped(e) = envelope::decode(raw) {
        let again = envelope::encode(e.stamp, e.kind, e.vtype, e.format, e.payload)
            .expect("a parsed envelope re-encodes");
        assert_eq!(again, raw, "an envelope reads back as the bytes it came from");
        let _ = Typed::from_envelope(&e);
    }
    assert_eq!(envelope::compare(Some(raw), Some(raw)), Ordering::Equal);
    let half = &raw[..raw.len() / 2];
    let ab = envelope::compare(Some(raw), Some(half));
    let ba = envelope::compare(Some(half), Some(raw));
    assert_eq!(ab, ba.reverse(), "later-wins must be antisymmetric");
    assert_eq!(envelope::compare(Some(raw), None), Ordering::Greater);

    // Plain values under both conventions, compressed or not.
    for convention in [Convention::PHP, Convention::PYTHON, Convention::default()] {
        let _ = values::decode(convention, raw, flags);
        let _ = values::decode_ref(convention, raw, flags);
        if let Some(Ok((out, rest))) = compress::inflate(convention, raw, flags, LIMIT) {
            assert!(out.len() <= LIMIT, "inflated past the limit");
            let _ = values::decode(convention, &out, rest);
        }
    }
    if let Some(out) = compress::fastlz_decompress(raw, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
});
