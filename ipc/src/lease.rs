//! Leases: how a region stays alive while another process holds it.
//!
//! The sending side keeps, per peer, a table from lease id to the region it
//! exported (an `Arc`, so the region cannot be freed). The receiving side
//! queues the lease id when its last `Buf` of the region is dropped; the
//! queue goes back as one release frame per batch. When the peer dies or its
//! channel closes, its whole table is dropped and the regions are reclaimed.
//!
//! This file holds the sending side's table ([`LeaseTable`]); the receiving
//! side's queue is `release`'s `ReleaseQueue`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::arena::Region;
use crate::error::{Error, Result};

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
