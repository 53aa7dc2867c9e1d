//! The channel and the peer protocol within one process (both ends of a
//! socketpair): frame errors, pool announcements, descriptors and leases.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use iolite_ipc::probe::Probe;
use iolite_ipc::{Agg, AggDesc, Buf, BufDesc, Channel, Error, Event, Peer, Pool, Wire};

fn pair() -> (Peer<Probe>, Peer<Probe>) {
    let (a, b) = UnixStream::pair().unwrap();
    (Peer::new(a), Peer::new(b))
}

fn filled(pool: &Pool, len: usize, byte: u8) -> Buf {
    let mut b = pool.alloc(len).unwrap();
    b.extend_from_slice(&vec![byte; len]).unwrap();
    b.freeze()
}

/// Owner `a` shares `pool` with `b`; returns the pool as `b` sees it.
fn share(a: &mut Peer<Probe>, b: &mut Peer<Probe>, pool: &Pool) {
    a.share_pool(pool).unwrap();
    match b.recv_event().unwrap() {
        Event::PoolShared(rp) => assert_eq!(rp.id(), pool.id()),
        other => panic!("expected a pool, got {other:?}"),
    }
}

#[test]
fn malformed_frames_close_the_channel_with_typed_errors() {
    type Check = fn(&Error) -> bool;
    let cases: &[(&str, &[u8], bool, Check)] = &[
        ("wrong version", &[2, 0, 0, 0, 0], false, |e| {
            matches!(
                e,
                Error::WrongVersion {
                    found: 2,
                    expected: 1
                }
            )
        }),
        ("version zero", &[0], false, |e| {
            matches!(e, Error::WrongVersion { found: 0, .. })
        }),
        (
            "oversized, payload never sent",
            &[1, 0, 0, 0, 0x40],
            false,
            |e| {
                matches!(
                    e,
                    Error::Oversized {
                        len: 0x4000_0000,
                        ..
                    }
                )
            },
        ),
        (
            "garbage payload",
            &[1, 2, 0, 0, 0, 0xff, 0xff],
            false,
            |e| matches!(e, Error::Malformed(_)),
        ),
        ("trailing bytes", &[1, 3, 0, 0, 0, 2, 19, 0], false, |e| {
            matches!(e, Error::Malformed(_))
        }),
        ("truncated", &[1, 9, 0, 0, 0, 2, 19], true, |e| {
            matches!(e, Error::Truncated { have: 7 })
        }),
        ("closed between frames", &[], true, |e| {
            matches!(e, Error::Closed)
        }),
    ];
    for (name, bytes, hang_up, want) in cases {
        let (mut w, r) = UnixStream::pair().unwrap();
        let mut ch = Channel::new(r);
        w.write_all(bytes).unwrap();
        // Unless the case hangs up, the writer stays open: the error must
        // come from what was sent, not from waiting for more.
        let writer = (!*hang_up).then_some(w);
        let err = ch.recv::<Wire<Probe>>().unwrap_err();
        assert!(want(&err), "{name}: got {err:?}");
        assert!(ch.is_closed(), "{name}: channel must be closed");
        assert!(
            matches!(ch.recv::<Wire<Probe>>(), Err(Error::Closed)),
            "{name}"
        );
        drop(writer);
    }
}

#[test]
fn frames_round_trip_with_fds_in_order() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut tx, mut rx) = (Channel::new(a), Channel::new(b));
    let pool = Pool::new(4096).unwrap();
    tx.send(&Wire::Msg(Probe::Done), &[]).unwrap();
    tx.send(&Wire::<Probe>::SharePool { pool: 1, size: 2 }, &[pool.fd()])
        .unwrap();
    tx.send(&Wire::Msg(Probe::Bytes(vec![9; 100_000])), &[])
        .unwrap();
    assert!(matches!(
        rx.recv::<Wire<Probe>>().unwrap(),
        Wire::Msg(Probe::Done)
    ));
    assert!(matches!(
        rx.recv::<Wire<Probe>>().unwrap(),
        Wire::SharePool { pool: 1, size: 2 }
    ));
    assert_eq!(rx.take_fds(1).unwrap().len(), 1);
    match rx.recv::<Wire<Probe>>().unwrap() {
        Wire::Msg(Probe::Bytes(v)) => assert_eq!(v, vec![9; 100_000]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        rx.take_fds(1),
        Err(Error::MissingFds {
            needed: 1,
            available: 0
        })
    ));
}

