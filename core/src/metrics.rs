//! Process-wide counters for `/metrics` and `/status`.
//!
//! Every counter is a relaxed atomic: the hot path pays one uncontended
//! `fetch_add` per event, and readers tolerate figures that are a few events
//! apart. Rendering happens only on the admin listener.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The lowest and highest status codes counted one by one.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;
const STATUS_SLOTS: usize = (STATUS_MAX - STATUS_MIN + 1) as usize;

/// The server's counters. Share one behind an `Arc` between workers.
#[derive(Debug)]
pub struct Metrics {
    requests_by_status: Box<[AtomicU64; STATUS_SLOTS]>,
    bytes_sent: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_evicted_bytes: AtomicU64,
    cache_bytes: AtomicU64,
    cache_entries: AtomicU64,
    body_bytes_copied: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A point-in-time copy of every figure, for rendering and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// `(status, count)` for every status seen at least once, ascending.
    pub requests_by_status: Vec<(u16, u64)>,
    pub bytes_sent: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_evicted_bytes: u64,
    pub cache_bytes: u64,
    pub cache_entries: u64,
    pub body_bytes_copied: u64,
}

impl Snapshot {
    /// All requests answered, whatever their status.
    pub fn requests_total(&self) -> u64 {
        self.requests_by_status.iter().map(|(_, n)| n).sum()
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Metrics {
            requests_by_status: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            bytes_sent: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_evictions: AtomicU64::new(0),
            cache_evicted_bytes: AtomicU64::new(0),
            cache_bytes: AtomicU64::new(0),
            cache_entries: AtomicU64::new(0),
            body_bytes_copied: AtomicU64::new(0),
        }
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A client connection was closed (by either side).
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A response was sent in full (or the attempt ended): its status and the
    /// bytes written to the socket for it, head included.
    pub fn request_finished(&self, status: u16, bytes_sent: u64) {
        let slot = status.clamp(STATUS_MIN, STATUS_MAX) - STATUS_MIN;
        self.requests_by_status[usize::from(slot)].fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes_sent, Relaxed);
    }

    /// A cache lookup found a fresh entry.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// A cache lookup found nothing usable.
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    /// An entry of `bytes` left the cache to make room.
    pub fn cache_evicted(&self, bytes: u64) {
        self.cache_evictions.fetch_add(1, Relaxed);
        self.cache_evicted_bytes.fetch_add(bytes, Relaxed);
    }

    /// The cache now holds `entries` entries taking `bytes` bytes.
    pub fn set_cache_size(&self, entries: u64, bytes: u64) {
        self.cache_entries.store(entries, Relaxed);
        self.cache_bytes.store(bytes, Relaxed);
    }

    /// `bytes` body bytes were copied in user space by core itself. Copies made
    /// by iolite-ipc helpers are counted by ipc and added in [`Metrics::snapshot`].
    pub fn body_bytes_copied(&self, bytes: u64) {
        self.body_bytes_copied.fetch_add(bytes, Relaxed);
    }

    /// Every figure now.
    pub fn snapshot(&self) -> Snapshot {
        let requests_by_status = self
            .requests_by_status
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (STATUS_MIN + i as u16, n))
            })
            .collect();
        Snapshot {
            requests_by_status,
            bytes_sent: self.bytes_sent.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_evictions: self.cache_evictions.load(Relaxed),
            cache_evicted_bytes: self.cache_evicted_bytes.load(Relaxed),
            cache_bytes: self.cache_bytes.load(Relaxed),
            cache_entries: self.cache_entries.load(Relaxed),
            body_bytes_copied: self.body_bytes_copied.load(Relaxed) + iolite_ipc::copied::total(),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "iolite_http_requests_total",
            "counter",
            "HTTP responses sent, by status code.",
        );
        let mut body = String::new();
        for (status, n) in &s.requests_by_status {
            let _ = writeln!(
                body,
                "iolite_http_requests_total{{status=\"{status}\"}} {n}"
            );
        }
        out.push_str(&body);
        let scalars: [(&str, &str, &str, u64); 10] = [
            (
                "iolite_http_response_bytes_total",
                "counter",
                "Bytes written to client sockets, heads included.",
                s.bytes_sent,
            ),
            (
                "iolite_connections_open",
                "gauge",
                "Client connections open now.",
                s.connections_open,
            ),
            (
                "iolite_connections_total",
                "counter",
                "Client connections accepted.",
                s.connections_total,
            ),
            (
                "iolite_cache_hits_total",
                "counter",
                "Cache lookups that found a fresh entry.",
                s.cache_hits,
            ),
            (
                "iolite_cache_misses_total",
                "counter",
                "Cache lookups that found nothing usable.",
                s.cache_misses,
            ),
            (
                "iolite_cache_evictions_total",
                "counter",
                "Entries evicted from the cache.",
                s.cache_evictions,
            ),
            (
                "iolite_cache_evicted_bytes_total",
                "counter",
                "Bytes of the entries evicted from the cache.",
                s.cache_evicted_bytes,
            ),
            (
                "iolite_cache_bytes",
                "gauge",
                "Bytes held by the cache.",
                s.cache_bytes,
            ),
            (
                "iolite_cache_entries",
                "gauge",
                "Entries held by the cache.",
                s.cache_entries,
            ),
            (
                "iolite_body_bytes_copied_total",
                "counter",
                "Body bytes copied in user space (zero-copy paths keep this at 0).",
                s.body_bytes_copied,
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_renders_every_family() {
        let m = Metrics::new();
        m.connection_opened();
        m.request_finished(200, 1000);
        m.request_finished(200, 24);
        m.request_finished(404, 100);
        m.cache_hit();
        m.body_bytes_copied(7);
        let s = m.snapshot();
        assert_eq!(s.requests_by_status, vec![(200, 2), (404, 1)]);
        assert_eq!(s.requests_total(), 3);
        assert_eq!(s.bytes_sent, 1124);
        assert_eq!(s.connections_open, 1);
        let text = m.render_prometheus();
        assert!(text.contains("iolite_http_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("iolite_http_requests_total{status=\"404\"} 1\n"));
        assert!(text.contains("\niolite_body_bytes_copied_total 7\n"));
        assert!(text.contains("\niolite_cache_hits_total 1\n"));
        m.connection_closed();
        assert_eq!(m.snapshot().connections_open, 0);
    }

    #[test]
    fn out_of_range_status_is_clamped_not_a_panic() {
        let m = Metrics::new();
        m.request_finished(0, 0);
        m.request_finished(999, 0);
        assert_eq!(m.snapshot().requests_by_status, vec![(100, 1), (599, 1)]);
    }
}
