//! A simulated node cache: which objects a node holds in memory, within a
//! byte budget, replaced by LRU or Greedy-Dual-Size-Frequency.
//!
//! Objects are dense indices `0..objects`, so the cache keeps plain arrays
//! indexed by object (no hashing on the simulator's hot path).

use std::collections::BTreeSet;

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

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
enum Order {
    Lru {
        prev: Vec<u32>,
        next: Vec<u32>,
        /// Most recently used.
        head: u32,
        /// Least recently used.
        tail: u32,
    },
    Gdsf {
        prio: Vec<f64>,
        freq: Vec<u32>,
        queue: BTreeSet<(u64, u32)>,
        clock: f64,
    },
}

/// One node's cache.
#[derive(Debug, Clone)]
pub struct NodeCache {
    capacity: u64,
    used: u64,
    resident: Vec<bool>,
    order: Order,
}

// Priorities are non-negative finite floats, whose bit patterns sort like
// the numbers.
fn key(p: f64) -> u64 {
    p.max(0.0).to_bits()
}

impl NodeCache {
    /// An empty cache of `capacity` bytes over `objects` objects.
    pub fn new(kind: CacheKind, capacity: u64, objects: usize) -> Self {
        let order = match kind {
            CacheKind::Lru => Order::Lru {
                prev: vec![NIL; objects],
                next: vec![NIL; objects],
                head: NIL,
                tail: NIL,
            },
            CacheKind::Gdsf => Order::Gdsf {
                prio: vec![0.0; objects],
                freq: vec![0; objects],
                queue: BTreeSet::new(),
                clock: 0.0,
            },
        };
        NodeCache {
            capacity,
            used: 0,
            resident: vec![false; objects],
            order,
        }
    }

    /// Whether `obj` is in memory.
    pub fn contains(&self, obj: u32) -> bool {
        self.resident[obj as usize]
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// A request for `obj` (whose GDSF value, cost / size, is `value`):
    /// returns whether it hit, and updates recency or frequency if so.
    pub fn access(&mut self, obj: u32, value: f64) -> bool {
        if !self.resident[obj as usize] {
            return false;
        }
        match &mut self.order {
            Order::Lru {
                prev,
                next,
                head,
                tail,
            } => {
                unlink(prev, next, head, tail, obj);
                push_front(prev, next, head, tail, obj);
            }
            Order::Gdsf {
                prio,
                freq,
                queue,
                clock,
            } => {
                let o = obj as usize;
                queue.remove(&(key(prio[o]), obj));
                freq[o] += 1;
                prio[o] = *clock + f64::from(freq[o]) * value;
                queue.insert((key(prio[o]), obj));
            }
        }
        true
    }

    /// Brings `obj` into memory after a miss, evicting as needed. An object
    /// larger than the whole cache is not kept. `sizes` gives every object's
    /// size (for the evicted ones).
    pub fn insert(&mut self, obj: u32, value: f64, sizes: &[u64]) {
        let o = obj as usize;
        let size = sizes[o];
        if self.resident[o] || size > self.capacity {
            return;
        }
        while self.used + size > self.capacity {
            let victim = match &mut self.order {
                Order::Lru {
                    prev,
                    next,
                    head,
                    tail,
                } => {
                    let v = *tail;
                    unlink(prev, next, head, tail, v);
                    v
                }
                Order::Gdsf {
                    prio,
                    freq,
                    queue,
                    clock,
                } => {
                    let Some((_, v)) = queue.pop_first() else {
                        break;
                    };
                    *clock = prio[v as usize];
                    freq[v as usize] = 0;
                    v
                }
            };
            if victim == NIL {
                break;
            }
            self.resident[victim as usize] = false;
            self.used -= sizes[victim as usize];
        }
        self.resident[o] = true;
        self.used += size;
        match &mut self.order {
            Order::Lru {
                prev,
                next,
                head,
                tail,
            } => push_front(prev, next, head, tail, obj),
            Order::Gdsf {
                prio,
                freq,
                queue,
                clock,
            } => {
                freq[o] = 1;
                prio[o] = *clock + value;
                queue.insert((key(prio[o]), obj));
            }
        }
    }
}

fn unlink(prev: &mut [u32], next: &mut [u32], head: &mut u32, tail: &mut u32, obj: u32) {
    let (p, n) = (prev[obj as usize], next[obj as usize]);
    if p == NIL {
        *head = n;
    } else {
        next[p as usize] = n;
    }
    if n == NIL {
        *tail = p;
    } else {
        prev[n as usize] = p;
    }
    prev[obj as usize] = NIL;
    next[obj as usize] = NIL;
}

fn push_front(prev: &mut [u32], next: &mut [u32], head: &mut u32, tail: &mut u32, obj: u32) {
    prev[obj as usize] = NIL;
    next[obj as usize] = *head;
    if *head == NIL {
        *tail = obj;
    } else {
        prev[*head as usize] = obj;
    }
    *head = obj;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let sizes = [10, 10, 10, 10];
        let mut c = NodeCache::new(CacheKind::Lru, 30, 4);
        for o in 0..3 {
            assert!(!c.access(o, 1.0));
            c.insert(o, 1.0, &sizes);
        }
        assert!(c.access(0, 1.0)); // 1 is now least recent
        c.insert(3, 1.0, &sizes);
        assert!(!c.contains(1));
        assert!(c.contains(0) && c.contains(2) && c.contains(3));
        assert_eq!(c.used(), 30);
    }

    #[test]
    fn gdsf_keeps_frequent_and_cheap_per_byte() {
        let sizes = [10, 10, 20, 10];
        let value = |o: usize| 100.0 / sizes[o] as f64;
        let mut c = NodeCache::new(CacheKind::Gdsf, 40, 4);
        for o in 0..3u32 {
            c.insert(o, value(o as usize), &sizes);
        }
        for _ in 0..3 {
            assert!(c.access(0, value(0)));
        }
        // 2 is big (low value per byte) and 1 was used once: 2 goes first.
        c.insert(3, value(3), &sizes);
        assert!(!c.contains(2));
        assert!(c.contains(0) && c.contains(1) && c.contains(3));
        assert_eq!(c.used(), 30);
    }

    #[test]
    fn oversized_objects_are_not_kept() {
        let sizes = [100];
        for kind in [CacheKind::Lru, CacheKind::Gdsf] {
            let mut c = NodeCache::new(kind, 50, 1);
            c.insert(0, 1.0, &sizes);
            assert!(!c.contains(0));
            assert_eq!(c.used(), 0);
        }
    }
}
