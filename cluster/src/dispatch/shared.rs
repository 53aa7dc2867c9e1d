//! [`Dispatch`]: what every worker's dispatch handler shares (the node,
//! the owner's policy state, the keys, the counters). A leaf below the
//! handler and the report.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use iolite_core::config::ClusterPolicy;
use tokio::sync::watch;

use super::admission::Admission;
use super::auth;
use super::brain::Brain;
use super::forward;
use crate::membership::View;
use crate::policy::{PolicyKind, PolicyParams};

/// Counters of dispatch (relaxed atomics, like core's).
#[derive(Debug, Default)]
pub struct DispatchCounters {
    /// Requests this node sent to another node.
    pub forwarded: AtomicU64,
    /// Forwards that failed (before an answer, timed out, invalid answer).
    pub peer_errors: AtomicU64,
    /// GET/HEAD forwards sent again to another node.
    pub retries: AtomicU64,
    /// Policy decisions made here (as owner).
    pub decisions: AtomicU64,
    /// Their total time, nanoseconds.
    pub decision_ns: AtomicU64,
    /// Requests served here for a peer.
    pub served_for_peers: AtomicU64,
    /// Peer requests refused by the gate, by [`auth::Refusal::ALL`] order.
    pub refused: [AtomicU64; auth::Refusal::ALL.len()],
}

/// What every worker's handler shares: the node, the policy's state, the
/// keys, the counters.
#[derive(Debug)]
pub struct Dispatch {
    /// This node's name.
    pub name: String,
    /// This node's peer address (TCP here, UDP gossip on the same port).
    pub peer: std::net::SocketAddr,
    /// None: policy `local`, every request served where it arrives.
    kind: Option<PolicyKind>,
    view: watch::Receiver<Arc<View>>,
    pub(super) brain: Mutex<Brain>,
    pub(super) signer: auth::PeerSigner,
    pub(super) verifier: auth::PeerVerifier,
    pub(super) guard: Mutex<crate::membership::packet::ReplayGuard>,
    /// This node's active requests (shared with membership, which gossips it).
    pub(super) active: Arc<AtomicU32>,
    nonce_base: u128,
    nonce: AtomicU64,
    pub counters: DispatchCounters,
    pub limits: forward::PoolLimits,
    /// The front end's queue past the cluster-wide limit S.
    pub admission: Arc<Admission>,
    pub(super) started: Instant,
}

/// What dispatch needs to start.
#[derive(Debug)]
pub struct DispatchSettings {
    pub name: String,
    pub peer: std::net::SocketAddr,
    pub policy: ClusterPolicy,
    pub params: PolicyParams,
    /// The cluster key's bytes.
    pub key: Vec<u8>,
    /// How far a peer request's time may be from the clock.
    pub replay_window: std::time::Duration,
    pub view: watch::Receiver<Arc<View>>,
    /// This node's load, as membership gossips it.
    pub active: Arc<AtomicU32>,
    pub limits: forward::PoolLimits,
    /// The front end's queue past S: how many may wait, how long.
    pub admission: iolite_core::config::AdmissionSettings,
    /// How often a waiting request looks at the gossiped loads again (the
    /// gossip period).
    pub recheck: std::time::Duration,
}

impl Dispatch {
    /// Dispatch for this node.
    pub fn new(s: DispatchSettings) -> Arc<Dispatch> {
        let kind = match s.policy {
            ClusterPolicy::LardR => Some(PolicyKind::LardR),
            ClusterPolicy::Wrr => Some(PolicyKind::Wrr),
            ClusterPolicy::Chash => Some(PolicyKind::ConsistentHash),
            ClusterPolicy::ChashBl => Some(PolicyKind::BoundedLoad),
            ClusterPolicy::Local => None,
        };
        let nonce_base = {
            use std::hash::{BuildHasher as _, Hasher as _};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(crate::membership::now_us());
            u128::from(h.finish()) << 64
        };
        let signer = auth::PeerSigner::new(&s.key, &s.name);
        Arc::new(Dispatch {
            name: s.name,
            peer: s.peer,
            kind,
            view: s.view,
            brain: Mutex::new(Brain::new(kind.unwrap_or(PolicyKind::Wrr), &s.params)),
            signer,
            verifier: auth::PeerVerifier::new(&s.key),
            guard: Mutex::new(crate::membership::packet::ReplayGuard::new(
                u64::try_from(s.replay_window.as_micros()).unwrap_or(u64::MAX),
            )),
            active: s.active,
            nonce_base,
            nonce: AtomicU64::new(0),
            counters: DispatchCounters::default(),
            limits: s.limits,
            admission: Arc::new(Admission::new(
                s.admission.queue as usize,
                s.admission.queue_timeout,
                s.recheck,
            )),
            started: Instant::now(),
        })
    }

    /// Whether requests are dispatched at all (not policy `local`).
    pub fn dispatches(&self) -> bool {
        self.kind.is_some()
    }

    /// The policy's name, or `local`.
    pub fn policy_name(&self) -> &'static str {
        self.kind.map_or("local", PolicyKind::name)
    }

    /// A nonce never used before by this process.
    pub(super) fn next_nonce(&self) -> u128 {
        self.nonce_base | u128::from(self.nonce.fetch_add(1, Relaxed))
    }

    /// This node's active requests now.
    pub fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// The membership view now.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }
}
