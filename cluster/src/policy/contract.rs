//! The contract between a dispatch policy and its caller: the [`Policy`]
//! trait and the [`Event`]s the caller tells it. Below the policies and
//! `mod.rs` (which builds them), so a policy never imports its builder.

use std::fmt;
use std::time::Duration;

use super::load::{LoadTable, NodeId, TargetKey};

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
