//! LARD and LARD/R (Pai et al., ASPLOS 1998), as ARCHITECTURE.md gives them.
//!
//! LARD/R, with load = active requests on a node:
//!
//! ```text
//! set = serverSet[target]
//! if set is empty: n = least loaded node; set = {n}
//! else:
//!     n = least loaded node in set; m = most loaded node in set
//!     if (n.load > T_high and some node has load < T_low) or n.load >= 2*T_high:
//!         p = least loaded node overall; add p to set; n = p
//!     if |set| > 1 and set unchanged for K seconds: remove m from set
//! send to n   (and stamp the set if it changed)
//! ```
//!
//! LARD keeps one node per target and, on the same condition, moves the
//! target to the least loaded node instead of adding it.
//!
//! The front end must keep the cluster-wide outstanding requests at or
//! below S = (n-1)·T_high + T_low − 1 and queue the rest
//! ([`Policy::admission_limit`]): with that many requests in the cluster,
//! a node under T_low implies another above T_high, so an idle node is
//! always given work.
//!
//! Membership: a node that leaves is taken out of every set (only targets
//! that it alone served get a new node, on their next request); a node that
//! joins moves nothing: it is the least loaded node, so new targets and
//! overflow go to it.

use std::collections::HashMap;
use std::time::Duration;

use super::contract::{Event, Policy};
use super::hash::PassThroughBuild;
use super::load::{LoadTable, NodeId, TargetKey};

/// LARD's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LardParams {
    /// Below this load a node is underused (paper: 25).
    pub t_low: u32,
    /// Above this load a node adds delay (paper: 65).
    pub t_high: u32,
    /// A server set unchanged this long loses its most loaded node (paper: 20 s).
    pub k: Duration,
}

impl Default for LardParams {
    fn default() -> Self {
        LardParams {
            t_low: 25,
            t_high: 65,
            k: Duration::from_secs(20),
        }
    }
}

impl LardParams {
    /// S = (n-1)·T_high + T_low − 1, at least 1.
    pub fn cluster_limit(&self, live: usize) -> usize {
        let n = live.max(1) as u64;
        let s = (n - 1) * u64::from(self.t_high) + u64::from(self.t_low);
        (s.saturating_sub(1)).max(1) as usize
    }
}

#[derive(Debug, Clone)]
struct ServerSet {
    nodes: Vec<NodeId>,
    last_mod: Duration,
}

/// LARD or LARD/R.
#[derive(Debug, Clone)]
pub struct Lard {
    params: LardParams,
    replicate: bool,
    sets: HashMap<TargetKey, ServerSet, PassThroughBuild>,
}

impl Lard {
    /// Basic LARD: one node per target.
    pub fn basic(params: LardParams) -> Self {
        Lard {
            params,
            replicate: false,
            sets: HashMap::default(),
        }
    }

    /// LARD with replication.
    pub fn lard_r(params: LardParams) -> Self {
        Lard {
            replicate: true,
            ..Lard::basic(params)
        }
    }

    /// The nodes that currently serve `target` (empty if none).
    pub fn server_set(&self, target: TargetKey) -> &[NodeId] {
        self.sets.get(&target).map_or(&[], |s| &s.nodes)
    }

    /// Number of targets with a server set.
    pub fn targets(&self) -> usize {
        self.sets.len()
    }
}

