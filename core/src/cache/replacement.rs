//! Replacement policies for the unified cache: which entry leaves when the
//! byte budget is full.
//!
//! Greedy-Dual-Size-Frequency (Cherkasova 1998, the successor of the
//! Greedy-Dual-Size that Flash-Lite plugged into IO-Lite) gives each entry the
//! priority `H = L + freq × cost / size`, where `L` is the cache's inflation
//! value: the priority of the last victim, and `freq` counts the entry's uses
//! since it was admitted (an evicted entry comes back with 1). Small,
//! often-requested files stay; large, rarely-requested ones leave first; and
//! an entry that was hot long ago ages out because `L` keeps rising. Equal
//! priorities leave in the order they were set, oldest first.
//!
//! `cost` is what a miss on the entry costs, given per entry. The server
//! admits with cost 1 ([`Replacement::admit`]), so the policy maximises the
//! request hit ratio, which is what a web server's CPU cost follows; the
//! cluster simulator runs this same code with a miss's disk time as the
//! cost ([`Replacement::admit_with_cost`]), so what it measures is the
//! policy the server runs.
//!
//! LRU is kept for comparison (`cache.policy = "lru"`): its priority is the
//! time of the last use.
//!
//! This module is bookkeeping only: it never touches the cached bytes. The
//! cache asks it where a new entry fits and which keys to drop; dropping a key
//! drops the cache's reference to the entry's buffers, and the pool recycles
//! the space only when the last reference (for example an in-flight send) is
//! gone.
//!
//! Entries live in a slab and the priority order names them by slot, so
//! nothing but the key-to-slot map ([`KeyIndex`]) depends on the kind of key:
//! a hash map by default, an array ([`DenseIndex`]) for keys numbered `0..n`.

mod keys;

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

pub use keys::{DenseIndex, KeyIndex};

/// Which entries to evict first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Greedy-Dual-Size-Frequency: evict the lowest `L + freq × cost / size`.
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

/// (priority, tick): the tick is unique, so ranks never tie and equal
/// priorities leave oldest first.
type Rank = (Priority, u64);

#[derive(Debug, Clone)]
struct Entry<K> {
    /// Kept for handing the key back when the entry is evicted.
    key: K,
    size: u64,
    cost: f64,
    freq: u64,
    /// The entry's key in `order`, as of when it was last placed there.
    rank: Rank,
    /// The rank the policy gives the entry now. A hit only updates this
    /// (O(1), no reordering); `evict_one` moves an entry whose `rank` is
    /// stale when it reaches the front. Ranks only grow (GDSF's `L` never
    /// falls and an entry's cost is fixed until it is admitted again, LRU's
    /// clock only ticks), so every key in `order` is at most its entry's
    /// current rank, and the first entry popped whose key is current is the
    /// true minimum: the same victims as eager reordering.
    current: Rank,
}

/// Why an entry was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The entry alone is larger than the whole budget.
    TooLarge,
}

/// The replacement state of a cache holding keys `K` within a byte budget;
/// `I` finds a key's entry.
#[derive(Debug)]
pub struct Replacement<K, I = HashMap<K, u32>> {
    policy: Policy,
    budget: u64,
    used: u64,
    /// GDSF's inflation value `L`.
    inflation: f64,
    /// A counter that breaks priority ties by age and is LRU's clock.
    tick: u64,
    index: I,
    /// Entries by slot; a slot in `free` holds a stale entry.
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
    order: BTreeSet<(Rank, u32)>,
}

impl<K: Hash + Eq + Clone> Replacement<K> {
    /// An empty cache state with `budget` bytes.
    pub fn new(policy: Policy, budget: u64) -> Self {
        Replacement::with_index(policy, budget, HashMap::new())
    }
}

