//! `next_part` and `Owed` driven over a socket pair: the test plays the
//! server (its request pool shared, parts exported with leases), the
//! runner's link state is built by hand.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use iolite_ipc::{AggDesc, BufDesc, Event, Peer, Pool};

use super::*;
use crate::link::Owed;
use crate::wire::{InlineBytes, RequestFrame};

/// Bytes per copy-mode Data frame here, so that parts come in pieces.
const PIECE: usize = 2;

/// What the test server sends.
#[derive(Debug, Clone)]
enum Step {
    /// A body part of request `id`: slices of the request pool, or (copy
    /// mode) Data frames and an empty part frame.
    Part(u64, &'static [u8]),
    /// Any other message, as it is.
    Other(Msg),
}

/// What one `next_part` call gave.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Part(Vec<u8>),
    End,
    Cancelled,
    Protocol,
}

struct Bench {
    server: Peer<Msg>,
    runner: Peer<Msg>,
    requests: Pool,
    output: Pool,
    pending: VecDeque<Msg>,
    quotable: Vec<BufDesc>,
    owed: Owed,
    copy: bool,
}

impl Bench {
    fn new(copy: bool) -> Bench {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // Only a guard: a runner that waits for a frame never sent fails
        // the test instead of hanging it.
        theirs
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut server = Peer::new(ours);
        let mut runner = Peer::new(theirs);
        let requests = Pool::new(1 << 20).unwrap();
        server.share_pool(&requests).unwrap();
        assert!(matches!(runner.recv_event().unwrap(), Event::PoolShared(_)));
        Bench {
            server,
            runner,
            requests,
            output: Pool::new(1 << 20).unwrap(),
            pending: VecDeque::new(),
            quotable: Vec::new(),
            owed: Owed::default(),
            copy,
        }
    }

    fn link(&mut self) -> Link<'_> {
        Link {
            pool: &self.output,
            peer: &mut self.runner,
            quotable: &mut self.quotable,
            pending: &mut self.pending,
            owed: &mut self.owed,
            copy: self.copy,
        }
    }

    /// The frames of `step`, as the server makes them.
    fn frames(&mut self, step: &Step) -> Vec<Msg> {
        let (id, bytes) = match step {
            Step::Other(msg) => return vec![msg.clone()],
            Step::Part(id, bytes) => (*id, *bytes),
        };
        if self.copy {
            let mut out: Vec<Msg> = bytes
                .chunks(PIECE)
                .map(|c| Msg::Data {
                    id,
                    bytes: InlineBytes(c.to_vec()),
                })
                .collect();
            out.push(Msg::BodyPart {
                id,
                body: AggDesc::default(),
            });
            return out;
        }
        let mut agg = Agg::new();
        if !bytes.is_empty() {
            let mut buf = self.requests.alloc(bytes.len()).unwrap();
            buf.extend_from_slice(bytes).unwrap();
            agg.push(buf.freeze());
        }
        let body = self.server.export(&agg).unwrap();
        vec![Msg::BodyPart { id, body }]
    }

    fn send(&mut self, step: &Step) {
        for msg in self.frames(step) {
            self.server.send(&msg).unwrap();
        }
    }

    /// Leases of the request pool the runner has not released (the
    /// releases it queued are sent and taken in first).
    fn unreleased(&mut self) -> usize {
        self.runner.flush_releases().unwrap();
        while self.server.try_recv_event().unwrap().is_some() {}
        self.server.leases_outstanding()
    }
}

fn label(msg: &Msg) -> String {
    match msg {
        Msg::Request(f) => format!("Request {}", f.id),
        Msg::Cancel { id } => format!("Cancel {id}"),
        Msg::Data { id, .. } => format!("Data {id}"),
        Msg::BodyPart { id, .. } => format!("BodyPart {id}"),
        other => format!("{other:?}"),
    }
}

