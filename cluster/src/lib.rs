//! iolite-cluster owns what spans nodes: the dispatch policies (LARD, LARD/R
//! and the baselines they are measured against), membership, forwarding, the
//! peer cache protocol, replication control and the trace-driven simulator.
//! It must not reimplement gossip or failure detection (that comes from a
//! membership library), and the policies themselves do no I/O and read no
//! clock (time is an input), so the live cluster and the simulator run the
//! very same code.
//!
//! Measured results of the simulator (throughput of every policy against
//! node count, scenarios, the LARD/R targets, the cost model's sources) are
//! in `cluster/README.md`; `iolite sim --help` lists every flag.
//!
//! # Layout
//! - [`policy`]: the [`Policy`] trait, the [`LoadTable`] the caller keeps,
//!   the stable hash, and the policies: LARD and LARD/R ([`Lard`]), weighted
//!   round robin by load ([`LeastLoaded`]), pure hashing ([`ModHash`]),
//!   consistent hashing ([`ConsistentHash`]) and consistent hashing with
//!   bounded loads ([`BoundedLoadHash`]).
//! - [`membership`]: membership and failure detection for real: foca's
//!   SWIM over our own UDP socket, every packet signed with the cluster
//!   key; the [`Membership`] handle the server (and, later, the
//!   dispatcher) reads live members and their loads from.
//! - [`dispatch`]: the live cluster's request path: each target's owner
//!   decides with the policy, requests go to the chosen node over signed,
//!   pooled peer connections and come back by splice; the peer listener's
//!   gate.
//! - [`sim`]: the closed-loop discrete-event simulator behind `iolite sim`:
//!   node caches (core's LRU and GDSF replacement, the code the server's
//!   cache runs), the LARD paper's cost model, synthetic and
//!   trace workloads, scenarios, the report (table, JSON lines, SVG), and
//!   its command-line arguments ([`sim::cli::SimArgs`]).
//! - `error`: [`ClusterError`], the crate's one error type.
#![forbid(unsafe_code)]

pub mod dispatch;
mod error;
pub mod membership;
pub mod policy;
pub mod sim;

pub use error::ClusterError;
pub use membership::{Member, MemberState, Membership, NodeIdentity, Settings, View};
pub use policy::{
    BoundedLoadHash, ConsistentHash, Event, Lard, LardParams, LeastLoaded, LoadTable, ModHash,
    NodeId, Policy, PolicyKind, PolicyParams, TargetKey,
};