#[test]
fn small_limit_rejects_large_frames_both_ways() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut tx = Channel::with_max_payload(a, 64);
    let mut rx = Channel::with_max_payload(b, 64);
    assert!(matches!(
        tx.send(&Wire::Msg(Probe::Bytes(vec![0; 100])), &[]),
        Err(Error::Oversized { .. })
    ));
    let mut big = Channel::new(tx.stream().try_clone().unwrap());
    big.send(&Wire::Msg(Probe::Bytes(vec![0; 100])), &[])
        .unwrap();
    assert!(matches!(
        rx.recv::<Wire<Probe>>(),
        Err(Error::Oversized { max: 64, .. })
    ));
}

#[test]
fn descriptors_become_bufs_over_the_same_memory_and_leases_come_back() {
    let pool = Pool::new(1 << 20).unwrap();
    let start = pool.stats();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    let agg = {
        let whole: Agg = [filled(&pool, 100, 1), filled(&pool, 10_000, 2)]
            .into_iter()
            .collect();
        whole.slice(50..5000).unwrap()
    };
    let desc = a.export(&agg).unwrap();
    assert_eq!(a.leases_outstanding(), 2);
    drop(agg);
    assert_eq!(pool.stats().live, 2, "leases keep the regions alive");
    let got = b.import(&desc).unwrap();
    assert_eq!(got.len(), 4950);
    assert_eq!(got.bufs()[0].as_slice(), &[1; 50][..]);
    assert!(got.bufs()[1].iter().all(|&x| x == 2));
    assert_eq!(got.bufs()[1].fd_offset(), desc.bufs[1].offset);
    assert!(matches!(b.import(&desc), Err(Error::DuplicateLease { .. })));
    drop(got);
    assert_eq!(b.releases_pending(), 2);
    assert_eq!(b.flush_releases().unwrap(), 2);
    assert!(matches!(a.recv_event().unwrap(), Event::Released(2)));
    assert_eq!(a.leases_outstanding(), 0);
    assert_eq!(pool.stats(), start);
}

#[test]
fn stale_foreign_and_out_of_range_descriptors_are_rejected() {
    let pool = Pool::new(1 << 20).unwrap();
    let other = Pool::new(1 << 20).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    let buf = filled(&pool, 300, 5);
    let desc = a.export(&Agg::from(buf.clone())).unwrap();
    let d = desc.bufs[0];
    let one = |d: BufDesc| AggDesc { bufs: vec![d] };
    let data_end = pool.memfd_size();
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, BufDesc, Check)> = vec![
        (
            "foreign pool",
            BufDesc {
                pool: other.id(),
                ..d
            },
            |e| matches!(e, Error::UnknownPool { .. }),
        ),
        ("made-up pool", BufDesc { pool: 42, ..d }, |e| {
            matches!(e, Error::UnknownPool { pool: 42 })
        }),
        (
            "past the end",
            BufDesc {
                offset: data_end - 10,
                len: 20,
                ..d
            },
            |e| matches!(e, Error::DescriptorOutOfRange { .. }),
        ),
        ("length overflow", BufDesc { len: u64::MAX, ..d }, |e| {
            matches!(e, Error::DescriptorOutOfRange { .. })
        }),
        (
            "before its region",
            BufDesc {
                offset: d.region - 1,
                ..d
            },
            |e| matches!(e, Error::DescriptorOutOfRange { .. }),
        ),
        (
            "in the header",
            BufDesc {
                region: 0,
                offset: 0,
                ..d
            },
            |e| matches!(e, Error::DescriptorOutOfRange { .. }),
        ),
        (
            "unaligned region",
            BufDesc {
                region: d.region + 1,
                offset: d.region + 1,
                ..d
            },
            |e| matches!(e, Error::DescriptorOutOfRange { .. }),
        ),
        (
            "wrong generation",
            BufDesc {
                generation: d.generation + 2,
                ..d
            },
            |e| matches!(e, Error::StaleGeneration { .. }),
        ),
    ];
    for (name, bad, want) in cases {
        let err = b.import(&one(bad)).unwrap_err();
        assert!(want(&err), "{name}: got {err:?}");
    }
    // A descriptor that outlived its region: released, freed, slot reused.
    drop(b.import(&desc).unwrap());
    b.flush_releases().unwrap();
    assert!(matches!(a.recv_event().unwrap(), Event::Released(1)));
    drop(buf);
    let reused = filled(&pool, 300, 6);
    assert_eq!(reused.fd_offset(), d.region, "same slot");
    let err = b.import(&desc).unwrap_err();
    assert!(
        matches!(err, Error::StaleGeneration { found, .. } if found == d.generation),
        "{err:?}"
    );
    assert_eq!(b.leases_held(), 0);
}

