//! Sharing with real processes: each test spawns `iolite-ipc-probe` (the
//! fixture `fixtures/probes`, built on first use), whose stdin is a unix
//! socket to this process, and talks to it as a `Peer`.

use std::os::unix::process::ExitStatusExt;
use std::process::Child;

use iolite_ipc::probe::{Probe, sum_bytes};
use iolite_ipc::{Agg, Buf, Error, Event, Peer, Pool};

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

    fn ask(&mut self, req: Probe) -> Probe {
        self.peer.send(&req).unwrap();
        self.peer.recv().unwrap()
    }

    fn share(&mut self, pool: &Pool) {
        self.peer.share_pool(pool).unwrap();
    }

    /// Hangs up and checks the probe exits cleanly.
    fn finish(mut self) {
        self.peer.close();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "probe exited with {status}");
    }
}

fn filled(pool: &Pool, len: usize, seed: u8) -> Buf {
    let mut b = pool.alloc(len).unwrap();
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    b.extend_from_slice(&bytes).unwrap();
    b.freeze()
}

#[test]
fn child_reads_the_same_pages_including_later_owner_writes() {
    let pool = Pool::new(1 << 20).unwrap();
    let mut p = Probed::spawn();
    p.share(&pool);

    let agg: Agg = [filled(&pool, 100, 1), filled(&pool, 70_000, 2)]
        .into_iter()
        .collect();
    let want = agg.iter().map(sum_bytes).fold(0, u64::wrapping_add);
    let desc = p.peer.export(&agg).unwrap();
    assert_eq!(p.ask(Probe::Sum(desc)), Probe::Summed(want));

    // An unpublished region: the owner writes through its own mapping after
    // the pool was sent, and the child sees each write in place.
    let mut w = pool.alloc(4096).unwrap();
    w.extend_from_slice(b"first version").unwrap();
    let peek = Probe::Peek {
        pool: pool.id(),
        offset: w.fd_offset(),
        len: 13,
    };
    assert_eq!(p.ask(peek.clone()), Probe::Bytes(b"first version".to_vec()));
    w[..6].copy_from_slice(b"second");
    assert_eq!(p.ask(peek), Probe::Bytes(b"secondversion".to_vec()));
    p.finish();
}

#[test]
fn child_cannot_make_the_pool_writable() {
    let pool = Pool::new(1 << 20).unwrap();
    let keep = filled(&pool, 4096, 9);
    let mut p = Probed::spawn();
    p.share(&pool);
    let id = pool.id();
    let cases = [
        (
            "mprotect(PROT_WRITE)",
            Probe::TryMprotectWrite(id),
            libc::EACCES,
        ),
        (
            "mmap(PROT_WRITE, MAP_SHARED)",
            Probe::TryMmapWrite(id),
            libc::EPERM,
        ),
        ("ftruncate", Probe::TryFtruncate(id), libc::EPERM),
        ("pwrite", Probe::TryPwrite(id), libc::EPERM),
    ];
    for (name, req, errno) in cases {
        assert_eq!(p.ask(req), Probe::Errno(errno), "{name}");
    }
    assert_eq!(
        keep.as_slice(),
        filled(&pool, 4096, 9).as_slice(),
        "bytes untouched"
    );
    p.finish();
}

#[test]
fn a_store_through_the_read_only_mapping_kills_only_the_child() {
    let pool = Pool::new(1 << 20).unwrap();
    let start = pool.stats();
    let buf = filled(&pool, 1000, 4);
    let before = buf.as_slice().to_vec();
    let mut p = Probed::spawn();
    p.share(&pool);
    let desc = p.peer.export(&Agg::from(buf.clone())).unwrap();
    assert_eq!(p.ask(Probe::Hold(desc)), Probe::Held(1000));
    p.peer
        .send(&Probe::Store {
            pool: pool.id(),
            offset: buf.fd_offset(),
        })
        .unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "probe ended with {status}"
    );
    assert_eq!(buf.as_slice(), &before[..]);
    assert!(matches!(p.peer.recv_event(), Err(Error::Closed)));
    assert_eq!(p.peer.leases_outstanding(), 0);
    drop(buf);
    assert_eq!(pool.stats(), start);
}

