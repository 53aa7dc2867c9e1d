//! Dispatch policies: given a target and the current loads, which node
//! serves it.
//!
//! Every policy is a pure state machine: no I/O, no wall clock, no
//! randomness. Time is an input (`now`, the time since the cluster or the
//! simulation started), so the live front end and the simulator drive the
//! very same code. The caller owns the [`LoadTable`] (it counts the active
//! requests per node, the load LARD measures) and tells the policy what
//! happens through [`Policy::observe`].

mod contract;
mod hash;
mod hashing;
mod lard;
mod load;
mod wrr;

use std::fmt;

pub use contract::{Event, Policy};
pub use hash::{PassThroughBuild, PassThroughHasher, fmix64, fnv1a64, stable_hash};
pub use hashing::{BoundedLoadHash, ConsistentHash, ModHash, Ring};
pub use lard::{Lard, LardParams};
pub use load::{LoadTable, NodeId, TargetKey};
pub use wrr::LeastLoaded;

use crate::ClusterError;

/// The policies iolite knows, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Weighted round robin by load: the least loaded node (least
    /// connections), rotating among equals.
    Wrr,
    /// Pure hashing: `hash(target) mod n`, no load.
    Hash,
    /// Consistent hashing with virtual nodes, no load.
    ConsistentHash,
    /// Consistent hashing with bounded loads (balance factor c).
    BoundedLoad,
    /// LARD: one node per target, moved under load imbalance.
    Lard,
    /// LARD/R: a server set per target, grown under load, shrunk after K.
    LardR,
}

impl PolicyKind {
    /// Every policy, baselines first.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Wrr,
        PolicyKind::Hash,
        PolicyKind::ConsistentHash,
        PolicyKind::BoundedLoad,
        PolicyKind::Lard,
        PolicyKind::LardR,
    ];

    /// The name `--policy` takes and results print.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Wrr => "wrr",
            PolicyKind::Hash => "hash",
            PolicyKind::ConsistentHash => "chash",
            PolicyKind::BoundedLoad => "chash-bl",
            PolicyKind::Lard => "lard",
            PolicyKind::LardR => "lard-r",
        }
    }

    /// Parses one name (case-insensitive; `lard/r` and `lardr` are
    /// accepted for LARD/R, `bounded` for chash-bl).
    pub fn parse(name: &str) -> Result<Self, ClusterError> {
        let n = name.trim().to_ascii_lowercase();
        Ok(match n.as_str() {
            "wrr" | "least-loaded" => PolicyKind::Wrr,
            "hash" => PolicyKind::Hash,
            "chash" | "consistent" => PolicyKind::ConsistentHash,
            "chash-bl" | "bounded" | "chash-bounded" => PolicyKind::BoundedLoad,
            "lard" => PolicyKind::Lard,
            "lard-r" | "lard/r" | "lardr" => PolicyKind::LardR,
            _ => return Err(ClusterError::UnknownPolicy(name.to_string())),
        })
    }

    /// Parses `NAME[,NAME...]` or `all`, keeping the order given and
    /// dropping repeats.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, ClusterError> {
        if list.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in list.split(',') {
            let k = Self::parse(part)?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Whether the policy ignores load (its hottest node limits it).
    pub fn is_load_blind(self) -> bool {
        matches!(self, PolicyKind::Hash | PolicyKind::ConsistentHash)
    }

    /// Builds the policy for an initial set of `nodes`.
    pub fn build(self, nodes: &[NodeId], params: &PolicyParams) -> Box<dyn Policy> {
        match self {
            PolicyKind::Wrr => Box::new(LeastLoaded::new()),
            PolicyKind::Hash => Box::new(ModHash::new(nodes)),
            PolicyKind::ConsistentHash => Box::new(ConsistentHash::new(nodes, params.vnodes)),
            PolicyKind::BoundedLoad => {
                Box::new(BoundedLoadHash::new(nodes, params.vnodes, params.balance))
            }
            PolicyKind::Lard => Box::new(Lard::basic(params.lard)),
            PolicyKind::LardR => Box::new(Lard::lard_r(params.lard)),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The knobs of all policies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyParams {
    /// LARD and LARD/R thresholds.
    pub lard: LardParams,
    /// Virtual nodes per node on the consistent-hash rings (default 160,
    /// as ketama).
    pub vnodes: u32,
    /// Balance factor c of bounded-load consistent hashing: no node takes
    /// more than ceil(c * average load). Default 1.25 (Mirrokni et al.'s
    /// ε = 0.25; HAProxy's default hash-balance-factor is 125).
    pub balance: f64,
}

impl Default for PolicyParams {
    fn default() -> Self {
        PolicyParams {
            lard: LardParams::default(),
            vnodes: 160,
            balance: 1.25,
        }
    }
}

impl serde::Serialize for PolicyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
