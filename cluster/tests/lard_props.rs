//! Property tests of LARD and LARD/R against ARCHITECTURE.md's rules.

use std::time::Duration;

use iolite_cluster::policy::{Lard, LardParams, LoadTable, NodeId, Policy, TargetKey};
use proptest::prelude::*;

const P: LardParams = LardParams {
    t_low: 25,
    t_high: 65,
    k: Duration::from_secs(20),
};

fn table(loads: &[u32]) -> LoadTable {
    let nodes: Vec<NodeId> = (0..loads.len() as u32).map(NodeId).collect();
    let mut t = LoadTable::new(&nodes);
    for (i, &l) in loads.iter().enumerate() {
        t.set_load(NodeId(i as u32), l);
    }
    t
}

/// A load, often right at one of LARD's thresholds.
fn load() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0u32..200,
        1 => prop::sample::select(vec![24u32, 25, 26, 64, 65, 66, 129, 130, 131]),
    ]
}

/// Decisions so far: (target, the loads at that moment).
type History = Vec<(u8, Vec<u32>)>;

/// A node count, then a history, a target and the loads of the final
/// decision.
fn history() -> impl Strategy<Value = (History, u8, Vec<u32>)> {
    (1usize..=16).prop_flat_map(|n| {
        (
            prop::collection::vec((0u8..8, prop::collection::vec(load(), n)), 0..40),
            0u8..8,
            prop::collection::vec(load(), n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Neither LARD nor LARD/R picks a node at or above 2·T_high while
    /// another node is under T_low, whatever the server sets hold.
    #[test]
    fn never_overloaded_while_a_node_idles((hist, target, loads) in history(), replicate in any::<bool>()) {
        let mut p = if replicate { Lard::lard_r(P) } else { Lard::basic(P) };
        for (i, (t, l)) in hist.iter().enumerate() {
            p.decide(TargetKey(u64::from(*t)), &table(l), Duration::from_millis(i as u64));
        }
        let t = table(&loads);
        let n = p.decide(TargetKey(u64::from(target)), &t, Duration::from_secs(1)).unwrap();
        let chosen = t.load(n).unwrap();
        if loads.iter().any(|&l| l < P.t_low) {
            prop_assert!(chosen < 2 * P.t_high, "picked load {chosen} with loads {loads:?}");
            prop_assert!(chosen <= P.t_high || chosen < P.t_low,
                "picked load {chosen} above T_high while a node is under T_low: {loads:?}");
        }
        // The 2·T_high rule on its own: a node that loaded is only picked
        // when every node is.
        if loads.iter().any(|&l| l < 2 * P.t_high) {
            prop_assert!(chosen < 2 * P.t_high, "picked load {chosen} with loads {loads:?}");
        }
    }

    /// A LARD/R server set that has not changed for more than K seconds
    /// loses one node on its next request, no earlier, and one per K after
    /// that, down to one node.
    #[test]
    fn server_sets_shrink_after_k((hist, _target, _loads) in history()) {
        let mut p = Lard::lard_r(P);
        for (t, l) in &hist {
            p.decide(TargetKey(u64::from(*t)), &table(l), Duration::ZERO);
        }
        let n = hist.first().map_or(1, |(_, l)| l.len());
        // Equal loads under T_high: nothing triggers replication.
        let calm = table(&vec![10; n]);
        for t in 0u8..8 {
            let key = TargetKey(u64::from(t));
            let mut size = p.server_set(key).len();
            if size == 0 {
                continue;
            }
            // The history ran at time 0: that is when every set last changed.
            let mut last = Duration::ZERO;
            while size > 1 {
                p.decide(key, &calm, last + P.k);
                prop_assert_eq!(p.server_set(key).len(), size, "shrank at exactly K");
                last += P.k + Duration::from_millis(1);
                p.decide(key, &calm, last);
                prop_assert_eq!(p.server_set(key).len(), size - 1, "did not shrink after K");
                size -= 1;
            }
            p.decide(key, &calm, last + 10 * P.k);
            prop_assert_eq!(p.server_set(key).len(), 1, "a set never shrinks below one node");
        }
    }
}
