//! Pools, builders and buffers within one process.

use std::io::Write;
use std::os::fd::AsRawFd;

use iolite_ipc::{Agg, Buf, Error, Pool, copied};

#[test]
fn buf_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone>() {}
    assert_traits::<Buf>();
    assert_traits::<Agg>();
    assert_traits::<Pool>();
}

#[test]
fn memfd_is_sealed_from_the_start() {
    let pool = Pool::new(64 << 10).unwrap();
    let seals =
        nix::fcntl::fcntl(pool.fd().as_raw_fd(), nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
    for s in [
        libc::F_SEAL_FUTURE_WRITE,
        libc::F_SEAL_SHRINK,
        libc::F_SEAL_GROW,
        libc::F_SEAL_SEAL,
    ] {
        assert_eq!(seals & s, s, "seal {s:#x} missing from {seals:#x}");
    }
    assert_eq!(pool.capacity(), 64 << 10);
    assert!(
        pool.memfd_size() > pool.capacity() as u64,
        "header precedes the data area"
    );
}

#[test]
fn builder_writes_then_freezes() {
    let pool = Pool::new(1 << 20).unwrap();
    let mut b = pool.alloc(10).unwrap();
    assert_eq!(b.capacity(), 128, "smallest slab class");
    write!(b, "hello").unwrap();
    b.extend_from_slice(b", world").unwrap();
    b[0] = b'H';
    let spare = b.spare_mut();
    spare[..1].copy_from_slice(b"!");
    b.advance(1).unwrap();
    assert!(matches!(
        b.advance(1000),
        Err(Error::RangeOutOfBounds { .. })
    ));
    let buf = b.freeze();
    assert_eq!(buf.as_slice(), b"Hello, world!");
    assert_eq!(&buf[7..], b"world!");
    assert_eq!(buf.slice(7..12).unwrap().as_slice(), b"world");
    assert_eq!(buf.slice(7..12).unwrap().fd_offset(), buf.fd_offset() + 7);
    assert!(matches!(
        buf.slice(3..99),
        Err(Error::RangeOutOfBounds { .. })
    ));
    assert_eq!(buf.pool_id(), pool.id());
}

#[test]
fn full_builder_refuses_more() {
    let pool = Pool::new(1 << 20).unwrap();
    let mut b = pool.alloc(128).unwrap();
    b.extend_from_slice(&[1; 100]).unwrap();
    assert!(b.extend_from_slice(&[2; 29]).is_err());
    assert_eq!(b.len(), 100, "a failed extend writes nothing");
    let err = b.write_all(&[3; 29]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WriteZero);
    assert_eq!(b.len(), 128);
}

#[test]
fn large_buffers_are_page_aligned() {
    let pool = Pool::new(1 << 20).unwrap();
    let b = pool.alloc(5000).unwrap();
    assert_eq!(b.capacity(), 8192);
    assert_eq!(b.fd_offset() % 4096, 0);
    let small: Vec<_> = (0..8).map(|_| pool.alloc(512).unwrap()).collect();
    let page = small[0].fd_offset() / 4096;
    assert!(
        small.iter().all(|s| s.fd_offset() / 4096 == page),
        "eight 512-byte slots share one page"
    );
}

#[test]
fn exhaustion_is_a_typed_error_and_space_comes_back() {
    let pool = Pool::new(64 << 10).unwrap();
    let start = pool.stats();
    let mut held = Vec::new();
    loop {
        match pool.alloc(3000) {
            Ok(b) => held.push(b.freeze()),
            Err(Error::PoolExhausted { requested, free }) => {
                assert_eq!(requested, 3000);
                assert!(free < 4096);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(held.len(), 16);
    let err = pool.alloc(1 << 30).unwrap_err();
    assert!(err.is_retryable() && err.http_status() == 503);
    held.clear();
    assert_eq!(pool.stats(), start);
    assert!(matches!(Pool::new(0), Err(Error::InvalidConfig(_))));
}

#[test]
fn last_reference_frees_and_generations_move_on() {
    let pool = Pool::new(1 << 20).unwrap();
    let mut a = pool.alloc(200).unwrap();
    a.extend_from_slice(&[1; 200]).unwrap();
    let a = a.freeze();
    let (off, generation) = (a.fd_offset(), a.generation());
    let view = Agg::from(a.slice(1..).unwrap());
    drop(a);
    assert_eq!(pool.stats().live, 1, "a slice keeps the region alive");
    drop(view);
    assert_eq!(pool.stats().live, 0);
    let b = pool.alloc(200).unwrap().freeze();
    assert_eq!(b.fd_offset(), off, "the slot is reused");
    assert_ne!(b.generation(), generation, "with a new generation");
}

#[test]
fn copy_to_vec_counts_copied_bytes() {
    let pool = Pool::new(1 << 20).unwrap();
    let mut b = pool.alloc(3000).unwrap();
    b.extend_from_slice(&[7; 3000]).unwrap();
    let agg = Agg::from(b.freeze());
    // Only this test of this binary copies bytes, so the counts are exact.
    let before = copied::total();
    let (l, r) = agg.split_at(1000).unwrap();
    let mut moved = l.concat(&r).slice(5..).unwrap();
    moved.append(&mut agg.clone());
    assert_eq!(moved.io_slices().len(), 3);
    assert_eq!(moved.len(), 2995 + 3000);
    assert_eq!(copied::total(), before, "aggregate operations copy nothing");
    let v = agg.copy_to_vec();
    assert_eq!(v.len(), 3000);
    assert_eq!(copied::total(), before + 3000);
}

/// `ShmemPmdMapped` of the mapping that contains `addr`, in bytes.
fn pmd_mapped_at(addr: usize) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((lo, hi)) = range.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&addr);
        } else if inside && let Some(kb) = line.strip_prefix("ShmemPmdMapped:") {
            return kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
                .map(|k| k << 10);
        }
    }
    None
}

