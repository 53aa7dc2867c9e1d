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
//!
//! Descriptors (issue 14): a record whose tag has bit 7 set goes on the
//! socket with `(tag >> 1) & 7` descriptors attached (`SCM_RIGHTS`), of
//! kinds [`FdKind::ALL`] taken in turn from `(tag >> 4) & 7`: a sparse
//! sealed pool (64 MiB, one page written), an unsealed memfd, the output
//! pool's and the request pool's memfds again, a socket, a pipe. A link
//! takes none (every one closes it); with flags bit 1 the link plays a
//! socket still in its handshake instead, which takes
//! [`HANDSHAKE_POOLS`] pools (each through the seal, size and header
//! checks), so descriptors into the sparse pool reach the written-page
//! check. Pool id 2 in a descriptor or a `SharePool` stands for the sparse
//! pool (`SharePool` ids 0 and 1 as above).

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use iolite_core::{Body, Response, StreamBody};
use iolite_ipc::frame::{self, HEADER_LEN, VERSION};
use iolite_ipc::{Agg, AggDesc, Buf, Event, Peer, Pool, RemotePool, Wire};
use iolite_sdk::wire::Msg;
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
/// Pools a link playing a socket in its handshake (flags bit 1) takes.
pub const HANDSHAKE_POOLS: usize = 2;
/// Bytes of the sparse pool's data area (one page of it written).
pub const SPARSE_POOL: usize = 64 << 20;

/// A kind of descriptor a record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A sealed pool of [`SPARSE_POOL`] bytes, all holes but one page.
    SparsePool,
    /// A memfd without seals (1 MiB).
    Unsealed,
    /// The runner's output pool again.
    OutputPool,
    /// The module's request pool (the server's own).
    RequestPool,
    /// One end of a unix socket pair.
    Socket,
    /// The read end of a pipe.
    Pipe,
}

impl FdKind {
    /// Every kind, in the order a record's tag picks them.
    pub const ALL: [FdKind; 6] = [
        FdKind::SparsePool,
        FdKind::Unsealed,
        FdKind::OutputPool,
        FdKind::RequestPool,
        FdKind::Socket,
        FdKind::Pipe,
    ];
}

/// Bytes for the socket, with descriptors attached to their first byte.
#[derive(Debug, Default)]
pub struct Piece {
    pub bytes: Vec<u8>,
    pub fds: Vec<FdKind>,
}

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
    /// A sparse pool (see [`FdKind::SparsePool`]) and its one written page.
    sparse: Pool,
    sparse_buf: Buf,
    /// Descriptors of the other kinds, kept open for every run.
    unsealed: OwnedFd,
    socket: (UnixStream, UnixStream),
    pipe: (OwnedFd, OwnedFd),
}

impl Pools {
    fn fd(&self, kind: FdKind) -> BorrowedFd<'_> {
        match kind {
            FdKind::SparsePool => self.sparse.fd(),
            FdKind::Unsealed => self.unsealed.as_fd(),
            FdKind::OutputPool => self.output_owner.fd(),
            FdKind::RequestPool => self.request.fd(),
            FdKind::Socket => self.socket.0.as_fd(),
            FdKind::Pipe => self.pipe.0.as_fd(),
        }
    }
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
        let sparse = Pool::with_name("iolite-fuzz-sparse", SPARSE_POOL).expect("sparse pool");
        let mut b = sparse.alloc(4096).expect("sparse page");
        b.extend_from_slice(&[b's'; 4096]).expect("sparse page");
        let sparse_buf = b.freeze();
        let unsealed = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .create("iolite-fuzz-unsealed")
            .expect("unsealed memfd");
        unsealed.as_file().set_len(1 << 20).expect("unsealed memfd");
        Pools {
            request,
            request_body,
            output,
            output_owner,
            output_bufs,
            sparse,
            sparse_buf,
            unsealed: unsealed.into_file().into(),
            socket: UnixStream::pair().expect("socket pair"),
            pipe: nix::unistd::pipe().expect("pipe"),
        }
    })
}

