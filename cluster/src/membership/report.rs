//! Membership on the admin pages: the counters the agent keeps, and the
//! view as `/metrics` families and a `/status` table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use iolite_core::metrics::{MetricsSource, Sample, StatusSource, StatusTable};
use tokio::sync::watch;

use super::packet::Rejection;
use super::view::{MemberState, View};

/// What the agent counts (relaxed atomics, like core's).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received, before any check.
    pub packets_in: AtomicU64,
    /// Datagrams sent.
    pub packets_out: AtomicU64,
    /// Datagrams dropped by the packet checks, by [`Rejection::ALL`] order.
    pub rejected: [AtomicU64; Rejection::ALL.len()],
    /// Authenticated packets foca refused (a payload it cannot decode:
    /// a peer of another version, say).
    pub foca_errors: AtomicU64,
    /// Datagrams the socket would not send.
    pub send_errors: AtomicU64,
}

impl Counters {
    pub fn rejected(&self, why: Rejection) {
        let slot = Rejection::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[slot].fetch_add(1, Relaxed);
    }
}

/// The admin pages' view of membership.
#[derive(Debug)]
pub struct Report {
    pub(crate) local_name: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) view: watch::Receiver<Arc<View>>,
}

impl MetricsSource for Report {
    fn samples(&self, out: &mut Vec<Sample>) {
        let view = self.view.borrow().clone();
        for state in MemberState::ALL {
            out.push(Sample {
                name: "iolite_cluster_members",
                kind: "gauge",
                help: "Cluster members this node knows, itself included, by state.",
                labels: vec![("state", state.as_str().to_owned())],
                value: view.count(state) as u64,
            });
        }
        for m in view.live() {
            out.push(Sample {
                name: "iolite_cluster_member_load",
                kind: "gauge",
                help: "Active requests of each live member, as it last gossiped.",
                labels: vec![("member", m.name.clone())],
                value: u64::from(m.load),
            });
        }
        out.push(Sample {
            name: "iolite_cluster_membership_epoch",
            kind: "counter",
            help: "Changes of the members or their states seen by this node.",
            labels: Vec::new(),
            value: view.epoch,
        });
        let c = &self.counters;
        for (direction, n) in [("in", &c.packets_in), ("out", &c.packets_out)] {
            out.push(Sample {
                name: "iolite_cluster_gossip_packets_total",
                kind: "counter",
                help: "Gossip datagrams received (before any check) and sent.",
                labels: vec![("direction", direction.to_owned())],
                value: n.load(Relaxed),
            });
        }
        for (why, n) in Rejection::ALL.iter().zip(&c.rejected) {
            out.push(Sample {
                name: "iolite_cluster_gossip_rejected_total",
                kind: "counter",
                help: "Gossip datagrams dropped before foca saw them, by reason.",
                labels: vec![("reason", why.as_str().to_owned())],
                value: n.load(Relaxed),
            });
        }
        for (name, help, n) in [
            (
                "iolite_cluster_gossip_errors_total",
                "Authenticated gossip that foca refused (a payload it cannot decode).",
                &c.foca_errors,
            ),
            (
                "iolite_cluster_gossip_send_errors_total",
                "Gossip datagrams the socket would not send.",
                &c.send_errors,
            ),
        ] {
            out.push(Sample {
                name,
                kind: "counter",
                help,
                labels: Vec::new(),
                value: n.load(Relaxed),
            });
        }
    }
}

impl StatusSource for Report {
    fn tables(&self, out: &mut Vec<StatusTable>) {
        let view = self.view.borrow().clone();
        let live = view.live().count();
        out.push(StatusTable {
            title: "Cluster".to_owned(),
            note: format!(
                "This node is {}; {live} of {} members live.",
                self.local_name,
                view.members.len()
            ),
            columns: vec!["member", "state", "client address", "load"],
            rows: view
                .members
                .iter()
                .map(|m| {
                    let name = if m.local {
                        format!("{} (this node)", m.name)
                    } else {
                        m.name.clone()
                    };
                    let load = if m.state.is_live() {
                        m.load.to_string()
                    } else {
                        "–".to_owned()
                    };
                    vec![
                        name,
                        m.state.as_str().to_owned(),
                        m.client.to_string(),
                        load,
                    ]
                })
                .collect(),
        });
    }
}