#[test]
fn exporting_needs_the_pool_shared_with_that_peer() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut a, _b) = pair();
    let err = a.export(&Agg::from(filled(&pool, 10, 1))).unwrap_err();
    assert!(matches!(err, Error::PoolNotShared { .. }));
}

#[test]
fn own_pool_descriptors_come_back_through_their_lease() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    let buf = filled(&pool, 5000, 3);
    let desc = a.export(&Agg::from(buf.clone())).unwrap();
    // The peer names our buffer back to us (as a module's response would).
    let back = a.import(&desc).unwrap();
    assert!(
        back.bufs()[0].same_as(&buf),
        "the very same region, no copy"
    );
    let mut wrong = desc.clone();
    wrong.bufs[0].lease += 100;
    assert!(matches!(a.import(&wrong), Err(Error::UnknownLease { .. })));
    let mut wrong = desc.clone();
    wrong.bufs[0].len = 10_000;
    assert!(matches!(
        a.import(&wrong),
        Err(Error::DescriptorOutOfRange { .. })
    ));
}

#[test]
fn releasing_an_unknown_lease_closes_the_channel_and_reclaims() {
    let pool = Pool::new(1 << 20).unwrap();
    let start = pool.stats();
    let (a, b) = UnixStream::pair().unwrap();
    let mut owner: Peer<Probe> = Peer::new(a);
    let mut evil = Channel::new(b);
    owner.share_pool(&pool).unwrap();
    owner.export(&Agg::from(filled(&pool, 64, 1))).unwrap();
    assert_eq!(owner.leases_outstanding(), 1);
    evil.send(&Wire::<Probe>::Release { leases: vec![777] }, &[])
        .unwrap();
    assert!(matches!(
        owner.recv_event(),
        Err(Error::UnknownLease { lease: 777 })
    ));
    assert_eq!(
        owner.leases_outstanding(),
        0,
        "a misbehaving peer loses its leases"
    );
    assert_eq!(pool.stats(), start);
    assert!(matches!(owner.recv_event(), Err(Error::Closed)));
}

#[test]
fn bad_pool_announcements_are_refused_before_mapping() {
    let unsealed = memfd::MemfdOptions::default().create("unsealed").unwrap();
    unsealed.as_file().set_len(8192).unwrap();
    let pool = Pool::new(4096).unwrap();
    type Check = fn(&Error) -> bool;
    let cases: Vec<(
        &str,
        Wire<Probe>,
        Option<std::os::fd::BorrowedFd<'_>>,
        Check,
    )> = vec![
        (
            "no fd",
            Wire::SharePool {
                pool: pool.id(),
                size: pool.memfd_size(),
            },
            None,
            |e| matches!(e, Error::MissingFds { .. }),
        ),
        (
            "unsealed memfd",
            Wire::SharePool {
                pool: 9,
                size: 8192,
            },
            Some(unsealed.as_file().as_fd()),
            |e| matches!(e, Error::MissingSeals { .. }),
        ),
        (
            "wrong size",
            Wire::SharePool {
                pool: pool.id(),
                size: 4096,
            },
            Some(pool.fd()),
            |e| matches!(e, Error::BadPool(_)),
        ),
        (
            "wrong id",
            Wire::SharePool {
                pool: 7,
                size: pool.memfd_size(),
            },
            Some(pool.fd()),
            |e| matches!(e, Error::BadPool(_)),
        ),
    ];
    for (name, wire, fd, want) in cases {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a);
        let mut rx: Peer<Probe> = Peer::new(b);
        tx.send(&wire, fd.as_slice()).unwrap();
        let err = rx.recv_event().unwrap_err();
        assert!(want(&err), "{name}: got {err:?}");
        assert!(
            matches!(rx.recv_event(), Err(Error::Closed)),
            "{name}: closed"
        );
    }
}

#[test]
fn discarded_descriptors_release_their_leases() {
    let pool = Pool::new(1 << 20).unwrap();
    let start = pool.stats();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    let agg: Agg = (0..3).map(|i| filled(&pool, 1000, i)).collect();
    let desc = a.export(&agg).unwrap();
    drop(agg);
    let kept = b
        .import(&AggDesc {
            bufs: vec![desc.bufs[0]],
        })
        .unwrap();
    assert_eq!(b.discard(&desc), 2, "the imported one is left alone");
    b.flush_releases().unwrap();
    assert!(matches!(a.recv_event().unwrap(), Event::Released(2)));
    assert_eq!(a.leases_outstanding(), 1);
    drop(kept);
    b.flush_releases().unwrap();
    assert!(matches!(a.recv_event().unwrap(), Event::Released(1)));
    assert_eq!(pool.stats(), start);
}