impl<K: Clone, I: KeyIndex<K>> Replacement<K, I> {
    /// An empty cache state with `budget` bytes that finds keys with `index`
    /// (which must hold no keys).
    pub fn with_index(policy: Policy, budget: u64, index: I) -> Self {
        Replacement {
            policy,
            budget,
            used: 0,
            inflation: 0.0,
            tick: 0,
            index,
            entries: Vec::new(),
            free: Vec::new(),
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
        self.entries.len() - self.free.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `key` is held.
    pub fn contains(&self, key: &K) -> bool {
        self.index.slot(key).is_some()
    }

    fn rank(&mut self, size: u64, cost: f64, freq: u64) -> Rank {
        self.tick += 1;
        let priority = match self.policy {
            // `freq × cost` first: exact for any realistic count and cost,
            // so the one division is the only rounding, and with cost 1 the
            // priority is exactly `L + freq / size`.
            Policy::Gdsf => self.inflation + freq as f64 * cost / size.max(1) as f64,
            Policy::Lru => self.tick as f64,
        };
        (Priority::from_f64(priority), self.tick)
    }

    /// Records a hit on `key`. Returns false when the key is not held.
    pub fn touch(&mut self, key: &K) -> bool {
        let Some(slot) = self.index.slot(key) else {
            return false;
        };
        let entry = &self.entries[slot as usize];
        let (size, cost, freq) = (entry.size, entry.cost, entry.freq.saturating_add(1));
        let current = self.rank(size, cost, freq);
        let entry = &mut self.entries[slot as usize];
        entry.freq = freq;
        entry.current = current;
        true
    }

    /// Admits `key` of `size` bytes at cost 1, evicting as many entries as
    /// needed to stay within the budget. Returns the evicted keys, lowest
    /// priority first; the caller drops them from its index. A key already
    /// held is replaced (its old size released first) and keeps its
    /// frequency.
    pub fn admit(&mut self, key: K, size: u64) -> Result<Vec<K>, Refusal> {
        let mut evicted = Vec::new();
        self.admit_with_cost(key, size, 1.0, |victim| evicted.push(victim))?;
        Ok(evicted)
    }

    /// [`admit`](Self::admit) with the cost of a miss on `key` (finite,
    /// at least 0), handing each evicted key to `evicted` instead of
    /// collecting them.
    pub fn admit_with_cost(
        &mut self,
        key: K,
        size: u64,
        cost: f64,
        mut evicted: impl FnMut(K),
    ) -> Result<(), Refusal> {
        debug_assert!(cost.is_finite() && cost >= 0.0, "cost {cost}");
        if size > self.budget {
            return Err(Refusal::TooLarge);
        }
        let held = self.index.slot(&key);
        let freq = match held {
            Some(slot) => {
                let old = &self.entries[slot as usize];
                self.order.remove(&(old.rank, slot));
                self.used -= old.size;
                old.freq
            }
            None => 1,
        };
        while self.used + size > self.budget {
            let Some(victim) = self.evict_one() else {
                break;
            };
            evicted(victim);
        }
        let rank = self.rank(size, cost, freq);
        let entry = Entry {
            key,
            size,
            cost,
            freq,
            rank,
            current: rank,
        };
        let slot = match held {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                let key = entry.key.clone();
                let slot = self.fill_slot(entry);
                self.index.insert(key, slot);
                slot
            }
        };
        self.order.insert((rank, slot));
        self.used += size;
        Ok(())
    }

    fn fill_slot(&mut self, entry: Entry<K>) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                let slot = u32::try_from(self.entries.len()).expect("under 2^32 entries");
                self.entries.push(entry);
                slot
            }
        }
    }

    /// Evicts the lowest-priority entry (raising GDSF's inflation value as an
    /// admission-time eviction would) and returns its key, or `None` when
    /// empty. Used when the pool, not the budget, is short of room.
    pub fn evict_one(&mut self) -> Option<K> {
        let (rank, slot) = loop {
            let (rank, slot) = self.order.pop_first()?;
            let entry = &mut self.entries[slot as usize];
            if entry.current == rank {
                break (rank, slot);
            }
            // Hit since it was placed: move it to where it belongs now.
            entry.rank = entry.current;
            self.order.insert((entry.current, slot));
        };
        let entry = &self.entries[slot as usize];
        self.used -= entry.size;
        let victim = entry.key.clone();
        self.index.remove(&victim);
        self.free.push(slot);
        if self.policy == Policy::Gdsf {
            self.inflation = rank.0.to_f64();
        }
        Some(victim)
    }

    /// Forgets `key` (a file that changed or disappeared). Returns its size.
    pub fn remove(&mut self, key: &K) -> Option<u64> {
        let slot = self.index.remove(key)?;
        let entry = &self.entries[slot as usize];
        self.order.remove(&(entry.rank, slot));
        self.used -= entry.size;
        self.free.push(slot);
        Some(entry.size)
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

    #[test]
    fn gdsf_keeps_the_entry_whose_miss_costs_more() {
        let mut r = Replacement::new(Policy::Gdsf, 300);
        let mut gone = Vec::new();
        r.admit_with_cost("slow", 100, 30.0, |k| gone.push(k))
            .unwrap();
        r.admit_with_cost("fast", 100, 10.0, |k| gone.push(k))
            .unwrap();
        r.admit_with_cost("mid", 100, 20.0, |k| gone.push(k))
            .unwrap();
        // Same size, same frequency: the cheapest miss leaves, and L rises
        // to its priority (10 / 100).
        r.admit_with_cost("new", 100, 20.0, |k| gone.push(k))
            .unwrap();
        assert_eq!(gone, vec!["fast"]);
        // "new" was placed at 0.1 + 0.2, above "mid" at 0.2.
        assert_eq!(r.evict_one(), Some("mid"));
    }

    #[test]
    fn dense_keys_grow_past_their_size_and_forget() {
        let mut r = Replacement::with_index(Policy::Lru, 100, DenseIndex::new(2));
        r.admit(7, 40).unwrap();
        r.admit(1, 40).unwrap();
        assert!(r.contains(&7) && r.contains(&1) && !r.contains(&5));
        assert_eq!(r.admit(5, 40).unwrap(), vec![7]);
        assert!(!r.contains(&7));
        assert_eq!(r.remove(&1), Some(40));
        assert_eq!(r.remove(&1), None);
        assert_eq!((r.len(), r.used()), (1, 40));
        // Freed slots are reused: the slab does not grow past its peak.
        r.admit(9, 60).unwrap();
        assert_eq!(r.entries.len(), 2);
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
        /// key -> (size, freq, priority, tick, cost)
        entries: HashMap<u8, (u64, u64, f64, u64, f64)>,
    }

    impl Eager {
        fn prio(&mut self, size: u64, freq: u64, cost: f64) -> (f64, u64) {
            self.tick += 1;
            let p = if self.lru {
                self.tick as f64
            } else {
                self.inflation + freq as f64 * cost / size.max(1) as f64
            };
            (p, self.tick)
        }

        fn touch(&mut self, k: u8) {
            if let Some(&(size, freq, _, _, cost)) = self.entries.get(&k) {
                let (p, t) = self.prio(size, freq + 1, cost);
                self.entries.insert(k, (size, freq + 1, p, t, cost));
            }
        }

        fn admit(&mut self, k: u8, size: u64) -> Vec<u8> {
            self.admit_with_cost(k, size, 1.0)
        }

        fn admit_with_cost(&mut self, k: u8, size: u64, cost: f64) -> Vec<u8> {
            let freq = match self.entries.remove(&k) {
                Some((old, freq, _, _, _)) => {
                    self.used -= old;
                    freq
                }
                None => 1,
            };
            let mut out = Vec::new();
            while self.used + size > self.budget && !self.entries.is_empty() {
                let (&victim, &(vsize, _, p, _, _)) = self
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
            let (p, t) = self.prio(size, freq, cost);
            self.entries.insert(k, (size, freq, p, t, cost));
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

        /// Per-entry costs keep the lazy order exact, and finding entries
        /// through an array instead of a hash map changes nothing.
        #[test]
        fn costs_and_dense_keys_evict_like_eager_reordering(
            lru in any::<bool>(),
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u8..24, 1u64..300, 0u32..50_000)
                        .prop_map(|(k, s, c)| (k, Some((s, f64::from(c) * 7.3)))),
                    (0u8..24).prop_map(|k| (k, None)),
                ],
                1..400,
            ),
        ) {
            let policy = if lru { Policy::Lru } else { Policy::Gdsf };
            let mut hashed = Replacement::new(policy, 1000);
            let mut dense = Replacement::with_index(policy, 1000, DenseIndex::new(8));
            let mut eager = Eager { lru, budget: 1000, ..Eager::default() };
            for (k, admit) in ops {
                match admit {
                    Some((s, c)) => {
                        let want = eager.admit_with_cost(k, s, c);
                        let mut got = Vec::new();
                        hashed.admit_with_cost(k, s, c, |v| got.push(v)).unwrap();
                        prop_assert_eq!(&got, &want);
                        let mut got = Vec::new();
                        dense
                            .admit_with_cost(u32::from(k), s, c, |v| got.push(v as u8))
                            .unwrap();
                        prop_assert_eq!(&got, &want);
                    }
                    None => {
                        let held = eager.entries.contains_key(&k);
                        eager.touch(k);
                        prop_assert_eq!(hashed.touch(&k), held);
                        prop_assert_eq!(dense.touch(&u32::from(k)), held);
                    }
                }
                prop_assert_eq!(dense.used(), eager.used);
                prop_assert_eq!(dense.len(), eager.entries.len());
            }
        }
    }
}
