//! Hidden entry point for the `module_answer` fuzz target (`modules/fuzz`):
//! what a runner process (untrusted) sends on a data link, through the
//! server's own receive path, without a runner. Built with the `fuzzing`
//! feature (`modules/fuzz` enables it; the re-export is
//! `iolite_modules::fuzzing`) and for this crate's tests (`tests.rs`).
//!
//! [`run`] plays one link: the bytes go into one end of a socket pair; the
//! other end is a server [`Peer`] set up as `Link` sets up its own (the
//! module's request pool and the runner's output pool adopted,
//! [`IN_FLIGHT`] requests in flight, each with a body exported from the
//! request pool, as `Link::submit` does). Frames are received and handled
//! by the link's own `receive`, as `Link::read_some` calls it (a
//! `CacheLookup` as for a module without a cache); the first error ends
//! the link as `Link::fail` does (every request still in flight is
//! dropped: 502). Each request's outcome then goes through the real
//! `to_response`, as `ProcessModule::exchange` does.
//!
//! The input is a flags byte (bit 0: copy mode), then records of a tag
//! byte, a u16 length (little-endian) and that many bytes. An even tag's
//! bytes go on the socket as they are (any framing, any payload); an odd
//! tag's bytes are one frame's payload, framed by the runner's encoder: if
//! they decode as a `Wire<Msg>`, the pool ids 0 and 1 in its descriptors
//! are first replaced by the real ids of the output pool and the request
//! pool (which a fuzzer could not guess: they hold the process id), so that
//! descriptors can pass the pool lookup and reach the bounds, generation
//! and lease checks.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use iolite_core::{Body, Response, StreamBody};
use iolite_ipc::frame::{self, HEADER_LEN, VERSION};
use iolite_ipc::{Agg, AggDesc, Buf, BufDesc, Event, Peer, Pool, RemotePool, Wire};
use iolite_sdk::wire::{InlineBytes, Msg, ResponseFrame};
use tokio::sync::{Semaphore, oneshot};

use super::protocol::{Answer, Flight, LinkConfig, State, receive};
use crate::process::answer::to_response;

/// Header fields only the server writes (a module's are refused).
pub use crate::process::answer::SERVER_FIELDS;
/// Requests in flight on the link, ids `1..=IN_FLIGHT`.
pub const IN_FLIGHT: u64 = 4;
/// The request body each request carries (a slice of the request pool).
pub const REQUEST_BODY: &[u8] = b"request body from the client\n";
/// Bytes of the runner's answers, in the output pool (regions allocated
/// in this order when the harness starts, so their offsets and generations
/// are the same in every run).
pub const OUTPUT_BODIES: [&[u8]; 2] = [b"hello from the module\n", &[b'x'; 5000]];
/// The most bytes of one input put on the socket (the socket buffer holds
/// them all: nothing waits).
const MAX_STREAM: usize = 64 << 10;
/// The mount prefix, in the log lines `to_response` writes.
const PREFIX: &str = "/fuzz";

/// The pools the harness shares between runs: the module's request pool
/// (owned, as the server owns it), the runner's output pool (owned here in
/// place of a runner) and the server's read-only mapping of it (received
/// over a real socket, as from a runner).
#[derive(Debug)]
struct Pools {
    request: Pool,
    request_body: Agg,
    output: RemotePool,
    /// The output pool's owner side, and its regions (kept allocated).
    output_owner: Pool,
    output_bufs: Vec<Buf>,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let request = Pool::with_name("iolite-fuzz-requests", 1 << 20).expect("request pool");
        let mut b = request.alloc(REQUEST_BODY.len()).expect("request body");
        b.extend_from_slice(REQUEST_BODY).expect("request body");
        let request_body = Agg::from(b.freeze());
        let output_owner = Pool::with_name("iolite-fuzz-output", 1 << 20).expect("output pool");
        let output_bufs = OUTPUT_BODIES
            .iter()
            .map(|bytes| {
                let mut b = output_owner.alloc(bytes.len()).expect("output buffer");
                b.extend_from_slice(bytes).expect("output buffer");
                b.freeze()
            })
            .collect();
        let (a, b) = UnixStream::pair().expect("socket pair");
        let mut runner: Peer<Msg> = Peer::new(b);
        runner
            .share_pool(&output_owner)
            .expect("share the output pool");
        let mut server: Peer<Msg> = Peer::new(a);
        let output = match server.recv_event() {
            Ok(Event::PoolShared(rp)) => rp,
            other => panic!("the output pool did not arrive: {other:?}"),
        };
        Pools {
            request,
            request_body,
            output,
            output_owner,
            output_bufs,
        }
    })
}