/// The ids that pool ids 0, 1 and 2 in an odd record stand for.
pub fn pool_ids() -> [u64; 3] {
    let p = pools();
    [p.output.id(), p.request.id(), p.sparse.id()]
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
        return run_stream(pools, 0, &[]);
    };
    let stream = stream_of(records, pool_ids());
    run_stream(pools, flags, &stream)
}

/// What an input puts on the socket: bytes, with descriptors attached to
/// some of them.
pub fn stream_of(mut records: &[u8], ids: [u64; 3]) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = vec![Piece::default()];
    let mut total = 0;
    while let [tag, l0, l1, rest @ ..] = records {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
        let (bytes, next) = rest.split_at(len);
        records = next;
        let count = usize::from((tag >> 1) & 7);
        if tag & 0x80 != 0 && count > 0 && !bytes.is_empty() {
            let first = usize::from((tag >> 4) & 7);
            pieces.push(Piece {
                bytes: Vec::new(),
                fds: (0..count)
                    .map(|i| FdKind::ALL[(first + i) % FdKind::ALL.len()])
                    .collect(),
            });
        }
        let Some(out) = pieces.last_mut().map(|p| &mut p.bytes) else {
            break;
        };
        let before = out.len();
        if tag & 1 == 0 {
            out.extend_from_slice(bytes);
        } else {
            match frame::decode_payload::<Wire<Msg>>(bytes) {
                Ok(mut wire) => {
                    remap(&mut wire, ids);
                    if frame::encode(&wire, out, frame::DEFAULT_MAX_PAYLOAD).is_err() {
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
        total += out.len() - before;
        if total >= MAX_STREAM {
            let over = total - MAX_STREAM;
            out.truncate(out.len() - over);
            break;
        }
    }
    pieces.retain(|p| !p.bytes.is_empty());
    pieces
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

fn remap(wire: &mut Wire<Msg>, ids: [u64; 3]) {
    let msg = match wire {
        Wire::Msg(msg) => msg,
        Wire::SharePool { pool, .. } => {
            if let Some(&id) = ids.get(*pool as usize) {
                *pool = id;
            }
            return;
        }
        _ => return,
    };
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

fn run_stream(pools: &Pools, flags: u8, stream: &[Piece]) -> Run {
    let copy = flags & 1 == 1;
    let (server_end, runner_end) = UnixStream::pair().expect("socket pair");
    let cfg = LinkConfig {
        name: Arc::from(PREFIX),
        pool: pools.request.clone(),
        cache_pool: None,
        timeout: Duration::from_secs(30),
        copy,
        lanes: 1,
        lane_stall: Duration::from_millis(50),
        pace: Default::default(),
        lane_idle: Duration::from_secs(2),
        metrics: None,
        room: None,
        copy_cap: 1 << 20,
    };
    // As `Link::open`.
    let mut peer: Peer<Msg> = Peer::new(server_end);
    super::reader::bound(&mut peer);
    if flags & 2 != 0 {
        // A socket in its handshake: pools (and their descriptors) come.
        peer.set_pool_limit(HANDSHAKE_POOLS);
        peer.channel().set_fd_limit(usize::MAX);
    }
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
                target: 0,
                quick: false,
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
    for piece in stream {
        send_piece(&runner_end, pools, piece);
    }
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

/// Writes `piece` whole on `sock`, its descriptors with its first bytes
/// (the socket buffer holds every input: nothing waits).
fn send_piece(sock: &UnixStream, pools: &Pools, piece: &Piece) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw: Vec<i32> = piece.fds.iter().map(|&k| pools.fd(k).as_raw_fd()).collect();
    let mut sent = 0;
    while sent < piece.bytes.len() {
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        let iov = [IoSlice::new(&piece.bytes[sent..])];
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("the socket buffer holds the stream: {e}"),
        }
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

/// Seed inputs and the pieces they are built of.
pub mod seeds;

#[cfg(test)]
mod tests;