fn request(id: u64) -> Msg {
    Msg::Request(RequestFrame {
        id,
        method: "POST".into(),
        path: "/up".into(),
        query: String::new(),
        headers: Vec::new(),
        client: None,
        body: AggDesc::default(),
        parts: 0,
    })
}

struct Case {
    name: &'static str,
    /// Transfer modes it runs in (false: shared, true: copy).
    modes: &'static [bool],
    /// Request 1's body length, in parts.
    announced: u64,
    /// Earlier requests whose parts are still to come.
    owed: &'static [(u64, u64)],
    /// Frames already kept in `pending` (by a lookup, say).
    already: Vec<Step>,
    /// Frames the server sends.
    sent: Vec<Step>,
    /// What each `next_part` call gives, in order.
    want: Vec<Got>,
    /// What is left in `pending`.
    pending_after: &'static [&'static str],
    /// Requests still owed parts.
    owed_after: &'static [u64],
    /// Request-pool leases never released (shared mode).
    unreleased: usize,
}

fn part(bytes: &[u8]) -> Got {
    Got::Part(bytes.to_vec())
}

fn cases() -> Vec<Case> {
    use Got::*;
    use Step::{Other, Part as P};
    let both: &[bool] = &[false, true];
    vec![
        Case {
            name: "parts in order, an empty one skipped, then the end",
            modes: both,
            announced: 7,
            owed: &[],
            already: vec![],
            sent: vec![P(1, b"abc"), P(1, b""), P(1, b"defg")],
            want: vec![part(b"abc"), part(b"defg"), End, End],
            pending_after: &[],
            owed_after: &[],
            unreleased: 0,
        },
        Case {
            name: "other requests' messages wait in pending, in order",
            modes: both,
            announced: 4,
            owed: &[],
            already: vec![],
            sent: vec![
                Other(request(2)),
                P(1, b"ab"),
                Other(Msg::Cancel { id: 3 }),
                Other(Msg::Data {
                    id: 2,
                    bytes: InlineBytes(b"zz".to_vec()),
                }),
                P(1, b"cd"),
            ],
            want: vec![part(b"ab"), part(b"cd"), End],
            pending_after: &["Request 2", "Cancel 3", "Data 2"],
            owed_after: &[],
            unreleased: 0,
        },
        Case {
            name: "parts already kept in pending come first",
            modes: both,
            announced: 6,
            owed: &[],
            already: vec![Other(request(2)), P(1, b"ab")],
            sent: vec![P(1, b"cdef")],
            want: vec![part(b"ab"), part(b"cdef"), End],
            pending_after: &["Request 2"],
            owed_after: &[],
            unreleased: 0,
        },
        Case {
            name: "a cancel of this request ends it, every later call too",
            modes: both,
            announced: 10,
            owed: &[],
            already: vec![],
            sent: vec![P(1, b"ab"), Other(Msg::Cancel { id: 1 })],
            want: vec![part(b"ab"), Cancelled, Cancelled],
            pending_after: &[],
            owed_after: &[],
            unreleased: 0,
        },
        Case {
            name: "a cancel kept in pending is found",
            modes: both,
            announced: 10,
            owed: &[],
            already: vec![Other(Msg::Cancel { id: 1 })],
            sent: vec![],
            want: vec![Cancelled],
            pending_after: &[],
            owed_after: &[],
            unreleased: 0,
        },
        Case {
            name: "parts of an answered request are dropped as they come",
            modes: both,
            announced: 2,
            owed: &[(9, 5), (8, 10)],
            already: vec![],
            sent: vec![P(9, b"xyz"), P(8, b"x"), P(9, b"uv"), P(1, b"ab")],
            want: vec![part(b"ab"), End],
            pending_after: &[],
            owed_after: &[8],
            unreleased: 0,
        },
        Case {
            name: "a part past the announced length breaks the link",
            modes: both,
            announced: 4,
            owed: &[],
            already: vec![],
            sent: vec![P(1, b"abc"), P(1, b"de")],
            want: vec![part(b"abc"), Protocol, Protocol],
            pending_after: &[],
            owed_after: &[],
            // The overrunning part was never imported.
            unreleased: 1,
        },
        Case {
            name: "an answered request's part past its length breaks the link",
            modes: both,
            announced: 2,
            owed: &[(9, 2)],
            already: vec![],
            sent: vec![P(9, b"xyz")],
            want: vec![Protocol],
            pending_after: &[],
            owed_after: &[9],
            unreleased: 1,
        },
        Case {
            name: "a part naming an unknown pool breaks the link",
            modes: both,
            announced: 2,
            owed: &[],
            already: vec![],
            sent: vec![Other(Msg::BodyPart {
                id: 1,
                body: AggDesc {
                    bufs: vec![BufDesc {
                        pool: 0xdead,
                        lease: 1,
                        region: 0,
                        offset: 0,
                        len: 2,
                        generation: 1,
                    }],
                },
            })],
            want: vec![Protocol],
            pending_after: &[],
            owed_after: &[],
            unreleased: 0,
        },
    ]
}