#[test]
fn many_releases_are_split_into_frames_and_batched_by_send() {
    let pool = Pool::new(8 << 20).unwrap();
    let start = pool.stats();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    b.set_release_batch(10_000);
    let buf = filled(&pool, 128, 1);
    let total = 2 * iolite_ipc::RELEASES_PER_FRAME + 5;
    let descs: Vec<AggDesc> = (0..total)
        .map(|_| a.export(&Agg::from(buf.clone())).unwrap())
        .collect();
    drop(buf);
    for d in &descs {
        drop(b.import(d).unwrap());
    }
    assert_eq!(b.releases_pending(), total);
    // Below the batch size, a message goes out alone...
    b.send(&Probe::Done).unwrap();
    assert!(matches!(
        a.recv_event().unwrap(),
        Event::Message(Probe::Done)
    ));
    // ...and the flush before blocking sends every release, in several frames.
    let reader = std::thread::spawn(move || {
        let mut released = 0;
        while released < total {
            match a.recv_event().unwrap() {
                Event::Released(n) => {
                    assert!(n <= iolite_ipc::RELEASES_PER_FRAME);
                    released += n;
                }
                other => panic!("{other:?}"),
            }
        }
        a.send(&Probe::Done).unwrap();
        a
    });
    assert_eq!(b.recv().unwrap(), Probe::Done);
    let a = reader.join().unwrap();
    assert_eq!(a.leases_outstanding(), 0);
    assert_eq!(pool.stats(), start);
}

#[test]
fn queued_frames_leave_together_and_a_non_blocking_side_never_waits() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut a: Peer<Probe> = Peer::new(a);
    let mut b: Peer<Probe> = Peer::new(b);
    // Nothing has arrived: no event, no error, the channel stays open.
    assert!(b.try_recv_event().unwrap().is_none());
    let pool = Pool::new(1 << 20).unwrap();
    a.share_pool(&pool).unwrap();
    assert!(matches!(
        b.try_recv_event().unwrap(),
        Some(Event::PoolShared(_))
    ));
    let buf = filled(&pool, 64, 9);
    let desc = a.export(&Agg::from(buf)).unwrap();
    // Queued: nothing written until the flush, then both at once.
    a.queue(&Probe::Sum(desc.clone())).unwrap();
    a.queue(&Probe::Touch(AggDesc::default())).unwrap();
    assert!(a.queued() > 0);
    assert!(b.try_recv_event().unwrap().is_none(), "not flushed yet");
    assert!(a.flush(true).unwrap());
    assert_eq!(a.queued(), 0);
    let Some(Event::Message(Probe::Sum(got))) = b.try_recv_event().unwrap() else {
        panic!("expected Sum");
    };
    assert_eq!(got, desc);
    assert!(b.has_frame(), "the queued frames came in one read");
    assert!(matches!(
        b.try_recv_event().unwrap(),
        Some(Event::Message(Probe::Touch(_)))
    ));
    assert!(b.try_recv_event().unwrap().is_none());
    // A release queued on the non-blocking side goes out in front of its
    // next message.
    drop(b.import(&desc).unwrap());
    assert_eq!(b.releases_pending(), 1);
    b.queue(&Probe::Touch(AggDesc::default())).unwrap();
    assert_eq!(b.releases_pending(), 0);
    assert!(b.flush(false).unwrap());
    assert!(matches!(a.recv_event().unwrap(), Event::Released(1)));
    assert!(matches!(
        a.recv_event().unwrap(),
        Event::Message(Probe::Touch(_))
    ));
    assert_eq!(a.leases_outstanding(), 0);
}

#[test]
fn a_sibling_channel_adopts_pools_shared_on_another() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut control_a, mut control_b) = pair();
    share(&mut control_a, &mut control_b, &pool);
    let remote = control_b.remote_pools().next().unwrap().clone();
    // A second channel between the same two sides: no pool sent on it.
    let (mut a, mut b) = pair();
    a.adopt_pool(&pool);
    b.adopt_remote(&remote);
    let desc = a.export(&Agg::from(filled(&pool, 32, 5))).unwrap();
    let got = b.import(&desc).unwrap();
    assert_eq!(got.copy_to_vec(), vec![5; 32]);
    // Leases are per channel: the release comes back on this one.
    drop(got);
    b.flush_releases().unwrap();
    assert!(matches!(a.recv_event().unwrap(), Event::Released(1)));
    assert_eq!(a.leases_outstanding(), 0);
    // A channel that adopted nothing still refuses the pool.
    let (mut c, _d) = pair();
    assert!(matches!(
        c.export(&Agg::from(filled(&pool, 8, 1))),
        Err(Error::PoolNotShared { .. })
    ));
}
