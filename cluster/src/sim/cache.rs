//! A simulated node's memory cache: the served cache's own replacement
//! code ([`iolite_core::cache::replacement`]), so that the simulated cache
//! is the served one and a change to the policy shows up in both.
//!
//! Two things are the simulator's. The cost GDSF weighs is the object's
//! disk read time, the penalty a miss pays in this model (the server weighs
//! every miss as 1, for the request hit ratio). And an object that is
//! already held when a second, concurrent miss's disk read ends is left as
//! it is: the simulator does not coalesce pending reads, and the second
//! read is not a use (the server's `FileCache::load` replaces the entry
//! instead, restarting its frequency; like the uncoalesced reads, this
//! matters mostly while caches are cold). Objects are dense indices
//! `0..objects`, found through an array ([`DenseIndex`]), so the
//! simulator's hot path does no hashing.

use iolite_core::cache::replacement::{DenseIndex, Policy, Replacement};

/// The replacement policy of a node cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Least recently used.
    Lru,
    /// Greedy-Dual-Size-Frequency (Cherkasova 1998): priority = L +
    /// frequency · cost / size, L rising to each evicted priority. The cost
    /// is the object's disk read time, the penalty a miss pays. The LARD
    /// paper's nodes used Greedy-Dual-Size.
    Gdsf,
}

impl From<CacheKind> for Policy {
    fn from(kind: CacheKind) -> Self {
        match kind {
            CacheKind::Lru => Policy::Lru,
            CacheKind::Gdsf => Policy::Gdsf,
        }
    }
}

/// One node's cache.
#[derive(Debug)]
pub struct NodeCache {
    replacement: Replacement<u32, DenseIndex>,
}

impl NodeCache {
    /// An empty cache of `capacity` bytes over `objects` objects.
    pub fn new(kind: CacheKind, capacity: u64, objects: usize) -> Self {
        NodeCache {
            replacement: Replacement::with_index(kind.into(), capacity, DenseIndex::new(objects)),
        }
    }

    /// Whether `obj` is in memory.
    pub fn contains(&self, obj: u32) -> bool {
        self.replacement.contains(&obj)
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.replacement.used()
    }

    /// A request for `obj`: returns whether it hit, and counts the use if so.
    pub fn access(&mut self, obj: u32) -> bool {
        self.replacement.touch(&obj)
    }

    /// Brings `obj` of `size` bytes into memory after a miss whose disk read
    /// took `disk_ns`, evicting as needed. An object larger than the whole
    /// cache is not kept.
    pub fn insert(&mut self, obj: u32, size: u64, disk_ns: u64) {
        if self.replacement.contains(&obj) {
            return;
        }
        // Refused only when larger than the cache: then it is not kept.
        let _ = self
            .replacement
            .admit_with_cost(obj, size, disk_ns as f64, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let sizes = [10, 10, 10, 10];
        let mut c = NodeCache::new(CacheKind::Lru, 30, 4);
        for o in 0..3 {
            assert!(!c.access(o));
            c.insert(o, sizes[o as usize], 1);
        }
        assert!(c.access(0)); // 1 is now least recent
        c.insert(3, sizes[3], 1);
        assert!(!c.contains(1));
        assert!(c.contains(0) && c.contains(2) && c.contains(3));
        assert_eq!(c.used(), 30);
    }

    #[test]
    fn gdsf_keeps_frequent_and_cheap_per_byte() {
        let sizes = [10, 10, 20, 10];
        let mut c = NodeCache::new(CacheKind::Gdsf, 40, 4);
        for o in 0..3u32 {
            c.insert(o, sizes[o as usize], 100);
        }
        for _ in 0..3 {
            assert!(c.access(0));
        }
        // 2 is big (low value per byte) and 1 was used once: 2 goes first.
        c.insert(3, sizes[3], 100);
        assert!(!c.contains(2));
        assert!(c.contains(0) && c.contains(1) && c.contains(3));
        assert_eq!(c.used(), 30);
    }

    /// Equal priorities (same size, cost and frequency, same L) leave in
    /// the order they were set, whatever the objects' numbers: numbers are
    /// popularity ranks in synthetic workloads, so breaking ties by number
    /// would evict the most popular of the tied objects first.
    #[test]
    fn gdsf_breaks_ties_by_age_not_by_object_number() {
        let mut c = NodeCache::new(CacheKind::Gdsf, 30, 4);
        for o in [2, 1, 0] {
            c.insert(o, 10, 100);
        }
        c.insert(3, 10, 100);
        assert!(!c.contains(2));
        assert!(c.contains(0) && c.contains(1) && c.contains(3));
    }

    #[test]
    fn oversized_objects_are_not_kept() {
        let sizes = [100];
        for kind in [CacheKind::Lru, CacheKind::Gdsf] {
            let mut c = NodeCache::new(kind, 50, 1);
            c.insert(0, sizes[0], 1);
            assert!(!c.contains(0));
            assert_eq!(c.used(), 0);
        }
    }
}
