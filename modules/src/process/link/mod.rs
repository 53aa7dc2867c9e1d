//! A worker thread's data link to one runner process: the request path.
//!
//! Each worker thread (one tokio current-thread runtime) keeps one link per
//! runner slot of a module ([`WorkerLinks`]): a unix socket to the runner,
//! registered with the worker's own reactor ([`AsyncFd`]). A request task
//! writes its request frame straight into the socket ([`Link::submit`]) and
//! awaits a oneshot; the link's reader task (one per link, on the same
//! thread) decodes answers and completes them. No other thread is woken on
//! the way: one `sendmsg` out, one `recvmsg` back, and under load both carry
//! many frames (requests and the releases of answers already sent leave
//! together; the runner answers a burst in one write).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::Body;
use iolite_core::static_files::StaticFiles;
use iolite_ipc::{Agg, Event, Peer, Pool};
use iolite_sdk::wire::{Msg, RequestFrame, ResponseFrame};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot};

use crate::process::supervisor::{Attached, Cmd, SlotHandle};

#[doc(hidden)]
pub mod fuzzing;

/// How often a link with buffers still held wakes to send their releases
/// when no request carries them.
const RELEASE_TICK: Duration = Duration::from_millis(10);
/// Yields to the runtime after sending before the worker may sleep (see
/// `read_loop`), and sends that do not poll after polls found nothing.
const ANSWER_POLLS: usize = 16;
const SKIP_AFTER_MISS: u32 = 64;

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
struct Flight {
    /// None once the caller went away (cancelled), or once a stream began.
    /// Dropped unanswered: the runner failed (502).
    reply: Option<oneshot::Sender<Answer>>,
    /// A streamed answer's parts still owed (None: until its end), and
    /// where they go.
    stream: Option<(mpsc::UnboundedSender<Agg>, Option<u64>)>,
    /// A stream's deadline for its next part.
    deadline: Instant,
    /// Copy mode: body bytes received so far.
    inline: Vec<u8>,
    /// The runner was told the client of this stream is gone.
    gone_told: bool,
    /// Body bytes still to be sent to the runner in parts (it may wait for
    /// them before it answers or streams on).
    parts_left: u64,
    /// The last stream part handed to the connection: while the connection
    /// still holds it (a client slow to read), the runner may be waiting
    /// for its parts to be released, and is not stalled.
    last_part: Option<Agg>,
    /// The request's credit on its runner, returned with the answer.
    _credit: OwnedSemaphorePermit,
}

impl Flight {
    /// Whether the runner may be waiting for the server: for body parts
    /// still to come, or for the release of stream parts the connection
    /// has not written to its client yet.
    fn waits_for_the_server(&self) -> bool {
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
    /// The module's counters (the links gauge).
    pub metrics: Option<Arc<crate::metrics::ModuleMetrics>>,
    /// Notified when the runner released buffers (request bodies sent in
    /// parts wait for room).
    pub room: Option<Arc<crate::process::parts::Room>>,
}

#[derive(Debug)]
struct State {
    peer: Peer<Msg>,
    inflight: HashMap<u64, Flight>,
    closed: bool,
    /// When the runner last finished a request on this link (or the link
    /// last became busy): see [`Link::held_since`].
    progress: Instant,
}

/// One worker's link to one runner process.
#[derive(Debug)]
pub(crate) struct Link {
    /// A duplicate of the socket `state.peer` reads and writes, registered
    /// with the worker's reactor for readiness only.
    io: UnixStream,
    state: RefCell<State>,
    /// Wakes the reader task when output is left queued.
    kick: Notify,
    cfg: LinkConfig,
    files: Option<Rc<StaticFiles>>,
    slot: Arc<SlotHandle>,
    /// The runner this link leads to.
    pub generation: u64,
}

impl Link {
    /// Wraps an attached socket and starts its reader task on this thread.
    fn open(
        attached: Attached,
        cfg: LinkConfig,
        files: Option<Rc<StaticFiles>>,
        slot: Arc<SlotHandle>,
    ) -> std::io::Result<Rc<Link>> {
        attached.sock.set_nonblocking(true)?;
        let io = UnixStream::from_std(attached.sock.try_clone()?)?;
        let mut peer: Peer<Msg> = Peer::new(attached.sock);
        peer.adopt_pool(&cfg.pool);
        if let Some(cache) = &cfg.cache_pool {
            peer.adopt_pool(cache);
        }
        peer.adopt_remote(&attached.output);
        let link = Rc::new(Link {
            io,
            state: RefCell::new(State {
                peer,
                inflight: HashMap::new(),
                closed: false,
                progress: Instant::now(),
            }),
            kick: Notify::new(),
            cfg,
            files,
            slot,
            generation: attached.generation,
        });
        tokio::task::spawn_local(read_loop(link.clone()));
        Ok(link)
    }

