//! The server's side of the data-link protocol: what a runner's frames do
//! to the requests in flight ([`receive`]: answers, streams, releases,
//! cache lookups), and the copies of copy mode. It takes frames that have
//! arrived and never waits, and owns no task: the reader task (`reader`)
//! calls it when the socket is readable, and the `module_answer` fuzz
//! target (`fuzzing`) on a socket it filled, so the fuzzer drives this
//! very code.
//!
//! # Not yet (issue 4)
//! - Copy mode (`transfer = "copy"`, kept to measure zero-copy) does not
//!   hold a streamed answer back from a slow client: the runner's parts
//!   are copied into the request pool as fast as it sends them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::Body;
use iolite_core::static_files::StaticFiles;
use iolite_ipc::{Agg, Event, Peer, Pool};
use iolite_sdk::wire::{Msg, ResponseFrame};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::metrics::ModuleMetrics;
use crate::process::room::Room;

/// A module's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The whole answer: its frame and its body (an aggregate by reference;
    /// bytes in copy mode).
    Whole(ResponseFrame, Body),
    /// A streamed answer: its head (body empty), the body's length (None:
    /// unknown, an empty part ends it), and the parts as they arrive (the
    /// sender is dropped if it ends short).
    Stream(ResponseFrame, Option<u64>, mpsc::UnboundedReceiver<Agg>),
}

/// A request sent to the runner and not yet answered.
#[derive(Debug)]
pub(super) struct Flight {
    /// None once the caller went away (cancelled), or once a stream began.
    /// Dropped unanswered: the runner failed (502).
    pub(super) reply: Option<oneshot::Sender<Answer>>,
    /// A streamed answer's parts still owed (None: until its end), and
    /// where they go.
    pub(super) stream: Option<(mpsc::UnboundedSender<Agg>, Option<u64>)>,
    /// A stream's deadline for its next part.
    pub(super) deadline: Instant,
    /// Copy mode: body bytes received so far.
    pub(super) inline: Vec<u8>,
    /// The runner was told the client of this stream is gone.
    pub(super) gone_told: bool,
    /// Body bytes still to be sent to the runner in parts (it may wait for
    /// them before it answers or streams on).
    pub(super) parts_left: u64,
    /// The last stream part handed to the connection: while the connection
    /// still holds it (a client slow to read), the runner may be waiting
    /// for its parts to be released, and is not stalled.
    pub(super) last_part: Option<Agg>,
    /// The request's credit on its runner, returned with the answer.
    pub(super) _credit: OwnedSemaphorePermit,
    /// Its target's key (`target_key`), for the link's pace.
    pub(super) target: u64,
    /// Its target was known to be quick when it was sent (`lanes`).
    pub(super) quick: bool,
}

impl Flight {
    /// Whether the runner may be waiting for the server: for body parts
    /// still to come, or for the release of stream parts the connection
    /// has not written to its client yet.
    pub(super) fn waits_for_the_server(&self) -> bool {
        self.parts_left > 0
            || self
                .last_part
                .as_ref()
                .is_some_and(|p| !p.bufs().iter().all(iolite_ipc::Buf::is_unique))
    }
}

/// What a link needs from its module.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub name: Arc<str>,
    /// The module's request pool (and, in copy mode, where stream parts
    /// are copied to).
    pub pool: Pool,
    /// The cache pool, when runners may include cached files.
    pub cache_pool: Option<Pool>,
    /// A stream's time limit between parts.
    pub timeout: Duration,
    /// Bodies travel inline.
    pub copy: bool,
    /// Most lanes a worker opens to one runner.
    pub lanes: usize,
    /// Requests on one link are handled one after another, so a request
    /// joins a busy link only when the link's current request is for a
    /// quick target (its requests take at most this long, as `pace` saw
    /// them) and started less than this long ago; otherwise it takes an
    /// idle link or a new one (see `lanes`). Quick targets keep few lanes
    /// and profit from their batching; slow ones get a runner thread per
    /// request, up to `in_flight`.
    pub lane_stall: Duration,
    /// How long this worker's requests to the module take in a runner.
    pub pace: Rc<Pace>,
    /// A lane other than a worker's first to a runner, idle this long, is
    /// closed (its runner thread ends).
    pub lane_idle: Duration,
    /// The module's counters (the links gauge).
    pub metrics: Option<Arc<ModuleMetrics>>,
    /// Notified when the runner released buffers (request bodies sent in
    /// parts wait for room).
    pub room: Option<Arc<Room>>,
    /// Copy mode: most body bytes the link gathers inline at once (the
    /// runner's output pool: no answer of its fits more).
    pub copy_cap: usize,
}

/// How long a module's requests take in a runner thread, as one worker
/// sees them, by target (the request's path): the time from a request's
/// start (sent to an idle link, or the one before it on its link
/// finished) to its answer, averaged (exponentially, weight 1/8). A
/// request queues behind another on a link only when that one's target is
/// known to be quick (`lanes`).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    micros: RefCell<HashMap<u64, u64>>,
}

