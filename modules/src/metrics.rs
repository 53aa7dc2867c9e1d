//! [`ModuleMetrics`]: one module's counters, shown on `/metrics` labelled
//! by the module's mount prefix.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use iolite_core::metrics::{MetricsSource, Sample};

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
}

impl ModuleMetrics {
    pub(crate) fn new(prefix: &str) -> Self {
        ModuleMetrics {
            prefix: prefix.to_owned(),
            ..ModuleMetrics::default()
        }
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
