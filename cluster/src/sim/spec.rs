//! What a simulation is asked ([`SimConfig`], [`Scenario`]) and what it
//! gives ([`RunResult`], [`ScenarioResult`]): a leaf, so that the engine
//! that fills them and the runner that calls the engine both build on it.

use serde::Serialize;

use super::cache::CacheKind;
use super::cost::CostModel;
use crate::ClusterError;
use crate::policy::{PolicyKind, PolicyParams};

/// A change in the middle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// The node with the highest id leaves (its cache is lost).
    Leave,
    /// A node with an empty cache joins.
    Join,
    /// One object of median popularity jumps to 20% of all requests.
    Hotspot,
}

/// One simulation: a policy on a cluster of a given size.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes at the start.
    pub nodes: usize,
    /// Clients cluster-wide (closed loop, no think time).
    pub clients: usize,
    /// Cache bytes per node.
    pub cache_bytes: u64,
    /// Replacement policy of the node caches.
    pub cache_kind: CacheKind,
    /// Resource costs.
    pub cost: CostModel,
    /// Requests measured (after the warm-up).
    pub requests: u64,
    /// Requests completed before measuring starts.
    pub warmup: u64,
    /// The dispatch policy.
    pub policy: PolicyKind,
    /// Policy parameters.
    pub params: PolicyParams,
    /// An event halfway through the measured requests.
    pub scenario: Option<Scenario>,
}

impl SimConfig {
    /// Checks that the run can go ahead.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |m: String| Err(ClusterError::InvalidParam(m));
        if self.nodes == 0 || self.nodes > 4096 {
            return bad(format!("node count must be 1..=4096, not {}", self.nodes));
        }
        if self.scenario == Some(Scenario::Leave) && self.nodes < 2 {
            return bad("--scenario leave needs at least 2 nodes".into());
        }
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if self.requests == 0 {
            return bad("--requests must be at least 1".into());
        }
        if self.scenario.is_some() && self.requests < 200 {
            return bad("a scenario needs --requests of at least 200".into());
        }
        if !self.cost.is_valid() {
            return bad("every cost must be a finite number >= 0".into());
        }
        if !(self.params.balance.is_finite() && self.params.balance >= 1.0) {
            return bad(format!(
                "--balance must be at least 1, not {}",
                self.params.balance
            ));
        }
        let l = self.params.lard;
        if l.t_low == 0 || l.t_high <= l.t_low {
            return bad(format!(
                "LARD needs 0 < T_low < T_high (got {} and {})",
                l.t_low, l.t_high
            ));
        }
        Ok(())
    }
}

/// What a scenario did.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Which scenario.
    pub scenario: Scenario,
    /// Request hit ratio from the end of warm-up to the event.
    pub hit_ratio_before: f64,
    /// Lowest hit ratio of a bucket after the event.
    pub min_hit_ratio_after: f64,
    /// Requests after the event until the hit ratio was back to 95% of
    /// `hit_ratio_before` for good: the end of the last bucket under it (0:
    /// it never fell under; None: it was still under at the end of the run).
    pub recovery_requests: Option<u64>,
    /// Bucket size (the resolution of `recovery_requests`).
    pub bucket: u64,
    /// Throughput before the event.
    pub throughput_before: f64,
    /// Throughput after the event.
    pub throughput_after: f64,
    /// Targets served both before and after the event.
    pub targets_compared: u64,
    /// Of those, targets whose first node after the event differed from
    /// their last node before it.
    pub targets_moved: u64,
    /// Of the moved, those that had to move (their node left).
    pub targets_forced: u64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The policy.
    pub policy: PolicyKind,
    /// Nodes at the start.
    pub nodes: usize,
    /// Clients.
    pub clients: usize,
    /// Requests measured.
    pub requests: u64,
    /// Requests completed before measuring.
    pub warmup: u64,
    /// Simulated seconds the measured requests took.
    pub sim_seconds: f64,
    /// Requests per simulated second.
    pub throughput: f64,
    /// Throughput over weighted round robin's on the same cluster and
    /// workload (filled in by [`run_all`]).
    pub vs_wrr: Option<f64>,
    /// Requests served from the node's cache.
    pub hit_ratio: f64,
    /// Bytes served from the node's cache.
    pub byte_hit_ratio: f64,
    /// Utilisation of the busiest node over the mean (utilisation: the
    /// busier of a node's CPU and disk).
    pub max_mean_util: f64,
    /// Mean node utilisation.
    pub mean_util: f64,
    /// Mean CPU utilisation.
    pub cpu_util: f64,
    /// Share of requests served by another node than the previous request
    /// for the same target.
    pub moved_share: f64,
    /// Most requests ever outstanding in the cluster (the rest of the
    /// clients waited in the front end's queue).
    pub max_outstanding: usize,
    /// Cached copies of each of the 100 most requested objects, averaged.
    pub top100_copies: f64,
    /// What the scenario did, if one ran.
    pub scenario: Option<ScenarioResult>,
    /// Wall-clock seconds the run took (not part of the model).
    pub wall_seconds: f64,
}