    /// Closed, or its runner retired: the reader task ends, and what is
    /// in flight fails.
    fn is_closed(&self) -> bool {
        self.state.borrow().closed || self.slot.is_retired(self.generation)
    }

    /// Takes new requests: open, and its runner neither retired nor
    /// draining.
    fn accepts(&self) -> bool {
        !self.is_closed() && !self.slot.is_draining(self.generation)
    }

    /// Requests sent on this link and not finished (streams included).
    fn in_flight(&self) -> usize {
        self.state.borrow().inflight.len()
    }

    /// Since when this link has been busy without the runner finishing a
    /// request on it, if it is busy. The runner handles a link's requests
    /// one after another: a link whose runner has finished nothing for a
    /// while is held up by one request (a slow answer, a long stream),
    /// whereas a link that is merely loaded finishes requests all along.
    fn held_since(&self) -> Option<Instant> {
        let st = self.state.borrow();
        (!st.inflight.is_empty()).then_some(st.progress)
    }

    /// Closes the link if nothing was in flight on it for `idle` and this
    /// side holds none of the runner's buffers any more, every release
    /// written (its runner thread then ends, and the runner, which lives
    /// on, may reuse what the link's leases kept); whether it did.
    fn close_if_idle(&self, now: Instant, idle: Duration) -> bool {
        let mut st = self.state.borrow_mut();
        if !st.inflight.is_empty()
            || now.duration_since(st.progress) < idle
            || st.peer.leases_held() > 0
            || st.peer.releases_pending() > 0
            || st.peer.queued() > 0
        {
            return false;
        }
        st.closed = true;
        st.peer.close();
        drop(st);
        self.kick.notify_one();
        true
    }

    /// A draining runner's link (the caller knows it is) with nothing left
    /// in flight closes: the runner exits once all its links have.
    fn drained(&self) -> bool {
        let mut st = self.state.borrow_mut();
        if !st.inflight.is_empty() {
            return false;
        }
        st.closed = true;
        st.peer.close();
        true
    }

    /// Sends a request; the answer comes on the returned receiver (dropped
    /// unanswered if the runner fails). Err: the link is closed (or closed
    /// now: its runner is gone) and the request did not leave; the frame
    /// and the credit come back for another link.
    pub(crate) fn submit(
        &self,
        frame: RequestFrame,
        body: &Agg,
        credit: OwnedSemaphorePermit,
    ) -> Result<oneshot::Receiver<Answer>, Box<(RequestFrame, OwnedSemaphorePermit)>> {
        let mut st = self.state.borrow_mut();
        // A link found accepting just before (`WorkerLinks::link`) may have
        // started draining since: the request is still answered on it.
        if st.closed {
            return Err(Box::new((frame, credit)));
        }
        let id = frame.id;
        let parts_left = frame.parts;
        let mut msg = Msg::Request(frame);
        let queued = if self.cfg.copy {
            copy_out(&mut st.peer, id, body)
        } else if let Msg::Request(frame) = &mut msg {
            st.peer.export(body).map(|desc| frame.body = desc)
        } else {
            Ok(())
        };
        let queued = queued.and_then(|()| st.peer.queue(&msg));
        let Msg::Request(frame) = msg else {
            unreachable!("built above")
        };
        if let Err(e) = queued {
            drop(st);
            self.fail(&format!("cannot send a request: {e}"), false);
            return Err(Box::new((frame, credit)));
        }
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        if st.inflight.is_empty() {
            st.progress = now;
        }
        st.inflight.insert(
            id,
            Flight {
                reply: Some(tx),
                stream: None,
                deadline: now + self.cfg.timeout,
                inline: Vec::new(),
                gone_told: false,
                parts_left,
                last_part: None,
                _credit: credit,
            },
        );
        drop(st);
        self.slot.count_sent();
        // The reader task writes it: it runs after the other tasks this
        // worker woke in the same round, so their requests leave in the
        // same `sendmsg`.
        self.kick.notify_one();
        Ok(rx)
    }

