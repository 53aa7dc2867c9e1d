//! Which link a worker's request takes: [`WorkerLinks`] keeps one
//! worker thread's links to the runners of one module, one or more
//! *lanes* per runner (each served by a runner thread of its own), asks
//! the slot for a new one when the runner has none or all are held up,
//! and closes extra lanes that stay idle.
//!
//! # Not yet (issue 4)
//! - A runner handles a link's requests one after another. A worker opens
//!   another lane (link, runner thread) to a runner, up to 4 and
//!   `in_flight`, only once none of its lanes has finished a request for
//!   the module's `lane_stall` (50 ms by default): a request that came in
//!   that time waits behind the slow one.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use iolite_core::static_files::StaticFiles;
use tokio::sync::{Notify, oneshot};

use super::Link;
use super::protocol::LinkConfig;
use crate::process::supervisor::{Cmd, SlotHandle};

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
    /// by a request for longer than `lane_stall` and the runner may have
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
            let idle = self.cfg.lane_idle;
            lanes.retain(|l| std::mem::take(&mut first) || !l.close_if_idle(now, idle));
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
                .is_some_and(|t| now.duration_since(t) >= self.cfg.lane_stall)
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