#[test]
fn next_part_reads_this_requests_parts_and_keeps_the_rest_table() {
    for case in cases() {
        for &copy in case.modes {
            let what = format!("{} (copy: {copy})", case.name);
            let mut bench = Bench::new(copy);
            for &(id, left) in case.owed {
                bench.owed.insert(id, left);
            }
            for step in &case.already {
                let frames = bench.frames(step);
                bench.pending.extend(frames);
            }
            for step in &case.sent {
                bench.send(step);
            }
            let mut left = BodyLeft::new(case.announced);
            let mut got = Vec::new();
            let mut quoted = 0;
            for _ in &case.want {
                let r = next_part(&mut bench.link(), 1, &Agg::new(), &mut left);
                got.push(match r {
                    Ok(Some(part)) => {
                        quoted += part.len();
                        Got::Part(part.copy_to_vec())
                    }
                    Ok(None) => Got::End,
                    Err(Error::Cancelled) => Got::Cancelled,
                    Err(Error::Protocol(_)) => Got::Protocol,
                    Err(e) => panic!("{what}: unexpected error {e}"),
                });
            }
            assert_eq!(got, case.want, "{what}");
            if case.want.last() == Some(&Got::Protocol) {
                assert!(matches!(left, BodyLeft::Broken(_)), "{what}: {left:?}");
            }
            let pending: Vec<String> = bench.pending.iter().map(label).collect();
            assert_eq!(pending, case.pending_after, "{what}");
            for id in [1, 8, 9] {
                assert_eq!(
                    bench.owed.contains(id),
                    case.owed_after.contains(&id),
                    "{what}: request {id} owed"
                );
            }
            // Shared mode: the parts may be quoted back; copy mode: they are
            // the runner's own buffers.
            let quotable: u64 = bench.quotable.iter().map(|d| d.len).sum();
            assert_eq!(quotable, if copy { 0 } else { quoted as u64 }, "{what}");
            let unreleased = if copy { 0 } else { case.unreleased };
            assert_eq!(bench.unreleased(), unreleased, "{what}: leases");
        }
    }
}

#[test]
fn a_held_part_keeps_its_lease_until_dropped() {
    let mut bench = Bench::new(false);
    for step in [Step::Part(1, b"ab"), Step::Part(1, b"cd")] {
        bench.send(&step);
    }
    let mut left = BodyLeft::new(4);
    let first = next_part(&mut bench.link(), 1, &Agg::new(), &mut left).unwrap();
    let second = next_part(&mut bench.link(), 1, &Agg::new(), &mut left).unwrap();
    assert_eq!(bench.unreleased(), 2);
    drop(first);
    assert_eq!(bench.unreleased(), 1);
    drop(second);
    assert_eq!(bench.unreleased(), 0);
}

