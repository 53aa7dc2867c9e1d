//! `cargo bench -p iolite-core --bench replacement`: the cache's
//! replacement bookkeeping per request, which runs under the cache's one
//! lock — a hit on a held entry, and a Zipf request stream (hits and
//! misses with their evictions) for GDSF and LRU.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use iolite_core::cache::replacement::{Policy, Replacement};

const KEYS: usize = 20_000;
const STREAM: usize = 1 << 16;

/// A deterministic xorshift, so every run benches the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Keys shaped like the server's (device, inode), sizes spread over
/// 0.5-64 KiB, and a Zipf(0.9) stream of requests over them.
fn workload() -> (Vec<(u64, u64)>, Vec<u64>, Vec<usize>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let keys: Vec<(u64, u64)> = (0..KEYS as u64).map(|i| (2049, 1_000_003 * i)).collect();
    let sizes: Vec<u64> = (0..KEYS).map(|_| 512 << (rng.next() % 8)).collect();
    let mut cdf = Vec::with_capacity(KEYS);
    let mut sum = 0.0;
    for rank in 1..=KEYS {
        sum += 1.0 / (rank as f64).powf(0.9);
        cdf.push(sum);
    }
    let stream = (0..STREAM)
        .map(|_| {
            let u = rng.unit() * sum;
            cdf.partition_point(|&c| c < u).min(KEYS - 1)
        })
        .collect();
    (keys, sizes, stream)
}

fn benches(c: &mut Criterion) {
    let (keys, sizes, stream) = workload();
    let budget = sizes.iter().sum::<u64>() / 4;

    let mut held = Replacement::new(Policy::Gdsf, u64::MAX);
    for (k, &s) in keys.iter().zip(&sizes) {
        held.admit(*k, s).unwrap();
    }
    let mut i = 0;
    c.bench_function("replacement/touch_hit", |b| {
        b.iter(|| {
            i = (i + 1) % STREAM;
            held.touch(black_box(&keys[stream[i]]))
        })
    });

    for (name, policy) in [("gdsf", Policy::Gdsf), ("lru", Policy::Lru)] {
        let mut r = Replacement::new(policy, budget);
        for &k in stream.iter().cycle().take(4 * STREAM) {
            if !r.touch(&keys[k]) {
                r.admit(keys[k], sizes[k]).unwrap();
            }
        }
        let mut i = 0;
        c.bench_function(&format!("replacement/zipf_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % STREAM;
                let k = stream[i];
                if !r.touch(black_box(&keys[k])) {
                    black_box(r.admit(keys[k], sizes[k]).unwrap());
                }
            })
        });
    }
}

criterion_group!(replacement, benches);
criterion_main!(replacement);
