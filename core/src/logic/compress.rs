//! Compression of plain values as the ecosystems' clients do it, so values that PHP and Python
//! apps compressed are readable by every binding, and values a binding compresses are readable
//! by them. Pure functions over bytes (no I/O); every decompression is bounded.
//!
//! ## PECL memcached (PHP)
//!
//! PECL memcached (php-memcached 3.x) compresses a string or serialized value of at least
//! `memcached.compression_threshold` bytes (2000) when `Memcached::OPT_COMPRESSION` is on (the
//! default), and keeps the compressed form only if it is smaller than the original divided by
//! `memcached.compression_factor` (1.3). The stored bytes are the original length as a 32-bit
//! host-endian (little-endian on every platform PHP runs on here) integer, then the compressed
//! stream; the flags get bit 4 (compressed) and bit 5 (zlib, a `compress()` stream) or bit 6
//! (fastlz, the default `memcached.compression_type`).
//!
//! [`pecl_decompress`] reads both; [`pecl_compress`] writes zlib, which every PECL memcached
//! reads whatever its own compression type is.
//!
//! ## pylibmc and pymemcache (Python)
//!
//! pylibmc (`min_compress_len`) and pymemcache's `CompressedSerde` store a plain zlib stream
//! (`zlib.compress`, with its 2-byte header and Adler-32 trailer) and set flag 8
//! ([`python::ZLIB`]) beside the type flag; [`python_decompress`] reads it.

use crate::values::{php, portable, python, Convention, Family};

/// The bound on a decompressed value: a corrupt or hostile length prefix must not make us
/// allocate without limit.
pub const MAX_DECOMPRESSED: usize = 128 << 20;

/// PECL's `memcached.compression_factor`.
pub const PECL_FACTOR: f64 = 1.3;

/// Why a compressed value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Undo the compression of a plain value stored under `convention`: `None` when `flags` do
/// not say it is compressed, else the original bytes and the flags without the compression
/// bits (ready for [`crate::values::decode`]), or why they cannot be recovered. Nothing
/// inflates past `max_out` bytes (capped at [`MAX_DECOMPRESSED`]).
pub fn inflate(
    convention: Convention,
    data: &[u8],
    flags: u32,
    max_out: usize,
) -> Option<Result<(Vec<u8>, u32), Corrupt>> {
    if portable::is_marked(flags) {
        if flags & portable::ZLIB == 0 {
            return None;
        }
        return Some(
            python_decompress(data, flags & !portable::ZLIB, max_out)
                .map(|(out, _)| (out, flags & !portable::ZLIB)),
        );
    }
    match convention.family() {
        Family::Php if flags & php::COMPRESSED != 0 => {
            Some(pecl_decompress(data, flags).and_then(|(out, rest)| {
                if out.len() > max_out {
                    Err(Corrupt("decompressed value is larger than the size limit"))
                } else {
                    Ok((out, rest))
                }
            }))
        }
        Family::Python if flags & python::ZLIB != 0 => {
            Some(python_decompress(data, flags, max_out))
        }
        _ => None,
    }
}

/// Inflate a value pylibmc or pymemcache compressed (`flags` has [`python::ZLIB`]): a zlib
/// stream of at most `max_out` bytes ([`MAX_DECOMPRESSED`] when larger). Returns the original
/// bytes and the flags without [`python::ZLIB`], for [`crate::values::decode`].
pub fn python_decompress(
    data: &[u8],
    flags: u32,
    max_out: usize,
) -> Result<(Vec<u8>, u32), Corrupt> {
    let out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(
        data,
        max_out.min(MAX_DECOMPRESSED),
    )
    .map_err(|_| Corrupt("zlib stream is corrupt or inflates past the size limit"))?;
    Ok((out, flags & !python::ZLIB))
}

/// Decompress a PECL-compressed value (`flags` has [`php::COMPRESSED`]). Returns the original
/// bytes and the flags without the compression bits.
pub fn pecl_decompress(data: &[u8], flags: u32) -> Result<(Vec<u8>, u32), Corrupt> {
    if data.len() < 4 {
        return Err(Corrupt(
            "compressed value shorter than its 4-byte length prefix",
        ));
    }
    let stored = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if stored > MAX_DECOMPRESSED {
        return Err(Corrupt("compressed value announces more than 128 MiB"));
    }
    let body = &data[4..];
    let out = if flags & php::COMPRESSION_FASTLZ != 0 {
        fastlz_decompress(body, stored).ok_or(Corrupt("fastlz stream is corrupt"))?
    } else if flags & php::COMPRESSION_ZLIB != 0 {
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(body, stored)
            .map_err(|_| Corrupt("zlib stream is corrupt"))?
    } else {
        return Err(Corrupt(
            "compressed with an unknown method (zstd is not supported)",
        ));
    };
    let internal =
        php::COMPRESSED | php::COMPRESSION_ZLIB | php::COMPRESSION_FASTLZ | php::COMPRESSION_ZSTD;
    Ok((out, flags & !internal))
}