    /// The client of request `id` went away before its answer: the runner
    /// is told (it skips the request if it has not started it).
    pub(crate) fn cancel(&self, id: u64) {
        let mut st = self.state.borrow_mut();
        let Some(flight) = st.inflight.get_mut(&id) else {
            return;
        };
        if flight.reply.take().is_none() {
            return;
        }
        // Written now, so that it is in the socket before the client's
        // connection closes.
        let sent = st
            .peer
            .queue(&Msg::Cancel { id })
            .and_then(|()| st.peer.flush(false));
        drop(st);
        match sent {
            Ok(true) => {}
            Ok(false) => self.kick.notify_one(),
            Err(e) => self.fail(&format!("runner link: {e}"), false),
        }
    }

    /// Sends the next part of request `id`'s body (see `process::parts`);
    /// false when the request is no longer in flight (answered, or the link
    /// closed): the handler takes no more of its body.
    pub(crate) fn send_part(&self, id: u64, part: &Agg) -> bool {
        let mut st = self.state.borrow_mut();
        if st.closed || !st.inflight.contains_key(&id) {
            return false;
        }
        let mut body = iolite_ipc::AggDesc::default();
        let queued = if self.cfg.copy {
            copy_out(&mut st.peer, id, part)
        } else {
            st.peer.export(part).map(|desc| body = desc)
        };
        let queued = queued.and_then(|()| st.peer.queue(&Msg::BodyPart { id, body }));
        if let Err(e) = queued {
            drop(st);
            self.fail(&format!("cannot send a body part: {e}"), false);
            return false;
        }
        // The runner cannot be expected to answer, or to stream on, before
        // it has the body: its time limit runs from the last part.
        let deadline = Instant::now() + self.cfg.timeout;
        if let Some(flight) = st.inflight.get_mut(&id) {
            flight.deadline = deadline;
            flight.parts_left = flight.parts_left.saturating_sub(part.len() as u64);
        }
        drop(st);
        self.kick.notify_one();
        true
    }

    /// Ends the body of unknown length of request `id` (its parts all
    /// went); false when the request is no longer in flight.
    pub(crate) fn end_parts(&self, id: u64) -> bool {
        let mut st = self.state.borrow_mut();
        if st.closed || !st.inflight.contains_key(&id) {
            return false;
        }
        if let Err(e) = st.peer.queue(&Msg::BodyEnd { id }) {
            drop(st);
            self.fail(&format!("cannot end a body: {e}"), false);
            return false;
        }
        let deadline = Instant::now() + self.cfg.timeout;
        if let Some(flight) = st.inflight.get_mut(&id) {
            flight.parts_left = 0;
            flight.deadline = deadline;
        }
        drop(st);
        self.kick.notify_one();
        true
    }

    /// Bytes queued for the runner that the socket has not taken yet.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.borrow().peer.queued()
    }

    /// The body of request `id` ends short of its length (its client went
    /// away, or it was answered first): the runner is told — a handler
    /// waiting for the next part stops, and a runner that answered forgets
    /// the parts it was owed.
    pub(crate) fn cancel_parts(&self, id: u64) {
        let mut st = self.state.borrow_mut();
        if st.closed {
            return;
        }
        // No more parts: from now on the runner has all it will get.
        let deadline = Instant::now() + self.cfg.timeout;
        if let Some(flight) = st.inflight.get_mut(&id) {
            flight.parts_left = 0;
            flight.deadline = deadline;
        }
        if let Err(e) = st.peer.queue(&Msg::Cancel { id }) {
            drop(st);
            self.fail(&format!("runner link: {e}"), false);
            return;
        }
        drop(st);
        self.kick.notify_one();
    }

    /// Writes what is queued (the reader task only); what the socket does
    /// not take now, it writes when the socket becomes writable.
    fn flush(&self) {
        let (r, backlog) = {
            let mut st = self.state.borrow_mut();
            let backlog = st.peer.queued() > 0;
            (st.peer.flush(false), backlog)
        };
        if let Err(e) = r {
            self.fail(&format!("runner link: {e}"), false);
        } else if backlog && let Some(room) = &self.cfg.room {
            // Uploads waiting for the queue to go down (copy mode).
            room.wake();
        }
    }