/// The ids that pool ids 0 and 1 in an odd record stand for.
pub fn pool_ids() -> [u64; 2] {
    let p = pools();
    [p.output.id(), p.request.id()]
}

/// What became of one request of the link.
#[derive(Debug)]
pub struct Outcome {
    /// The request id.
    pub id: u64,
    /// The response the client gets (from `to_response`, or the 502 of a
    /// request its runner never answered).
    pub response: Response,
    /// Whether the runner answered it (whole or the head of a stream).
    pub answered: bool,
    /// A streamed body's parts received before the link ended.
    pub parts: Vec<Agg>,
}

/// What one link did with the input.
#[derive(Debug)]
pub struct Run {
    /// One per request, by id.
    pub outcomes: Vec<Outcome>,
    /// Why the link ended: a protocol error (the runner would be
    /// replaced), or the socket closing ("runner gone").
    pub ended: String,
    /// Whether the link would replace the runner.
    pub replace: bool,
}

/// Plays `input` (see the module doc) as a runner's side of one data link.
pub fn run(input: &[u8]) -> Run {
    let pools = pools();
    let Some((&flags, records)) = input.split_first() else {
        return run_stream(pools, false, &[]);
    };
    let stream = stream_of(records, pool_ids());
    run_stream(pools, flags & 1 == 1, &stream)
}