/// Targets a worker keeps the pace of, per module (forgotten all at once
/// past it).
const PACE_TARGETS: usize = 4096;

impl Pace {
    fn record(&self, target: u64, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut m = self.micros.borrow_mut();
        if m.len() >= PACE_TARGETS && !m.contains_key(&target) {
            m.clear();
        }
        m.entry(target)
            .and_modify(|avg| *avg = *avg - *avg / 8 + us / 8)
            .or_insert(us);
    }

    /// Whether requests for `target` typically take at most `limit`
    /// (false for a target not answered yet).
    pub(crate) fn quick(&self, target: u64, limit: Duration) -> bool {
        self.micros
            .borrow()
            .get(&target)
            .is_some_and(|&us| u128::from(us) <= limit.as_micros())
    }
}

/// The key a request's target is paced by: its path's hash.
pub(crate) fn target_key(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Request `id` is finished: its time is counted, the link made
/// progress.
fn finish(st: &mut State, cfg: &LinkConfig, id: u64) -> Option<Flight> {
    let now = Instant::now();
    let flight = st.inflight.remove(&id);
    if let Some(f) = &flight {
        cfg.pace
            .record(f.target, now.saturating_duration_since(st.progress));
    }
    st.progress = now;
    flight
}

/// A link's side of the protocol: its peer (socket, pools, leases) and
/// the requests in flight on it.
#[derive(Debug)]
pub(super) struct State {
    pub(super) peer: Peer<Msg>,
    pub(super) inflight: HashMap<u64, Flight>,
    pub(super) closed: bool,
    /// When the runner last finished a request on this link (or the link
    /// last became busy): see `Link::held_since`.
    pub(super) progress: Instant,
    /// The answer to the runner's last cache lookup has left once the
    /// peer's `written()` reaches this: a lookup before then is a second
    /// one in flight (the wire contract allows one at a time).
    pub(super) lookup_until: u64,
}

/// Takes one frame the runner sent on a link, if one has arrived, and
/// acts on it: copy-mode body bytes, a cache lookup (answered from `files`,
/// or `None` without a cache), or an answer. Ok(false): nothing has
/// arrived. Err: why the link ends, and whether the runner broke the
/// protocol (then it is replaced). The fuzz target drives it too.
pub(super) fn receive(
    st: &mut State,
    cfg: &LinkConfig,
    files: Option<&StaticFiles>,
) -> Result<bool, (String, bool)> {
    let event = match st.peer.try_recv_event() {
        Ok(Some(ev)) => ev,
        Ok(None) => return Ok(false),
        Err(iolite_ipc::Error::Closed) => return Err(("runner gone".into(), false)),
        Err(e) => return Err((format!("runner link: {e}"), true)),
    };
    let msg = match event {
        Event::Message(m) => m,
        Event::Released(_) => {
            if let Some(room) = &cfg.room {
                room.wake();
            }
            return Ok(true);
        }
        _ => return Ok(true),
    };
    match msg {
        Msg::Data { id, bytes } if cfg.copy => {
            let gathered: usize = st.inflight.values().map(|f| f.inline.len()).sum();
            if gathered.saturating_add(bytes.0.len()) > cfg.copy_cap {
                return Err((
                    format!(
                        "copy mode: more than {} bytes gathered inline",
                        cfg.copy_cap
                    ),
                    true,
                ));
            }
            let flight = st
                .inflight
                .get_mut(&id)
                .ok_or_else(|| (format!("data for request {id}, not in flight"), true))?;
            // Decoding the frame copied the bytes out of the socket
            // buffer; gathering the chunks after the first is another.
            iolite_ipc::copied::add(bytes.0.len());
            if flight.inline.is_empty() {
                flight.inline = bytes.0;
            } else {
                iolite_ipc::copied::add(bytes.0.len());
                flight.inline.extend_from_slice(&bytes.0);
            }
        }
        Msg::CacheLookup { path } => {
            if st.peer.written() < st.lookup_until {
                return Err((
                    "a cache lookup while the last one is unanswered".into(),
                    true,
                ));
            }
            let body = files.and_then(|f| match f.cached_agg(path.as_bytes()) {
                Ok(Some(agg)) => st.peer.export(&agg).ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(module = %cfg.name, path, error = %e, "cache lookup");
                    None
                }
            });
            // Written by the reader task once it has read what came.
            st.peer
                .queue(&Msg::Cached { body })
                .map_err(|e| (format!("runner link: {e}"), false))?;
            st.lookup_until = st.peer.queued_end();
        }
        msg => answer(st, msg, cfg).map_err(|why| (why, true))?,
    }
    Ok(true)
}