    /// Closes the link: every request in flight on it fails (502; a stream
    /// closes its connection). With `replace`, the runner broke the protocol
    /// and is replaced.
    fn fail(&self, why: &str, replace: bool) {
        let flights = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return;
            }
            st.closed = true;
            st.peer.close();
            std::mem::take(&mut st.inflight)
        };
        if replace {
            tracing::warn!(module = %self.cfg.name, "{why}; replacing the runner");
        } else if !flights.is_empty() {
            tracing::warn!(module = %self.cfg.name, in_flight = flights.len(), "{why}");
        }
        // The other workers' links to this runner take no more requests.
        self.slot.retire(self.generation);
        drop(flights);
        self.kick.notify_one();
    }

    /// Decodes every frame that has arrived. Ok(false): nothing more now.
    fn read_some(&self) -> Result<bool, (String, bool)> {
        receive(
            &mut self.state.borrow_mut(),
            &self.cfg,
            self.files.as_deref(),
        )
    }

    /// Ends streams whose runner sent no part in time; the runner is
    /// replaced. Returns the next stream deadline.
    fn expire_streams(&self) -> Option<Instant> {
        let now = Instant::now();
        let stalled = {
            let mut st = self.state.borrow_mut();
            let timeout = self.cfg.timeout;
            st.inflight.values_mut().any(|f| {
                if f.stream.is_none() || f.deadline > now {
                    return false;
                }
                if f.waits_for_the_server() {
                    // The client or the upload holds the runner back: the
                    // connection's own timeouts deal with that.
                    f.deadline = now + timeout;
                    return false;
                }
                true
            })
        };
        if stalled {
            self.fail("a streamed answer stalled", true);
            return None;
        }
        let st = self.state.borrow();
        st.inflight
            .values()
            .filter(|f| f.stream.is_some())
            .map(|f| f.deadline)
            .min()
    }
}

/// Takes one frame the runner sent on a link, if one has arrived, and
/// acts on it: copy-mode body bytes, a cache lookup (answered from `files`,
/// or `None` without a cache), or an answer. Ok(false): nothing has
/// arrived. Err: why the link ends, and whether the runner broke the
/// protocol (then it is replaced). The fuzz target drives it too.
fn receive(
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
            st.progress = Instant::now();
            if let Some(reply) = st.inflight.remove(&id).and_then(|f| f.reply) {
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
                st.progress = Instant::now();
                st.inflight.remove(&id);
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
                st.progress = Instant::now();
                st.inflight.remove(&id);
            }
        }
        Msg::StreamEnd { .. } if matches!(flight.stream, Some((_, None))) => {
            if let Some((tx, _)) = &flight.stream {
                // The empty part ends the body.
                let _ = tx.send(Agg::new());
            }
            st.progress = Instant::now();
            st.inflight.remove(&id);
        }
        Msg::StreamAbort { .. } if flight.stream.is_some() => {
            // Dropping the sender closes the client's connection.
            st.progress = Instant::now();
            st.inflight.remove(&id);
        }
        _ => return Err(format!("request {id}: answer out of order")),
    }
    Ok(())
}

