//! Property tests: every `Agg` operation against a `Vec<u8>` model.

use iolite_ipc::{Agg, Buf, Error, Pool};
use proptest::prelude::*;

fn buf(pool: &Pool, bytes: &[u8]) -> Buf {
    let mut b = pool.alloc(bytes.len()).expect("room in the test pool");
    b.extend_from_slice(bytes).unwrap();
    b.freeze()
}

fn agg(pool: &Pool, chunks: &[Vec<u8>]) -> (Agg, Vec<u8>) {
    let a: Agg = chunks.iter().map(|c| buf(pool, c)).collect();
    (a, chunks.concat())
}

fn check(a: &Agg, model: &[u8]) {
    assert_eq!(a.len(), model.len());
    assert_eq!(a.is_empty(), model.is_empty());
    assert!(
        a.bufs().iter().all(|b| !b.is_empty()),
        "no empty slices stored"
    );
    assert_eq!(a.iter().flatten().copied().collect::<Vec<u8>>(), model);
    assert_eq!(a.into_iter().map(<[u8]>::len).sum::<usize>(), model.len());
    let io: Vec<u8> = a
        .io_slices()
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    assert_eq!(io, model);
    assert_eq!(a.copy_to_vec(), model);
}

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    Append(Vec<Vec<u8>>),
    Concat(Vec<Vec<u8>>),
    Slice(usize, usize),
    SliceFrom(usize),
    SliceTo(usize),
    SplitAtKeepLeft(usize),
    SplitAtKeepRight(usize),
    CloneThenPush(Vec<u8>),
    BufSlice(usize, usize),
}

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => proptest::collection::vec(any::<u8>(), 2000..6000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..12000;
    prop_oneof![
        chunk().prop_map(Op::Push),
        proptest::collection::vec(chunk(), 0..4).prop_map(Op::Append),
        proptest::collection::vec(chunk(), 0..4).prop_map(Op::Concat),
        (idx.clone(), idx.clone()).prop_map(|(a, b)| Op::Slice(a, b)),
        idx.clone().prop_map(Op::SliceFrom),
        idx.clone().prop_map(Op::SliceTo),
        idx.clone().prop_map(Op::SplitAtKeepLeft),
        idx.clone().prop_map(Op::SplitAtKeepRight),
        chunk().prop_map(Op::CloneThenPush),
        (idx.clone(), idx).prop_map(|(a, b)| Op::BufSlice(a, b)),
    ]
}

fn out_of_range<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::RangeOutOfBounds { .. })), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn agg_matches_vec_model(init in proptest::collection::vec(chunk(), 0..6),
                             ops in proptest::collection::vec(op(), 1..24)) {
        let pool = Pool::new(8 << 20).unwrap();
        let (mut a, mut model) = agg(&pool, &init);
        check(&a, &model);
        for op in ops {
            match op {
                Op::Push(c) => {
                    a.push(buf(&pool, &c));
                    model.extend_from_slice(&c);
                }
                Op::Append(cs) => {
                    let (mut other, m) = agg(&pool, &cs);
                    a.append(&mut other);
                    assert!(other.is_empty() && other.bufs().is_empty());
                    model.extend_from_slice(&m);
                }
                Op::Concat(cs) => {
                    let (other, m) = agg(&pool, &cs);
                    let before = a.clone();
                    a = a.concat(&other);
                    check(&before, &model);
                    check(&other, &m);
                    model.extend_from_slice(&m);
                }
                Op::Slice(s, e) => {
                    if s <= e && e <= model.len() {
                        a = a.slice(s..e).unwrap();
                        model = model[s..e].to_vec();
                    } else {
                        out_of_range(a.slice(s..e));
                    }
                }
                Op::SliceFrom(s) => {
                    if s <= model.len() {
                        a = a.slice(s..).unwrap();
                        model = model[s..].to_vec();
                    } else {
                        out_of_range(a.slice(s..));
                    }
                }
                Op::SliceTo(e) => {
                    if e <= model.len() {
                        a = if e == 0 { a.slice(..e) } else { a.slice(..=e - 1) }.unwrap();
                        model.truncate(e);
                    } else {
                        out_of_range(a.slice(..e));
                    }
                }
                Op::SplitAtKeepLeft(n) | Op::SplitAtKeepRight(n) if n > model.len() => {
                    out_of_range(a.split_at(n));
                }
                Op::SplitAtKeepLeft(n) => {
                    let (l, r) = a.split_at(n).unwrap();
                    check(&r, &model[n..]);
                    a = l;
                    model.truncate(n);
                }
                Op::SplitAtKeepRight(n) => {
                    let (l, r) = a.split_at(n).unwrap();
                    check(&l, &model[..n]);
                    a = r;
                    model.drain(..n);
                }
                Op::CloneThenPush(c) => {
                    let snapshot = a.clone();
                    a.push(buf(&pool, &c));
                    check(&snapshot, &model);
                    model.extend_from_slice(&c);
                }
                Op::BufSlice(s, e) => {
                    if let Some(b) = a.bufs().first().cloned() {
                        let first = b.as_slice().to_vec();
                        if s <= e && e <= b.len() {
                            let sub = b.slice(s..e).unwrap();
                            prop_assert_eq!(sub.as_slice(), &first[s..e]);
                            prop_assert_eq!(sub.fd_offset(), b.fd_offset() + s as u64);
                            prop_assert_eq!(sub.generation(), b.generation());
                        } else {
                            out_of_range(b.slice(s..e));
                        }
                    }
                }
            }
            check(&a, &model);
        }
        drop(a);
        prop_assert_eq!(pool.stats().live, 0, "every region freed with its last Buf");
        prop_assert_eq!(pool.free_bytes(), pool.capacity());
    }
}