/// The zlib level every write uses: deflate's fastest. On data that does not compress (media,
/// encrypted or already compressed values) level 6 costs five times as long for nothing (16 ms
/// against 3 ms for 500 KB of random bytes, miniz_oxide on these machines); on text it costs
/// five times as long for a stream about a third the size. A cache wants the fast one.
pub const ZLIB_LEVEL: u8 = 1;

/// Values longer than this are first sampled ([`deflate_if_worth`]).
const SAMPLE_ABOVE: usize = 64 * 1024;
/// The size of each of the three samples.
const SAMPLE: usize = 8 * 1024;

/// A zlib stream of `data` when it compresses by PECL's factor, else `None`. A large value is
/// first judged by three samples (its start, middle and end): when none of them compresses by
/// the factor, the whole value is not compressed at all. So an incompressible 500 KB value
/// costs about a millisecond less than compressing it whole would, and is stored as is, as
/// it would have been.
pub fn deflate_if_worth(data: &[u8]) -> Option<Vec<u8>> {
    let worth = |raw: usize, z: usize| (raw as f64) > (z as f64) * PECL_FACTOR;
    if data.len() > SAMPLE_ABOVE {
        let mid = data.len() / 2 - SAMPLE / 2;
        let samples = [0, mid, data.len() - SAMPLE];
        let any = samples.iter().any(|&at| {
            let part = &data[at..at + SAMPLE];
            worth(
                part.len(),
                miniz_oxide::deflate::compress_to_vec_zlib(part, ZLIB_LEVEL).len(),
            )
        });
        if !any {
            return None;
        }
    }
    let z = miniz_oxide::deflate::compress_to_vec_zlib(data, ZLIB_LEVEL);
    worth(data.len(), z.len()).then_some(z)
}

/// Compress a value stored with multiput's flags ([`portable`]): `Some((zlib stream, flags
/// with [`portable::ZLIB`]))` when it is at least `threshold` bytes and compresses by PECL's
/// factor, `None` to store it as is. Every binding inflates it ([`inflate`]).
pub fn portable_compress(data: &[u8], flags: u32, threshold: usize) -> Option<(Vec<u8>, u32)> {
    if threshold == 0 || data.is_empty() || data.len() < threshold {
        return None;
    }
    let z = deflate_if_worth(data)?;
    // Bytes carry flags 0; compressed they need the mark to say so.
    Some((z, flags | portable::MARK | portable::ZLIB))
}

/// Compress like PECL memcached with `COMPRESSION_ZLIB`: `Some((bytes, extra flags))` when the
/// value is at least `threshold` bytes and compresses well enough, `None` to store it as is.
pub fn pecl_compress(data: &[u8], threshold: usize) -> Option<(Vec<u8>, u32)> {
    if threshold == 0 || data.is_empty() || data.len() < threshold || data.len() > u32::MAX as usize
    {
        return None;
    }
    let z = deflate_if_worth(data)?;
    let mut out = Vec::with_capacity(4 + z.len());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    Some((out, php::COMPRESSED | php::COMPRESSION_ZLIB))
}