/// The bytes an input puts on the socket.
pub fn stream_of(mut records: &[u8], ids: [u64; 2]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [tag, l0, l1, rest @ ..] = records {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
        let (bytes, next) = rest.split_at(len);
        records = next;
        if tag & 1 == 0 {
            out.extend_from_slice(bytes);
        } else {
            match frame::decode_payload::<Wire<Msg>>(bytes) {
                Ok(mut wire) => {
                    if let Wire::Msg(msg) = &mut wire {
                        remap(msg, ids);
                    }
                    if frame::encode(&wire, &mut out, frame::DEFAULT_MAX_PAYLOAD).is_err() {
                        out.extend_from_slice(bytes);
                    }
                }
                Err(_) => {
                    out.push(VERSION);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        if out.len() >= MAX_STREAM {
            out.truncate(MAX_STREAM);
            break;
        }
    }
    out
}

/// One record of an input: `tag`, then `bytes` (at most 65535).
pub fn record(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("a record holds at most 65535 bytes");
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// An odd record holding `msg` as a frame payload (pool ids as given).
pub fn msg_record(msg: &Msg) -> Vec<u8> {
    let mut framed = Vec::new();
    frame::encode(&Wire::Msg(msg), &mut framed, frame::DEFAULT_MAX_PAYLOAD)
        .expect("a message fits a frame");
    record(1, &framed[HEADER_LEN..])
}

fn remap(msg: &mut Msg, ids: [u64; 2]) {
    let fix = |d: &mut AggDesc| {
        for b in &mut d.bufs {
            if let Some(&id) = ids.get(b.pool as usize) {
                b.pool = id;
            }
        }
    };
    match msg {
        Msg::Response(f) => fix(&mut f.body),
        Msg::Request(f) => fix(&mut f.body),
        Msg::StreamPart { body, .. } => fix(body),
        Msg::Cached { body: Some(body) } => fix(body),
        _ => {}
    }
}

fn run_stream(pools: &Pools, copy: bool, stream: &[u8]) -> Run {
    let (server_end, mut runner_end) = UnixStream::pair().expect("socket pair");
    let cfg = LinkConfig {
        name: Arc::from(PREFIX),
        pool: pools.request.clone(),
        cache_pool: None,
        timeout: Duration::from_secs(30),
        copy,
        lanes: 1,
        lane_stall: Duration::from_millis(50),
        lane_idle: Duration::from_secs(2),
        metrics: None,
        room: None,
        copy_cap: 1 << 20,
    };
    // As `Link::open`.
    let mut peer: Peer<Msg> = Peer::new(server_end);
    super::reader::bound(&mut peer);
    peer.adopt_pool(&cfg.pool);
    peer.adopt_remote(&pools.output);
    // As `Link::submit`, for requests 1..=IN_FLIGHT.
    let credits = Arc::new(Semaphore::new(IN_FLIGHT as usize));
    let mut inflight = HashMap::new();
    let mut replies = Vec::new();
    for id in 1..=IN_FLIGHT {
        if !copy {
            peer.export(&pools.request_body)
                .expect("export a request body");
        }
        let (tx, rx) = oneshot::channel();
        replies.push((id, rx));
        inflight.insert(
            id,
            Flight {
                reply: Some(tx),
                stream: None,
                deadline: Instant::now() + cfg.timeout,
                inline: Vec::new(),
                gone_told: false,
                parts_left: 0,
                last_part: None,
                _credit: credits.clone().try_acquire_owned().expect("a credit"),
            },
        );
    }
    let mut st = State {
        peer,
        inflight,
        closed: false,
        progress: Instant::now(),
        lookup_until: 0,
    };
    runner_end
        .write_all(stream)
        .expect("the socket buffer holds the stream");
    drop(runner_end);

    let (ended, replace) = loop {
        if let Err(why) = receive_one(&mut st, &cfg) {
            break why;
        }
    };
    // As `Link::fail`: requests still in flight fail, streams end short.
    st.closed = true;
    st.peer.close();
    drop(std::mem::take(&mut st.inflight));

    let name: Arc<str> = Arc::from(PREFIX);
    // As `ProcessModule::exchange`, then the connection's error path.
    let outcomes = replies
        .into_iter()
        .map(|(id, mut rx)| {
            let (answer, answered) = match rx.try_recv() {
                Ok(Answer::Whole(frame, body)) => (to_response(&name, frame, body), true),
                Ok(Answer::Stream(head, len, parts)) => (
                    to_response(
                        &name,
                        head,
                        Body::Stream(Arc::new(match len {
                            Some(len) => StreamBody::new(len, parts),
                            None => StreamBody::open_ended(parts),
                        })),
                    ),
                    true,
                ),
                Err(_) => (
                    Err(iolite_core::Error::upstream(
                        iolite_core::UpstreamKind::Module,
                        name.clone(),
                        iolite_core::UpstreamFailure::Crashed,
                    )),
                    false,
                ),
            };
            let response = answer.unwrap_or_else(|e| Response::from_error(&e));
            let mut parts = Vec::new();
            if let Body::Stream(s) = &response.body
                && let Some(mut rx) = s.take_parts()
            {
                while let Ok(part) = rx.try_recv() {
                    parts.push(part);
                }
            }
            Outcome {
                id,
                response,
                answered,
                parts,
            }
        })
        .collect();
    Run {
        outcomes,
        ended,
        replace,
    }
}

/// One frame, through the link's `receive`. Err: why the link ends, and
/// whether the runner is replaced.
fn receive_one(st: &mut State, cfg: &LinkConfig) -> Result<(), (String, bool)> {
    // No cache here (as a module without one): lookups are answered `None`.
    match receive(st, cfg, None)? {
        true => Ok(()),
        // Every byte was written before: nothing more will come.
        false => Err(("nothing more to read".into(), false)),
    }
}

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

fn response(id: u64, status: u16, headers: &[(&str, &[u8])], body: Vec<BufDesc>) -> Msg {
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

fn input(copy: bool, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![u8::from(copy)];
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

fn release(leases: Vec<u64>) -> Vec<u8> {
    let mut framed = Vec::new();
    frame::encode(
        &Wire::<Msg>::Release { leases },
        &mut framed,
        frame::DEFAULT_MAX_PAYLOAD,
    )
    .expect("a release fits a frame");
    record(1, &framed[HEADER_LEN..])
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
    ]
}

#[cfg(test)]
mod tests;
