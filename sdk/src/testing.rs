//! Helpers of the unit tests.

use iolite_ipc::{Agg, Pool};

/// `parts` as an aggregate of one buffer of `pool` each.
pub(crate) fn agg(pool: &Pool, parts: &[&[u8]]) -> Agg {
    parts
        .iter()
        .map(|p| {
            let mut b = pool.alloc(p.len().max(1)).unwrap();
            b.extend_from_slice(p).unwrap();
            b.freeze()
        })
        .collect()
}
