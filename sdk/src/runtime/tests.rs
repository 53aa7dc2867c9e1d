//! The runtime's link loop (`serve_link`) driven over a socket pair: the
//! test plays the server, a script of frames to send and answers to
//! expect; the runner side runs on a thread of its own.
use super::*;

use std::time::Duration;

use crate::response::Response;
use crate::router::Router;
use crate::wire::{InlineBytes, PARTS_UNKNOWN, RequestFrame};

/// Takes bodies in parts. `/early` answers 204 without reading the body,
/// `/echo` streams the body back part by part as it comes, any other path
/// answers its whole body.
#[derive(Debug, Default)]
struct Parts;

impl Module for Parts {
    const BODY_IN_PARTS: bool = true;

    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        Ok(match req.path() {
            "/early" => Response::new(204),
            "/echo" => {
                let mut stream = match req.body_len() {
                    Some(len) => ctx.stream(Response::new(200), len)?,
                    None => ctx.stream_open_ended(Response::new(200))?,
                };
                while let Ok(Some(part)) = stream.body_part() {
                    if stream.send(&part).is_err() {
                        break;
                    }
                }
                Response::new(200)
            }
            _ => Response::new(200).body(req.body().clone()),
        })
    }
}

/// Takes bodies whole only; answers its body.
#[derive(Debug, Default)]
struct WholeOnly;

impl Module for WholeOnly {
    fn handle(&self, req: &Request, _ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        Ok(Response::new(200).body(req.body().clone()))
    }
}

/// Routes below its mount (`/m`, as the tests' `Shared` says): answers of
/// bytes, errors that become statuses, a stream cut by an error.
#[derive(Debug, Default)]
struct Routed;

impl Module for Routed {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        Router::new(req)
            .post("/m/text", || Ok(Response::text(200, "text body")))
            .post("/", || Ok(Response::text(200, req.sub_path().to_owned())))
            .post("/bad", || Err(HttpError::bad_request("no good")))
            .post("/broken", || {
                Err(std::io::Error::other("secret cause").into())
            })
            .post("/huge", || {
                Ok(Response::bytes(200, "x/y", vec![7u8; 2 << 20]))
            })
            .post("/cut", || {
                let mut stream = ctx.stream_open_ended(Response::new(200))?;
                stream.send(req.body())?;
                Err(HttpError::internal("failed mid-way"))
            })
            .get("/only-get", || Ok(Response::new(204)))
            .finish()
    }
}

