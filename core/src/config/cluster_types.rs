//! `[cluster]`'s validated settings (a leaf: [`super::types::Config`]
//! holds them; `cluster` parses them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::value::format_duration;

/// `[cluster]`: who this node is among its peers and how it finds and
/// watches them (iolite-cluster runs it; core only reads and checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The node's name, unique in the cluster: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// The UDP address gossip is sent from and received on: a specific IP
    /// (peers see it as the sender), not port 0.
    pub peer: SocketAddr,
    /// The address peers tell clients (and, later, forward to); `None`:
    /// the first client listener's bound address.
    pub client: Option<SocketAddr>,
    /// Peer addresses announced to at start and whenever no peer is alive;
    /// the node's own `peer` may be listed (one list for every node).
    pub seeds: Vec<SocketAddr>,
    /// The cluster key: a file only its owner can read holding at least
    /// [`MIN_CLUSTER_KEY`] bytes (see [`read_cluster_key`](super::read_cluster_key)).
    pub key_file: PathBuf,
    /// The dispatch policy of static GET and HEAD requests.
    pub policy: ClusterPolicy,
    /// LARD/R's thresholds (the policy `lard-r`).
    pub lard: LardSettings,
    /// The front end's queue past the cluster-wide limit S.
    pub admission: AdmissionSettings,
    pub timers: ClusterTimers,
}

/// What a node does with a client's request for a dispatched target when
/// the cluster already holds S = (n-1)·T_high + T_low − 1 requests
/// (LARD/R's front end; the other policies set no limit): it waits in
/// this node's queue, and is refused (503, `Retry-After: 1`) when the
/// queue is full or its wait runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Requests that may wait on this node; 0: refuse at once.
    pub queue: u32,
    /// How long a request may wait for its turn.
    pub queue_timeout: Duration,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            queue: 1024,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// LARD/R's thresholds, in active requests per node, and its K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LardSettings {
    /// Below this load a node is underused (paper: 25).
    pub t_low: u32,
    /// Above this load a node adds delay: a target's set grows (paper: 65).
    pub t_high: u32,
    /// A server set unchanged this long loses its most loaded node (paper: 20 s).
    pub k: Duration,
}

impl Default for LardSettings {
    fn default() -> Self {
        LardSettings {
            t_low: 25,
            t_high: 65,
            k: Duration::from_secs(20),
        }
    }
}

/// The shortest cluster key accepted, in bytes (an HMAC-SHA256 key of
/// 256 bits, e.g. `openssl rand -hex 32`, which writes 64).
pub const MIN_CLUSTER_KEY: usize = 32;
/// The largest cluster key file read, in bytes.
pub const MAX_CLUSTER_KEY_FILE: u64 = 4096;

/// The dispatch policies a cluster can run (`cluster/src/policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClusterPolicy {
    /// LARD with replication (the default).
    #[default]
    LardR,
    /// Weighted round robin by load.
    Wrr,
    /// Consistent hashing.
    Chash,
    /// Consistent hashing with bounded loads.
    ChashBl,
    /// Every request served where it arrives.
    Local,
}

impl ClusterPolicy {
    /// Every policy with its configuration name.
    pub const NAMES: [(&'static str, ClusterPolicy); 5] = [
        ("lard-r", ClusterPolicy::LardR),
        ("wrr", ClusterPolicy::Wrr),
        ("chash", ClusterPolicy::Chash),
        ("chash-bl", ClusterPolicy::ChashBl),
        ("local", ClusterPolicy::Local),
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("lard-r", |(n, _)| n)
    }
}

/// The failure detector's timers (SWIM, as foca runs it). The defaults are
/// foca's `Config::new_lan` for clusters of up to 10 nodes, derived from
/// memberlist's LAN settings: a dead node is declared down about
/// `probe_period + suspect_to_down` (5 s) after it stops answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTimers {
    /// How often each node probes one other member.
    pub probe_period: Duration,
    /// How long a direct probe waits for its answer before members are
    /// asked to probe indirectly; shorter than `probe_period`.
    pub probe_rtt: Duration,
    /// How long a suspected member has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// How often news (joins, suspicions, loads) is gossiped to a few members.
    pub gossip_period: Duration,
    /// How far a packet's timestamp may be from the receiver's clock; and
    /// how long a packet is remembered to refuse it a second time.
    pub replay_window: Duration,
}

impl Default for ClusterTimers {
    fn default() -> Self {
        ClusterTimers {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down: Duration::from_secs(4),
            gossip_period: Duration::from_millis(200),
            replay_window: Duration::from_secs(10),
        }
    }
}

impl ClusterConfig {
    /// The lines of `check-config`'s summary for `[cluster]`.
    pub(super) fn summarize(&self, line: &mut impl FnMut(&str, String)) {
        let c = self;
        let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
        let t = &c.timers;
        line(
            "cluster",
            format!(
                "node {} peer {} client {}, policy {}",
                c.name,
                c.peer,
                c.client
                    .map_or_else(|| "(first listener)".to_owned(), |a| a.to_string()),
                c.policy.as_str(),
            ),
        );
        line(
            "admission",
            format!(
                "past the cluster-wide limit (lard-r: S = (n-1)*t_high + t_low - 1) {} requests queue for up to {}",
                c.admission.queue,
                format_duration(c.admission.queue_timeout),
            ),
        );
        line(
            "seeds",
            if seeds.is_empty() {
                "none".to_owned()
            } else {
                seeds.join(", ")
            },
        );
        line("key file", c.key_file.display().to_string());
        line(
            "timers",
            format!(
                "probe {} (rtt {}), suspect to down {}, gossip {}, replay window {}",
                format_duration(t.probe_period),
                format_duration(t.probe_rtt),
                format_duration(t.suspect_to_down),
                format_duration(t.gossip_period),
                format_duration(t.replay_window),
            ),
        );
    }
}
