//! The `[cluster]` table: this node's name and addresses, its seeds, the
//! cluster key file, the dispatch policy and the failure detector's timers.
//! What spans settings (the key file's content, `probe_rtt` against
//! `probe_period`, a client address peers can reach) is checked in
//! `validate`.

use std::net::SocketAddr;

use super::Origin;
use super::file::{Cx, Val};
use super::types::{AdmissionSettings, ClusterConfig, ClusterPolicy, ClusterTimers, LardSettings};
use super::validate::{ClusterDraft, Draft};
use super::value;

const CLUSTER_KEYS: &[&str] = &[
    "name",
    "peer",
    "client",
    "seeds",
    "key_file",
    "policy",
    "probe_period",
    "probe_rtt",
    "suspect_to_down",
    "gossip_period",
    "replay_window",
    "t_low",
    "t_high",
    "k",
    "queue",
    "queue_timeout",
];

/// The longest node name.
const MAX_NAME: usize = 64;

impl Cx<'_, '_> {
    pub(super) fn cluster(&mut self, v: &Val<'_>, d: &mut Draft) {
        let Some(t) = self.table(v, "cluster") else {
            return;
        };
        let mut c = ClusterConfig {
            name: String::new(),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            client: None,
            seeds: Vec::new(),
            key_file: Default::default(),
            policy: ClusterPolicy::default(),
            lard: LardSettings::default(),
            admission: AdmissionSettings::default(),
            timers: ClusterTimers::default(),
        };
        let mut key_at = None;
        let mut rtt_at = None;
        let mut timers_at = Origin::Default;
        for (k, v) in t.iter() {
            let t = &mut c.timers;
            match k.get_ref().as_ref() {
                "name" => c.name = self.node_name(v).unwrap_or_default(),
                "peer" => c.peer = self.peer_addr(v, "cluster.peer").unwrap_or(c.peer),
                "key_file" => {
                    if let Some(p) = self.path(v, "cluster.key_file") {
                        c.key_file = p;
                        key_at = Some(self.origin(&v.span()));
                    }
                }
                "client" => c.client = self.peer_addr(v, "cluster.client"),
                "seeds" => c.seeds = self.seeds(v).unwrap_or_default(),
                "policy" => {
                    let choices = ClusterPolicy::NAMES;
                    if let Some(p) = self.choice(v, "cluster.policy", "dispatch policy", &choices) {
                        c.policy = p;
                    }
                }
                "probe_period" => {
                    if let Some(d) = self.positive_duration(v, "cluster.probe_period") {
                        t.probe_period = d;
                    }
                    timers_at = self.origin(&v.span());
                }
                "probe_rtt" => {
                    if let Some(d) = self.positive_duration(v, "cluster.probe_rtt") {
                        t.probe_rtt = d;
                    }
                    rtt_at = Some(self.origin(&v.span()));
                }
                "suspect_to_down" => {
                    if let Some(d) = self.positive_duration(v, "cluster.suspect_to_down") {
                        t.suspect_to_down = d;
                    }
                }
                "gossip_period" => {
                    if let Some(d) = self.positive_duration(v, "cluster.gossip_period") {
                        t.gossip_period = d;
                    }
                }
                "replay_window" => {
                    if let Some(d) = self.positive_duration(v, "cluster.replay_window") {
                        t.replay_window = d;
                    }
                }
                "t_low" => {
                    if let Some(n) = self.count(v, "cluster.t_low", 1, 1_000_000) {
                        c.lard.t_low = n as u32;
                    }
                }
                "t_high" => {
                    if let Some(n) = self.count(v, "cluster.t_high", 1, 1_000_000) {
                        c.lard.t_high = n as u32;
                    }
                }
                "k" => {
                    if let Some(d) = self.positive_duration(v, "cluster.k") {
                        c.lard.k = d;
                    }
                }
                "queue" => {
                    if let Some(n) = self.count(v, "cluster.queue", 0, 1_000_000) {
                        c.admission.queue = n as u32;
                    }
                }
                "queue_timeout" => {
                    if let Some(d) = self.positive_duration(v, "cluster.queue_timeout") {
                        c.admission.queue_timeout = d;
                    }
                }
                _ => self.unknown(k, "[cluster]", CLUSTER_KEYS),
            }
        }
        if c.lard.t_low >= c.lard.t_high
            && let Some(at) = t.get("t_low").or_else(|| t.get("t_high"))
        {
            self.bad(
                at,
                "cluster.t_low",
                format!(
                    "must be below cluster.t_high ({} and {})",
                    c.lard.t_low, c.lard.t_high
                ),
            );
        }
        for key in ["name", "peer", "key_file"] {
            if !t.contains_key(key) {
                self.missing(v, "[cluster]", key);
            }
        }
        // Kept for the cross-checks whenever the key file is named (the
        // problems found here stop the configuration all the same).
        if let Some(key_at) = key_at {
            d.cluster = Some(ClusterDraft {
                config: c,
                at: self.origin(&v.span()),
                key_at,
                // A bad pair is reported at probe_rtt when it is set, at
                // probe_period otherwise.
                rtt_at: rtt_at.unwrap_or(timers_at),
            });
        }
    }

    fn node_name(&mut self, v: &Val<'_>) -> Option<String> {
        let s = self.string(v, "cluster.name")?;
        let good = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > MAX_NAME || !s.chars().all(good) {
            self.bad(
                v,
                "cluster.name",
                format!(
                    "bad node name {s:?}: 1 to {MAX_NAME} letters, digits, '.', '_' or '-' are needed"
                ),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn peer_addr(&mut self, v: &Val<'_>, key: &str) -> Option<SocketAddr> {
        let s = self.string(v, key)?;
        match value::parse_addr(s) {
            Ok(a) if a.ip().is_unspecified() || a.port() == 0 => {
                self.bad(v, key, unreachable_addr(a));
                None
            }
            Ok(a) => Some(a),
            Err(problem) => {
                self.bad(v, key, problem);
                None
            }
        }
    }

    fn seeds(&mut self, v: &Val<'_>) -> Option<Vec<SocketAddr>> {
        let items = self.strings(v, "cluster.seeds")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span) in items {
            match value::parse_addr(s) {
                Ok(a) if a.ip().is_unspecified() || a.port() == 0 => {
                    self.error(span, format!("cluster.seeds: {}", unreachable_addr(a)));
                    ok = false;
                }
                Ok(a) if out.contains(&a) => {
                    self.error(span, format!("cluster.seeds: {a} is listed twice"));
                    ok = false;
                }
                Ok(a) => out.push(a),
                Err(problem) => {
                    self.error(span, format!("cluster.seeds: {problem}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

fn unreachable_addr(a: SocketAddr) -> String {
    format!("{a} cannot be reached by peers: a specific IP and a port other than 0 are needed")
}
