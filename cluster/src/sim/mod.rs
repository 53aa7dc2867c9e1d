//! The trace-driven cluster simulator behind `iolite sim`.
//!
//! It runs the real policies of [`crate::policy`] against simulated nodes:
//! a closed loop of clients, a front end that asks the policy where each
//! request goes (and queues at the policy's cluster-wide limit), and nodes
//! with a cache ([`cache`]), a CPU and a disk costed by the LARD paper's
//! model ([`cost`]). Workloads are synthetic or read from traces
//! ([`workload`]). Results print as a table, JSON lines or an SVG plot
//! ([`report`]). The command line is [`cli`].
//!
//! Measured results are in `cluster/README.md`.

pub mod cache;
pub mod cli;
pub mod cost;
mod engine;
pub mod report;
mod spec;
pub mod workload;

pub use cache::CacheKind;
pub use cost::CostModel;
pub use spec::{RunResult, Scenario, ScenarioResult, SimConfig};
pub use workload::{Synthetic, Workload};

use crate::ClusterError;
use crate::policy::PolicyKind;

/// Runs one configuration.
pub fn run(cfg: &SimConfig, workload: &Workload) -> Result<RunResult, ClusterError> {
    cfg.validate()?;
    check_memory(cfg, workload)?;
    Ok(engine::run(cfg, workload))
}

/// Each node cache keeps arrays over all objects: refuse runs that would
/// need more than a few GiB for them rather than abort on allocation.
fn check_memory(cfg: &SimConfig, workload: &Workload) -> Result<(), ClusterError> {
    const MAX_CELLS: u64 = 400_000_000;
    let cells = (cfg.nodes as u64 + 1).saturating_mul(workload.objects() as u64);
    if cells > MAX_CELLS || cfg.clients > 100_000_000 {
        return Err(ClusterError::InvalidParam(format!(
            "{} nodes x {} objects (or {} clients) is too large to simulate in memory",
            cfg.nodes,
            workload.objects(),
            cfg.clients
        )));
    }
    Ok(())
}

