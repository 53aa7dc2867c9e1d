//! Replacement policies for the unified cache: which entry leaves when the
//! byte budget is full.
//!
//! Greedy-Dual-Size-Frequency (Cherkasova 1998, the successor of the
//! Greedy-Dual-Size that Flash-Lite plugged into IO-Lite) gives each entry the
//! priority `H = L + freq × cost / size`, where `L` is the cache's inflation
//! value: the priority of the last victim. Small, often-requested files stay;
//! large, rarely-requested ones leave first; and an entry that was hot long ago
//! ages out because `L` keeps rising. `cost` is 1, so the policy maximises the
//! request hit ratio, which is what a web server's CPU cost follows.
//!
//! LRU is kept for comparison (`cache.policy = "lru"`): its priority is the
//! time of the last use.
//!
//! This module is bookkeeping only: it never touches the cached bytes. The
//! cache asks it where a new entry fits and which keys to drop; dropping a key
//! drops the cache's reference to the entry's buffers, and the pool recycles
//! the space only when the last reference (for example an in-flight send) is
//! gone.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Which entries to evict first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Greedy-Dual-Size-Frequency: evict the lowest `L + freq / size`.
    #[default]
    Gdsf,
    /// Least recently used.
    Lru,
}

/// A priority that orders like the `f64` it came from. Priorities are finite
/// and non-negative, and for those the IEEE-754 bit pattern orders like the
/// value, so a `u64` key gives the ordered set a total order for free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Priority(u64);

impl Priority {
    fn from_f64(value: f64) -> Self {
        debug_assert!(value.is_finite() && value >= 0.0);
        Priority(value.max(0.0).to_bits())
    }

