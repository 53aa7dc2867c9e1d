//! Which link a worker's request takes: [`WorkerLinks`] keeps one
//! worker thread's links to the runners of one module, one or more
//! *lanes* per runner (each served by a runner thread of its own), asks
//! the slot for a new one when the runner has none or all are held up,
//! and closes extra lanes that stay idle.
//!
//! A runner handles a lane's requests one after another: a request joins
//! a busy lane only when every request on it is for a target known to be
//! quick (`WorkerLinks::choose`); otherwise it gets a lane of
//! its own, up to the module's `in_flight` lanes per worker and runner, so
//! slow requests run in parallel and a quick one does not wait behind a
//! slow one.
//!
//! # Not yet
//! - A target whose requests are quick but now and then slow (a cache
//!   miss behind it) may hold a request that joined its lane: a runner
//!   does not yet hand a lane's queued requests to another thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolite_core::static_files::StaticFiles;
use tokio::sync::{Notify, oneshot};

use super::Link;
use super::protocol::LinkConfig;
use crate::process::supervisor::{Cmd, SlotHandle};

/// How long each lane of a quick module must have been held by one request
/// before a new lane is opened for it: short hold-ups (a runner thread off
/// the CPU for a few milliseconds) do not spread its requests over more
/// lanes, whose batching they would lose.
const QUICK_HELD: Duration = Duration::from_millis(50);

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

    /// The lane a request takes, and whether another lane should be
    /// opened for it instead (the lane returned is then the fallback). A
    /// runner thread handles a lane's requests one after another (and
    /// sends a burst's answers together), so a request for a *quick*
    /// target joins others only when they are all for quick targets (their requests take at most `lane_stall`, as this worker
    /// saw them: `Pace`); in this order:
    /// - the first lane that is idle, or holds only quick requests, the
    ///   current one started within `lane_stall`: requests are packed onto
    ///   the first lanes, whose batches save wake-ups, and the others go
    ///   idle and close;
    /// - among lanes that hold only quick requests, the one whose current
    ///   request is the youngest, unless all have been held for
    ///   [`QUICK_HELD`];
    /// - a new lane while the runner may have more (up to `in_flight`), or
    ///   else the least loaded lane.
    fn choose(&self, index: usize, target: u64) -> (Option<Rc<Link>>, bool) {
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
        if best.is_none() {
            // A new runner: it may take every lane again.
            if let Some(cap) = self.cap.borrow_mut().get_mut(index) {
                *cap = self.cfg.lanes;
            }
            return (None, true);
        }
        let stall = self.cfg.lane_stall;
        let now = Instant::now();
        let age = |l: &Rc<Link>| l.held_since().map(|t| now.saturating_duration_since(t));
        // Lanes whose requests are all for targets known to be quick; only
        // a quick request joins them (a slow one behind quick ones would
        // also hold their answers, which the runner sends in batches).
        let mine = self.cfg.pace.quick(target, stall);
        let quick = |l: &&Rc<Link>| mine && l.all_quick();
        if let Some(lane) = lanes
            .iter()
            .find(|l| age(l).is_none_or(|a| a < stall && quick(l)))
        {
            return (Some(lane.clone()), false);
        }
        // Every lane is held a little (a runner thread kept off the CPU by
        // a loaded machine is, now and then): among those on a quick
        // request, the one whose request is the youngest, unless even that
        // one has been held for `QUICK_HELD`; then a new lane is due.
        let youngest = lanes.iter().filter(quick).min_by_key(|l| age(l)).cloned();
        if youngest
            .as_ref()
            .and_then(age)
            .is_some_and(|a| a < QUICK_HELD)
        {
            return (youngest, false);
        }
        let cap = self
            .cap
            .borrow()
            .get(index)
            .copied()
            .unwrap_or(self.cfg.lanes);
        (best, lanes.len() < cap)
    }

    /// A lane of this worker to `slot`'s runner, as [`Self::choose`] says;
    /// lanes are made one at a time (the others wait for it, then look
    /// again). Waits while the runner (re)starts. None: the slot is gone or cannot
    /// attach.
    pub(crate) async fn link(&self, slot: &Arc<SlotHandle>, target: u64) -> Option<Rc<Link>> {
        let index = slot.index;
        let best = loop {
            let (best, grow) = self.choose(index, target);
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
            // Another request is opening a lane: look again once it is
            // open (this one may then open the next).
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
