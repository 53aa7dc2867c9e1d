//! Request bodies in parts, server side: a module whose library takes them
//! ([`Module::BODY_IN_PARTS`](iolite_sdk::Module::BODY_IN_PARTS), a feature
//! bit read when the library is checked) gets a body over [`BODY_PART`],
//! and every chunked body (its length unknown until `Msg::BodyEnd`), as
//! [`Msg::BodyPart`](iolite_sdk::wire::Msg) frames while the connection
//! reads it; other modules get bodies whole, in the request pool (2 ×
//! `max_body`). The request leaves at once, its parts follow it on the same
//! link, and its time limit runs from its last part. The answer may start,
//! and end, before the body does (full duplex); a client that leaves
//! mid-body cancels the request in the runner.
//!
//! The connection fills a [`PartSink`] (a part buffer at a time, read
//! straight into the module's request pool); each full part goes to a
//! [`PartRoute`], which queues it until the request has left for a runner
//! and then hands it to that link. The sink keeps at most
//! [`MAX_HELD`] of its request's parts unreleased by the runner: a module
//! that does not keep up holds the upload back (TCP flow control does the
//! rest), so a body of any size goes through the fixed pool and one
//! request cannot take all of it.
//!
//! # Not yet (issue 4)
//! - A request whose body comes in parts holds its runner thread (a lane)
//!   and its credit for the whole upload: a slow uploader occupies one of
//!   the module's `in_flight` slots meanwhile.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use iolite_core::Error;
use iolite_core::body::{BodySink, FinishFuture, ReadyFuture};
use iolite_ipc::{Agg, Buf, BufMut, Pool};
use iolite_sdk::BODY_PART;
use tokio::time::Instant;

use super::link::Link;
use super::room::{Room, Waiting};

/// Most parts of one request the runner may hold before the connection
/// stops reading its body.
pub(crate) const MAX_HELD: usize = 8;
/// How often a sink waiting for room looks again when no release woke it.
const ROOM_POLL: Duration = Duration::from_millis(20);
/// Most bytes a link may have queued for its runner before a sink waits
/// (copy mode: parts go inline, and their buffers are free at once, so the
/// parts held say nothing of what the runner has taken).
const MAX_QUEUED: usize = 8 << 20;

/// Where a request's parts go.
#[derive(Debug)]
enum Route {
    /// The request has not left yet: its parts wait (an empty one: the end
    /// of a body of unknown length).
    Waiting(Vec<Agg>),
    /// The request is on this link.
    Sent(Rc<Link>, u64),
    /// The handler takes no more parts (it answered, or its link closed);
    /// the link, when it had left, to tell the runner if the body ends
    /// short.
    Closed(Option<(Rc<Link>, u64)>),
}

/// Shared by a request's sink (the connection's side) and its exchange
/// (the module's side).
#[derive(Debug)]
pub(crate) struct PartRoute {
    route: RefCell<Route>,
    /// When body bytes last arrived: a request whose body still arrives is
    /// not timed out.
    progress: Cell<Instant>,
}

impl PartRoute {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(PartRoute {
            route: RefCell::new(Route::Waiting(Vec::new())),
            progress: Cell::new(Instant::now()),
        })
    }

    /// The request left on `link` as `id`: the parts that waited follow it.
    pub(crate) fn attach(&self, link: Rc<Link>, id: u64) {
        let waiting = match &mut *self.route.borrow_mut() {
            Route::Waiting(parts) => std::mem::take(parts),
            _ => return,
        };
        *self.route.borrow_mut() = Route::Sent(link, id);
        for part in waiting {
            if !self.push(part) {
                break;
            }
        }
    }

    /// The handler takes no more parts.
    pub(crate) fn close(&self) {
        let mut route = self.route.borrow_mut();
        let left = match std::mem::replace(&mut *route, Route::Closed(None)) {
            Route::Sent(link, id) => Some((link, id)),
            Route::Closed(left) => left,
            Route::Waiting(_) => None,
        };
        *route = Route::Closed(left);
    }

    /// When body bytes last arrived.
    pub(crate) fn progress(&self) -> Instant {
        self.progress.get()
    }

    fn is_closed(&self) -> bool {
        matches!(*self.route.borrow(), Route::Closed(_))
    }

    /// Whether the link has too much queued for its runner to take more.
    fn backlogged(&self) -> bool {
        match &*self.route.borrow() {
            Route::Sent(link, _) => link.queued_bytes() > MAX_QUEUED,
            _ => false,
        }
    }

    /// Passes a full part on (an empty one: the end of a body of unknown
    /// length); false when the handler takes no more.
    fn push(&self, part: Agg) -> bool {
        let sent = match &mut *self.route.borrow_mut() {
            Route::Waiting(parts) => {
                parts.push(part);
                return true;
            }
            Route::Closed(_) => return false,
            Route::Sent(link, id) if part.is_empty() => link.end_parts(*id),
            Route::Sent(link, id) => link.send_part(*id, &part),
        };
        if !sent {
            self.close();
        }
        sent
    }

    /// The body ends short of its length (the client went away, the
    /// connection gave up on it, or the handler answered before it came):
    /// the runner is told, so that a handler waiting for the next part
    /// stops, and the runner forgets the parts it was still owed.
    fn abandon(&self) {
        self.close();
        if let Route::Closed(Some((link, id))) = &*self.route.borrow() {
            link.cancel_parts(*id);
        }
    }
}