#[test]
fn a_killed_peer_has_its_leases_reclaimed() {
    let pool = Pool::new(4 << 20).unwrap();
    let start = pool.stats();
    let mut p = Probed::spawn();
    p.share(&pool);
    let agg: Agg = (0..20)
        .map(|i| filled(&pool, 50 + i * 9000, i as u8))
        .collect();
    let total = agg.len() as u64;
    let desc = p.peer.export(&agg).unwrap();
    drop(agg);
    assert_eq!(p.ask(Probe::Hold(desc)), Probe::Held(total));
    assert_eq!(p.peer.leases_outstanding(), 20);
    assert_eq!(
        pool.stats().live,
        20,
        "only the child's leases hold the regions"
    );
    p.child.kill().unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(matches!(p.peer.recv_event(), Err(Error::Closed)));
    assert_eq!(p.peer.leases_outstanding(), 0);
    assert_eq!(pool.stats(), start);
}

#[test]
fn the_child_rejects_stale_foreign_and_out_of_range_descriptors() {
    let pool = Pool::new(1 << 20).unwrap();
    let never_shared = Pool::new(1 << 20).unwrap();
    let mut p = Probed::spawn();
    p.share(&pool);
    let buf = filled(&pool, 500, 1);
    let desc = p.peer.export(&Agg::from(buf.clone())).unwrap();
    let d = desc.bufs[0];

    let mut foreign = desc.clone();
    foreign.bufs[0].pool = never_shared.id();
    let mut outside = desc.clone();
    outside.bufs[0].offset = pool.memfd_size();
    outside.bufs[0].len = 1;
    for (bad, kind) in [(foreign, "UnknownPool"), (outside, "DescriptorOutOfRange")] {
        match p.ask(Probe::Import(bad)) {
            Probe::Rejected(e) => assert!(e.starts_with(kind), "{kind}: {e}"),
            other => panic!("{kind}: accepted ({other:?})"),
        }
    }
    // Use and release it, free it here, reuse the slot: the old descriptor is stale.
    p.peer.send(&Probe::Touch(desc.clone())).unwrap();
    assert!(matches!(p.peer.recv_event().unwrap(), Event::Released(1)));
    drop(buf);
    let reused = filled(&pool, 500, 2);
    assert_eq!(reused.fd_offset(), d.region);
    match p.ask(Probe::Import(desc)) {
        Probe::Rejected(e) => assert!(e.starts_with("StaleGeneration"), "{e}"),
        other => panic!("stale descriptor accepted ({other:?})"),
    }
    p.finish();
}

#[test]
fn a_hundred_thousand_send_release_cycles_leave_free_space_unchanged() {
    let pool = Pool::new(1 << 20).unwrap();
    let start = pool.stats();
    let mut p = Probed::spawn();
    p.share(&pool);
    let sizes = [1, 100, 2048, 2049, 5000, 70_000];
    for i in 0..100_000 {
        // The bytes do not matter here, only the regions: skip filling them.
        let mut b = pool.alloc(sizes[i % sizes.len()]).unwrap();
        b.advance(b.capacity()).unwrap();
        let agg = Agg::from(b.freeze());
        let desc = p.peer.export(&agg).unwrap();
        drop(agg);
        p.peer.send(&Probe::Touch(desc)).unwrap();
        match p.peer.recv_event().unwrap() {
            Event::Released(1) => {}
            other => panic!("cycle {i}: {other:?}"),
        }
    }
    assert_eq!(p.peer.leases_outstanding(), 0);
    assert_eq!(pool.stats(), start);
    p.finish();
}