#[test]
fn a_whole_body_comes_once_then_the_end() {
    let mut bench = Bench::new(false);
    let mut buf = bench.output.alloc(5).unwrap();
    buf.extend_from_slice(b"whole").unwrap();
    let whole = Agg::from(buf.freeze());
    let cases: &[(&Agg, &[Option<&[u8]>])] = &[
        (&whole, &[Some(b"whole"), None, None]),
        (&Agg::new(), &[None, None]),
    ];
    for (body, want) in cases {
        let mut left = BodyLeft::new(0);
        for w in *want {
            let got = next_part(&mut bench.link(), 1, body, &mut left).unwrap();
            assert_eq!(got.map(|a| a.copy_to_vec()).as_deref(), *w);
        }
    }
    // Nothing was read from the link.
    assert!(bench.pending.is_empty());
    assert!(!bench.runner.has_frame());
}

/// A small deterministic generator (xorshift64*), so that a failing seed
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// `bytes` cut at random into parts of 1..=`max` bytes.
fn cut(rng: &mut Rng, bytes: &'static [u8], max: u64) -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(max) as usize).min(bytes.len() - at);
        out.push(&bytes[at..at + n]);
        at += n;
    }
    out
}

#[test]
fn interleaved_parts_of_several_requests_come_apart_in_order() {
    static BODY: &[u8] = b"the quick brown fox jumps over the lazy dog, twice: the quick brown fox";
    static OWED: &[u8] = b"0123456789abcdef";
    for seed in 1..=40u64 {
        for copy in [false, true] {
            let what = format!("seed {seed} (copy: {copy})");
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut bench = Bench::new(copy);
            // Requests 8 and 9 were answered early; 2 and 3 wait.
            bench.owed.insert(8, OWED.len() as u64);
            bench.owed.insert(9, OWED.len() as u64);
            let mut streams: Vec<VecDeque<Step>> = vec![
                cut(&mut rng, BODY, 9)
                    .into_iter()
                    .map(|b| Step::Part(1, b))
                    .collect(),
                cut(&mut rng, OWED, 5)
                    .into_iter()
                    .map(|b| Step::Part(8, b))
                    .collect(),
                cut(&mut rng, OWED, 5)
                    .into_iter()
                    .map(|b| Step::Part(9, b))
                    .collect(),
                [request(2), Msg::Cancel { id: 3 }, request(3)]
                    .into_iter()
                    .map(Step::Other)
                    .collect(),
            ];
            // Each stream keeps its order; the streams interleave at random,
            // some frames already kept in pending, the rest on the socket.
            // Frames kept in pending came before any still on the socket.
            let mut on_socket = false;
            while streams.iter().any(|s| !s.is_empty()) {
                let live: Vec<usize> = (0..streams.len())
                    .filter(|&i| !streams[i].is_empty())
                    .collect();
                let pick = live[rng.below(live.len() as u64) as usize];
                let step = streams[pick].pop_front().unwrap();
                if !on_socket && rng.below(3) == 0 {
                    let frames = bench.frames(&step);
                    bench.pending.extend(frames);
                } else {
                    bench.send(&step);
                    on_socket = true;
                }
            }
            let mut left = BodyLeft::new(BODY.len() as u64);
            let mut got = Vec::new();
            while let Some(part) = next_part(&mut bench.link(), 1, &Agg::new(), &mut left)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
            {
                got.extend(part.copy_to_vec());
            }
            assert_eq!(got, BODY, "{what}");
            // The owed requests' parts that came before the body's end were
            // dropped; the rest wait in pending or on the socket: drain
            // them as the link loop would (pending first).
            let mut others = Vec::new();
            while bench.owed.contains(8) || bench.owed.contains(9) || others.len() < 3 {
                let msg = match bench.pending.pop_front() {
                    Some(msg) => msg,
                    None => bench.runner.recv().unwrap(),
                };
                if let Some(msg) = bench.owed.absorb(&mut bench.runner, msg).unwrap() {
                    others.push(label(&msg));
                }
            }
            assert_eq!(others, ["Request 2", "Cancel 3", "Request 3"], "{what}");
            assert_eq!(bench.unreleased(), 0, "{what}: leases");
        }
    }
}
