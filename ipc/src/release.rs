//! The receiving side of leases: which leases local regions hold, and the
//! releases not yet sent back. Kept apart from `lease` (the sending side's
//! tables, which hold regions) because regions hold this queue: a region
//! of another process's pool queues its release here when its last `Buf`
//! goes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The receiving side's record of imported leases and of releases not yet sent.
#[derive(Debug, Default)]
pub(crate) struct ReleaseQueue {
    inner: Mutex<ReleaseInner>,
    /// Quotes of this side's own pools, imported and alive.
    quoted: AtomicUsize,
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

    /// Counts a quote of this side's pool made alive by an import.
    pub(crate) fn quote(&self) {
        self.quoted.fetch_add(1, Ordering::Relaxed);
    }

    /// The last `Buf` of a quote is gone.
    pub(crate) fn unquote(&self) {
        self.quoted.fetch_sub(1, Ordering::Relaxed);
    }

    /// Quotes alive.
    pub(crate) fn quoted(&self) -> usize {
        self.quoted.load(Ordering::Relaxed)
    }
}