/// One step of a script, as the server.
#[derive(Debug, Clone)]
enum Act {
    /// Send a request: id, path, whole body, bytes announced in parts.
    Request(u64, &'static str, &'static [u8], u64),
    /// Send a body part (copy mode: Data frames, then an empty part).
    Part(u64, &'static [u8]),
    /// Send a message as it is.
    Send(Msg),
    /// Expect an answer: id, status, body.
    Answer(u64, u16, &'static [u8]),
    /// Expect a stream's head: id, length.
    Head(u64, u64),
    /// Expect a stream part: id, bytes.
    Piece(u64, &'static [u8]),
    /// Expect a stream's abort.
    Abort(u64),
    /// Expect the head of a stream of unknown length: id.
    HeadOpen(u64),
    /// Expect the end of a stream of unknown length: id.
    End(u64),
    /// Wait until the runner has released every lease of the request pool.
    Released,
}

impl Act {
    fn sends(&self) -> bool {
        matches!(self, Act::Request(..) | Act::Part(..) | Act::Send(_))
    }
}

/// The test's end of a link.
struct Server {
    peer: Peer<Msg>,
    requests: Pool,
    copy: bool,
}

impl Server {
    /// Sends `bytes` as request `id`'s body: exported slices, or inline
    /// Data frames (returned empty descriptors then).
    fn body(&mut self, id: u64, bytes: &[u8]) -> AggDesc {
        if self.copy {
            for piece in bytes.chunks(2) {
                self.peer
                    .send(&Msg::Data {
                        id,
                        bytes: InlineBytes(piece.to_vec()),
                    })
                    .unwrap();
            }
            return AggDesc::default();
        }
        let mut agg = Agg::new();
        if !bytes.is_empty() {
            let mut buf = self.requests.alloc(bytes.len()).unwrap();
            buf.extend_from_slice(bytes).unwrap();
            agg.push(buf.freeze());
        }
        self.peer.export(&agg).unwrap()
    }

    fn send(&mut self, act: &Act) {
        let msg = match act {
            Act::Request(id, path, bytes, parts) => Msg::Request(RequestFrame {
                id: *id,
                method: "POST".into(),
                path: (*path).into(),
                query: String::new(),
                headers: Vec::new(),
                client: None,
                body: self.body(*id, bytes),
                parts: *parts,
            }),
            Act::Part(id, bytes) => Msg::BodyPart {
                id: *id,
                body: self.body(*id, bytes),
            },
            Act::Send(msg) => msg.clone(),
            _ => unreachable!("not a send"),
        };
        self.peer.send(&msg).unwrap();
    }

    /// The bytes of an answer or stream part: Data frames gathered (copy
    /// mode), then the frame that ends them, checked by `ends`.
    fn bytes(&mut self, what: &str, ends: impl Fn(&Msg) -> Option<AggDesc>) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let msg = self.peer.recv().unwrap();
            if let (true, Msg::Data { bytes, .. }) = (self.copy, &msg) {
                out.extend_from_slice(&bytes.0);
                continue;
            }
            let desc = ends(&msg).unwrap_or_else(|| panic!("{what}: got {msg:?}"));
            out.extend(self.peer.import(&desc).unwrap().copy_to_vec());
            return out;
        }
    }

    fn expect(&mut self, act: &Act, what: &str) {
        match *act {
            Act::Answer(id, status, body) => {
                let got = self.bytes(what, |m| match m {
                    Msg::Response(f) if f.id == id && f.status == status => Some(f.body.clone()),
                    _ => None,
                });
                assert_eq!(got, body, "{what}: answer {id}");
            }
            Act::Head(id, len) => match self.peer.recv().unwrap() {
                Msg::StreamHead { id: i, len: l, .. } if (i, l) == (id, Some(len)) => {}
                other => panic!("{what}: want a head, got {other:?}"),
            },
            Act::Piece(id, bytes) => {
                let got = self.bytes(what, |m| match m {
                    Msg::StreamPart { id: i, body } if *i == id => Some(body.clone()),
                    _ => None,
                });
                assert_eq!(got, bytes, "{what}: stream part of {id}");
            }
            Act::Abort(id) => match self.peer.recv().unwrap() {
                Msg::StreamAbort { id: i } if i == id => {}
                other => panic!("{what}: want an abort, got {other:?}"),
            },
            Act::HeadOpen(id) => match self.peer.recv().unwrap() {
                Msg::StreamHead {
                    id: i, len: None, ..
                } if i == id => {}
                other => panic!("{what}: want an open head, got {other:?}"),
            },
            Act::End(id) => match self.peer.recv().unwrap() {
                Msg::StreamEnd { id: i } if i == id => {}
                other => panic!("{what}: want a stream's end, got {other:?}"),
            },
            Act::Released => {
                while self.peer.leases_outstanding() > 0 {
                    match self.peer.recv_event().unwrap() {
                        Event::Message(m) => panic!("{what}: unexpected {m:?}"),
                        _ => continue,
                    }
                }
            }
            _ => unreachable!("not an expectation"),
        }
    }
}

/// Plays `acts` against module `M`'s link loop; its result. A `clean`
/// script ends with the server closing the link; another must make the
/// loop fail by itself (closing first would reclaim the leases of frames
/// not yet read, another failure).
fn play<M: Module + Default>(
    acts: &[Act],
    copy: bool,
    clean: bool,
    what: &str,
) -> Result<(), Error> {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // Only a guard: a frame that never comes fails the test, not hangs it.
    for sock in [&ours, &theirs] {
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    let mut server = Server {
        peer: Peer::new(ours),
        requests: Pool::new(1 << 20).unwrap(),
        copy,
    };
    server.peer.share_pool(&server.requests).unwrap();
    let shared = Shared {
        module: M::default(),
        mount: Arc::from("/m"),
        pool: Pool::new(1 << 20).unwrap(),
        remote: Vec::new(),
        transfer: if copy {
            Transfer::Copy
        } else {
            Transfer::Shared
        },
    };
    std::thread::scope(|s| {
        // The frames before the first expectation are all buffered when
        // the runner starts (a cancel is then seen before its request).
        let start = acts.iter().position(|a| !a.sends()).unwrap_or(acts.len());
        for act in &acts[..start] {
            server.send(act);
        }
        let runner = s.spawn(|| serve_link(&shared, theirs));
        for act in &acts[start..] {
            if act.sends() {
                server.send(act);
            } else {
                server.expect(act, what);
            }
        }
        if clean {
            server.peer.close();
        }
        runner.join().expect("the link thread panicked")
    })
}

enum Kind {
    Parts,
    WholeOnly,
}

struct Case {
    name: &'static str,
    kind: Kind,
    /// Transfer modes it runs in (false: shared, true: copy).
    modes: &'static [bool],
    acts: Vec<Act>,
    /// Whether the loop ends cleanly (else with a protocol error).
    clean: bool,
}

fn cases() -> Vec<Case> {
    use Act::*;
    let both: &[bool] = &[false, true];
    vec![
        Case {
            name: "a module without BODY_IN_PARTS: 413, the parts dropped",
            kind: Kind::WholeOnly,
            modes: both,
            acts: vec![
                Request(1, "/", b"", 6),
                Part(1, b"abc"),
                Part(1, b"def"),
                Request(2, "/", b"xy", 0),
                Answer(1, 413, b""),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "answered before the body's end: the later parts dropped",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", 6),
                Answer(1, 204, b""),
                Part(1, b"abc"),
                Part(1, b"def"),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "echo: each part goes back before the next is sent",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/echo", b"", 6),
                Part(1, b"abc"),
                Head(1, 6),
                Piece(1, b"abc"),
                Part(1, b"def"),
                Piece(1, b"def"),
                Request(2, "/echo", b"whole", 0),
                Head(2, 5),
                Piece(2, b"whole"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a chunked body: parts until its end, echoed in an open stream",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/echo", b"", PARTS_UNKNOWN),
                Part(1, b"abc"),
                HeadOpen(1),
                Piece(1, b"abc"),
                Part(1, b"de"),
                Piece(1, b"de"),
                Send(Msg::BodyEnd { id: 1 }),
                End(1),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a chunked body cut short: its open stream is cut, not ended",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/echo", b"", PARTS_UNKNOWN),
                Part(1, b"abc"),
                HeadOpen(1),
                Piece(1, b"abc"),
                Send(Msg::Cancel { id: 1 }),
                Abort(1),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a chunked body answered early: its later parts and end dropped",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", PARTS_UNKNOWN),
                Answer(1, 204, b""),
                Part(1, b"abc"),
                Send(Msg::BodyEnd { id: 1 }),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a cancel while the module reads: the stream ends short",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/echo", b"", 6),
                Part(1, b"abc"),
                Head(1, 6),
                Piece(1, b"abc"),
                Send(Msg::Cancel { id: 1 }),
                Abort(1),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a cancel of an answered request whose parts are owed",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", 6),
                Answer(1, 204, b""),
                Part(1, b"ab"),
                Send(Msg::Cancel { id: 1 }),
                Request(2, "/whole", b"xy", 0),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "a request cancelled before it starts: 503, its parts dropped",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/echo", b"", 4),
                Part(1, b"ab"),
                Send(Msg::Cancel { id: 1 }),
                Request(2, "/whole", b"xy", 0),
                Answer(1, 503, b""),
                Answer(2, 200, b"xy"),
                Released,
            ],
            clean: true,
        },
        Case {
            name: "copy mode: an owed request's bytes dropped, the next one's kept",
            kind: Kind::Parts,
            modes: &[true],
            acts: vec![
                Request(1, "/early", b"", 4),
                Answer(1, 204, b""),
                Send(Msg::Data {
                    id: 2,
                    bytes: InlineBytes(b"xy".to_vec()),
                }),
                Send(Msg::Data {
                    id: 1,
                    bytes: InlineBytes(b"abcd".to_vec()),
                }),
                Send(Msg::BodyPart {
                    id: 1,
                    body: AggDesc::default(),
                }),
                Request(2, "/whole", b"", 0),
                Answer(2, 200, b"xy"),
            ],
            clean: true,
        },
        Case {
            name: "a part after its request's cancel",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", 6),
                Answer(1, 204, b""),
                Send(Msg::Cancel { id: 1 }),
                Part(1, b"ab"),
            ],
            clean: false,
        },
        Case {
            name: "a part of a request never sent",
            kind: Kind::Parts,
            modes: both,
            acts: vec![Part(5, b"ab")],
            clean: false,
        },
        Case {
            name: "an answered request's part past its length",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", 2),
                Answer(1, 204, b""),
                Part(1, b"abc"),
            ],
            clean: false,
        },
        Case {
            name: "a request in parts that carries a body too",
            kind: Kind::Parts,
            modes: both,
            acts: vec![Request(1, "/whole", b"xy", 4)],
            clean: false,
        },
        Case {
            name: "a request with the id of one still owed parts",
            kind: Kind::Parts,
            modes: both,
            acts: vec![
                Request(1, "/early", b"", 4),
                Answer(1, 204, b""),
                Request(1, "/whole", b"", 0),
            ],
            clean: false,
        },
        Case {
            name: "copy mode: bytes of one request before another's",
            kind: Kind::Parts,
            modes: &[true],
            acts: vec![
                Send(Msg::Data {
                    id: 2,
                    bytes: InlineBytes(b"x".to_vec()),
                }),
                Request(3, "/whole", b"", 0),
            ],
            clean: false,
        },
        Case {
            name: "copy mode: bytes of two requests interleaved",
            kind: Kind::Parts,
            modes: &[true],
            acts: vec![
                Send(Msg::Data {
                    id: 2,
                    bytes: InlineBytes(b"x".to_vec()),
                }),
                Send(Msg::Data {
                    id: 3,
                    bytes: InlineBytes(b"y".to_vec()),
                }),
            ],
            clean: false,
        },
    ]
}