/// Copy mode: a request body's bytes, queued inline in `Data` frames: each
/// byte is copied out of the request pool (counted by `copy_to_vec`) and
/// once more into the frame (counted here).
fn copy_out(peer: &mut Peer<Msg>, id: u64, body: &Agg) -> iolite_ipc::Result<()> {
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

/// The reader task of a link: answers in, queued output out, releases on
/// a tick, stalled streams ended. It ends when the link closes.
async fn read_loop(link: Rc<Link>) {
    let _open = OpenLink::new(link.cfg.metrics.clone());
    // One timer for the whole life of the link, re-armed when it fires (a
    // new one per wake-up would cost a timer-wheel insert and removal).
    let tick = tokio::time::sleep(RELEASE_TICK);
    tokio::pin!(tick);
    // Right after requests went out, the task yields to the runtime a few
    // times instead of letting the worker sleep: each yield polls the
    // reactor without blocking, and a quick answer is then taken without a
    // sleep and a wake-up. Other tasks run between the yields; answers are
    // read only through readiness, as always. After polls that found
    // nothing, the next sends do not poll (the runner is busy or slow).
    let mut polls_left = 0usize;
    let mut skip = 0u32;
    // Wakes the task when a runner starts draining (its link may be idle).
    let mut drain = link.slot.drain_watch();
    let mut drain_open = true;
    let mut draining = link.slot.is_draining(link.generation);
    loop {
        if link.is_closed() || (draining && link.drained()) {
            return;
        }
        let (want_write, hold, waiting) = {
            let st = link.state.borrow();
            (
                st.peer.queued() > 0,
                st.peer.leases_held() > 0 || st.peer.releases_pending() > 0,
                st.inflight.values().any(|f| f.reply.is_some()),
            )
        };
        if !waiting {
            polls_left = 0;
        } else if polls_left == 1 {
            // The last poll found nothing.
            skip = SKIP_AFTER_MISS;
        }
        let deadline = link.expire_streams();
        if link.is_closed() {
            return;
        }
        tokio::select! {
            biased;
            ready = link.io.readable() => {
                if ready.is_err() {
                    link.fail("runner link: reactor error", false);
                    return;
                }
                // Until the socket is drained (WouldBlock clears readiness).
                // A read made inside this `try_io` that took less than it had
                // room for drained it: no second read is needed to see
                // EAGAIN (data that came after it is a new readiness event,
                // which clearing does not lose). A read made before proves
                // nothing: data may have come since, its event already taken.
                loop {
                    let r = link.io.try_io(Interest::READABLE, || {
                        link.state.borrow_mut().peer.clear_drained();
                        match link.read_some() {
                            Ok(true) if link.state.borrow().peer.drained() => {
                                Err(ErrorKind::WouldBlock.into())
                            }
                            Ok(true) => Ok(Ok(())),
                            Ok(false) => Err(ErrorKind::WouldBlock.into()),
                            Err(e) => Ok(Err(e)),
                        }
                    });
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err((why, replace))) => {
                            link.fail(&why, replace);
                            return;
                        }
                        Err(_) => break,
                    }
                }
            }
            ready = link.io.writable(), if want_write => {
                if ready.is_err() {
                    link.fail("runner link: reactor error", false);
                    return;
                }
                let r = link.io.try_io(Interest::WRITABLE, || {
                    match link.state.borrow_mut().peer.flush(false) {
                        Ok(true) => Ok(Ok(())),
                        Ok(false) => Err(ErrorKind::WouldBlock.into()),
                        Err(e) => Ok(Err(e)),
                    }
                });
                if let Ok(Err(e)) = r {
                    link.fail(&format!("runner link: {e}"), false);
                    return;
                }
            }
            () = link.kick.notified() => {
                link.flush();
                if skip > 0 {
                    skip -= 1;
                } else {
                    polls_left = ANSWER_POLLS;
                }
            }
            () = tokio::task::yield_now(), if polls_left > 0 && waiting => {
                polls_left -= 1;
            }
            () = &mut tick, if hold => {
                tick.as_mut().reset(tokio::time::Instant::now() + RELEASE_TICK);
                let r = {
                    let mut st = link.state.borrow_mut();
                    st.peer.queue_releases().map(drop)
                };
                if r.is_ok() {
                    link.flush();
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {}
            changed = drain.changed(), if drain_open => {
                drain_open = changed.is_ok();
                draining = link.slot.is_draining(link.generation);
            }
        }
    }
}

/// Counts a link in the module's links gauge while its reader task runs.
struct OpenLink(Option<Arc<crate::metrics::ModuleMetrics>>);

impl OpenLink {
    fn new(metrics: Option<Arc<crate::metrics::ModuleMetrics>>) -> Self {
        if let Some(m) = &metrics {
            m.links.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        OpenLink(metrics)
    }
}

impl Drop for OpenLink {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.links.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// How long a busy link may go without its runner finishing a request
/// before the worker opens another lane to the same runner (requests on
/// one link are handled one after another: a slow one would hold up those
/// behind it). Quick modules, however loaded, rarely reach it (a runner
/// thread kept off the CPU that long by an overloaded machine does) and
/// keep one lane per worker, whose batching they profit from.
const LANE_STALL: Duration = Duration::from_millis(50);
/// A lane other than a worker's first to a runner, idle this long, is
/// closed (its runner thread ends).
const LANE_IDLE: Duration = Duration::from_secs(2);

/// One worker thread's links to the runners of one module, by slot: one
/// or more *lanes* per runner, each served by a runner thread of its own.
#[derive(Debug)]
pub(crate) struct WorkerLinks {
    links: RefCell<Vec<Vec<Rc<Link>>>>,
    /// Per slot: most lanes its runner accepted (it refused one more), or
    /// `cfg.lanes`.
    cap: RefCell<Vec<usize>>,
    connecting: RefCell<Vec<bool>>,
    connected: Notify,
    cfg: LinkConfig,
    files: Option<Rc<StaticFiles>>,
}

impl WorkerLinks {
    pub(crate) fn new(cfg: LinkConfig, files: Option<StaticFiles>) -> Self {
        WorkerLinks {
            links: RefCell::new(Vec::new()),
            cap: RefCell::new(Vec::new()),
            connecting: RefCell::new(Vec::new()),
            connected: Notify::new(),
            cfg,
            files: files.map(Rc::new),
        }
    }

    /// The lane with the fewest requests in flight, and whether another
    /// lane should be opened: none is open, or every one has been held up
    /// by a request for longer than [`LANE_STALL`] and the runner may have
    /// more.
    fn choose(&self, index: usize) -> (Option<Rc<Link>>, bool) {
        let mut links = self.links.borrow_mut();
        if links.len() <= index {
            links.resize(index + 1, Vec::new());
        }
        let lanes = &mut links[index];
        lanes.retain(|l| l.accepts());
        if lanes.len() > 1 {
            let now = Instant::now();
            // Extra lanes that nothing held up for a while go.
            let mut first = true;
            lanes.retain(|l| std::mem::take(&mut first) || !l.close_if_idle(now, LANE_IDLE));
        }
        let best = lanes.iter().min_by_key(|l| l.in_flight()).cloned();
        let Some(first) = best.as_ref() else {
            // A new runner: it may take every lane again.
            if let Some(cap) = self.cap.borrow_mut().get_mut(index) {
                *cap = self.cfg.lanes;
            }
            return (None, true);
        };
        let cap = self
            .cap
            .borrow()
            .get(index)
            .copied()
            .unwrap_or(self.cfg.lanes);
        if first.in_flight() == 0 || lanes.len() >= cap {
            return (best, false);
        }
        let now = Instant::now();
        let stalled = lanes.iter().all(|l| {
            l.held_since()
                .is_some_and(|t| now.duration_since(t) >= LANE_STALL)
        });
        (best, stalled)
    }

    /// A lane of this worker to `slot`'s runner: the least busy one; a new
    /// one is made (once, however many requests ask at the same time) when
    /// there is none, or when all are held up and the runner may have more.
    /// Waits while the runner (re)starts. None: the slot is gone or cannot
    /// attach.
    pub(crate) async fn link(&self, slot: &Arc<SlotHandle>) -> Option<Rc<Link>> {
        let index = slot.index;
        let best = loop {
            let (best, grow) = self.choose(index);
            if !grow {
                return best;
            }
            let busy = self
                .connecting
                .borrow()
                .get(index)
                .copied()
                .unwrap_or(false);
            if !busy {
                break best;
            }
            if best.is_some() {
                // Another request is opening a lane: use what there is.
                return best;
            }
            self.connected.notified().await;
        };
        let _connecting = Connecting::new(self, index);
        let (tx, rx) = oneshot::channel();
        if !slot.send(Cmd::Connect(tx)) {
            return best;
        }
        let Ok(attached) = rx.await else {
            // The runner refused another lane (no thread to spare), or
            // could not start.
            if best.is_some() {
                let mut cap = self.cap.borrow_mut();
                if cap.len() <= index {
                    cap.resize(index + 1, self.cfg.lanes);
                }
                cap[index] = self.links.borrow().get(index).map_or(1, Vec::len).max(1);
            }
            return best;
        };
        let link = match Link::open(attached, self.cfg.clone(), self.files.clone(), slot.clone()) {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(module = %self.cfg.name, error = %e, "cannot use a runner link");
                return best;
            }
        };
        let mut links = self.links.borrow_mut();
        if links.len() <= index {
            links.resize(index + 1, Vec::new());
        }
        links[index].push(link.clone());
        Some(link)
    }
}

/// Marks a link being made; when dropped (made, failed or abandoned), the
/// requests waiting for it look again.
struct Connecting<'a> {
    links: &'a WorkerLinks,
    index: usize,
}

impl<'a> Connecting<'a> {
    fn new(links: &'a WorkerLinks, index: usize) -> Self {
        let mut c = links.connecting.borrow_mut();
        if c.len() <= index {
            c.resize(index + 1, false);
        }
        c[index] = true;
        Connecting { links, index }
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.links.connecting.borrow_mut().get_mut(self.index) {
            *c = false;
        }
        self.links.connected.notify_waiters();
    }
}
