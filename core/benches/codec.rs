//! Wire codec benchmarks: encoding a text `get`, a meta `mg` and a 100-byte meta `ms`; decoding a
//! text `VALUE` reply (100 B and 10 KB), a meta `VA` reply, and a 100-key multi-get reply both as
//! text `VALUE ... END` and as a quiet meta batch closed by `MN`.
//!
//! Run with `cargo bench -p multiput --bench codec` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use multiput::protocol::meta::{self, MetaGet, MetaKey, MetaSet};
use multiput::protocol::text::{self, Retrieval};
use multiput::protocol::{Decoder, Expect, Limits, Reply};

const KEY: &[u8] = b"user:1234567:session:42";

fn value(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\r\n"[i % 28])
        .collect()
}

fn text_value_reply(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() + 64);
    b.extend_from_slice(b"VALUE ");
    b.extend_from_slice(key);
    b.extend_from_slice(format!(" 0 {}\r\n", data.len()).as_bytes());
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n");
    b
}

fn meta_value_reply(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() + 64);
    b.extend_from_slice(format!("VA {} f0 c123456 k", data.len()).as_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n");
    b
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("text_get", |b| {
        b.iter(|| {
            buf.clear();
            text::retrieval(&mut buf, Retrieval::Get, black_box(&[KEY])).unwrap();
            black_box(&buf);
        })
    });
    let o = MetaGet {
        value: true,
        client_flags: true,
        cas: true,
        ..Default::default()
    };
    group.bench_function("meta_mg", |b| {
        b.iter(|| {
            buf.clear();
            meta::get(&mut buf, MetaKey::Text(black_box(KEY)), &o).unwrap();
            black_box(&buf);
        })
    });
    let data = value(100);
    let o = MetaSet {
        client_flags: 7,
        ttl: 300,
        ..Default::default()
    };
    group.bench_function("meta_ms_100B", |b| {
        b.iter(|| {
            buf.clear();
            meta::set(
                &mut buf,
                MetaKey::Text(black_box(KEY)),
                black_box(&data),
                &o,
            )
            .unwrap();
            black_box(&buf);
        })
    });
    group.finish();
}

/// Benchmark decoding `input` as one reply of shape `expect`; the copy into a fresh read buffer
/// is done in the (unmeasured) setup.
fn bench_decode(c: &mut Criterion, group: &str, name: &str, expect: Expect, input: Vec<u8>) {
    // Check once that the input is what the bench claims.
    let mut buf = BytesMut::from(&input[..]);
    let r = Decoder::new(expect.clone(), Limits::default()).decode(&mut buf);
    assert!(
        matches!(r, Ok(Some(ref r)) if !matches!(r, Reply::Error(..))),
        "{r:?}"
    );
    assert!(buf.is_empty());

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function(name, |b| {
        b.iter_batched_ref(
            || BytesMut::from(&input[..]),
            |buf| {
                let mut dec = Decoder::new(expect.clone(), Limits::default());
                black_box(dec.decode(buf).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    for (name, len) in [("text_value_100B", 100), ("text_value_10KB", 10 * 1024)] {
        let mut input = text_value_reply(KEY, &value(len));
        input.extend_from_slice(b"END\r\n");
        bench_decode(c, "decode", name, Expect::TextValues { cas: false }, input);
    }
    bench_decode(
        c,
        "decode",
        "meta_va_100B",
        Expect::Meta,
        meta_value_reply(KEY, &value(100)),
    );

    let keys: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("user:{i}:profile").into_bytes())
        .collect();
    let mut text_reply = Vec::new();
    let mut meta_reply = Vec::new();
    for k in &keys {
        text_reply.extend(text_value_reply(k, &value(100)));
        meta_reply.extend(meta_value_reply(k, &value(100)));
    }
    text_reply.extend_from_slice(b"END\r\n");
    meta_reply.extend_from_slice(b"MN\r\n");
    bench_decode(
        c,
        "decode_multiget",
        "text_100_keys",
        Expect::TextValues { cas: false },
        text_reply,
    );
    bench_decode(
        c,
        "decode_multiget",
        "meta_batch_100_keys",
        Expect::MetaUntilNoop,
        meta_reply,
    );
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
