//! The fuzz target's seed inputs (`modules/fuzz/seeds/module_answer`)
//! and what they are made of: descriptors of the harness's pools as a
//! runner would send them, answers, records with descriptors attached.

use iolite_ipc::frame::{self, HEADER_LEN};
use iolite_ipc::{Agg, AggDesc, BufDesc, Peer, Wire};
use iolite_sdk::wire::{InlineBytes, Msg, ResponseFrame};
use std::os::unix::net::UnixStream;

use super::{FdKind, OUTPUT_BODIES, msg_record, pools, record};

/// A descriptor of `range` of `OUTPUT_BODIES[i]`, as a runner sends it:
/// pool id 0 (the output pool), lease `lease` (one per slice).
pub fn output_desc(i: usize, range: std::ops::Range<usize>, lease: u64) -> BufDesc {
    let pools = pools();
    let (sock, _other) = UnixStream::pair().expect("socket pair");
    let mut p: Peer<Msg> = Peer::new(sock);
    p.adopt_pool(&pools.output_owner);
    let buf = pools.output_bufs[i]
        .slice(range)
        .expect("a range of the body");
    let d = p.export(&Agg::from(buf)).expect("export").bufs[0];
    BufDesc {
        pool: 0,
        lease,
        ..d
    }
}

/// A descriptor of `range` of the sparse pool's written page (or past
/// it, into its holes), pool id 2, under `lease`.
pub fn sparse_desc(range: std::ops::Range<usize>, lease: u64) -> BufDesc {
    let pools = pools();
    let (sock, _other) = UnixStream::pair().expect("socket pair");
    let mut p: Peer<Msg> = Peer::new(sock);
    p.adopt_pool(&pools.sparse);
    let d = p
        .export(&Agg::from(pools.sparse_buf.clone()))
        .expect("export")
        .bufs[0];
    BufDesc {
        pool: 2,
        lease,
        offset: d.offset + range.start as u64,
        len: range.len() as u64,
        ..d
    }
}

/// The request body quoted back: pool id 1 (the request pool) and the
/// lease its export granted, `id` for request `id` in shared mode.
pub fn request_desc(id: u64) -> BufDesc {
    let pools = pools();
    let (sock, _other) = UnixStream::pair().expect("socket pair");
    let mut p: Peer<Msg> = Peer::new(sock);
    p.adopt_pool(&pools.request);
    let d = p.export(&pools.request_body).expect("export").bufs[0];
    BufDesc {
        pool: 1,
        lease: id,
        ..d
    }
}

pub(crate) fn response(id: u64, status: u16, headers: &[(&str, &[u8])], body: Vec<BufDesc>) -> Msg {
    Msg::Response(ResponseFrame {
        id,
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect(),
        body: AggDesc { bufs: body },
    })
}

pub(crate) fn input(copy: bool, records: &[Vec<u8>]) -> Vec<u8> {
    input_flags(u8::from(copy), records)
}

pub(crate) fn input_flags(flags: u8, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags];
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

pub(crate) fn release(leases: Vec<u64>) -> Vec<u8> {
    let mut framed = Vec::new();
    frame::encode(
        &Wire::<Msg>::Release { leases },
        &mut framed,
        frame::DEFAULT_MAX_PAYLOAD,
    )
    .expect("a release fits a frame");
    record(1, &framed[HEADER_LEN..])
}

/// `record` with `count` descriptors attached, kinds from `first` on.
pub fn with_fds(mut record: Vec<u8>, first: FdKind, count: u8) -> Vec<u8> {
    let first = FdKind::ALL.iter().position(|&k| k == first).unwrap_or(0) as u8;
    record[0] |= 0x80 | (first << 4) | ((count & 7) << 1);
    record
}

/// An odd record sharing pool `pool` (0, 1, 2 as in descriptors) of
/// `size` bytes, with one descriptor of `kind`.
pub fn share_record(pool: u64, size: u64, kind: FdKind) -> Vec<u8> {
    let mut framed = Vec::new();
    frame::encode(
        &Wire::<Msg>::SharePool { pool, size },
        &mut framed,
        frame::DEFAULT_MAX_PAYLOAD,
    )
    .expect("a share fits a frame");
    with_fds(record(1, &framed[HEADER_LEN..]), kind, 1)
}

/// Bytes of the sparse pool's memfd.
pub fn sparse_size() -> u64 {
    pools().sparse.memfd_size()
}

