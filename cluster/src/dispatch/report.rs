//! Dispatch on the admin pages: `/metrics` families (forwards, peer
//! errors, retries, decisions and their time, refused peer requests) and
//! the `/status` table of the hottest targets this node owns, with their
//! server sets.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use iolite_core::metrics::{MetricsSource, Sample, StatusSource, StatusTable};

use super::auth::Refusal;
use super::shared::Dispatch;

/// Targets listed on `/status`.
const HOTTEST: usize = 10;

/// The admin pages' view of dispatch.
#[derive(Debug)]
pub struct DispatchReport(pub Arc<Dispatch>);

impl MetricsSource for DispatchReport {
    fn samples(&self, out: &mut Vec<Sample>) {
        let c = &self.0.counters;
        for (name, help, n) in [
            (
                "iolite_cluster_forwarded_total",
                "Requests this node forwarded to another node.",
                &c.forwarded,
            ),
            (
                "iolite_cluster_peer_errors_total",
                "Forwards that failed: the peer unreachable, broken or silent before answering, or answering invalidly.",
                &c.peer_errors,
            ),
            (
                "iolite_cluster_retries_total",
                "Forwarded GET and HEAD requests sent again to another node after their peer failed before answering.",
                &c.retries,
            ),
            (
                "iolite_cluster_decisions_total",
                "Dispatch decisions this node made as the owner of their targets.",
                &c.decisions,
            ),
            (
                "iolite_cluster_decision_nanoseconds_total",
                "Time spent in those decisions (the policy and its state), nanoseconds.",
                &c.decision_ns,
            ),
            (
                "iolite_cluster_served_for_peers_total",
                "Requests this node took from a peer (to decide or to serve).",
                &c.served_for_peers,
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
        let a = &self.0.admission;
        for (name, help, n) in [
            (
                "iolite_cluster_queued_total",
                "Client requests that found the cluster at its limit S and waited in this node's queue.",
                &a.queued,
            ),
            (
                "iolite_cluster_queue_full_total",
                "Client requests refused (503) because this node's queue was full.",
                &a.refused_full,
            ),
            (
                "iolite_cluster_queue_timeouts_total",
                "Queued client requests refused (503) because their wait passed queue_timeout.",
                &a.refused_timeout,
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
        out.push(Sample {
            name: "iolite_cluster_waiting_requests",
            kind: "gauge",
            help: "Client requests waiting now in this node's queue for room under the cluster-wide limit S.",
            labels: Vec::new(),
            value: a.waiting() as u64,
        });
        for (why, n) in Refusal::ALL.iter().zip(&c.refused) {
            out.push(Sample {
                name: "iolite_cluster_peer_refused_total",
                kind: "counter",
                help: "Requests on the peer listener refused before routing, by reason.",
                labels: vec![("reason", why.as_str().to_owned())],
                value: n.load(Relaxed),
            });
        }
        out.push(Sample {
            name: "iolite_cluster_active_requests",
            kind: "gauge",
            help: "Requests this node is serving now (its load, as gossiped).",
            labels: Vec::new(),
            value: u64::from(self.0.active()),
        });
    }
}

impl StatusSource for DispatchReport {
    fn tables(&self, out: &mut Vec<StatusTable>) {
        let d = &self.0;
        let decisions = d.counters.decisions.load(Relaxed);
        let mean_us = match decisions {
            0 => 0.0,
            n => d.counters.decision_ns.load(Relaxed) as f64 / n as f64 / 1000.0,
        };
        let hottest = d
            .brain
            .lock()
            .map(|b| b.hottest(HOTTEST))
            .unwrap_or_default();
        out.push(StatusTable {
            title: "Dispatch".to_owned(),
            note: format!(
                "Policy {}; partitioned by target: each target's owner (the consistent-hash ring over the live members) decides for it. \
                 This node decided {decisions} requests (mean {mean_us:.2} µs), forwarded {}, retried {}, peer errors {}. \
                 The targets it owns that it decided most often:",
                d.policy_name(),
                d.counters.forwarded.load(Relaxed),
                d.counters.retries.load(Relaxed),
                d.counters.peer_errors.load(Relaxed),
            ),
            columns: vec!["target", "requests decided", "server set"],
            rows: hottest
                .into_iter()
                .map(|(path, n, set)| {
                    let set = if set.is_empty() {
                        "–".to_owned()
                    } else {
                        set.join(", ")
                    };
                    vec![path, n.to_string(), set]
                })
                .collect(),
        });
    }
}
