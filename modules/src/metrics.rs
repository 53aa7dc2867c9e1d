//! [`ModuleMetrics`]: one module's counters, shown on `/metrics` labelled
//! by the module's mount prefix, and [`ModulesStatus`], every module's row
//! on `/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use iolite_core::metrics::{MetricsSource, Sample, StatusSource, StatusTable};

/// Latency buckets: bucket `i` counts answers that took less than 2^i µs
/// (the last one: any longer).
const BUCKETS: usize = 28;

/// One module's counters (relaxed atomics, like core's).
#[derive(Debug, Default)]
pub struct ModuleMetrics {
    prefix: String,
    /// Requests routed to the module.
    pub(crate) requests: AtomicU64,
    /// Answered 502 (the runner failed, broke the protocol or answered
    /// something invalid).
    pub(crate) bad_gateway: AtomicU64,
    /// Answered 503 (too many requests queued for the module).
    pub(crate) busy: AtomicU64,
    /// Answered 503 because no runner was up (a restart's back-off pause,
    /// runners that cannot start, a refused library).
    pub(crate) unavailable: AtomicU64,
    /// Answered 504 (past the module's timeout).
    pub(crate) timed_out: AtomicU64,
    /// Requests whose client went away before the answer.
    pub(crate) cancelled: AtomicU64,
    /// Runner processes started again after one died or was replaced.
    pub(crate) restarts: AtomicU64,
    /// Runner processes ready now.
    pub(crate) runners: AtomicU64,
    /// Data links (lanes) from the worker threads to the runners, open now.
    pub(crate) links: AtomicU64,
    /// Runner processes recycled (CPU budget or request count reached)
    /// or retired (idle): each finished its requests and exited.
    pub(crate) recycled: AtomicU64,
    /// Times a stream's runner went its whole timeout without a part
    /// while the server held it back (a client slow to read, an upload
    /// still arriving): not a stall, the runner is kept.
    pub(crate) stream_waits: AtomicU64,
    /// How long requests took (routed to answered head), by power of two
    /// of microseconds.
    latency: [AtomicU64; BUCKETS],
}

impl ModuleMetrics {
    pub(crate) fn new(prefix: &str) -> Self {
        ModuleMetrics {
            prefix: prefix.to_owned(),
            ..ModuleMetrics::default()
        }
    }

    /// Counts how long a request took, from its routing to its answer's
    /// head (or its failure).
    pub(crate) fn took(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let i = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.latency[i].fetch_add(1, Relaxed);
    }

    /// The latency under which a share `q` of requests finished (the upper
    /// bound of its power-of-two bucket); None before any request.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.latency.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(Duration::from_micros(1u64 << i));
            }
        }
        None
    }

    /// Counts a finished request by the status it got (503: busy; the
    /// caller counts `unavailable` itself).
    pub(crate) fn answered(&self, status: u16) {
        match status {
            502 => self.bad_gateway.fetch_add(1, Relaxed),
            503 => self.busy.fetch_add(1, Relaxed),
            504 => self.timed_out.fetch_add(1, Relaxed),
            _ => 0,
        };
    }
}

impl MetricsSource for ModuleMetrics {
    fn samples(&self, out: &mut Vec<Sample>) {
        let figures: [(&'static str, &'static str, &'static str, &AtomicU64); 11] = [
            (
                "iolite_module_requests_total",
                "counter",
                "Requests routed to a process module.",
                &self.requests,
            ),
            (
                "iolite_module_bad_gateway_total",
                "counter",
                "Module requests answered 502 (runner failed or answered invalidly).",
                &self.bad_gateway,
            ),
            (
                "iolite_module_busy_total",
                "counter",
                "Module requests answered 503 (too many queued).",
                &self.busy,
            ),
            (
                "iolite_module_unavailable_total",
                "counter",
                "Module requests answered 503 at once because no runner was up (restart back-off, refused library).",
                &self.unavailable,
            ),
            (
                "iolite_module_timeouts_total",
                "counter",
                "Module requests answered 504 (past the module's timeout).",
                &self.timed_out,
            ),
            (
                "iolite_module_cancelled_total",
                "counter",
                "Module requests whose client went away before the answer.",
                &self.cancelled,
            ),
            (
                "iolite_module_restarts_total",
                "counter",
                "Runner processes started again after one died or was replaced.",
                &self.restarts,
            ),
            (
                "iolite_module_runners",
                "gauge",
                "Runner processes ready now.",
                &self.runners,
            ),
            (
                "iolite_module_links",
                "gauge",
                "Data links (lanes) from the worker threads to a module's runners, open now.",
                &self.links,
            ),
            (
                "iolite_module_recycled_total",
                "counter",
                "Runner processes drained and ended on purpose (CPU budget, max_requests, idle).",
                &self.recycled,
            ),
            (
                "iolite_module_stream_waits_total",
                "counter",
                "Stream timeouts passed while the server held the runner back (slow client, upload); the runner is kept.",
                &self.stream_waits,
            ),
        ];
        for (name, kind, help, value) in figures {
            out.push(Sample {
                name,
                kind,
                help,
                labels: vec![("module", self.prefix.clone())],
                value: value.load(Relaxed),
            });
        }
    }
}

/// Every process module's row on `/status`.
#[derive(Debug, Default)]
pub struct ModulesStatus(pub Vec<Arc<ModuleMetrics>>);

impl StatusSource for ModulesStatus {
    fn tables(&self, out: &mut Vec<StatusTable>) {
        if self.0.is_empty() {
            return;
        }
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "–".to_owned(),
                |d| format!("≤ {:.1} ms", d.as_secs_f64() * 1000.0),
            )
        };
        out.push(StatusTable {
            title: "Process modules".to_owned(),
            note: "Errors by kind: 502 the runner failed or answered invalidly; 503 busy (its queue was full) or no runner up (restart back-off, refused library); 504 past its timeout. Latency from routing to the answer's head, by power-of-two buckets.".to_owned(),
            columns: vec![
                "module", "requests", "502", "503 busy", "503 no runner", "504", "cancelled",
                "runners", "restarts", "recycled", "p50", "p99",
            ],
            rows: self
                .0
                .iter()
                .map(|m| {
                    let n = |c: &AtomicU64| c.load(Relaxed).to_string();
                    vec![
                        m.prefix.clone(),
                        n(&m.requests),
                        n(&m.bad_gateway),
                        n(&m.busy),
                        n(&m.unavailable),
                        n(&m.timed_out),
                        n(&m.cancelled),
                        n(&m.runners),
                        n(&m.restarts),
                        n(&m.recycled),
                        ms(m.latency_quantile(0.5)),
                        ms(m.latency_quantile(0.99)),
                    ]
                })
                .collect(),
        });
    }
}