impl Policy for Lard {
    fn name(&self) -> &'static str {
        if self.replicate { "lard-r" } else { "lard" }
    }

    fn decide(&mut self, target: TargetKey, loads: &LoadTable, now: Duration) -> Option<NodeId> {
        let (least, least_load) = loads.least_loaded()?;
        let params = self.params;
        let imbalanced =
            |l: u32| (l > params.t_high && least_load < params.t_low) || l >= 2 * params.t_high;
        let set = self.sets.entry(target).or_insert_with(|| ServerSet {
            nodes: Vec::new(),
            last_mod: now,
        });
        // A node may have left between its last request and now; membership
        // normally prunes it in `observe`, this keeps decide total anyway.
        set.nodes.retain(|&n| loads.contains(n));
        if set.nodes.is_empty() {
            set.nodes.push(least);
            set.last_mod = now;
            return Some(least);
        }

        if !self.replicate {
            let n = set.nodes[0];
            let load = loads.load(n).unwrap_or(0);
            if imbalanced(load) && least != n {
                set.nodes[0] = least;
                set.last_mod = now;
                return Some(least);
            }
            return Some(n);
        }

        // Least and most loaded members; the most loaded is taken among the
        // others so that a set of equals never drops the node it sends to.
        let mut n = set.nodes[0];
        let mut n_load = u32::MAX;
        for &x in &set.nodes {
            let l = loads.load(x).unwrap_or(0);
            if l < n_load {
                n = x;
                n_load = l;
            }
        }
        let mut m: Option<(NodeId, u32)> = None;
        for &x in &set.nodes {
            if x == n {
                continue;
            }
            let l = loads.load(x).unwrap_or(0);
            if m.is_none_or(|(_, ml)| l >= ml) {
                m = Some((x, l));
            }
        }

        let mut changed = false;
        if imbalanced(n_load) && !set.nodes.contains(&least) {
            set.nodes.push(least);
            n = least;
            changed = true;
        }
        if set.nodes.len() > 1
            && now.saturating_sub(set.last_mod) > params.k
            && let Some((m, _)) = m
        {
            set.nodes.retain(|&x| x != m);
            changed = true;
        }
        if changed {
            set.last_mod = now;
        }
        Some(n)
    }

    fn observe(&mut self, event: Event, _loads: &LoadTable, _now: Duration) {
        if let Event::Left(gone) = event {
            self.sets.retain(|_, set| {
                set.nodes.retain(|&n| n != gone);
                !set.nodes.is_empty()
            });
        }
    }

    fn admission_limit(&self, live: usize) -> Option<usize> {
        Some(self.params.cluster_limit(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(loads: &[u32]) -> LoadTable {
        let nodes: Vec<NodeId> = (0..loads.len() as u32).map(NodeId).collect();
        let mut t = LoadTable::new(&nodes);
        for (i, &l) in loads.iter().enumerate() {
            t.set_load(NodeId(i as u32), l);
        }
        t
    }

    const T: TargetKey = TargetKey(42);
    const S0: Duration = Duration::ZERO;

    #[test]
    fn cluster_limit_matches_the_paper() {
        let p = LardParams::default();
        // S = (n-1)*65 + 25 - 1
        for (n, s) in [(1, 24), (2, 89), (4, 219), (8, 479), (16, 999)] {
            assert_eq!(p.cluster_limit(n), s, "n={n}");
        }
    }

    /// loads, node already holding the target, expected pick, expected set.
    type Case = (&'static [u32], Option<u32>, u32, &'static [u32]);

    #[test]
    fn lard_r_rules() {
        let cases: &[Case] = &[
            // new target: least loaded node
            (&[5, 3, 9], None, 1, &[1]),
            // holder below T_high: stays
            (&[60, 0, 0], Some(0), 0, &[0]),
            // holder above T_high and a node under T_low: replicate to it
            (&[66, 24, 30], Some(0), 1, &[0, 1]),
            // holder above T_high but nobody under T_low: stays
            (&[100, 25, 30], Some(0), 0, &[0]),
            // holder at 2*T_high: replicate even without an idle node
            (&[130, 40, 30], Some(0), 2, &[0, 2]),
            // holder just under 2*T_high, nobody under T_low: stays
            (&[129, 40, 30], Some(0), 0, &[0]),
        ];
        for (i, &(loads, holder, pick, set)) in cases.iter().enumerate() {
            let mut p = Lard::lard_r(LardParams::default());
            let t = table(loads);
            if let Some(h) = holder {
                // Give the holder the target while it is the least loaded.
                let mut idle = table(&vec![1; loads.len()]);
                idle.set_load(NodeId(h), 0);
                assert_eq!(p.decide(T, &idle, S0), Some(NodeId(h)));
            }
            assert_eq!(p.decide(T, &t, S0), Some(NodeId(pick)), "case {i}");
            let want: Vec<NodeId> = set.iter().map(|&x| NodeId(x)).collect();
            assert_eq!(p.server_set(T), want.as_slice(), "case {i}");
        }
    }

    #[test]
    fn lard_moves_instead_of_replicating() {
        let mut p = Lard::basic(LardParams::default());
        assert_eq!(p.decide(T, &table(&[0, 1]), S0), Some(NodeId(0)));
        assert_eq!(p.decide(T, &table(&[70, 10]), S0), Some(NodeId(1)));
        assert_eq!(p.server_set(T), &[NodeId(1)]);
    }

    #[test]
    fn set_shrinks_only_after_k() {
        let mut p = Lard::lard_r(LardParams::default());
        let k = LardParams::default().k;
        p.decide(T, &table(&[0, 1]), S0);
        p.decide(T, &table(&[70, 10]), S0);
        assert_eq!(p.server_set(T).len(), 2);
        let calm = table(&[10, 10]);
        p.decide(T, &calm, k);
        assert_eq!(p.server_set(T).len(), 2, "exactly K is not more than K");
        p.decide(T, &calm, k + Duration::from_millis(1));
        assert_eq!(p.server_set(T).len(), 1);
    }

    #[test]
    fn leave_prunes_sets_and_join_moves_nothing() {
        let mut p = Lard::lard_r(LardParams::default());
        let mut t = table(&[0, 1, 2]);
        let a = TargetKey(1);
        let b = TargetKey(2);
        assert_eq!(p.decide(a, &t, S0), Some(NodeId(0)));
        t.set_load(NodeId(0), 5);
        assert_eq!(p.decide(b, &t, S0), Some(NodeId(1)));
        t.leave(NodeId(0));
        p.observe(Event::Left(NodeId(0)), &t, S0);
        assert_eq!(p.server_set(a), &[] as &[NodeId]);
        assert_eq!(p.server_set(b), &[NodeId(1)]);
        t.join(NodeId(7));
        p.observe(Event::Joined(NodeId(7)), &t, S0);
        assert_eq!(p.decide(b, &t, S0), Some(NodeId(1)));
        assert_eq!(
            p.decide(a, &t, S0),
            Some(NodeId(7)),
            "orphan goes to the idle newcomer"
        );
    }

    #[test]
    fn no_nodes_no_decision() {
        let mut p = Lard::lard_r(LardParams::default());
        assert_eq!(p.decide(T, &LoadTable::default(), S0), None);
    }
}
