//! [`Room`]: how a request body sent in parts (`parts`) waits for room
//! that a link (`link`) makes. A leaf, so that links and parts, which both
//! need it, do not import each other.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Wakes uploads that wait for room: in the module's request pool (a
/// runner released buffers) or in a link's queue to its runner (it was
/// flushed). Links call [`Room::wake`] on every release and flush, so it
/// costs one atomic load unless an upload waits.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub(super) notify: Notify,
    /// Sinks in `PartSink::wait_for_room`.
    pub(super) waiting: AtomicUsize,
}

impl Room {
    /// Wakes the waiting sinks, if any.
    pub(crate) fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// Counts a sink as waiting while it lives.
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
