//! Ketama ring benchmarks: building rings of 3, 100 and 1,000 servers, and looking keys up.
//!
//! Run with `cargo bench -p multiput --bench ring` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use multiput::{Ring, RingMode, ServerSpec};

fn fleet(n: usize) -> Vec<ServerSpec> {
    (0..n)
        .map(|i| {
            ServerSpec::new(
                format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                11211,
            )
        })
        .collect()
}

/// Keys shaped like real cache keys, generated once with a fixed seed.
fn keys(count: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(0x6b65_7461_6d61);
    (0..count)
        .map(|_| format!("user:{}:session:{}", rng.u32(..), rng.u16(..)).into_bytes())
        .collect()
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    for n in [3usize, 100, 1000] {
        let servers = fleet(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &servers, |b, servers| {
            b.iter(|| Ring::new(black_box(servers), RingMode::LibketamaCompatible))
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let ring = Ring::new(&fleet(100), RingMode::LibketamaCompatible);
    let keys = keys(1024);
    let mut group = c.benchmark_group("ring_lookup_100_servers");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("server_for", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for key in &keys {
                acc ^= ring.server_for(black_box(key)).unwrap_or(0);
            }
            acc
        })
    });
    group.bench_function("preference_list_3", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for key in &keys {
                acc ^= ring.preference_list(black_box(key), 3)[2];
            }
            acc
        })
    });
    group.bench_function("preference_list_into_3", |b| {
        let mut out = Vec::with_capacity(3);
        b.iter(|| {
            let mut acc = 0usize;
            for key in &keys {
                ring.preference_list_into(black_box(key), 3, &mut out);
                acc ^= out[2];
            }
            acc
        })
    });
    group.bench_function("hash_key_only", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for key in &keys {
                acc ^= multiput::ring::hash_key(black_box(key));
            }
            acc
        })
    });
    group.finish();
}

/// Rendezvous (pymemcache) placement scores every server per key: O(n), compared with ketama's
/// binary search, at the fleet sizes pymemcache users run.
fn rendezvous(c: &mut Criterion) {
    let keys = keys(1024);
    let mut group = c.benchmark_group("rendezvous_server_for");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for n in [3usize, 10, 100] {
        let ring = Ring::new(&fleet(n), RingMode::Rendezvous);
        group.bench_function(format!("{n}_servers"), |b| {
            b.iter(|| {
                let mut acc = 0usize;
                for key in &keys {
                    acc ^= ring.server_for(black_box(key)).unwrap_or(0);
                }
                acc
            })
        });
    }
    group.finish();
}

criterion_group!(benches, build, lookup, rendezvous);
criterion_main!(benches);