#[test]
fn large_buffers_sit_on_huge_page_boundaries_and_can_be_collapsed() {
    const HUGE: usize = 2 << 20;
    let pool = Pool::new(16 << 20).unwrap();
    let _small = pool.alloc(3 * 4096).unwrap();
    let mut b = pool.alloc(2 * HUGE).unwrap();
    assert_eq!(b.fd_offset() % HUGE as u64, 0, "2 MiB-aligned memfd offset");
    let pattern: Vec<u8> = (0..b.capacity()).map(|i| (i * 7 % 251) as u8).collect();
    b.extend_from_slice(&pattern).unwrap();
    let collapsed = b.collapse_huge_pages();
    let buf = b.freeze();
    assert_eq!(buf.as_slice(), &pattern[..], "collapsing keeps the bytes");
    assert!(
        collapsed == 0 || collapsed == 2 * HUGE,
        "the chunks the buffer touches: {collapsed}"
    );
    if collapsed > 0 {
        let addr = buf.as_slice().as_ptr() as usize;
        assert_eq!(addr % HUGE, 0, "the owner's mapping is 2 MiB-aligned too");
        let pmd = pmd_mapped_at(addr).expect("the pool's mapping is in smaps");
        assert!(pmd >= collapsed, "ShmemPmdMapped {pmd} < {collapsed}");
    } else {
        eprintln!("this kernel does not collapse shmem (MADV_COLLAPSE needs Linux 6.1)");
    }
    // A small buffer in a fresh chunk moves that chunk, once; its
    // neighbour in the same chunk keeps its bytes.
    let mut first = pool.alloc(100 << 10).unwrap();
    first.extend_from_slice(&[1; 100 << 10]).unwrap();
    let first = first.freeze();
    let mut second = pool.alloc(100 << 10).unwrap();
    second.extend_from_slice(&[2; 100 << 10]).unwrap();
    let again = second.collapse_huge_pages();
    assert!(again == 0 || again == HUGE, "{again}");
    assert_eq!(
        second.collapse_huge_pages(),
        again,
        "a moved chunk stays moved"
    );
    assert!(first.iter().all(|&b| b == 1));
    assert!(second.freeze().iter().all(|&b| b == 2));
    // A pool too small for a huge page keeps the compact layout.
    let tiny = Pool::new(64 << 10).unwrap();
    assert!(tiny.memfd_size() < (1 << 20));
}
