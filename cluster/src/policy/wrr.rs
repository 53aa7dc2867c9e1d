//! Weighted round robin by load: the baseline of the LARD paper.
//!
//! Each request goes to the node with the fewest active requests (least
//! connections); among equally loaded nodes the choice rotates, so an idle
//! cluster is served round robin. It ignores what a node has cached.

use std::time::Duration;

use super::contract::Policy;
use super::load::{LoadTable, NodeId, TargetKey};

/// Least-loaded dispatch with round-robin tie breaking.
#[derive(Debug, Clone, Default)]
pub struct LeastLoaded {
    cursor: usize,
}

impl LeastLoaded {
    /// A fresh policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for LeastLoaded {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn decide(&mut self, _target: TargetKey, loads: &LoadTable, _now: Duration) -> Option<NodeId> {
        let n = loads.len();
        if n == 0 {
            return None;
        }
        let l = loads.loads();
        let start = self.cursor % n;
        let mut best = start;
        for step in 1..n {
            let i = (start + step) % n;
            if l[i] < l[best] {
                best = i;
            }
        }
        self.cursor = best + 1;
        Some(loads.nodes()[best])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_least_loaded_and_rotates_among_equals() {
        let nodes = [NodeId(0), NodeId(1), NodeId(2)];
        let mut t = LoadTable::new(&nodes);
        let mut p = LeastLoaded::new();
        let k = TargetKey(9);
        let z = Duration::ZERO;
        let picks: Vec<u32> = (0..6).map(|_| p.decide(k, &t, z).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        t.set_load(NodeId(0), 3);
        t.set_load(NodeId(2), 1);
        assert_eq!(p.decide(k, &t, z), Some(NodeId(1)));
    }
}