/// The connection's side: a request pool part at a time.
#[derive(Debug)]
pub(crate) struct PartSink {
    pool: Pool,
    /// Woken when a runner released buffers of this pool.
    room: Arc<Room>,
    route: Rc<PartRoute>,
    /// The part being filled, and the size it is filled to.
    part: Option<BufMut>,
    part_len: usize,
    /// Body bytes not yet in a part (a body of unknown length: `u64::MAX`
    /// until its end).
    left: u64,
    /// The body's length is unknown (chunked): [`BodySink::finish`] ends it.
    open: bool,
    /// [`BodySink::finish`] was called.
    ended: bool,
    /// Parts passed on, kept until the runner released them.
    held: VecDeque<Buf>,
    /// Longest wait for room.
    timeout: Duration,
}

impl PartSink {
    /// A sink for a body of `len` bytes (None: unknown, chunked).
    pub(crate) fn new(
        pool: Pool,
        room: Arc<Room>,
        route: Rc<PartRoute>,
        len: Option<u64>,
        timeout: Duration,
    ) -> Self {
        PartSink {
            pool,
            room,
            route,
            part: None,
            part_len: 0,
            left: len.unwrap_or(u64::MAX),
            open: len.is_none(),
            ended: false,
            held: VecDeque::new(),
            timeout,
        }
    }

    /// A new part buffer, if this request may hold one more and the pool
    /// has room.
    fn try_part(&mut self) -> bool {
        while self.held.front().is_some_and(Buf::is_unique) {
            self.held.pop_front();
        }
        if self.held.len() >= MAX_HELD || self.route.backlogged() {
            return false;
        }
        let size = self.left.min(BODY_PART) as usize;
        match self.pool.alloc(size) {
            Ok(part) => {
                self.part = Some(part);
                self.part_len = size;
                true
            }
            Err(_) => false,
        }
    }

    async fn wait_for_room(&mut self) -> Result<bool, Error> {
        let deadline = Instant::now() + self.timeout;
        let room = self.room.clone();
        // Counted before looking, so a release in between wakes it.
        let _waiting = Waiting::new(&room.waiting);
        loop {
            if self.route.is_closed() {
                return Ok(false);
            }
            let notified = room.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_part() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable("the module's request pool is full"));
            }
            let wake = (now + ROOM_POLL).min(deadline);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl BodySink for PartSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async move {
            if self.route.is_closed() {
                return Ok(false);
            }
            if self.part.is_some() {
                return Ok(true);
            }
            self.wait_for_room().await
        })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        match self.part.as_mut() {
            Some(part) => {
                let want = self.part_len - part.len();
                let spare = part.spare_mut();
                let n = spare.len().min(max).min(want);
                &mut spare[..n]
            }
            None => &mut [],
        }
    }

    fn advance(&mut self, n: usize) {
        let Some(part) = self.part.as_mut() else {
            return;
        };
        // `n` came from a read into `space`: it fits.
        let _ = part.advance(n);
        if !self.open {
            self.left = self.left.saturating_sub(n as u64);
        }
        // A body that still arrives, however slowly, keeps the request
        // alive (the connection's read timeout ends a stalled one).
        self.route.progress.set(Instant::now());
        if part.len() < self.part_len {
            return;
        }
        self.pass_part();
    }

    /// A body of unknown length ends with an empty part; one of known
    /// length was counted to its end already.
    fn finish(&mut self) -> FinishFuture<'_> {
        if self.open && !self.ended {
            self.ended = true;
            self.pass_part();
            self.route.push(Agg::new());
        }
        Box::pin(async { Ok(()) })
    }
}

impl PartSink {
    /// Passes the part being filled on, if it holds anything.
    fn pass_part(&mut self) {
        let Some(part) = self.part.take() else {
            return;
        };
        if part.is_empty() {
            return;
        }
        let buf = part.freeze();
        self.held.push_back(buf.clone());
        self.route.push(Agg::from(buf));
    }
}

impl Drop for PartSink {
    fn drop(&mut self) {
        if (self.open && !self.ended) || (!self.open && self.left > 0) {
            self.route.abandon();
        }
    }
}