/// FastLZ (levels 1 and 2) decompression, as `fastlz_decompress` in php-memcached's bundled
/// fastlz.c, with every read and write bounds-checked. `None` for a corrupt stream or one that
/// would exceed `max_out` bytes.
pub fn fastlz_decompress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    let first = *input.first()?;
    let level = (first >> 5) + 1;
    if level > 2 {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(max_out.min(MAX_DECOMPRESSED));
    let mut ip = 1usize;
    let mut ctrl = usize::from(first & 31);
    let next = |ip: &mut usize| -> Option<usize> {
        let b = *input.get(*ip)?;
        *ip += 1;
        Some(usize::from(b))
    };
    loop {
        if ctrl >= 32 {
            let mut len = (ctrl >> 5) - 1;
            let ofs = (ctrl & 31) << 8;
            let mut dist;
            if level == 1 {
                if len == 6 {
                    len += next(&mut ip)?;
                }
                dist = ofs + next(&mut ip)? + 1;
            } else {
                if len == 6 {
                    loop {
                        let c = next(&mut ip)?;
                        len += c;
                        if c != 255 {
                            break;
                        }
                    }
                }
                let code = next(&mut ip)?;
                dist = ofs + code + 1;
                if code == 255 && ofs == (31 << 8) {
                    let far = (next(&mut ip)? << 8) + next(&mut ip)?;
                    dist = far + 8191 + 1;
                }
            }
            if dist > out.len() || out.len() + len + 3 > max_out {
                return None;
            }
            let start = out.len() - dist;
            for i in 0..len + 3 {
                let b = out[start + i];
                out.push(b);
            }
        } else {
            let n = ctrl + 1;
            if out.len() + n > max_out || ip + n > input.len() {
                return None;
            }
            out.extend_from_slice(&input[ip..ip + n]);
            ip += n;
        }
        match input.get(ip) {
            Some(&b) => {
                ctrl = usize::from(b);
                ip += 1;
            }
            None => break,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastlz_literals_and_matches() {
        // Level 1: literal run of 3 ("abc"), then a match of length 6 at distance 3 ("abcabc").
        // Match: ctrl = (len-2 += 1 ... ) -> len field 4 (=> 4-1+3 = 6 bytes), ofs 0, code 2.
        let stream = [2u8, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(fastlz_decompress(&stream, 64).unwrap(), b"abcabcabc");
        // A run: distance 1 repeats the last byte.
        let run = [0u8, b'x', (2 << 5), 0];
        assert_eq!(fastlz_decompress(&run, 64).unwrap(), b"xxxxx");
        // Corrupt: a match before any output, a literal past the end, over the limit.
        assert!(fastlz_decompress(&[(2 << 5), 0], 64).is_none());
        assert!(fastlz_decompress(&[5, b'a'], 64).is_none());
        assert!(fastlz_decompress(&stream, 4).is_none());
        assert!(fastlz_decompress(&[], 4).is_none());
        assert!(fastlz_decompress(&[0xe0], 4).is_none());
    }

    #[test]
    fn inflate_by_convention() {
        let data = "abcdefgh".repeat(500).into_bytes();
        let (z, f) = pecl_compress(&data, 2000).unwrap();
        let (out, rest) = inflate(Convention::PHP, &z, f | 1, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!((out, rest), (data.clone(), 1));
        // The same flags mean nothing compressed to the Python convention, and the reverse.
        assert!(inflate(Convention::PYTHON, &z, php::COMPRESSED, 1 << 20).is_none());
        assert!(inflate(Convention::PHP, b"x", python::ZLIB, 1 << 20).is_none());
        assert!(inflate(Convention::PHP, &z, f, 100).unwrap().is_err());
        let py = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        let (out, rest) = inflate(
            Convention::PYTHON,
            &py,
            python::ZLIB | python::TEXT,
            1 << 20,
        )
        .unwrap()
        .unwrap();
        assert_eq!((out, rest), (data, python::TEXT));
    }

    #[test]
    fn large_values_are_sampled_before_they_are_compressed() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        // Incompressible throughout: not compressed.
        assert!(deflate_if_worth(&noise(500 * 1024)).is_none());
        // Compressible in one sampled place only, and overall: compressed, and it inflates.
        let mut mixed = noise(100 * 1024);
        mixed.extend("abcdefgh".repeat(64 * 1024).into_bytes());
        mixed.extend(noise(8 * 1024));
        let z = deflate_if_worth(&mixed).expect("compresses");
        let back = miniz_oxide::inflate::decompress_to_vec_zlib(&z).unwrap();
        assert_eq!(back, mixed);
        // Small values are judged whole.
        assert!(deflate_if_worth(&"abcdefgh".repeat(500).into_bytes()).is_some());
        assert!(deflate_if_worth(&noise(4000)).is_none());
    }

    #[test]
    fn python_zlib() {
        // zlib.compress(b"hello hello hello hello") from CPython, level 6.
        let z = [
            0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0x01, 0x68, 0x03,
            0x08, 0xb1,
        ];
        let (out, rest) = python_decompress(&z, python::ZLIB | python::TEXT, 1 << 20).unwrap();
        assert_eq!(out, b"hello hello hello hello");
        assert_eq!(rest, python::TEXT);
        assert!(python_decompress(&z, python::ZLIB, 5).is_err());
        assert!(python_decompress(b"not zlib", python::ZLIB, 1 << 20).is_err());
    }

    #[test]
    fn zlib_round_trip_and_threshold() {
        let data = "abcdefgh".repeat(500).into_bytes();
        let (z, f) = pecl_compress(&data, 2000).unwrap();
        assert_eq!(f, php::COMPRESSED | php::COMPRESSION_ZLIB);
        let (back, rest) = pecl_decompress(&z, f | 4).unwrap();
        assert_eq!(back, data);
        assert_eq!(rest, 4);
        assert!(pecl_compress(b"short", 2000).is_none());
        assert!(pecl_compress(&data, 0).is_none());
        // Incompressible data stays as is.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(pecl_compress(&noise, 2000).is_none());
        assert!(pecl_decompress(&[1, 0], f).is_err());
        assert!(pecl_decompress(&[255, 255, 255, 255, 0], f).is_err());
        assert!(pecl_decompress(&z, php::COMPRESSED | php::COMPRESSION_ZSTD).is_err());
    }
}
