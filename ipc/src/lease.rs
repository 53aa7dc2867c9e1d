//! Leases: how a region stays alive while another process holds it.
//!
//! The sending side keeps, per peer, a table from lease id to the region it
//! exported (an `Arc`, so the region cannot be freed). The receiving side
//! queues the lease id when its last `Buf` of the region is dropped; the
//! queue goes back as one release frame per batch. When the peer dies or its
//! channel closes, its whole table is dropped and the regions are reclaimed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::pool::Region;

/// The receiving side's record of imported leases and of releases not yet sent.
#[derive(Debug, Default)]
pub(crate) struct ReleaseQueue {
    inner: Mutex<ReleaseInner>,
}

#[derive(Debug, Default)]
struct ReleaseInner {
    pending: Vec<u64>,
    imported: HashSet<u64>,
}

impl ReleaseQueue {
    fn lock(&self) -> MutexGuard<'_, ReleaseInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `lease` is now held by a local region.
    pub(crate) fn import(&self, lease: u64) -> Result<()> {
        if self.lock().imported.insert(lease) {
            Ok(())
        } else {
            Err(Error::DuplicateLease { lease })
        }
    }

    /// Called when the last local `Buf` of `lease`'s region is dropped.
    pub(crate) fn release(&self, lease: u64) {
        let mut g = self.lock();
        g.imported.remove(&lease);
        g.pending.push(lease);
    }

    /// Queues a release of `lease` unless a local region holds it; returns
    /// whether it was queued.
    pub(crate) fn queue_unheld(&self, lease: u64) -> bool {
        let mut g = self.lock();
        if g.imported.contains(&lease) {
            return false;
        }
        g.pending.push(lease);
        true
    }

    /// Takes the releases not yet sent.
    pub(crate) fn take(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().pending)
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    pub(crate) fn held(&self) -> usize {
        self.lock().imported.len()
    }
}

/// The sending side's leases to one peer.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    next: u64,
    held: HashMap<u64, Arc<Region>>,
}

impl LeaseTable {
    /// Keeps `region` alive under a new lease id.
    pub(crate) fn grant(&mut self, region: Arc<Region>) -> u64 {
        self.next += 1;
        self.held.insert(self.next, region);
        self.next
    }

    pub(crate) fn get(&self, lease: u64) -> Option<&Arc<Region>> {
        self.held.get(&lease)
    }

    /// Ends a lease; the region is freed if nothing else holds it.
    pub(crate) fn release(&mut self, lease: u64) -> Result<()> {
        self.held
            .remove(&lease)
            .map(drop)
            .ok_or(Error::UnknownLease { lease })
    }

    /// Ends every lease (the peer is gone).
    pub(crate) fn reclaim_all(&mut self) -> usize {
        let n = self.held.len();
        self.held.clear();
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}
