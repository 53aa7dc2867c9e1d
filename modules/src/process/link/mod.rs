//! A worker thread's data link to one runner process: the request path.
//!
//! Each worker thread (one tokio current-thread runtime) keeps its own
//! links to a module's runners (`lanes`): unix sockets registered with the
//! worker's own reactor. A request task writes its request frame straight
//! into the socket ([`Link::submit`]) and awaits a oneshot; the link's
//! reader task (`reader`, one per link, on the same thread) decodes
//! answers (`protocol`) and completes them. No other thread is woken on
//! the way: one `sendmsg` out, one `recvmsg` back, and under load both
//! carry many frames (requests and the releases of answers already sent
//! leave together; the runner answers a burst in one write).
//!
//! `fuzzing` (tests, and the `fuzzing` feature) is the `module_answer`
//! fuzz target's entry point into `protocol`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::static_files::StaticFiles;
use iolite_ipc::Agg;
use iolite_sdk::wire::{Msg, RequestFrame};
use tokio::net::UnixStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

use crate::process::supervisor::SlotHandle;
pub(crate) use protocol::{Answer, LinkConfig, target_key};
use protocol::{Flight, State, copy_out, receive};

// Built for the crate's tests too, which check the seeds; there, what
// only the fuzz target reads (`SERVER_FIELDS`, `Outcome::id`) is unused.
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code, unused_imports))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod lanes;
mod protocol;
mod reader;

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

    /// Whether every request in flight on the link (the runner handles
    /// them in order: a new one waits for them all) was for a quick target
    /// when it was sent; false for an idle link.
    fn all_quick(&self) -> bool {
        let st = self.state.borrow();
        !st.inflight.is_empty() && st.inflight.values().all(|f| f.quick)
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
        target: u64,
    ) -> Result<oneshot::Receiver<Answer>, Box<(RequestFrame, OwnedSemaphorePermit)>> {
        let mut st = self.state.borrow_mut();
        // A link found accepting just before (`WorkerLinks::link`) may have
        // started draining since: the request is still answered on it.
        if st.closed {
            return Err(Box::new((frame, credit)));
        }
        let id = frame.id;
        let parts_left = frame.parts;
        // Known quick as it joins (see `all_quick`).
        let quick = self.cfg.pace.quick(target, self.cfg.lane_stall);
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
                target,
                quick,
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
        let mut excused = 0;
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
                    excused += 1;
                    return false;
                }
                true
            })
        };
        if let (Some(m), true) = (&self.cfg.metrics, excused > 0) {
            m.stream_waits
                .fetch_add(excused, std::sync::atomic::Ordering::Relaxed);
        }
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