/// The fuzz target's seed inputs, by file name (`modules/fuzz/seeds/`;
/// the unit test `seeds_on_disk_are_current` keeps them in step): one of
/// each thing a runner says, good and bad.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hello = OUTPUT_BODIES[0].len();
    let big = OUTPUT_BODIES[1].len();
    let mut stale = output_desc(0, 0..hello, 1);
    stale.generation ^= 1;
    vec![
        (
            "whole",
            input(
                false,
                &[
                    msg_record(&response(
                        1,
                        200,
                        &[("Content-Type", b"text/plain"), ("X-Module", b"hello")],
                        vec![output_desc(0, 0..hello, 1)],
                    )),
                    msg_record(&response(2, 200, &[("X-Bad", b"a\r\nb")], vec![])),
                    msg_record(&response(3, 201, &[], vec![request_desc(3)])),
                ],
            ),
        ),
        (
            "stream",
            input(
                false,
                &[
                    msg_record(&Msg::StreamHead {
                        id: 1,
                        status: 200,
                        headers: vec![
                            ("Content-Type".into(), b"application/octet-stream".to_vec()),
                            ("Content-Length".into(), b"1".to_vec()),
                        ],
                        len: Some(big as u64),
                    }),
                    msg_record(&Msg::StreamPart {
                        id: 1,
                        body: AggDesc {
                            bufs: vec![output_desc(1, 0..big / 2, 1)],
                        },
                    }),
                    msg_record(&Msg::StreamPart {
                        id: 1,
                        body: AggDesc {
                            bufs: vec![output_desc(1, big / 2..big, 2)],
                        },
                    }),
                    msg_record(&Msg::StreamHead {
                        id: 2,
                        status: 206,
                        headers: vec![],
                        len: Some(10),
                    }),
                    msg_record(&Msg::StreamAbort { id: 2 }),
                    msg_record(&Msg::StreamHead {
                        id: 4,
                        status: 200,
                        headers: vec![],
                        len: None,
                    }),
                    msg_record(&Msg::StreamPart {
                        id: 4,
                        body: AggDesc {
                            bufs: vec![output_desc(1, 0..big / 4, 3)],
                        },
                    }),
                    msg_record(&Msg::StreamEnd { id: 4 }),
                    msg_record(&response(3, 100, &[], vec![])),
                ],
            ),
        ),
        (
            "copy",
            input(
                true,
                &[
                    msg_record(&Msg::Data {
                        id: 1,
                        bytes: InlineBytes(b"inline".to_vec()),
                    }),
                    msg_record(&response(1, 200, &[], vec![])),
                    msg_record(&Msg::StreamHead {
                        id: 2,
                        status: 200,
                        headers: vec![("Transfer-Encoding".into(), b"chunked".to_vec())],
                        len: Some(10),
                    }),
                    msg_record(&Msg::Data {
                        id: 2,
                        bytes: InlineBytes(b"12345".to_vec()),
                    }),
                    msg_record(&Msg::StreamPart {
                        id: 2,
                        body: AggDesc::default(),
                    }),
                    msg_record(&Msg::CacheLookup { path: "/a".into() }),
                    msg_record(&response(3, 404, &[], vec![])),
                ],
            ),
        ),
        (
            "release",
            input(
                false,
                &[
                    release(vec![1, 2]),
                    msg_record(&response(4, 204, &[("ETag", b"\"x\"")], vec![])),
                    release(vec![77]),
                ],
            ),
        ),
        (
            "stale",
            input(false, &[msg_record(&response(1, 200, &[], vec![stale]))]),
        ),
        (
            "out_of_order",
            input(
                false,
                &[
                    msg_record(&Msg::StreamPart {
                        id: 1,
                        body: AggDesc::default(),
                    }),
                    msg_record(&response(9, 200, &[], vec![])),
                ],
            ),
        ),
        (
            "raw",
            input(
                false,
                &[record(0, b"\x01\x09\0\0\0\x02\x01"), record(0, b"\x03")],
            ),
        ),
        (
            "fds_on_link",
            input(
                false,
                &[
                    msg_record(&response(1, 200, &[], vec![output_desc(0, 0..hello, 1)])),
                    with_fds(
                        msg_record(&response(2, 200, &[], vec![])),
                        FdKind::Socket,
                        2,
                    ),
                    msg_record(&response(3, 200, &[], vec![])),
                ],
            ),
        ),
        (
            "handshake_pools",
            input_flags(
                2,
                &[
                    share_record(2, sparse_size(), FdKind::SparsePool),
                    msg_record(&response(1, 200, &[], vec![sparse_desc(0..4096, 1)])),
                    msg_record(&response(2, 200, &[], vec![sparse_desc(0..(1 << 20), 2)])),
                ],
            ),
        ),
        (
            "unsealed_pool",
            input_flags(
                2,
                &[
                    msg_record(&response(1, 200, &[], vec![])),
                    share_record(2, 1 << 20, FdKind::Unsealed),
                ],
            ),
        ),
        (
            "pool_under_own_id",
            input_flags(2, &[share_record(1, 1 << 20, FdKind::RequestPool)]),
        ),
        (
            "pools_past_the_limit",
            input_flags(
                2,
                &[
                    share_record(2, sparse_size(), FdKind::SparsePool),
                    share_record(2, sparse_size(), FdKind::SparsePool),
                    share_record(3, 1 << 20, FdKind::Pipe),
                ],
            ),
        ),
    ]
}