/// Handles a runner's answer (whole, or a stream's head, part or abort);
/// Err: the runner broke the protocol.
fn answer(st: &mut State, msg: Msg, cfg: &LinkConfig) -> Result<(), String> {
    let id = match &msg {
        Msg::Response(f) => f.id,
        Msg::StreamHead { id, .. }
        | Msg::StreamPart { id, .. }
        | Msg::StreamAbort { id }
        | Msg::StreamEnd { id } => *id,
        _ => return Err("runner sent an unexpected message".into()),
    };
    let Some(flight) = st.inflight.get_mut(&id) else {
        return Err(format!("answer to request {id}, which is not in flight"));
    };
    match msg {
        Msg::Response(frame) if flight.stream.is_none() => {
            // A cancelled request's body is imported all the same, and
            // dropped at once: that releases its leases.
            let body = if cfg.copy {
                Body::Bytes(std::mem::take(&mut flight.inline))
            } else {
                Body::Agg(
                    st.peer
                        .import(&frame.body)
                        .map_err(|e| format!("bad response body descriptor: {e}"))?,
                )
            };
            if let Some(reply) = finish(st, cfg, id).and_then(|f| f.reply) {
                let _ = reply.send(Answer::Whole(frame, body));
            }
        }
        Msg::StreamHead {
            status,
            headers,
            len,
            ..
        } if flight.stream.is_none() => {
            let (tx, rx) = mpsc::unbounded_channel();
            let head = ResponseFrame {
                id,
                status,
                headers,
                body: iolite_ipc::AggDesc::default(),
            };
            if let Some(reply) = flight.reply.take() {
                let _ = reply.send(Answer::Stream(head, len, rx));
            }
            flight.deadline = Instant::now() + cfg.timeout;
            flight.stream = Some((tx, len));
            if len == Some(0) {
                finish(st, cfg, id);
            }
        }
        Msg::StreamPart { body, .. } if flight.stream.is_some() => {
            let part = if cfg.copy {
                copy_in(&cfg.pool, &std::mem::take(&mut flight.inline))?
            } else {
                st.peer
                    .import(&body)
                    .map_err(|e| format!("bad stream part descriptor: {e}"))?
            };
            let Some((tx, left)) = flight.stream.as_mut() else {
                return Err("no stream".into());
            };
            let done = match left {
                Some(left) if part.len() as u64 > *left => {
                    return Err(format!("request {id}: stream part overruns its length"));
                }
                Some(left) => {
                    *left -= part.len() as u64;
                    *left == 0
                }
                None => false,
            };
            // An empty part would end a stream of unknown length early.
            if part.is_empty() {
                return Ok(());
            }
            // The client may be gone: the part is dropped (and released),
            // and the runner is told once, so that the module stops.
            let kept = part.clone();
            if tx.send(part).is_ok() {
                flight.last_part = Some(kept);
            } else if !flight.gone_told {
                flight.gone_told = true;
                // Written by the reader task once it has read what came (a
                // link that cannot write fails there).
                let _ = st.peer.queue(&Msg::Cancel { id });
            }
            flight.deadline = Instant::now() + cfg.timeout;
            if done {
                finish(st, cfg, id);
            }
        }
        Msg::StreamEnd { .. } if matches!(flight.stream, Some((_, None))) => {
            if let Some((tx, _)) = &flight.stream {
                // The empty part ends the body.
                let _ = tx.send(Agg::new());
            }
            finish(st, cfg, id);
        }
        Msg::StreamAbort { .. } if flight.stream.is_some() => {
            // Dropping the sender closes the client's connection.
            finish(st, cfg, id);
        }
        _ => return Err(format!("request {id}: answer out of order")),
    }
    Ok(())
}

/// Copy mode: a request body's bytes, queued inline in `Data` frames: each
/// byte is copied out of the request pool (counted by `copy_to_vec`) and
/// once more into the frame (counted here).
pub(super) fn copy_out(peer: &mut Peer<Msg>, id: u64, body: &Agg) -> iolite_ipc::Result<()> {
    iolite_sdk::wire::queue_inline(peer, id, body)?;
    iolite_ipc::copied::add(body.len());
    Ok(())
}

/// Copy mode: a stream part's gathered bytes, copied into the request pool
/// so the stream gets an aggregate as in shared mode (a whole answer is
/// sent from the gathered bytes as they are).
fn copy_in(pool: &Pool, bytes: &[u8]) -> Result<Agg, String> {
    if bytes.is_empty() {
        return Ok(Agg::new());
    }
    let mut buf = pool
        .alloc(bytes.len())
        .map_err(|e| format!("copy mode: {e}"))?;
    buf.extend_from_slice(bytes)
        .map_err(|e| format!("copy mode: {e}"))?;
    iolite_ipc::copied::add(bytes.len());
    Ok(Agg::from(buf.freeze()))
}
