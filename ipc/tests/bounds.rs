//! What a peer may make this side hold (issue 14): pools it shares, slices
//! it makes this side hold, pages it names; and the bytes of a peer this
//! side does not trust, reached only through the kernel.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use iolite_ipc::probe::Probe;
use iolite_ipc::{Agg, Buf, Error, Event, IoVec, Peer, Pool, Wire};

fn pair() -> (Peer<Probe>, Peer<Probe>) {
    let (a, b) = UnixStream::pair().unwrap();
    (Peer::new(a), Peer::new(b))
}

fn filled(pool: &Pool, len: usize, byte: u8) -> Buf {
    let mut b = pool.alloc(len).unwrap();
    b.extend_from_slice(&vec![byte; len]).unwrap();
    b.freeze()
}

fn share(a: &mut Peer<Probe>, b: &mut Peer<Probe>, pool: &Pool) {
    a.share_pool(pool).unwrap();
    match b.recv_event().unwrap() {
        Event::PoolShared(rp) => assert_eq!(rp.id(), pool.id()),
        other => panic!("expected a pool, got {other:?}"),
    }
}

#[test]
fn a_pool_past_the_limit_closes_the_channel() {
    let (mut a, mut b) = pair();
    b.set_pool_limit(1);
    let (one, two) = (Pool::new(1 << 16).unwrap(), Pool::new(1 << 16).unwrap());
    share(&mut a, &mut b, &one);
    assert_eq!(b.pools_received(), 1);
    a.share_pool(&two).unwrap();
    assert!(matches!(
        b.recv_event(),
        Err(Error::TooManyPools { limit: 1 })
    ));
    assert!(matches!(b.recv_event(), Err(Error::Closed)));
    assert_eq!(b.pools_received(), 1, "the refused pool is not counted");
}

#[test]
fn no_pool_at_all_where_the_limit_is_zero() {
    let (mut a, mut b) = pair();
    b.set_pool_limit(0);
    a.share_pool(&Pool::new(1 << 16).unwrap()).unwrap();
    assert!(matches!(
        b.recv_event(),
        Err(Error::TooManyPools { limit: 0 })
    ));
}

#[test]
fn a_pool_shared_under_an_id_of_this_sides_is_refused() {
    // `b` lent its pool to `a`; `a` then shares a pool of its own under
    // that id: its descriptors would be taken for `b`'s own buffers.
    let (mut a, mut b) = pair();
    let mine = Pool::new(1 << 16).unwrap();
    share(&mut b, &mut a, &mine);
    let forged = Pool::new(1 << 16).unwrap();
    a.channel()
        .send(
            &Wire::<Probe>::SharePool {
                pool: mine.id(),
                size: forged.memfd_size(),
            },
            &[forged.fd()],
        )
        .unwrap();
    assert!(matches!(b.recv_event(), Err(Error::BadPool(_))));
    assert!(matches!(b.recv_event(), Err(Error::Closed)));
}

#[test]
fn imports_past_the_slices_held_fail_and_room_comes_back_as_they_drop() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    b.set_held_limit(2);
    let three: Agg = (0..3).map(|i| filled(&pool, 100, i)).collect();
    let desc = a.export(&three).unwrap();
    assert!(matches!(
        b.import(&desc),
        Err(Error::TooManyHeld { limit: 2 })
    ));
    let two = b
        .import(&a.export(&three.slice(0..200).unwrap()).unwrap())
        .unwrap();
    assert_eq!(b.slices_held(), 2);
    let one = a.export(&three.slice(200..300).unwrap()).unwrap();
    assert!(matches!(b.import(&one), Err(Error::TooManyHeld { .. })));
    drop(two);
    assert_eq!(b.slices_held(), 0);
    let back = b.import(&one).unwrap();
    assert_eq!(b.slices_held(), 1);
    // Quotes of this side's own pool count too.
    let own = Pool::new(1 << 16).unwrap();
    share(&mut b, &mut a, &own);
    let mine = filled(&own, 10, 7);
    let quoted = b.export(&Agg::from(mine)).unwrap();
    let q = b.import(&quoted).unwrap();
    assert_eq!(b.slices_held(), 2);
    assert!(matches!(b.import(&one), Err(Error::TooManyHeld { .. })));
    drop((q, back));
    assert_eq!(b.slices_held(), 0);
}

#[test]
fn an_untrusted_peer_may_name_only_pages_it_wrote() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    b.distrust();
    let buf = filled(&pool, 100, 9);
    let desc = a.export(&Agg::from(buf)).unwrap();
    // The same region, but half a megabyte of it: pages never written.
    let mut holes = desc.clone();
    holes.bufs[0].len = 512 << 10;
    holes.bufs[0].lease += 1;
    assert!(matches!(b.import(&holes), Err(Error::NotWritten { .. })));
    // What was written is fine, and its page is remembered.
    let got = b.import(&desc).unwrap();
    assert_eq!(got.len(), 100);
    // A trusting peer does not look.
    let (mut a2, mut c) = pair();
    share(&mut a2, &mut c, &pool);
    let mut holes = a2.export(&Agg::from(filled(&pool, 10, 1))).unwrap();
    holes.bufs[0].len = 512 << 10;
    assert!(c.import(&holes).is_ok());
}

#[test]
fn an_untrusted_peers_bytes_are_sent_and_copied_by_the_kernel_only() {
    let pool = Pool::new(1 << 20).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    b.distrust();
    let desc = a.export(&Agg::from(filled(&pool, 5000, b'x'))).unwrap();
    let got = b.import(&desc).unwrap();
    let buf = &got.bufs()[0];
    assert!(buf.is_untrusted());
    assert!(
        buf.try_as_slice().is_none(),
        "no &[u8] over the peer's pool"
    );
    // Sent through raw iovecs.
    let (tx, mut rx) = UnixStream::pair().unwrap();
    let vecs = [IoVec::from_slice(b"head:"), buf.io_vec_range(10, 20)];
    assert_eq!(iolite_ipc::iov::send(tx.as_fd(), &vecs, false).unwrap(), 25);
    drop(tx);
    let mut sent = Vec::new();
    rx.read_to_end(&mut sent).unwrap();
    assert_eq!(sent, [b"head:".as_slice(), &[b'x'; 20]].concat());
    // Copied out, and counted.
    let before = iolite_ipc::copied::total();
    let mut out = b"pre".to_vec();
    buf.copy_into(&mut out).unwrap();
    assert_eq!(out.len(), 5003);
    assert!(out[3..].iter().all(|&c| c == b'x'));
    assert!(iolite_ipc::copied::total() >= before + 5000);
    assert_eq!(got.copy_to_vec(), vec![b'x'; 5000]);
}

#[test]
#[should_panic(expected = "untrusted")]
fn viewing_an_untrusted_buffer_as_a_slice_is_refused() {
    let pool = Pool::new(1 << 16).unwrap();
    let (mut a, mut b) = pair();
    share(&mut a, &mut b, &pool);
    b.distrust();
    let got = b
        .import(&a.export(&Agg::from(filled(&pool, 10, 1))).unwrap())
        .unwrap();
    let _ = got.bufs()[0].as_slice();
}
