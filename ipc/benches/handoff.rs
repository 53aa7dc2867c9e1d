//! Handing bytes to another process: an aggregate by descriptor against the
//! same bytes through a unix socket, and a descriptor round trip against a
//! bare 64-byte socket ping-pong, all with the same child (`iolite-ipc-probe`,
//! the fixture `fixtures/probes`, built on first use) in the same run. The
//! child reads (adds up) every byte in both hand-offs.
//!
//! `cargo bench -p iolite-ipc --bench handoff`; `ipc/README.md` has the table.

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use iolite_ipc::probe::{Probe, sum_bytes};
use iolite_ipc::{Agg, Event, Peer, Pool};

const SIZES: [(usize, &str); 4] = [
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (16 << 20, "16MiB"),
];
/// Aggregates are built of slices of at most this many bytes.
const CHUNK: usize = 1 << 20;

struct Probed {
    child: Child,
    peer: Peer<Probe>,
}

impl Probed {
    fn spawn() -> Probed {
        let (child, ours) =
            iolite_fixtures::spawn_on_socket("iolite-fixture-probes", "iolite-ipc-probe");
        Probed {
            child,
            peer: Peer::new(ours),
        }
    }
}

impl Drop for Probed {
    fn drop(&mut self) {
        self.peer.close();
        let _ = self.child.wait();
    }
}

fn aggregate(pool: &Pool, len: usize) -> Agg {
    let mut agg = Agg::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut b = pool.alloc(n).expect("bench pool has room");
        let fill: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        b.extend_from_slice(&fill).expect("fits");
        agg.push(b.freeze());
        left -= n;
    }
    agg
}

fn handoff(c: &mut Criterion) {
    let pool = Pool::new(40 << 20).expect("pool");
    let mut p = Probed::spawn();
    p.peer.share_pool(&pool).expect("share");
    let mut group = c.benchmark_group("handoff");
    group
        .sample_size(60)
        .measurement_time(Duration::from_secs(6));
    for (len, name) in SIZES {
        let agg = aggregate(&pool, len);
        let want = agg.iter().map(sum_bytes).fold(0, u64::wrapping_add);
        let bytes = agg.copy_to_vec();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("aggregate", name), |bench| {
            bench.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let desc = p.peer.export(&agg).expect("export");
                    p.peer.send(&Probe::Sum(desc)).expect("send");
                    assert_eq!(p.peer.recv().expect("reply"), Probe::Summed(want));
                }
                t.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("socket", name), |bench| {
            bench.iter_custom(|iters| {
                p.peer
                    .send(&Probe::Stream {
                        len: len as u64,
                        rounds: iters,
                    })
                    .expect("send");
                assert_eq!(p.peer.recv().expect("ready"), Probe::Done);
                let mut s = p.peer.channel().stream();
                let mut sum = [0u8; 8];
                let t = Instant::now();
                for _ in 0..iters {
                    s.write_all(&bytes).expect("write");
                    s.read_exact(&mut sum).expect("read");
                    assert_eq!(u64::from_le_bytes(sum), want);
                }
                t.elapsed()
            })
        });
    }
    group.finish();

    // The floor: this process reading the same bytes, from its own heap and
    // from the pool, with no other process involved.
    let mut group = c.benchmark_group("local-read");
    group.sample_size(60);
    for (len, name) in [SIZES[2], SIZES[3]] {
        let agg = aggregate(&pool, len);
        let bytes = agg.copy_to_vec();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("heap", name), |bench| {
            bench.iter(|| sum_bytes(&bytes))
        });
        group.bench_function(BenchmarkId::new("pool", name), |bench| {
            bench.iter(|| agg.iter().map(sum_bytes).fold(0, u64::wrapping_add))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("roundtrip");
    group
        .sample_size(100)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("ping-pong-64B", |bench| {
        bench.iter_custom(|iters| {
            p.peer.send(&Probe::PingPong(iters)).expect("send");
            assert_eq!(p.peer.recv().expect("ready"), Probe::Done);
            let mut s = p.peer.channel().stream();
            let mut msg = [7u8; 64];
            let t = Instant::now();
            for _ in 0..iters {
                s.write_all(&msg).expect("write");
                s.read_exact(&mut msg).expect("read");
            }
            t.elapsed()
        })
    });
    for (len, name) in [SIZES[0], SIZES[3]] {
        let agg = aggregate(&pool, len);
        group.bench_function(BenchmarkId::new("descriptor", name), |bench| {
            bench.iter(|| {
                let desc = p.peer.export(&agg).expect("export");
                p.peer.send(&Probe::Touch(desc)).expect("send");
                match p.peer.recv_event().expect("release") {
                    Event::Released(n) => assert_eq!(n, agg.bufs().len()),
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
