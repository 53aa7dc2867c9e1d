//! The process-wide counter of body bytes copied in user space.
//!
//! Every helper of this crate that copies body bytes (for example
//! [`Agg::copy_to_vec`](crate::Agg::copy_to_vec)) adds to it; core exports it as
//! `iolite_body_bytes_copied_total`. Code elsewhere that copies body bytes calls
//! [`add`] itself, so zero-copy claims can be checked against the counter.

use std::sync::atomic::{AtomicU64, Ordering};

static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Records that `n` body bytes were copied in user space.
pub fn add(n: usize) {
    TOTAL.fetch_add(n as u64, Ordering::Relaxed);
}

/// Body bytes copied in user space by this process so far.
pub fn total() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}