/// Runs every configuration, on up to `threads` threads, and fills in
/// `vs_wrr` from the WRR run with the same node count (when there is one).
/// Results come back in the order of `cfgs`.
pub fn run_all(
    cfgs: &[SimConfig],
    workload: &Workload,
    threads: usize,
) -> Result<Vec<RunResult>, ClusterError> {
    for c in cfgs {
        c.validate()?;
        check_memory(c, workload)?;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<RunResult>>> =
        cfgs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, cfgs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(cfg) = cfgs.get(i) else { break };
                    let r = engine::run(cfg, workload);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let mut out: Vec<RunResult> = slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect();
    if out.len() != cfgs.len() {
        return Err(ClusterError::InvalidParam(
            "a simulation thread failed".into(),
        ));
    }
    let wrr: Vec<(usize, f64)> = out
        .iter()
        .filter(|r| r.policy == PolicyKind::Wrr)
        .map(|r| (r.nodes, r.throughput))
        .collect();
    for r in &mut out {
        r.vs_wrr = wrr
            .iter()
            .find(|(n, _)| *n == r.nodes)
            .filter(|(_, t)| *t > 0.0)
            .map(|(_, t)| r.throughput / t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyParams;

    fn workload(objects: u32, sigma: f64) -> Workload {
        Workload::synthetic(Synthetic {
            objects,
            alpha: 0.9,
            size_median: 8192,
            size_sigma: sigma,
            seed: 3,
        })
        .unwrap()
    }

    fn cfg(policy: PolicyKind, nodes: usize, cache_bytes: u64) -> SimConfig {
        SimConfig {
            nodes,
            clients: 65 * nodes,
            cache_bytes,
            cache_kind: CacheKind::Gdsf,
            cost: CostModel::default(),
            requests: 20_000,
            warmup: 2_000,
            policy,
            params: PolicyParams::default(),
            scenario: None,
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b
    }

    /// All hits, one node: CPU-bound at 1 / 930 µs for 8 KiB objects.
    #[test]
    fn memory_bound_throughput_matches_the_cost_model() {
        let w = workload(50, 0.0);
        let mut c = cfg(PolicyKind::Wrr, 1, 1 << 30);
        // Long enough for the cold misses queued on the disk to drain.
        c.warmup = 20_000;
        let r = run(&c, &w).unwrap();
        assert_eq!(r.requests, 20_000);
        assert_eq!(r.hit_ratio, 1.0);
        assert!(close(r.throughput, 1e6 / 930.0, 0.001), "{}", r.throughput);
        assert!(close(r.mean_util, 1.0, 0.001), "{}", r.mean_util);
    }

    /// No cache, one node: disk-bound at 1 / 28.82 ms for 8 KiB objects.
    #[test]
    fn disk_bound_throughput_matches_the_cost_model() {
        let w = workload(50, 0.0);
        let mut c = cfg(PolicyKind::LardR, 1, 0);
        c.requests = 2_000;
        c.warmup = 200;
        let r = run(&c, &w).unwrap();
        assert_eq!(r.hit_ratio, 0.0);
        assert!(close(r.throughput, 1e3 / 28.82, 0.001), "{}", r.throughput);
    }

    #[test]
    fn runs_are_deterministic_and_wrr_is_the_baseline() {
        let w = workload(2_000, 1.0);
        let cfgs: Vec<SimConfig> = [PolicyKind::Wrr, PolicyKind::LardR, PolicyKind::Hash]
            .iter()
            .map(|&p| cfg(p, 4, w.total_bytes() / 8))
            .collect();
        let a = run_all(&cfgs, &w, 2).unwrap();
        let b = run_all(&cfgs, &w, 1).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.policy, y.policy);
            assert_eq!(x.throughput, y.throughput);
            assert_eq!(x.hit_ratio, y.hit_ratio);
        }
        assert_eq!(a[0].vs_wrr, Some(1.0));
        for r in &a {
            assert!((0.0..=1.0).contains(&r.hit_ratio));
            assert!((0.0..=1.0).contains(&r.byte_hit_ratio));
            assert!(r.max_mean_util >= 1.0 && r.top100_copies >= 0.0);
        }
        // Hashing never moves a target; WRR moves most requests.
        assert_eq!(a[2].moved_share, 0.0);
        assert!(a[0].moved_share > 0.5, "{}", a[0].moved_share);
    }

    /// Consistent hashing moves exactly the leaver's targets; pure hashing
    /// moves most; LARD/R moves only what it must plus load adjustments.
    #[test]
    fn leave_moves_few_targets_under_consistent_hashing() {
        let w = workload(2_000, 1.0);
        let moved = |p: PolicyKind| {
            let mut c = cfg(p, 4, w.total_bytes() / 8);
            c.scenario = Some(Scenario::Leave);
            run(&c, &w).unwrap().scenario.unwrap()
        };
        let ch = moved(PolicyKind::ConsistentHash);
        assert!(ch.targets_compared > 500);
        assert_eq!(ch.targets_moved, ch.targets_forced);
        let hash = moved(PolicyKind::Hash);
        assert!(
            hash.targets_moved > 2 * ch.targets_moved,
            "{hash:?} vs {ch:?}"
        );
        let lr = moved(PolicyKind::LardR);
        assert!(lr.targets_forced <= lr.targets_moved);
        assert!(lr.recovery_requests.is_some(), "{lr:?}");
    }

    #[test]
    fn join_moves_about_one_share_under_consistent_hashing() {
        let w = workload(2_000, 1.0);
        let mut c = cfg(PolicyKind::ConsistentHash, 4, w.total_bytes() / 8);
        c.scenario = Some(Scenario::Join);
        let s = run(&c, &w).unwrap().scenario.unwrap();
        let share = s.targets_moved as f64 / s.targets_compared as f64;
        assert!((0.1..0.3).contains(&share), "{share} of {s:?}");
        assert_eq!(s.targets_forced, 0);
    }

    /// LARD's front end never lets more than S requests into the cluster;
    /// the other policies have no limit.
    #[test]
    fn lard_front_end_queues_beyond_s() {
        let w = workload(500, 1.0);
        for (p, want) in [
            (PolicyKind::LardR, 219), // S = 3 * 65 + 25 - 1 at 4 nodes
            (PolicyKind::Lard, 219),
            (PolicyKind::Wrr, 1000),
            (PolicyKind::BoundedLoad, 1000),
        ] {
            let mut c = cfg(p, 4, w.total_bytes() / 8);
            c.clients = 1000;
            c.requests = 5_000;
            c.warmup = 500;
            assert_eq!(run(&c, &w).unwrap().max_outstanding, want, "{p}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let w = workload(10, 0.0);
        let good = cfg(PolicyKind::Lard, 2, 100);
        let mut bads = vec![
            SimConfig {
                nodes: 0,
                ..good.clone()
            },
            SimConfig {
                clients: 0,
                ..good.clone()
            },
            SimConfig {
                requests: 0,
                ..good.clone()
            },
            SimConfig {
                nodes: 1,
                scenario: Some(Scenario::Leave),
                ..good.clone()
            },
        ];
        let mut p = good.clone();
        p.params.lard.t_low = 70;
        bads.push(p);
        let mut p = good.clone();
        p.params.balance = 0.5;
        bads.push(p);
        let mut p = good.clone();
        p.cost.disk_first_us = f64::NAN;
        bads.push(p);
        for b in bads {
            assert!(run(&b, &w).is_err(), "{b:?}");
        }
    }
}
