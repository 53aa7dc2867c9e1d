//! What every policy reads: nodes ([`NodeId`]), targets ([`TargetKey`])
//! and the loads the caller keeps ([`LoadTable`]). Below the policies and
//! `mod.rs` (which builds them), so a policy never imports its builder.

use std::fmt;

use super::hash::stable_hash;

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