#[test]
fn the_link_loop_serves_bodies_in_parts_table() {
    for case in cases() {
        for &copy in case.modes {
            let what = format!("{} (copy: {copy})", case.name);
            let ended = match case.kind {
                Kind::Parts => play::<Parts>(&case.acts, copy, case.clean, &what),
                Kind::WholeOnly => play::<WholeOnly>(&case.acts, copy, case.clean, &what),
            };
            match (case.clean, ended) {
                (true, Ok(())) | (false, Err(Error::Protocol(_))) => {}
                (_, ended) => panic!("{what}: the loop ended with {ended:?}"),
            }
        }
    }
}

#[test]
fn answers_of_bytes_and_errors_become_statuses() {
    use Act::*;
    // Copy mode: the test's server sees output-pool bytes inline (it was
    // never given the runner's pool, which it would need in shared mode).
    {
        let acts = [
            Request(1, "/m", b"", 0),
            Answer(1, 200, b"/"),
            Request(2, "/m/text", b"", 0),
            Answer(2, 404, b"not found\n"),
            Request(3, "/m/bad", b"", 0),
            Answer(3, 400, b"no good\n"),
            Request(4, "/m/broken", b"", 0),
            Answer(4, 500, b"internal error\n"),
            Request(5, "/m/only-get", b"", 0),
            Answer(5, 405, b"method not allowed\n"),
            // Larger than the whole output pool (1 MiB): no room.
            Request(6, "/m/huge", b"", 0),
            Answer(6, 503, b"the module is busy: try again\n"),
            Request(7, "/m/cut", b"abc", 0),
            HeadOpen(7),
            Piece(7, b"abc"),
            Abort(7),
            Released,
        ];
        play::<Routed>(&acts, true, true, "routed").unwrap();
    }
}
