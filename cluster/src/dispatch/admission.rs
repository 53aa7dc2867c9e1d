//! The front end's cluster-wide limit S (LARD/R's admission control) on
//! each node: a client's request for a dispatched target is admitted while
//! the cluster holds fewer than S = (n−1)·T_high + T_low − 1 requests
//! ([`crate::policy::Policy::admission_limit`]; the other policies set no
//! limit); otherwise it waits in this node's bounded queue, and is refused
//! (503 with `Retry-After: 1`) when the queue is full or its wait passes
//! `queue_timeout`.
//!
//! "Requests in the cluster" is the sum of the live members' loads (active
//! requests), this node's exact and the others' as last gossiped, the same
//! table the policy decides with. There is no admission message: a node
//! sees the others' admissions one gossip period late, so under a sudden
//! surge the nodes together may admit a little past S for that long; the
//! policy's guarantee (a node under T_low implies another over T_high)
//! holds again once the loads are gossiped. A waiting request looks again
//! when one of this node's requests finishes, and every `recheck` (the
//! gossip period) for the others'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;

/// The queue and its counters (one per node, shared by its workers).
#[derive(Debug)]
pub struct Admission {
    /// Most requests waiting at once.
    pub queue: usize,
    /// Longest wait.
    pub timeout: Duration,
    /// How often a waiting request looks at the loads again without being
    /// woken (others' loads change with gossip).
    pub recheck: Duration,
    /// Requests waiting now.
    waiting: AtomicUsize,
    /// Woken when a request of this node finishes.
    wake: Notify,
    /// Requests that waited (and were then admitted or not).
    pub queued: AtomicU64,
    /// Requests refused: the queue full.
    pub refused_full: AtomicU64,
    /// Requests refused: their wait ran out.
    pub refused_timeout: AtomicU64,
}

impl Admission {
    /// A queue of `queue` requests, each waiting at most `timeout`.
    pub fn new(queue: usize, timeout: Duration, recheck: Duration) -> Admission {
        Admission {
            queue,
            timeout,
            recheck,
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            queued: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            refused_timeout: AtomicU64::new(0),
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Whether a request that finds `in_cluster` requests against `limit`
    /// goes ahead now: only when there is room and nobody waits (so a new
    /// request does not overtake the queue).
    pub fn goes_ahead(&self, in_cluster: u64, limit: Option<usize>) -> bool {
        match limit {
            None => true,
            Some(s) => in_cluster < s as u64 && self.waiting() == 0,
        }
    }

    /// A place in the queue, or None when it is full (the request gets
    /// 503). The place is given back when dropped.
    pub fn enter(self: &Arc<Self>) -> Option<Place> {
        let taken = self
            .waiting
            .fetch_update(Relaxed, Relaxed, |n| (n < self.queue).then_some(n + 1));
        match taken {
            Ok(_) => {
                self.queued.fetch_add(1, Relaxed);
                Some(Place(self.clone()))
            }
            Err(_) => {
                self.refused_full.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// One of this node's requests finished: a waiting one may go.
    pub fn finished(&self) {
        if self.waiting() > 0 {
            self.wake.notify_one();
        }
    }
}

/// A request's place in the queue.
#[derive(Debug)]
pub struct Place(Arc<Admission>);

impl Place {
    /// Waits until woken or `recheck` passes, whichever is first (the
    /// caller looks at the loads again either way).
    pub async fn nap(&self, until: tokio::time::Instant) {
        let wake = self.0.wake.notified();
        let at = until.min(tokio::time::Instant::now() + self.0.recheck);
        tokio::select! {
            () = wake => {}
            () = tokio::time::sleep_until(at) => {}
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Relaxed);
        // The next in line may find room now that this one went ahead.
        self.0.finished();
    }
}
