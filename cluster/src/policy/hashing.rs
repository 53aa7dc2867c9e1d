//! The hashing baselines: pure hashing, consistent hashing with virtual
//! nodes, and consistent hashing with bounded loads.
//!
//! Target keys are already [`stable_hash`]es of the target's name. A node's
//! virtual node `v` sits on the ring at `stable_hash(node.to_le_bytes() ++
//! v.to_le_bytes())` (both u32, little endian); a target belongs to the
//! first point at or after its key, wrapping around. Equal points are
//! ordered by node id, so the ring is the same whatever order nodes joined in.

use std::time::Duration;

use super::contract::{Event, Policy};
use super::hash::stable_hash;
use super::load::{LoadTable, NodeId, TargetKey};

/// Pure hashing: node = live\[key mod n\], nodes sorted by id. No load, and
/// when n changes almost every target moves ((n-1)/n of them): the reason
/// consistent hashing exists. Kept as the baseline that shows it.
#[derive(Debug, Clone)]
pub struct ModHash {
    nodes: Vec<NodeId>,
}

impl ModHash {
    /// Pure hashing over `nodes`.
    pub fn new(nodes: &[NodeId]) -> Self {
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        ModHash { nodes }
    }

    /// The node for `key`, None if there is no node.
    pub fn lookup(&self, key: TargetKey) -> Option<NodeId> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(self.nodes[(key.0 % self.nodes.len() as u64) as usize])
    }
}

impl Policy for ModHash {
    fn name(&self) -> &'static str {
        "hash"
    }

    fn decide(&mut self, target: TargetKey, _loads: &LoadTable, _now: Duration) -> Option<NodeId> {
        self.lookup(target)
    }

    fn observe(&mut self, event: Event, _loads: &LoadTable, _now: Duration) {
        match event {
            Event::Joined(n) => {
                if let Err(i) = self.nodes.binary_search(&n) {
                    self.nodes.insert(i, n);
                }
            }
            Event::Left(n) => self.nodes.retain(|&x| x != n),
            Event::Started { .. } | Event::Finished { .. } => {}
        }
    }
}

/// A hash ring with `vnodes` points per node.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u64, NodeId)>,
    vnodes: u32,
}

impl Ring {
    /// The ring of `nodes`, `vnodes` points each (at least 1).
    pub fn new(nodes: &[NodeId], vnodes: u32) -> Self {
        let mut r = Ring {
            points: Vec::new(),
            vnodes: vnodes.max(1),
        };
        for &n in nodes {
            r.add(n);
        }
        r
    }

    /// Where virtual node `v` of `node` sits.
    pub fn point(node: NodeId, v: u32) -> u64 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&node.0.to_le_bytes());
        b[4..].copy_from_slice(&v.to_le_bytes());
        stable_hash(&b)
    }

    /// Adds a node's points (no-op if present).
    pub fn add(&mut self, node: NodeId) {
        if self.points.iter().any(|&(_, n)| n == node) {
            return;
        }
        for v in 0..self.vnodes {
            self.points.push((Self::point(node, v), node));
        }
        self.points.sort_unstable();
    }

    /// Removes a node's points.
    pub fn remove(&mut self, node: NodeId) {
        self.points.retain(|&(_, n)| n != node);
    }

    /// Index of the first point at or after `key`, wrapping.
    fn start(&self, key: TargetKey) -> usize {
        let i = self.points.partition_point(|&(p, _)| p < key.0);
        if i == self.points.len() { 0 } else { i }
    }

    /// The owner of `key`.
    pub fn owner(&self, key: TargetKey) -> Option<NodeId> {
        if self.points.is_empty() {
            return None;
        }
        Some(self.points[self.start(key)].1)
    }

    /// Ring points clockwise from `key`'s position, once around.
    pub fn walk(&self, key: TargetKey) -> impl Iterator<Item = NodeId> + '_ {
        let n = self.points.len();
        let s = if n == 0 { 0 } else { self.start(key) };
        (0..n).map(move |i| self.points[(s + i) % n].1)
    }
}

/// Consistent hashing with virtual nodes, blind to load. A join takes about
/// 1/(n+1) of the targets to the newcomer; a leave moves only the leaver's.
#[derive(Debug, Clone)]
pub struct ConsistentHash {
    ring: Ring,
}

impl ConsistentHash {
    /// A ring over `nodes`.
    pub fn new(nodes: &[NodeId], vnodes: u32) -> Self {
        ConsistentHash {
            ring: Ring::new(nodes, vnodes),
        }
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }
}

fn ring_membership(ring: &mut Ring, event: Event) {
    match event {
        Event::Joined(n) => ring.add(n),
        Event::Left(n) => ring.remove(n),
        Event::Started { .. } | Event::Finished { .. } => {}
    }
}

impl Policy for ConsistentHash {
    fn name(&self) -> &'static str {
        "chash"
    }

    fn decide(&mut self, target: TargetKey, _loads: &LoadTable, _now: Duration) -> Option<NodeId> {
        self.ring.owner(target)
    }

    fn observe(&mut self, event: Event, _loads: &LoadTable, _now: Duration) {
        ring_membership(&mut self.ring, event);
    }
}

/// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
/// SODA 2018 / arXiv 2016): each node may hold at most
/// `ceil(c * (m + 1) / n)` active requests, m being the requests active in
/// the cluster before this one; a target goes to the first node clockwise
/// from its key that is under that cap. Since n·cap > m, one always is.
#[derive(Debug, Clone)]
pub struct BoundedLoadHash {
    ring: Ring,
    balance: f64,
}

impl BoundedLoadHash {
    /// A ring over `nodes` with balance factor `balance` (c > 1; values
    /// below 1 are raised to 1).
    pub fn new(nodes: &[NodeId], vnodes: u32, balance: f64) -> Self {
        BoundedLoadHash {
            ring: Ring::new(nodes, vnodes),
            balance: if balance.is_finite() {
                balance.max(1.0)
            } else {
                1.0
            },
        }
    }

    /// The per-node cap for the next request under `loads`.
    pub fn capacity(&self, loads: &LoadTable) -> u64 {
        let n = loads.len().max(1) as f64;
        ((self.balance * (loads.total() + 1) as f64) / n).ceil() as u64
    }
}

impl Policy for BoundedLoadHash {
    fn name(&self) -> &'static str {
        "chash-bl"
    }

    fn decide(&mut self, target: TargetKey, loads: &LoadTable, _now: Duration) -> Option<NodeId> {
        let cap = self.capacity(loads);
        let mut first_live = None;
        for node in self.ring.walk(target) {
            let Some(load) = loads.load(node) else {
                continue;
            };
            first_live.get_or_insert(node);
            if u64::from(load) < cap {
                return Some(node);
            }
        }
        // Unreachable while the ring and the load table agree; fall back to
        // the owner rather than refuse the request.
        first_live.or_else(|| loads.least_loaded().map(|(n, _)| n))
    }

    fn observe(&mut self, event: Event, _loads: &LoadTable, _now: Duration) {
        ring_membership(&mut self.ring, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u32) -> Vec<NodeId> {
        (0..n).map(NodeId).collect()
    }

    #[test]
    fn ring_leave_moves_only_the_leavers_targets() {
        let before = Ring::new(&nodes(8), 160);
        let mut after = before.clone();
        after.remove(NodeId(3));
        for i in 0..5000u32 {
            let k = TargetKey::of(format!("/t/{i}").as_bytes());
            let (a, b) = (before.owner(k).unwrap(), after.owner(k).unwrap());
            if a != NodeId(3) {
                assert_eq!(a, b);
            } else {
                assert_ne!(b, NodeId(3));
            }
        }
    }

    #[test]
    fn ring_join_moves_only_to_the_newcomer_and_about_one_share() {
        let before = Ring::new(&nodes(8), 160);
        let mut after = before.clone();
        after.add(NodeId(8));
        let mut moved = 0;
        for i in 0..9000u32 {
            let k = TargetKey::of(format!("/t/{i}").as_bytes());
            let (a, b) = (before.owner(k).unwrap(), after.owner(k).unwrap());
            if a != b {
                assert_eq!(b, NodeId(8));
                moved += 1;
            }
        }
        // Expect 1/9 = 1000; 160 virtual nodes keep it well within ±40%.
        assert!((600..1400).contains(&moved), "moved {moved}");
    }

    #[test]
    fn ring_is_independent_of_join_order() {
        let a = Ring::new(&[NodeId(2), NodeId(0), NodeId(1)], 50);
        let b = Ring::new(&[NodeId(0), NodeId(1), NodeId(2)], 50);
        assert_eq!(a.points, b.points);
    }

    #[test]
    fn bounded_load_respects_the_cap() {
        let ns = nodes(4);
        let mut t = LoadTable::new(&ns);
        let mut p = BoundedLoadHash::new(&ns, 160, 1.25);
        let k = TargetKey::of(b"/hot");
        let owner = p.ring.owner(k).unwrap();
        let z = Duration::ZERO;
        // One hot target: the cap forces it to spread.
        for _ in 0..400 {
            let n = p.decide(k, &t, z).unwrap();
            t.started(n);
        }
        let max = *t.loads().iter().max().unwrap();
        assert!(u64::from(max) <= (1.25f64 * 400.0 / 4.0).ceil() as u64);
        assert_eq!(t.load(owner), Some(max));
    }

    #[test]
    fn mod_hash_follows_membership() {
        let mut p = ModHash::new(&nodes(3));
        let t = LoadTable::new(&nodes(3));
        p.observe(Event::Left(NodeId(1)), &t, Duration::ZERO);
        for i in 0..100 {
            let n = p.lookup(TargetKey(i)).unwrap();
            assert_ne!(n, NodeId(1));
            assert_eq!(n, [NodeId(0), NodeId(2)][(i % 2) as usize]);
        }
    }
}
