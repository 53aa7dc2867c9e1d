//! Dispatch policies: given a target and the current loads, which node
//! serves it.
//!
//! Every policy is a pure state machine: no I/O, no wall clock, no
//! randomness. Time is an input (`now`, the time since the cluster or the
//! simulation started), so the live front end and the simulator drive the
//! very same code. The caller owns the [`LoadTable`] (it counts the active
//! requests per node, the load LARD measures) and tells the policy what
//! happens through [`Policy::observe`].

mod hash;
mod hashing;
mod lard;
mod wrr;

use std::fmt;
use std::time::Duration;

pub use hash::{PassThroughBuild, PassThroughHasher, fmix64, fnv1a64, stable_hash};
pub use hashing::{BoundedLoadHash, ConsistentHash, ModHash, Ring};
pub use lard::{Lard, LardParams};
pub use wrr::LeastLoaded;

use crate::ClusterError;

/// A node of the cluster. Ids are assigned by membership and never reused
/// while the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// What a request asks for (path + variant), reduced to its stable hash.
/// The unit of caching and of dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey(pub u64);

impl TargetKey {
    /// The key of a target name: [`stable_hash`] of its bytes.
    pub fn of(target: &[u8]) -> Self {
        TargetKey(stable_hash(target))
    }
}

/// The live nodes and their loads (active requests), kept by the caller.
///
/// Nodes are kept sorted by id, so every policy sees them in the same order
/// whatever order they joined in.
#[derive(Debug, Clone, Default)]
pub struct LoadTable {
    nodes: Vec<NodeId>,
    loads: Vec<u32>,
    total: u64,
}

impl LoadTable {
    /// A table of `nodes`, all idle.
    pub fn new(nodes: &[NodeId]) -> Self {
        let mut t = LoadTable::default();
        for &n in nodes {
            t.join(n);
        }
        t
    }

    /// Adds a node with load 0; returns false if it was already there.
    pub fn join(&mut self, node: NodeId) -> bool {
        match self.nodes.binary_search(&node) {
            Ok(_) => false,
            Err(i) => {
                self.nodes.insert(i, node);
                self.loads.insert(i, 0);
                true
            }
        }
    }

    /// Removes a node; returns false if it was not there. Requests still
    /// running on it are no longer counted.
    pub fn leave(&mut self, node: NodeId) -> bool {
        match self.nodes.binary_search(&node) {
            Ok(i) => {
                self.nodes.remove(i);
                self.total -= u64::from(self.loads.remove(i));
                true
            }
            Err(_) => false,
        }
    }

    /// A request started on `node` (ignored if the node has left).
    pub fn started(&mut self, node: NodeId) {
        if let Ok(i) = self.nodes.binary_search(&node) {
            self.loads[i] += 1;
            self.total += 1;
        }
    }

    /// A request finished on `node` (ignored if the node has left).
    pub fn finished(&mut self, node: NodeId) {
        if let Ok(i) = self.nodes.binary_search(&node)
            && self.loads[i] > 0
        {
            self.loads[i] -= 1;
            self.total -= 1;
        }
    }

    /// Sets a node's load directly (tests, and a front end resynchronising
    /// from its peers). Ignored for a node that is not live.
    pub fn set_load(&mut self, node: NodeId, load: u32) {
        if let Ok(i) = self.nodes.binary_search(&node) {
            self.total = self.total - u64::from(self.loads[i]) + u64::from(load);
            self.loads[i] = load;
        }
    }

    /// The load of `node`, or None if it is not live.
    pub fn load(&self, node: NodeId) -> Option<u32> {
        self.nodes.binary_search(&node).ok().map(|i| self.loads[i])
    }

    /// Whether `node` is live.
    pub fn contains(&self, node: NodeId) -> bool {
        self.nodes.binary_search(&node).is_ok()
    }

    /// The live nodes, sorted by id.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The loads, in the order of [`LoadTable::nodes`].
    pub fn loads(&self) -> &[u32] {
        &self.loads
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is live.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sum of all loads: the requests active in the cluster.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The least loaded node and its load (the lowest id among equals).
    pub fn least_loaded(&self) -> Option<(NodeId, u32)> {
        let mut best: Option<(NodeId, u32)> = None;
        for (&n, &l) in self.nodes.iter().zip(&self.loads) {
            if best.is_none_or(|(_, bl)| l < bl) {
                best = Some((n, l));
            }
        }
        best
    }
}

/// What a policy is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request for `target` started on `node` (after [`Policy::decide`]).
    Started {
        /// The target.
        target: TargetKey,
        /// The node serving it.
        node: NodeId,
    },
    /// A request for `target` finished on `node`.
    Finished {
        /// The target.
        target: TargetKey,
        /// The node that served it.
        node: NodeId,
    },
    /// A node joined the cluster (already in the load table).
    Joined(NodeId),
    /// A node left the cluster (already gone from the load table).
    Left(NodeId),
}

/// A dispatch policy.
pub trait Policy: fmt::Debug + Send {
    /// The policy's short name (as `--policy` spells it).
    fn name(&self) -> &'static str;

    /// Picks the node that serves `target`, given the current `loads` at
    /// time `now`. Returns None only when no node is live. The policy may
    /// update its own state (server sets) but never the loads: the caller
    /// counts the request when it starts it.
    fn decide(&mut self, target: TargetKey, loads: &LoadTable, now: Duration) -> Option<NodeId>;

    /// Tells the policy what happened. The default ignores every event,
    /// which is right for policies that keep no state beyond the loads.
    fn observe(&mut self, event: Event, loads: &LoadTable, now: Duration) {
        let _ = (event, loads, now);
    }

    /// The cluster-wide limit on outstanding requests the front end must
    /// enforce for this policy (it queues the rest), for `live` nodes.
    /// The default, None, means no limit.
    fn admission_limit(&self, live: usize) -> Option<usize> {
        let _ = live;
        None
    }
}

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