    fn to_f64(self) -> f64 {
        f64::from_bits(self.0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    size: u64,
    freq: u64,
    /// (priority, tie-breaker): the entry's key in `order`, as of when it
    /// was last placed there.
    rank: (Priority, u64),
    /// The rank the policy gives the entry now. A hit only updates this
    /// (O(1), no reordering); `evict_one` moves an entry whose `rank` is
    /// stale when it reaches the front. Ranks only grow (GDSF's `L` never
    /// falls, LRU's clock only ticks), so every key in `order` is at most
    /// its entry's current rank, and the first entry popped whose key is
    /// current is the true minimum: the same victims as eager reordering.
    current: (Priority, u64),
}

/// Why an entry was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The entry alone is larger than the whole budget.
    TooLarge,
}

/// The replacement state of a cache holding keys `K` within a byte budget.
#[derive(Debug)]
pub struct Replacement<K> {
    policy: Policy,
    budget: u64,
    used: u64,
    /// GDSF's inflation value `L`.
    inflation: f64,
    /// A counter that breaks priority ties by age and is LRU's clock.
    tick: u64,
    entries: HashMap<K, Meta>,
    order: BTreeSet<((Priority, u64), K)>,
}

impl<K: Hash + Eq + Ord + Clone> Replacement<K> {
    /// An empty cache state with `budget` bytes.
    pub fn new(policy: Policy, budget: u64) -> Self {
        Replacement {
            policy,
            budget,
            used: 0,
            inflation: 0.0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held by admitted entries.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `key` is held.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    fn rank(&mut self, size: u64, freq: u64) -> (Priority, u64) {
        self.tick += 1;
        let priority = match self.policy {
            Policy::Gdsf => self.inflation + freq as f64 / size.max(1) as f64,
            Policy::Lru => self.tick as f64,
        };
        (Priority::from_f64(priority), self.tick)
    }

    /// Records a hit on `key`. Returns false when the key is not held.
    pub fn touch(&mut self, key: &K) -> bool {
        let Some((size, freq)) = self.entries.get(key).map(|m| (m.size, m.freq)) else {
            return false;
        };
        let freq = freq.saturating_add(1);
        let current = self.rank(size, freq);
        if let Some(meta) = self.entries.get_mut(key) {
            meta.freq = freq;
            meta.current = current;
        }
        true
    }

    /// Admits `key` of `size` bytes, evicting as many entries as needed to
    /// stay within the budget. Returns the evicted keys, lowest priority
    /// first; the caller drops them from its index. A key already held is
    /// replaced (its old size released first) and keeps its frequency.
    pub fn admit(&mut self, key: K, size: u64) -> Result<Vec<K>, Refusal> {
        if size > self.budget {
            return Err(Refusal::TooLarge);
        }
        let freq = match self.entries.remove(&key) {
            Some(old) => {
                self.order.remove(&(old.rank, key.clone()));
                self.used -= old.size;
                old.freq
            }
            None => 1,
        };
        let mut evicted = Vec::new();
        while self.used + size > self.budget {
            let Some(victim) = self.evict_one() else {
                break;
            };
            evicted.push(victim);
        }
        let rank = self.rank(size, freq);
        self.order.insert((rank, key.clone()));
        self.entries.insert(
            key,
            Meta {
                size,
                freq,
                rank,
                current: rank,
            },
        );
        self.used += size;
        Ok(evicted)
    }

    /// Evicts the lowest-priority entry (raising GDSF's inflation value as an
    /// admission-time eviction would) and returns its key, or `None` when
    /// empty. Used when the pool, not the budget, is short of room.
    pub fn evict_one(&mut self) -> Option<K> {
        let (rank, victim) = loop {
            let (rank, key) = self.order.pop_first()?;
            let meta = self
                .entries
                .get_mut(&key)
                .expect("order and entries hold the same keys");
            if meta.current == rank {
                break (rank, key);
            }
            // Hit since it was placed: move it to where it belongs now.
            meta.rank = meta.current;
            self.order.insert((meta.current, key));
        };
        let meta = self
            .entries
            .remove(&victim)
            .expect("order and entries hold the same keys");
        self.used -= meta.size;
        if self.policy == Policy::Gdsf {
            self.inflation = rank.0.to_f64();
        }
        Some(victim)
    }

    /// Forgets `key` (a file that changed or disappeared). Returns its size.
    pub fn remove(&mut self, key: &K) -> Option<u64> {
        let meta = self.entries.remove(key)?;
        self.order.remove(&(meta.rank, key.clone()));
        self.used -= meta.size;
        Some(meta.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gdsf_keeps_small_hot_entries_and_evicts_large_cold_ones() {
        let mut r = Replacement::new(Policy::Gdsf, 1000);
        assert!(r.admit("big", 600).unwrap().is_empty());
        assert!(r.admit("small", 100).unwrap().is_empty());
        for _ in 0..5 {
            r.touch(&"small");
        }
        // 600 + 100 + 400 > 1000: the big, cold entry has the lowest priority.
        assert_eq!(r.admit("new", 400).unwrap(), vec!["big"]);
        assert!(r.contains(&"small") && r.contains(&"new"));
        assert_eq!(r.used(), 500);
    }

    #[test]
    fn gdsf_inflation_ages_out_an_entry_that_was_hot_long_ago() {
        let mut r = Replacement::new(Policy::Gdsf, 300);
        r.admit("old", 100).unwrap();
        for _ in 0..3 {
            r.touch(&"old");
        }
        // A stream of new entries of the same size, each requested twice:
        // each eviction raises L, so fresh entries soon outrank "old".
        let mut evicted_old = false;
        for i in 0..50 {
            let key: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            let gone = r.admit(key, 100).unwrap();
            r.touch(&key);
            evicted_old |= gone.contains(&"old");
        }
        assert!(evicted_old, "L must rise until a once-hot entry leaves");
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut r = Replacement::new(Policy::Lru, 300);
        r.admit("a", 100).unwrap();
        r.admit("b", 100).unwrap();
        r.admit("c", 100).unwrap();
        r.touch(&"a");
        assert_eq!(r.admit("d", 100).unwrap(), vec!["b"]);
        assert_eq!(r.admit("e", 150).unwrap(), vec!["c", "a"]);
    }

    #[test]
    fn too_large_is_refused_and_changes_nothing() {
        let mut r = Replacement::new(Policy::Gdsf, 100);
        r.admit("a", 60).unwrap();
        assert_eq!(r.admit("huge", 101), Err(Refusal::TooLarge));
        assert!(r.contains(&"a"));
        assert_eq!(r.used(), 60);
    }

    #[test]
    fn readmitting_a_key_replaces_its_size_and_keeps_its_frequency() {
        let mut r = Replacement::new(Policy::Gdsf, 1000);
        r.admit("a", 100).unwrap();
        r.touch(&"a");
        r.admit("a", 300).unwrap();
        assert_eq!(r.used(), 300);
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove(&"a"), Some(300));
        assert!(r.is_empty());
        assert_eq!(r.used(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit(u8, u64),
        Touch(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..32, 1u64..400).prop_map(|(k, s)| Op::Admit(k, s)),
            (0u8..32).prop_map(Op::Touch),
            (0u8..32).prop_map(Op::Remove),
        ]
    }

    /// Eager GDSF/LRU, the textbook way: every hit recomputes the priority
    /// and the victim is the minimum over all entries. The lazy structure
    /// must evict exactly the same keys in the same order.
    #[derive(Default)]
    struct Eager {
        lru: bool,
        budget: u64,
        used: u64,
        inflation: f64,
        tick: u64,
        entries: HashMap<u8, (u64, u64, f64, u64)>,
    }

    impl Eager {
        fn prio(&mut self, size: u64, freq: u64) -> (f64, u64) {
            self.tick += 1;
            let p = if self.lru {
                self.tick as f64
            } else {
                self.inflation + freq as f64 / size.max(1) as f64
            };
            (p, self.tick)
        }

        fn touch(&mut self, k: u8) {
            if let Some(&(size, freq, _, _)) = self.entries.get(&k) {
                let (p, t) = self.prio(size, freq + 1);
                self.entries.insert(k, (size, freq + 1, p, t));
            }
        }

        fn admit(&mut self, k: u8, size: u64) -> Vec<u8> {
            let freq = match self.entries.remove(&k) {
                Some((old, freq, _, _)) => {
                    self.used -= old;
                    freq
                }
                None => 1,
            };
            let mut out = Vec::new();
            while self.used + size > self.budget && !self.entries.is_empty() {
                let (&victim, &(vsize, _, p, _)) = self
                    .entries
                    .iter()
                    .min_by(|a, b| (a.1.2, a.1.3).partial_cmp(&(b.1.2, b.1.3)).unwrap())
                    .unwrap();
                self.entries.remove(&victim);
                self.used -= vsize;
                if !self.lru {
                    self.inflation = p;
                }
                out.push(victim);
            }
            let (p, t) = self.prio(size, freq);
            self.entries.insert(k, (size, freq, p, t));
            self.used += size;
            out
        }
    }

    proptest! {
        /// Lazy reordering evicts exactly what eager reordering evicts.
        #[test]
        fn lazy_hits_evict_like_eager_reordering(
            lru in any::<bool>(),
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u8..24, 1u64..300).prop_map(|(k, s)| Op::Admit(k, s)),
                    (0u8..24).prop_map(Op::Touch),
                ],
                1..400,
            ),
        ) {
            let policy = if lru { Policy::Lru } else { Policy::Gdsf };
            let mut lazy = Replacement::new(policy, 1000);
            let mut eager = Eager { lru, budget: 1000, ..Eager::default() };
            for op in ops {
                match op {
                    Op::Admit(k, s) => prop_assert_eq!(lazy.admit(k, s).unwrap(), eager.admit(k, s)),
                    Op::Touch(k) => {
                        lazy.touch(&k);
                        eager.touch(k);
                    }
                    Op::Remove(_) => unreachable!(),
                }
            }
        }

        /// Whatever happens, the budget holds, the byte count matches the
        /// entries held, and an admitted entry is held afterwards.
        #[test]
        fn budget_and_accounting_hold(
            lru in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let policy = if lru { Policy::Lru } else { Policy::Gdsf };
            let mut r = Replacement::new(policy, 1000);
            let mut model: HashMap<u8, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Admit(k, s) => {
                        let evicted = r.admit(k, s).unwrap();
                        for e in &evicted {
                            prop_assert!(*e != k);
                            prop_assert!(model.remove(e).is_some());
                        }
                        model.insert(k, s);
                        prop_assert!(r.contains(&k));
                    }
                    Op::Touch(k) => prop_assert_eq!(r.touch(&k), model.contains_key(&k)),
                    Op::Remove(k) => prop_assert_eq!(r.remove(&k), model.remove(&k)),
                }
                prop_assert!(r.used() <= r.budget());
                prop_assert_eq!(r.used(), model.values().sum::<u64>());
                prop_assert_eq!(r.len(), model.len());
            }
        }
    }
}
